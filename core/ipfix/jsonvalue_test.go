package ipfix

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"testing"
)

// TestAppendJSONValue checks AppendJSONValue against FormatValue rendered
// by encoding/json (floats against strconv's 'g' form, which export.jsonl
// has always written), for every type with values of right and wrong
// lengths.
func TestAppendJSONValue(t *testing.T) {
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	values := [][]byte{
		nil, {0}, {1}, {2}, {0xff}, {0x80, 0}, {1, 2, 3}, u32(0xdeadbeef), u32(math.Float32bits(1.5)),
		u32(math.Float32bits(float32(math.Inf(-1)))), u64(math.Float64bits(1e-7)), u64(math.Float64bits(math.NaN())),
		u64(math.Float64bits(123456789.125)), u64(1 << 63), {0, 0x1b, 0x21, 0xa, 0xb, 0xc},
		[]byte("eth0\x01\"\\"), []byte("bad\xff"), []byte("2001:db8::1 as 16 bytes"[:16]),
		{10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
	}
	for typ := DataType(0); typ < numDataTypes; typ++ {
		t.Run(typ.String(), func(t *testing.T) {
			for _, v := range values {
				got := string(AppendJSONValue(nil, typ, v))
				var want string
				switch f := FormatValue(typ, v).(type) {
				case float64:
					want = strconv.FormatFloat(f, 'g', -1, 64)
				default:
					b, err := json.Marshal(f)
					if err != nil {
						t.Fatal(err)
					}
					want = string(b)
				}
				// encoding/json escapes <, > and & for HTML; AppendJSONValue
				// does not, and none of the values above has them.
				if typ == String {
					// encoding/json writes \f and \b short; both forms are
					// the same string.
					var g, w any
					_ = json.Unmarshal([]byte(got), &g)
					_ = json.Unmarshal([]byte(want), &w)
					if g != w {
						t.Errorf("AppendJSONValue(%s, % x) = %s, want %s", typ, v, got, want)
					}
				} else if got != want {
					t.Errorf("AppendJSONValue(%s, % x) = %s, want %s", typ, v, got, want)
				}
				if !json.Valid([]byte(got)) {
					t.Errorf("AppendJSONValue(%s, % x) = %s: not JSON", typ, v, got)
				}
			}
		})
	}
}

func TestAppendJSONValueAllocs(t *testing.T) {
	v := u64For(1_700_000_000_123)
	dst := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendJSONValue(dst[:0], Unsigned64, v)
		dst = AppendJSONValue(dst[:0], IPv4Address, v[:4])
		dst = AppendJSONValue(dst[:0], String, v)
		dst = AppendJSONValue(dst[:0], OctetArray, v)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations, want 0", allocs)
	}
}

func u64For(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }
