// Package interrupt instruments a WebAssembly module so that the host can
// stop it cheaply: it adds one mutable i32 global, exported as [Export],
// and at every loop header (and, in modules that use tail calls, at every
// function entry) the check
//
//	global.get $interrupt
//	if
//	  unreachable
//	end
//
// The host sets the global to 1 from another goroutine when a deadline
// passes; the module traps at its next loop header.
//
// This replaces wazero's WithCloseOnContextDone, which makes the same
// check at every loop header by a call out of native code into Go: about
// 100 ns each, paid at almost every function call of a Go guest (Go's
// WebAssembly functions begin with a loop). The instrumented check is a
// load, a compare and a branch inside native code.
//
// # Notes
//   - Every backward branch in WebAssembly targets a loop header, so a
//     module cannot run forever without passing a check, except through
//     tail calls (return_call*), which is why modules that use them are
//     checked at every function entry too; plain recursion ends in a
//     stack overflow trap. Host functions that block are not interrupted
//     (as with wazero's own checks).
//   - The module's own code cannot clear the flag: [Instrument] refuses a
//     module whose code names a global past its own, and the new global's
//     index comes after them all.
//   - Modules with a start section are refused ([ErrUnsupported]): the
//     start function runs inside instantiation, before the host can reach
//     the global. Go reactors have none (their _initialize is an export).
//   - Anything the instrumenter does not understand (an unknown section
//     order, opcode or encoding) is refused with [ErrUnsupported], never
//     guessed: the caller then falls back to wazero's own checks. A module
//     that is not valid WebAssembly may still be instrumented; the
//     compiler rejects it afterwards.
//   - WebAssembly binary format: https://webassembly.github.io/spec/core/binary/
package interrupt

import (
	"bytes"
	"errors"
	"fmt"
)

// Export is the name under which the interrupt global is exported.
const Export = "weir.interrupt"

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
	// Global is the index of the interrupt global.
	Global uint32
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

// Instrument returns a copy of the module in wasm with the interrupt
// global and its checks. It returns an error wrapping ErrUnsupported when
// it cannot, and then the module must run with another way to stop it.
func Instrument(wasm []byte) ([]byte, Stats, error) {
	var st Stats
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, st, fail("no \\0asm header")
	}
	if !bytes.Equal(wasm[4:8], []byte{1, 0, 0, 0}) {
		return nil, st, fail("binary format version %x, want 1", wasm[4:8])
	}
	var secs []section
	last := 0
	for r := (reader{b: wasm, off: 8}); !r.done(); {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, st, fail("section %d: %v", id, r.err)
		}
		if id != secCustom {
			o, ok := order[id]
			if !ok {
				return nil, st, fail("unknown section %d", id)
			}
			if o <= last {
				return nil, st, fail("section %d out of order", id)
			}
			last = o
		}
		secs = append(secs, section{id, body})
	}

	var importedGlobals, declaredGlobals uint32
	for _, s := range secs {
		switch s.id {
		case secStart:
			return nil, st, fail("module has a start section")
		case secImport:
			n, err := countImportedGlobals(s.body)
			if err != nil {
				return nil, st, err
			}
			importedGlobals = n
		case secGlobal:
			r := reader{b: s.body}
			declaredGlobals = r.u32()
			if r.err != nil {
				return nil, st, fail("global section: %v", r.err)
			}
		}
	}
	st.Global = importedGlobals + declaredGlobals
	if st.Global < importedGlobals {
		return nil, st, fail("too many globals")
	}

	out := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	out = append(out, wasm[:8]...)
	haveGlobal, haveExport := false, false
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	// newGlobal is a mutable i32 initialised to 0: i32, var, i32.const 0, end.
	newGlobal := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
	newExport := func(dst []byte) []byte {
		dst = appendName(dst, Export)
		dst = append(dst, 0x03) // global
		return appendU32(dst, st.Global)
	}
	insertBefore := func(id byte) {
		// Sections the module lacks are added at their place.
		if !haveGlobal && order[id] > order[secGlobal] {
			emit(secGlobal, append(appendU32(nil, 1), newGlobal...))
			haveGlobal = true
		}
		if !haveExport && order[id] > order[secExport] {
			emit(secExport, newExport(appendU32(nil, 1)))
			haveExport = true
		}
	}
	for _, s := range secs {
		if s.id == secCustom {
			name, _ := customName(s.body)
			if bytes.HasPrefix([]byte(name), []byte(".debug_")) {
				continue // DWARF refers to code offsets, which move
			}
			emit(s.id, s.body)
			continue
		}
		insertBefore(s.id)
		switch s.id {
		case secGlobal:
			body, err := appendGlobal(s.body, declaredGlobals, newGlobal)
			if err != nil {
				return nil, st, err
			}
			emit(s.id, body)
			haveGlobal = true
		case secExport:
			body, err := appendExport(s.body, newExport)
			if err != nil {
				return nil, st, err
			}
			emit(s.id, body)
			haveExport = true
		case secCode:
			body, err := instrumentCode(s.body, &st)
			if err != nil {
				return nil, st, err
			}
			emit(s.id, body)
		default:
			emit(s.id, s.body)
		}
	}
	insertBefore(0xff)
	return out, st, nil
}

// insertBefore's sentinel: larger than every section's order.
func init() { order[0xff] = 100 }

func customName(body []byte) (string, error) {
	r := reader{b: body}
	name := r.name()
	return name, r.err
}

// countImportedGlobals counts the global imports (spec §5.5.5).
func countImportedGlobals(body []byte) (uint32, error) {
	r := reader{b: body}
	n := r.u32()
	var globals uint32
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // func: type index
			r.u32()
		case 0x01: // table: reftype, limits
			r.refType()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
		case 0x03: // global: valtype, mut
			r.valType()
			if m := r.byte(); m > 1 {
				return 0, fail("import %d: global mutability %d", i, m)
			}
			globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			if r.err == nil {
				return 0, fail("import %d: kind %d", i, kind)
			}
		}
	}
	if r.err == nil && !r.done() {
		return 0, fail("import section: %d trailing bytes", len(r.b)-r.off)
	}
	if r.err != nil {
		return 0, fail("import section: %v", r.err)
	}
	return globals, nil
}

// appendGlobal returns the global section with one more global.
func appendGlobal(body []byte, count uint32, global []byte) ([]byte, error) {
	r := reader{b: body}
	r.u32()
	for i := uint32(0); i < count && r.err == nil; i++ {
		r.valType()
		r.byte()
		r.constExpr()
	}
	if r.err != nil {
		return nil, fail("global section: %v", r.err)
	}
	if !r.done() {
		return nil, fail("global section: %d trailing bytes", len(r.b)-r.off)
	}
	out := appendU32(make([]byte, 0, len(body)+len(global)+5), count+1)
	out = append(out, body[lenU32(body):]...)
	return append(out, global...), nil
}

// appendExport returns the export section with the interrupt export.
func appendExport(body []byte, export func([]byte) []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if name := r.name(); name == Export {
			return nil, fail("module already exports %q", Export)
		}
		r.byte()
		r.u32()
	}
	if r.err != nil {
		return nil, fail("export section: %v", r.err)
	}
	if !r.done() {
		return nil, fail("export section: %d trailing bytes", len(r.b)-r.off)
	}
	out := appendU32(make([]byte, 0, len(body)+len(Export)+8), n+1)
	out = append(out, body[lenU32(body):]...)
	return export(out), nil
}

// check is the instrumented test of the interrupt global g.
func appendCheck(dst []byte, g uint32) []byte {
	dst = append(dst, 0x23) // global.get
	dst = appendU32(dst, g)
	return append(dst, 0x04, 0x40, 0x00, 0x0b) // if (empty) unreachable end
}

// instrumentCode rewrites every function body of the code section.
func instrumentCode(body []byte, st *Stats) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, fail("code section: %v", r.err)
	}
	// First pass: are tail calls used anywhere? Then every entry is checked.
	type fn struct{ locals, code []byte }
	fns := make([]fn, 0, n)
	tail := false
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
		f := fn{locals: b[:fr.off], code: b[fr.off:]}
		hasTail, err := scan(f.code, st.Global, nil)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		tail = tail || hasTail
		fns = append(fns, f)
	}
	if !r.done() {
		return nil, fail("code section: %d trailing bytes", len(r.b)-r.off)
	}
	out := appendU32(make([]byte, 0, len(body)+len(body)/8), n)
	var buf []byte
	for _, f := range fns {
		buf = append(buf[:0], f.locals...)
		if tail {
			buf = appendCheck(buf, st.Global)
			st.Entries++
		}
		var loops int
		buf, loops = rewrite(buf, f.code, st.Global)
		st.Loops += loops
		out = appendU32(out, uint32(len(buf)))
		out = append(out, buf...)
	}
	return out, nil
}

// rewrite appends code to dst with a check after each loop's block type,
// and returns how many it added. code has been scanned without error.
func rewrite(dst, code []byte, g uint32) ([]byte, int) {
	prev, loops := 0, 0
	_, _ = scan(code, g, func(at int) {
		dst = append(dst, code[prev:at]...)
		dst = appendCheck(dst, g)
		prev = at
		loops++
	})
	return append(dst, code[prev:]...), loops
}

// scan walks the instructions of a function body's expression. It calls
// loop with the offset just past each loop's block type, and reports
// whether the code uses tail calls. It refuses unknown opcodes, global
// indexes from g on (the interrupt global must stay the host's) and a
// body whose blocks do not balance.
func scan(code []byte, g uint32, loop func(at int)) (tail bool, err error) {
	r := reader{b: code}
	depth := 1 // the function body's implicit block
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
			if loop != nil && r.err == nil {
				loop(r.off)
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
		case op == 0x0c || op == 0x0d || op == 0x08 || op == 0x10 || op == 0xd2:
			// br, br_if, throw, call, ref.func: one index
			r.u32()
		case op == 0x12: // return_call
			r.u32()
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
			if idx := r.u32(); idx >= g && r.err == nil {
				return tail, fail("offset %d: global %d does not exist (the module has %d)", at, idx, g)
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

// constExpr skips a constant expression up to and including its end.
func (r *reader) constExpr() {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b:
			return
		case 0x41, 0x42, 0xd0:
			r.s64()
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23, 0xd2:
			r.u32()
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
	}
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

func appendName(dst []byte, s string) []byte {
	dst = appendU32(dst, uint32(len(s)))
	return append(dst, s...)
}
