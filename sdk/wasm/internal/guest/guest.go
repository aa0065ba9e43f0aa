// Package guest is the guest side of ABI v1, shared by the SDK's WASM
// exports and its host emulator (sdk/wasm/wasmtest): it decodes batches,
// runs the registered plugin and encodes its answer.
package guest

import (
	"fmt"
	"runtime/debug"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// Plugin is what a module registers.
type Plugin struct {
	Kind abi.Kind
	// Keep decides a filter's or processor's verdict.
	Keep func(*flow.Record) bool
	// Batch is a batch filter: it clears the verdicts of the records it
	// drops (all are kept on entry). d decodes v.
	Batch func(v *abi.View, d *abi.Decoder, verdicts abi.Verdicts)
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
	view    abi.View
	dec     abi.Decoder
	rec     flow.Record   // a filter's record, reused for every record
	recs    []flow.Record // an enricher's or processor's records
	before  flow.Record
	extra   []flow.Field
	answer  abi.Answer
	updates abi.Updates
}

// Default is the module's guest, used by the WASM exports.
var Default Guest

// Register sets the plugin; a second call replaces the first (tests
// register several).
func (g *Guest) Register(p Plugin) {
	g.plugin, g.registered = p, true
}

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
	m := abi.Manifest{Version: abi.Version, Kind: g.plugin.Kind, Reads: g.plugin.Reads}
	switch {
	case !g.registered:
		m.Status, m.Message = abi.StatusError, "no plugin registered: call weir.RegisterFilter or weir.RegisterEnricher from an init function"
	case g.plugin.Init != nil:
		if err := protect(func() error { return g.plugin.Init(config) }); err != nil {
			m.Status, m.Message = abi.StatusError, err.Error()
		}
	}
	g.out = m.Append(g.out[:0])
	return g.out
}

// Process runs the plugin over the batch in buf and returns the encoded
// answer. A panic in the plugin is recovered and answered as StatusPanic.
func (g *Guest) Process(buf []byte) []byte {
	g.answer = abi.Answer{Verdicts: g.answer.Verdicts}
	g.updates.Reset()
	var err error
	// The view lives in g: passed to the plugin, a local would escape and
	// be allocated on every batch.
	g.view, err = abi.ParseBatch(buf)
	v := &g.view
	if err != nil {
		g.answer.Status, g.answer.Message = abi.StatusError, "decode batch: "+err.Error()
		g.out = g.answer.Append(g.out[:0])
		return g.out
	}
	n := v.Len()
	g.answer.Count = n
	if g.plugin.Kind != abi.KindFilter {
		if cap(g.recs) < n {
			g.recs = make([]flow.Record, n)
		}
		g.recs = g.recs[:n]
	}
	err = g.runProtected(v)
	pe, _ := err.(*panicError)
	switch {
	case pe != nil:
		g.answer = abi.Answer{Status: abi.StatusPanic, Count: n, Message: pe.Error(), Verdicts: g.answer.Verdicts[:0]}
		g.updates.Reset()
	case err != nil:
		g.answer = abi.Answer{Status: abi.StatusError, Count: n, Message: err.Error(), Verdicts: g.answer.Verdicts[:0]}
		g.updates.Reset()
	}
	g.answer.Updates, g.answer.UpdateCount = g.updates.Bytes(), g.updates.Len()
	g.out = g.answer.Append(g.out[:0])
	return g.out
}

func (g *Guest) run(v *abi.View) error {
	p := &g.plugin
	n := v.Len()
	g.answer.Verdicts = g.answer.Verdicts.KeepAll(n)
	switch p.Kind {
	case abi.KindFilter:
		if p.Batch != nil {
			p.Batch(v, &g.dec, g.answer.Verdicts)
			return nil
		}
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
