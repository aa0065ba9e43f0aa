package rpc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/rpcwire"
)

// Plugin describes a plugin: set Filter, Enrich or both.
type Plugin struct {
	// Name names the plugin in Weir's logs.
	Name string
	// Init, if set, is called once per plugin process, before any batch,
	// with the processor's `config:` value as JSON ("null" when absent). An
	// error refuses the config: Weir reports it and does not start.
	Init func(config []byte) error
	// Filter, if set, keeps a record by returning true and drops it by
	// returning false.
	Filter func(r *flow.Record) bool
	// Enrich, if set, modifies a record in place; it runs on the records
	// Filter keeps. Replace an Extra value rather than mutating its bytes.
	// r and its Extra values are valid during the call only: the batch's
	// buffer is reused afterwards, so copy what you keep.
	Enrich func(r *flow.Record)
	// Reads lists the typed fields the callbacks read; Weir encodes only
	// those, which makes a batch cheaper to send. Fields outside Reads look
	// absent. nil means every field, Extra IEs and the exporter address.
	Reads []flow.FieldID
	// ReadsExtra and ReadsExporter add Record.Extra and Record.Exporter /
	// ObservationDomainID to a non-nil Reads.
	ReadsExtra, ReadsExporter bool
}

// kind returns the ABI kind of p.
func (p *Plugin) kind() (abi.Kind, error) {
	switch {
	case p.Filter != nil && p.Enrich != nil:
		return abi.KindProcessor, nil
	case p.Filter != nil:
		return abi.KindFilter, nil
	case p.Enrich != nil:
		return abi.KindEnricher, nil
	}
	return 0, errors.New("weir rpc plugin: set Filter, Enrich or both")
}

func (p *Plugin) reads() abi.Mask {
	if p.Reads == nil {
		return abi.All
	}
	var flags uint32
	if p.ReadsExtra {
		flags |= abi.FlagExtra
	}
	if p.ReadsExporter {
		flags |= abi.FlagExporter
	}
	return abi.MaskOf(flags, p.Reads...)
}

// Serve runs p as a Weir plugin: it completes the handshake with Weir, then
// serves batches until Weir stops it or dies, and exits the process. Run
// by hand, without Weir, it prints a notice and exits with status 1.
func Serve(p Plugin) {
	srv, err := NewServer(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go watchParent(os.Getppid(), time.Second)
	if os.Getenv("GOGC") == "" {
		// Each batch allocates its buffers afresh (gRPC's messages) while
		// a plugin's live heap is small: fewer collections save CPU for
		// little memory. GOGC in the environment still wins.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// The plugin shares the machine with Weir, which runs the rest of
		// the pipeline and half of each batch's transport: with every CPU
		// its scheduler spins on cores Weir needs. On 2 cores one P took
		// 0.8-0.87 of the time of two (BenchmarkPluginProcs in
		// core/rpchost). GOMAXPROCS in the environment, or the stage's
		// env:, still wins.
		runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)/2))
	}
	stop := startProfile(os.Getenv(EnvCPUProfile))
	serve(srv)
	stop()
	os.Exit(0)
}

// startProfile starts a CPU profile to path ("" for none) and returns the
// function that writes it.
func startProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	// Several plugin processes may run at once (restarts, several rpc
	// stages): %p keeps their profiles apart.
	path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// EnvCPUProfile names an environment variable: when set (in Weir's
// environment, which the plugin inherits), the plugin writes a CPU profile
// of its life to that path, flushed when Weir stops it. A "%p" in the path
// is replaced by the plugin's process ID.
const EnvCPUProfile = "WEIR_RPC_CPUPROFILE"

// serve runs go-plugin's server until the host closes the connection.
func serve(srv rpcwire.Server) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: rpcwire.Handshake(),
		Plugins:         goplugin.PluginSet{rpcwire.PluginName: &rpcwire.Plugin{Impl: srv}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, rpcwire.ServerOptions()...)...)
		},
	})
}

// watchParent exits when the process's parent changes, i.e. Weir died and
// the plugin was re-parented. Weir also asks the kernel to kill the plugin
// when it dies (Linux); this covers the other systems and the cases the
// kernel misses.
func watchParent(ppid int, every time.Duration) {
	if ppid <= 1 {
		return // started by init: nothing to watch
	}
	for range time.Tick(every) {
		if os.Getppid() != ppid {
			os.Exit(2)
		}
	}
}

// stderr is the process's stderr before go-plugin redirects os.Stderr into
// its stdio stream; go-plugin parses JSON lines written here as log
// entries.
var stderr = os.Stderr

// Logger returns a logger whose records reach Weir's log, under the
// plugin's name and at their level. It writes JSON lines in hclog's format
// to the plugin's stderr, which go-plugin forwards to Weir.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				// hclog's timestamp layout, which go-plugin parses.
				a.Key = "@timestamp"
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.Format("2006-01-02T15:04:05.000000Z07:00"))
				}
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

// Path resolves a path from the plugin's config the way Weir resolves its
// own: a relative path against the directory of Weir's config file if the
// file exists there, else as given (the working directory, which the
// plugin shares with Weir).
func Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if base := os.Getenv("WEIR_BASE_DIR"); base != "" {
		if q := filepath.Join(base, p); exists(q) {
			return q
		}
	}
	return p
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// server implements rpcwire.Server for a Plugin.
type server struct {
	p       Plugin
	kind    abi.Kind
	mask    abi.Mask
	scratch sync.Pool // *scratch
	answers sync.Pool // *[]byte answer buffers, back from gRPC (Release)
}

// scratch is one goroutine's working set for a batch.
type scratch struct {
	dec     abi.Decoder
	strings abi.Strings       // interned strings of packed batches
	layout  *abi.PackedLayout // of the last packed batch
	rec     flow.Record       // what the callbacks get
	before  flow.Record       // the record as decoded, for the diff
	// beforeLayout is the layout whose records before receives (fields
	// outside its mask stay zero); nil when before holds whole records.
	beforeLayout *abi.PackedLayout
	extra        []flow.Field
	answer       abi.CompactWriter
	verdicts     abi.Verdicts
}

// batch is a decoded batch buffer: plain ABI or packed.
type batch struct {
	plain  *abi.View
	packed *abi.Packed
}

func (b *batch) len() int {
	if b.packed != nil {
		return b.packed.Len()
	}
	return b.plain.Len()
}

// NewServer returns the rpcwire.Server that Serve serves for p, for tests and
// for authors who wrap it (logging, metrics).
func NewServer(p Plugin) (rpcwire.Server, error) {
	kind, err := p.kind()
	if err != nil {
		return nil, err
	}
	return &server{
		p:       p,
		kind:    kind,
		mask:    p.reads(),
		scratch: sync.Pool{New: func() any { return new(scratch) }},
	}, nil
}

// Init decodes the host's InitRequest, calls p.Init and returns the ABI
// manifest. A rejected config is a manifest with StatusError, not a gRPC
// error, so the host reports the plugin's own message.
func (s *server) Init(_ context.Context, raw []byte) (out []byte, err error) {
	m := abi.Manifest{Version: abi.Version, Kind: s.kind, Reads: s.mask}
	var req rpcwire.InitRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		m.Status, m.Message = abi.StatusError, fmt.Sprintf("init request: %v", err)
		return m.Append(nil), nil
	}
	if req.ABI < abi.MinVersion {
		m.Status, m.Message = abi.StatusError, fmt.Sprintf("host speaks abi version %d; this plugin needs %d to %d", req.ABI, abi.MinVersion, abi.Version)
		return m.Append(nil), nil
	}
	if s.p.Init != nil {
		cfg := []byte(req.Config)
		if len(cfg) == 0 {
			cfg = []byte("null")
		}
		defer func() {
			if v := recover(); v != nil {
				m.Status, m.Message = abi.StatusPanic, fmt.Sprintf("init panicked: %v", v)
				out, err = m.Append(nil), nil
			}
		}()
		if err := s.p.Init(cfg); err != nil {
			m.Status, m.Message = abi.StatusError, err.Error()
		}
	}
	return m.Append(nil), nil
}

// Process runs the callbacks over one batch buffer and returns the answer.
// A buffer that does not decode is a gRPC error (the host counts it as a
// plugin error); a panic is a StatusPanic answer.
func (s *server) Process(_ context.Context, buf []byte) ([]byte, error) {
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	var b batch
	if len(buf) >= 4 && binary.LittleEndian.Uint32(buf) == abi.MagicPacked {
		// Decoded straight from the packed bytes.
		p, err := abi.ParsePacked(buf, sc.layout)
		if err != nil {
			return nil, fmt.Errorf("batch: %w", err)
		}
		sc.layout = p.Layout()
		b.packed = &p
	} else {
		v, err := abi.ParseBatch(buf)
		if err != nil {
			return nil, fmt.Errorf("batch: %w", err)
		}
		b.plain = &v
	}
	// A buffer of the pool: gRPC writes it after Process returns and
	// hands it back through Release.
	return s.run(sc, &b, s.answerBuffer())
}

func (s *server) answerBuffer() []byte {
	if bp, ok := s.answers.Get().(*[]byte); ok {
		return (*bp)[:0]
	}
	return make([]byte, 0, 16<<10)
}

// Release takes back an answer of Process once gRPC has written it.
func (s *server) Release(out []byte) {
	out = out[:0]
	s.answers.Put(&out)
}

// run runs the callbacks over the batch and appends the compact answer to
// out.
func (s *server) run(sc *scratch, v *batch, out []byte) (ans []byte, err error) {
	n := v.len()
	defer func() {
		if p := recover(); p != nil {
			ans = abi.CompactError(abi.StatusPanic, fmt.Sprintf("panic: %v\n%s", p, debug.Stack()))
			err = nil
		}
	}()
	sc.answer.Reset()
	sc.verdicts = sc.verdicts.KeepAll(n)
	copyExtra := s.mask.Flags&abi.FlagExtra != 0
	r, before := &sc.rec, &sc.before
	switch {
	case v.packed == nil:
		sc.beforeLayout = nil // before gets whole records
	case sc.beforeLayout != v.packed.Layout():
		// before receives only the fields of the layout's mask: the rest
		// stays zero from here on. Its Extra must not share sc.extra's
		// array, which a plain batch may have left it.
		*before = flow.Record{}
		sc.beforeLayout = v.packed.Layout()
	}
	for i := 0; i < n; i++ {
		if v.packed != nil {
			// One copy gives Enrich the record and keeps it as it was;
			// Extra gets a backing array of its own, which Enrich may edit.
			err = v.packed.Record(i, before, &sc.strings)
			*r = *before
			sc.extra = append(sc.extra[:0], before.Extra...)
			r.Extra = sc.extra
		} else {
			r.Reset()
			err = sc.dec.Record(v.plain, i, r)
		}
		if err != nil {
			return nil, fmt.Errorf("batch: %w", err)
		}
		if s.p.Filter != nil && !s.p.Filter(r) {
			sc.verdicts.Set(i, false)
			continue
		}
		if s.p.Enrich == nil {
			continue
		}
		pb := before.Present // a packed record has the bit of each string it holds
		if v.packed == nil {
			*before = *r
			if copyExtra {
				// Enrich may append to or edit r.Extra; diff needs the
				// original.
				sc.extra = append(sc.extra[:0], r.Extra...)
				before.Extra = sc.extra
			}
			pb = before.PresentSet()
		}
		s.p.Enrich(r)
		sc.answer.Diff(i, before, r, pb)
	}
	return sc.answer.Append(out, abi.StatusOK, n, sc.verdicts, ""), nil
}

var (
	_ rpcwire.Server   = (*server)(nil)
	_ rpcwire.Releaser = (*server)(nil)
)
