package ipfix

import (
	"net/netip"
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

// Every typed field except the two times (set by the time logic) must have
// a verified slot, or decoding silently falls back to the slower setters.
func TestSlots(t *testing.T) {
	for i, f := range flow.Fields {
		s := slots[i]
		if f.Kind == flow.KindUnsigned && int(s.size) < int(f.Width) {
			t.Errorf("field %s slot of %d bytes, width %d", f.Name, s.size, f.Width)
		}
	}
}

func TestSlotGetters(t *testing.T) {
	_, recs := antreaBatch(2)
	r := recs[1]
	r.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("fd00::1"))
	for i, f := range flow.Fields {
		id := flow.FieldID(i)
		switch f.Kind {
		case flow.KindString:
			if getString(r, id) != r.String(id) {
				t.Errorf("%s", f.Name)
			}
		case flow.KindAddress:
			if getAddr(r, id) != r.Addr(id) {
				t.Errorf("%s", f.Name)
			}
		default:
			if getUint(r, id) != r.Uint(id) {
				t.Errorf("%s", f.Name)
			}
		}
	}
}
