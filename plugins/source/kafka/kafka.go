package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/kafkawire"
)

// ID is the plugin's registry ID.
const ID = "source.kafka"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "consume export.kafka's topic in a consumer group (franz-go), decode, commit after export",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Source is source.kafka. Create it with [New].
type Source struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	cl      *kgo.Client
	started bool
	stopped bool
	wg      sync.WaitGroup

	pollCtx    context.Context // cancelled when Shutdown begins: no new poll
	pollCancel context.CancelFunc
	emitCtx    context.Context // cancelled if Shutdown's ctx ends first
	emitCancel context.CancelFunc

	dec     *ipfix.Decoder
	abiDec  abi.Decoder
	lastExp time.Time

	messages, records, malformed, fetchErrors atomic.Uint64
	commitErrors, assigned, revoked, lost     atomic.Uint64
	logs                                      plugin.LogLimiter
}

// New checks cfg and registers the metrics; the client is built by Start.
func New(cfg *Config, set plugin.Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: *cfg, log: set.Logger, dec: ipfix.NewDecoder(ipfix.DecoderOptions{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	reg := set.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, c := range []prometheus.Collector{
		counter("weir_source_kafka_messages_total", "Kafka messages consumed.", &s.messages),
		counter("weir_source_kafka_records_total", "Records decoded from consumed messages.", &s.records),
		counter("weir_source_kafka_malformed_messages_total", "Messages that are neither a raw envelope nor a records batch, or hold malformed IPFIX (their good parts are still decoded).", &s.malformed),
		counter("weir_source_kafka_fetch_errors_total", "Fetch errors reported by the client (it retries).", &s.fetchErrors),
		counter("weir_source_kafka_commit_errors_total", "Offset commits that failed (the next one covers them; until then a restart re-reads).", &s.commitErrors),
		counter("weir_source_kafka_partitions_assigned_total", "Partitions assigned to this member by rebalances.", &s.assigned),
		counter("weir_source_kafka_partitions_revoked_total", "Partitions revoked from this member by rebalances.", &s.revoked),
		counter("weir_source_kafka_lost_records_total", "Records the pipeline refused at shutdown after the deadline (not committed: re-read on restart).", &s.lost),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return s, nil
}

// Start joins the group and starts the consumer goroutine.
func (s *Source) Start(_ context.Context, out plugin.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if s.started {
		return fmt.Errorf("%s: started twice", ID)
	}
	start := kgo.NewOffset().AtStart()
	if strings.EqualFold(s.cfg.StartOffset, "latest") {
		start = kgo.NewOffset().AtEnd()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ClientID(s.cfg.ClientID),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.cfg.Topic),
		kgo.ConsumeResetOffset(start),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, s.cfg.SessionTimeout/3)),
		// Commit only what was exported: mark after the pipeline is
		// done with a poll, and let no rebalance happen in between.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(s.cfg.CommitInterval),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			s.assigned.Add(uint64(count(m)))
			s.log.Info("partitions assigned", "topic", s.cfg.Topic, "partitions", m)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			s.revoked.Add(uint64(count(m)))
			s.commit(ctx, cl)
			s.log.Info("partitions revoked", "topic", s.cfg.Topic, "partitions", m)
		}),
		kgo.WithLogger(kgoLogger{s.log}),
	)
	if err != nil {
		return fmt.Errorf("%s: kafka client for %v: %w", ID, s.cfg.Brokers, err)
	}
	s.cl = cl
	s.pollCtx, s.pollCancel = context.WithCancel(context.Background())
	s.emitCtx, s.emitCancel = context.WithCancel(context.Background())
	s.started = true
	s.wg.Add(1)
	go s.run(out)
	return nil
}

func count(m map[string][]int32) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

// Partitions returns how many partitions the member owns now.
func (s *Source) Partitions() int { return int(s.assigned.Load() - s.revoked.Load()) }

// commit commits the marked offsets (everything exported) now.
func (s *Source) commit(ctx context.Context, cl *kgo.Client) {
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		s.commitErrors.Add(1)
		s.log.Warn("commit offsets", "topic", s.cfg.Topic, "group", s.cfg.Group, "err", err)
	}
}

// run polls, decodes into batches, emits them and, once the pipeline is
// done with every batch of the poll, marks the poll's messages for commit
// and allows a rebalance.
func (s *Source) run(out plugin.Emitter) {
	defer s.wg.Done()
	ack, _ := out.(plugin.AckEmitter)
	size := out.BatchSize()
	if size <= 0 {
		size = flow.DefaultBatchSize
	}
	var inFlight sync.WaitGroup
	for {
		fetches := s.cl.PollRecords(s.pollCtx, s.cfg.MaxPollRecords)
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			s.fetchErrors.Add(1)
			s.logf("fetch", "topic", topic, "partition", p, "err", err)
		})
		b := out.NewBatch()
		emit := func() {
			n := b.Len()
			if n == 0 {
				return
			}
			var err error
			if ack != nil {
				inFlight.Add(1)
				if err = ack.EmitAcked(s.emitCtx, b, inFlight.Done); err != nil {
					inFlight.Done()
				}
			} else {
				err = out.Emit(s.emitCtx, b)
			}
			if err != nil {
				s.lost.Add(uint64(n))
				s.logf("emit batch", "records", n, "err", err)
			}
			b = out.NewBatch()
		}
		now := time.Now()
		fetches.EachRecord(func(r *kgo.Record) {
			s.messages.Add(1)
			s.decode(b, r)
			if b.Len() >= size {
				emit()
			}
		})
		emit()
		if b.Len() == 0 {
			_ = out.Emit(s.emitCtx, b) // recycles the empty batch
		}
		if now.Sub(s.lastExp) >= time.Second {
			s.dec.Expire()
			s.lastExp = now
		}
		s.waitExported(&inFlight)
		if s.emitCtx.Err() == nil {
			s.cl.MarkCommitRecords(fetches.Records()...)
		}
		s.cl.AllowRebalance()
		if s.pollCtx.Err() != nil {
			return
		}
	}
}

// waitExported waits until the pipeline is done with every batch of the
// poll — exported, and stored by a database exporter — or the shutdown
// deadline abandons them (they are then not committed: re-read on
// restart). An abandoned wait ends when the exporters settle their
// batches at their own shutdown.
func (s *Source) waitExported(inFlight *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	select {
	case <-done:
	case <-s.emitCtx.Done():
	}
}

// decode appends the records of one Kafka message to b.
func (s *Source) decode(b *flow.Batch, r *kgo.Record) {
	before := b.Len()
	var err error
	switch kafkawire.KindOf(r.Value) {
	case kafkawire.KindRaw:
		var raw kafkawire.Raw
		if raw, err = kafkawire.ParseRaw(r.Value); err != nil {
			break
		}
		if len(raw.Preamble) > 0 {
			if _, perr := s.dec.Decode(b, raw.Preamble, raw.Exporter); perr != nil {
				err = fmt.Errorf("preamble: %w", perr)
			}
		}
		if _, derr := s.dec.Decode(b, raw.Message, raw.Exporter); derr != nil {
			err = errors.Join(err, derr)
		}
	case kafkawire.KindRecords:
		if err = s.abiDec.Decode(r.Value, b); err != nil {
			for b.Len() > before {
				b.Unappend()
			}
		}
	default:
		err = fmt.Errorf("%w: value starts with neither %q nor %q", kafkawire.ErrMalformed, kafkawire.RawMagic, kafkawire.RecordsMagic)
	}
	s.records.Add(uint64(b.Len() - before))
	if err != nil {
		s.malformed.Add(1)
		s.logf("malformed kafka message", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
	}
}

// logf logs at most once a second, with how many lines it suppressed.
func (s *Source) logf(msg string, kv ...any) {
	if suppressed, ok := s.logs.Allow(time.Now()); ok {
		s.log.Warn(msg, append(kv, "suppressed", suppressed)...)
	}
}

// Shutdown stops polling, lets the batches of the current poll be
// exported, commits their offsets and leaves the group, so the partitions
// move to the other members without duplicates. If ctx ends first, what is
// in flight is not committed (it is re-read: the duplicate window) and
// ctx's error is returned. It is idempotent.
func (s *Source) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	s.pollCancel()
	var err error
	if werr := plugin.AwaitShutdown(ctx, &s.wg, s.emitCancel); werr != nil {
		err = fmt.Errorf("%s: shutdown: %w", ID, werr)
	}
	s.emitCancel()
	if err == nil {
		s.commit(ctx, s.cl)
	}
	s.cl.CloseAllowingRebalance()
	s.log.Info("source stopped", "messages", s.messages.Load(), "records", s.records.Load(),
		"malformed_messages", s.malformed.Load(), "commit_errors", s.commitErrors.Load())
	return err
}

// kgoLogger routes franz-go's warnings and errors to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	if level == kgo.LogLevelError {
		k.l.Error("kafka: "+msg, kv...)
		return
	}
	k.l.Warn("kafka: "+msg, kv...)
}

var _ plugin.Source = (*Source)(nil)
