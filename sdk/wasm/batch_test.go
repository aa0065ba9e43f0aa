package weir_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/plugintest"
	weir "github.com/weir-flow/weir/sdk/wasm"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
)

// TestBatchColumns checks every column accessor and Has against the
// records, and that misuse panics with a message (answered as a panic).
func TestBatchColumns(t *testing.T) {
	src := plugintest.MixedBatch(70)
	var failures []string
	weir.RegisterInit(nil)
	weir.RegisterBatchFilter(func(b *weir.Batch) {
		if b.Len() != src.Len() {
			failures = append(failures, "Len")
		}
		protos, ports, ingress, octets, end := b.Uint8(weir.ProtocolIdentifier), b.Uint16(weir.DestinationTransportPort),
			b.Uint32(weir.IngressInterface), b.Uint64(weir.OctetDeltaCount), b.Time(weir.FlowEnd)
		for i, r := range src.Records {
			if protos[i] != r.ProtocolIdentifier || ports[i] != r.DestinationTransportPort || ingress[i] != r.IngressInterface ||
				octets[i] != r.OctetDeltaCount || end[i] != r.FlowEnd || b.Has(i, weir.OctetDeltaCount) != r.Has(weir.OctetDeltaCount) {
				failures = append(failures, "record "+r.SourceAddress.String())
			}
			if i%2 == 1 {
				b.Drop(i)
			}
			if b.Kept(i) != (i%2 == 0) {
				failures = append(failures, "Kept")
			}
		}
	}, weir.Reads(weir.ProtocolIdentifier, weir.DestinationTransportPort, weir.IngressInterface, weir.OctetDeltaCount, weir.FlowEnd))
	h, err := wasmtest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := plugintest.MixedBatch(70)
	removed, err := h.Process(b)
	if err != nil || removed != 35 || len(failures) > 0 {
		t.Fatalf("removed %d, %v, failures %v", removed, err, failures)
	}

	for name, misuse := range map[string]func(b *weir.Batch){
		"not read":    func(b *weir.Batch) { b.Uint16(weir.SourceTransportPort) },
		"wrong width": func(b *weir.Batch) { b.Uint16(weir.ProtocolIdentifier) },
		"time as u64": func(b *weir.Batch) { b.Uint64(weir.FlowEnd) },
		"string":      func(b *weir.Batch) { b.Uint64(weir.SourcePodName) },
	} {
		t.Run(name, func(t *testing.T) {
			weir.RegisterBatchFilter(misuse, weir.Reads(weir.ProtocolIdentifier, weir.FlowEnd))
			h, err := wasmtest.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Process(plugintest.MixedBatch(3))
			var pe *abi.PluginError
			if !errors.As(err, &pe) || pe.Status != abi.StatusPanic || !strings.Contains(pe.Message, "weir: Batch column") {
				t.Fatalf("got %v, want a panic naming the column", err)
			}
		})
	}
}
