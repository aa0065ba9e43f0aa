package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/export/jsonl"
	"github.com/weir-flow/weir/plugins/proxy"
	"github.com/weir-flow/weir/test/weirtest"
)

// kafkaCluster starts an in-process Kafka (kfake) with topic's partitions.
func kafkaCluster(t *testing.T, topic string, partitions int32) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// shippedConfig reads configs/<name> and applies the replacements (old,
// new pairs), each of which must match.
func shippedConfig(t *testing.T, name string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(weirtest.RepoRoot(), "configs", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("configs/%s no longer contains %q", name, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	return s
}

// replayer sends recorded IPFIX messages from one UDP socket, as the
// exporter did, paced so the outlets see a stream.
type replayer struct {
	conn *net.UDPConn
}

func newReplayer(t *testing.T, port int) *replayer {
	t.Helper()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &replayer{conn: c}
}

func (r *replayer) addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *replayer) send(t *testing.T, msgs [][]byte) {
	t.Helper()
	for _, m := range msgs {
		if _, err := r.conn.Write(m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectedLines decodes msgs as sent from `from` and runs them through
// proxy, as an outlet does: the JSON lines every outlet together must write.
func expectedLines(t *testing.T, msgs [][]byte, from netip.AddrPort) []string {
	t.Helper()
	b := flow.NewBatch(0)
	d := ipfix.NewDecoder(ipfix.DecoderOptions{})
	for _, m := range msgs {
		if _, err := d.Decode(b, m, from); err != nil {
			t.Fatalf("decode softflowd's message: %v", err)
		}
	}
	p, err := proxy.New(proxy.DefaultConfig(), plugin.NopSettings(proxy.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range b.Records {
		out = append(out, string(jsonl.AppendRecord(nil, r, true)))
	}
	slices.Sort(out)
	return out
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// uniqueAndDuplicates returns the sorted distinct lines and how many lines
// repeated one already seen.
func uniqueAndDuplicates(lines []string) ([]string, int) {
	s := slices.Clone(lines)
	slices.Sort(s)
	u := slices.Compact(slices.Clone(s))
	return u, len(s) - len(u)
}

// TestKafkaInletOutlets is issue 17's acceptance test: softflowd's IPFIX
// → inlet (configs/inlet.yaml: source.ipfix raw → export.kafka) → Kafka
// with 4 partitions → two outlets (configs/outlet.yaml: source.kafka →
// proxy → export.jsonl) in one group, the second joining mid-stream. The
// outlets together write exactly the records softflowd exported (the
// reference's 109), with no duplicate: a graceful rebalance re-delivers
// nothing (source.kafka's documented duplicate window).
func TestKafkaInletOutlets(t *testing.T) {
	needTools(t, "softflowd", "nfcapd", "nfdump")
	capture := weirtest.SharedCapture(t)
	ref := referenceFlows(t, capture)

	rec := newUDPRecorder(t)
	runSoftflowd(t, capture, rec.port())
	time.Sleep(300 * time.Millisecond)
	msgs := rec.messages()
	if len(msgs) < 4 {
		t.Fatalf("softflowd sent %d messages; the test needs a stream", len(msgs))
	}

	broker := kafkaCluster(t, "weir-raw", 4)
	inPort := weirtest.FreePort(t, "udp")
	// key: random so that no outlet sees all of the exporter's messages:
	// each decodes through the templates every message carries.
	inlet := startWeir(t, shippedConfig(t, "inlet.yaml",
		`metrics_address: "127.0.0.1:9464"`, `metrics_address: "{{metrics}}"`,
		`udp: ":4739", tcp: ":4739"`, fmt.Sprintf(`udp: "127.0.0.1:%d", tcp: ""`, inPort),
		`"127.0.0.1:9092"`, fmt.Sprintf("%q", broker),
		"key: exporter ", "key: random "))
	dir := t.TempDir()
	outlet := func(name string) (*weirProc, string) {
		path := filepath.Join(dir, name+".jsonl")
		w := startWeir(t, shippedConfig(t, "outlet.yaml",
			`metrics_address: "127.0.0.1:9465"`, `metrics_address: "{{metrics}}"`,
			`"127.0.0.1:9092"`, fmt.Sprintf("%q", broker),
			`path: "flows.jsonl"`, fmt.Sprintf("path: %q", path)))
		return w, path
	}
	a, pathA := outlet("a")
	rp := newReplayer(t, inPort)
	want := expectedLines(t, msgs, rp.addr())
	if len(want) != len(ref) {
		t.Fatalf("softflowd's messages decode to %d records, the reference has %d", len(want), len(ref))
	}

	half := len(msgs) / 2
	rp.send(t, msgs[:half])
	deadline := time.Now().Add(30 * time.Second)
	for len(readLines(pathA)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("outlet a wrote nothing from the first half")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, pathB := outlet("b") // joins mid-stream: the group rebalances
	b.WaitMetric(t, "weir_source_kafka_partitions_assigned_total", 1)
	rp.send(t, msgs[half:])

	inlet.WaitMetric(t, "weir_export_kafka_records_total", float64(len(msgs)))
	deadline = time.Now().Add(60 * time.Second)
	for {
		u, _ := uniqueAndDuplicates(append(readLines(pathA), readLines(pathB)...))
		if len(u) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outlets wrote %d distinct records, want %d", len(u), len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // nothing more may come
	inlet.Stop(t)
	a.Stop(t)
	b.Stop(t)

	la, lb := readLines(pathA), readLines(pathB)
	got, dups := uniqueAndDuplicates(append(la, lb...))
	t.Logf("%d messages; outlet a wrote %d records, outlet b %d; %d duplicates", len(msgs), len(la), len(lb), dups)
	if !slices.Equal(got, want) {
		t.Errorf("outlets' records differ from softflowd's:\n got %d %q\nwant %d %q", len(got), got, len(want), want)
	}
	if dups != 0 {
		t.Errorf("%d duplicates across a graceful rebalance; the documented window is none", dups)
	}
	if len(lb) == 0 {
		t.Errorf("outlet b, which joined mid-stream, wrote nothing: no partition moved to it")
	}
}

// TestKafkaKeyFlow: an inlet that decodes (source.ipfix → export.kafka
// payload records, key flow) puts both halves of every connection on one
// partition, and two outlets write exactly softflowd's records.
func TestKafkaKeyFlow(t *testing.T) {
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
    - export.kafka: {brokers: [%q], topic: weir-records, key: flow, payload: records, compression: snappy}
`, inPort, broker))
	dir := t.TempDir()
	var outlets []*weirProc
	var paths []string
	for _, name := range []string{"a", "b"} {
		path := filepath.Join(dir, name+".jsonl")
		outlets = append(outlets, startWeir(t, fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  sources:
    - source.kafka: {brokers: [%q], topic: weir-records, group: aggregators}
  exporters:
    - export.jsonl: {path: %q}
`, broker, path)))
		paths = append(paths, path)
	}
	rp := newReplayer(t, inPort)
	rp.send(t, msgs)
	want := expectedLinesNoProxy(t, msgs, rp.addr())
	inlet.WaitMetric(t, "weir_export_kafka_records_total", float64(len(want)))
	deadline := time.Now().Add(60 * time.Second)
	for {
		var all []string
		for _, p := range paths {
			all = append(all, readLines(p)...)
		}
		if u, _ := uniqueAndDuplicates(all); len(u) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outlets wrote %d records, want %d", len(all), len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	inlet.Stop(t)
	var all []string
	for i, o := range outlets {
		o.Stop(t)
		all = append(all, readLines(paths[i])...)
	}
	got, dups := uniqueAndDuplicates(all)
	if !slices.Equal(got, want) || dups != 0 {
		t.Errorf("outlets wrote %d records (%d duplicates), want softflowd's %d:\n got %q\nwant %q", len(all), dups, len(want), got, want)
	}

	// Where did each half go? Read the topic directly.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("weir-records"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	type key struct {
		a, b netip.Addr
		pa   uint16
		pb   uint16
		p    uint8
	}
	directed := map[key]int32{}
	var dec abi.Decoder
	batch := flow.NewBatch(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n := 0; n < len(want); {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records back", n, len(want))
		}
		fs.EachRecord(func(r *kgo.Record) {
			batch.Reset()
			if err := dec.Decode(r.Value, batch); err != nil {
				t.Fatal(err)
			}
			for _, rec := range batch.Records {
				directed[key{rec.SourceAddress, rec.DestinationAddress, rec.SourceTransportPort, rec.DestinationTransportPort, rec.ProtocolIdentifier}] = r.Partition
				n++
			}
		})
	}
	pairs, used := 0, map[int32]bool{}
	for k, p := range directed {
		used[p] = true
		rk := key{k.b, k.a, k.pb, k.pa, k.p}
		if k.p == 1 || k.p == 58 {
			continue // ICMP "ports" are type/code; checked by the hash unit test
		}
		if rp, ok := directed[rk]; ok {
			pairs++
			if rp != p {
				t.Errorf("%v → partition %d, its reverse → partition %d", k, p, rp)
			}
		}
	}
	t.Logf("%d records, %d directed halves with their reverse present, partitions used %v", len(directed), pairs, used)
	if pairs == 0 {
		t.Error("no connection has both halves in the capture: the test proves nothing")
	}
	if len(used) < 2 {
		t.Errorf("all records on partitions %v: key flow should spread connections", used)
	}
}

// expectedLinesNoProxy is expectedLines without proxy's fields.
func expectedLinesNoProxy(t *testing.T, msgs [][]byte, from netip.AddrPort) []string {
	t.Helper()
	b := flow.NewBatch(0)
	d := ipfix.NewDecoder(ipfix.DecoderOptions{})
	for _, m := range msgs {
		if _, err := d.Decode(b, m, from); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	for _, r := range b.Records {
		out = append(out, string(jsonl.AppendRecord(nil, r, true)))
	}
	slices.Sort(out)
	return out
}
