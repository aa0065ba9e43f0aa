package jsonl

import (
	"math/bits"
	"net/netip"
	"strconv"
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
type Encoder struct {
	// Extra includes the verbatim IEs (Record.Extra).
	Extra bool

	names [extraCacheSize]extraName // recently seen verbatim IEs
	next  int                       // slot the next miss replaces

	day     int64    // day (since epoch) of dayText
	dayText [11]byte // "2006-01-02T" of day; dayText[0] == 0 when unset
}

// extraCacheSize bounds the verbatim IEs whose JSON key is remembered; a
// template rarely has more.
const extraCacheSize = 32

type extraName struct {
	key   flow.IEKey
	valid bool
	typ   ipfix.DataType
	known bool
	json  string // `,"name":`
}

// fieldKeys holds `,"name":` (and the IPv6 name for addresses) per typed
// field.
var fieldKeys = func() (k [flow.NumFields][2]string) {
	for i := range flow.Fields {
		f := &flow.Fields[i]
		k[i][0] = `,"` + f.Name + `":`
		if f.Name6 != "" {
			k[i][1] = `,"` + f.Name6 + `":`
		}
	}
	return k
}()

// slots says where each typed field lives in a Record.
var slots = func() (s [flow.NumFields]flow.Slot) {
	for i := range s {
		s[i] = flow.SlotOf(flow.FieldID(i))
	}
	return s
}()

// decimal holds the text of 0..255, for IPv4 addresses.
var decimal = func() (d [256]string) {
	for i := range d {
		d[i] = strconv.Itoa(i)
	}
	return d
}()

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
	if a := r.Exporter.Addr(); a.IsValid() {
		a = a.Unmap()
		if a.Is4() {
			dst = append(dst, `{"exporterIPv4Address":"`...)
			dst = appendIPv4(dst, a.As4())
		} else {
			dst = append(dst, `{"exporterIPv6Address":"`...)
			dst = a.AppendTo(dst)
		}
		dst = append(dst, `","exporterTransportPort":`...)
		dst = strconv.AppendUint(dst, uint64(r.Exporter.Port()), 10)
		dst = append(dst, `,"observationDomainId":`...)
	} else {
		dst = append(dst, `{"observationDomainId":`...)
	}
	dst = strconv.AppendUint(dst, uint64(r.ObservationDomainID), 10)

	base := unsafe.Pointer(r)
	present := r.PresentSet()
	for w := range present {
		for word := present[w]; word != 0; word &= word - 1 {
			id := flow.FieldID(w<<6 + bits.TrailingZeros64(word))
			s := slots[id]
			p := unsafe.Add(base, s.Offset)
			switch flow.Fields[id].Kind {
			case flow.KindAddress:
				a := *(*netip.Addr)(p)
				if !a.IsValid() {
					continue
				}
				if a.Is4() || a.Is4In6() {
					dst = append(dst, fieldKeys[id][0]...)
					dst = append(dst, '"')
					dst = appendIPv4(dst, a.Unmap().As4())
				} else {
					dst = append(dst, fieldKeys[id][1]...)
					dst = append(dst, '"')
					dst = a.AppendTo(dst)
				}
				dst = append(dst, '"')
			case flow.KindString:
				dst = append(dst, fieldKeys[id][0]...)
				dst = ipfix.AppendJSONString(dst, *(*string)(p))
			case flow.KindTime:
				dst = append(dst, fieldKeys[id][0]...)
				dst = e.appendTime(dst, *(*int64)(p))
			default:
				var v uint64
				switch s.Size {
				case 1:
					v = uint64(*(*uint8)(p))
				case 2:
					v = uint64(*(*uint16)(p))
				case 4:
					v = uint64(*(*uint32)(p))
				default:
					v = *(*uint64)(p)
				}
				dst = append(dst, fieldKeys[id][0]...)
				dst = strconv.AppendUint(dst, v, 10)
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
		b := append([]byte(`,"ie`), strconv.FormatUint(uint64(k.Enterprise), 10)...)
		b = append(b, '_')
		b = strconv.AppendUint(b, uint64(k.Element), 10)
		n.json = string(append(b, `":`...))
	}
	return n
}

// appendIPv4 appends a dotted-quad address.
func appendIPv4(dst []byte, a [4]byte) []byte {
	dst = append(dst, decimal[a[0]]...)
	dst = append(dst, '.')
	dst = append(dst, decimal[a[1]]...)
	dst = append(dst, '.')
	dst = append(dst, decimal[a[2]]...)
	dst = append(dst, '.')
	return append(dst, decimal[a[3]]...)
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendTime appends ns (since the epoch) as a quoted RFC 3339 UTC time
// with milliseconds, truncated as time.Format truncates. The date part is
// computed once per day.
func (e *Encoder) appendTime(dst []byte, ns int64) []byte {
	ms := floorDiv(ns, 1e6)
	sec := floorDiv(ms, 1000)
	day := floorDiv(sec, 86400)
	if e.dayText[0] == 0 || day != e.day {
		y, m, d := civil(day)
		if y < 0 || y > 9999 {
			dst = append(dst, '"')
			dst = time.Unix(0, ns).UTC().AppendFormat(dst, timeLayout)
			return append(dst, '"')
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
	var b [14]byte // `HH:MM:SS.mmmZ"`
	put2(b[0:], s/3600)
	b[2] = ':'
	put2(b[3:], s/60%60)
	b[5] = ':'
	put2(b[6:], s%60)
	b[8] = '.'
	msec := int(ms - sec*1000)
	b[9] = byte('0' + msec/100)
	b[10] = byte('0' + msec/10%10)
	b[11] = byte('0' + msec%10)
	b[12] = 'Z'
	b[13] = '"'
	dst = append(dst, '"')
	dst = append(dst, e.dayText[:]...)
	return append(dst, b[:]...)
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
