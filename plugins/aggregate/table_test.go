package aggregate

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestTableMixedFamilies: IPv4 flows keep their addresses inline, IPv6
// flows in the IPv6 slab with interned /64 prefixes; through growth and
// backward-shift removals every live key is still found at its own entry,
// with its own addresses, and removed keys are not; a prefix is forgotten
// when its last flow goes.
func TestTableMixedFamilies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxFlows int
	}{
		{"fingerprints", 20000},
		{"no fingerprint bits", maxFlowsLimit}, // idBits 31: every probe compares the entry
	} {
		t.Run(tc.name, func(t *testing.T) { checkMixedFamilies(t, tc.maxFlows) })
	}
}

func checkMixedFamilies(t *testing.T, maxFlows int) {
	const n = 20000
	tb := newTable(maxFlows)
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
			// 8 source prefixes (odd i%16: Nodes' Pod CIDRs), one destination.
			k.src = netip.AddrFrom16([16]byte{0xfd, 0, 7: byte(i % 16), 14: byte(i >> 8), 15: byte(i)}).As16()
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
		_, slot, ok := tb.find(k, scopes[i], h)
		if ok {
			t.Fatalf("key %d found before insertion", i)
		}
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
				t.Fatalf("key %d: found=%v at %#x, want %#x", i, ok, j, idx[i])
			}
			src, dst := tb.addrs(j)
			if src.As16() != k.src || dst.As16() != k.dst {
				t.Fatalf("key %d: addresses %v %v", i, src, dst)
			}
		}
	}
	check(func(int) bool { return false })
	if got := tb.pfx.n; got != 9 {
		t.Errorf("%d prefixes interned, want 9", got)
	}
	for i := range keys {
		if i%4 == 1 || i%4 == 2 {
			tb.remove(idx[i])
		}
	}
	check(func(i int) bool { return i%4 == 1 || i%4 == 2 })
	if want := n / 2; tb.live != want {
		t.Errorf("live %d, want %d", tb.live, want)
	}
	if v4, v6 := tb.flows.live(), tb.flows6.live(); v4 != n/4 || v6 != n/4 {
		t.Errorf("%d IPv4 and %d IPv6 entries held, want %d each", v4, v6, n/4)
	}
	// i%4 == 3 remain: odd i, so i%16 ∈ {3, 7, 11, 15}; plus the destination.
	if got := tb.pfx.n; got != 5 {
		t.Errorf("%d prefixes interned after removals, want 5", got)
	}
	for i := range keys {
		if i%4 == 0 || i%4 == 3 {
			tb.remove(idx[i])
		}
	}
	check(func(int) bool { return true })
	if tb.live != 0 || tb.flows.live() != 0 || tb.flows6.live() != 0 || tb.pfx.n != 0 {
		t.Errorf("empty table holds %d flows, %d+%d entries, %d prefixes", tb.live, tb.flows.live(), tb.flows6.live(), tb.pfx.n)
	}
	for i, w := range tb.index {
		if w != 0 {
			t.Fatalf("index slot %d still %#x", i, w)
		}
	}
}

// TestPrefixes: interning counts references, the last release forgets a
// prefix and its id is reused; through growth and backward-shift removals
// every live prefix keeps its id.
func TestPrefixes(t *testing.T) {
	var p prefixes
	a, b := [8]byte{0xfd, 1}, [8]byte{0xfd, 2}
	ia := p.intern(a)
	if p.intern(a) != ia || p.refs[ia] != 2 {
		t.Fatalf("second intern of a: refs %d", p.refs[ia])
	}
	p.release(ia)
	p.release(ia)
	if p.n != 0 {
		t.Fatalf("%d prefixes after a's last release", p.n)
	}
	if ib := p.intern(b); ib != ia || p.refs[ib] != 1 || p.p[ib] != b {
		t.Fatalf("b got id %d (refs %d), want a's freed id %d", ib, p.refs[ib], ia)
	}
	p.release(ia)
	const n = 5000
	ids := make([]uint32, n)
	key := func(i int) [8]byte { return [8]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 8), 5: byte(i)} }
	for i := range n {
		ids[i] = p.intern(key(i))
	}
	for i := 0; i < n; i += 3 {
		p.release(ids[i])
	}
	for i := range n {
		id := p.intern(key(i)) // a released one comes back with some free id
		if i%3 != 0 && id != ids[i] {
			t.Fatalf("prefix %d moved from id %d to %d", i, ids[i], id)
		}
		if p.p[id] != key(i) {
			t.Fatalf("id %d holds %x, want %x", id, p.p[id], key(i))
		}
		p.release(id)
		if i%3 != 0 {
			p.release(id)
		}
	}
	if p.n != 0 {
		t.Fatalf("%d prefixes left", p.n)
	}
	for s, w := range p.index {
		if w != 0 {
			t.Fatalf("index slot %d still %d", s, w)
		}
	}
}
