package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// TestKafkaAggregateTwoConsumers: with the inlet's key: flow, every record
// of a flow lands on one partition, so aggregate run by two consumers of a
// group (each owning some partitions) writes exactly what one consumer
// owning them all writes. softflowd's records of the shared capture; long
// timeouts, so every export is decided by the records themselves (ended
// flows) or by the final flush at SIGTERM.
func TestKafkaAggregateTwoConsumers(t *testing.T) {
	needTools(t, "softflowd")
	capture := weirtest.SharedCapture(t)
	rec := newUDPRecorder(t)
	runSoftflowd(t, capture, rec.port())
	time.Sleep(300 * time.Millisecond)
	msgs := rec.messages()

	broker := kafkaCluster(t, "weir-records", 4)
	inPort := weirtest.FreePort(t, "udp")
	inlet := startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  queue: {when_full: block}
  sources:
    - source.ipfix: {udp: "127.0.0.1:%d", tcp: ""}
  exporters:
    - export.kafka: {brokers: [%q], topic: weir-records, key: flow, payload: records}
`, inPort, broker))
	dir := t.TempDir()
	outlet := func(group, name string) (*weirProc, string) {
		path := filepath.Join(dir, name+".jsonl")
		return startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  sources:
    - source.kafka: {brokers: [%q], topic: weir-records, group: %s}
  processors:
    - aggregate: {active_timeout: 1h, inactive_timeout: 1h, correlation_timeout: 1h}
  exporters:
    - export.jsonl: {path: %q}
`, broker, group, path)), path
	}
	one, onePath := outlet("one", "one")
	a, aPath := outlet("two", "two-a")
	b, bPath := outlet("two", "two-b")
	// Both members of group "two" own partitions before any record comes:
	// a rebalance mid-stream would split flows between the two tables.
	owned := func(w *weirProc) float64 {
		m := w.Scrape(t)
		return m["weir_source_kafka_partitions_assigned_total"] - m["weir_source_kafka_partitions_revoked_total"]
	}
	deadline := time.Now().Add(60 * time.Second)
	for pa, pb := owned(a), owned(b); pa < 1 || pb < 1 || pa+pb != 4 || owned(one) != 4; pa, pb = owned(a), owned(b) {
		if time.Now().After(deadline) {
			t.Fatalf("group two: partitions %v and %v, want 4 split between both members", pa, pb)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The capture twice: every flow has two records to aggregate (the
	// capture's 5-tuples are all distinct).
	rp := newReplayer(t, inPort)
	rp.send(t, msgs)
	rp.send(t, msgs)
	n := float64(2 * len(expectedLinesNoProxy(t, msgs, rp.addr())))
	inlet.WaitMetric(t, "weir_export_kafka_records_total", n)
	one.WaitMetric(t, "weir_source_kafka_records_total", n)
	deadline = time.Now().Add(30 * time.Second)
	for a.Scrape(t)["weir_source_kafka_records_total"]+b.Scrape(t)["weir_source_kafka_records_total"] < n {
		if time.Now().After(deadline) {
			t.Fatal("group two did not consume every record")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ra, rb := a.Scrape(t)["weir_source_kafka_records_total"], b.Scrape(t)["weir_source_kafka_records_total"]
	inlet.Stop(t)
	for _, w := range []*weirProc{one, a, b} {
		w.Stop(t) // SIGTERM: every live flow is exported
	}

	want := readLines(onePath)
	slices.Sort(want)
	linesA, linesB := readLines(aPath), readLines(bPath)
	got := append(append([]string(nil), linesA...), linesB...)
	slices.Sort(got)
	t.Logf("%d records in; one consumer wrote %d aggregated records; two consumers %d + %d (from %v + %v records)",
		int(n), len(want), len(linesA), len(linesB), ra, rb)
	if len(want) > 0 {
		t.Logf("e.g. %s", want[0])
	}
	merged := 0
	for _, l := range want {
		if strings.Contains(l, `"originalFlowsPresent":2`) {
			merged++
		}
	}
	if len(want) == 0 || merged == 0 {
		t.Fatalf("one consumer wrote %d records from %d, %d of two records: nothing was aggregated", len(want), int(n), merged)
	}
	if len(linesA) == 0 || len(linesB) == 0 {
		t.Errorf("a member of group two wrote nothing (%d, %d)", len(linesA), len(linesB))
	}
	if !slices.Equal(got, want) {
		t.Errorf("two consumers wrote %d records, one consumer %d: they differ\n got %q\nwant %q", len(got), len(want), got, want)
	}
}
