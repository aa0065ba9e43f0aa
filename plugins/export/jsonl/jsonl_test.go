package jsonl

import (
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
)

func TestAppendRecord(t *testing.T) {
	start := time.Date(2026, 11, 25, 0, 2, 51, 288e6, time.UTC)
	tests := []struct {
		name  string
		build func(b *flow.Batch) *flow.Record
		extra bool
		want  map[string]any
	}{
		{
			name: "ipv4 5-tuple, times, counters",
			build: func(b *flow.Batch) *flow.Record {
				r := plugintest.Record(b, "10.77.0.1", "10.77.0.2", 6, 40000, 8080, 12, 3400)
				r.Exporter = netip.MustParseAddrPort("127.0.0.1:4739")
				r.ObservationDomainID = 7
				r.SetUint(flow.FlowStart, uint64(start.UnixNano()))
				r.SetUint(flow.FlowEnd, uint64(start.Add(1500*time.Millisecond).UnixNano()))
				r.SetUint(flow.ReverseOctetDeltaCount, 0) // present though zero
				return r
			},
			want: map[string]any{
				"exporterIPv4Address": "127.0.0.1", "exporterTransportPort": 4739.0, "observationDomainId": 7.0,
				"sourceIPv4Address": "10.77.0.1", "destinationIPv4Address": "10.77.0.2",
				"protocolIdentifier": 6.0, "sourceTransportPort": 40000.0, "destinationTransportPort": 8080.0,
				"packetDeltaCount": 12.0, "octetDeltaCount": 3400.0, "reverseOctetDeltaCount": 0.0,
				"flowStartMilliseconds": "2026-11-25T00:02:51.288Z", "flowEndMilliseconds": "2026-11-25T00:02:52.788Z",
			},
		},
		{
			name: "ipv6 and Antrea strings that need escaping",
			build: func(b *flow.Batch) *flow.Record {
				r := plugintest.Record(b, "fd77::1", "fd77::2", 17, 5353, 53, 1, 80)
				r.Exporter = netip.MustParseAddrPort("[2001:db8::1]:4739")
				r.SourcePodName = "web-0"
				r.SourcePodLabels = `{"app":"web","tier":"a\"b"}`
				r.EgressNodeName = "node\n1\x01"
				return r
			},
			want: map[string]any{
				"exporterIPv6Address": "2001:db8::1", "exporterTransportPort": 4739.0, "observationDomainId": 0.0,
				"sourceIPv6Address": "fd77::1", "destinationIPv6Address": "fd77::2",
				"protocolIdentifier": 17.0, "sourceTransportPort": 5353.0, "destinationTransportPort": 53.0,
				"packetDeltaCount": 1.0, "octetDeltaCount": 80.0,
				"sourcePodName": "web-0", "sourcePodLabels": `{"app":"web","tier":"a\"b"}`, "egressNodeName": "node\n1\x01",
			},
		},
		{
			name:  "verbatim IEs, known and unknown",
			extra: true,
			build: func(b *flow.Batch) *flow.Record {
				r := plugintest.Record(b, "10.0.0.1", "10.0.0.2", 1, 0, 0, 1, 84)
				r.Extra = append(r.Extra,
					flow.Field{Element: 60, Value: b.CopyBytes([]byte{4})},                             // ipVersion
					flow.Field{Enterprise: 99999, Element: 42, Value: b.CopyBytes([]byte{0xde, 0xad})}, // nobody's
				)
				return r
			},
			want: map[string]any{
				"observationDomainId": 0.0, "sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "10.0.0.2",
				"protocolIdentifier": 1.0, "sourceTransportPort": 0.0, "destinationTransportPort": 0.0,
				"packetDeltaCount": 1.0, "octetDeltaCount": 84.0, "ipVersion": 4.0, "ie99999_42": "dead",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := flow.NewBatch(1)
			line := AppendRecord(nil, tt.build(b), tt.extra)
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, line)
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d keys, want %d:\n%s", len(got), len(tt.want), line)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}
}

func TestExportToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	set := plugin.NopSettings(ID)
	e, err := New(&Config{Path: path, Extra: true}, set)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := e.Export(ctx, plugintest.MixedBatch(10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 30 {
		t.Fatalf("%d lines, want 30", len(lines))
	}
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("line %d is not JSON: %s", i+1, l)
		}
	}
}

func TestExportBeforeStart(t *testing.T) {
	e, _ := New(DefaultConfig(), plugin.NopSettings(ID))
	if err := e.Export(context.Background(), plugintest.MixedBatch(1)); err == nil {
		t.Error("Export before Start succeeded")
	}
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	plugintest.Lifecycle(t, func() plugin.Component {
		e, _ := New(&Config{Path: filepath.Join(dir, "x.jsonl")}, plugin.NopSettings(ID))
		return e
	})
}

func TestValidate(t *testing.T) {
	if err := (&Config{Path: ""}).Validate(); err == nil || !strings.Contains(err.Error(), "path") {
		t.Errorf("empty path: %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// BenchmarkExport encodes and writes Antrea-like batches to io.Discard
// through the writer goroutine.
func BenchmarkExport(b *testing.B) {
	batch := antreaBatch(256)
	e := NewWriter(DefaultConfig(), io.Discard)
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = e.Export(ctx, batch)
	}
	if err := e.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/record")
}

// BenchmarkExportFile encodes and writes Antrea-like batches to a file in
// the test's temporary directory, with direct_io off (through the page
// cache) and on (O_DIRECT): MB/s is the exporter's throughput to that
// file system, encoding overlapping the writes, and cpu-ns/record the
// process's CPU time (user and system) per record. The kernel's writeback
// of the page cache runs in its own threads and is not counted.
func BenchmarkExportFile(b *testing.B) {
	for _, mode := range []string{DirectOff, DirectOn} {
		b.Run("direct_io="+mode, func(b *testing.B) {
			batch := antreaBatch(256)
			e, err := New(&Config{Path: filepath.Join(b.TempDir(), "flows.jsonl"), Extra: true, DirectIO: mode}, plugin.NopSettings(ID))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := e.Start(ctx); err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime(b)
			b.ReportAllocs()
			for b.Loop() {
				_ = e.Export(ctx, batch)
			}
			if err := e.Shutdown(ctx); err != nil { // the time to write what is left counts
				b.Fatal(err)
			}
			records := float64(b.N * batch.Len())
			line := len(AppendRecord(nil, batch.Records[0], true)) + 1
			b.SetBytes(int64(line * batch.Len()))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/records, "ns/record")
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/records, "cpu-ns/record")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
