package aggregate

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"unsafe"
)

// tuple is the 5-tuple part of a Flow Key (RFC 7015 §2) as a record
// gives it: the lookup key, never stored.
type tuple struct {
	src, dst     [16]byte // IPv4 in the last 4 bytes when kind&kindV6 == 0
	sport, dport uint16
	proto        uint8
	kind         uint8 // kindUsed | kindV6 | kindAntrea
}

// ctuple is a tuple as an entry stores it, 14 bytes: IPv4 addresses
// inline; IPv6 ones (32 bytes) in the table's v6 slab, so an IPv4 flow
// does not carry 24 bytes of zeros.
type ctuple struct {
	// IPv4: source and destination address. IPv6: the v6 slab index+1,
	// then a 32-bit fingerprint of the key (the hash's high half), so a
	// lookup reads the slab only on a likely match.
	addr         [8]byte
	sport, dport uint16
	proto        uint8
	kind         uint8
}

// v6addrs are an IPv6 flow's addresses.
type v6addrs struct{ src, dst [16]byte }

// compact returns t's stored form, but for the v6 slab index.
func compact(t *tuple, h uint64) ctuple {
	c := ctuple{sport: t.sport, dport: t.dport, proto: t.proto, kind: t.kind}
	if t.kind&kindV6 == 0 {
		copy(c.addr[0:4], t.src[12:16])
		copy(c.addr[4:8], t.dst[12:16])
	} else {
		binary.LittleEndian.PutUint32(c.addr[4:8], uint32(h>>32))
	}
	return c
}

const (
	kindUsed   = 1 << 0 // the slab slot holds a flow
	kindV6     = 1 << 1
	kindAntrea = 1 << 2 // an Antrea record: keyed by 5-tuple alone
	kindICMP   = 1 << 3 // dport holds the ICMP type and code (not exported as a port)
)

// ctrl bits of an entry.
const (
	ctrlCorrelate = 1 << iota // an inter-Node flow whose two halves are awaited
	ctrlHaveSrc               // the source Node's half has arrived
	ctrlHaveDst               // the destination Node's half has arrived
	ctrlDirty                 // news since the last export
	ctrlOrphan                // exported alone after correlation_timeout
	ctrlEndSrc                // the source side reported the end of the flow
	ctrlEndDst                // the destination side reported the end of the flow
)

// side holds one exporting process's counters of a flow: totals (the newest
// total the exporter reported, or the sum of its deltas) and the deltas
// summed since the last export. Index 0..3: packets, octets, reverse
// packets, reverse octets (RFC 5103).
type side struct {
	tot [4]uint64
	del [4]uint32 // a delta that would overflow exports the flow first
}

// entry is one live flow: 104 bytes and no pointers, so a slab of them is
// never scanned by the GC.
type entry struct {
	t     ctuple // 14 bytes
	ctrl  uint8
	flags uint8 // newest flowEndReason in the low 3 bits
	// scope completes the key of a non-Antrea flow: observation domain and
	// the interned exporter address (RFC 7011 §3.1: a domain is scoped to
	// its exporter). An Antrea flow keeps its ext index+1 and its interned
	// tcpState here instead.
	scope    [2]uint32
	start    int64  // flowStart, ns since the Unix epoch
	endOff   uint32 // flowEnd − start, ms
	lastEnd  uint32 // endOff at the last export (throughput interval start)
	touched  uint32 // tick of the last record
	exported uint32 // tick of the last export, or of creation
	meta     uint32 // interned metadata of the (source) half, see meta.go
	present  uint16 // originalFlowsPresent in this interval (saturates)
	origs    uint8  // originalFlowsInitiated<<4 | originalFlowsCompleted (each saturates at 15)
	tcpFlags uint8  // OR of tcpControlBits (low 8 bits)
	s        side   // source side, or the only side
}

// ext is the destination side of an inter-Node Antrea flow, and each
// side's newest flowEnd (flowEndSecondsFromSourceNode/…DestinationNode).
type ext struct {
	meta uint32
	end  [2]uint32 // seconds since the Unix epoch, 0 until the side reports
	_    uint32
	s    side
}

var _ [104 - unsafe.Sizeof(entry{})]struct{} // entry must stay ≤ 104 bytes

const chunkBits = 12
const chunkSize = 1 << chunkBits

// slab is a growable array of T in fixed chunks, with a free list; indexes
// are stable for an element's life.
type slab[T any] struct {
	chunks [][]T
	n      uint32 // high-water mark
	free   []uint32
}

func (s *slab[T]) at(i uint32) *T { return &s.chunks[i>>chunkBits][i&(chunkSize-1)] }

func (s *slab[T]) alloc() uint32 {
	if k := len(s.free); k > 0 {
		i := s.free[k-1]
		s.free = s.free[:k-1]
		return i
	}
	i := s.n
	if int(i>>chunkBits) == len(s.chunks) {
		s.chunks = append(s.chunks, make([]T, chunkSize))
	}
	s.n++
	return i
}

func (s *slab[T]) release(i uint32) {
	var zero T
	*s.at(i) = zero
	s.free = append(s.free, i)
}

func (s *slab[T]) bytes() int {
	var zero T
	return len(s.chunks)*chunkSize*int(unsafe.Sizeof(zero)) + 4*cap(s.free)
}

// table is an open-addressing hash index (linear probing, backward-shift
// deletion, no tombstones) of uint32 slab indexes+1 over a slab of entries.
// Not safe for concurrent use.
type table struct {
	index []uint32
	mask  uint64
	flows slab[entry]
	exts  slab[ext]
	v6    slab[v6addrs]
	live  int
	max   int
}

func newTable(maxFlows int) *table {
	n := 1024
	for n < 2*maxFlows && n < 1<<31 {
		n <<= 1
	}
	// Start small and double up to n: an idle aggregator costs little.
	start := min(n, 1<<16)
	return &table{index: make([]uint32, start), mask: uint64(start - 1), max: maxFlows}
}

// hash mixes the key's words (a multiply-xorshift per word).
func hash(t *tuple, scope [2]uint32) uint64 {
	if t.kind&kindV6 == 0 {
		return hash4(t.src[12:16], t.dst[12:16], t.sport, t.dport, t.proto, t.kind, scope)
	}
	return hash6(t.src, t.dst, t.sport, t.dport, t.proto, t.kind, scope)
}

// hashOf is the hash of the stored flow e.
func (tb *table) hashOf(e *entry) uint64 {
	c := &e.t
	if c.kind&kindV6 == 0 {
		return hash4(c.addr[0:4], c.addr[4:8], c.sport, c.dport, c.proto, c.kind, e.scope)
	}
	a := tb.v6.at(binary.LittleEndian.Uint32(c.addr[0:4]) - 1)
	return hash6(a.src, a.dst, c.sport, c.dport, c.proto, c.kind, e.scope)
}

func hash4(src, dst []byte, sport, dport uint16, proto, kind uint8, scope [2]uint32) uint64 {
	const m = 0x9E3779B97F4A7C15
	h := uint64(0x243F6A8885A308D3)
	mix := func(w uint64) {
		hi, lo := bits.Mul64(h^w, m)
		h = hi ^ lo
	}
	mix(uint64(binary.LittleEndian.Uint32(src)) | uint64(binary.LittleEndian.Uint32(dst))<<32)
	mix(uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32 | uint64(kind)<<40)
	if kind&kindAntrea == 0 {
		mix(uint64(scope[0]) | uint64(scope[1])<<32)
	}
	return h
}

func hash6(src, dst [16]byte, sport, dport uint16, proto, kind uint8, scope [2]uint32) uint64 {
	const m = 0x9E3779B97F4A7C15
	h := uint64(0x243F6A8885A308D3)
	mix := func(w uint64) {
		hi, lo := bits.Mul64(h^w, m)
		h = hi ^ lo
	}
	mix(binary.LittleEndian.Uint64(src[0:]))
	mix(binary.LittleEndian.Uint64(src[8:]))
	mix(binary.LittleEndian.Uint64(dst[0:]))
	mix(binary.LittleEndian.Uint64(dst[8:]))
	mix(uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32 | uint64(kind)<<40)
	if kind&kindAntrea == 0 {
		mix(uint64(scope[0]) | uint64(scope[1])<<32)
	}
	return h
}

// matches reports whether e is the flow of key t (c its stored form).
func (tb *table) matches(e *entry, t *tuple, c *ctuple, scope [2]uint32) bool {
	if e.t.sport != c.sport || e.t.dport != c.dport || e.t.proto != c.proto || e.t.kind != c.kind ||
		(c.kind&kindAntrea == 0 && e.scope != scope) {
		return false
	}
	if c.kind&kindV6 == 0 {
		return e.t.addr == c.addr
	}
	if [4]byte(e.t.addr[4:8]) != [4]byte(c.addr[4:8]) {
		return false
	}
	a := tb.v6.at(binary.LittleEndian.Uint32(e.t.addr[0:4]) - 1)
	return a.src == t.src && a.dst == t.dst
}

// find returns the slab index of the flow with key (t, scope), or false and
// the index slot where it would go.
func (tb *table) find(t *tuple, scope [2]uint32, h uint64) (idx uint32, slot uint64, ok bool) {
	c := compact(t, h)
	for s := h & tb.mask; ; s = (s + 1) & tb.mask {
		v := tb.index[s]
		if v == 0 {
			return 0, s, false
		}
		if tb.matches(tb.flows.at(v-1), t, &c, scope) {
			return v - 1, s, true
		}
	}
}

// insert adds a zeroed entry for the key at slot (from find) and returns
// its slab index. The caller checks live < max first.
func (tb *table) insert(t *tuple, scope [2]uint32, h uint64, slot uint64) uint32 {
	if 2*(tb.live+1) > len(tb.index) && len(tb.index) < 2*tb.max+2048 {
		tb.grow()
		_, slot, _ = tb.find(t, scope, h)
	}
	i := tb.flows.alloc()
	e := tb.flows.at(i)
	e.t = compact(t, h)
	if t.kind&kindV6 != 0 {
		j := tb.v6.alloc()
		*tb.v6.at(j) = v6addrs{t.src, t.dst}
		binary.LittleEndian.PutUint32(e.t.addr[0:4], j+1)
	}
	e.scope = scope
	tb.index[slot] = i + 1
	tb.live++
	return i
}

// addrs returns flow e's source and destination addresses.
func (tb *table) addrs(e *entry) (src, dst netip.Addr) {
	if e.t.kind&kindV6 == 0 {
		return netip.AddrFrom4([4]byte(e.t.addr[0:4])), netip.AddrFrom4([4]byte(e.t.addr[4:8]))
	}
	a := tb.v6.at(binary.LittleEndian.Uint32(e.t.addr[0:4]) - 1)
	return netip.AddrFrom16(a.src), netip.AddrFrom16(a.dst)
}

func (tb *table) grow() {
	old := tb.index
	tb.index = make([]uint32, 2*len(old))
	tb.mask = uint64(len(tb.index) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		s := tb.hashOf(tb.flows.at(v-1)) & tb.mask
		for tb.index[s] != 0 {
			s = (s + 1) & tb.mask
		}
		tb.index[s] = v
	}
}

// remove deletes the flow at slab index i, and its ext.
func (tb *table) remove(i uint32) {
	e := tb.flows.at(i)
	s := tb.hashOf(e) & tb.mask
	for tb.index[s] != i+1 {
		s = (s + 1) & tb.mask
	}
	// Backward-shift deletion: move later members of the probe run into
	// the hole when their home slot is at or before it.
	for {
		tb.index[s] = 0
		j := s
		for {
			j = (j + 1) & tb.mask
			v := tb.index[j]
			if v == 0 {
				goto done
			}
			home := tb.hashOf(tb.flows.at(v-1)) & tb.mask
			// Is home cyclically outside (s, j]?
			if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
				tb.index[s] = v
				s = j
				break
			}
		}
	}
done:
	if e.t.kind&kindAntrea != 0 && e.scope[0] != 0 {
		tb.exts.release(e.scope[0] - 1)
	}
	if e.t.kind&kindV6 != 0 {
		tb.v6.release(binary.LittleEndian.Uint32(e.t.addr[0:4]) - 1)
	}
	tb.flows.release(i)
	tb.live--
}

// bytes is the memory the table holds, excluding interned strings.
func (tb *table) bytes() int {
	return 4*len(tb.index) + tb.flows.bytes() + tb.exts.bytes() + tb.v6.bytes()
}
