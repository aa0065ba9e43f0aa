package pcap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "source.pcap"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "replays the IPFIX messages of a pcap/pcapng file, at full speed or capture pace",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// ErrNotCapture is returned by [New] for a file that is neither pcap nor
// pcapng.
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// Source is the source.pcap plugin. Create it with [New].
type Source struct {
	cfg   Config
	set   plugin.Settings
	log   *slog.Logger
	path  string
	file  *os.File
	ports *portSet

	mu       sync.Mutex
	started  bool
	stopped  bool
	done     chan struct{}
	doneOnce sync.Once
	wg       sync.WaitGroup

	runCtx     context.Context // cancelled by Shutdown: stop reading
	runCancel  context.CancelFunc
	emitCtx    context.Context // cancelled only if Shutdown's ctx ends
	emitCancel context.CancelFunc

	dec     *ipfix.Decoder
	clock   atomic.Int64 // capture time of the packet being decoded, unix ns
	packets atomic.Uint64
	skipped [numSkipReasons]atomic.Uint64
	lost    atomic.Uint64
}

// New opens the capture file and checks its header. Nothing is read before
// Start.
func New(cfg *Config, set plugin.Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path := set.Path(cfg.Path)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: path: %w", ID, err)
	}
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || !isCaptureMagic(magic) {
		f.Close()
		return nil, fmt.Errorf("%s: path %q: %w", ID, path, ErrNotCapture)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: path %q: %w", ID, path, err)
	}
	s := &Source{
		cfg:   *cfg,
		set:   set,
		log:   set.Logger,
		path:  path,
		file:  f,
		ports: newPortSet(cfg.Ports),
		done:  make(chan struct{}),
	}
	s.runCtx, s.runCancel = context.WithCancel(context.Background())
	s.emitCtx, s.emitCancel = context.WithCancel(context.Background())
	// The decoder's clock is the capture's, so held data sets expire by
	// capture time whatever the replay speed.
	s.dec = ipfix.NewDecoder(ipfix.DecoderOptions{Now: func() time.Time { return time.Unix(0, s.clock.Load()) }})
	if err := s.registerMetrics(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func isCaptureMagic(m [4]byte) bool {
	switch {
	case bytes.Equal(m[:], []byte{0x0a, 0x0d, 0x0d, 0x0a}): // pcapng section header
		return true
	case bytes.Equal(m[:], []byte{0xd4, 0xc3, 0xb2, 0xa1}), bytes.Equal(m[:], []byte{0xa1, 0xb2, 0xc3, 0xd4}), // µs
		bytes.Equal(m[:], []byte{0x4d, 0x3c, 0xb2, 0xa1}), bytes.Equal(m[:], []byte{0xa1, 0xb2, 0x3c, 0x4d}): // ns
		return true
	}
	return false
}

// Done is closed when the whole file has been read and its last batch
// emitted, or after Shutdown.
func (s *Source) Done() <-chan struct{} { return s.done }

// Decoder returns the source's decoder, for its Stats.
func (s *Source) Decoder() *ipfix.Decoder { return s.dec }

// Start begins the replay in a goroutine.
func (s *Source) Start(_ context.Context, out plugin.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if s.started {
		return fmt.Errorf("%s: started twice", ID)
	}
	s.started = true
	s.wg.Add(1)
	go s.run(out)
	return nil
}

// packetReader is what pcapgo's Reader and NgReader share, plus the link
// type of a packet.
type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	linkType(ci *gopacket.CaptureInfo) layers.LinkType
}

type pcapReader struct{ *pcapgo.Reader }

func (r pcapReader) linkType(*gopacket.CaptureInfo) layers.LinkType { return r.LinkType() }

type ngReader struct{ *pcapgo.NgReader }

func (r ngReader) linkType(ci *gopacket.CaptureInfo) layers.LinkType {
	if iface, err := r.Interface(ci.InterfaceIndex); err == nil {
		return iface.LinkType
	}
	return r.LinkType()
}

func (s *Source) openReader() (packetReader, error) {
	br := bufio.NewReaderSize(s.file, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, err
		}
		return ngReader{r}, nil
	}
	r, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, err
	}
	return pcapReader{r}, nil
}

func (s *Source) run(out plugin.Emitter) {
	defer s.wg.Done()
	defer s.closeDone()
	defer s.file.Close()

	size, timeout := out.BatchSize(), out.BatchTimeout()
	if size <= 0 {
		size = flow.DefaultBatchSize
	}
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	b := out.NewBatch()
	var first time.Time // wall time of b's first record
	flush := func() {
		if b.Len() == 0 {
			return
		}
		n := b.Len()
		if err := out.Emit(s.emitCtx, b); err != nil {
			s.lost.Add(uint64(n))
			s.log.Error("emit batch", "records", n, "err", err)
		}
		b = out.NewBatch()
	}
	defer func() { flush() }()

	r, err := s.openReader()
	if err != nil {
		s.log.Error("read capture", "path", s.path, "err", err)
		return
	}
	var (
		startWall, startCap time.Time
		lastExpire          int64
		malformed           plugin.LogLimiter
	)
	for s.runCtx.Err() == nil {
		data, ci, err := r.ZeroCopyReadPacketData()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// A truncated file ends the replay like EOF, but say so.
				s.log.Warn("capture ends early", "path", s.path, "packets", s.packets.Load(), "err", err)
			}
			break
		}
		s.packets.Add(1)
		payload, from, why := udpPayload(r.linkType(&ci), data, s.ports)
		if why != skipNone {
			s.skipped[why].Add(1)
			continue
		}
		if s.cfg.Speed > 0 {
			if startWall.IsZero() {
				startWall, startCap = time.Now(), ci.Timestamp
			}
			at := startWall.Add(time.Duration(float64(ci.Timestamp.Sub(startCap)) / s.cfg.Speed))
			if wait := time.Until(at); wait > 0 {
				if b.Len() > 0 && !first.Add(timeout).After(at) {
					flush()
				}
				if !sleepCtx(s.runCtx, wait) {
					break
				}
			}
		}
		now := ci.Timestamp.UnixNano()
		s.clock.Store(now)
		if now-lastExpire >= int64(time.Second) {
			s.dec.Expire()
			lastExpire = now
		}
		before := b.Len()
		if _, derr := s.dec.Decode(b, payload, from); derr != nil {
			if suppressed, ok := malformed.Allow(time.Now()); ok {
				s.log.Warn("malformed ipfix message", "exporter", from.String(), "err", derr,
					"packet", s.packets.Load(), "suppressed", suppressed)
			}
		}
		if before == 0 && b.Len() > 0 {
			first = time.Now()
		}
		if b.Len() >= size || (b.Len() > 0 && time.Since(first) >= timeout) {
			flush()
		}
	}
	st := s.dec.Stats()
	s.log.Info("capture replayed", "path", s.path, "packets", s.packets.Load(),
		"messages", st.Messages.Load(), "records", st.Records.Load(),
		"malformed_messages", st.MalformedMessages.Load(), "malformed_sets", st.MalformedSets.Load(),
		"skipped_not_udp", s.skipped[skipNotUDP].Load(), "skipped_fragments", s.skipped[skipFragment].Load(),
		"skipped_truncated", s.skipped[skipTruncated].Load())
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept the
// whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Source) closeDone() { s.doneOnce.Do(func() { close(s.done) }) }

// Shutdown stops the replay, emits the partial batch and waits for the
// reader. If ctx ends while the pipeline refuses the batch, the batch is
// abandoned (counted) and ctx's error returned.
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
		s.file.Close()
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
	st := s.dec.Stats()
	skipped := prometheus.NewDesc("weir_source_pcap_skipped_packets_total",
		"Packets that carried no IPFIX message, by reason.", []string{"reason"}, nil)
	cs := []prometheus.Collector{
		counterFunc("packets_total", "Packets read from the capture.", &s.packets),
		counterFunc("messages_total", "IPFIX messages decoded, even partly.", &st.Messages),
		counterFunc("malformed_messages_total", "IPFIX messages with a bad header or a set overrunning the message.", &st.MalformedMessages),
		counterFunc("malformed_sets_total", "Sets skipped as malformed.", &st.MalformedSets),
		counterFunc("records_total", "Data records decoded.", &st.Records),
		counterFunc("pending_expired_total", "Held data sets dropped without their template.", &st.PendingExpired),
		counterFunc("emit_lost_records_total", "Records the pipeline did not accept (shutdown deadline passed).", &s.lost),
		&skipCollector{desc: skipped, s: s},
	}
	for _, c := range cs {
		if err := s.set.Metrics.Register(c); err != nil {
			return fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return nil
}

func counterFunc(name, help string, v *atomic.Uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "weir_source_pcap_" + name, Help: help},
		func() float64 { return float64(v.Load()) })
}

// skipCollector exports the skip counters with a reason label.
type skipCollector struct {
	desc *prometheus.Desc
	s    *Source
}

func (c *skipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *skipCollector) Collect(ch chan<- prometheus.Metric) {
	for r := skipLinkType; r < numSkipReasons; r++ {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.s.skipped[r].Load()), r.String())
	}
}

// Skipped returns how many packets were skipped for each reason, by name.
func (s *Source) Skipped() map[string]uint64 {
	m := map[string]uint64{}
	for r := skipLinkType; r < numSkipReasons; r++ {
		m[r.String()] = s.skipped[r].Load()
	}
	return m
}

var (
	_ plugin.Source = (*Source)(nil)
	_ plugin.Finite = (*Source)(nil)
)
