package wire

import (
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// Layout encodes and decodes packed batches of one mask directly from and
// to flow.Records: the bytes are those of [Pack] applied to
// abi.AppendBatchMask, and of [Unpack] followed by abi.Decoder.Record,
// without the 360-byte blocks in between. Build it once per mask with
// [NewLayout]; it is read-only afterwards and safe for concurrent use.
type Layout struct {
	mask     abi.Mask
	exporter int // offset of the exporter span in a packed record, -1 if absent
	extra    int // offset of the Extra reference, -1 if absent
	items    []item
	size     int // bytes per packed record
}

// item is one typed field of a Layout.
type item struct {
	field flow.FieldID
	kind  flow.Kind
	off   int     // offset in the packed record
	size  int     // bytes on the wire
	slot  uintptr // offset in flow.Record
}

// NewLayout returns the packed layout of mask m; ok is false when this
// build's flow.Fields disagree with the ABI's block (then batches travel
// unpacked).
func NewLayout(m abi.Mask) (l *Layout, ok bool) {
	if fieldSpans == nil {
		return nil, false
	}
	l = &Layout{mask: m, exporter: -1, extra: -1}
	at := 16 // presence
	if m.Flags&abi.FlagExporter != 0 {
		l.exporter = at
		at += rExtra - rExporter
	}
	if m.Flags&abi.FlagExtra != 0 {
		l.extra = at
		at += rFields - rExtra
	}
	for f := range flow.NumFields {
		id := flow.FieldID(f)
		if !m.Fields.Has(id) {
			continue
		}
		s := fieldSpans[f]
		l.items = append(l.items, item{
			field: id, kind: flow.Fields[f].Kind, off: at, size: s.end - s.off,
			slot: flow.SlotOf(id).Offset,
		})
		at += s.end - s.off
	}
	l.size = at
	return l, true
}

// Mask returns the layout's mask.
func (l *Layout) Mask() abi.Mask { return l.mask }

// Append appends the packed batch of b to dst: the bytes
// Pack(abi.AppendBatchMask(b, l.Mask())) would give, with one pass over the
// records and no intermediate buffer.
func (l *Layout) Append(dst []byte, b *flow.Batch) []byte {
	n := len(b.Records)
	start := len(dst)
	hs := minHeader
	dataStart := start + 4 + hs + n*l.size
	dst = grow(dst, dataStart-start)
	le.PutUint32(dst[start:], MagicPacked)
	for i, r := range b.Records {
		dst = l.encode(dst, start+4+hs+i*l.size, dataStart, r)
	}
	h := dst[start+4 : start+4+hs]
	le.PutUint32(h[hMagic:], abi.MagicBatch)
	le.PutUint16(h[hMagic+4:], abi.Version)
	le.PutUint16(h[hHeaderSize:], uint16(hs))
	le.PutUint32(h[hCount:], uint32(n))
	le.PutUint32(h[hRecordSize:], abi.RecordSize)
	le.PutUint32(h[hRecordsOff:], uint32(hs))
	le.PutUint32(h[hDataOff:], uint32(hs+n*abi.RecordSize))
	le.PutUint32(h[hDataLen:], uint32(len(dst)-dataStart))
	le.PutUint32(h[hFlags:], l.mask.Flags)
	le.PutUint64(h[hFields:], l.mask.Fields[0])
	le.PutUint64(h[hFields+8:], l.mask.Fields[1])
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

func (l *Layout) encode(dst []byte, blk, dataStart int, r *flow.Record) []byte {
	present := r.Present
	p := unsafe.Pointer(r)
	if l.exporter >= 0 {
		q := dst[blk+l.exporter : blk+l.exporter+24]
		putAddr(q, r.Exporter.Addr())
		q[17] = 0
		le.PutUint16(q[18:], r.Exporter.Port())
		le.PutUint32(q[20:], r.ObservationDomainID)
	}
	for k := range l.items {
		it := &l.items[k]
		off := blk + it.off
		switch it.kind {
		case flow.KindAddress:
			putAddr(dst[off:off+17], *(*netip.Addr)(unsafe.Add(p, it.slot)))
		case flow.KindString:
			s := *(*string)(unsafe.Add(p, it.slot))
			if s == "" {
				le.PutUint64(dst[off:], 0)
				continue
			}
			present.Add(it.field)
			le.PutUint32(dst[off:], uint32(len(dst)-dataStart))
			le.PutUint32(dst[off+4:], uint32(len(s)))
			dst = append(dst, s...)
		default:
			q := dst[off : off+it.size]
			v := unsafe.Add(p, it.slot)
			switch it.size {
			case 1:
				q[0] = *(*uint8)(v)
			case 2:
				le.PutUint16(q, *(*uint16)(v))
			case 4:
				le.PutUint32(q, *(*uint32)(v))
			default:
				le.PutUint64(q, *(*uint64)(v))
			}
		}
	}
	le.PutUint64(dst[blk:], present[0]&l.mask.Fields[0])
	le.PutUint64(dst[blk+8:], present[1]&l.mask.Fields[1])
	if l.extra >= 0 {
		dst = abi.AppendExtra(dst, blk+l.extra, dataStart, r.Extra)
	}
	return dst
}

// putAddr writes a as the ABI does: 16 bytes (IPv4 as ::ffff:a.b.c.d),
// then the family (0, 4 or 6).
func putAddr(p []byte, a netip.Addr) {
	_ = p[16]
	// IPv4 through As4: As16's 16-byte result is built from two 8-byte
	// stores and copied whole, which stalls on store forwarding.
	switch {
	case a.Is4():
		b := a.As4()
		le.PutUint64(p, 0)
		le.PutUint32(p[8:], 0xffff0000)
		le.PutUint32(p[12:], le.Uint32(b[:]))
		p[16] = 4
	case a.Is6():
		// AppendBinary stores the two words as they are: no stall.
		if b, _ := a.WithZone("").AppendBinary(p[:0:16]); len(b) != 16 || &b[0] != &p[0] {
			*(*[16]byte)(p) = a.As16()
		}
		p[16] = 6
	default:
		clear(p[:16])
		p[16] = 0
	}
}

func getAddr(p []byte) (netip.Addr, bool) {
	_ = p[16]
	switch p[16] {
	case 0:
		return netip.Addr{}, true
	case 4:
		return netip.AddrFrom4([4]byte(p[12:16])), true
	case 6:
		return netip.AddrFrom16([16]byte(p[:16])), true
	}
	return netip.Addr{}, false
}

// CopyMasked sets dst's Present, exporter, Extra and the typed fields of
// the layout's mask to src's, leaving dst's other fields as they are: the
// cheap copy of a record decoded by [Packed.Record], which sets no other
// field.
func (l *Layout) CopyMasked(dst, src *flow.Record) {
	dst.Present = src.Present
	if l.exporter >= 0 {
		dst.Exporter, dst.ObservationDomainID = src.Exporter, src.ObservationDomainID
	}
	dst.Extra = src.Extra
	d, s := unsafe.Pointer(dst), unsafe.Pointer(src)
	for k := range l.items {
		it := &l.items[k]
		switch it.kind {
		case flow.KindAddress:
			*(*netip.Addr)(unsafe.Add(d, it.slot)) = *(*netip.Addr)(unsafe.Add(s, it.slot))
		case flow.KindString:
			*(*string)(unsafe.Add(d, it.slot)) = *(*string)(unsafe.Add(s, it.slot))
		default:
			switch it.size {
			case 1:
				*(*uint8)(unsafe.Add(d, it.slot)) = *(*uint8)(unsafe.Add(s, it.slot))
			case 2:
				*(*uint16)(unsafe.Add(d, it.slot)) = *(*uint16)(unsafe.Add(s, it.slot))
			case 4:
				*(*uint32)(unsafe.Add(d, it.slot)) = *(*uint32)(unsafe.Add(s, it.slot))
			default:
				*(*uint64)(unsafe.Add(d, it.slot)) = *(*uint64)(unsafe.Add(s, it.slot))
			}
		}
	}
}

// Packed is a parsed, validated packed batch ([MagicPacked]) whose records
// decode straight from the packed bytes.
type Packed struct {
	l      *Layout
	n      int
	blocks []byte
	data   []byte
}

// ParsePacked validates the packed batch buf. cache, if not nil and of the
// same mask as buf, is used as its layout; the layout used is returned in
// Packed.Layout for the next call. It returns an error wrapping ErrPacked
// for a buffer that does not follow the layout.
func ParsePacked(buf []byte, cache *Layout) (Packed, error) {
	if fieldSpans == nil {
		return Packed{}, fmt.Errorf("%w: layout unknown to this build", ErrPacked)
	}
	if len(buf) < 4 || le.Uint32(buf) != MagicPacked {
		return Packed{}, fmt.Errorf("%w: bad magic", ErrPacked)
	}
	buf = buf[4:]
	h, err := readHeader(buf)
	if err != nil {
		return Packed{}, err
	}
	if le.Uint32(buf[hMagic:]) != abi.MagicBatch {
		return Packed{}, fmt.Errorf("%w: not an abi batch header", ErrPacked)
	}
	if err := abi.CheckVersion(le.Uint16(buf[hMagic+4:])); err != nil {
		return Packed{}, fmt.Errorf("%w: %w", ErrPacked, err)
	}
	// Bits this build does not know are dropped, as abi.ParseBatch does.
	m := h.mask
	m.Fields[0] &= abi.All.Fields[0]
	m.Fields[1] &= abi.All.Fields[1]
	m.Flags &= abi.FlagExtra | abi.FlagExporter
	if m != h.mask {
		return Packed{}, fmt.Errorf("%w: mask names parts unknown to this build", ErrPacked)
	}
	l := cache
	if l == nil || l.mask != m {
		l, _ = NewLayout(m)
	}
	packed := uint64(h.n) * uint64(l.size)
	if uint64(h.hs)+packed+uint64(h.dataLen) != uint64(len(buf)) {
		return Packed{}, fmt.Errorf("%w: %d bytes for %d records of %d bytes and %d bytes of data", ErrPacked, len(buf), h.n, l.size, h.dataLen)
	}
	end := h.hs + int(packed)
	return Packed{l: l, n: h.n, blocks: buf[h.hs:end:end], data: buf[end:len(buf):len(buf)]}, nil
}

// Len returns the number of records.
func (p *Packed) Len() int { return p.n }

// Layout returns the batch's layout, to pass to the next ParsePacked.
func (p *Packed) Layout() *Layout { return p.l }

// Record decodes record i into r as abi.Decoder.Record does: it sets
// r.Present and every part in the mask and leaves the other fields of r as
// they are. A non-empty string always has its Present bit. Strings are interned in st; Extra values point into the
// buffer. A malformed record returns an error wrapping ErrPacked.
func (p *Packed) Record(i int, r *flow.Record, st *Strings) error {
	if i < 0 || i >= p.n {
		return fmt.Errorf("%w: record %d of %d", ErrPacked, i, p.n)
	}
	l := p.l
	b := p.blocks[i*l.size : (i+1)*l.size]
	r.Present = flow.FieldSet{le.Uint64(b) & l.mask.Fields[0], le.Uint64(b[8:]) & l.mask.Fields[1]}
	if l.exporter >= 0 {
		q := b[l.exporter : l.exporter+24]
		a, ok := getAddr(q)
		if !ok {
			return fmt.Errorf("%w: record %d: exporter address family %d", ErrPacked, i, q[16])
		}
		r.Exporter = netip.AddrPortFrom(a, le.Uint16(q[18:]))
		r.ObservationDomainID = le.Uint32(q[20:])
	}
	rp := unsafe.Pointer(r)
	for k := range l.items {
		it := &l.items[k]
		q := b[it.off : it.off+it.size]
		switch it.kind {
		case flow.KindAddress:
			a, ok := getAddr(q)
			if !ok {
				return fmt.Errorf("%w: record %d: %s: address family %d", ErrPacked, i, it.field, q[16])
			}
			*(*netip.Addr)(unsafe.Add(rp, it.slot)) = a
		case flow.KindString:
			off, n := uint64(le.Uint32(q)), uint64(le.Uint32(q[4:]))
			s := ""
			if n > 0 {
				if off+n > uint64(len(p.data)) {
					return fmt.Errorf("%w: record %d: %s: string %d+%d beyond the %d-byte data section", ErrPacked, i, it.field, off, n, len(p.data))
				}
				s = st.Intern(p.data[off : off+n])
				r.Present.Add(it.field) // so that Present alone says what is set
			}
			*(*string)(unsafe.Add(rp, it.slot)) = s
		default:
			v := unsafe.Add(rp, it.slot)
			switch it.size {
			case 1:
				*(*uint8)(v) = q[0]
			case 2:
				*(*uint16)(v) = le.Uint16(q)
			case 4:
				*(*uint32)(v) = le.Uint32(q)
			default:
				*(*uint64)(v) = le.Uint64(q)
			}
		}
	}
	if l.extra >= 0 {
		return p.extra(i, b[l.extra:l.extra+8], r)
	}
	return nil
}

func (p *Packed) extra(i int, ref []byte, r *flow.Record) (err error) {
	if r.Extra, err = abi.ReadExtra(r.Extra[:0], ref, p.data); err != nil {
		return fmt.Errorf("%w: record %d: %v", ErrPacked, i, err)
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
