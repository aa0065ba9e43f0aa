// Package interrupt instruments a WebAssembly module so that a host can
// stop it at a deadline cheaply and the Go runtime can always stop the
// world: it adds a countdown global and, at every loop header (and, in
// modules that use tail calls, at every function entry), the check
//
//	global.get $budget  i32.const 1  i32.sub  global.set $budget
//	global.get $budget  i32.eqz
//	if
//	  call $weir.yield  global.set $budget
//	end
//
// so that every Budget-th check calls the host function weir.yield
// (imported as [ImportModule].[ImportName], type () -> i32), which
// returns the next budget, or ends the call — by panicking, which wazero
// turns into the call's error — once the deadline has passed.
//
// This replaces wazero's WithCloseOnContextDone, which calls out of native
// code into Go at every loop header: about 100 ns each, paid at almost
// every function call of a Go guest (Go's WebAssembly functions begin with
// a loop). The instrumented check is a few instructions in native code;
// the call out happens once per Budget checks.
//
// # Notes
//   - The call out is also what lets the Go runtime stop the world: native
//     code cannot be preempted, so a module looping without leaving native
//     code would block the next garbage collection, and with it the whole
//     process, before any timer could fire.
//   - Every backward branch in WebAssembly targets a loop header, so a
//     module cannot run forever without passing a check, except through
//     tail calls (return_call*), which is why modules that use them are
//     checked at every function entry too; plain recursion ends in a
//     stack overflow trap. Host functions that block are not interrupted
//     (as with wazero's own checks).
//   - The module's own code cannot touch the budget: [Instrument] refuses
//     code that names a global or function past the module's own, and the
//     new global and import are not reachable otherwise. Adding the import
//     shifts the module's function indexes by one; calls, exports,
//     element segments, constant expressions and the name section are
//     renumbered.
//   - Modules with a start section are refused ([ErrUnsupported]): the
//     start function would run during instantiation, outside the host's
//     deadline. Go reactors have none (their _initialize is an export).
//   - Anything the instrumenter does not understand (an unknown section,
//     opcode or encoding) is refused with [ErrUnsupported], never guessed:
//     the caller then falls back to wazero's own checks. A module that is
//     not valid WebAssembly may still be instrumented; the compiler
//     rejects it afterwards.
//   - WebAssembly binary format: https://webassembly.github.io/spec/core/binary/
package interrupt

import (
	"bytes"
	"errors"
	"fmt"
)

// The imported host function the checks call.
const (
	ImportModule = "weir"
	ImportName   = "yield"
)

// Budget is how many checks pass between two calls to the host function,
// the value weir.yield returns to carry on: large enough that the calls
// cost nothing measurable, small enough that a deadline or a stop of the
// world waits well under a millisecond (a check runs every few
// nanoseconds in a busy loop).
const Budget = 1 << 14

// ErrUnsupported is wrapped by every error of Instrument: the module uses
// something the instrumenter does not handle, or is malformed.
var ErrUnsupported = errors.New("cannot instrument module")

// Section IDs (spec §5.5.2).
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// order is each known section's place in the module; the tag section
// (exception handling) sits between memory and global.
var order = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13,
}

// Stats describes what Instrument did.
type Stats struct {
	// Global is the index of the budget global.
	Global uint32
	// Yield is the function index of the imported weir.yield.
	Yield uint32
	// Loops is the number of loop headers checked.
	Loops int
	// Entries is the number of function entries checked (tail-call modules).
	Entries int
}

func fail(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrUnsupported)
}

type section struct {
	id   byte
	body []byte
}

// ins is the state of one instrumentation.
type ins struct {
	st       Stats
	types    uint32 // type count before ours
	funcs    uint32 // imported functions before ours: indexes from here shift by one
	globals  uint32 // globals before ours
	declared uint32 // globals declared in the global section
}

// shift renumbers a function index of the original module.
func (s *ins) shift(idx uint32) uint32 {
	if idx >= s.funcs {
		return idx + 1
	}
	return idx
}

// Instrument returns a copy of the module in wasm with the budget global,
// the weir.yield import and the checks. It returns an error wrapping
// ErrUnsupported when it cannot, and then the module must run with
// another way to stop it.
func Instrument(wasm []byte) ([]byte, Stats, error) {
	var s ins
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, s.st, fail("no \\0asm header")
	}
	if !bytes.Equal(wasm[4:8], []byte{1, 0, 0, 0}) {
		return nil, s.st, fail("binary format version %x, want 1", wasm[4:8])
	}
	var secs []section
	last := 0
	for r := (reader{b: wasm, off: 8}); !r.done(); {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, s.st, fail("section %d: %v", id, r.err)
		}
		if id != secCustom {
			o, ok := order[id]
			if !ok {
				return nil, s.st, fail("unknown section %d", id)
			}
			if o <= last {
				return nil, s.st, fail("section %d out of order", id)
			}
			last = o
		}
		secs = append(secs, section{id, body})
	}

	var importedGlobals uint32
	for _, sec := range secs {
		r := reader{b: sec.body}
		switch sec.id {
		case secStart:
			return nil, s.st, fail("module has a start section")
		case secType:
			s.types = r.u32()
		case secImport:
			funcs, globals, err := countImports(sec.body)
			if err != nil {
				return nil, s.st, err
			}
			s.funcs, importedGlobals = funcs, globals
		case secGlobal:
			s.declared = r.u32()
		}
		if r.err != nil {
			return nil, s.st, fail("section %d: %v", sec.id, r.err)
		}
	}
	s.globals = importedGlobals + s.declared
	if s.globals < importedGlobals || s.types == ^uint32(0) || s.funcs == ^uint32(0) {
		return nil, s.st, fail("too many globals, types or imports")
	}
	s.st.Global, s.st.Yield = s.globals, s.funcs

	out := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	out = append(out, wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	newType := []byte{0x60, 0x00, 0x01, 0x7f} // () -> i32
	newImport := appendName(appendName(nil, ImportModule), ImportName)
	newImport = appendU32(append(newImport, 0x00), s.types)
	newGlobal := appendS32([]byte{0x7f, 0x01, 0x41}, Budget) // i32, var, i32.const Budget
	newGlobal = append(newGlobal, 0x0b)                      // end
	have := map[byte]bool{}
	// Sections the module lacks are added at their place.
	insertBefore := func(id byte) {
		for _, need := range []struct {
			id   byte
			body []byte
		}{
			{secType, append([]byte{1}, newType...)},
			{secImport, append([]byte{1}, newImport...)},
			{secGlobal, append([]byte{1}, newGlobal...)},
		} {
			if !have[need.id] && order[id] > order[need.id] {
				emit(need.id, need.body)
				have[need.id] = true
			}
		}
	}
	for _, sec := range secs {
		if sec.id == secCustom {
			r := reader{b: sec.body}
			name := r.name()
			switch {
			case r.err != nil:
				return nil, s.st, fail("custom section: %v", r.err)
			case bytes.HasPrefix([]byte(name), []byte(".debug_")):
				continue // DWARF refers to code offsets, which move
			case name == "name":
				emit(sec.id, renameFunctions(sec.body, r.off, &s))
				continue
			}
			emit(sec.id, sec.body)
			continue
		}
		insertBefore(sec.id)
		var body []byte
		var err error
		switch sec.id {
		case secType:
			body = appendToVector(sec.body, s.types, newType)
		case secImport:
			body = appendToVector(sec.body, countOf(sec.body), newImport)
		case secGlobal:
			body, err = rewriteGlobals(sec.body, &s, newGlobal)
		case secExport:
			body, err = rewriteExports(sec.body, &s)
		case secElement:
			body, err = rewriteElements(sec.body, &s)
		case secCode:
			body, err = rewriteCode(sec.body, &s)
		default:
			body = sec.body
		}
		if err != nil {
			return nil, s.st, err
		}
		emit(sec.id, body)
		have[sec.id] = true
	}
	insertBefore(0xff)
	return out, s.st, nil
}

// insertBefore's sentinel: larger than every section's order.
func init() { order[0xff] = 100 }

// countOf returns the count opening a vector section.
func countOf(body []byte) uint32 {
	r := reader{b: body}
	return r.u32()
}

// appendToVector returns a vector section of count entries with entry
// appended.
func appendToVector(body []byte, count uint32, entry []byte) []byte {
	out := appendU32(make([]byte, 0, len(body)+len(entry)+5), count+1)
	out = append(out, body[lenU32(body):]...)
	return append(out, entry...)
}

// countImports counts the function and global imports (spec §5.5.5).
func countImports(body []byte) (funcs, globals uint32, err error) {
	r := reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // func: type index
			r.u32()
			funcs++
		case 0x01: // table: reftype, limits
			r.refType()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: valtype, mut
			r.valType()
			if m := r.byte(); m > 1 {
				return 0, 0, fail("import %d: global mutability %d", i, m)
			}
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			if r.err == nil {
				return 0, 0, fail("import %d: kind %d", i, kind)
			}
		}
	}
	if r.err == nil && !r.done() {
		return 0, 0, fail("import section: %d trailing bytes", len(r.b)-r.off)
	}
	if r.err != nil {
		return 0, 0, fail("import section: %v", r.err)
	}
	return funcs, globals, nil
}

// rewriteGlobals renumbers ref.func in the initialisers and appends the
// budget global.
func rewriteGlobals(body []byte, s *ins, global []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+len(global)+5), n+1)
	for i := uint32(0); i < n && r.err == nil; i++ {
		start := r.off
		r.valType()
		r.byte()
		out = append(out, r.b[start:r.off]...)
		out = r.constExpr(out, s)
	}
	if r.err != nil {
		return nil, fail("global section: %v", r.err)
	}
	if !r.done() {
		return nil, fail("global section: %d trailing bytes", len(r.b)-r.off)
	}
	return append(out, global...), nil
}

// rewriteExports renumbers exported functions.
func rewriteExports(body []byte, s *ins) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+8), n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		start := r.off
		r.name()
		kind := r.byte()
		out = append(out, r.b[start:r.off]...)
		idx := r.u32()
		if kind == 0x00 {
			idx = s.shift(idx)
		}
		out = appendU32(out, idx)
	}
	if r.err != nil {
		return nil, fail("export section: %v", r.err)
	}
	if !r.done() {
		return nil, fail("export section: %d trailing bytes", len(r.b)-r.off)
	}
	return out, nil
}

// rewriteElements renumbers the functions of element segments (spec
// §5.5.12, the eight segment encodings).
func rewriteElements(body []byte, s *ins) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+16), n)
	funcs := func() {
		k := r.u32()
		out = appendU32(out, k)
		for j := uint32(0); j < k && r.err == nil; j++ {
			out = appendU32(out, s.shift(r.u32()))
		}
	}
	exprs := func() {
		k := r.u32()
		out = appendU32(out, k)
		for j := uint32(0); j < k && r.err == nil; j++ {
			out = r.constExpr(out, s)
		}
	}
	copyByte := func() { out = append(out, r.byte()) }
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		out = appendU32(out, flags)
		switch flags {
		case 0:
			out = r.constExpr(out, s)
			funcs()
		case 1, 3:
			copyByte() // elemkind
			funcs()
		case 2:
			out = appendU32(out, r.u32()) // table
			out = r.constExpr(out, s)
			copyByte()
			funcs()
		case 4:
			out = r.constExpr(out, s)
			exprs()
		case 5, 7:
			copyByte() // reftype
			exprs()
		case 6:
			out = appendU32(out, r.u32())
			out = r.constExpr(out, s)
			copyByte()
			exprs()
		default:
			return nil, fail("element segment %d: flags %d", i, flags)
		}
	}
	if r.err != nil {
		return nil, fail("element section: %v", r.err)
	}
	if !r.done() {
		return nil, fail("element section: %d trailing bytes", len(r.b)-r.off)
	}
	return out, nil
}

// renameFunctions renumbers the function indexes of the name section
// (subsections 1 function names, 2 local names, 3 label names); the
// others name other index spaces and are copied. A malformed name section
// is dropped: it only serves stack traces.
func renameFunctions(body []byte, at int, s *ins) []byte {
	out := append([]byte(nil), body[:at]...)
	r := reader{b: body, off: at}
	for !r.done() && r.err == nil {
		id := r.byte()
		size := r.u32()
		sub := r.bytes(int(size))
		if r.err != nil {
			break
		}
		if id < 1 || id > 3 {
			out = append(out, id)
			out = appendU32(out, size)
			out = append(out, sub...)
			continue
		}
		sr := reader{b: sub}
		k := sr.u32()
		o := appendU32(nil, k)
		for j := uint32(0); j < k && sr.err == nil; j++ {
			o = appendU32(o, s.shift(sr.u32()))
			start := sr.off
			if id == 1 {
				sr.name()
			} else {
				m := sr.u32()
				for l := uint32(0); l < m && sr.err == nil; l++ {
					sr.u32()
					sr.name()
				}
			}
			o = append(o, sr.b[start:sr.off]...)
		}
		if sr.err != nil || !sr.done() {
			break
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(o)))
		out = append(out, o...)
	}
	if r.err != nil {
		return body[:at] // the name alone: an empty name section
	}
	return out
}

// appendCheck appends the check: count down, call weir.yield at zero.
func appendCheck(dst []byte, s *ins) []byte {
	g := s.st.Global
	dst = append(dst, 0x23) // global.get
	dst = appendU32(dst, g)
	dst = append(dst, 0x41, 0x01, 0x6b, 0x24) // i32.const 1, i32.sub, global.set
	dst = appendU32(dst, g)
	dst = append(dst, 0x23)
	dst = appendU32(dst, g)
	dst = append(dst, 0x45, 0x04, 0x40, 0x10) // i32.eqz, if (empty), call
	dst = appendU32(dst, s.st.Yield)
	dst = append(dst, 0x24) // global.set
	dst = appendU32(dst, g)
	return append(dst, 0x0b) // end
}

// function is one body of the code section.
type function struct{ locals, code []byte }

// functions splits the code section into bodies.
func functions(body []byte) ([]function, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fail("code section: %v", r.err)
	}
	fns := make([]function, 0, min(n, uint32(len(body))))
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		b := r.bytes(int(size))
		if r.err != nil {
			return nil, fail("code section: function %d: %v", i, r.err)
		}
		fr := reader{b: b}
		groups := fr.u32()
		for j := uint32(0); j < groups && fr.err == nil; j++ {
			fr.u32()
			fr.valType()
		}
		if fr.err != nil {
			return nil, fail("function %d: locals: %v", i, fr.err)
		}
		fns = append(fns, function{locals: b[:fr.off], code: b[fr.off:]})
	}
	if !r.done() {
		return nil, fail("code section: %d trailing bytes", len(r.b)-r.off)
	}
	return fns, nil
}

// rewriteCode rewrites every function body: checks at loop headers (and,
// if any body uses tail calls, at every entry), function indexes
// renumbered.
func rewriteCode(body []byte, s *ins) ([]byte, error) {
	fns, err := functions(body)
	if err != nil {
		return nil, err
	}
	out, tail, err := rewriteFunctions(fns, s, false)
	if err == nil && tail {
		// Tail calls can loop without a loop header: start over with
		// checks at every entry.
		s.st.Loops = 0
		out, _, err = rewriteFunctions(fns, s, true)
	}
	return out, err
}

func rewriteFunctions(fns []function, s *ins, entries bool) (out []byte, tail bool, err error) {
	size := 0
	for _, f := range fns {
		size += len(f.locals) + len(f.code)
	}
	out = appendU32(make([]byte, 0, size+size/8+16), uint32(len(fns)))
	var buf []byte
	for i, f := range fns {
		buf = append(buf[:0], f.locals...)
		if entries {
			buf = appendCheck(buf, s)
			s.st.Entries++
		}
		prev := 0
		t, err := scan(f.code, s, func(at, end int, fn bool, idx uint32) {
			buf = append(buf, f.code[prev:at]...)
			if fn {
				buf = appendU32(buf, s.shift(idx))
			} else {
				buf = appendCheck(buf, s)
				s.st.Loops++
			}
			prev = end
		})
		if err != nil {
			return nil, false, fmt.Errorf("function %d: %w", i, err)
		}
		tail = tail || t
		buf = append(buf, f.code[prev:]...)
		out = appendU32(out, uint32(len(buf)))
		out = append(out, buf...)
	}
	return out, tail, nil
}

// scan walks the instructions of a function body's expression. It calls
// visit with the offset just past each loop's block type (fn false, at ==
// end), and with the position of each function index (call, return_call,
// ref.func: fn true, the index's bytes at [at, end)); it reports whether
// the code uses tail calls. It refuses unknown opcodes, global indexes
// from s.globals on (the budget global is the host's) and a body whose
// blocks do not balance.
func scan(code []byte, s *ins, visit func(at, end int, fn bool, idx uint32)) (tail bool, err error) {
	r := reader{b: code}
	depth := 1 // the function body's implicit block
	funcIndex := func() {
		at := r.off
		idx := r.u32()
		if visit != nil && r.err == nil {
			visit(at, r.off, true, idx)
		}
	}
	for depth > 0 {
		if r.done() {
			return tail, fail("code ends inside a block")
		}
		at := r.off
		op := r.byte()
		switch {
		case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0f || op == 0x0a || op == 0x1a || op == 0x1b || op == 0xd1:
			// unreachable, nop, else, return, throw_ref, drop, select, ref.is_null
		case op == 0x02 || op == 0x04: // block, if
			r.blockType()
			depth++
		case op == 0x03: // loop
			r.blockType()
			depth++
			if visit != nil && r.err == nil {
				visit(r.off, r.off, false, 0)
			}
		case op == 0x1f: // try_table: blocktype, vec(catch)
			r.blockType()
			k := r.u32()
			for i := uint32(0); i < k && r.err == nil; i++ {
				switch c := r.byte(); c {
				case 0x00, 0x01: // catch, catch_ref: tag, label
					r.u32()
					r.u32()
				case 0x02, 0x03: // catch_all, catch_all_ref: label
					r.u32()
				default:
					return tail, fail("offset %d: try_table catch kind %d", at, c)
				}
			}
			depth++
		case op == 0x0b: // end
			depth--
		case op == 0x0c || op == 0x0d || op == 0x08: // br, br_if, throw: one index
			r.u32()
		case op == 0x10 || op == 0xd2: // call, ref.func
			funcIndex()
		case op == 0x12: // return_call
			funcIndex()
			tail = true
		case op == 0x11: // call_indirect: type, table
			r.u32()
			r.u32()
		case op == 0x13: // return_call_indirect
			r.u32()
			r.u32()
			tail = true
		case op == 0x0e: // br_table: vec(label), label
			k := r.u32()
			for i := uint32(0); i <= k && r.err == nil; i++ {
				r.u32()
			}
		case op == 0x1c: // select t*
			k := r.u32()
			for i := uint32(0); i < k && r.err == nil; i++ {
				r.valType()
			}
		case op >= 0x20 && op <= 0x22: // local.get/set/tee
			r.u32()
		case op == 0x23 || op == 0x24: // global.get/set
			if idx := r.u32(); idx >= s.globals && r.err == nil {
				return tail, fail("offset %d: global %d does not exist (the module has %d)", at, idx, s.globals)
			}
		case op == 0x25 || op == 0x26: // table.get/set
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores
			r.memArg()
		case op == 0x3f || op == 0x40: // memory.size/grow
			r.u32()
		case op == 0x41:
			r.s64()
		case op == 0x42:
			r.s64()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op >= 0x45 && op <= 0xc4: // numeric, sign extension
		case op == 0xd0: // ref.null t
			r.s64()
		case op == 0xfc:
			switch sub := r.u32(); {
			case sub <= 7: // saturating truncation
			case sub == 8: // memory.init data mem
				r.u32()
				r.u32()
			case sub == 9 || sub == 13: // data.drop, elem.drop
				r.u32()
			case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
				r.u32()
				r.u32()
			case sub == 11 || (sub >= 15 && sub <= 17): // memory.fill, table.grow/size/fill
				r.u32()
			default:
				if r.err == nil {
					return tail, fail("offset %d: opcode 0xfc %d", at, sub)
				}
			}
		case op == 0xfd:
			simd(&r, at)
		case op == 0xfe:
			switch sub := r.u32(); {
			case sub == 0x03: // atomic.fence
				r.byte()
			case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e):
				r.memArg()
			default:
				if r.err == nil {
					return tail, fail("offset %d: opcode 0xfe %d", at, sub)
				}
			}
		default:
			return tail, fail("offset %d: opcode %#x", at, op)
		}
		if r.err != nil {
			return tail, fail("offset %d: opcode %#x: %v", at, op, r.err)
		}
	}
	if !r.done() {
		return tail, fail("%d bytes after the function's end", len(r.b)-r.off)
	}
	return tail, nil
}

// simd reads the immediates of a 0xfd instruction (fixed-width SIMD).
func simd(r *reader, at int) {
	sub := r.u32()
	switch {
	case sub <= 0x0b || sub == 0x5c || sub == 0x5d: // loads, stores, load_zero
		r.memArg()
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 0x15 && sub <= 0x22: // extract/replace lane
		r.byte()
	case sub >= 0x54 && sub <= 0x5b: // load/store lane
		r.memArg()
		r.byte()
	case sub <= 0x113: // no immediates
	default:
		if r.err == nil {
			r.err = fmt.Errorf("opcode 0xfd %d at %d", sub, at)
		}
	}
}

// reader reads the binary format, remembering the first error.
type reader struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("unexpected end")

func (r *reader) done() bool { return r.off >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.err = errShort
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = errShort
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 28 && c > 0x0f {
			r.err = errors.New("u32 overflows")
			return 0
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

// s64 skips a signed LEB128 of at most 64 bits (also s32 and s33).
func (r *reader) s64() {
	for i := 0; ; i++ {
		c := r.byte()
		if r.err != nil {
			return
		}
		if i == 9 && c&0x80 != 0 {
			r.err = errors.New("s64 too long")
			return
		}
		if c&0x80 == 0 {
			return
		}
	}
}

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

// valType reads a value type: a number, vector or reference type byte.
func (r *reader) valType() {
	switch c := r.byte(); c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
	default:
		if r.err == nil {
			r.err = fmt.Errorf("value type %#x", c)
		}
	}
}

func (r *reader) refType() {
	switch c := r.byte(); c {
	case 0x70, 0x6f, 0x69:
	default:
		if r.err == nil {
			r.err = fmt.Errorf("reference type %#x", c)
		}
	}
}

// blockType reads 0x40 (empty), a value type, or an s33 type index.
func (r *reader) blockType() {
	if r.off < len(r.b) {
		switch r.b[r.off] {
		case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69:
			r.off++
			return
		}
	}
	r.s64()
}

// limits reads table or memory limits (spec §5.3.7; threads and memory64
// flags included).
func (r *reader) limits() {
	flags := r.byte()
	if flags > 0x07 {
		if r.err == nil {
			r.err = fmt.Errorf("limits flags %#x", flags)
		}
		return
	}
	if flags&0x04 != 0 { // memory64
		r.s64()
		if flags&0x01 != 0 {
			r.s64()
		}
		return
	}
	r.u32()
	if flags&0x01 != 0 {
		r.u32()
	}
}

// memArg reads alignment (with the multi-memory bit) and offset.
func (r *reader) memArg() {
	align := r.u32()
	if align&0x40 != 0 {
		r.u32() // memory index
	}
	r.s64() // offset: u32, or u64 with memory64
}

// constExpr copies a constant expression, up to and including its end,
// to dst with its function indexes renumbered.
func (r *reader) constExpr(dst []byte, s *ins) []byte {
	for r.err == nil {
		start := r.off
		switch op := r.byte(); op {
		case 0x0b:
			return append(dst, op)
		case 0x41, 0x42, 0xd0:
			r.s64()
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23:
			if idx := r.u32(); idx >= s.globals && r.err == nil {
				r.err = fmt.Errorf("constant global.get %d: no such global", idx)
			}
		case 0xd2: // ref.func
			idx := r.u32()
			dst = append(dst, op)
			dst = appendU32(dst, s.shift(idx))
			continue
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended const: add, sub, mul
		case 0xfd:
			if sub := r.u32(); sub == 0x0c {
				r.bytes(16)
			} else if r.err == nil {
				r.err = fmt.Errorf("constant opcode 0xfd %d", sub)
			}
		default:
			if r.err == nil {
				r.err = fmt.Errorf("constant opcode %#x", op)
			}
		}
		if r.err == nil {
			dst = append(dst, r.b[start:r.off]...)
		}
	}
	return dst
}

func appendU32(dst []byte, v uint32) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// lenU32 returns the length of the LEB128 at the start of b.
func lenU32(b []byte) int {
	for i, c := range b {
		if c&0x80 == 0 {
			return i + 1
		}
	}
	return len(b)
}

// appendS32 appends v as a signed LEB128.
func appendS32(dst []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendName(dst []byte, s string) []byte {
	dst = appendU32(dst, uint32(len(s)))
	return append(dst, s...)
}
