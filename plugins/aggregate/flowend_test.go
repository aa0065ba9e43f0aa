package aggregate

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

func extraU32(t *testing.T, r *flow.Record, el uint16) uint32 {
	t.Helper()
	f := r.FindExtra(flow.IEKey{Enterprise: flow.AntreaPEN, Element: el})
	if f == nil || len(f.Value) != 4 {
		t.Fatalf("record lacks Antrea IE %d (dateTimeSeconds)", el)
	}
	return binary.BigEndian.Uint32(f.Value)
}

// reason sets the flowEndReason of the record f appends (antrea() sends
// at least 2).
func reason(f func(*flow.Batch), reason uint8) func(*flow.Batch) {
	return func(b *flow.Batch) {
		f(b)
		b.Records[len(b.Records)-1].SetUint(flow.FlowEndReason, uint64(reason))
	}
}

// TestFlowEndSecondsFromNodes: flowEndSecondsFromSourceNode (151) and
// …FromDestinationNode (152) are each Node's newest flowEnd; a flow that
// needs no correlation has one exporter, both sides; a lone half has only
// its own.
func TestFlowEndSecondsFromNodes(t *testing.T) {
	tests := []struct {
		name     string
		recs     []func(*flow.Batch)
		wait     time.Duration
		src, dst uint32
	}{
		{"correlated", []func(*flow.Batch){
			antrea(half{node: "src", sport: 1, start: 10, end: 12, pkts: 2, octs: 120, dPkts: 2, dOcts: 120}),
			antrea(half{node: "dst", sport: 1, start: 10, end: 13, pkts: 2, octs: 120, dPkts: 2, dOcts: 120}),
		}, 0, 12, 13},
		{"intra-Node", []func(*flow.Batch){
			antrea(half{node: "intra", flowType: 1, sport: 2, start: 10, end: 14, pkts: 1, octs: 60, dPkts: 1, dOcts: 60}),
		}, 0, 14, 14},
		{"orphan destination half", []func(*flow.Batch){
			antrea(half{node: "dst", sport: 3, start: 10, end: 15, pkts: 1, octs: 60, dPkts: 1, dOcts: 60}),
		}, 6 * time.Second, 0, 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			for _, r := range tc.recs {
				h.process(r)
			}
			if tc.wait > 0 {
				h.advance(tc.wait)
			}
			out := h.all()
			if len(out) != 1 {
				t.Fatalf("%d records, want 1", len(out))
			}
			if got := [2]uint32{extraU32(t, out[0], 151), extraU32(t, out[0], 152)}; got != [2]uint32{tc.src, tc.dst} {
				t.Errorf("flowEndSecondsFrom{Source,Destination}Node = %v, want %v", got, [2]uint32{tc.src, tc.dst})
			}
		})
	}
}

// TestOrphanFlowEndReason: a lone half goes out after correlation_timeout
// with its own newest flowEndReason: active (2) stays for more, idle (1)
// and end of flow (3) at the Node are final and evict it.
func TestOrphanFlowEndReason(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      uint8
		want    uint8
		evicted bool
	}{
		{"active", 2, 2, false},
		{"idle at the Node", 1, 1, true},
		{"end of flow", 3, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.CorrelationTimeout = 5 * time.Second })
			h.process(reason(antrea(half{node: "src", sport: 9, start: 1, end: 2, pkts: 1, octs: 60, dPkts: 1, dOcts: 60}), tc.in))
			h.advance(6 * time.Second)
			out := h.all()
			if len(out) != 1 {
				t.Fatalf("%d records, want the lone half", len(out))
			}
			if out[0].FlowEndReason != tc.want {
				t.Errorf("flowEndReason %d, want %d", out[0].FlowEndReason, tc.want)
			}
			if evicted := h.a.tb.live == 0; evicted != tc.evicted {
				t.Errorf("evicted %v, want %v", evicted, tc.evicted)
			}
		})
	}
}
