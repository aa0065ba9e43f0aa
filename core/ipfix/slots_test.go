package ipfix

import (
	"testing"

	"github.com/weir-flow/weir/core/flow"
)

// Every typed field except the two times (set by the time logic) must have
// a verified slot, or decoding silently falls back to the slower setters.
func TestSlots(t *testing.T) {
	for i, f := range flow.Fields {
		s := slots[i]
		if !s.ok {
			t.Errorf("field %s has no slot", f.Name)
			continue
		}
		if f.Kind == flow.KindUnsigned && int(s.size) < int(f.Width) {
			t.Errorf("field %s slot of %d bytes, width %d", f.Name, s.size, f.Width)
		}
	}
}
