package abi

import (
	"fmt"
	"net/netip"

	"github.com/weir-flow/weir/core/flow"
)

// PackedLayout encodes and decodes packed batches ([MagicPacked]) of one mask
// directly from and to flow.Records. Build it once per mask with
// [NewPackedLayout]; it is safe for concurrent use.
type PackedLayout struct {
	mask     Mask
	exporter int // offset of the exporter in a packed record, -1 if absent
	extra    int // offset of the Extra reference, -1 if absent
	items    []item
	size     int  // bytes per packed record
	tails    bool // some field may have bytes in the tail
}

// item is one typed field of a PackedLayout.
type item struct {
	field flow.FieldID
	kind  flow.Kind
	off   int // offset in the packed record
	size  int // bytes in the packed record
	bit   int // presence bit
	tail  int // for an address, its tail bit (after the presence bits); -1 otherwise
}

// layoutFlags are the mask flags a packed batch carries.
const layoutFlags = FlagExtra | FlagExporter

// NewPackedLayout returns the packed layout of mask m. Flags other than
// FlagExtra and FlagExporter do not change the layout and are not
// sent.
func NewPackedLayout(m Mask) *PackedLayout {
	m.Flags &= layoutFlags
	m.Fields[0] &= All.Fields[0]
	m.Fields[1] &= All.Fields[1]
	l := &PackedLayout{mask: m, exporter: -1, extra: -1}
	fields, addrs := 0, 0
	for f := range flow.NumFields {
		if m.Fields.Has(flow.FieldID(f)) {
			fields++
			if flow.Fields[f].Kind == flow.KindAddress {
				addrs++
			}
		}
	}
	at := (fields+7)/8 + (addrs+7)/8 // presence bits, then tail bits
	if m.Flags&FlagExporter != 0 {
		l.exporter = at
		at += ExporterSize
	}
	if m.Flags&FlagExtra != 0 {
		l.extra = at
		at += extraRefSize
	}
	tailBits := 8 * ((fields + 7) / 8)
	for f := range flow.NumFields {
		id := flow.FieldID(f)
		if !m.Fields.Has(id) {
			continue
		}
		it := item{field: id, kind: flow.Fields[f].Kind, off: at, bit: len(l.items), tail: -1}
		switch it.kind {
		case flow.KindAddress:
			it.size, it.tail = 4, tailBits
			tailBits++
			l.tails = true
		case flow.KindString:
			it.size = 4
			l.tails = true
		case flow.KindTime:
			it.size = 8
		default:
			it.size = int(flow.Fields[f].Width)
		}
		l.items = append(l.items, it)
		at += it.size
	}
	l.size = at
	return l
}

// Mask returns the layout's mask.
func (l *PackedLayout) Mask() Mask { return l.mask }

// Append appends the packed batch of b to dst.
func (l *PackedLayout) Append(dst []byte, b *flow.Batch) []byte {
	n := len(b.Records)
	start := len(dst)
	recs := start + PackedHeaderSize
	tail := recs + n*l.size
	dst = grow(dst, tail-start)
	clear(dst[recs:tail]) // presence bits are OR-ed in
	for i, r := range b.Records {
		dst = l.encode(dst, recs+i*l.size, tail, r)
	}
	data := len(dst)
	if l.extra >= 0 {
		for i, r := range b.Records {
			dst = AppendExtra(dst, recs+i*l.size+l.extra, data, r.Extra)
		}
	}
	h := dst[start:recs]
	le.PutUint32(h, MagicPacked)
	le.PutUint16(h[pVersion:], Version)
	le.PutUint16(h[pHeaderSize:], PackedHeaderSize)
	le.PutUint32(h[pCount:], uint32(n))
	le.PutUint32(h[pRecordSize:], uint32(l.size))
	le.PutUint32(h[pFlags:], l.mask.Flags)
	le.PutUint32(h[pReserved:], 0)
	le.PutUint64(h[pFields:], l.mask.Fields[0])
	le.PutUint64(h[pFields+8:], l.mask.Fields[1])
	le.PutUint32(h[pTailLen:], uint32(data-tail))
	le.PutUint32(h[pDataLen:], uint32(len(dst)-data))
	return dst
}

// grow extends dst by k bytes of unspecified content.
func grow(dst []byte, k int) []byte {
	if cap(dst)-len(dst) < k {
		grown := make([]byte, len(dst), 2*cap(dst)+k)
		copy(grown, dst)
		dst = grown
	}
	return dst[:len(dst)+k]
}

// encode writes r at dst[blk:], its tail entries at the end of dst (the
// tail starts at tail), and returns dst.
func (l *PackedLayout) encode(dst []byte, blk, tail int, r *flow.Record) []byte {
	if l.exporter >= 0 {
		PutExporter(dst[blk+l.exporter:], r)
	}
	for k := range l.items {
		it := &l.items[k]
		off := blk + it.off
		switch it.kind {
		case flow.KindAddress:
			a := *r.AddrRef(it.field)
			if !r.Present.Has(it.field) {
				continue // 4 zero bytes: Append cleared the records
			}
			setBit(dst[blk:], it.bit)
			if a.Is4() {
				b := a.As4()
				le.PutUint32(dst[off:], le.Uint32(b[:]))
				continue
			}
			setBit(dst[blk:], it.tail)
			if a.Is6() {
				// AppendBinary stores the two words as they are; As16's
				// 16-byte result stalls on store forwarding.
				dst, _ = a.WithZone("").AppendBinary(dst)
			}
			le.PutUint32(dst[off:], uint32(len(dst)-tail))
		case flow.KindString:
			s := *r.StringRef(it.field)
			if s != "" || r.Present.Has(it.field) {
				setBit(dst[blk:], it.bit)
			}
			dst = append(dst, s...)
			le.PutUint32(dst[off:], uint32(len(dst)-tail))
		default:
			if r.Present.Has(it.field) {
				setBit(dst[blk:], it.bit)
			}
			v := r.Uint(it.field)
			switch it.size {
			case 1:
				dst[off] = uint8(v)
			case 2:
				le.PutUint16(dst[off:], uint16(v))
			case 4:
				le.PutUint32(dst[off:], uint32(v))
			default:
				le.PutUint64(dst[off:], v)
			}
		}
	}
	return dst
}

func setBit(b []byte, k int)      { b[k>>3] |= 1 << (k & 7) }
func hasBit(b []byte, k int) bool { return b[k>>3]&(1<<(k&7)) != 0 }

// Packed is a parsed packed batch whose records decode straight from the
// packed bytes, fastest in order (Record on another index first scans for
// where its tail entries start).
type Packed struct {
	l       *PackedLayout
	n       int
	records []byte
	tail    []byte
	data    []byte
	next    int    // the record Record decodes without a rescan
	at      uint64 // where its first tail entry starts
}

// ParsePacked checks the packed batch buf's header and section sizes.
// cache, if not nil and of the same mask as buf, is used as its layout;
// the layout used is returned in Packed.Layout for the next call. A buffer
// that does not follow the layout returns an error wrapping ErrMalformed;
// records are checked as Record decodes them.
func ParsePacked(buf []byte, cache *PackedLayout) (Packed, error) {
	if len(buf) < PackedHeaderSize || le.Uint32(buf) != MagicPacked {
		return Packed{}, malformed("packed batch: no packed batch header in %d bytes", len(buf))
	}
	if err := CheckVersion(le.Uint16(buf[pVersion:])); err != nil {
		return Packed{}, fmt.Errorf("packed batch: %w", err)
	}
	hs := uint64(le.Uint16(buf[pHeaderSize:]))
	n := uint64(le.Uint32(buf[pCount:]))
	size := uint64(le.Uint32(buf[pRecordSize:]))
	tl, dl := uint64(le.Uint32(buf[pTailLen:])), uint64(le.Uint32(buf[pDataLen:]))
	m := Mask{
		Fields: flow.FieldSet{le.Uint64(buf[pFields:]), le.Uint64(buf[pFields+8:])},
		Flags:  le.Uint32(buf[pFlags:]),
	}
	if hs < PackedHeaderSize {
		return Packed{}, malformed("packed batch: header size %d, want at least %d", hs, PackedHeaderSize)
	}
	if m.Flags&^layoutFlags != 0 || m.Fields[0]&^All.Fields[0] != 0 || m.Fields[1]&^All.Fields[1] != 0 {
		return Packed{}, malformed("packed batch: mask names parts unknown to this build")
	}
	l := cache
	if l == nil || l.mask != m {
		l = NewPackedLayout(m)
	}
	if size != uint64(l.size) {
		return Packed{}, malformed("packed batch: %d-byte records, the mask's layout has %d", size, l.size)
	}
	if hs+n*size+tl+dl != uint64(len(buf)) {
		return Packed{}, malformed("packed batch: %d bytes for a %d-byte header, %d records of %d bytes, %d tail and %d data bytes", len(buf), hs, n, size, tl, dl)
	}
	r := hs + n*size
	t := r + tl
	return Packed{l: l, n: int(n), records: buf[hs:r:r], tail: buf[r:t:t], data: buf[t:len(buf):len(buf)]}, nil
}

// Len returns the number of records.
func (p *Packed) Len() int { return p.n }

// Layout returns the batch's layout, to pass to the next ParsePacked.
func (p *Packed) Layout() *PackedLayout { return p.l }

// Record decodes record i into r as Decoder.Record does: it sets
// r.Present and every part in the mask and leaves the other fields of r as
// they are. A non-empty string always has its Present bit. Strings are
// interned in st; Extra values point into the buffer. A malformed record
// returns an error wrapping ErrMalformed.
func (p *Packed) Record(i int, r *flow.Record, st *Strings) error {
	if i < 0 || i >= p.n {
		return malformed("packed batch: record %d of %d", i, p.n)
	}
	if i != p.next {
		p.seek(i)
	}
	l := p.l
	b := p.records[i*l.size : (i+1)*l.size]
	at := p.at
	r.Present = flow.FieldSet{}
	if l.exporter >= 0 && !ReadExporter(b[l.exporter:], r) {
		return malformed("packed batch: record %d: exporter address family %d", i, b[l.exporter+16])
	}
	for k := range l.items {
		it := &l.items[k]
		q := b[it.off : it.off+it.size]
		present := hasBit(b, it.bit)
		if present {
			r.Present.Add(it.field)
		}
		switch it.kind {
		case flow.KindAddress:
			var a netip.Addr
			switch {
			case !present:
			case !hasBit(b, it.tail):
				a = netip.AddrFrom4([4]byte(q))
			default:
				end := uint64(le.Uint32(q))
				switch {
				case end == at:
				case end == at+16 && end <= uint64(len(p.tail)):
					a = netip.AddrFrom16([16]byte(p.tail[at:end]))
				default:
					return malformed("packed batch: record %d: %s: IPv6 address at %d-%d of a %d-byte tail", i, it.field, at, end, len(p.tail))
				}
				at = end
			}
			*r.AddrRef(it.field) = a
		case flow.KindString:
			end := uint64(le.Uint32(q))
			if end < at || end > uint64(len(p.tail)) {
				return malformed("packed batch: record %d: %s: string at %d-%d of a %d-byte tail", i, it.field, at, end, len(p.tail))
			}
			s := ""
			if end > at {
				s = st.Intern(p.tail[at:end])
				r.Present.Add(it.field) // so that Present alone says what is set
			}
			at = end
			*r.StringRef(it.field) = s
		default:
			var v uint64
			switch it.size {
			case 1:
				v = uint64(q[0])
			case 2:
				v = uint64(le.Uint16(q))
			case 4:
				v = uint64(le.Uint32(q))
			default:
				v = le.Uint64(q)
			}
			r.StoreUint(it.field, v)
		}
	}
	p.next, p.at = i+1, at
	if l.extra >= 0 {
		return p.extraOf(i, b[l.extra:l.extra+extraRefSize], r)
	}
	return nil
}

// seek sets p.at to where record i's tail entries start: the end of the
// last entry before it, found scanning from the nearest record whose
// start is known.
func (p *Packed) seek(i int) {
	l := p.l
	if !l.tails {
		p.next, p.at = i, 0
		return
	}
	if i > p.next {
		at := p.at
		for j := p.next; j < i; j++ {
			if end, ok := p.lastEnd(j); ok {
				at = end
			}
		}
		p.next, p.at = i, at
		return
	}
	for j := i - 1; j >= 0; j-- {
		if end, ok := p.lastEnd(j); ok {
			p.next, p.at = i, end
			return
		}
	}
	p.next, p.at = i, 0
}

// lastEnd returns the end of record j's last tail entry; ok is false when
// it has none.
func (p *Packed) lastEnd(j int) (end uint64, ok bool) {
	l := p.l
	b := p.records[j*l.size : (j+1)*l.size]
	for k := len(l.items) - 1; k >= 0; k-- {
		it := &l.items[k]
		if it.kind == flow.KindString || it.kind == flow.KindAddress && hasBit(b, it.bit) && hasBit(b, it.tail) {
			return uint64(le.Uint32(b[it.off:])), true
		}
	}
	return 0, false
}

func (p *Packed) extraOf(i int, ref []byte, r *flow.Record) (err error) {
	if r.Extra, err = ReadExtra(r.Extra[:0], ref, p.data); err != nil {
		return malformed("packed batch: record %d: %v", i, err)
	}
	return nil
}

// Strings interns strings decoded from buffers, so that a value repeated
// across records and batches (labels, pod names) is allocated once. The
// zero value is ready; it is not safe for concurrent use.
type Strings struct {
	m map[string]string
	// recent holds the last strings seen, by a cheap hash of their length
	// and end bytes: labels come back record after record, and comparing
	// bytes costs less than hashing them all for the map.
	recent [256]string
}

// Interning bounds: longer strings are copied, not interned, and the
// table starts afresh when full, so its memory stays bounded whatever the
// input.
const (
	maxIntern   = 512
	maxInterned = 8192
)

// recentIndex hashes b's length and up to 16 of its bytes (its first and
// last 8) to a slot of Strings.recent.
func recentIndex(b []byte) int {
	var x uint64
	if len(b) >= 8 {
		x = le.Uint64(b) ^ le.Uint64(b[len(b)-8:])*31
	} else {
		for _, c := range b {
			x = x<<8 | uint64(c)
		}
	}
	return int(((x ^ uint64(len(b))) * 0x9e3779b97f4a7c15) >> (64 - 8)) // 256 slots
}

// Intern returns b as a string, without allocating when an equal string
// was interned before.
func (s *Strings) Intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxIntern {
		return string(b)
	}
	slot := &s.recent[recentIndex(b)]
	if *slot == string(b) {
		return *slot
	}
	v, ok := s.m[string(b)]
	if !ok {
		if s.m == nil || len(s.m) >= maxInterned {
			s.m = make(map[string]string, 256)
		}
		v = string(b)
		s.m[v] = v
	}
	*slot = v
	return v
}
