package interrupt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/weir-flow/weir/core/wasmhost/wasmhosttest"
)

// A tiny assembler for hand-written test modules.

func u32(v uint32) []byte { return appendU32(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func vec(items ...[]byte) []byte { return cat(u32(uint32(len(items))), cat(items...)) }

func name(s string) []byte { return appendName(nil, s) }

func sec(id byte, body []byte) []byte { return cat([]byte{id}, u32(uint32(len(body))), body) }

func module(sections ...[]byte) []byte {
	return cat([]byte("\x00asm\x01\x00\x00\x00"), cat(sections...))
}

// body is a function body without locals.
func body(code ...byte) []byte {
	b := append([]byte{0}, code...)
	return cat(u32(uint32(len(b))), b)
}

// funcType is (params) -> (results) of i32s.
func funcType(params, results int) []byte {
	t := []byte{0x60}
	t = append(t, u32(uint32(params))...)
	for range params {
		t = append(t, 0x7f)
	}
	t = append(t, u32(uint32(results))...)
	for range results {
		t = append(t, 0x7f)
	}
	return t
}

// testModule imports env.seven () -> i32 (function 0) and defines
//
//	1 helper () -> i32: i32.const 35
//	2 main () -> i32: call helper + call_indirect table[0] (helper) + call env.seven
//	3 spin (): loop br 0 end
//	4 count (i32) -> i32: loop until the argument counts down to 0
//
// with a table holding helper (element segment), a mutable global, and a
// name section naming the functions.
func testModule() []byte {
	types := sec(secType, vec(funcType(0, 1), funcType(0, 0), funcType(1, 1)))
	imports := sec(secImport, vec(cat(name("env"), name("seven"), []byte{0x00}, u32(0))))
	funcs := sec(secFunction, vec(u32(0), u32(0), u32(1), u32(2)))
	table := sec(secTable, vec([]byte{0x70, 0x00, 0x01}))
	global := sec(secGlobal, vec([]byte{0x7f, 0x01, 0x41, 0x00, 0x0b}))
	exports := sec(secExport, vec(
		cat(name("main"), []byte{0x00}, u32(2)),
		cat(name("spin"), []byte{0x00}, u32(3)),
		cat(name("count"), []byte{0x00}, u32(4)),
		cat(name("g"), []byte{0x03}, u32(0)),
	))
	elems := sec(secElement, vec(cat(u32(0), []byte{0x41, 0x00, 0x0b}, vec(u32(1)))))
	code := sec(secCode, vec(
		body(0x41, 35, 0x0b),
		body(0x10, 1, 0x41, 0x00, 0x11, 0x00, 0x00, 0x6a, 0x10, 0x00, 0x6a, 0x0b),
		body(0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b),
		// loop: local.get 0, i32.const 1, i32.sub, local.tee 0, br_if 0; end; global.get 0 (0)
		body(0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x23, 0x00, 0x0b),
	))
	names := sec(secCustom, cat(name("name"), sec(1, vec(
		cat(u32(0), name("seven")), cat(u32(1), name("helper")), cat(u32(2), name("main")),
		cat(u32(3), name("spin")), cat(u32(4), name("count")),
	))))
	return module(types, imports, funcs, table, global, exports, elems, code, names)
}

// runtime returns a runtime with env.seven and weir.yield, whose calls
// are counted; yield ends the call after stopAfter calls (0: never).
func runtime(t *testing.T, stopAfter int64) (wazero.Runtime, *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, s []uint64) { s[0] = 7 }), nil, []api.ValueType{api.ValueTypeI32}).
		Export("seven").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	_, err = rt.NewHostModuleBuilder(ImportModule).NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, s []uint64) {
			if n := calls.Add(1); stopAfter > 0 && n >= stopAfter {
				panic(errStop)
			}
			s[0] = Budget
		}), nil, []api.ValueType{api.ValueTypeI32}).
		Export(ImportName).Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rt, &calls
}

var errStop = errors.New("stop")

func TestInstrumentedModuleRuns(t *testing.T) {
	out, st, err := Instrument(testModule())
	if err != nil {
		t.Fatal(err)
	}
	if st.Yield != 1 || st.Global != 1 || st.Loops != 2 || st.Entries != 0 {
		t.Fatalf("stats %+v, want yield 1, global 1, 2 loops", st)
	}
	rt, calls := runtime(t, 0)
	ctx := context.Background()
	cm, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("instrumented module does not compile: %v", err)
	}
	if got := cm.ExportedFunctions()["main"].Name(); got != "main" {
		t.Errorf("export main is named %q after renumbering", got)
	}
	mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	// call, call_indirect through the element segment, and the import.
	res, err := mod.ExportedFunction("main").Call(ctx)
	if err != nil || res[0] != 35+35+7 {
		t.Fatalf("main() = %v, %v; want 77", res, err)
	}
	// A loop of 3 budgets calls weir.yield 3 times and keeps its result.
	res, err = mod.ExportedFunction("count").Call(ctx, 3*Budget)
	if err != nil || res[0] != 0 {
		t.Fatalf("count() = %v, %v", res, err)
	}
	if calls.Load() != 3 {
		t.Errorf("weir.yield called %d times for %d loop iterations, want 3", calls.Load(), 3*Budget)
	}
	if g := mod.ExportedGlobal("g"); g == nil || g.Get() != 0 {
		t.Errorf("the module's own global moved")
	}
}

func TestEndlessLoopEnds(t *testing.T) {
	out, _, err := Instrument(testModule())
	if err != nil {
		t.Fatal(err)
	}
	rt, calls := runtime(t, 5)
	ctx := context.Background()
	mod, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mod.ExportedFunction("spin").Call(ctx)
	if !errors.Is(err, errStop) {
		t.Fatalf("spin ended with %v, want the yield's error", err)
	}
	if calls.Load() != 5 {
		t.Fatalf("%d yields", calls.Load())
	}
}

func TestRefused(t *testing.T) {
	types := sec(secType, vec(funcType(0, 0)))
	funcs := sec(secFunction, vec(u32(0)))
	for name, wasm := range map[string][]byte{
		"not wasm":        []byte("hello, world"),
		"version 2":       []byte("\x00asm\x02\x00\x00\x00"),
		"start section":   module(types, funcs, sec(secStart, u32(0)), sec(secCode, vec(body(0x0b)))),
		"foreign global":  module(types, funcs, sec(secCode, vec(body(0x41, 1, 0x24, 0x00, 0x0b)))),
		"unknown opcode":  module(types, funcs, sec(secCode, vec(body(0x06, 0x40, 0x0b, 0x0b)))),
		"unbalanced":      module(types, funcs, sec(secCode, vec(body(0x02, 0x40, 0x0b)))),
		"truncated":       module(types, funcs, sec(secCode, []byte{1, 5, 0})),
		"out of order":    module(funcs, types),
		"unknown section": module(sec(42, nil)),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Instrument(wasm); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("got %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestTailCallsCheckEntries(t *testing.T) {
	wasm := module(
		sec(secType, vec(funcType(0, 0))),
		sec(secFunction, vec(u32(0), u32(0))),
		sec(secCode, vec(body(0x12, 0x01, 0x0b), body(0x12, 0x00, 0x0b))),
	)
	out, st, err := Instrument(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 2 {
		t.Fatalf("%d entries checked, want 2", st.Entries)
	}
	// The return_calls now target functions 2 and 1 (after the import).
	if _, _, err := Instrument(out); !errors.Is(err, ErrUnsupported) && err != nil {
		t.Fatal(err)
	}
}

// TestGoModule instruments a real Go guest and checks that its names
// survive renumbering and that it still compiles.
func TestGoModule(t *testing.T) {
	dir := t.TempDir()
	path, err := wasmhosttest.Build(dir, "./examples/wasm/protocolfilter")
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, st, err := Instrument(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if st.Loops < 100 {
		t.Fatalf("only %d loops in a Go module", st.Loops)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache(t)))
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	for name, def := range orig.ExportedFunctions() {
		if got := cm.ExportedFunctions()[name]; got == nil || got.DebugName() != def.DebugName() || got.Index() != def.Index()+1 {
			t.Errorf("export %s: %v, want %s at %d", name, got, def.DebugName(), def.Index()+1)
		}
	}
	before, after := functionNames(t, wasm), functionNames(t, out)
	if len(before) < 100 || len(after) != len(before) {
		t.Fatalf("%d function names before, %d after", len(before), len(after))
	}
	for idx, name := range before {
		want := idx
		if idx >= st.Yield {
			want++
		}
		if got := after[want]; got != name {
			t.Fatalf("function %d %q is named %q after renumbering", idx, name, got)
		}
	}
	found := false
	for _, def := range cm.ImportedFunctions() {
		if m, n, _ := def.Import(); m == ImportModule && n == ImportName {
			found = true
		}
	}
	if !found {
		t.Error("no weir.yield import")
	}
}

// functionNames returns the function names of a module's name section.
func functionNames(t *testing.T, wasm []byte) map[uint32]string {
	t.Helper()
	names := map[uint32]string{}
	r := reader{b: wasm, off: 8}
	for !r.done() {
		id := r.byte()
		b := r.bytes(int(r.u32()))
		if id != secCustom {
			continue
		}
		cr := reader{b: b}
		if cr.name() != "name" {
			continue
		}
		for !cr.done() && cr.err == nil {
			sub := cr.byte()
			sb := cr.bytes(int(cr.u32()))
			if sub != 1 {
				continue
			}
			sr := reader{b: sb}
			for k := sr.u32(); k > 0 && sr.err == nil; k-- {
				idx := sr.u32()
				names[idx] = sr.name()
			}
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return names
}

func cache(t *testing.T) wazero.CompilationCache {
	c, err := wazero.NewCompilationCacheWithDir(filepath.Join(wasmhosttest.CacheDir(), "interrupt"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzInstrument checks that no input makes Instrument panic, and that
// instrumenting is deterministic.
func FuzzInstrument(f *testing.F) {
	f.Add(testModule())
	f.Add(module(sec(secType, vec(funcType(0, 0))), sec(secFunction, vec(u32(0))), sec(secCode, vec(body(0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b)))))
	f.Fuzz(func(t *testing.T, wasm []byte) {
		a, _, err := Instrument(wasm)
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v does not wrap ErrUnsupported", err)
			}
			return
		}
		b, _, _ := Instrument(wasm)
		if string(a) != string(b) {
			t.Fatal("not deterministic")
		}
	})
}

// BenchmarkInstrument measures instrumenting protocolfilter.wasm (3.7 MB),
// which the host does on every load, before the compilation cache.
func BenchmarkInstrument(b *testing.B) {
	path, err := wasmhosttest.Build(b.TempDir(), "./examples/wasm/protocolfilter")
	if err != nil {
		b.Fatal(err)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wasm)))
	for b.Loop() {
		if _, _, err := Instrument(wasm); err != nil {
			b.Fatal(err)
		}
	}
}
