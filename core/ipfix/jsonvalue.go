package ipfix

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// AppendJSONValue appends the JSON form of an IE value of type t to dst:
// [FormatValue]'s result as JSON (numbers for integers and booleans,
// floats in strconv's shortest 'g' form, quoted strings for addresses,
// times in RFC 3339 UTC, MAC addresses and text, lower-case hex for
// anything else or a value of the wrong length), without boxing the value
// in an interface: it does not allocate.
func AppendJSONValue(dst []byte, t DataType, v []byte) []byte {
	switch t {
	case Unsigned8, Unsigned16, Unsigned32, Unsigned64:
		if len(v) >= 1 && len(v) <= 8 {
			return strconv.AppendUint(dst, readUint(v), 10)
		}
	case Signed8, Signed16, Signed32, Signed64:
		if len(v) >= 1 && len(v) <= 8 {
			shift := 64 - 8*uint(len(v))
			return strconv.AppendInt(dst, int64(readUint(v)<<shift)>>shift, 10)
		}
	case Float32:
		if len(v) == 4 {
			return appendJSONFloat(dst, float64(math.Float32frombits(binary.BigEndian.Uint32(v))))
		}
	case Float64:
		switch len(v) {
		case 4: // reduced-size encoding, RFC 7011 §6.2
			return appendJSONFloat(dst, float64(math.Float32frombits(binary.BigEndian.Uint32(v))))
		case 8:
			return appendJSONFloat(dst, math.Float64frombits(binary.BigEndian.Uint64(v)))
		}
	case Boolean:
		if len(v) == 1 {
			switch v[0] {
			case 1:
				return append(dst, "true"...)
			case 2: // RFC 7011 §6.1.5: false is 2
				return append(dst, "false"...)
			}
			return strconv.AppendUint(dst, uint64(v[0]), 10)
		}
	case MACAddress:
		if len(v) == 6 {
			dst = append(dst, '"')
			for i, c := range v {
				if i > 0 {
					dst = append(dst, ':')
				}
				dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
			}
			return append(dst, '"')
		}
	case String:
		if utf8.Valid(v) {
			return AppendJSONString(dst, unsafe.String(unsafe.SliceData(v), len(v)))
		}
	case DateTimeSeconds:
		if len(v) >= 1 && len(v) <= 8 {
			return appendJSONTime(dst, int64(readUint(v))*1e9)
		}
	case DateTimeMilliseconds:
		if len(v) >= 1 && len(v) <= 8 {
			return appendJSONTime(dst, int64(readUint(v))*1e6)
		}
	case DateTimeMicroseconds, DateTimeNanoseconds:
		if len(v) == 8 {
			return appendJSONTime(dst, ntpToUnixNano(v, t == DateTimeMicroseconds))
		}
	case IPv4Address:
		if len(v) == 4 {
			dst = append(dst, '"')
			dst = netip.AddrFrom4([4]byte(v)).AppendTo(dst)
			return append(dst, '"')
		}
	case IPv6Address:
		if len(v) == 16 {
			dst = append(dst, '"')
			dst = netip.AddrFrom16([16]byte(v)).AppendTo(dst)
			return append(dst, '"')
		}
	}
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, v)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONFloat writes f in the shortest 'g' form (NaN and ±Inf as the
// strings FormatValue gives them).
func appendJSONFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		dst = append(dst, '"')
		dst = append(dst, formatFloatSpecial(f)...)
		return append(dst, '"')
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

func appendJSONTime(dst []byte, ns int64) []byte {
	dst = append(dst, '"')
	dst = time.Unix(0, ns).UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// jsonSafe marks the ASCII bytes a JSON string holds as they are.
var jsonSafe = func() (s [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		s[c] = c != '"' && c != '\\'
	}
	return s
}()

// AppendJSONString appends s as a quoted JSON string: '"', '\\' and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, the rest
// as is (encoding/json's output without its HTML escaping).
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
