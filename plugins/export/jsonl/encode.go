package jsonl

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// Encoder appends records as JSON objects without reflection, maps or
// allocation: keys are precomputed, numbers, addresses and times are
// formatted in place into the caller's buffer. Not safe for concurrent use.
//
// # Notes
//   - Key order is fixed: exporterIPv4Address/exporterIPv6Address and
//     exporterTransportPort (when the exporter is known),
//     observationDomainId, the present typed fields in [flow.Fields] order,
//     then (with Extra) the verbatim IEs in template order.
//   - Times are flowStartMilliseconds/flowEndMilliseconds as RFC 3339 UTC
//     strings with milliseconds ("2026-11-27T12:00:00.000Z").
//   - Verbatim IEs are named from the IANA and Antrea registries; unknown
//     ones as "ie<enterprise>_<element>" with their bytes in hex.
//   - Speed: a fixed-width key or value is stored into spare capacity as
//     one fixed-size copy (no memmove call per key); the text of the
//     exporter/domain prefix and of a time's second are kept from the
//     previous record, since consecutive records mostly share them.
type Encoder struct {
	// Extra includes the verbatim IEs (Record.Extra).
	Extra bool

	names [extraCacheSize]extraName // recently seen verbatim IEs
	next  int                       // slot the next miss replaces

	head      []byte         // `{"exporter…":…,"observationDomainId":N` of headExp/headDom
	headExp   netip.AddrPort // exporter head was made for
	headDom   uint32
	headValid bool

	secs [timeCacheSize]secText // per time field: the text of its last second

	day     int64    // day (since epoch) of dayText
	dayText [11]byte // "2006-01-02T" of day; dayText[0] == 0 when unset
}

// extraCacheSize bounds the verbatim IEs whose JSON key is remembered; a
// template rarely has more.
const extraCacheSize = 32

// timeCacheSize is the number of second texts kept: one per time field
// (flowStart and flowEnd differ within a record).
const timeCacheSize = 4

type extraName struct {
	key   flow.IEKey
	valid bool
	typ   ipfix.DataType
	known bool
	json  string // `,"name":`
}

// secText is the text `"2006-01-02T15:04:05.` of the second that starts
// at ns lo (since the epoch); hi = lo + 1s; lo == hi when unset.
type secText struct {
	lo, hi int64
	text   [24]byte // 21 used; 24 so that it is stored with one fixed copy
}

// keyText is a JSON key as stored into the buffer: text[:n] is written
// with one copy of the whole array.
type keyText struct {
	text [keyMax]byte
	n    int
}

// keyMax bounds `,"name":"` of every typed field (the longest names have
// 30 characters).
const keyMax = 48

// room is the spare capacity a typed field's key and fixed-width value
// take at most: keyMax and an IPv6 address (45 without zone) with quotes,
// a 20-digit number or a time (26).
const room = 128

// encField is what Append needs of a typed field.
type encField struct {
	off  uintptr
	size uintptr
	kind flow.Kind
	time int     // index into Encoder.secs, for KindTime
	key  keyText // `,"name":`; for addresses `,"name":"` (IPv4 name)
	key6 keyText // `,"name6":"` for addresses
}

var encFields = func() (t [flow.NumFields]encField) {
	times := 0
	mk := func(s string) (k keyText) {
		if len(s) > keyMax {
			panic("jsonl: key " + s + " longer than keyMax")
		}
		k.n = copy(k.text[:], s)
		return k
	}
	for i := range flow.Fields {
		f := &flow.Fields[i]
		s := flow.SlotOf(flow.FieldID(i))
		e := &t[i]
		e.off, e.size, e.kind = s.Offset, s.Size, f.Kind
		switch f.Kind {
		case flow.KindAddress:
			e.key = mk(`,"` + f.Name + `":"`)
			e.key6 = mk(`,"` + f.Name6 + `":"`)
		case flow.KindTime:
			e.time = times % timeCacheSize
			times++
			e.key = mk(`,"` + f.Name + `":`)
		default:
			e.key = mk(`,"` + f.Name + `":`)
		}
	}
	return t
}()

// putKey stores k at the end of dst, which has room.
func putKey(dst []byte, k *keyText) []byte {
	l := len(dst)
	*(*[keyMax]byte)(dst[l : l+keyMax]) = k.text
	return dst[:l+k.n]
}

// octet is the text of 0..255 followed by '.', for IPv4 addresses.
type octet struct {
	text [4]byte
	n    int
}

var octets = func() (t [256]octet) {
	for i := range t {
		b := putUint(make([]byte, 0, 24), uint64(i))
		t[i].n = copy(t[i].text[:], append(b, '.'))
	}
	return t
}()

// putIPv4 stores a dotted quad and a closing quote at the end of dst,
// which has room.
func putIPv4(dst []byte, a [4]byte) []byte {
	l := len(dst)
	for _, o := range a {
		t := &octets[o]
		*(*[4]byte)(dst[l : l+4]) = t.text
		l += t.n
	}
	dst = dst[:l]
	dst[l-1] = '"' // over the last '.'
	return dst
}

// pow10[i] is 10^i.
var pow10 = func() (t [20]uint64) {
	t[0] = 1
	for i := 1; i < len(t); i++ {
		t[i] = t[i-1] * 10
	}
	return t
}()

const digits2 = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// putUint stores v in decimal at the end of dst, which has room for 20
// bytes.
func putUint(dst []byte, v uint64) []byte {
	l := len(dst)
	if v < 10 {
		dst = dst[:l+1]
		dst[l] = byte('0' + v)
		return dst
	}
	n := bits.Len64(v) * 1233 >> 12 // floor(log10(v)) or one less
	if v >= pow10[n] {
		n++
	}
	b := dst[l : l+n]
	i := n
	for v >= 100 {
		q := v / 100
		r := (v - q*100) * 2
		i -= 2
		b[i], b[i+1] = digits2[r], digits2[r+1]
		v = q
	}
	if v >= 10 {
		b[0], b[1] = digits2[2*v], digits2[2*v+1]
	} else {
		b[0] = byte('0' + v)
	}
	return dst[:l+n]
}

// putString stores s as a quoted JSON string at the end of dst, which has
// room for a short plain one: printable ASCII without '"' or '\\', stored
// as it is (the usual Pod, namespace and label text); the others escaped
// by [ipfix.AppendJSONString].
func putString(dst []byte, s string) []byte {
	if len(s) > room-keyMax-2 || !plain(s) {
		return ipfix.AppendJSONString(dst, s)
	}
	l := len(dst)
	dst = dst[:l+len(s)+2]
	dst[l] = '"'
	copy(dst[l+1:], s)
	dst[l+1+len(s)] = '"'
	return dst
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain reports whether s is ASCII from ' ' on, without '"' or '\\':
// eight bytes per step (any byte below 0x20 or from 0x80, or equal to one
// of the two).
func plain(s string) bool {
	p := unsafe.StringData(s)
	n := len(s)
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(p), i)), 8))
		q := x ^ ('"' * ones)
		b := x ^ ('\\' * ones)
		if (x|(x-0x20*ones)|(q-ones)&^q|(b-ones)&^b)&highs != 0 {
			return false
		}
	}
	for ; i < n; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// AppendRecord appends r as one JSON object (no newline) to dst: the
// exporter's address and observation domain, the present typed fields, and,
// if extra is set, the verbatim IEs. It is [Encoder.Append] without the
// encoder's caches.
func AppendRecord(dst []byte, r *flow.Record, extra bool) []byte {
	e := Encoder{Extra: extra}
	return e.Append(dst, r)
}

// Append appends r as one JSON object (no newline) to dst and returns the
// extended buffer.
func (e *Encoder) Append(dst []byte, r *flow.Record) []byte {
	if !e.headValid || r.Exporter != e.headExp || r.ObservationDomainID != e.headDom {
		e.head = appendHead(e.head[:0], r.Exporter, r.ObservationDomainID)
		e.headExp, e.headDom, e.headValid = r.Exporter, r.ObservationDomainID, true
	}
	dst = append(dst, e.head...)

	base := unsafe.Pointer(r)
	present := r.PresentSet()
	for w := range present {
		for word := present[w]; word != 0; word &= word - 1 {
			f := &encFields[w<<6+bits.TrailingZeros64(word)]
			if cap(dst)-len(dst) < room {
				dst = slices.Grow(dst, room)
			}
			p := unsafe.Add(base, f.off)
			switch f.kind {
			case flow.KindAddress:
				a := (*netip.Addr)(p)
				if a.Is4() {
					dst = putIPv4(putKey(dst, &f.key), a.As4())
				} else if a.Is4In6() {
					dst = putIPv4(putKey(dst, &f.key), a.Unmap().As4())
				} else if a.IsValid() {
					dst = putKey(dst, &f.key6)
					dst = a.AppendTo(dst) // may carry a zone: any length
					dst = append(dst, '"')
				}
			case flow.KindString:
				dst = putString(putKey(dst, &f.key), *(*string)(p))
			case flow.KindTime:
				dst = e.putTime(putKey(dst, &f.key), *(*int64)(p), &e.secs[f.time])
			default:
				var v uint64
				switch f.size {
				case 1:
					v = uint64(*(*uint8)(p))
				case 2:
					v = uint64(*(*uint16)(p))
				case 4:
					v = uint64(*(*uint32)(p))
				default:
					v = *(*uint64)(p)
				}
				dst = putUint(putKey(dst, &f.key), v)
			}
		}
	}
	if e.Extra {
		for i := range r.Extra {
			x := &r.Extra[i]
			n := e.name(x.Key())
			dst = append(dst, n.json...)
			if n.known {
				dst = ipfix.AppendJSONValue(dst, n.typ, x.Value)
			} else {
				dst = ipfix.AppendJSONValue(dst, ipfix.OctetArray, x.Value)
			}
		}
	}
	return append(dst, '}')
}

// appendHead appends `{` and the exporter's address and port (when known)
// and the observation domain.
func appendHead(dst []byte, exp netip.AddrPort, dom uint32) []byte {
	dst = slices.Grow(dst, 2*room)
	if a := exp.Addr(); a.IsValid() {
		a = a.Unmap()
		if a.Is4() {
			dst = append(dst, `{"exporterIPv4Address":"`...)
			dst = putIPv4(dst, a.As4())
		} else {
			dst = append(dst, `{"exporterIPv6Address":"`...)
			dst = a.AppendTo(dst)
			dst = append(dst, '"')
		}
		dst = slices.Grow(dst, 2*room)
		dst = append(dst, `,"exporterTransportPort":`...)
		dst = putUint(dst, uint64(exp.Port()))
		dst = append(dst, `,"observationDomainId":`...)
	} else {
		dst = append(dst, `{"observationDomainId":`...)
	}
	return putUint(dst, uint64(dom))
}

// name returns the JSON key and type of verbatim IE k, from the cache or
// the registry.
func (e *Encoder) name(k flow.IEKey) *extraName {
	for i := range e.names {
		if n := &e.names[i]; n.valid && n.key == k {
			return n
		}
	}
	n := &e.names[e.next]
	e.next = (e.next + 1) % extraCacheSize
	*n = extraName{key: k, valid: true}
	if info, ok := ipfix.LookupIE(k); ok {
		n.known, n.typ = true, info.Type
		n.json = `,"` + info.Name + `":`
	} else {
		b := append([]byte(`,"ie`), putUint(make([]byte, 0, 24), uint64(k.Enterprise))...)
		b = append(b, '_')
		b = append(b, putUint(make([]byte, 0, 24), uint64(k.Element))...)
		n.json = string(append(b, `":`...))
	}
	return n
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// putTime stores ns (since the epoch) as a quoted RFC 3339 UTC time with
// milliseconds, truncated as time.Format truncates, at the end of dst,
// which has room. c keeps the text of the last second of this field.
func (e *Encoder) putTime(dst []byte, ns int64, c *secText) []byte {
	if ns < c.lo || ns >= c.hi {
		if !e.fillSecond(c, ns) {
			dst = append(dst, '"')
			dst = time.Unix(0, ns).UTC().AppendFormat(dst, timeLayout)
			return append(dst, '"')
		}
	}
	l := len(dst)
	*(*[24]byte)(dst[l : l+24]) = c.text
	b := dst[l+21 : l+26]
	msec := uint64(ns-c.lo) / 1e6
	b[0] = byte('0' + msec/100)
	b[1] = byte('0' + msec/10%10)
	b[2] = byte('0' + msec%10)
	b[3] = 'Z'
	b[4] = '"'
	return dst[:l+26]
}

// fillSecond makes c the text of the second ns falls in; false when its
// year is outside 0000–9999 (time.Format's own text then).
func (e *Encoder) fillSecond(c *secText, ns int64) bool {
	sec := floorDiv(ns, 1e9)
	if sec <= math.MinInt64/int64(time.Second) || sec >= math.MaxInt64/int64(time.Second) {
		return false // lo or hi would not fit in an int64
	}
	day := floorDiv(sec, 86400)
	if e.dayText[0] == 0 || day != e.day {
		y, m, d := civil(day)
		if y < 0 || y > 9999 {
			return false
		}
		e.day = day
		t := &e.dayText
		put4(t[0:], y)
		t[4] = '-'
		put2(t[5:], m)
		t[7] = '-'
		put2(t[8:], d)
		t[10] = 'T'
	}
	s := int(sec - day*86400)
	t := &c.text
	t[0] = '"'
	copy(t[1:12], e.dayText[:])
	put2(t[12:], s/3600)
	t[14] = ':'
	put2(t[15:], s/60%60)
	t[17] = ':'
	put2(t[18:], s%60)
	t[20] = '.'
	c.lo, c.hi = sec*1e9, sec*1e9+1e9
	return true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func put2(b []byte, v int) { b[0], b[1] = byte('0'+v/10), byte('0'+v%10) }

func put4(b []byte, v int) {
	b[0], b[1], b[2], b[3] = byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10)
}

// civil returns the proleptic Gregorian date of day (days since
// 1970-01-01); H. Hinnant's days_from_civil inverse.
func civil(day int64) (year, month, dom int) {
	z := day + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return int(y), int(m), int(d)
}
