package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/wasmhost/wasmhosttest"
	"github.com/weir-flow/weir/plugins/filter/protocol"
)

// guests are the modules the tests use, built once by TestMain.
var guests = map[string]string{
	"protocolfilter": "./examples/wasm/protocolfilter",
	"subnettag":      "./examples/wasm/subnettag",
	"misbehave":      "./examples/wasm/misbehave",
	"badversion":     "./core/wasmhost/testdata/guests/badversion",
	"noexports":      "./core/wasmhost/testdata/guests/noexports",
	"sdkpanic":       "./core/wasmhost/testdata/guests/sdkpanic",
	"sandbox":        "./core/wasmhost/testdata/guests/sandbox",
	"recordfilter":   "./core/wasmhost/testdata/guests/recordfilter",
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weir-wasmhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, pkg := range guests {
		p, err := wasmhosttest.Build(dir, pkg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		guests[name] = p
	}
	if guests["handwritten"], err = writeHandwritten(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testConfig returns a config for module name.
func testConfig(name string, config any, edit ...func(*Config)) *Config {
	cfg := DefaultConfig()
	cfg.Path = guests[name]
	cfg.Config = config
	cfg.CacheDir = wasmhosttest.CacheDir()
	cfg.Instances = 2
	for _, e := range edit {
		e(cfg)
	}
	return cfg
}

// newProcessor starts a processor on module name with the given config.
func newProcessor(t testing.TB, name string, config any, edit ...func(*Config)) *Processor {
	t.Helper()
	p, err := New(testConfig(name, config, edit...), plugin.NopSettings(ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

func protocols(b *flow.Batch) []uint8 {
	var out []uint8
	for _, r := range b.Records {
		out = append(out, r.ProtocolIdentifier)
	}
	return out
}

// value reads a counter.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}

func (p *Processor) errorCount(reason string) float64 {
	return value(p.metrics.errors.WithLabelValues(reason).(prometheus.Metric))
}

func TestProtocolFilter(t *testing.T) {
	p := newProcessor(t, "protocolfilter", map[string]any{"protocols": []any{"tcp", 1}})
	// Without port groups the filter reads the protocol alone.
	if m := p.Manifest(); m.Kind != abi.KindFilter || m.Reads != abi.MaskOf(abi.FlagColumns|abi.FlagNoPresence, flow.ProtocolIdentifier) {
		t.Fatalf("manifest %+v", m)
	}
	b := plugintest.MixedBatch(8) // tcp udp icmp icmpv6 …
	if err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(protocols(b)); got != "[6 1 6 1]" {
		t.Fatalf("kept protocols %s, want [6 1 6 1]", got)
	}
}

// TestSameAsBuiltin runs the WASM protocolfilter and the built-in
// filter.protocol over the same batches, of sizes that cross the first
// guest buffer.
func TestSameAsBuiltin(t *testing.T) {
	config := map[string]any{"protocols": []any{"udp", "web", 58}}
	p := newProcessor(t, "protocolfilter", config)
	var cfg protocol.Config
	cfg.Protocols = config["protocols"].([]any)
	builtin, err := protocol.New(&cfg, plugin.NopSettings(protocol.ID))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ports := []uint16{53, 80, 443, 8080}
	for _, n := range []int{1, 7, 64, 256, 1024, 5000, 3} {
		want, got := flow.NewBatch(n), flow.NewBatch(n)
		for range n {
			proto, sp, dp := uint8(rng.IntN(256)), ports[rng.IntN(4)], ports[rng.IntN(4)]
			plugintest.Record(want, "10.0.0.1", "10.0.0.2", proto, sp, dp, 1, 1)
			plugintest.Record(got, "10.0.0.1", "10.0.0.2", proto, sp, dp, 1, 1)
		}
		_ = builtin.Process(context.Background(), want)
		if err := p.Process(context.Background(), got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(protocols(got)) != fmt.Sprint(protocols(want)) || got.Len() != want.Len() {
			t.Fatalf("batch of %d: wasm kept %d, built-in %d", n, got.Len(), want.Len())
		}
	}
	if n := p.errorCount(reasonBadAnswer) + p.errorCount(reasonTrap); n != 0 {
		t.Fatalf("%v errors", n)
	}
}

func TestEnricher(t *testing.T) {
	p := newProcessor(t, "subnettag", map[string]any{
		"subnets": map[string]any{"10.0.0.0/8": "ten", "fd00::/8": "ula"},
		"label":   "net",
		"ie":      map[string]any{"enterprise": 99999, "element": 7},
	})
	if k := p.Manifest().Kind; k != abi.KindEnricher {
		t.Fatalf("kind %s", k)
	}
	b := plugintest.MixedBatch(4)
	b.Records[1].SourcePodLabels = `{"app":"db"}`
	b.Records[1].Extra = append(b.Records[1].Extra, flow.Field{Enterprise: 1, Element: 1, Value: []byte("kept")})
	if err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 4 {
		t.Fatalf("enricher dropped records: %d left", b.Len())
	}
	want := []string{`{"net":"ten"}`, `{"app":"db","net":"ula"}`, `{"net":"ten"}`, `{"net":"ula"}`}
	for i, r := range b.Records {
		if r.SourcePodLabels != want[i] || !r.Has(flow.SourcePodLabels) {
			t.Errorf("record %d: sourcePodLabels %q, want %q", i, r.SourcePodLabels, want[i])
		}
		f := r.FindExtra(flow.IEKey{Enterprise: 99999, Element: 7})
		if f == nil || !f.Variable || string(f.Value) != strings.Trim(want[i][len(want[i])-5:], `":}`) {
			t.Errorf("record %d: IE 99999/7 = %+v", i, f)
		}
		if r.ProtocolIdentifier == 0 || !r.SourceAddress.IsValid() {
			t.Errorf("record %d: untouched fields changed: %+v", i, r)
		}
	}
	if f := b.Records[1].FindExtra(flow.IEKey{Enterprise: 1, Element: 1}); f == nil || string(f.Value) != "kept" {
		t.Errorf("existing Extra IE lost: %+v", b.Records[1].Extra)
	}
}

// TestMisbehave checks that every failure mode is contained, counted and
// followed by a fresh instance, under both policies.
func TestMisbehave(t *testing.T) {
	modes := map[string]string{
		"loop": reasonTimeout, "trap": reasonTrap, "panic": reasonPanic,
		"oom": reasonOOM, "garbage": reasonBadAnswer,
	}
	for mode, reason := range modes {
		for _, policy := range []string{FailOpen, FailClosed} {
			t.Run(mode+"/"+policy, func(t *testing.T) {
				p := newProcessor(t, "misbehave", map[string]any{"mode": mode, "every": 2}, func(c *Config) {
					c.OnError = policy
					c.Timeout = 300 * time.Millisecond
					c.MemoryLimit = 32 << 20
					if mode == "oom" {
						c.Timeout = 10 * time.Second
					}
					c.Instances = 1 // every batch goes through the same counter
				})
				total := 0
				for i := 1; i <= 6; i++ {
					b := plugintest.MixedBatch(10)
					if err := p.Process(context.Background(), b); err != nil {
						t.Fatalf("batch %d: %v", i, err)
					}
					want := 10
					if i%2 == 0 && policy == FailClosed {
						want = 0
					}
					if b.Len() != want {
						t.Fatalf("batch %d: %d records out, want %d", i, b.Len(), want)
					}
					total += b.Len()
				}
				if got := p.errorCount(reason); got != 3 {
					for _, r := range reasons {
						t.Logf("%s: %v", r, p.errorCount(r))
					}
					t.Fatalf("weir_wasm_errors_total{reason=%q} = %v, want 3", reason, got)
				}
				if got := value(p.metrics.restarts); got != 3 {
					t.Fatalf("weir_wasm_restarts_total = %v, want 3", got)
				}
				if policy == FailOpen && total != 60 {
					t.Fatalf("fail-open let %d of 60 records through", total)
				}
			})
		}
	}
}

func TestTimeoutKillsLoopPromptly(t *testing.T) {
	p := newProcessor(t, "misbehave", map[string]any{"mode": "loop"}, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	t0 := time.Now()
	if err := p.Process(context.Background(), plugintest.MixedBatch(3)); err != nil {
		t.Fatal(err)
	}
	// The deadline, plus a replacement instance; generous for a loaded CI.
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("a 100ms timeout took %s to stop the loop", d)
	}
	if p.errorCount(reasonTimeout) != 1 {
		t.Fatal("timeout not counted")
	}
}

// TestLoopLetsGCRun checks that a module looping in native code does not
// block the Go runtime's stop-the-world: a garbage collection started
// during the loop finishes long before the loop's deadline.
func TestLoopLetsGCRun(t *testing.T) {
	for _, timeout := range []time.Duration{time.Minute, 0} {
		t.Run(fmt.Sprintf("timeout=%s", timeout), func(t *testing.T) {
			p := newProcessor(t, "misbehave", map[string]any{"mode": "loop"}, func(c *Config) {
				c.Timeout = timeout
				c.Instances = 1
			})
			go p.Process(context.Background(), plugintest.MixedBatch(3)) //nolint:errcheck // loops until Shutdown
			time.Sleep(200 * time.Millisecond)                           // into the loop
			done := make(chan struct{})
			go func() {
				runtime.GC()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("runtime.GC blocked by a module looping in native code")
			}
			// Shutdown stops the loop: it closes the module under it.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			_ = p.Shutdown(ctx)
			stopped := make(chan struct{})
			go func() {
				p.inflight.Wait()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("the loop survived Shutdown")
			}
		})
	}
}

func TestSDKPanic(t *testing.T) {
	p := newProcessor(t, "sdkpanic", nil)
	var logs strings.Builder
	p.log = slogTo(&logs)
	b := plugintest.MixedBatch(4) // has UDP
	if err := p.Process(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 4 || p.errorCount(reasonPanic) != 1 {
		t.Fatalf("%d records, %v panics", b.Len(), p.errorCount(reasonPanic))
	}
	if !strings.Contains(logs.String(), "sdkpanic: udp") || !strings.Contains(logs.String(), "reason=panic") {
		t.Fatalf("log does not carry the panic: %s", logs.String())
	}
	// The next batch, without UDP, goes through the fresh instance.
	b = flow.NewBatch(1)
	plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 1, 2, 1, 1)
	if err := p.Process(context.Background(), b); err != nil || b.Len() != 1 || p.errorCount(reasonPanic) != 1 {
		t.Fatalf("after restart: %v, %d records", err, b.Len())
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.wasm")
	if err := os.WriteFile(text, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		cfg     *Config
		is      error
		message []string
	}{
		{"good", testConfig("protocolfilter", map[string]any{"protocols": []any{"tcp"}}), nil, nil},
		{"not wasm", testConfig("protocolfilter", nil, func(c *Config) { c.Path = text }), ErrNotWasm, []string{"notes.wasm", "not a WebAssembly module"}},
		{"missing file", testConfig("protocolfilter", nil, func(c *Config) { c.Path = filepath.Join(dir, "absent.wasm") }), fs.ErrNotExist, []string{"absent.wasm"}},
		{"no exports", testConfig("noexports", nil), ErrNotPlugin, []string{"noexports.wasm", "missing exports weir_abi_version, weir_kind, weir_alloc, weir_init, weir_process"}},
		{"abi version", testConfig("badversion", nil), nil, []string{"badversion.wasm", "abi version 99 is not supported", "supports abi version 1"}},
		{"rejected", testConfig("protocolfilter", map[string]any{"protocols": []any{"tcp"}, "colour": "red"}), ErrRejected, []string{"protocolfilter.wasm", "unknown field \"colour\""}},
		{"misbehave mode", testConfig("misbehave", map[string]any{"mode": "sulk"}), ErrRejected, []string{`mode "sulk"`}},
		{"memory too small", testConfig("protocolfilter", nil, func(c *Config) { c.MemoryLimit = 64 << 10 }), nil, []string{"protocolfilter.wasm", "memory_limit of 64KiB is below the module's own minimum"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Check(context.Background(), "")
			if c.is == nil && c.message == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check accepted it")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("err = %v, want errors.Is %v", err, c.is)
			}
			for _, m := range c.message {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("message %q lacks %q", err, m)
				}
			}
			var ve *abi.VersionError
			if c.name == "abi version" && (!errors.As(err, &ve) || ve.Got != 99) {
				t.Errorf("err = %v, want *abi.VersionError", err)
			}
			// Start refuses the same way.
			p, nerr := New(c.cfg, plugin.NopSettings(ID))
			if nerr != nil {
				t.Fatal(nerr)
			}
			if serr := p.Start(context.Background()); serr == nil || !strings.Contains(serr.Error(), c.message[0]) {
				t.Errorf("Start: %v", serr)
			}
			_ = p.Shutdown(context.Background())
		})
	}
}

func TestRelativePath(t *testing.T) {
	cfg := testConfig("protocolfilter", nil)
	base := filepath.Dir(cfg.Path)
	cfg.Path = filepath.Base(cfg.Path)
	if err := cfg.Check(context.Background(), base); err != nil {
		t.Fatalf("relative to base dir: %v", err)
	}
}

func TestInspect(t *testing.T) {
	info, err := Inspect(context.Background(), guests["subnettag"])
	if err != nil {
		t.Fatal(err)
	}
	if info.ABIVersion != abi.Version || info.Kind != abi.KindEnricher {
		t.Fatalf("info %+v", info)
	}
	for _, e := range []string{"weir_process", "weir_init", "memory", "_initialize"} {
		if !contains(info.Exports, e) {
			t.Errorf("exports %v lack %s", info.Exports, e)
		}
	}
	if !contains(info.Imports, "wasi_snapshot_preview1.fd_write") || contains(info.Imports, "weir.yield") {
		t.Errorf("imports %v", info.Imports)
	}
	if _, err := Inspect(context.Background(), guests["noexports"]); !errors.Is(err, ErrNotPlugin) {
		t.Fatalf("Inspect(noexports) = %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestSandbox(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink inside the granted directory to a file outside it (issue
	// 12: a module read /etc/passwd this way), one to a directory outside
	// it, and one that stays inside.
	outside := filepath.Join(t.TempDir(), "outside.txt")
	if err := os.WriteFile(outside, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"escape": outside, "etc": "/etc", "inside": "secret.txt"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("WEIR_SANDBOX_TEST", "1")
	for _, c := range []struct {
		name   string
		config map[string]any
		allow  Allow
		ok     bool
	}{
		{"no fs by default", map[string]any{"file": secret}, Allow{}, false},
		{"no /etc either", map[string]any{"file": "/etc/hostname"}, Allow{}, false},
		{"fs granted", map[string]any{"file": secret}, Allow{FS: []string{dir}}, true},
		{"symlink inside the granted dir", map[string]any{"file": filepath.Join(dir, "inside")}, Allow{FS: []string{dir}}, true},
		{"symlink out of the granted dir", map[string]any{"file": filepath.Join(dir, "escape")}, Allow{FS: []string{dir}}, false},
		{"symlink to /etc", map[string]any{"file": filepath.Join(dir, "etc", "passwd")}, Allow{FS: []string{dir}}, false},
		{"dot-dot out of the granted dir", map[string]any{"file": filepath.Join(dir, "..", filepath.Base(filepath.Dir(outside)), "outside.txt")}, Allow{FS: []string{dir}}, false},
		{"no env by default", map[string]any{"env": "WEIR_SANDBOX_TEST"}, Allow{}, false},
		{"env granted", map[string]any{"env": "WEIR_SANDBOX_TEST"}, Allow{Env: []string{"WEIR_SANDBOX_TEST"}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := testConfig("sandbox", c.config, func(cfg *Config) { cfg.Allow = c.allow }).Check(context.Background(), "")
			if c.ok != (err == nil) {
				t.Fatalf("Check = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// TestConcurrent runs batches from several goroutines through a pool of
// instances; run with -race.
func TestConcurrent(t *testing.T) {
	p := newProcessor(t, "protocolfilter", map[string]any{"protocols": []any{"udp"}}, func(c *Config) { c.Instances = 3 })
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				n := 1 + (g*31+i*7)%300
				b := plugintest.MixedBatch(n)
				if err := p.Process(context.Background(), b); err != nil {
					errs <- err
					return
				}
				want := n/4 + map[bool]int{true: 1}[n%4 >= 2] // protocol 17 at i%4 == 1
				for _, r := range b.Records {
					if r.ProtocolIdentifier != 17 {
						errs <- fmt.Errorf("kept protocol %d", r.ProtocolIdentifier)
						return
					}
				}
				if b.Len() != want {
					errs <- fmt.Errorf("batch of %d kept %d, want %d", n, b.Len(), want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p.live > 3 {
		t.Errorf("%d instances for a pool of 3", p.live)
	}
}

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		p, err := New(testConfig("protocolfilter", nil), plugin.NopSettings(ID))
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
	t.Run("process after shutdown", func(t *testing.T) {
		p := newProcessor(t, "protocolfilter", nil)
		_ = p.Shutdown(context.Background())
		if err := p.Process(context.Background(), plugintest.MixedBatch(1)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Process after Shutdown: %v", err)
		}
	})
}

func TestRegistered(t *testing.T) {
	info, ok := plugin.Lookup(ID)
	if !ok || info.Stage() != plugin.StageProcessor {
		t.Fatalf("plugin %q not registered as a processor", ID)
	}
	if _, ok := info.NewConfig().(*Config); !ok {
		t.Fatal("NewConfig does not return *Config")
	}
}

// TestPoolHandoff runs many small batches from more goroutines than
// instances, so that releases race with callers starting to wait: no
// caller may be left waiting while an instance is idle (the context's
// deadline would end it with an error).
func TestPoolHandoff(t *testing.T) {
	for _, instances := range []int{1, 2} {
		p := newProcessor(t, "protocolfilter", map[string]any{"protocols": []any{"udp"}}, func(c *Config) { c.Instances = instances })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 2000 {
					if err := p.Process(ctx, plugintest.MixedBatch(2)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		close(errs)
		for err := range errs {
			t.Errorf("%d instances: %v", instances, err)
		}
		if p.live > instances {
			t.Errorf("%d instances for a pool of %d", p.live, instances)
		}
	}
}
