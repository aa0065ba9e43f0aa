package conntrack

import (
	"hash/maphash"
	"net/netip"
	"unsafe"

	ct "github.com/ti-mo/conntrack"
)

// maxStoreSize bounds max_connections: an index slot holds entry index + 1
// in 24 bits.
const maxStoreSize = 1<<24 - 1

// key identifies a connection: the conntrack original tuple and zone. For
// ICMP, sport holds the echo identifier and dport type<<8|code (as
// conntrack's tuple does). 40 bytes, no padding, hashed as bytes.
type key struct {
	src, dst     [16]byte // IPv4 in the first 4 bytes
	sport, dport uint16
	zone         uint16
	proto        uint8
	family       uint8 // 4 or 6
}

// Entry flags.
const (
	fSeen     uint8 = 1 << iota // parity of the last dump that saw the entry
	fEnded                      // gone from the table: export the end, remove
	fEndSent                    // exported with endOfFlow while dying (TCP TIME_WAIT/CLOSE)
	fNew                        // inserted by a new event, not yet seen by a dump
	fExported                   // exported at least once
	fIdleSent                   // exported as idle since the counters last changed
)

// entry is one connection of the store: 136 bytes, no pointers, so pages
// of entries are never scanned by the GC.
type entry struct {
	key
	// Totals as conntrack counts them (CTA_COUNTERS_ORIG/REPLY).
	packets, octets, rpackets, roctets uint64
	// Totals at the last export; deltas are the difference.
	xpackets, xoctets, xrpackets, xroctets uint64
	start                                  int64 // ns since epoch: conntrack's start timestamp, else first seen
	changed                                int64 // ns: when the counters last changed (last activity)
	exported                               int64 // ns: last export, or when the entry was created
	mark                                   uint32
	tcpState                               uint8
	flags                                  uint8
}

func (e *entry) news() bool {
	return e.packets != e.xpackets || e.rpackets != e.xrpackets || e.octets != e.xoctets || e.roctets != e.xroctets
}

// markExported makes the current totals the export baseline.
func (e *entry) markExported(now int64) {
	e.xpackets, e.xoctets, e.xrpackets, e.xroctets = e.packets, e.octets, e.rpackets, e.roctets
	e.exported = now
	e.flags |= fExported
}

// TCP states of conntrack (enum tcp_conntrack), and their names as
// conntrack(8) and Antrea's tcpState print them.
var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

const (
	tcpTimeWait = 7
	tcpClose    = 8
)

func tcpStateName(s uint8) string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "NONE"
}

const (
	pageShift = 10
	pageSize  = 1 << pageShift
	maxLoad   = 0.75
)

// store is the connection store: entries in fixed pages (no copy on
// growth, dense so that a scan visits only live entries) and an
// open-addressing index (linear probing, 4 bytes a slot) from key hash to
// entry. Not safe for concurrent use: one goroutine owns it.
type store struct {
	seed   maphash.Seed
	pages  []*[pageSize]entry
	n      int
	table  []uint32 // tag<<24 | (entry index + 1); 0 = empty
	mask   uint32
	max    int
	parity uint8 // fSeen or 0: flipped at the start of each dump
}

func newStore(max int) *store {
	s := &store{seed: maphash.MakeSeed(), max: max}
	s.table = make([]uint32, 1024)
	s.mask = uint32(len(s.table) - 1)
	return s
}

// Len returns the number of connections in the store.
func (s *store) Len() int { return s.n }

func (s *store) at(i int) *entry { return &s.pages[i>>pageShift][i&(pageSize-1)] }

func (s *store) hash(k *key) uint32 {
	b := unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
	return uint32(maphash.Bytes(s.seed, b))
}

// Index slots: the low 24 bits are the entry index + 1, the high 8 bits a
// tag from the hash, so a probe compares keys only when the tags match
// (1 in 256 otherwise): most probes then never touch the entry.
const (
	idxBits = 24
	idxMask = 1<<idxBits - 1
)

func tag(h uint32) uint32 { return h & 0xff000000 }

// find returns k's slot and its entry index, or -1 and the empty slot
// where it would go.
func (s *store) find(k *key, h uint32) (slot uint32, idx int) {
	i := h & s.mask
	t := tag(h)
	for {
		v := s.table[i]
		if v == 0 {
			return i, -1
		}
		if v&^idxMask == t && s.at(int(v&idxMask-1)).key == *k {
			return i, int(v&idxMask - 1)
		}
		i = (i + 1) & s.mask
	}
}

// lookup returns k's entry or nil.
func (s *store) lookup(k *key) *entry {
	if _, i := s.find(k, s.hash(k)); i >= 0 {
		return s.at(i)
	}
	return nil
}

func (s *store) grow() {
	s.table = make([]uint32, 2*len(s.table))
	s.mask = uint32(len(s.table) - 1)
	for i := 0; i < s.n; i++ {
		h := s.hash(&s.at(i).key)
		slot, _ := s.find(&s.at(i).key, h)
		s.table[slot] = tag(h) | uint32(i+1)
	}
}

// remove deletes entry i; the last entry moves into its place, so a scan
// at i must look at i again.
func (s *store) remove(i int) {
	slot, _ := s.find(&s.at(i).key, s.hash(&s.at(i).key))
	s.deleteSlot(slot)
	last := s.n - 1
	if i != last {
		le := s.at(last)
		lh := s.hash(&le.key)
		ls, _ := s.find(&le.key, lh)
		s.table[ls] = tag(lh) | uint32(i+1)
		*s.at(i) = *le
	}
	s.n--
	if s.n>>pageShift < len(s.pages)-1 {
		// Keep one spare page; free the rest as the store shrinks.
		s.pages[len(s.pages)-1] = nil
		s.pages = s.pages[:len(s.pages)-1]
	}
}

// deleteSlot empties slot with backward-shift deletion, so probe chains
// stay unbroken without tombstones.
func (s *store) deleteSlot(slot uint32) {
	i := slot
	for {
		s.table[i] = 0
		j := i
		for {
			j = (j + 1) & s.mask
			v := s.table[j]
			if v == 0 {
				return
			}
			home := s.hash(&s.at(int(v&idxMask-1)).key) & s.mask
			// Move v back to i unless its home lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				s.table[i] = v
				i = j
				break
			}
		}
	}
}

// setKey fills k from f's original tuple and zone; false for a flow
// without a usable tuple.
func setKey(k *key, f *ct.Flow) bool {
	t := &f.TupleOrig
	src, dst := t.IP.SourceAddress.Unmap(), t.IP.DestinationAddress.Unmap()
	switch {
	case src.Is4() && dst.Is4():
		k.family = 4
		a, b := src.As4(), dst.As4()
		k.src, k.dst = [16]byte{}, [16]byte{}
		copy(k.src[:], a[:])
		copy(k.dst[:], b[:])
	case src.Is6() && dst.Is6():
		k.family = 6
		k.src, k.dst = src.As16(), dst.As16()
	default:
		return false
	}
	k.proto = t.Proto.Protocol
	if t.Proto.ICMPv4 || t.Proto.ICMPv6 {
		k.sport, k.dport = t.Proto.ICMPID, uint16(t.Proto.ICMPType)<<8|uint16(t.Proto.ICMPCode)
	} else {
		k.sport, k.dport = t.Proto.SourcePort, t.Proto.DestinationPort
	}
	k.zone = f.Zone
	return true
}

func (k *key) addrs() (src, dst netip.Addr) {
	if k.family == 4 {
		return netip.AddrFrom4([4]byte(k.src[:4])), netip.AddrFrom4([4]byte(k.dst[:4]))
	}
	return netip.AddrFrom16(k.src), netip.AddrFrom16(k.dst)
}

// observeResult says what observe did.
type observeResult uint8

const (
	observedKnown observeResult = iota
	observedNew
	observedFull
	observedBadTuple
)

// observe applies a dump's (or an event's) view of f at time now (ns): it
// inserts the connection or updates its totals and state, and marks it
// seen by the current dump. Counters lower than the stored ones mean the
// tuple now belongs to a new connection (the old one's end was missed):
// the export baseline restarts from zero.
func (s *store) observe(f *ctFlow, now int64) (*entry, observeResult) {
	if !f.tupleOK {
		return nil, observedBadTuple
	}
	k := &f.key
	res := observedKnown
	h := s.hash(k)
	slot, i := s.find(k, h)
	var e *entry
	if i >= 0 {
		e = s.at(i)
	} else {
		if s.n >= s.max {
			return nil, observedFull
		}
		if float64(s.n+1) > maxLoad*float64(len(s.table)) {
			s.grow()
			slot, _ = s.find(k, h)
		}
		if s.n>>pageShift == len(s.pages) {
			s.pages = append(s.pages, new([pageSize]entry))
		}
		i = s.n
		s.n++
		s.table[slot] = tag(h) | uint32(i+1)
		e = s.at(i)
		*e = entry{key: *k, start: now, changed: now, exported: now}
		if f.start != 0 {
			e.start = f.start
		}
		res = observedNew
	}
	if f.packets != e.packets || f.octets != e.octets || f.rpackets != e.rpackets || f.roctets != e.roctets {
		if f.packets < e.packets || f.rpackets < e.rpackets {
			e.xpackets, e.xoctets, e.xrpackets, e.xroctets = 0, 0, 0, 0
			if f.start != 0 {
				e.start = f.start
			}
		}
		e.packets, e.octets, e.rpackets, e.roctets = f.packets, f.octets, f.rpackets, f.roctets
		e.changed = now
		e.flags &^= fIdleSent
	}
	e.mark = f.mark
	if f.hasTCP {
		e.tcpState = f.tcpState
	}
	e.flags = (e.flags &^ (fSeen | fNew)) | s.parity
	return e, res
}

// IPFIX flowEndReason values (IANA IE 136, RFC 5102 §5.11.3).
const (
	reasonIdle      uint8 = 1
	reasonActive    uint8 = 2
	reasonEndOfFlow uint8 = 3
)

// timeouts are the store's export rules, in ns.
type timeouts struct {
	active, idle int64
	// newGrace is how long an entry inserted by a new event may stay unseen
	// by dumps (its destroy event is awaited) before it counts as gone.
	newGrace int64
}

// expire walks the store after a complete dump (dumped) or on a timer, and
// calls emit for each connection to export with its flowEndReason; emit
// runs before the entry is marked exported or removed. Connections gone
// from the table are exported once more (endOfFlow) unless they have no
// news since their end was sent, and removed.
func (s *store) expire(now int64, dumped bool, t timeouts, emit func(e *entry, reason uint8)) (removed int) {
	for i := 0; i < s.n; {
		e := s.at(i)
		gone := e.flags&fEnded != 0
		if dumped && e.flags&fSeen != s.parity {
			gone = gone || e.flags&fNew == 0 || now-e.changed > t.newGrace
		}
		if gone {
			if e.flags&fEndSent == 0 || e.news() {
				emit(e, reasonEndOfFlow)
			}
			s.remove(i)
			removed++
			continue
		}
		i++
		if e.proto == 6 && (e.tcpState == tcpTimeWait || e.tcpState == tcpClose) {
			if e.flags&fEndSent == 0 {
				emit(e, reasonEndOfFlow)
				e.markExported(now)
				e.flags |= fEndSent
			}
			continue
		}
		switch {
		case now-e.changed >= t.idle && e.flags&fIdleSent == 0:
			// Idle: the flow is over as far as IPFIX goes (RFC 5470 §5.1.1),
			// even when an active export already sent its last deltas.
			emit(e, reasonIdle)
			e.markExported(now)
			e.flags |= fIdleSent
		case (e.news() || e.flags&fExported == 0) && now-e.exported >= t.active:
			emit(e, reasonActive)
			e.markExported(now)
		}
		// Otherwise no news: never re-exported.
	}
	return removed
}

// beginDump flips the seen parity: entries the dump does not observe keep
// the old one.
func (s *store) beginDump() { s.parity ^= fSeen }
