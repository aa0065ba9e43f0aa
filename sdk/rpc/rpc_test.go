package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

func TestNewServerNeedsCallback(t *testing.T) {
	if _, err := NewServer(Plugin{Name: "empty"}); err == nil {
		t.Fatal("a plugin without Filter or Enrich was accepted")
	}
}

func TestKinds(t *testing.T) {
	keep := func(*flow.Record) bool { return true }
	enrich := func(*flow.Record) {}
	tests := []struct {
		p    Plugin
		want abi.Kind
	}{
		{Plugin{Filter: keep}, abi.KindFilter},
		{Plugin{Enrich: enrich}, abi.KindEnricher},
		{Plugin{Filter: keep, Enrich: enrich}, abi.KindProcessor},
	}
	for _, tt := range tests {
		h, err := NewTestHost(tt.p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Manifest().Kind; got != tt.want {
			t.Errorf("kind %s, want %s", got, tt.want)
		}
	}
}

// TestProcessor checks that Enrich runs on the records Filter keeps only.
func TestProcessor(t *testing.T) {
	h, err := NewTestHost(Plugin{
		Filter: func(r *flow.Record) bool { return r.ProtocolIdentifier == 6 },
		Enrich: func(r *flow.Record) { r.SetString(flow.TCPState, "seen") },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := plugintest.MixedBatch(8)
	if err := h.Process(b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 2 {
		t.Fatalf("%d records kept, want 2", b.Len())
	}
	for _, r := range b.Records {
		if r.ProtocolIdentifier != 6 || r.TCPState != "seen" {
			t.Errorf("record %+v", r)
		}
	}
}

func TestPanicIsReported(t *testing.T) {
	h, err := NewTestHost(Plugin{Enrich: func(*flow.Record) { panic("boom") }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := plugintest.MixedBatch(3)
	err = h.Process(b)
	var pe *abi.PluginError
	if !errors.As(err, &pe) || pe.Status != abi.StatusPanic || !strings.Contains(pe.Message, "boom") {
		t.Fatalf("got %v, want a StatusPanic error", err)
	}
	if b.Len() != 3 || b.Records[0].TCPState != "" {
		t.Error("a failed batch was changed")
	}
}

func TestInitPanicIsRejected(t *testing.T) {
	_, err := NewTestHost(Plugin{Init: func([]byte) error { panic("bad init") }, Enrich: func(*flow.Record) {}}, nil)
	if err == nil || !strings.Contains(err.Error(), "bad init") {
		t.Fatalf("got %v", err)
	}
}

func TestMalformedBatch(t *testing.T) {
	srv, err := NewServer(Plugin{Enrich: func(*flow.Record) {}})
	if err != nil {
		t.Fatal(err)
	}
	for _, buf := range [][]byte{nil, []byte("WEIQ garbage"), []byte("WEIR garbage")} {
		if _, err := srv.Process(context.Background(), buf); err == nil {
			t.Errorf("%q accepted", buf)
		}
	}
}

func TestPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "t.csv"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIR_BASE_DIR", dir)
	if got := Path("t.csv"); got != filepath.Join(dir, "t.csv") {
		t.Errorf("Path(t.csv) = %s", got)
	}
	if got := Path("missing.csv"); got != "missing.csv" {
		t.Errorf("Path(missing.csv) = %s", got)
	}
	if got := Path("/abs/x"); got != "/abs/x" {
		t.Errorf("Path(/abs/x) = %s", got)
	}
}

// TestPackedRecords runs an enricher that reads a few fields (so batches
// travel packed) and changes fields inside and outside what it reads,
// differently per record: every record must get exactly its own changes.
func TestPackedRecords(t *testing.T) {
	p := Plugin{
		Reads: []flow.FieldID{flow.SourceTransportPort, flow.SourcePodLabels, flow.DestinationPodLabels},
		Enrich: func(r *flow.Record) {
			switch r.SourceTransportPort % 3 {
			case 0:
				r.SetString(flow.SourceNodeName, "node-a") // outside Reads
				r.SetString(flow.SourcePodLabels, `{"k":"v"}`)
			case 1:
				r.Clear(flow.DestinationPodLabels)
			default:
				r.SetString(flow.SourcePodLabels, "b") // "a" or already "b"
			}
		},
	}
	h, err := NewTestHost(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := plugintest.MixedBatch(30)
	for i, r := range b.Records {
		if i%2 == 0 {
			r.SetString(flow.DestinationPodLabels, `{"d":"x"}`)
			r.SetString(flow.SourcePodLabels, "b")
		} else {
			r.SetString(flow.SourcePodLabels, "a")
		}
	}
	for range 2 { // the second batch reuses the plugin's scratch records
		want := make([]flow.Record, b.Len())
		for i, r := range b.Records {
			want[i] = *r
			p.Enrich(&want[i])
		}
		if err := h.Process(b); err != nil {
			t.Fatal(err)
		}
		for i, r := range b.Records {
			if r.SourceNodeName != want[i].SourceNodeName || r.SourcePodLabels != want[i].SourcePodLabels ||
				r.DestinationPodLabels != want[i].DestinationPodLabels || r.Present != want[i].Present {
				t.Fatalf("record %d (port %d):\n got %+v\nwant %+v", i, r.SourceTransportPort, *r, want[i])
			}
		}
	}
}

// FuzzProcess feeds any buffer to a plugin's Process, packed, plain or
// neither, twice (the second pass reuses the cached layout): it returns an
// error or an answer, and the answer is never a recovered panic, which
// would hide one in the decoders.
func FuzzProcess(f *testing.F) {
	b := plugintest.MixedBatch(5)
	b.Records[1].SetString(flow.SourcePodLabels, `{"a":"b"}`)
	b.Records[2].Extra = append(b.Records[2].Extra, flow.Field{Enterprise: 9, Element: 7, Value: []byte{1, 2}})
	reads := []flow.FieldID{flow.SourceAddress, flow.DestinationAddress, flow.SourcePodLabels, flow.OctetDeltaCount}
	for _, m := range []abi.Mask{abi.MaskOf(0, reads...), abi.MaskOf(abi.FlagExtra|abi.FlagExporter, reads...), abi.All} {
		f.Add(abi.NewPackedLayout(m).Append(nil, b))
		f.Add(abi.AppendBatchMask(nil, b, m))
	}
	srv, err := NewServer(Plugin{
		Filter: func(r *flow.Record) bool { return r.OctetDeltaCount%2 == 0 },
		Enrich: func(r *flow.Record) {
			r.SetString(flow.SourcePodLabels, "x")
			r.Extra = append(r.Extra, flow.Field{Enterprise: 1, Element: 2, Value: []byte{3}})
		},
		Reads:      reads,
		ReadsExtra: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		if p, err := abi.ParsePacked(buf, nil); err == nil && p.Len() > 1<<16 {
			return // valid, and slow to go through
		}
		for range 2 {
			out, err := srv.Process(context.Background(), buf)
			if err != nil {
				return
			}
			if len(out) >= 12 && binary.LittleEndian.Uint32(out) == abi.MagicCompact && abi.Status(binary.LittleEndian.Uint32(out[8:])) == abi.StatusPanic {
				t.Fatalf("Process panicked: %s", out[abi.CompactHeaderSize:])
			}
		}
	})
}
