package rpchost

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/rpcwire"
)

// ID is the plugin's registry ID.
const ID = "rpc"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "run a filter or enricher out of process (hashicorp/go-plugin over gRPC)",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Reasons label weir_rpc_errors_total and the engine's
// weir_stage_records_errored_total: why the plugin failed on a batch. They
// are core/plugin's, shared with every other processor.
const (
	ReasonTimeout     = plugin.ReasonTimeout     // no answer within timeout; plugin restarted
	ReasonCrash       = plugin.ReasonCrash       // the process died, the connection broke or the SDK recovered a panic; plugin restarted
	ReasonGarbage     = plugin.ReasonBadAnswer   // the answer did not decode; plugin restarted
	ReasonPluginError = plugin.ReasonPluginError // the plugin returned an error for the batch
	ReasonUnavailable = plugin.ReasonUnavailable // no plugin process was running (restart pending)
	// ReasonAborted: the call was cut short by a restart another batch
	// caused; counted as unavailable.
	ReasonAborted = plugin.ReasonUnavailable
)

// Errors returned by Process, matched with errors.Is. Process returns them
// wrapped in a *BatchError inside a *plugin.Error, with b unchanged; the
// engine applies on_error.
var (
	ErrUnavailable = errors.New("plugin not running")
	ErrTimeout     = errors.New("plugin timed out")
	ErrCrashed     = errors.New("plugin process failed")
	ErrGarbage     = errors.New("plugin answered garbage")
	ErrPlugin      = errors.New("plugin error")
)

// BatchError reports a batch the plugin failed on.
type BatchError struct {
	Cmd     string // plugin binary
	Reason  string // one of the Reason constants
	Records int    // records in the batch
	Err     error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("rpc plugin %s: batch of %d records: %s: %v", e.Cmd, e.Records, e.Reason, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

// Processor runs batches through one out-of-process plugin. It keeps the
// plugin running, restarting it with back-off after a crash, a timeout or
// a garbage answer. Process is safe for concurrent use: up to in_flight
// calls are out at once.
//
// # Notes
//   - Process mutates the batch (the plugin's updates and verdicts) and
//     keeps no reference to it after returning.
//   - Records dropped by the plugin's verdicts are the engine's filtered
//     drops; records of failed batches follow on_error.
type Processor struct {
	cfg    Config
	log    *slog.Logger
	launch *launcher
	sem    chan struct{}
	m      metrics

	mu      sync.Mutex
	cur     *instance     // serving plugin, nil while down
	changed chan struct{} // closed and replaced when cur changes
	failed  chan struct{} // signals the supervisor that cur failed (capacity 1)

	bufs    sync.Pool // *[]byte batch buffers
	scratch sync.Pool // *abi.Scratch

	restartAt atomic.Int64 // unix ns of the next start attempt; 0 when none is pending
	// startFailing is set while restart attempts fail: batches then go
	// through on_error at once instead of each waiting for the next
	// attempt (which, with restart_backoff.max within timeout, is always
	// due before the batch's deadline).
	startFailing atomic.Bool
	stopping     atomic.Bool

	started bool
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type metrics struct {
	errors     *prometheus.CounterVec
	restarts   prometheus.Counter
	startFails prometheus.Counter
	up         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_rpc_errors_total",
			Help: "Batches the rpc plugin failed on, by reason; they went through on_error.",
		}, []string{"reason"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_rpc_restarts_total",
			Help: "Times the rpc plugin process was restarted after a failure.",
		}),
		startFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_rpc_start_errors_total",
			Help: "Attempts to start the rpc plugin process that failed.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "weir_rpc_up",
			Help: "1 while an rpc plugin process is serving, else 0.",
		}),
	}
	for _, r := range []string{ReasonTimeout, ReasonCrash, ReasonGarbage, ReasonPluginError, ReasonUnavailable} {
		m.errors.WithLabelValues(r) // export zeros
	}
	for _, c := range []prometheus.Collector{m.errors, m.restarts, m.startFails, m.up} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// New builds the processor from a validated config. It resolves the binary
// (set.BaseDir, then the working directory) but starts nothing.
func New(cfg *Config, set plugin.Settings) (*Processor, error) {
	log := set.Logger
	name := set.Name
	if name == "" {
		name = ID
	}
	l, err := newLauncher(cfg, set.BaseDir, name, log)
	if err != nil {
		return nil, err
	}
	reg := set.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Processor{
		cfg:     *cfg,
		log:     l.log,
		launch:  l,
		sem:     make(chan struct{}, cfg.InFlight),
		m:       m,
		changed: make(chan struct{}),
		failed:  make(chan struct{}, 1),
		scratch: sync.Pool{New: func() any { return new(abi.Scratch) }},
	}, nil
}

// Start launches the plugin and returns once it has answered Init, or with
// the start-up error (missing binary, checksum mismatch, handshake or Init
// failure) within start_timeout.
func (p *Processor) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.started || p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.started = true
	// The supervisor outlives Start's ctx; Shutdown cancels it.
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	p.mu.Unlock()

	inst, err := p.launch.start(ctx)
	if err != nil {
		p.cancel()
		return err
	}
	p.setCurrent(inst)
	p.wg.Add(1)
	go p.supervise(inst)
	return nil
}

// setCurrent publishes inst (nil while down) to Process.
func (p *Processor) setCurrent(inst *instance) {
	p.mu.Lock()
	p.cur = inst
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	if inst != nil {
		p.m.up.Set(1)
	} else {
		p.m.up.Set(0)
	}
}

func (p *Processor) current() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// supervise restarts the plugin whenever it fails, until Shutdown.
func (p *Processor) supervise(inst *instance) {
	defer p.wg.Done()
	backoff := p.cfg.RestartBackoff.Initial
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.failed:
			if !inst.failed.Load() {
				continue // a stale signal about an earlier instance
			}
		case <-inst.rpc.Done():
			// Exited on its own: a crash, even between batches.
			if inst.failed.CompareAndSwap(false, true) {
				p.log.Warn("rpc plugin exited", "pid", inst.pid)
			}
		case <-inst.stream.Done():
			// The batch stream ended while the process runs: it cannot
			// take batches any more.
			if inst.failed.CompareAndSwap(false, true) {
				p.log.Warn("rpc plugin ended its batch stream", "pid", inst.pid, "err", inst.stream.Err())
			}
		}
		if inst.healthy.Load() {
			backoff = p.cfg.RestartBackoff.Initial
		}
		// Publish the restart before the instance goes, so Process knows
		// to wait for it.
		p.restartAt.Store(time.Now().Add(backoff).UnixNano())
		p.setCurrent(nil)
		inst.kill()
		// Restart with back-off until a start succeeds or Shutdown.
		for {
			p.restartAt.Store(time.Now().Add(backoff).UnixNano())
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff):
			}
			next, err := p.launch.start(p.ctx)
			backoff = min(2*backoff, p.cfg.RestartBackoff.Max)
			if err == nil && p.ctx.Err() != nil {
				next.kill() // Shutdown began while it started
				return
			}
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				p.m.startFails.Inc()
				p.log.Error("restart rpc plugin", "err", err, "retry_in", backoff)
				p.startFailing.Store(true)
				p.setCurrent(nil) // wake the batches waiting for this attempt
				continue
			}
			p.m.restarts.Inc()
			p.log.Info("rpc plugin restarted", "pid", next.pid)
			inst = next
			p.restartAt.Store(0)
			p.startFailing.Store(false)
			p.setCurrent(inst)
			break
		}
	}
}

// fail marks inst failed and wakes the supervisor to restart it. byHost
// says the host decided to kill it (timeout, garbage, panic), as opposed to
// the process having died.
func (p *Processor) fail(inst *instance, byHost bool) {
	if byHost {
		inst.killedByHost.Store(true)
	}
	if inst.failed.CompareAndSwap(false, true) {
		// Until the supervisor sets the real time, a restart is imminent.
		p.restartAt.CompareAndSwap(0, time.Now().UnixNano())
		select {
		case p.failed <- struct{}{}:
		default:
		}
	}
}

// Process sends b to the plugin and applies its verdicts and updates. On
// failure b is unchanged and Process returns a *plugin.Error wrapping a
// *BatchError; the engine applies on_error. Process never waits longer than timeout for the plugin, plus the
// wait for an in_flight slot, which ctx bounds.
func (p *Processor) Process(ctx context.Context, b *flow.Batch) error {
	n := b.Len()
	if n == 0 {
		return nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()

	deadline := time.Now().Add(p.cfg.Timeout)
	inst, err := p.ready(ctx, deadline)
	if err != nil {
		return err
	}
	if inst == nil {
		return p.onError(b, ReasonUnavailable, ErrUnavailable)
	}
	// The buffer goes back to the pool only after an answer: until then
	// gRPC may still be sending it.
	bp := p.buffer()
	buf := (*bp)[:rpcwire.FrameHeadroom]
	buf = inst.layout.Append(buf, b)
	*bp = buf

	cctx, cancel := context.WithDeadline(ctx, deadline)
	reply, err := inst.stream.Call(cctx, buf)
	timedOut := cctx.Err() == context.DeadlineExceeded
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			// The engine gave up on the batch; the plugin is not at fault.
			return ctx.Err()
		}
		reason, cause := p.classify(inst, err, timedOut)
		return p.onError(b, reason, cause)
	}
	p.bufs.Put(bp)
	sc := p.scratch.Get().(*abi.Scratch)
	defer p.scratch.Put(sc)
	// One pass checks the answer, a second applies it; on error b is
	// unchanged. Nothing of b points into the answer afterwards.
	_, err = abi.Apply(b, reply.Data, sc)
	reply.Release()
	if err != nil {
		var perr *abi.PluginError
		if errors.As(err, &perr) {
			if perr.Status == abi.StatusPanic {
				// The SDK recovered a panic: the plugin's state is suspect.
				p.fail(inst, true)
				return p.onError(b, ReasonCrash, fmt.Errorf("%w: panic: %s", ErrCrashed, perr.Message))
			}
			return p.onError(b, ReasonPluginError, fmt.Errorf("%w: %w", ErrPlugin, perr))
		}
		p.fail(inst, true)
		return p.onError(b, ReasonGarbage, fmt.Errorf("%w: %w", ErrGarbage, err))
	}
	if !inst.healthy.Load() {
		inst.healthy.Store(true)
	}
	return nil
}

// ready returns the serving plugin. While a restart is under way and due
// before deadline, it waits for it, so a brief restart costs latency rather
// than a batch through on_error; otherwise it returns nil at once.
func (p *Processor) ready(ctx context.Context, deadline time.Time) (*instance, error) {
	for {
		p.mu.Lock()
		cur, changed := p.cur, p.changed
		p.mu.Unlock()
		if cur != nil && !cur.failed.Load() {
			return cur, nil
		}
		due := p.restartAt.Load()
		if p.stopping.Load() || p.startFailing.Load() || due == 0 || time.Unix(0, due).After(deadline) {
			return nil, nil
		}
		wait := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
			wait.Stop()
		case <-wait.C:
			return nil, nil
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		}
	}
}

// classify maps a failed call to a reason and marks inst for restart: a
// call fails when its batch times out or when the batch stream ended (the
// process died, the connection broke, or the host killed it).
func (p *Processor) classify(inst *instance, err error, timedOut bool) (string, error) {
	if inst.killedByHost.Load() {
		return ReasonAborted, fmt.Errorf("%w: restarting after another failure: %w", ErrCrashed, err)
	}
	if timedOut {
		p.fail(inst, true)
		return ReasonTimeout, fmt.Errorf("%w: no answer within %s", ErrTimeout, p.cfg.Timeout)
	}
	p.fail(inst, false)
	return ReasonCrash, fmt.Errorf("%w: %w", ErrCrashed, err)
}

// onError counts a failed batch and returns its typed error; b is
// unchanged. The engine logs it and applies on_error.
func (p *Processor) onError(b *flow.Batch, reason string, err error) error {
	p.m.errors.WithLabelValues(reason).Inc()
	return plugin.Fail(reason, &BatchError{Cmd: p.launch.path, Reason: reason, Records: b.Len(), Err: err})
}

func (p *Processor) buffer() *[]byte {
	if bp, ok := p.bufs.Get().(*[]byte); ok {
		return bp
	}
	buf := make([]byte, 0, 64<<10)
	return &buf
}

// PID returns the process ID of the serving plugin, or 0 while none is.
func (p *Processor) PID() int {
	if inst := p.current(); inst != nil {
		return inst.pid
	}
	return 0
}

// WaitReady waits until a plugin process is serving or ctx ends.
func (p *Processor) WaitReady(ctx context.Context) error {
	for {
		p.mu.Lock()
		cur, ch := p.cur, p.changed
		p.mu.Unlock()
		if cur != nil && !cur.failed.Load() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// InFlight returns in_flight, the most batches Process has in the plugin
// at once; the engine's default worker count reaches it
// ([plugin.Concurrent]).
func (p *Processor) InFlight() int { return p.cfg.InFlight }

// Shutdown stops the supervisor and the plugin process: it asks the plugin
// to exit, then kills it when ctx ends. Batches still in flight fail
// through on_error. It is idempotent and safe without Start.
func (p *Processor) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.stopped || !p.started {
		p.stopped = true
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.mu.Unlock()
	p.stopping.Store(true)
	p.cancel()
	// A restart in progress ends within start_timeout; don't wait past ctx.
	if err := plugin.AwaitShutdown(ctx, &p.wg, nil); err != nil {
		return fmt.Errorf("stop rpc plugin %s: restart still in progress: %w", p.launch.path, err)
	}
	inst := p.current()
	p.setCurrent(nil)
	if inst == nil {
		return nil
	}
	// Calls still out fail as aborted, not as crashes.
	inst.killedByHost.Store(true)
	if err := inst.stop(ctx); err != nil {
		return fmt.Errorf("stop rpc plugin %s: %w", p.launch.path, err)
	}
	return nil
}

var _ plugin.Processor = (*Processor)(nil)
var _ plugin.Concurrent = (*Processor)(nil)
