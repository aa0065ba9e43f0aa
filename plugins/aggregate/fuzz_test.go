package aggregate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
)

// FuzzProcess feeds records built from arbitrary bytes (few distinct keys,
// Antrea halves and plain records, ends, table full) with clock steps in
// between: no panic, and every octet in comes out once Shutdown has
// flushed (deltas are conserved), whatever the order.
func FuzzProcess(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte{0x81, 0x42, 0x03, 0xc4, 0x85, 0x06, 0x47, 0x88, 0x09, 0xca})
	f.Fuzz(checkConservation)
}

// TestConservationRandom runs FuzzProcess's check on seeded random inputs.
func TestConservationRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		data := make([]byte, 2*rng.IntN(40))
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkConservation(t, data) })
		if t.Failed() {
			t.Fatalf("input %x", data)
		}
	}
}

func checkConservation(t *testing.T, data []byte) {
	{
		h := newHarness(t, func(c *Config) { c.MaxFlows = 4 })
		var in uint64
		for len(data) >= 2 {
			op, arg := data[0], data[1]
			data = data[2:]
			if op&0x0f == 0x0f {
				h.advance(time.Duration(arg) * 100 * time.Millisecond)
				continue
			}
			octs := uint64(arg) + 1
			in += octs
			h.process(func(b *flow.Batch) {
				src, dst := "10.0.0.1", "10.0.0.2"
				if op&0x08 != 0 { // IPv6: interned /64 prefixes, shared or not
					src, dst = "fd00::1", "fd00::2"
					if arg&1 != 0 {
						dst = "fd00:0:0:1::2"
					}
				}
				r := plugintest.Record(b, src, dst, 6, uint16(op&7), 80, 1, octs)
				r.Exporter = netip.MustParseAddrPort("127.0.0.1:9")
				if op&0x10 != 0 {
					r.SetUint(flow.FlowEndReason, reasonEnd)
				}
				if op&0x20 != 0 {
					r.SetUint(flow.FlowType, flowTypeInterNode)
					if op&0x40 != 0 {
						r.SetString(flow.SourcePodName, "a")
					} else {
						r.SetString(flow.DestinationPodName, "b")
					}
				}
				if op&0x80 != 0 {
					r.SetUint(flow.FlowType, 1)
				}
			})
		}
		if err := h.a.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		var out uint64
		for _, r := range h.all() {
			if r.FlowType == flowTypeInterNode && r.SourcePodName != "" && r.DestinationPodName != "" {
				// A correlated record counts each octet once per side;
				// the common delta is the larger side's.
				out += extraU64(t, r, flow.AntreaPEN, 123) + extraU64(t, r, flow.AntreaPEN, 131)
				continue
			}
			if f := r.FindExtra(flow.IEKey{Enterprise: flow.AntreaPEN, Element: 123}); f != nil && r.FlowType == flowTypeInterNode {
				out += extraU64(t, r, flow.AntreaPEN, 123) + extraU64(t, r, flow.AntreaPEN, 131)
				continue
			}
			out += r.OctetDeltaCount
		}
		if out != in {
			t.Fatalf("octets in %d, out %d", in, out)
		}
		tb := h.a.tb
		if tb.live != 0 || h.a.strs.len() != 0 || h.a.metas.len() != 0 || tb.flows.live()+tb.flows6.live() != 0 || tb.pfx.n != 0 {
			t.Fatalf("after Shutdown: %d flows (%d IPv4, %d IPv6 entries), %d strings, %d metadata, %d IPv6 prefixes left",
				tb.live, tb.flows.live(), tb.flows6.live(), h.a.strs.len(), h.a.metas.len(), tb.pfx.n)
		}
	}
}
