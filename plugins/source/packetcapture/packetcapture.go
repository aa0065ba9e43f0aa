package packetcapture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/bpf"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "source.packetcapture"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "captures one conversation (one or both directions) to pcapng and summarises it as flow records",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// End reasons of a capture, as logged and reported by [Source.Status].
const (
	EndPackets  = "packets"  // the packet limit was reached
	EndBytes    = "bytes"    // the byte limit was reached
	EndDuration = "duration" // the duration elapsed
	EndShutdown = "shutdown" // the pipeline stopped first
	EndError    = "error"    // reading or writing failed
)

// Status is a capture's progress.
type Status struct {
	Packets uint64   // packets written to the files
	Bytes   uint64   // their original lengths, in bytes
	Files   []string // files kept, oldest first
	Done    bool     // the capture has ended and its records were emitted
	Reason  string   // why it ended (End*), "" while running
}

// Source is the source.packetcapture plugin. Create it with [New].
type Source struct {
	cfg        Config
	set        plugin.Settings
	log        *slog.Logger
	spec       spec
	path       string
	expression string
	linkType   layers.LinkType
	snap       int
	prog       []bpf.RawInstruction
	vm         *bpf.VM

	mu       sync.Mutex
	started  bool
	stopped  bool
	status   Status
	done     chan struct{}
	doneOnce sync.Once
	wg       sync.WaitGroup

	runCtx     context.Context // cancelled by Shutdown: stop capturing
	runCancel  context.CancelFunc
	emitCtx    context.Context // cancelled only if Shutdown's ctx ends
	emitCancel context.CancelFunc

	packets, bytes, kernelDrops, late, unsummarised, records, lost, files atomic.Uint64
	running, finished                                                     atomic.Bool
}

// New checks the interface, builds the filter from the spec and compiles it
// with libpcap; the capture opens in Start.
func New(cfg *Config, set plugin.Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := *cfg
	if c.SnapLength == 0 {
		c.SnapLength = DefaultSnapLength
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultConfig().MaxFlows
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if set.Metrics == nil {
		set.Metrics = prometheus.NewRegistry()
	}
	sp, _ := c.Flow.spec() // validated above
	s := &Source{cfg: c, set: set, log: set.Logger, spec: sp, snap: c.SnapLength, done: make(chan struct{})}
	s.expression = sp.expression(c.Direction)
	s.path = c.Path
	if !filepath.IsAbs(s.path) && set.BaseDir != "" {
		s.path = filepath.Join(set.BaseDir, s.path)
	}
	lt, err := linkTypeOf(c.Interface)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	s.linkType = lt
	if s.prog, err = compileFilter(compileLinkType(lt), s.snap, s.expression); err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	insns, ok := bpf.Disassemble(s.prog)
	if !ok {
		return nil, fmt.Errorf("%s: libpcap's program for %q has instructions Weir cannot check in user space", ID, s.expression)
	}
	if s.vm, err = bpf.NewVM(insns); err != nil {
		return nil, fmt.Errorf("%s: filter program: %w", ID, err)
	}
	s.log.Debug("capture filter", "interface", c.Interface, "expression", s.expression, "bpf", formatProgram(insns))
	s.runCtx, s.runCancel = context.WithCancel(context.Background())
	s.emitCtx, s.emitCancel = context.WithCancel(context.Background())
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	return s, nil
}

// formatProgram prints a BPF program one instruction a line, like
// `tcpdump -d`.
func formatProgram(insns []bpf.Instruction) string {
	var b strings.Builder
	for i, in := range insns {
		fmt.Fprintf(&b, "(%03d) %v\n", i, in)
	}
	return b.String()
}

// Expression is the libpcap filter expression built from the spec.
func (s *Source) Expression() string { return s.expression }

// Program is the compiled BPF program attached to the socket.
func (s *Source) Program() []bpf.RawInstruction { return append([]bpf.RawInstruction(nil), s.prog...) }

// Done is closed when the capture has ended and its flow records were
// emitted, or after Shutdown.
func (s *Source) Done() <-chan struct{} { return s.done }

// Status returns the capture's progress.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Files = append([]string(nil), st.Files...)
	st.Packets, st.Bytes = s.packets.Load(), s.bytes.Load()
	return st
}

// Start opens the capture socket (in the caller's network namespace), the
// first file, and starts capturing.
func (s *Source) Start(_ context.Context, out plugin.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if s.started {
		return fmt.Errorf("%s: started twice", ID)
	}
	h, err := openHandle(s.cfg.Interface, s.linkType, s.snap, s.prog)
	if err != nil {
		return fmt.Errorf("%s: %w", ID, err)
	}
	w, err := newFileWriter(s.path, s.cfg.Rotation, pcapgo.NgInterface{
		Name: s.cfg.Interface, LinkType: s.linkType, SnapLength: uint32(s.snap), Filter: s.expression,
		TimestampResolution: 9, OS: "linux",
	})
	if err != nil {
		h.close()
		return fmt.Errorf("%s: path %q: %w", ID, s.path, err)
	}
	s.started = true
	s.status.Files = w.files()
	s.files.Store(1)
	s.running.Store(true)
	s.log.Info("capture started", "interface", s.cfg.Interface, "filter", s.expression, "path", w.current(),
		"direction", s.cfg.Direction, "packets", s.cfg.Packets, "bytes", int64(s.cfg.Bytes), "duration", s.cfg.Duration)
	s.wg.Add(1)
	go s.run(h, w, out)
	return nil
}

func (s *Source) run(h *handle, w *fileWriter, out plugin.Emitter) {
	defer s.wg.Done()
	defer s.closeDone()
	table := newFlowTable(s.spec, s.cfg.Direction == Both && s.cfg.Records == RecordsBiflow, s.cfg.MaxFlows)
	reason := s.capture(h, w, table)
	received, dropped := h.stats()
	h.close()
	s.kernelDrops.Store(dropped)
	if err := w.ng.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{
		LastUpdate: time.Now(), PacketsReceived: received, PacketsDropped: dropped,
	}); err != nil {
		s.log.Warn("write interface statistics", "err", err)
	}
	if err := w.closeFile(); err != nil {
		s.log.Error("close capture file", "err", err)
		reason = EndError
	}
	s.running.Store(false)
	s.mu.Lock()
	s.status.Files, s.status.Reason = w.files(), reason
	s.mu.Unlock()
	s.log.Info("capture ended", "reason", reason, "packets", s.packets.Load(), "bytes", s.bytes.Load(),
		"files", w.files(), "kernel_drops", dropped, "flows", len(table.entries))
	s.emit(table, out)
	s.mu.Lock()
	s.status.Done = true
	s.mu.Unlock()
	s.finished.Store(true)
}

// capture reads packets until a limit is reached or Shutdown; it returns
// why it stopped.
func (s *Source) capture(h *handle, w *fileWriter, table *flowTable) string {
	var deadline time.Time
	if s.cfg.Duration > 0 {
		deadline = time.Now().Add(s.cfg.Duration)
	}
	ps := parser{lt: s.linkType}
	var info packetInfo
	for {
		if s.runCtx.Err() != nil {
			return EndShutdown
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return EndDuration
		}
		data, ci, err := h.read()
		if errors.Is(err, errTimeout) {
			continue
		}
		if err != nil {
			s.log.Error("read packet", "interface", s.cfg.Interface, "err", err)
			return EndError
		}
		if !deadline.IsZero() && ci.Timestamp.After(deadline) {
			return EndDuration
		}
		// The kernel filter is attached after the socket binds: a packet that
		// arrived in between is checked again here.
		if n, err := s.vm.Run(data); err != nil || n == 0 {
			s.late.Add(1)
			continue
		}
		if len(data) > s.snap {
			data = data[:s.snap]
		}
		ci.CaptureLength = len(data)
		if rotated, err := w.write(ci, data); err != nil {
			s.log.Error("write packet", "err", err)
			return EndError
		} else if rotated {
			s.files.Add(1)
			s.mu.Lock()
			s.status.Files = w.files()
			s.mu.Unlock()
			s.log.Info("capture file rotated", "path", w.current())
		}
		n := s.packets.Add(1)
		b := s.bytes.Add(uint64(ci.Length))
		switch {
		case s.cfg.Records == RecordsNone:
		case ps.parse(data, &info):
			table.add(ci.Timestamp, &info)
		default:
			s.unsummarised.Add(1)
		}
		switch {
		case s.cfg.Packets > 0 && n >= s.cfg.Packets:
			return EndPackets
		case s.cfg.Bytes > 0 && b >= uint64(s.cfg.Bytes):
			return EndBytes
		}
	}
}

// emit sends the flow records of the capture into the pipeline.
func (s *Source) emit(table *flowTable, out plugin.Emitter) {
	size := out.BatchSize()
	if size <= 0 {
		size = flow.DefaultBatchSize
	}
	b := out.NewBatch()
	flush := func() {
		if b.Len() == 0 {
			return
		}
		n := b.Len()
		if err := out.Emit(s.emitCtx, b); err != nil {
			s.lost.Add(uint64(n))
			s.log.Error("emit flow records", "records", n, "err", err)
		} else {
			s.records.Add(uint64(n))
		}
		b = out.NewBatch()
	}
	table.records(func(fill func(*flow.Record, *flow.Batch)) {
		fill(b.Append(), b)
		if b.Len() >= size {
			flush()
		}
	})
	flush()
	if table.full > 0 {
		s.log.Warn("flow table full: packets written but not summarised", "packets", table.full, "max_flows", s.cfg.MaxFlows)
		s.unsummarised.Add(table.full)
	}
}

func (s *Source) closeDone() { s.doneOnce.Do(func() { close(s.done) }) }

// Shutdown stops the capture, closes the file, emits the flow records and
// waits. If ctx ends while the pipeline refuses records, they are counted
// as lost and ctx's error returned.
func (s *Source) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	s.runCancel()
	if !started {
		s.closeDone()
		s.emitCancel()
		return nil
	}
	var err error
	if werr := plugin.AwaitShutdown(ctx, &s.wg, s.emitCancel); werr != nil {
		err = fmt.Errorf("%s: shutdown: %w", ID, werr)
	}
	s.emitCancel()
	return err
}

func (s *Source) registerMetrics() error {
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "weir_source_packetcapture_" + name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weir_source_packetcapture_" + name, Help: help}, f)
	}
	boolean := func(v *atomic.Bool) func() float64 {
		return func() float64 {
			if v.Load() {
				return 1
			}
			return 0
		}
	}
	cs := []prometheus.Collector{
		counter("packets_total", "Packets captured and written.", &s.packets),
		counter("bytes_total", "Original length of the packets captured, in bytes.", &s.bytes),
		counter("kernel_dropped_packets_total", "Packets that passed the filter but found no room in the capture ring (set when the capture ends).", &s.kernelDrops),
		counter("late_filtered_packets_total", "Packets that reached the socket before its filter was attached and failed the filter.", &s.late),
		counter("unsummarised_packets_total", "Packets written but not in a flow record: not IP, or the flow table was full.", &s.unsummarised),
		counter("files_total", "Capture files opened (1 + rotations).", &s.files),
		counter("records_total", "Flow records emitted.", &s.records),
		counter("emit_lost_records_total", "Flow records the pipeline did not accept (shutdown deadline passed).", &s.lost),
		gauge("running", "1 while the capture runs.", boolean(&s.running)),
		gauge("done", "1 once the capture has ended and its records were emitted.", boolean(&s.finished)),
		&fileCollector{s: s, desc: prometheus.NewDesc("weir_source_packetcapture_file_info",
			"The file being written (or last written), by path; always 1.", []string{"path"}, nil)},
	}
	for _, c := range cs {
		if err := s.set.Metrics.Register(c); err != nil {
			return fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return nil
}

// fileCollector exports the current file as an info metric.
type fileCollector struct {
	s    *Source
	desc *prometheus.Desc
}

func (c *fileCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *fileCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	files := c.s.status.Files
	c.s.mu.Unlock()
	if len(files) > 0 {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, files[len(files)-1])
	}
}

var (
	_ plugin.Source = (*Source)(nil)
	_ plugin.Finite = (*Source)(nil)
)
