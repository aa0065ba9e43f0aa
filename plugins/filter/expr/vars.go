package expr

import (
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// variable is a name an expression can read.
type variable struct {
	name string
	// sample is a zero value of the variable's Go type, for the type checker.
	sample any
	// bind makes the variable's per-evaluator cell.
	bind func() binding
}

// binding is one evaluator's cell for a variable: box is the value the
// expression sees, and load refreshes it from a record.
type binding struct {
	box  any
	load func(r *flow.Record)
}

// scalar are the types cells hold. None is pointer-shaped, so an interface
// holding one points at its value, which is what aliasBox relies on.
type scalar interface {
	~int | ~int64 | ~float64 | ~bool | ~string
}

// aliasBox returns an interface whose value is *p, read through p at each
// use rather than copied.
//
// Why: expr reads variables as `any`, and boxing a string or an integer of
// 256 or more allocates. A cell is boxed once, when its evaluator is made;
// loading a record then only stores into the cell, so evaluation does not
// allocate. This is sound because an interface holding a non-pointer-shaped
// type is a (type, pointer to value) pair, the cell outlives every use of
// the box, and the VM never keeps a value past Run: between two loads the
// box's value is stable, as an interface value must be.
func aliasBox[T scalar](p *T) any {
	var zero T
	v := any(zero) // boxing a zero scalar does not allocate
	(*[2]unsafe.Pointer)(unsafe.Pointer(&v))[1] = unsafe.Pointer(p)
	return v
}

// cell makes a binding that loads get(r) into a fresh cell.
func cell[T scalar](get func(r *flow.Record) T) func() binding {
	return func() binding {
		p := new(T)
		return binding{box: aliasBox(p), load: func(r *flow.Record) { *p = get(r) }}
	}
}

// addrCell makes a binding holding the text form of an address, or "" when
// ok(a) is false. The text lives in a buffer the cell owns and reuses.
func addrCell(get func(r *flow.Record) netip.Addr, ok func(netip.Addr) bool) func() binding {
	return func() binding {
		p := new(string)
		buf := make([]byte, 0, len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"))
		return binding{box: aliasBox(p), load: func(r *flow.Record) {
			a := get(r)
			if !a.IsValid() || !ok(a) {
				*p = ""
				return
			}
			buf = a.AppendTo(buf[:0])
			// The string aliases buf until the next load; it is only read
			// during the evaluation of the current record.
			*p = unsafe.String(unsafe.SliceData(buf), len(buf))
		}}
	}
}

func is4(a netip.Addr) bool { return a.Is4() || a.Is4In6() }
func is6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// typedVariables are the variables backed by typed fields of flow.Record and
// by the message context, by name.
var typedVariables = buildTypedVariables()

func buildTypedVariables() map[string]variable {
	vars := map[string]variable{}
	add := func(name string, sample any, bind func() binding) {
		vars[name] = variable{name: name, sample: sample, bind: bind}
	}
	for i := range flow.Fields {
		fi := &flow.Fields[i]
		f := fi.ID
		switch fi.Kind {
		case flow.KindUnsigned:
			// int, not the field's own width: expr has fast paths for int
			// (==, <, `in [80, 443]` as a set lookup) and none for uint16.
			add(fi.Name, 0, cell(func(r *flow.Record) int { return int(r.Uint(f)) }))
		case flow.KindString:
			add(fi.Name, "", cell(func(r *flow.Record) string { return r.String(f) }))
		case flow.KindAddress:
			get := func(r *flow.Record) netip.Addr { return r.Addr(f) }
			add(fi.Name, "", addrCell(get, is4))
			add(fi.Name6, "", addrCell(get, is6))
		case flow.KindTime:
			// FlowStart/FlowEnd hold nanoseconds since the epoch whatever
			// form the exporter used, so every IANA form of the IE reads.
			base := fi.Name[:len(fi.Name)-len("Milliseconds")] // flowStart, flowEnd
			for _, u := range []struct {
				suffix string
				div    int64
			}{{"Seconds", 1e9}, {"Milliseconds", 1e6}, {"Microseconds", 1e3}, {"Nanoseconds", 1}} {
				div := u.div
				add(base+u.suffix, 0, cell(func(r *flow.Record) int {
					if !r.Present.Has(f) {
						return 0
					}
					return int(int64(r.Uint(f)) / div)
				}))
			}
		}
	}
	exporter := func(r *flow.Record) netip.Addr { return r.Exporter.Addr() }
	add("exporterIPv4Address", "", addrCell(exporter, is4))
	add("exporterIPv6Address", "", addrCell(exporter, is6))
	add("exporterTransportPort", 0, cell(func(r *flow.Record) int { return int(r.Exporter.Port()) }))
	add("observationDomainId", 0, cell(func(r *flow.Record) int { return int(r.ObservationDomainID) }))
	return vars
}

// lookupVariable resolves name: a typed field or the message context first,
// then any IE of the IANA and Antrea registries, read from Extra.
func lookupVariable(name string) (variable, bool) {
	if v, ok := typedVariables[name]; ok {
		return v, true
	}
	k, info, ok := ipfix.LookupIEByName(name)
	if !ok {
		return variable{}, false
	}
	return extraVariable(name, k, info.Type), true
}

// extraVariable reads IE k of type t from Extra: integers as int, floats as float64, booleans as bool, strings and addresses as
// text, dateTimeSeconds/Milliseconds as int in that unit, and every
// other type as the text ipfix.FormatValue gives it.
func extraVariable(name string, k flow.IEKey, t ipfix.DataType) variable {
	find := func(r *flow.Record) []byte {
		if f := r.FindExtra(k); f != nil {
			return f.Value
		}
		return nil
	}
	v := variable{name: name}
	switch t {
	case ipfix.Unsigned8, ipfix.Unsigned16, ipfix.Unsigned32, ipfix.Unsigned64,
		ipfix.DateTimeSeconds, ipfix.DateTimeMilliseconds:
		v.sample = 0
		v.bind = cell(func(r *flow.Record) int { u, _ := ipfix.DecodeUnsigned(find(r)); return int(u) })
	case ipfix.Signed8, ipfix.Signed16, ipfix.Signed32, ipfix.Signed64:
		v.sample = 0
		v.bind = cell(func(r *flow.Record) int { i, _ := ipfix.DecodeSigned(find(r)); return int(i) })
	case ipfix.Float32, ipfix.Float64:
		v.sample = float64(0)
		v.bind = cell(func(r *flow.Record) float64 { f, _ := ipfix.DecodeFloat(find(r)); return f })
	case ipfix.Boolean:
		v.sample = false
		v.bind = cell(func(r *flow.Record) bool { b, _ := ipfix.DecodeBoolean(find(r)); return b })
	case ipfix.String:
		v.sample = ""
		v.bind = cell(func(r *flow.Record) string {
			b := find(r)
			// Extra values live in the batch arena for the whole Process
			// call, longer than one evaluation.
			return unsafe.String(unsafe.SliceData(b), len(b))
		})
	case ipfix.IPv4Address, ipfix.IPv6Address:
		v.sample = ""
		v.bind = addrCell(func(r *flow.Record) netip.Addr {
			a, _ := ipfix.DecodeAddress(find(r))
			return a
		}, func(netip.Addr) bool { return true })
	default:
		v.sample = ""
		v.bind = cell(func(r *flow.Record) string {
			b := find(r)
			if b == nil {
				return ""
			}
			return fmt.Sprint(ipfix.FormatValue(t, b))
		})
	}
	return v
}
