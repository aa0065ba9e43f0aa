package ipfix

import (
	"encoding/binary"
	"math"
	"net/netip"
	"unicode/utf8"
)

// Value decoding by RFC 7011 abstract data type (§6.1), for IEs kept
// verbatim (flow.Record.Extra). Each function reports ok false for a value
// whose length its type does not allow; none panics.

// DecodeUnsigned decodes an unsigned8/16/32/64 value: 1 to 8 bytes, big-endian,
// reduced-size encoding allowed (RFC 7011 §6.1.1, §6.2).
func DecodeUnsigned(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 8 {
		return 0, false
	}
	return readUint(v), true
}

// DecodeSigned decodes a signed8/16/32/64 value: 1 to 8 bytes, big-endian two's
// complement, sign-extended from reduced-size encoding (§6.1.2, §6.2).
func DecodeSigned(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 8 {
		return 0, false
	}
	shift := 64 - 8*uint(len(v))
	return int64(readUint(v)<<shift) >> shift, true
}

// DecodeFloat decodes a float32 (4 bytes) or float64 (8 bytes, or 4 in
// reduced-size encoding) value, IEEE 754 big-endian (§6.1.3, §6.2).
func DecodeFloat(v []byte) (float64, bool) {
	switch len(v) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(v))), true
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(v)), true
	}
	return 0, false
}

// DecodeBoolean decodes a boolean: one byte, 1 for true and 2 for false
// (§6.1.5); any other value is not a boolean.
func DecodeBoolean(v []byte) (value, ok bool) {
	if len(v) != 1 || v[0] != 1 && v[0] != 2 {
		return false, false
	}
	return v[0] == 1, true
}

// DecodeAddress decodes an ipv4Address (4 bytes) or ipv6Address (16 bytes),
// network order (§6.1.12, §6.1.13).
func DecodeAddress(v []byte) (netip.Addr, bool) {
	switch len(v) {
	case 4:
		return netip.AddrFrom4([4]byte(v)), true
	case 16:
		return netip.AddrFrom16([16]byte(v)), true
	}
	return netip.Addr{}, false
}

// DecodeString decodes a string: UTF-8, any length (§6.1.6). Invalid UTF-8 is
// not a string.
func DecodeString(v []byte) (string, bool) {
	if !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}

// DecodeTime decodes a dateTimeSeconds or dateTimeMilliseconds value (an
// unsigned integer of 1 to 8 bytes since the Unix epoch, §6.1.7, §6.1.8)
// or a dateTimeMicroseconds or dateTimeNanoseconds value (8-byte NTP
// timestamp, §6.1.9, §6.1.10) into nanoseconds since the Unix epoch. t
// must be one of those four types.
func DecodeTime(t DataType, v []byte) (int64, bool) {
	switch t {
	case DateTimeSeconds:
		if u, ok := DecodeUnsigned(v); ok {
			return int64(u) * 1e9, true
		}
	case DateTimeMilliseconds:
		if u, ok := DecodeUnsigned(v); ok {
			return int64(u) * 1e6, true
		}
	case DateTimeMicroseconds, DateTimeNanoseconds:
		if len(v) == 8 {
			return ntpToUnixNano(v, t == DateTimeMicroseconds), true
		}
	}
	return 0, false
}
