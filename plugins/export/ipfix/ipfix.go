package ipfix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "export.ipfix"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "sends records to an IPFIX collector over UDP or TCP, verbatim IEs included",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

const (
	minBackoff = 100 * time.Millisecond
	// writeTimeout bounds one TCP write, so a collector that stopped
	// reading cannot block the exporter forever: the connection is
	// dropped and re-established.
	writeTimeout = 10 * time.Second
)

// ErrStopped is returned by Export after Shutdown.
var ErrStopped = errors.New("exporter stopped")

// Exporter is the export.ipfix plugin. Create it with [New].
type Exporter struct {
	cfg Config
	set plugin.Settings
	log *slog.Logger
	enc *ipfix.Encoder

	busy       chan struct{} // held by Export, and by Shutdown to wait for it
	stopCtx    context.Context
	stopCancel context.CancelFunc
	stopped    atomic.Bool
	wg         sync.WaitGroup // connection watchers

	// Owned by the goroutine holding busy.
	conn     net.Conn
	udp      *udpSender   // UDP: batches messages into sendmmsg calls
	broken   *atomic.Bool // set by the watcher when the collector closes
	backoff  time.Duration
	nextDial time.Time
	logs     plugin.LogLimiter

	messages       atomic.Uint64
	bytes          atomic.Uint64
	records        atomic.Uint64 // data records in messages sent
	recordsDropped atomic.Uint64 // data records in messages that could not be sent (send_error)
	sendErrors     atomic.Uint64
	connects       atomic.Uint64
	dialErrors     atomic.Uint64
	tooLarge       atomic.Uint64 // records dropped: larger than max_message_size
	empty          atomic.Uint64 // records dropped: nothing to encode
	resent         atomic.Uint64
	possiblyLost   atomic.Uint64
	malformed      atomic.Uint64 // raw records dropped: their message's header is unusable
	limited        atomic.Uint64 // raw records dropped: a decoder limit refused their session
	raw            ipfix.RawStats

	maxMessageSize int // the encoder's (UDP: the path-MTU default when 0)
	tcp            tcpState
	fresh          bool // a new connection: templates and replay go first
}

// New checks the config and registers the metrics; the collector is
// contacted on Start (UDP) or on the first Export (TCP).
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	refresh := cfg.TemplateRefresh
	if cfg.Transport == "tcp" {
		refresh = 0
	}
	e := &Exporter{
		cfg:            *cfg,
		set:            set,
		log:            set.Logger,
		busy:           make(chan struct{}, 1),
		maxMessageSize: cfg.messageSize(),
	}
	e.enc = ipfix.NewEncoder(ipfix.EncoderOptions{
		ObservationDomainID: cfg.ObservationDomainID,
		MaxMessageSize:      cfg.messageSize(),
		TemplateRefresh:     refresh,
		OneSetPerMessage:    cfg.OneSetPerMessage,
		RawStats:            &e.raw,
	})
	e.stopCtx, e.stopCancel = context.WithCancel(context.Background())
	if err := e.registerMetrics(); err != nil {
		return nil, err
	}
	return e, nil
}

// Start opens the UDP socket; a TCP connection is made on the first
// Export so that Start never waits for the collector.
func (e *Exporter) Start(ctx context.Context) error {
	if e.cfg.Transport != "udp" {
		return nil
	}
	e.busy <- struct{}{}
	defer func() { <-e.busy }()
	if e.stopped.Load() {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	c, err := net.Dial("udp", e.cfg.Address)
	if err != nil {
		return fmt.Errorf("%s: address %q: %w", ID, e.cfg.Address, err)
	}
	uc := c.(*net.UDPConn)
	u, err := newUDPSender(uc)
	if err != nil {
		c.Close()
		return fmt.Errorf("%s: address %q: %w", ID, e.cfg.Address, err)
	}
	e.conn, e.udp = c, u
	size := e.cfg.MaxMessageSize
	if size == 0 {
		// Path-MTU-safe: the route's MTU less the IP and UDP headers.
		size = udpMessageSize(pathMTU(uc), uc.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().Is6())
		e.enc = ipfix.NewEncoder(ipfix.EncoderOptions{
			ObservationDomainID: e.cfg.ObservationDomainID,
			MaxMessageSize:      size,
			TemplateRefresh:     e.cfg.TemplateRefresh,
			OneSetPerMessage:    e.cfg.OneSetPerMessage,
			RawStats:            &e.raw,
		})
		e.maxMessageSize = size
	}
	e.log.Info("exporting ipfix", "address", e.cfg.Address, "transport", "udp", "max_message_size", size)
	return nil
}

// Export encodes b's records and sends them. A record that cannot be
// encoded (larger than max_message_size, or empty) is dropped, counted in
// weir_export_ipfix_records_dropped_total{reason} and logged; the others
// go out. Over UDP a message the kernel refuses is counted and the rest of
// the batch still goes out; over TCP a broken connection is re-established
// (waiting with backoff while ctx allows), the messages it had not
// acknowledged are replayed from the resend window and the batch goes on
// from the first message not written.
func (e *Exporter) Export(ctx context.Context, b *flow.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	select {
	case e.busy <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.busy }()
	if e.stopped.Load() {
		return fmt.Errorf("%s: %w", ID, ErrStopped)
	}
	if e.cfg.Transport == "udp" {
		return e.exportUDP(b.Records)
	}
	return e.exportTCP(ctx, b.Records)
}

// connect makes sure a TCP connection is up, dialling with exponential
// backoff until it succeeds, ctx ends or Shutdown gives up.
func (e *Exporter) connect(ctx context.Context) error {
	if e.conn != nil && !e.broken.Load() {
		return nil
	}
	if e.conn != nil {
		e.reset(errors.New("collector closed the connection"))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.stopCtx, cancel)()
	for {
		if wait := time.Until(e.nextDial); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%s: connect to %s: %w", ID, e.cfg.Address, ctx.Err())
			}
		}
		d := net.Dialer{Timeout: e.cfg.DialTimeout, Control: controlSndBuf(int(e.cfg.ResendWindow) / 2)}
		c, err := d.DialContext(ctx, "tcp", e.cfg.Address)
		if err == nil {
			e.backoff = 0
			e.conn = c
			e.fresh = true
			broken := &atomic.Bool{}
			e.broken = broken
			e.connects.Add(1)
			e.enc.Reset()
			e.log.Info("connected to ipfix collector", "address", e.cfg.Address, "transport", "tcp")
			// The collector never sends: a read returning means it closed
			// or reset the connection, which a write would only notice
			// after the data was lost.
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				_, _ = io.Copy(io.Discard, c)
				broken.Store(true)
			}()
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: connect to %s: %w", ID, e.cfg.Address, ctx.Err())
		}
		e.dialErrors.Add(1)
		e.backoff = min(max(2*e.backoff, minBackoff), max(e.cfg.MaxBackoff, minBackoff))
		e.nextDial = time.Now().Add(e.backoff)
		e.logLimited("connect to ipfix collector", "address", e.cfg.Address, "retry_in", e.backoff.String(), "err", err)
	}
}

func (e *Exporter) closeConn() {
	if e.conn == nil {
		return
	}
	if tc, ok := e.conn.(*net.TCPConn); ok {
		// Half-close first so the collector reads everything written.
		_ = tc.CloseWrite()
	}
	e.conn.Close()
	e.conn = nil
}

func (e *Exporter) logLimited(msg string, args ...any) {
	if suppressed, ok := e.logs.Allow(time.Now()); ok {
		e.log.Warn(msg, append(args, "suppressed", suppressed)...)
	}
}

// Shutdown waits for a running Export (giving up its retries when ctx
// ends) and closes the connection. Nothing is buffered between Exports,
// so there is nothing else to flush.
func (e *Exporter) Shutdown(ctx context.Context) error {
	if e.stopped.Swap(true) {
		return nil
	}
	var err error
	select {
	case e.busy <- struct{}{}:
	case <-ctx.Done():
		e.stopCancel()
		e.busy <- struct{}{}
		err = fmt.Errorf("%s: shutdown: %w", ID, ctx.Err())
	}
	e.stopCancel()
	e.abandon()
	e.closeConn()
	e.udp = nil
	<-e.busy
	e.wg.Wait()
	e.log.Info("exporter stopped", "address", e.cfg.Address, "messages", e.messages.Load(),
		"bytes", e.bytes.Load(), "send_errors", e.sendErrors.Load(),
		"records_dropped", e.tooLarge.Load()+e.empty.Load()+e.recordsDropped.Load(), "records_possibly_lost", e.possiblyLost.Load())
	return err
}

// droppedHelp is the help of weir_export_ipfix_records_dropped_total, one
// series per reason.
const droppedHelp = "Data records dropped inside the exporter, by reason (record_too_large, empty_record: they cannot be encoded; send_error: the kernel refused their UDP datagram, or no TCP connection could be made before the export was given up; malformed: raw messages whose header is unusable, one per message; limit: raw messages whose session the re-exporter's state limits refused)."

// Drop reasons of raw records whose IPFIX message cannot be read: its
// header is unusable, or a limit (ipfix.DefaultLimits) refused its session.
const (
	dropMalformed = "malformed"
	dropLimit     = "limit"
)

const rawRecordsHelp = "Data records of raw messages re-exported, by path: copied with their template and the proxy's original-exporter IEs appended, or decoded and re-encoded (sysUpTime or delta times, data that came before its template)."

func (e *Exporter) registerMetrics() error {
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"messages_total", "IPFIX messages sent.", &e.messages},
		{"bytes_total", "Bytes of IPFIX messages sent.", &e.bytes},
		{"records_total", "Data records in IPFIX messages sent.", &e.records},
		{"send_errors_total", "Messages or batches that could not be sent (each retry counts).", &e.sendErrors},
		{"connects_total", "TCP connections established.", &e.connects},
		{"dial_errors_total", "Failed TCP connection attempts.", &e.dialErrors},
		{"records_resent_total", "Records sent again on a new TCP connection because the broken one had not acknowledged them (the collector may see them twice).", &e.resent},
		{"records_possibly_lost_total", "Records a broken TCP connection had not acknowledged and that were no longer in the resend window (or left at shutdown).", &e.possiblyLost},
		{"records_dropped_total", droppedHelp, &e.tooLarge},
		{"records_dropped_total", droppedHelp, &e.empty},
		{"records_dropped_total", droppedHelp, &e.recordsDropped},
		{"records_dropped_total", droppedHelp, &e.malformed},
		{"records_dropped_total", droppedHelp, &e.limited},
		{"raw_messages_total", "Raw IPFIX messages (source.ipfix raw: true) re-exported, even partly.", &e.raw.Messages},
		{"raw_records_total", rawRecordsHelp, &e.raw.Copied},
		{"raw_records_total", rawRecordsHelp, &e.raw.Decoded},
		{"raw_malformed_messages_total", "Raw messages with a malformed part (bad set or partial record); the rest of each was forwarded.", &e.raw.Malformed},
		{"raw_sets_expired_total", "Data sets of raw messages held for a template that never came, then dropped (their records cannot be counted without it).", &e.raw.SetsExpired},
		{"raw_records_dropped_total", "Data records of raw messages that could not be forwarded: larger than max_message_size, or nothing to encode.", &e.raw.Dropped},
	} {
		v := c.v
		opts := prometheus.CounterOpts{Name: "weir_export_ipfix_" + c.name, Help: c.help}
		switch v {
		case &e.tooLarge:
			opts.ConstLabels = prometheus.Labels{"reason": "record_too_large"}
		case &e.empty:
			opts.ConstLabels = prometheus.Labels{"reason": "empty_record"}
		case &e.recordsDropped:
			opts.ConstLabels = prometheus.Labels{"reason": "send_error"}
		case &e.malformed:
			opts.ConstLabels = prometheus.Labels{"reason": dropMalformed}
		case &e.limited:
			opts.ConstLabels = prometheus.Labels{"reason": dropLimit}
		case &e.raw.Copied:
			opts.ConstLabels = prometheus.Labels{"path": "copied"}
		case &e.raw.Decoded:
			opts.ConstLabels = prometheus.Labels{"path": "decoded"}
		}
		cf := prometheus.NewCounterFunc(opts, func() float64 { return float64(v.Load()) })
		if err := e.set.Metrics.Register(cf); err != nil {
			return fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return nil
}

var _ plugin.Exporter = (*Exporter)(nil)
