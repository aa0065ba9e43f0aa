package podlabels

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// The snapshot's lookup tables are open-addressing hash tables with linear
// probing, built once per snapshot and then only read. A Go map costs two
// to three times as much per lookup here (generic hashing of a 16-byte key,
// control-word matching); these hash the address as two integers and hit
// one cache line in the common case.

// addrKey is an address as two integers (IPv4 as IPv4-mapped IPv6).
type addrKey struct{ hi, lo uint64 }

func keyOf(a netip.Addr) addrKey {
	if a.Is4() {
		// The common case, without the 16-byte round trip.
		v := a.As4()
		return addrKey{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(v[:]))}
	}
	b := a.As16()
	return addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// hash mixes a key into 64 bits; tables use the top bits (Fibonacci hashing).
func (k addrKey) hash(extra uint64) uint64 {
	h := (k.hi*0x9e3779b97f4a7c15 ^ k.lo ^ extra<<48) * 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

// tableBits returns log2 of a power-of-two size that keeps n entries at
// most half full.
func tableBits(n int) uint {
	if n < 4 {
		return 3
	}
	return uint(bits.Len(uint(2*n - 1)))
}

type addrSlot struct {
	key addrKey
	ep  *endpoint // nil: empty slot
}

// addrTable maps addresses to endpoints.
type addrTable struct {
	slots []addrSlot
	shift uint
}

func newAddrTable(n int) *addrTable {
	b := tableBits(n)
	return &addrTable{slots: make([]addrSlot, 1<<b), shift: 64 - b}
}

// get returns the endpoint of a, or nil.
func (t *addrTable) get(a netip.Addr) *endpoint {
	k := keyOf(a)
	mask := uint64(len(t.slots) - 1)
	for i := k.hash(0) >> t.shift; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.ep == nil {
			return nil
		}
		if s.key == k {
			return s.ep
		}
	}
}

// add inserts a unless it is present; it reports whether it inserted.
func (t *addrTable) add(a netip.Addr, ep *endpoint) bool {
	k := keyOf(a)
	mask := uint64(len(t.slots) - 1)
	for i := k.hash(0) >> t.shift; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.ep == nil {
			s.key, s.ep = k, ep
			return true
		}
		if s.key == k {
			return false
		}
	}
}

type svcSlot struct {
	key  addrKey
	pp   uint32 // port<<8 | protocol, +1 so that zero means empty
	name string
}

// svcTable maps (ClusterIP, port, protocol) to a Service port name.
type svcTable struct {
	slots []svcSlot
	shift uint
	n     int
}

func newSvcTable(n int) *svcTable {
	b := tableBits(n)
	return &svcTable{slots: make([]svcSlot, 1<<b), shift: 64 - b}
}

func portProto(port uint16, proto uint8) uint32 { return uint32(port)<<8 | uint32(proto) + 1 }

// get returns the Service port name, or "".
func (t *svcTable) get(a netip.Addr, port uint16, proto uint8) string {
	if t.n == 0 {
		return ""
	}
	k, pp := keyOf(a), portProto(port, proto)
	mask := uint64(len(t.slots) - 1)
	for i := k.hash(uint64(pp)) >> t.shift; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.pp == 0 {
			return ""
		}
		if s.pp == pp && s.key == k {
			return s.name
		}
	}
}

// add inserts the Service port unless it is present.
func (t *svcTable) add(a netip.Addr, port uint16, proto uint8, name string) {
	k, pp := keyOf(a), portProto(port, proto)
	mask := uint64(len(t.slots) - 1)
	for i := k.hash(uint64(pp)) >> t.shift; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.pp == 0 {
			s.key, s.pp, s.name = k, pp, name
			t.n++
			return
		}
		if s.pp == pp && s.key == k {
			return
		}
	}
}

func (t *svcTable) len() int { return t.n }
