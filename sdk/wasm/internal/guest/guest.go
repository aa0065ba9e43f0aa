// Package guest is the guest side of ABI v1, shared by the SDK's WASM
// exports and its host emulator (sdk/wasm/wasmtest): it decodes batches,
// runs the registered plugin and encodes its answer.
package guest

import (
	"fmt"
	"runtime/debug"
	"unsafe"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// Plugin is what a module registers.
type Plugin struct {
	Kind abi.Kind
	// Keep decides a filter's or processor's verdict.
	Keep func(*flow.Record) bool
	// Batch is a batch filter: it clears the verdicts of the records it
	// drops (all are kept on entry).
	Batch func(c *Columns)
	// Enrich modifies a record (enrichers).
	Enrich func(*flow.Record)
	// Init receives the config as JSON; a non-nil error rejects it.
	Init func(config []byte) error
	// Reads is what the plugin reads of each record.
	Reads abi.Mask
}

// Guest holds the module's state between calls. Buffers handed to the host
// stay valid until the next call.
type Guest struct {
	plugin     Plugin
	registered bool

	in, out []byte
	dec     abi.Decoder
	rec     flow.Record   // a filter's record, reused for every record
	recs    []flow.Record // an enricher's or processor's records
	before  flow.Record
	extra   []flow.Field
	answer  abi.Answer
	updates abi.Updates
	// cols is a batch filter's view of the batch. When ready, it is laid
	// out for the last batch (at base, of dec's header and length) and
	// out holds the answer to a batch of cols.N records that went well,
	// whose verdict words are cols.Verdicts: the next batch of that shape
	// at base runs with no decoding and no encoding.
	cols  Columns
	base  *byte
	ready bool
}

// Columns is a columnar batch as a batch filter sees it, valid during the
// call: the columns are read in place in the host's buffer.
type Columns struct {
	N        int
	Verdicts abi.Verdicts
	// The column of each field sent, by value type, nil for the others:
	// slices made once per batch layout, so that a filter's accessor is a
	// lookup.
	U8   [flow.NumFields][]uint8
	U16  [flow.NumFields][]uint16
	U32  [flow.NumFields][]uint32
	U64  [flow.NumFields][]uint64
	Time [flow.NumFields][]int64 // nanoseconds since the epoch
	// Presence holds two words of flow.FieldSet per record, nil if the
	// host did not send it.
	Presence []uint64
}

// lay computes the column offsets of v, whose buffer is buf, or says why
// a batch filter cannot read it.
func (g *Guest) lay(v *abi.View, buf []byte) string {
	switch {
	case !v.Columnar():
		return "the host sent record blocks, not columns: it is older than this SDK's batch filters"
	case !abi.NativeLittleEndian():
		return "batch filters read columns in place, which needs a little-endian machine"
	}
	c := &g.cols
	*c = Columns{}
	n := v.Len()
	if n == 0 {
		return ""
	}
	if p := g.dec.PresenceColumn(v); p != nil {
		c.Presence = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(p))), 2*n)
	}
	for f := range flow.FieldID(flow.NumFields) {
		col := g.dec.Column(v, f)
		if col == nil {
			continue
		}
		p := unsafe.Pointer(unsafe.SliceData(col)) // 8-byte aligned (docs/abi.md)
		switch d := flow.Fields[f]; {
		case d.Kind == flow.KindTime:
			c.Time[f] = unsafe.Slice((*int64)(p), n)
		case d.Kind != flow.KindUnsigned:
		case d.Width == 1:
			c.U8[f] = unsafe.Slice((*uint8)(p), n)
		case d.Width == 2:
			c.U16[f] = unsafe.Slice((*uint16)(p), n)
		case d.Width == 4:
			c.U32[f] = unsafe.Slice((*uint32)(p), n)
		default:
			c.U64[f] = unsafe.Slice((*uint64)(p), n)
		}
	}
	return ""
}

// Default is the module's guest, used by the WASM exports.
var Default Guest

// Register sets the plugin; a second call replaces the first (tests
// register several).
func (g *Guest) Register(p Plugin) {
	g.plugin, g.registered, g.ready = p, true, false
}

// SetReads replaces what the plugin reads; Init may call it, before the
// manifest is written, to narrow the fields to those its config needs.
func (g *Guest) SetReads(m abi.Mask) { g.plugin.Reads = m }

// SetInit sets the plugin's Init function.
func (g *Guest) SetInit(f func([]byte) error) { g.plugin.Init = f }

// Registered returns the registered plugin.
func (g *Guest) Registered() (Plugin, bool) { return g.plugin, g.registered }

// Alloc returns the input buffer, grown to at least n bytes. The host
// writes each batch there.
func (g *Guest) Alloc(n int) []byte {
	if cap(g.in) < n {
		g.in = make([]byte, n)
	}
	g.in = g.in[:cap(g.in)]
	return g.in
}

// Init runs the plugin's Init on config and returns the encoded manifest.
func (g *Guest) Init(config []byte) []byte {
	var m abi.Manifest
	switch {
	case !g.registered:
		m.Status, m.Message = abi.StatusError, "no plugin registered: call weir.RegisterFilter or weir.RegisterEnricher from an init function"
	case g.plugin.Init != nil:
		if err := protect(func() error { return g.plugin.Init(config) }); err != nil {
			m.Status, m.Message = abi.StatusError, err.Error()
		}
	}
	// After Init, which may have narrowed the reads.
	m.Version, m.Kind, m.Reads = abi.Version, g.plugin.Kind, g.plugin.Reads
	g.ready = false
	g.out = m.Append(g.out[:0])
	return g.out
}

// Process runs the plugin over the batch in buf and returns the encoded
// answer. A panic in the plugin is recovered and answered as StatusPanic.
func (g *Guest) Process(buf []byte) (out []byte) {
	if !g.ready || unsafe.SliceData(buf) != g.base || !g.dec.Same(buf) {
		if out, done := g.process(buf); done {
			return out
		}
	}
	// A batch filter on a batch laid out in g.cols, whose answer is in out
	// but for the verdicts. This is the path of every batch of a steady
	// stream: in WebAssembly a Go call costs tens of nanoseconds, so it
	// makes few.
	c := &g.cols
	if c.N == 0 {
		return g.out
	}
	v := c.Verdicts
	for k := range v {
		v[k] = ^uint64(0)
	}
	if r := c.N & 63; r != 0 {
		v[len(v)-1] = 1<<r - 1
	}
	defer func() {
		if r := recover(); r != nil {
			out = g.fail(abi.StatusPanic, c.N, (&panicError{value: r, stack: debug.Stack()}).Error())
		}
	}()
	g.plugin.Batch(c)
	return g.out
}

// process is Process for a batch of a new shape: for a batch filter it
// lays the batch out and returns done false; for the other plugins it
// runs the plugin and returns the answer.
func (g *Guest) process(buf []byte) (out []byte, done bool) {
	g.ready = false
	v, err := g.dec.Parse(buf)
	if err != nil {
		return g.fail(abi.StatusError, 0, "decode batch: "+err.Error()), true
	}
	n := v.Len()
	if g.plugin.Batch != nil {
		if msg := g.lay(v, buf); msg != "" {
			return g.fail(abi.StatusError, n, msg), true
		}
		g.answer = abi.Answer{Count: n, Verdicts: g.answer.Verdicts.KeepAll(n)}
		g.out = g.answer.Append(g.out[:0])
		g.cols.N, g.cols.Verdicts = n, nil
		if n > 0 {
			// out is 8-byte aligned (allocated by Go) and so are the
			// verdicts: the filter writes them in place.
			g.cols.Verdicts = unsafe.Slice((*uint64)(unsafe.Pointer(&g.out[abi.AnswerHeaderSize])), abi.Words(n))
		}
		g.base, g.ready = unsafe.SliceData(buf), true
		return nil, false
	}
	g.answer = abi.Answer{Verdicts: g.answer.Verdicts, Count: n}
	g.updates.Reset()
	if g.plugin.Kind != abi.KindFilter {
		if cap(g.recs) < n {
			g.recs = make([]flow.Record, n)
		}
		g.recs = g.recs[:n]
	}
	if err := g.runProtected(v); err != nil {
		return g.failed(err, n), true
	}
	g.answer.Updates, g.answer.UpdateCount = g.updates.Bytes(), g.updates.Len()
	g.out = g.answer.Append(g.out[:0])
	return g.out, true
}

// failed answers a batch the plugin failed on: StatusPanic for a panic,
// StatusError otherwise.
func (g *Guest) failed(err error, n int) []byte {
	if pe, ok := err.(*panicError); ok {
		return g.fail(abi.StatusPanic, n, pe.Error())
	}
	return g.fail(abi.StatusError, n, err.Error())
}

// fail answers status with message and no verdicts or updates.
func (g *Guest) fail(status abi.Status, n int, message string) []byte {
	g.answer = abi.Answer{Status: status, Count: n, Message: message, Verdicts: g.answer.Verdicts[:0]}
	g.updates.Reset()
	g.ready = false
	g.out = g.answer.Append(g.out[:0])
	return g.out
}

func (g *Guest) run(v *abi.View) error {
	p := &g.plugin
	n := v.Len()
	g.answer.Verdicts = g.answer.Verdicts.KeepAll(n)
	switch p.Kind {
	case abi.KindFilter:
		// One record is reused without a reset: decoding overwrites every
		// part in the mask, and a filter does not modify records.
		return g.dec.Filter(v, &g.rec, p.Keep, g.answer.Verdicts)
	default:
		for i := range n {
			r := &g.recs[i]
			r.Reset()
			if err := g.dec.Record(v, i, r); err != nil {
				return err
			}
			g.before = *r
			g.extra = append(g.extra[:0], r.Extra...)
			g.before.Extra = g.extra
			if p.Kind == abi.KindEnricher {
				p.Enrich(r)
			} else if !p.Keep(r) {
				g.answer.Verdicts.Set(i, false)
				continue
			}
			g.updates.Diff(i, &g.before, r)
		}
	}
	return nil
}

type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v\n\n%s", e.value, e.stack) }

// runProtected is run, turning a panic into a *panicError. It is protect
// without a closure, which would be allocated on every batch.
func (g *Guest) runProtected(v *abi.View) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return g.run(v)
}

// protect runs f, turning a panic into a *panicError.
func protect(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return f()
}
