package ipfix

import (
	"sync"

	"github.com/weir-flow/weir/core/flow"
)

// ieClass is what compiling a template needs to know of one IE: whether a
// registry names it and which typed field stores it. A dense table of them
// keeps compiling a template cheap per field (a template may have 16,383
// fields, and an exporter chooses how often to send one).
type ieClass struct {
	field flow.FieldID
	typed bool // field is valid
	known bool // in the IANA, reverse or Antrea registry
}

var (
	ieClassOnce sync.Once
	// ieClasses holds the classes of the IANA, reverse and Antrea IEs with
	// element IDs below registryScanLimit, in that PEN order.
	ieClasses [3][registryScanLimit]ieClass
)

func penIndex(pen uint32) int {
	switch pen {
	case flow.IANA:
		return 0
	case flow.ReversePEN:
		return 1
	case flow.AntreaPEN:
		return 2
	}
	return -1
}

func loadIEClasses() {
	ieClassOnce.Do(func() {
		loadRegistry()
		for p, pen := range [3]uint32{flow.IANA, flow.ReversePEN, flow.AntreaPEN} {
			for e := range registryScanLimit {
				k := flow.IEKey{Enterprise: pen, Element: uint16(e)}
				c := &ieClasses[p][e]
				_, c.known = ieByKey[k]
				c.field, c.typed = flow.FieldByIE(k)
			}
		}
	})
}

// classOf returns the class of IE k.
func classOf(k flow.IEKey) ieClass {
	if p := penIndex(k.Enterprise); p >= 0 && int(k.Element) < registryScanLimit {
		return ieClasses[p][k.Element]
	}
	// Outside the table: a Weir-local IE (local.go), or a typed field in
	// theory.
	var c ieClass
	_, c.known = ieByKey[k]
	c.field, c.typed = flow.FieldByIE(k)
	return c
}
