package flow

import (
	"net/netip"
	"testing"
	"unsafe"
)

// TestLayout checks every slot against the accessors: a value stored at the
// slot reads back through Uint/String/Addr.
func TestLayout(t *testing.T) {
	for i := range Fields {
		f := FieldID(i)
		t.Run(f.String(), func(t *testing.T) {
			var r Record
			s := SlotOf(f)
			p := unsafe.Add(unsafe.Pointer(&r), s.Offset)
			switch Fields[f].Kind {
			case KindString:
				*(*string)(p) = "probe"
				if r.String(f) != "probe" {
					t.Fatalf("slot %+v is not %s", s, f)
				}
			case KindAddress:
				a := netip.MustParseAddr("192.0.2.1")
				*(*netip.Addr)(p) = a
				if r.Addr(f) != a {
					t.Fatalf("slot %+v is not %s", s, f)
				}
			default:
				if Fields[f].Kind == KindUnsigned && int(s.Size) < int(Fields[f].Width) {
					t.Fatalf("slot of %d bytes for an IE of width %d", s.Size, Fields[f].Width)
				}
				var v uint64 = 0x0102030405060708
				switch s.Size {
				case 1:
					*(*uint8)(p) = uint8(v)
				case 2:
					*(*uint16)(p) = uint16(v)
				case 4:
					*(*uint32)(p) = uint32(v)
				case 8:
					*(*uint64)(p) = v
				default:
					t.Fatalf("slot %+v: unsigned field of %d bytes", s, s.Size)
				}
				if want := v & (1<<(8*s.Size) - 1); s.Size < 8 && r.Uint(f) != want || s.Size == 8 && r.Uint(f) != v {
					t.Fatalf("slot %+v reads %#x through Uint", s, r.Uint(f))
				}
			}
		})
	}
}

func TestPresentSet(t *testing.T) {
	var r Record
	r.SetUint(OctetDeltaCount, 0)
	r.SourcePodName = "web-0" // assigned directly: present by being non-empty
	r.SetAddr(DestinationAddress, netip.MustParseAddr("fd00::1"))
	s := r.PresentSet()
	var got []FieldID
	for f, ok := s.Next(0); ok; f, ok = s.Next(f + 1) {
		got = append(got, f)
	}
	want := []FieldID{DestinationAddress, OctetDeltaCount, SourcePodName}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for i := range Fields {
		if f := FieldID(i); s.Has(f) != r.Has(f) {
			t.Errorf("%s: PresentSet %v, Has %v", f, s.Has(f), r.Has(f))
		}
	}
}
