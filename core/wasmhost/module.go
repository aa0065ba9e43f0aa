package wasmhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/wasmhost/internal/interrupt"
)

// Errors about a module file, matched with errors.Is.
var (
	// ErrNotWasm: the file is not a WebAssembly binary.
	ErrNotWasm = errors.New("not a WebAssembly module")
	// ErrNotPlugin: the module lacks the ABI exports (see *ExportError).
	ErrNotPlugin = errors.New("not a weir plugin")
	// ErrRejected: the module rejected its config; the error's message
	// ends with the module's own.
	ErrRejected = errors.New("module rejected its config")
	// ErrClosed: Process after Shutdown.
	ErrClosed = errors.New("wasm processor is shut down")
)

// Export names of ABI v1 (docs/abi.md).
const (
	exportVersion = "weir_abi_version"
	exportKind    = "weir_kind"
	exportAlloc   = "weir_alloc"
	exportInit    = "weir_init"
	exportProcess = "weir_process"
	exportMemory  = "memory"
)

var i32, i64 = api.ValueTypeI32, api.ValueTypeI64

// requiredExports are the functions an ABI v1 module exports, with their
// signatures.
var requiredExports = []struct {
	name            string
	params, results []api.ValueType
}{
	{exportVersion, nil, []api.ValueType{i32}},
	{exportKind, nil, []api.ValueType{i32}},
	{exportAlloc, []api.ValueType{i32}, []api.ValueType{i32}},
	{exportInit, []api.ValueType{i32, i32}, []api.ValueType{i64}},
	{exportProcess, []api.ValueType{i32, i32}, []api.ValueType{i64}},
}

// ExportError lists what a module lacks to be an ABI v1 plugin. It wraps
// ErrNotPlugin.
type ExportError struct {
	Path    string
	Missing []string // absent exports
	Wrong   []string // exports with the wrong signature, "name: got (…) want (…)"
	Command bool     // built as a command (_start) rather than a reactor
}

func (e *ExportError) Error() string {
	var parts []string
	if len(e.Missing) > 0 {
		parts = append(parts, "missing exports "+strings.Join(e.Missing, ", "))
	}
	if len(e.Wrong) > 0 {
		parts = append(parts, "wrong signatures "+strings.Join(e.Wrong, "; "))
	}
	if e.Command {
		parts = append(parts, "built as a command: build Go guests with -buildmode=c-shared")
	}
	return fmt.Sprintf("%s: %s: %s (abi v%d needs %s, %s, %s, %s, %s and %s)", e.Path, ErrNotPlugin, strings.Join(parts, "; "),
		abi.Version, exportVersion, exportKind, exportAlloc, exportInit, exportProcess, exportMemory)
}

func (e *ExportError) Unwrap() error { return ErrNotPlugin }

// checks is how a module's code is made interruptible, so that a batch
// past its deadline can be stopped.
type checks int

const (
	// checksInstrumented: the module is rewritten with a countdown at
	// every loop header that calls the host every interrupt.Budget checks
	// (package interrupt); the host ends the call there once the deadline
	// has passed. The default, with or without a deadline (timeout 0): a
	// module must leave native code now and then for the Go runtime to
	// stop the world. Falls back to checksWazero for a module the
	// instrumenter does not handle.
	checksInstrumented checks = iota
	// checksWazero: wazero's WithCloseOnContextDone, which checks at every
	// loop header by calling out of native code into Go (~100 ns each).
	checksWazero
	// checksNone: no checks. Benchmarks only: a module looping in native
	// code cannot be stopped, and blocks the Go runtime's next
	// stop-the-world, hence the whole process.
	checksNone
)

func (c checks) String() string {
	switch c {
	case checksNone:
		return "none"
	case checksInstrumented:
		return "instrumented"
	}
	return "wazero"
}

// module is a compiled module in its own runtime (one runtime per module,
// since the memory limit is a runtime setting).
type module struct {
	path     string
	checks   checks // what compileModule settled on
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	cache    wazero.CompilationCache
	names    atomic.Uint64
	exports  []string
}

// compileModule reads and compiles the module at path with the given
// interruption checks, using the on-disk compilation cache in cacheDir
// ("" for none).
func compileModule(ctx context.Context, path string, lim limits, want checks, cacheDir string, log *slog.Logger) (*module, error) {
	pages := lim.pages
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read wasm module: %w", err)
	}
	if !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		return nil, fmt.Errorf("%s: %w (no \\0asm magic)", path, ErrNotWasm)
	}
	m := &module{path: path, checks: want}
	if want == checksInstrumented {
		patched, _, err := interrupt.Instrument(wasm)
		if err != nil {
			// Safe, only slower: wazero's own checks stop it instead.
			log.Warn("wasm module cannot be instrumented for cheap deadline checks; using wazero's slower checks", "path", path, "error", err)
			m.checks = checksWazero
		} else {
			wasm = patched
		}
	}
	if wasm, err = boundTables(wasm, lim.tables); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(m.checks == checksWazero).
		WithMemoryLimitPages(pages)
	if cacheDir != "" {
		pruneCache(cacheDir, time.Now())
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			log.Warn("wasm compilation cache unavailable; compiling without it", "dir", cacheDir, "error", err)
		} else {
			m.cache = cache
			rc = rc.WithCompilationCache(cache)
		}
	}
	m.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		m.close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	if m.checks == checksInstrumented {
		_, err := m.rt.NewHostModuleBuilder(interrupt.ImportModule).
			NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(yield), nil, []api.ValueType{api.ValueTypeI32}).
			Export(interrupt.ImportName).
			Instantiate(ctx)
		if err != nil {
			m.close(ctx)
			return nil, fmt.Errorf("instantiate the %s host module: %w", interrupt.ImportModule, err)
		}
	}
	m.compiled, err = m.rt.CompileModule(ctx, wasm)
	if err != nil {
		m.close(ctx)
		if strings.Contains(err.Error(), "over limit") {
			return nil, fmt.Errorf("%s: memory_limit of %s is below the module's own minimum: %v", path, plugin.ByteSize(pages)*pageSize, err)
		}
		return nil, fmt.Errorf("%s: %w: %v", path, ErrNotWasm, err)
	}
	return m, nil
}

// checkExports checks the ABI v1 exports. weir_abi_version is checked
// first, by the caller calling it, so that a module of another ABI version
// is reported as such rather than as missing exports.
func (m *module) checkExports() error {
	fns := m.compiled.ExportedFunctions()
	for name := range fns {
		m.exports = append(m.exports, name)
	}
	for name := range m.compiled.ExportedMemories() {
		m.exports = append(m.exports, name)
	}
	sort.Strings(m.exports)
	e := &ExportError{Path: m.path}
	for _, want := range requiredExports {
		def, ok := fns[want.name]
		if !ok {
			e.Missing = append(e.Missing, want.name)
			continue
		}
		if !sameTypes(def.ParamTypes(), want.params) || !sameTypes(def.ResultTypes(), want.results) {
			e.Wrong = append(e.Wrong, fmt.Sprintf("%s: got %s want %s", want.name, signature(def.ParamTypes(), def.ResultTypes()), signature(want.params, want.results)))
		}
	}
	if _, ok := m.compiled.ExportedMemories()[exportMemory]; !ok {
		e.Missing = append(e.Missing, exportMemory)
	}
	_, start := fns["_start"]
	_, initialize := fns["_initialize"]
	e.Command = start && !initialize
	if len(e.Missing) > 0 || len(e.Wrong) > 0 || e.Command {
		return e
	}
	return nil
}

// versionOnly reports whether the module at least exports
// weir_abi_version, so that its version can be checked before the rest.
func (m *module) hasVersionExport() bool {
	def, ok := m.compiled.ExportedFunctions()[exportVersion]
	return ok && sameTypes(def.ParamTypes(), nil) && sameTypes(def.ResultTypes(), []api.ValueType{i32})
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func signature(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return name(params) + " -> " + name(results)
}

func (m *module) close(ctx context.Context) {
	if m.rt != nil {
		_ = m.rt.Close(ctx)
	}
	if m.cache != nil {
		_ = m.cache.Close(ctx)
	}
}

// instanceConfig is what every instance of a module gets.
type instanceConfig struct {
	allowFS  []string // absolute host directories, mounted read-only
	allowEnv []string
	log      *slog.Logger
	buffer   int    // initial input buffer, bytes
	checks   checks // interruption checks; the zero value is the default
}

// instance is one instantiated module. It is used by one goroutine at a
// time (the processor's pool hands it out).
type instance struct {
	mod     api.Module
	mem     api.Memory
	version api.Function
	kind    api.Function
	alloc   api.Function
	init    api.Function
	process api.Function

	inPtr, inCap uint32
	stack        [2]uint64
	call         *callCtx
	enc          abi.Encoder
	scratch      abi.Scratch
	stderr       *streamWriter
	roots        []*os.Root // allow.fs directories, open while the instance lives
}

func (in *instance) closeRoots() {
	for _, r := range in.roots {
		_ = r.Close()
	}
	in.roots = nil
}

// instantiate creates an instance and runs its _initialize (Go reactors:
// the runtime and the package init functions) under a deadline of
// initTimeout and ctx's cancellation.
func (m *module) instantiate(ctx context.Context, ic instanceConfig, initTimeout time.Duration) (*instance, error) {
	in := &instance{stderr: newStreamWriter(ic.log, "stderr"), call: newCallCtx(m.checks != checksInstrumented)}
	// No start functions: _initialize is called below, under the instance's
	// deadline, which InstantiateModule would not arm.
	mc := wazero.NewModuleConfig().
		WithName(fmt.Sprintf("weir-wasm-%d", m.names.Add(1))).
		WithStartFunctions().
		WithStdout(newStreamWriter(ic.log, "stdout")).
		WithStderr(in.stderr).
		WithSysWalltime().WithSysNanotime().
		WithRandSource(rand.Reader)
	if len(ic.allowFS) > 0 {
		// Each directory is mounted through an os.Root: a path, a ".."
		// or a symlink inside it that leads out of it fails to open,
		// where wazero's own directory mount would follow it.
		fs := wazero.NewFSConfig()
		for _, d := range ic.allowFS {
			root, err := os.OpenRoot(d)
			if err != nil {
				in.closeRoots()
				return nil, fmt.Errorf("instantiate %s: allow.fs: %w", m.path, err)
			}
			in.roots = append(in.roots, root)
			fs = fs.WithFSMount(root.FS(), d)
		}
		mc = mc.WithFSConfig(fs)
	}
	for _, k := range ic.allowEnv {
		if v, ok := os.LookupEnv(k); ok {
			mc = mc.WithEnv(k, v)
		}
	}
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, mc)
	if err != nil {
		in.closeRoots()
		return nil, fmt.Errorf("instantiate %s: %w%s", m.path, err, in.stderr.suffix())
	}
	in.mod = mod
	in.mem = mod.Memory()
	in.version = mod.ExportedFunction(exportVersion)
	in.kind = mod.ExportedFunction(exportKind)
	in.alloc = mod.ExportedFunction(exportAlloc)
	in.init = mod.ExportedFunction(exportInit)
	in.process = mod.ExportedFunction(exportProcess)
	if f := mod.ExportedFunction("_initialize"); f != nil {
		err := in.guard(ctx, initTimeout, func(ctx context.Context) error {
			_, err := f.Call(ctx)
			return err
		})
		if err != nil {
			in.close(ctx)
			return nil, fmt.Errorf("instantiate %s: _initialize: %w%s", m.path, firstLine{err}, in.stderr.suffix())
		}
	}
	return in, nil
}

// guard runs f with the instance's deadline armed at d and ctx's
// cancellation: either stops the module (ends it at its next weir.yield, or
// closes it under wazero's checks). A stop is reported as an error
// wrapping context.DeadlineExceeded; the instance is then unusable.
func (in *instance) guard(ctx context.Context, d time.Duration, f func(ctx context.Context) error) error {
	stop := context.AfterFunc(ctx, in.call.fire)
	in.call.arm(d)
	err := f(in.call)
	in.call.disarm()
	stop()
	if in.call.fired.Load() {
		return fmt.Errorf("stopped after %s or on cancellation: %w (%v)", d, context.DeadlineExceeded, firstLine{err})
	}
	return err
}

// abiVersion calls weir_abi_version and checks the result.
func (in *instance) abiVersion(ctx context.Context) (uint16, error) {
	var res []uint64
	err := in.guard(ctx, initTimeout, func(ctx context.Context) (err error) {
		res, err = in.version.Call(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("call %s: %w", exportVersion, err)
	}
	v := uint32(res[0])
	if v > 0xffff {
		return 0, &abi.VersionError{Got: 0xffff}
	}
	return uint16(v), abi.CheckVersion(uint16(v))
}

// initialize passes the config to weir_init and returns the manifest.
func (in *instance) initialize(ctx context.Context, config []byte, buffer int) (abi.Manifest, error) {
	var res []uint64
	err := in.guard(ctx, initTimeout, func(ctx context.Context) error {
		if err := in.grow(ctx, max(len(config), buffer)); err != nil {
			return err
		}
		if !in.mem.Write(in.inPtr, config) {
			return fmt.Errorf("write config: %d bytes at %d beyond guest memory", len(config), in.inPtr)
		}
		var err error
		res, err = in.init.Call(ctx, uint64(in.inPtr), uint64(len(config)))
		return err
	})
	if err != nil {
		return abi.Manifest{}, fmt.Errorf("call %s: %w%s", exportInit, err, in.stderr.suffix())
	}
	buf, ok := in.mem.Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok {
		return abi.Manifest{}, fmt.Errorf("%s answered %d bytes at %d, beyond guest memory: %w", exportInit, uint32(res[0]), uint32(res[0]>>32), abi.ErrMalformed)
	}
	m, err := abi.DecodeManifest(buf)
	if err != nil {
		return m, fmt.Errorf("decode %s answer: %w", exportInit, err)
	}
	if m.Status != abi.StatusOK {
		return m, plugin.Fail(plugin.ReasonRejectedConfig, fmt.Errorf("%w: %s", ErrRejected, m.Message))
	}
	return m, nil
}

// grow makes the guest's input buffer at least n bytes.
func (in *instance) grow(ctx context.Context, n int) error {
	if n <= int(in.inCap) {
		return nil
	}
	if n > 1<<31-1 {
		return fmt.Errorf("batch of %d bytes exceeds the 2 GiB a wasm32 call can take: %w", n, errTooLarge)
	}
	in.stack[0] = uint64(n)
	if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
		return fmt.Errorf("call %s(%d): %w", exportAlloc, n, err)
	}
	ptr := uint32(in.stack[0])
	if _, ok := in.mem.Read(ptr, uint32(n)); !ok || ptr == 0 {
		return fmt.Errorf("%s(%d) returned %d, outside guest memory (%d bytes): %w", exportAlloc, n, ptr, in.mem.Size(), abi.ErrMalformed)
	}
	in.inPtr, in.inCap = ptr, uint32(n)
	return nil
}

var errTooLarge = errors.New("batch too large")

// Failure causes and the engine's reasons they map to (plugin.Reasons, the
// values of weir_wasm_errors_total's and weir_stage_records_errored_total's
// reason label); the error's text says which cause it was.
const (
	reasonTrap      = plugin.ReasonCrash       // the module trapped or exited
	reasonPanic     = plugin.ReasonCrash       // a Go panic (recovered by the SDK or not)
	reasonTimeout   = plugin.ReasonTimeout     // the batch ran past its deadline
	reasonOOM       = plugin.ReasonCrash       // the module ran out of memory
	reasonBadAnswer = plugin.ReasonBadAnswer   // the answer broke the ABI
	reasonError     = plugin.ReasonPluginError // the module reported an error
)

var reasons = []string{plugin.ReasonCrash, plugin.ReasonTimeout, plugin.ReasonBadAnswer, plugin.ReasonPluginError}

// run sends b through the instance and applies its answer. On error, b is
// unchanged and reason says what went wrong.
func (in *instance) run(b *flow.Batch, mask abi.Mask, timeout time.Duration) (reason string, err error) {
	if timeout <= 0 {
		return in.runArmed(b, mask)
	}
	in.call.arm(timeout)
	reason, err = in.runArmed(b, mask)
	if !in.call.disarm() && err == nil {
		// The deadline fired as the call returned: the answer stands, but
		// the instance is closed and must be replaced.
		return reasonTimeout, fmt.Errorf("batch finished at its %s deadline: %w", timeout, context.DeadlineExceeded)
	}
	return reason, err
}

func (in *instance) runArmed(b *flow.Batch, mask abi.Mask) (string, error) {
	ctx := in.call
	in.stderr.reset()
	view, _ := in.mem.Read(in.inPtr, in.inCap)
	buf := in.enc.Append(view[:0], b, mask)
	if len(buf) > len(view) || unsafe.SliceData(buf) != unsafe.SliceData(view) {
		// The batch outgrew the guest buffer and was encoded on the host:
		// grow the buffer, with headroom, and copy.
		if err := in.grow(ctx, len(buf)+len(buf)/4); err != nil {
			return in.classify(err), err
		}
		in.mem.Write(in.inPtr, buf)
	}
	in.stack[0], in.stack[1] = uint64(in.inPtr), uint64(len(buf))
	if err := in.process.CallWithStack(ctx, in.stack[:]); err != nil {
		return in.classify(err), fmt.Errorf("call %s: %w%s", exportProcess, firstLine{err}, in.stderr.suffix())
	}
	ptr, n := uint32(in.stack[0]>>32), uint32(in.stack[0])
	ans, ok := in.mem.Read(ptr, n)
	if !ok {
		return reasonBadAnswer, fmt.Errorf("answer of %d bytes at %d is beyond guest memory (%d bytes): %w", n, ptr, in.mem.Size(), abi.ErrMalformed)
	}
	if _, err := abi.Apply(b, ans, &in.scratch); err != nil {
		var pe *abi.PluginError
		switch {
		case !errors.As(err, &pe):
			return reasonBadAnswer, fmt.Errorf("answer: %w", err)
		case pe.Status == abi.StatusPanic:
			return reasonPanic, err
		default:
			return reasonError, err
		}
	}
	return "", nil
}

// classify names the reason of a failed call from the error and what the
// module wrote to stderr.
func (in *instance) classify(err error) string {
	if errors.Is(err, errTooLarge) {
		return reasonOOM
	}
	if in.call.fired.Load() {
		// weir.yield ended the call, or wazero closed the module.
		return reasonTimeout
	}
	seen := in.stderr.seen.Load()
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			return reasonTimeout
		}
	}
	switch {
	case seen&sawOOM != 0:
		return reasonOOM
	case seen&sawPanic != 0:
		return reasonPanic
	}
	if errors.Is(err, abi.ErrMalformed) {
		return reasonBadAnswer
	}
	return reasonTrap
}

func (in *instance) close(ctx context.Context) {
	in.call.disarm()
	if in.mod != nil {
		_ = in.mod.Close(ctx)
	}
	in.closeRoots()
}

// firstLine shortens a wazero error to its first line: the wasm stack
// trace that follows is noise in logs.
type firstLine struct{ error }

func (e firstLine) Error() string {
	s := e.error.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (e firstLine) Unwrap() error { return e.error }

// callCtx is the context of an instance's calls and its deadline. When
// the armed deadline passes, the module is stopped: an instrumented
// module's next call to weir.yield compares the time with the deadline and
// ends the call (see yield); a module compiled with wazero's checks is
// closed by wazero when Done closes, which a timer does. Unlike
// context.WithTimeout it is reused across calls and does not allocate. Once
// fired, the instance is discarded.
type callCtx struct {
	context.Context // Background: values and no deadline
	done            chan struct{}
	fired           atomic.Bool
	// An instrumented module's call ends once budget (ns, 0 for none) has
	// passed since its first weir.yield, at started (clock()): arming a
	// batch then reads no clock, and a call too short to reach a yield
	// never does. Both are touched only by the goroutine of the call.
	budget, started int64
	timer           *time.Timer // modules under wazero's checks only
}

// callKey finds the callCtx in the context wazero passes host functions.
type callKey struct{}

// newCallCtx returns a callCtx; timer is for a module that weir.yield
// does not interrupt.
func newCallCtx(timer bool) *callCtx {
	c := &callCtx{Context: context.Background(), done: make(chan struct{})}
	if timer {
		c.timer = time.AfterFunc(time.Hour, c.fire)
		c.timer.Stop()
	}
	return c
}

// epoch anchors clock.
var epoch = time.Now()

// clock returns monotonic nanoseconds, for deadlines.
func clock() int64 { return int64(time.Since(epoch)) }

// expired reports whether the armed deadline has passed, and fires then.
// The first call of a batch starts its clock.
func (c *callCtx) expired() bool {
	if c.fired.Load() {
		return true
	}
	if c.budget == 0 {
		return false
	}
	now := clock()
	if c.started == 0 {
		c.started = now
		return false
	}
	if now-c.started > c.budget {
		c.fire()
		return true
	}
	return false
}

func (c *callCtx) fire() {
	if c.fired.CompareAndSwap(false, true) {
		close(c.done)
	}
}

func (c *callCtx) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// errInterrupted ends a call whose deadline has passed.
var errInterrupted = errors.New("interrupted at its deadline")

// yield is weir.yield, which an instrumented module calls every
// interrupt.Budget loop headers: it ends the call once its deadline has
// passed or the module is closed (Shutdown), and otherwise returns the
// next budget. Leaving native code is also what lets the Go runtime stop
// the world while a module runs.
func yield(ctx context.Context, mod api.Module, stack []uint64) {
	if c, ok := ctx.Value(callKey{}).(*callCtx); ok && c.expired() {
		panic(errInterrupted) // wazero ends the call with this error
	}
	if mod.IsClosed() {
		panic(errClosedModule)
	}
	stack[0] = interrupt.Budget
}

// errClosedModule ends a call into a module closed under it.
var errClosedModule = errors.New("module closed")

func (c *callCtx) Done() <-chan struct{} { return c.done }

func (c *callCtx) Err() error {
	if c.fired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// arm sets the deadline d from now: for an instrumented module, from its
// first weir.yield, a few tens of microseconds into a call that loops.
func (c *callCtx) arm(d time.Duration) {
	if c.timer != nil {
		c.timer.Reset(d)
		return
	}
	c.budget, c.started = int64(d), 0
}

// disarm stops the deadline; false means it has fired (or is firing).
func (c *callCtx) disarm() bool {
	if c.timer != nil {
		return c.timer.Stop() && !c.fired.Load()
	}
	c.budget = 0
	return !c.fired.Load()
}

// streamWriter receives a module's stdout or stderr. It logs complete
// lines at debug level, keeps the first bytes written since the last
// reset for error reports (a Go crash prints its reason first, then
// goroutine dumps), and notes the crash signatures the Go runtime prints.
type streamWriter struct {
	mu     sync.Mutex
	log    *slog.Logger
	stream string
	head   []byte
	line   []byte
	seen   atomic.Uint32 // sawOOM | sawPanic
	dirty  atomic.Bool   // written since the last reset: reset checks it on every call
}

const (
	headSize = 2 << 10
	sawOOM   = 1 << 0
	sawPanic = 1 << 1
)

func newStreamWriter(log *slog.Logger, stream string) *streamWriter {
	return &streamWriter{log: log, stream: stream}
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dirty.Store(true)
	if room := headSize - len(w.head); room > 0 {
		w.head = append(w.head, p[:min(room, len(p))]...)
	}
	if bytes.Contains(p, []byte("out of memory")) {
		w.seen.Or(sawOOM)
	}
	if bytes.Contains(p, []byte("panic: ")) || bytes.Contains(p, []byte("fatal error: ")) {
		w.seen.Or(sawPanic)
	}
	if w.log != nil {
		w.line = append(w.line, p...)
		for {
			i := bytes.IndexByte(w.line, '\n')
			if i < 0 {
				break
			}
			w.log.Debug("module output", "stream", w.stream, "line", string(w.line[:i]))
			w.line = w.line[i+1:]
		}
		if len(w.line) > headSize {
			w.line = w.line[:0]
		}
	}
	return len(p), nil
}

// reset forgets what was written, before a call whose failure must be
// told apart from earlier output.
func (w *streamWriter) reset() {
	if !w.dirty.Load() {
		return
	}
	w.mu.Lock()
	w.head = w.head[:0]
	w.seen.Store(0)
	w.dirty.Store(false)
	w.mu.Unlock()
}

// String returns the first bytes written since the last reset.
func (w *streamWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.head)
}

// suffix returns the kept output as "; module stderr: …" for error
// messages, or "" if the module wrote nothing.
func (w *streamWriter) suffix() string {
	s := strings.TrimSpace(w.String())
	if s == "" {
		return ""
	}
	const keep = 512
	if len(s) > keep {
		s = s[:keep] + "…"
	}
	return "; module " + w.stream + ": " + s
}

var _ io.Writer = (*streamWriter)(nil)
