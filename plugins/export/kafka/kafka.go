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
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/kafkawire"
)

// ID is the plugin's registry ID.
const ID = "export.kafka"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "write records or raw IPFIX messages to Kafka (franz-go), keyed by exporter, flow or at random",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

const (
	// metadataMaxAge is how often the topic's partition count is re-read.
	metadataMaxAge = time.Minute
	// carrierIdle forgets an exporter's templates after this long unheard.
	carrierIdle = time.Hour
)

// Drop reasons of weir_export_kafka_dropped_records_total.
const (
	ReasonBufferFull     = "buffer_full"
	ReasonDeliveryFailed = "delivery_failed"
	ReasonTooLarge       = "too_large"
	ReasonNotRaw         = "not_raw"
)

// Exporter is export.kafka. Export is called from one goroutine.
type Exporter struct {
	cfg  Config
	key  kafkawire.Key
	raw  bool
	drop bool
	log  *slog.Logger

	mu      sync.Mutex
	cl      *kgo.Client
	started bool
	stopped bool
	ctx     context.Context // cancelled by Shutdown: unblocks a blocked Produce
	cancel  context.CancelFunc
	// ack is the acknowledgement of the batch ExportAcked is exporting;
	// nil in Export. Used by the exporting goroutine only.
	ack *batchAck

	partitions int
	checked    time.Time
	carrier    *ipfix.TemplateCarrier
	lastExpire time.Time
	enc        abi.Encoder
	groups     [][]*flow.Record
	sub        flow.Batch
	scratch    []byte
	next       uint64 // round robin for key: random

	// out reports deliveries and drops to the engine (plugin.Deferred).
	out plugin.Outcome

	messages, records, bytes atomic.Uint64
	dropped                  *prometheus.CounterVec
	droppedBy                map[string]prometheus.Counter
	logs                     plugin.LogLimiter
}

// New checks cfg and registers the metrics; the client is built by Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := *cfg
	e := &Exporter{cfg: c, log: set.Logger, carrier: ipfix.NewTemplateCarrier(), out: plugin.NopOutcome{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	switch strings.ToLower(c.Key) {
	case "flow":
		e.key = kafkawire.KeyFlow
	case "random":
		e.key = kafkawire.KeyRandom
	default:
		e.key = kafkawire.KeyExporter
	}
	e.raw = strings.EqualFold(c.Payload, "raw")
	e.drop = strings.EqualFold(c.WhenFull, "drop")
	if err := e.registerMetrics(set.Metrics); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Exporter) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_export_kafka_dropped_records_total",
		Help: "Records not delivered to Kafka, by reason: buffer_full (when_full: drop), delivery_failed (retries or delivery_timeout exhausted), too_large, not_raw (payload raw given a decoded record).",
	}, []string{"reason"})
	e.droppedBy = map[string]prometheus.Counter{}
	for _, r := range []string{ReasonBufferFull, ReasonDeliveryFailed, ReasonTooLarge, ReasonNotRaw} {
		e.droppedBy[r] = e.dropped.WithLabelValues(r)
	}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		e.dropped,
		counter("weir_export_kafka_messages_total", "Kafka messages the brokers acknowledged.", &e.messages),
		counter("weir_export_kafka_records_total", "Records (raw payload: IPFIX messages) in acknowledged Kafka messages.", &e.records),
		counter("weir_export_kafka_bytes_total", "Bytes of acknowledged Kafka message values, before compression.", &e.bytes),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weir_export_kafka_buffered_messages",
			Help: "Kafka messages buffered in the producer (waiting, in flight or being retried).",
		}, func() float64 {
			e.mu.Lock()
			cl := e.cl
			e.mu.Unlock()
			if cl == nil {
				return 0
			}
			return float64(cl.BufferedProduceRecords())
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return nil
}

// Start builds the client. It does not wait for the brokers: the first
// Export does.
func (e *Exporter) Start(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if e.started {
		return nil
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(e.cfg.Brokers...),
		kgo.ClientID(e.cfg.ClientID),
		kgo.DefaultProduceTopic(e.cfg.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(e.cfg.Linger),
		kgo.MaxBufferedRecords(e.cfg.MaxBufferedMessages),
		kgo.RecordDeliveryTimeout(e.cfg.DeliveryTimeout),
		kgo.ProducerBatchMaxBytes(int32(e.cfg.MaxMessageBytes)),
		kgo.ProducerBatchCompression(codec(e.cfg.Compression)),
		kgo.WithLogger(kgoLogger{e.log}),
	}
	if strings.EqualFold(e.cfg.Acks, "leader") {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	}
	if !e.cfg.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("%s: kafka client for %v: %w", ID, e.cfg.Brokers, err)
	}
	e.cl = cl
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.started = true
	return nil
}

func codec(name string) kgo.CompressionCodec {
	switch strings.ToLower(name) {
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// SetOutcome implements plugin.Deferred: delivery is asynchronous, so the
// engine counts a record out when the brokers acknowledge its message and
// dropped (by the reasons above) when it finally fails. Call before Start.
func (e *Exporter) SetOutcome(o plugin.Outcome) {
	if o != nil {
		e.out = o
	}
}

// Export produces b's records. It returns once every message is in the
// producer's buffer (blocking while it is full, with when_full: block);
// delivery is asynchronous, and a message that finally fails is counted
// in weir_export_kafka_dropped_records_total.
func (e *Exporter) Export(ctx context.Context, b *flow.Batch) error {
	if e.cl == nil {
		return fmt.Errorf("%s: Export before Start", ID)
	}
	if err := e.refreshPartitions(ctx); err != nil {
		return err
	}
	now := time.Now()
	if now.Sub(e.lastExpire) > time.Minute {
		e.carrier.Expire(now.Add(-carrierIdle))
		e.lastExpire = now
	}
	if e.raw {
		return e.exportRaw(b, now)
	}
	return e.exportRecords(b)
}

// ExportAcked implements plugin.AckExporter: stored runs once the brokers
// acknowledged every message of b, or its records were counted as dropped.
func (e *Exporter) ExportAcked(ctx context.Context, b *flow.Batch, stored func()) error {
	e.ack = &batchAck{stored: stored}
	e.ack.left.Store(1) // Export's own, released below
	ack := e.ack
	err := e.Export(ctx, b)
	e.ack = nil
	ack.done()
	return err
}

// batchAck counts the messages of one batch still waiting for the brokers.
type batchAck struct {
	left   atomic.Int64
	stored func()
}

func (a *batchAck) done() {
	if a.left.Add(-1) == 0 {
		a.stored()
	}
}

func (e *Exporter) exportRaw(b *flow.Batch, now time.Time) error {
	for _, r := range b.Records {
		msg, at, ok := ipfix.Raw(r)
		if !ok {
			e.count(ReasonNotRaw, 1, nil)
			continue
		}
		e.scratch = e.carrier.Preamble(e.scratch[:0], msg, r.Exporter, now)
		value := make([]byte, 0, kafkawire.RawHeaderSize+len(e.scratch)+len(msg))
		value = kafkawire.AppendRaw(value, r.Exporter, at, e.scratch, msg)
		if err := e.produce(e.partition(r), value, 1); err != nil {
			return err
		}
	}
	return nil
}

func (e *Exporter) exportRecords(b *flow.Batch) error {
	n := e.partitions
	if e.key == kafkawire.KeyRandom {
		n = 1 // one group, sent to the next partition in turn
	}
	if cap(e.groups) < n {
		e.groups = make([][]*flow.Record, n)
	}
	e.groups = e.groups[:n]
	for i := range e.groups {
		e.groups[i] = e.groups[i][:0]
	}
	for _, r := range b.Records {
		p := int32(0)
		if e.key != kafkawire.KeyRandom {
			p = e.partition(r)
		}
		e.groups[p] = append(e.groups[p], r)
	}
	for p, g := range e.groups {
		for len(g) > 0 {
			k := min(len(g), e.cfg.RecordsPerMessage)
			e.sub.Records = g[:k]
			value := e.enc.Append(nil, &e.sub, abi.All)
			part := int32(p)
			if e.key == kafkawire.KeyRandom {
				part = int32(e.next % uint64(e.partitions))
				e.next++
			}
			if err := e.produce(part, value, k); err != nil {
				e.sub.Records = nil
				return err
			}
			g = g[k:]
		}
	}
	e.sub.Records = nil
	return nil
}

// partition returns r's partition for keys exporter and flow, and the next
// one in turn for random.
func (e *Exporter) partition(r *flow.Record) int32 {
	switch e.key {
	case kafkawire.KeyFlow:
		return kafkawire.Partition(kafkawire.FlowHash(r), e.partitions)
	case kafkawire.KeyRandom:
		p := int32(e.next % uint64(e.partitions))
		e.next++
		return p
	}
	return kafkawire.Partition(kafkawire.ExporterHash(r), e.partitions)
}

func (e *Exporter) produce(partition int32, value []byte, records int) error {
	rec := &kgo.Record{Topic: e.cfg.Topic, Partition: partition, Value: value}
	ack := e.ack
	if ack != nil {
		ack.left.Add(1)
	}
	promise := func(r *kgo.Record, err error) {
		if ack != nil {
			defer ack.done()
		}
		if err == nil {
			e.messages.Add(1)
			e.records.Add(uint64(records))
			e.bytes.Add(uint64(len(r.Value)))
			e.out.Delivered(records)
			return
		}
		reason := ReasonDeliveryFailed
		switch {
		case errors.Is(err, kgo.ErrMaxBuffered):
			reason = ReasonBufferFull
		case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
			reason = ReasonTooLarge
		}
		e.count(reason, records, err)
	}
	if e.drop {
		e.cl.TryProduce(e.ctx, rec, promise)
		return nil
	}
	e.cl.Produce(e.ctx, rec, promise)
	return nil
}

// count records a drop and logs it at most once a second.
func (e *Exporter) count(reason string, records int, err error) {
	e.droppedBy[reason].Add(float64(records))
	e.out.Dropped(reason, records)
	if suppressed, ok := e.logs.Allow(time.Now()); ok {
		e.log.Warn("records not delivered to kafka", "topic", e.cfg.Topic, "reason", reason, "records", records,
			"err", err, "suppressed", suppressed)
	}
}

// refreshPartitions reads the topic's partition count when unknown or
// older than metadataMaxAge.
func (e *Exporter) refreshPartitions(ctx context.Context) error {
	if e.partitions > 0 && time.Since(e.checked) < metadataMaxAge {
		return nil
	}
	n, err := Partitions(ctx, e.cl, e.cfg.Topic)
	if err != nil {
		if e.partitions > 0 {
			e.log.Warn("re-reading the topic's partition count; keeping the last", "topic", e.cfg.Topic, "partitions", e.partitions, "err", err)
			e.checked = time.Now()
			return nil
		}
		return fmt.Errorf("%s: %w", ID, err)
	}
	if e.partitions != 0 && n != e.partitions {
		e.log.Info("topic partition count changed: keys map to new partitions", "topic", e.cfg.Topic, "from", e.partitions, "to", n)
	}
	e.partitions, e.checked = n, time.Now()
	return nil
}

// Partitions returns how many partitions topic has, asking the brokers.
func Partitions(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	if len(resp.Topics) != 1 {
		return 0, fmt.Errorf("metadata of topic %q: %d topics in the answer", topic, len(resp.Topics))
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		return 0, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	if n := len(resp.Topics[0].Partitions); n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("metadata of topic %q: no partitions", topic)
}

// Shutdown flushes what the producer holds (until ctx ends), then closes
// the client. It is idempotent.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return nil
	}
	e.stopped = true
	cl := e.cl
	e.mu.Unlock()
	if cl == nil {
		return nil
	}
	err := cl.Flush(ctx)
	e.cancel()
	cl.Close() // fails what is still buffered: counted by the promises
	if err != nil {
		return fmt.Errorf("%s: flush on shutdown: %w", ID, err)
	}
	return nil
}

// kgoLogger routes franz-go's logs (warnings and errors) to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, kv...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, kv...)
	default:
		k.l.Debug("kafka: "+msg, kv...)
	}
}

var (
	_ plugin.AckExporter = (*Exporter)(nil)
	_ plugin.Deferred    = (*Exporter)(nil)
)
