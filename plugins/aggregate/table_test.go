package aggregate

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestTableMixedFamilies: IPv4 flows keep their addresses inline, IPv6
// flows in the v6 slab; through growth and backward-shift removals every
// live key is still found at its own entry, with its own addresses, and
// removed keys are not.
func TestTableMixedFamilies(t *testing.T) {
	const n = 20000
	tb := newTable(n)
	keys := make([]tuple, n)
	scopes := make([][2]uint32, n)
	idx := make([]uint32, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		k := &keys[i]
		if i%2 == 0 {
			k.src = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}).As16()
			k.dst = netip.AddrFrom4([4]byte{10, 9, 9, 9}).As16()
			k.kind = kindUsed
		} else {
			k.src = netip.AddrFrom16([16]byte{0xfd, 0, 14: byte(i >> 8), 15: byte(i)}).As16()
			k.dst = netip.MustParseAddr("fd00::9").As16()
			k.kind = kindUsed | kindV6
		}
		k.sport, k.dport, k.proto = uint16(rng.IntN(4)), 80, 6
		if i%3 == 0 {
			k.kind |= kindAntrea
		} else {
			scopes[i] = [2]uint32{uint32(i % 5), 1}
		}
		h := hash(k, scopes[i])
		if _, _, ok := tb.find(k, scopes[i], h); ok {
			t.Fatalf("key %d found before insertion", i)
		}
		_, slot, _ := tb.find(k, scopes[i], h)
		idx[i] = tb.insert(k, scopes[i], h, slot)
	}
	check := func(removed func(int) bool) {
		t.Helper()
		for i := range keys {
			k := &keys[i]
			j, _, ok := tb.find(k, scopes[i], hash(k, scopes[i]))
			if removed(i) {
				if ok {
					t.Fatalf("removed key %d found", i)
				}
				continue
			}
			if !ok || j != idx[i] {
				t.Fatalf("key %d: found=%v at %d, want %d", i, ok, j, idx[i])
			}
			src, dst := tb.addrs(tb.flows.at(j))
			if src.As16() != k.src || dst.As16() != k.dst {
				t.Fatalf("key %d: addresses %v %v", i, src, dst)
			}
		}
	}
	check(func(int) bool { return false })
	for i := range keys {
		if i%4 == 1 || i%4 == 2 {
			tb.remove(idx[i])
		}
	}
	check(func(i int) bool { return i%4 == 1 || i%4 == 2 })
	if want := n / 2; tb.live != want {
		t.Errorf("live %d, want %d", tb.live, want)
	}
	if v6 := int(tb.v6.n) - len(tb.v6.free); v6 != n/4 {
		t.Errorf("%d IPv6 address pairs held, want %d", v6, n/4)
	}
}
