package ipfix

import (
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestDecodeValues(t *testing.T) {
	ntp := []byte{0xe8, 0xfe, 0x6f, 0x80, 0x80, 0, 0, 0} // 2023-11-14T22:13:20.5Z
	tests := []struct {
		name string
		got  func() (any, bool)
		want any
		ok   bool
	}{
		{"unsigned8", func() (any, bool) { return DecodeUnsigned([]byte{7}) }, uint64(7), true},
		{"unsigned64 reduced to 3", func() (any, bool) { return DecodeUnsigned([]byte{1, 2, 3}) }, uint64(0x010203), true},
		{"unsigned empty", func() (any, bool) { return DecodeUnsigned(nil) }, uint64(0), false},
		{"unsigned 9 bytes", func() (any, bool) { return DecodeUnsigned(make([]byte, 9)) }, uint64(0), false},
		{"signed8 -1", func() (any, bool) { return DecodeSigned([]byte{0xff}) }, int64(-1), true},
		{"signed reduced to 2", func() (any, bool) { return DecodeSigned([]byte{0xff, 0xfe}) }, int64(-2), true},
		{"float32", func() (any, bool) { return DecodeFloat([]byte{0x3f, 0xc0, 0, 0}) }, 1.5, true},
		{"float64", func() (any, bool) { return DecodeFloat(be64(math.Float64bits(-2.25))) }, -2.25, true},
		{"float of 3 bytes", func() (any, bool) { return DecodeFloat([]byte{1, 2, 3}) }, 0.0, false},
		{"boolean true", func() (any, bool) { return DecodeBoolean([]byte{1}) }, true, true},
		{"boolean false is 2", func() (any, bool) { return DecodeBoolean([]byte{2}) }, false, true},
		{"boolean 0", func() (any, bool) { return DecodeBoolean([]byte{0}) }, false, false},
		{"ipv4", func() (any, bool) { return DecodeAddress([]byte{192, 0, 2, 1}) }, netip.MustParseAddr("192.0.2.1"), true},
		{"ipv6", func() (any, bool) {
			return DecodeAddress(netip.MustParseAddr("2001:db8::1").AsSlice())
		}, netip.MustParseAddr("2001:db8::1"), true},
		{"address of 5 bytes", func() (any, bool) { return DecodeAddress(make([]byte, 5)) }, netip.Addr{}, false},
		{"string", func() (any, bool) { return DecodeString([]byte("pod")) }, "pod", true},
		{"string not UTF-8", func() (any, bool) { return DecodeString([]byte{0xff}) }, "", false},
		{"dateTimeSeconds", func() (any, bool) { return DecodeTime(DateTimeSeconds, []byte{0x65, 0x53, 0xf1, 0x00}) }, time.Unix(0x6553f100, 0).UnixNano(), true},
		{"dateTimeMilliseconds", func() (any, bool) { return DecodeTime(DateTimeMilliseconds, be64(1_700_000_000_123)) }, time.UnixMilli(1_700_000_000_123).UnixNano(), true},
		{"dateTimeNanoseconds", func() (any, bool) { return DecodeTime(DateTimeNanoseconds, ntp) }, time.Unix(1_700_000_000, 500_000_000).UnixNano(), true},
		{"dateTimeMicroseconds short", func() (any, bool) { return DecodeTime(DateTimeMicroseconds, ntp[:4]) }, int64(0), false},
		{"not a time type", func() (any, bool) { return DecodeTime(Unsigned32, ntp[:4]) }, int64(0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.got()
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func be64(u uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(u >> (56 - 8*i))
	}
	return b
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(uint8(DateTimeNanoseconds), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint8(Float64), []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, typ uint8, v []byte) {
		_, _ = DecodeUnsigned(v)
		_, _ = DecodeSigned(v)
		_, _ = DecodeFloat(v)
		_, _ = DecodeBoolean(v)
		_, _ = DecodeAddress(v)
		_, _ = DecodeString(v)
		_, _ = DecodeTime(DataType(typ), v)
		_ = FormatValue(DataType(typ), v)
	})
}
