package iecompat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// ieRef is a resolved IE reference: where a record keeps the IE and, for a
// verbatim IE, its data type.
type ieRef struct {
	text  string // as written, for messages
	key   flow.IEKey
	typed bool         // kept in a typed field of flow.Record
	field flow.FieldID // the typed field
	fkind flow.Kind    // the typed field's kind
	v6    bool         // typed address field: key is its IPv6 IE
	// dtype is the IE's abstract data type (registry, or declared with
	// `type`); hasType is false for an IE no registry knows.
	dtype   ipfix.DataType
	hasType bool
}

func (ref *ieRef) kind() flow.Kind { return ref.fkind }

func (ref ieRef) String() string { return ref.text }

// resolveIE resolves an IE written as a name ("egressNodeName",
// "sourceIPv6Address"), "enterprise/element" ("56506/157") or an IANA
// element ID ("8").
func resolveIE(s string) (ieRef, error) {
	s = strings.TrimSpace(s)
	ref := ieRef{text: s}
	if s == "" {
		return ref, errors.New("missing IE")
	}
	if s[0] >= '0' && s[0] <= '9' {
		pen, id, hasPEN := strings.Cut(s, "/")
		if !hasPEN {
			pen, id = "0", s
		}
		e, err1 := strconv.ParseUint(pen, 10, 32)
		el, err2 := strconv.ParseUint(id, 10, 15) // element IDs are 15 bits (RFC 7011 §3.2)
		if err1 != nil || err2 != nil {
			return ref, fmt.Errorf("%q is not an IE name, enterprise/element or element ID (0-32767)", s)
		}
		ref.key = flow.IEKey{Enterprise: uint32(e), Element: uint16(el)}
	} else if f, ok := flow.FieldByName(s); ok {
		fi := &flow.Fields[f]
		ref.key = flow.IEKey{Enterprise: fi.Enterprise, Element: fi.Element}
		if s == fi.Name6 {
			ref.key.Element = fi.Element6
		}
	} else if k, _, ok := ipfix.LookupIEByName(s); ok {
		ref.key = k
	} else {
		return ref, fmt.Errorf("%q is not a known IE name (use enterprise/element for IEs outside the IANA and Antrea registries)", s)
	}
	if f, ok := flow.FieldByIE(ref.key); ok {
		fi := &flow.Fields[f]
		ref.typed, ref.field, ref.fkind = true, f, fi.Kind
		ref.v6 = fi.Kind == flow.KindAddress && ref.key.Element == fi.Element6 && fi.Element6 != fi.Element
	}
	if info, ok := ipfix.LookupIE(ref.key); ok {
		ref.dtype, ref.hasType = info.Type, true
	}
	return ref, nil
}

// parseType parses an RFC 7012 abstract data type name ("unsigned64").
func parseType(s string) (ipfix.DataType, error) {
	for t := ipfix.DataType(0); t.String() != "invalid"; t++ {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%q is not an RFC 7012 data type (unsigned8…64, signed8…64, string, ipv4Address, …)", s)
}

// intWidth returns the width in bytes and signedness of an integer type.
func intWidth(t ipfix.DataType) (n int, signed, ok bool) {
	switch t {
	case ipfix.Unsigned8:
		return 1, false, true
	case ipfix.Unsigned16:
		return 2, false, true
	case ipfix.Unsigned32:
		return 4, false, true
	case ipfix.Unsigned64:
		return 8, false, true
	case ipfix.Signed8:
		return 1, true, true
	case ipfix.Signed16:
		return 2, true, true
	case ipfix.Signed32:
		return 4, true, true
	case ipfix.Signed64:
		return 8, true, true
	}
	return 0, false, false
}

// present reports whether r carries ref. A verbatim IE with an empty value
// carries no information and counts as absent, like an empty typed string.
func present(r *flow.Record, ref *ieRef) bool {
	if ref.typed {
		switch ref.kind() {
		case flow.KindAddress:
			a := r.Addr(ref.field)
			return a.IsValid() && is6(a) == ref.v6
		default:
			return r.Has(ref.field)
		}
	}
	f := r.FindExtra(ref.key)
	return f != nil && len(f.Value) > 0
}

func is6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// valueKind says which member of value is set.
type valueKind uint8

const (
	vNone   valueKind = iota
	vUint             // u: an unsigned typed field
	vTime             // u: nanoseconds since the epoch
	vString           // s
	vAddr             // a
	vBytes            // b, encoded as type bt (if hasBT)
)

// value is an IE value in transit between two IEs.
type value struct {
	kind  valueKind
	u     uint64
	s     string
	a     netip.Addr
	b     []byte
	bt    ipfix.DataType
	hasBT bool
}

// get reads ref from r.
func get(r *flow.Record, ref *ieRef) (value, bool) {
	if !present(r, ref) {
		return value{}, false
	}
	if ref.typed {
		switch ref.kind() {
		case flow.KindUnsigned:
			return value{kind: vUint, u: r.Uint(ref.field)}, true
		case flow.KindTime:
			return value{kind: vTime, u: r.Uint(ref.field)}, true
		case flow.KindString:
			return value{kind: vString, s: r.String(ref.field)}, true
		case flow.KindAddress:
			return value{kind: vAddr, a: r.Addr(ref.field)}, true
		}
		return value{}, false
	}
	f := r.FindExtra(ref.key)
	return value{kind: vBytes, b: f.Value, bt: ref.dtype, hasBT: ref.hasType}, true
}

// uintOf returns v as an unsigned integer, if it is one.
func (v *value) uintOf() (uint64, bool) {
	switch v.kind {
	case vUint, vTime:
		return v.u, true
	case vBytes:
		if len(v.b) == 0 || len(v.b) > 8 {
			return 0, false
		}
		if v.hasBT {
			if _, signed, ok := intWidth(v.bt); ok && signed {
				i, _ := ipfix.DecodeSigned(v.b)
				if i < 0 {
					return 0, false
				}
				return uint64(i), true
			}
		}
		return ipfix.DecodeUnsigned(v.b)
	}
	return 0, false
}

// errReason is why an action was skipped for a record; it labels
// weir_enrich_iecompat_actions_skipped_total.
type errReason uint8

const (
	ok errReason = iota
	reasonConflict
	reasonOverflow
	reasonConvert
	numReasons
)

var reasonNames = [numReasons]string{"", "conflict", "overflow", "convert"}

// writer is where actions write: the batch's arena for verbatim values and
// the plugin's string interner for typed strings.
type writer struct {
	b  *flow.Batch
	in *interner
}

// interner hands out Go strings for byte values that repeat from record to
// record (node names, namespaces), so moving them onto typed fields does not
// allocate each time. It is a fixed-size, lock-free cache: a slot holds the
// last string hashed to it; a miss allocates and replaces it.
type interner struct {
	slots [1024]atomic.Pointer[string]
}

func (in *interner) intern(b []byte) string {
	if len(b) > 256 {
		return string(b) // rarely repeated; not worth a slot
	}
	h := uint32(2166136261) // FNV-1a
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	slot := &in.slots[h%uint32(len(in.slots))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

// set writes v to ref in r, converting it to the IE's type. Bytes written to
// Extra are copied into b's arena.
func set(r *flow.Record, w writer, ref *ieRef, v *value) errReason {
	if ref.typed {
		return setTyped(r, w, ref, v)
	}
	var tmp [16]byte
	enc, reason := encode(ref, v, &tmp)
	if reason != ok {
		return reason
	}
	putExtra(r, w.b, ref, enc)
	return ok
}

func setTyped(r *flow.Record, w writer, ref *ieRef, v *value) errReason {
	f := ref.field
	switch ref.kind() {
	case flow.KindUnsigned:
		u, isUint := v.uintOf()
		if !isUint || v.kind == vTime {
			return reasonConvert
		}
		if w := flow.Fields[f].Width; w < 8 && u>>(8*w) != 0 {
			return reasonOverflow
		}
		r.SetUint(f, u)
	case flow.KindTime:
		ns, reason := timeOf(v)
		if reason != ok {
			return reason
		}
		r.SetUint(f, ns)
	case flow.KindString:
		switch v.kind {
		case vString:
			r.SetString(f, v.s)
		case vBytes:
			// Typed strings may be retained by later stages, so this copy
			// cannot point into the batch arena.
			r.SetString(f, w.in.intern(v.b))
		default:
			return reasonConvert
		}
	case flow.KindAddress:
		var a netip.Addr
		switch v.kind {
		case vAddr:
			a = v.a
		case vBytes:
			var isAddr bool
			if a, isAddr = netip.AddrFromSlice(v.b); !isAddr {
				return reasonConvert
			}
		default:
			return reasonConvert
		}
		if is6(a) != ref.v6 {
			return reasonConvert
		}
		if cur := r.Addr(f); cur.IsValid() && is6(cur) != ref.v6 {
			// One typed field holds both families' IEs: never overwrite
			// the other family's address.
			return reasonConflict
		}
		r.SetAddr(f, a)
	}
	return ok
}

// timeOf returns v as nanoseconds since the epoch: a typed time as is, a
// verbatim dateTimeSeconds/Milliseconds IE (or, untyped, 4 bytes as seconds
// and 8 bytes as milliseconds) converted.
func timeOf(v *value) (uint64, errReason) {
	switch v.kind {
	case vTime:
		return v.u, ok
	case vBytes:
		t := v.bt
		if !v.hasBT {
			switch len(v.b) {
			case 4:
				t = ipfix.DateTimeSeconds
			case 8:
				t = ipfix.DateTimeMilliseconds
			}
		}
		switch {
		case t == ipfix.DateTimeSeconds && len(v.b) == 4, t == ipfix.DateTimeMilliseconds && len(v.b) == 8:
			ns, _ := ipfix.DecodeTime(t, v.b)
			return uint64(ns), ok
		}
	}
	return 0, reasonConvert
}

// encode encodes v as ref's type for Extra, using tmp for small values.
func encode(ref *ieRef, v *value, tmp *[16]byte) ([]byte, errReason) {
	if !ref.hasType {
		// An IE no registry knows: keep bytes as they are; otherwise the
		// value's natural encoding.
		switch v.kind {
		case vBytes:
			return v.b, ok
		case vString:
			return stringBytes(v.s), ok
		case vAddr:
			return addrBytes(v.a, tmp), ok
		case vUint:
			binary.BigEndian.PutUint64(tmp[:8], v.u)
			return tmp[:8], ok
		case vTime:
			binary.BigEndian.PutUint64(tmp[:8], v.u/1e6)
			return tmp[:8], ok
		}
		return nil, reasonConvert
	}
	t := ref.dtype
	if n, signed, isInt := intWidth(t); isInt {
		if v.kind == vBytes && len(v.b) == n {
			return v.b, ok
		}
		var i int64
		if v.kind == vBytes && v.hasBT {
			if _, srcSigned, srcInt := intWidth(v.bt); srcInt && srcSigned && len(v.b) <= 8 {
				i, _ = ipfix.DecodeSigned(v.b)
				if !signed && i < 0 {
					return nil, reasonOverflow
				}
				return putInt(tmp, n, uint64(i), signed)
			}
		}
		u, isUint := v.uintOf()
		if !isUint || v.kind == vTime {
			return nil, reasonConvert
		}
		return putInt(tmp, n, u, signed)
	}
	switch t {
	case ipfix.String, ipfix.OctetArray:
		switch v.kind {
		case vString:
			return stringBytes(v.s), ok
		case vBytes:
			return v.b, ok
		}
	case ipfix.IPv4Address, ipfix.IPv6Address:
		want := 4
		if t == ipfix.IPv6Address {
			want = 16
		}
		switch {
		case v.kind == vAddr && len(addrBytes(v.a, tmp)) == want:
			return tmp[:want], ok
		case v.kind == vBytes && len(v.b) == want:
			return v.b, ok
		}
	case ipfix.DateTimeSeconds, ipfix.DateTimeMilliseconds:
		ns, reason := timeOf(v)
		if v.kind == vBytes && v.hasBT && v.bt == t {
			return v.b, ok
		}
		if reason != ok {
			return nil, reason
		}
		if t == ipfix.DateTimeSeconds {
			if ns/1e9 > math.MaxUint32 {
				return nil, reasonOverflow
			}
			binary.BigEndian.PutUint32(tmp[:4], uint32(ns/1e9))
			return tmp[:4], ok
		}
		binary.BigEndian.PutUint64(tmp[:8], ns/1e6)
		return tmp[:8], ok
	default:
		if v.kind == vBytes {
			return v.b, ok
		}
	}
	return nil, reasonConvert
}

// putInt encodes u in n bytes, big-endian; signed values are two's
// complement. It fails when the value does not fit.
func putInt(tmp *[16]byte, n int, u uint64, signed bool) ([]byte, errReason) {
	if n < 8 {
		if signed {
			i := int64(u)
			lim := int64(1) << (8*n - 1)
			if i < -lim || i >= lim {
				return nil, reasonOverflow
			}
		} else if u>>(8*n) != 0 {
			return nil, reasonOverflow
		}
	}
	binary.BigEndian.PutUint64(tmp[:8], u)
	return tmp[8-n : 8], ok
}

func addrBytes(a netip.Addr, tmp *[16]byte) []byte {
	if is6(a) {
		*tmp = a.As16()
		return tmp[:16]
	}
	a4 := a.Unmap().As4()
	copy(tmp[:4], a4[:])
	return tmp[:4]
}

// stringBytes views s as bytes without copying; callers only read them.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// putExtra stores enc (copied into b's arena) as ref's value in Extra,
// replacing an existing value or appending the IE.
func putExtra(r *flow.Record, b *flow.Batch, ref *ieRef, enc []byte) {
	variable := ref.hasType && (ref.dtype == ipfix.String || ref.dtype == ipfix.OctetArray) || !ref.hasType && len(enc) > 8
	val := b.CopyBytes(enc)
	if val == nil {
		val = []byte{}
	}
	if f := r.FindExtra(ref.key); f != nil {
		f.Value, f.Variable = val, variable
		return
	}
	r.Extra = append(r.Extra, flow.Field{Enterprise: ref.key.Enterprise, Element: ref.key.Element, Variable: variable, Value: val})
}

// remove deletes ref from r, keeping the order of Extra.
func remove(r *flow.Record, ref *ieRef) {
	if ref.typed {
		if ref.kind() == flow.KindAddress {
			if a := r.Addr(ref.field); a.IsValid() && is6(a) != ref.v6 {
				return // the field holds the other family's IE
			}
		}
		r.Clear(ref.field)
		return
	}
	for i := range r.Extra {
		if r.Extra[i].Key() == ref.key {
			copy(r.Extra[i:], r.Extra[i+1:])
			r.Extra[len(r.Extra)-1] = flow.Field{}
			r.Extra = r.Extra[:len(r.Extra)-1]
			return
		}
	}
}
