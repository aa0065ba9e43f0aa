package kafkawire

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

func TestRawRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		exporter netip.AddrPort
		at       time.Time
		pre, msg []byte
	}{
		{"ipv4 with preamble", netip.MustParseAddrPort("192.0.2.1:4739"), time.Unix(1_800_000_000, 123), []byte{0, 10, 0, 16}, []byte{0, 10, 0, 20, 1}},
		{"ipv6 without preamble", netip.MustParseAddrPort("[2001:db8::1]:2055"), time.Unix(5, 0), nil, []byte{0, 10}},
		{"zero time", netip.MustParseAddrPort("10.0.0.1:1"), time.Time{}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := AppendRaw(nil, tc.exporter, tc.at, tc.pre, tc.msg)
			if KindOf(v) != KindRaw {
				t.Fatalf("KindOf = %v", KindOf(v))
			}
			r, err := ParseRaw(v)
			if err != nil {
				t.Fatal(err)
			}
			if r.Exporter != tc.exporter || !r.Received.Equal(tc.at) || !bytes.Equal(r.Preamble, tc.pre) || !bytes.Equal(r.Message, tc.msg) {
				t.Errorf("round trip: %+v", r)
			}
		})
	}
}

// TestRawGolden pins the envelope's bytes, which other implementations
// read (docs/kafka.md).
func TestRawGolden(t *testing.T) {
	v := AppendRaw(nil, netip.MustParseAddrPort("192.0.2.1:4739"), time.Unix(0, 0x0102030405060708), []byte{0xaa}, []byte{0xbb, 0xcc})
	want := []byte{
		'W', 'R', 'A', 'W', 0, 1, 0, 40,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1,
		0x12, 0x83, 0, 1,
		1, 2, 3, 4, 5, 6, 7, 8,
		0, 0, 0, 0,
		0xaa, 0xbb, 0xcc,
	}
	if !bytes.Equal(v, want) {
		t.Errorf("envelope\n got % x\nwant % x", v, want)
	}
}

func FuzzParseRaw(f *testing.F) {
	f.Add(AppendRaw(nil, netip.MustParseAddrPort("192.0.2.1:4739"), time.Unix(1, 0), []byte{1, 2}, []byte{3}))
	f.Add([]byte("WRAW\x00\x01\x00\x28"))
	f.Add([]byte("WEIR"))
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := ParseRaw(v)
		if err != nil {
			return
		}
		if len(r.Preamble)+len(r.Message) > len(v) {
			t.Fatalf("slices beyond the value: %d+%d > %d", len(r.Preamble), len(r.Message), len(v))
		}
	})
}
