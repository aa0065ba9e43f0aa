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

// ctuple is a tuple as an entry stores it, 14 bytes. IPv4: both addresses
// inline. IPv6: the interned ids of the two /64 prefixes (see prefixes);
// the interface IDs are in the entry6 around the entry.
type ctuple struct {
	addr         [8]byte
	sport, dport uint16
	proto        uint8
	kind         uint8
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

// entry6 is an IPv6 flow, 120 bytes: the entry (its ctuple holds the /64
// prefixes' ids) and the two addresses' interface IDs (low 64 bits).
type entry6 struct {
	entry
	iid [2][8]byte
}

// ext is the destination side of an inter-Node Antrea flow, and each
// side's newest flowEnd (flowEndSecondsFromSourceNode/…DestinationNode).
type ext struct {
	meta uint32
	end  [2]uint32 // seconds since the Unix epoch, 0 until the side reports
	_    uint32
	s    side
}

var (
	_ [104 - unsafe.Sizeof(entry{})]struct{}  // entry must stay ≤ 104 bytes
	_ [120 - unsafe.Sizeof(entry6{})]struct{} // entry6 must stay ≤ 120 bytes
)

// Slabs grow by chunks of 1024 elements (104 or 120 KiB): small enough
// that a partly used last chunk adds little per flow.
const chunkBits = 10
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

func (s *slab[T]) live() int { return int(s.n) - len(s.free) }

func (s *slab[T]) bytes() int {
	var zero T
	return len(s.chunks)*chunkSize*int(unsafe.Sizeof(zero)) + 4*cap(s.free)
}

// prefixes interns IPv6 /64 prefixes with reference counts, so an IPv6
// flow stores two 4-byte ids instead of 16 bytes: flows share prefixes (a
// Kubernetes Node's Pod CIDR is one /64, kube-controller-manager's
// node-cidr-mask-size-ipv6 default). Its own open-addressing index (ids+1,
// linear probing, backward-shift deletion, at most 13/16 full) keeps it
// pointer-free and its size exact. Not safe for concurrent use.
type prefixes struct {
	index []uint32
	mask  uint64
	p     [][8]byte
	refs  []uint32
	free  []uint32
	n     int // live prefixes
}

func prefixHash(k [8]byte) uint64 {
	hi, lo := bits.Mul64(binary.LittleEndian.Uint64(k[:])^0x243F6A8885A308D3, 0x9E3779B97F4A7C15)
	return hi ^ lo
}

// intern returns k's id and counts one more reference.
func (p *prefixes) intern(k [8]byte) uint32 {
	if (p.n+1)*16 > len(p.index)*loadNum {
		p.grow()
	}
	s := prefixHash(k) & p.mask
	for ; p.index[s] != 0; s = (s + 1) & p.mask {
		if i := p.index[s] - 1; p.p[i] == k {
			p.refs[i]++
			return i
		}
	}
	var i uint32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
		p.p[i], p.refs[i] = k, 1
	} else {
		i = uint32(len(p.p))
		p.p = append(p.p, k)
		p.refs = append(p.refs, 1)
	}
	p.index[s] = i + 1
	p.n++
	return i
}

func (p *prefixes) grow() {
	old := p.index
	p.index = make([]uint32, max(2*len(old), 64))
	p.mask = uint64(len(p.index) - 1)
	for _, w := range old {
		if w != 0 {
			s := prefixHash(p.p[w-1]) & p.mask
			for p.index[s] != 0 {
				s = (s + 1) & p.mask
			}
			p.index[s] = w
		}
	}
}

// release drops one reference to id i; the last one forgets the prefix.
func (p *prefixes) release(i uint32) {
	if p.refs[i]--; p.refs[i] > 0 {
		return
	}
	s := prefixHash(p.p[i]) & p.mask
	for p.index[s] != i+1 {
		s = (s + 1) & p.mask
	}
	for { // backward-shift deletion, as in table.remove
		p.index[s] = 0
		j := s
		for {
			j = (j + 1) & p.mask
			v := p.index[j]
			if v == 0 {
				p.p[i] = [8]byte{}
				p.free = append(p.free, i)
				p.n--
				return
			}
			home := prefixHash(p.p[v-1]) & p.mask
			if (j > s && (home <= s || home > j)) || (j < s && home <= s && home > j) {
				p.index[s] = v
				s = j
				break
			}
		}
	}
}

func (p *prefixes) bytes() int {
	return 4*len(p.index) + 8*cap(p.p) + 4*cap(p.refs) + 4*cap(p.free)
}

// id6 marks a flow id of the IPv6 slab; the rest is the slab index.
const id6 = 1 << 31

// table is an open-addressing hash index (linear probing, backward-shift
// deletion, no tombstones) over two slabs of entries, IPv4 and IPv6. An
// index word is 0 (empty) or, from its low bits up: the flow's slab index+1
// (idBits), the family (1 bit, set for IPv6), and as many bits of the key's
// hash as remain (a fingerprint: a probe reads an entry only when they
// match, so the index can run up to 13/16 full). Not safe for concurrent
// use.
type table struct {
	index    []uint32
	size     uint64 // len(index)
	maxIndex int    // the index does not grow beyond this
	idBits   uint   // bits of slab index+1: max_flows < 1<<idBits
	fpMask   uint32 // fingerprint bits of an index word; 0 when max_flows ≥ 2^30
	flows    slab[entry]
	flows6   slab[entry6]
	exts     slab[ext]
	pfx      prefixes
	live     int
	max      int
}

// The index grows by half when it would be more than loadNum/16 full, so
// it is 13/24 to 13/16 full: 5 to 7.4 bytes per flow.
const loadNum = 13

func newTable(maxFlows int) *table {
	n := max(1024, (maxFlows*16+loadNum-1)/loadNum) // holds max_flows at most loadNum/16 full
	// Start small and grow up to n: an idle aggregator costs little.
	start := min(n, 1<<16)
	idBits := uint(bits.Len(uint(maxFlows)))
	return &table{
		index: make([]uint32, start), size: uint64(start), maxIndex: n, max: maxFlows,
		idBits: idBits, fpMask: ^uint32(0) << (idBits + 1),
	}
}

// home is h's first slot: its low 32 bits scaled to the index size
// (Lemire's fastrange), so the size need not be a power of two.
func (tb *table) home(h uint64) uint64 { return uint64(uint32(h)) * tb.size >> 32 }

// next is the slot after s, cyclically.
func (tb *table) next(s uint64) uint64 {
	if s++; s == tb.size {
		return 0
	}
	return s
}

// at returns flow id's entry.
func (tb *table) at(id uint32) *entry {
	if id&id6 == 0 {
		return tb.flows.at(id)
	}
	return &tb.flows6.at(id &^ id6).entry
}

// word is flow id's index word without the fingerprint.
func (tb *table) word(id uint32) uint32 {
	w := id&^id6 + 1
	if id&id6 != 0 {
		w |= 1 << tb.idBits
	}
	return w
}

// idOf decodes an index word.
func (tb *table) idOf(w uint32) uint32 {
	id := w&(1<<tb.idBits-1) - 1
	if w>>tb.idBits&1 != 0 {
		id |= id6
	}
	return id
}

// fingerprint is h's fingerprint bits as an index word holds them.
func (tb *table) fingerprint(h uint64) uint32 { return uint32(h>>32) & tb.fpMask }

// hash mixes the key's words (a multiply-xorshift per word).
func hash(t *tuple, scope [2]uint32) uint64 {
	if t.kind&kindV6 == 0 {
		return hash4(t.src[12:16], t.dst[12:16], t.sport, t.dport, t.proto, t.kind, scope)
	}
	return hash6(t.src, t.dst, t.sport, t.dport, t.proto, t.kind, scope)
}

// hashOf is the hash of the stored flow id.
func (tb *table) hashOf(id uint32) uint64 {
	e := tb.at(id)
	c := &e.t
	if id&id6 == 0 {
		return hash4(c.addr[0:4], c.addr[4:8], c.sport, c.dport, c.proto, c.kind, e.scope)
	}
	src, dst := tb.addrs(id)
	return hash6(src.As16(), dst.As16(), c.sport, c.dport, c.proto, c.kind, e.scope)
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

// matches reports whether flow id is the flow of key (t, scope).
func (tb *table) matches(id uint32, t *tuple, scope [2]uint32) bool {
	e := tb.at(id)
	if e.t.sport != t.sport || e.t.dport != t.dport || e.t.proto != t.proto || e.t.kind != t.kind ||
		(t.kind&kindAntrea == 0 && e.scope != scope) {
		return false
	}
	if id&id6 == 0 {
		return [4]byte(e.t.addr[0:4]) == [4]byte(t.src[12:16]) && [4]byte(e.t.addr[4:8]) == [4]byte(t.dst[12:16])
	}
	x := tb.flows6.at(id &^ id6)
	return x.iid[0] == [8]byte(t.src[8:16]) && x.iid[1] == [8]byte(t.dst[8:16]) &&
		tb.pfx.p[binary.LittleEndian.Uint32(e.t.addr[0:4])] == [8]byte(t.src[0:8]) &&
		tb.pfx.p[binary.LittleEndian.Uint32(e.t.addr[4:8])] == [8]byte(t.dst[0:8])
}

// find returns the id of the flow with key (t, scope), or false and the
// index slot where it would go.
func (tb *table) find(t *tuple, scope [2]uint32, h uint64) (id uint32, slot uint64, ok bool) {
	sel := tb.fpMask | 1<<tb.idBits
	want := tb.fingerprint(h)
	if t.kind&kindV6 != 0 {
		want |= 1 << tb.idBits
	}
	for s := tb.home(h); ; s = tb.next(s) {
		w := tb.index[s]
		if w == 0 {
			return 0, s, false
		}
		if w&sel == want && tb.matches(tb.idOf(w), t, scope) {
			return tb.idOf(w), s, true
		}
	}
}

// peek returns the first flow along h's probe run (up to 4 slots) whose
// fingerprint matches: likely h's flow, to load ahead of find.
func (tb *table) peek(h uint64) (id uint32, ok bool) {
	fp := tb.fingerprint(h)
	s := tb.home(h)
	for range 4 {
		w := tb.index[s]
		if w == 0 {
			return 0, false
		}
		if w&tb.fpMask == fp {
			return tb.idOf(w), true
		}
		s = tb.next(s)
	}
	return 0, false
}

// insert adds a zeroed entry for the key at slot (from find) and returns
// its id. The caller checks live < max first.
func (tb *table) insert(t *tuple, scope [2]uint32, h uint64, slot uint64) uint32 {
	if (tb.live+1)*16 > len(tb.index)*loadNum && len(tb.index) < tb.maxIndex {
		tb.grow()
		_, slot, _ = tb.find(t, scope, h)
	}
	var id uint32
	var e *entry
	if t.kind&kindV6 == 0 {
		id = tb.flows.alloc()
		e = tb.flows.at(id)
		copy(e.t.addr[0:4], t.src[12:16])
		copy(e.t.addr[4:8], t.dst[12:16])
	} else {
		j := tb.flows6.alloc()
		x := tb.flows6.at(j)
		x.iid = [2][8]byte{[8]byte(t.src[8:16]), [8]byte(t.dst[8:16])}
		e = &x.entry
		binary.LittleEndian.PutUint32(e.t.addr[0:4], tb.pfx.intern([8]byte(t.src[0:8])))
		binary.LittleEndian.PutUint32(e.t.addr[4:8], tb.pfx.intern([8]byte(t.dst[0:8])))
		id = j | id6
	}
	e.t.sport, e.t.dport, e.t.proto, e.t.kind = t.sport, t.dport, t.proto, t.kind
	e.scope = scope
	tb.index[slot] = tb.word(id) | tb.fingerprint(h)
	tb.live++
	return id
}

// addrs returns flow id's source and destination addresses.
func (tb *table) addrs(id uint32) (src, dst netip.Addr) {
	e := tb.at(id)
	if id&id6 == 0 {
		return netip.AddrFrom4([4]byte(e.t.addr[0:4])), netip.AddrFrom4([4]byte(e.t.addr[4:8]))
	}
	x := tb.flows6.at(id &^ id6)
	var s, d [16]byte
	copy(s[:8], tb.pfx.p[binary.LittleEndian.Uint32(e.t.addr[0:4])][:])
	copy(d[:8], tb.pfx.p[binary.LittleEndian.Uint32(e.t.addr[4:8])][:])
	copy(s[8:], x.iid[0][:])
	copy(d[8:], x.iid[1][:])
	return netip.AddrFrom16(s), netip.AddrFrom16(d)
}

// slabLen is the high-water mark of the slab of family fam (0 or id6).
func (tb *table) slabLen(fam uint32) uint32 {
	if fam == 0 {
		return tb.flows.n
	}
	return tb.flows6.n
}

// n is the number of flow ids to scan: both slabs' high-water marks.
func (tb *table) n() uint32 { return tb.flows.n + tb.flows6.n }

// nth maps 0 ≤ k < n() to a flow id (which may be free: kind 0).
func (tb *table) nth(k uint32) uint32 {
	if k < tb.flows.n {
		return k
	}
	return (k - tb.flows.n) | id6
}

func (tb *table) grow() {
	old := tb.index
	tb.index = make([]uint32, min(len(old)+len(old)/2, tb.maxIndex))
	tb.size = uint64(len(tb.index))
	for _, w := range old {
		if w == 0 {
			continue
		}
		s := tb.home(tb.hashOf(tb.idOf(w)))
		for tb.index[s] != 0 {
			s = tb.next(s)
		}
		tb.index[s] = w // the fingerprint does not depend on the size
	}
}

// remove deletes flow id, and its ext and prefix references.
func (tb *table) remove(id uint32) {
	e := tb.at(id)
	s := tb.home(tb.hashOf(id))
	sel, w := ^tb.fpMask, tb.word(id)
	for tb.index[s]&sel != w {
		s = tb.next(s)
	}
	// Backward-shift deletion: move later members of the probe run into
	// the hole when their home slot is at or before it.
	for {
		tb.index[s] = 0
		j := s
		for {
			j = tb.next(j)
			v := tb.index[j]
			if v == 0 {
				goto done
			}
			home := tb.home(tb.hashOf(tb.idOf(v)))
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
	if id&id6 == 0 {
		tb.flows.release(id)
	} else {
		tb.pfx.release(binary.LittleEndian.Uint32(e.t.addr[0:4]))
		tb.pfx.release(binary.LittleEndian.Uint32(e.t.addr[4:8]))
		tb.flows6.release(id &^ id6)
	}
	tb.live--
}

// bytes is the memory the table holds, excluding interned strings.
func (tb *table) bytes() int {
	return 4*len(tb.index) + tb.flows.bytes() + tb.flows6.bytes() + tb.exts.bytes() + tb.pfx.bytes()
}
