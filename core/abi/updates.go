package abi

import (
	"bytes"
	"math/bits"
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
)

// Op is a field update operation.
type Op uint8

const (
	// OpSetUint sets an unsigned or time field (Uint) and marks it present.
	OpSetUint Op = 1
	// OpSetString sets a string field (Bytes, UTF-8).
	OpSetString Op = 2
	// OpSetAddr sets an address field (Bytes: 4 or 16 bytes, network
	// order; 0 bytes clears it).
	OpSetAddr Op = 3
	// OpClear removes a typed field.
	OpClear Op = 4
	// OpSetExtra replaces the value of the record's first Extra IE with the
	// key (Enterprise, Element), or appends the IE if there is none.
	OpSetExtra Op = 5
	// OpAddExtra appends an Extra IE.
	OpAddExtra Op = 6
	// OpDeleteExtra removes every Extra IE with the key.
	OpDeleteExtra Op = 7
)

func (o Op) String() string {
	switch o {
	case OpSetUint:
		return "set_uint"
	case OpSetString:
		return "set_string"
	case OpSetAddr:
		return "set_addr"
	case OpClear:
		return "clear"
	case OpSetExtra:
		return "set_extra"
	case OpAddExtra:
		return "add_extra"
	case OpDeleteExtra:
		return "delete_extra"
	}
	return "op(" + itoa(int(o)) + ")"
}

// Update entry layout: a fixed head of UpdateHeadSize bytes followed by
// the value's bytes; entries follow each other without padding.
const (
	uRecord     = 0  // u32 record index in the batch as sent
	uOp         = 4  // u8 Op
	uField      = 5  // u8 typed field ID; for Extra ops, bit 0: variable length
	uElement    = 6  // u16 element ID (Extra ops)
	uEnterprise = 8  // u32 enterprise number (Extra ops)
	uLen        = 12 // u32 length of the value bytes
	uUint       = 16 // u64 value of OpSetUint

	// UpdateHeadSize is the fixed size of an update entry in bytes.
	UpdateHeadSize = 24
)

// Update is one decoded field update.
type Update struct {
	Record     int          // index in the batch as sent
	Op         Op           //
	Field      flow.FieldID // typed field (typed ops)
	Enterprise uint32       // Extra IE key (Extra ops)
	Element    uint16       //
	Variable   bool         // Extra IE is variable-length (RFC 7011 §7)
	Uint       uint64       // OpSetUint value
	Bytes      []byte       // string, address or Extra value; points into the buffer
}

// Updates builds an encoded list of updates. The zero value is empty and
// ready; Reset reuses it.
type Updates struct {
	buf []byte
	n   int
}

// Reset empties u, keeping its capacity.
func (u *Updates) Reset() { u.buf, u.n = u.buf[:0], 0 }

// Len returns the number of updates.
func (u *Updates) Len() int { return u.n }

// Bytes returns the encoded updates, valid until the next change to u.
func (u *Updates) Bytes() []byte { return u.buf }

func (u *Updates) add(rec int, op Op, field uint8, ent uint32, elem uint16, v uint64, val []byte) {
	start := len(u.buf)
	u.buf = extend(u.buf, UpdateHeadSize)
	h := u.buf[start : start+UpdateHeadSize]
	le.PutUint32(h[uRecord:], uint32(rec))
	h[uOp] = uint8(op)
	h[uField] = field
	le.PutUint16(h[uElement:], elem)
	le.PutUint32(h[uEnterprise:], ent)
	le.PutUint32(h[uLen:], uint32(len(val)))
	le.PutUint64(h[uUint:], v)
	u.buf = append(u.buf, val...)
	u.n++
}

// SetUint sets unsigned or time field f of record rec to v.
func (u *Updates) SetUint(rec int, f flow.FieldID, v uint64) {
	u.add(rec, OpSetUint, uint8(f), 0, 0, v, nil)
}

// SetString sets string field f of record rec to s.
func (u *Updates) SetString(rec int, f flow.FieldID, s string) {
	start := len(u.buf)
	u.add(rec, OpSetString, uint8(f), 0, 0, 0, nil)
	u.buf = append(u.buf, s...)
	le.PutUint32(u.buf[start+uLen:], uint32(len(s)))
}

// SetAddr sets address field f of record rec to a; an invalid a clears it.
func (u *Updates) SetAddr(rec int, f flow.FieldID, a netip.Addr) {
	switch {
	case a.Is4():
		b := a.As4()
		u.add(rec, OpSetAddr, uint8(f), 0, 0, 0, b[:])
	case a.Is6():
		b := a.As16()
		u.add(rec, OpSetAddr, uint8(f), 0, 0, 0, b[:])
	default:
		u.add(rec, OpSetAddr, uint8(f), 0, 0, 0, nil)
	}
}

// Clear removes typed field f from record rec.
func (u *Updates) Clear(rec int, f flow.FieldID) {
	u.add(rec, OpClear, uint8(f), 0, 0, 0, nil)
}

// SetExtra replaces the first Extra IE of record rec with x's key, or
// appends x.
func (u *Updates) SetExtra(rec int, x flow.Field) {
	u.add(rec, OpSetExtra, variableFlag(x.Variable), x.Enterprise, x.Element, 0, x.Value)
}

// AddExtra appends Extra IE x to record rec.
func (u *Updates) AddExtra(rec int, x flow.Field) {
	u.add(rec, OpAddExtra, variableFlag(x.Variable), x.Enterprise, x.Element, 0, x.Value)
}

// DeleteExtra removes every Extra IE with key k from record rec.
func (u *Updates) DeleteExtra(rec int, k flow.IEKey) {
	u.add(rec, OpDeleteExtra, 0, k.Enterprise, k.Element, 0, nil)
}

func variableFlag(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// Diff appends the updates that turn before into after, as record rec. A
// typed field changes when its presence ([flow.Record.Has]) or, if
// present, its value differs; Extra IEs are compared key by key. Exporter
// and ObservationDomainID are not updatable and are ignored.
func (u *Updates) Diff(rec int, before, after *flow.Record) {
	diff(u, nil, rec, before, after, before.PresentSet())
}

// diff is Diff, with strings through w's table when w is not nil. pb is
// before.PresentSet(), or a subset a caller knows holds every present
// field of before.
//
// Only the fields present in either record are compared, which matters
// to an enricher: asking each of the NumFields whether it is present
// dominated its cost.
func diff(u *Updates, w *CompactWriter, rec int, before, after *flow.Record, pb flow.FieldSet) {
	if before.Present != after.Present || !sameScalars(before, after) {
		pa := after.PresentSet()
		for k := range pb {
			for word := pb[k] | pa[k]; word != 0; word &= word - 1 {
				f := flow.FieldID(k*64 + bits.TrailingZeros64(word))
				bh, ah := pb.Has(f), pa.Has(f)
				if !ah {
					u.Clear(rec, f) // present before only
					continue
				}
				switch kinds[f] {
				case flow.KindAddress:
					if a := *after.AddrRef(f); !bh || *before.AddrRef(f) != a {
						u.SetAddr(rec, f, a)
					}
				case flow.KindString:
					if s := *after.StringRef(f); !bh || *before.StringRef(f) != s {
						if w != nil {
							w.SetString(rec, f, s)
						} else {
							u.SetString(rec, f, s)
						}
					}
				default:
					if v := after.Uint(f); !bh || before.Uint(f) != v {
						u.SetUint(rec, f, v)
					}
				}
			}
		}
	}
	if !sameExtra(before.Extra, after.Extra) {
		u.diffExtra(rec, before.Extra, after.Extra)
	}
}

// sameScalars reports whether the memory of two records is identical up
// to Extra: a fast path for the common unchanged record. A false answer
// (strings equal but stored apart, padding) only costs the field-by-field
// comparison.
func sameScalars(a, b *flow.Record) bool {
	n := unsafe.Offsetof(a.Extra)
	return string(unsafe.Slice((*byte)(unsafe.Pointer(a)), n)) == string(unsafe.Slice((*byte)(unsafe.Pointer(b)), n))
}

func sameExtra(a, b []flow.Field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameField(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

func sameField(a, b *flow.Field) bool {
	return a.Enterprise == b.Enterprise && a.Element == b.Element && a.Variable == b.Variable && bytes.Equal(a.Value, b.Value)
}

func (u *Updates) diffExtra(rec int, before, after []flow.Field) {
	seen := func(list []flow.Field, i int) bool {
		for j := range i {
			if list[j].Key() == list[i].Key() {
				return true
			}
		}
		return false
	}
	handle := func(k flow.IEKey) {
		var nb, na int
		var lastB, lastA *flow.Field
		for i := range before {
			if before[i].Key() == k {
				nb++
				lastB = &before[i]
			}
		}
		for i := range after {
			if after[i].Key() == k {
				na++
				lastA = &after[i]
			}
		}
		switch {
		case nb == 1 && na == 1 && sameField(lastB, lastA):
		case nb <= 1 && na == 1:
			u.SetExtra(rec, *lastA)
		default:
			if nb == na && sameKeyed(before, after, k) {
				return
			}
			if nb > 0 {
				u.DeleteExtra(rec, k)
			}
			for i := range after {
				if after[i].Key() == k {
					u.AddExtra(rec, after[i])
				}
			}
		}
	}
	for i := range before {
		if !seen(before, i) {
			handle(before[i].Key())
		}
	}
	for i := range after {
		if !seen(after, i) && !hasKey(before, after[i].Key()) {
			handle(after[i].Key())
		}
	}
}

func hasKey(list []flow.Field, k flow.IEKey) bool {
	for i := range list {
		if list[i].Key() == k {
			return true
		}
	}
	return false
}

// sameKeyed reports whether a and b hold the same IEs with key k, in order.
func sameKeyed(a, b []flow.Field, k flow.IEKey) bool {
	i, j := 0, 0
	for {
		for i < len(a) && a[i].Key() != k {
			i++
		}
		for j < len(b) && b[j].Key() != k {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		if !sameField(&a[i], &b[j]) {
			return false
		}
		i++
		j++
	}
}

// UpdateReader iterates over encoded updates.
type UpdateReader struct {
	buf []byte
	off int
}

// NewUpdateReader returns a reader over buf ([Updates.Bytes] or
// [Answer.Updates]).
func NewUpdateReader(buf []byte) UpdateReader { return UpdateReader{buf: buf} }

// Next decodes the next update into u. It returns false at the end of the
// buffer, or with an error wrapping ErrMalformed for a truncated entry.
func (r *UpdateReader) Next(u *Update) (bool, error) {
	if r.off == len(r.buf) {
		return false, nil
	}
	rest := r.buf[r.off:]
	if len(rest) < UpdateHeadSize {
		return false, malformed("update at byte %d: %d bytes left, head needs %d", r.off, len(rest), UpdateHeadSize)
	}
	n := uint64(le.Uint32(rest[uLen:]))
	if uint64(UpdateHeadSize)+n > uint64(len(rest)) {
		return false, malformed("update at byte %d: value of %d bytes beyond the buffer", r.off, n)
	}
	*u = Update{
		Record:     int(le.Uint32(rest[uRecord:])),
		Op:         Op(rest[uOp]),
		Field:      flow.FieldID(rest[uField]),
		Element:    le.Uint16(rest[uElement:]),
		Enterprise: le.Uint32(rest[uEnterprise:]),
		Uint:       le.Uint64(rest[uUint:]),
		Bytes:      rest[UpdateHeadSize : UpdateHeadSize+n : UpdateHeadSize+n],
	}
	if u.Op >= OpSetExtra {
		u.Variable = rest[uField]&1 != 0
		u.Field = 0
	}
	r.off += UpdateHeadSize + int(n)
	return true, nil
}
