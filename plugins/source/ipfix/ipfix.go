package ipfix

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/mmsg"
)

// ID is the plugin's registry ID.
const ID = "source.ipfix"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "IPFIX collector on UDP (SO_REUSEPORT readers) and TCP",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

const (
	// expireEvery is how often readers call Decoder.Expire.
	expireEvery = time.Second
	// drainStep is how often a draining reader checks whether its socket
	// buffer is empty.
	drainStep = 20 * time.Millisecond
	// maxDatagram is the largest IPFIX message (16-bit length field).
	maxDatagram = 65535
	// udpBatch is the most datagrams one recvmmsg(2) receives (1 MiB of
	// buffers per reader).
	udpBatch = 16
)

// Source is the source.ipfix plugin. Create it with [New].
type Source struct {
	cfg Config
	set plugin.Settings
	log *slog.Logger

	// Listeners, bound in New so that configuration errors (port in use)
	// surface before the pipeline starts and tests can ask for the port.
	udp []*net.UDPConn
	tcp net.Listener

	mu       sync.Mutex
	started  bool
	stopped  bool
	conns    map[net.Conn]struct{} // live TCP connections
	perPeer  map[netip.Addr]int    // live TCP connections by exporter address
	decoders map[*ipfix.Decoder]struct{}
	budget   *ipfix.Budget
	allowed  []netip.Prefix
	retired  statsTotals // counters of decoders whose connection closed
	unknown  *unknownIEs

	wg         sync.WaitGroup
	emitCtx    context.Context // ends only if Shutdown's ctx ends first
	emitCancel context.CancelFunc
	draining   atomic.Bool
	drainUntil atomic.Int64 // unix nanoseconds; readers stop draining then

	kernelDrops    atomic.Uint64
	readErrors     atomic.Uint64
	framingErrors  atomic.Uint64
	connections    atomic.Uint64
	refused        [numRefusals]atomic.Uint64 // TCP connections, by reason
	notAllowed     atomic.Uint64              // UDP messages from outside allowed_exporters
	timeouts       [numTimeouts]atomic.Uint64
	emitErrors     atomic.Uint64
	lostOnShutdown atomic.Uint64 // records decoded but not emitted, or left in the sockets
	lostMessages   atomic.Uint64 // messages left in the sockets past shutdown_drain
	lostBytes      atomic.Uint64 // TCP bytes left past shutdown_drain outside whole messages

	// Separate limits so that a flood of one kind of problem does not hide
	// another.
	logMalformed, logDrops, logErrors, logConns, logLimits plugin.LogLimiter
}

// Reasons a TCP connection is refused.
const (
	refusedMaxConnections = iota
	refusedPerExporter
	refusedNotAllowed
	numRefusals
)

var refusalNames = [numRefusals]string{"max_connections", "max_connections_per_exporter", "not_allowed"}

// Reasons a TCP connection times out.
const (
	timeoutHeader = iota
	timeoutIdle
	numTimeouts
)

var timeoutNames = [numTimeouts]string{"header", "idle"}

// New binds the configured listeners and registers the metrics. Nothing is
// read before Start.
func New(cfg *Config, set plugin.Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{
		cfg:      *cfg,
		set:      set,
		log:      set.Logger,
		conns:    map[net.Conn]struct{}{},
		perPeer:  map[netip.Addr]int{},
		decoders: map[*ipfix.Decoder]struct{}{},
		budget:   cfg.Limits.budget(),
		unknown:  newUnknownIEs(),
	}
	for _, a := range cfg.AllowedExporters {
		p, _ := parsePrefix(a) // validated
		s.allowed = append(s.allowed, p)
	}
	s.emitCtx, s.emitCancel = context.WithCancel(context.Background())
	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}
	if err := s.registerMetrics(); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

func (s *Source) listen() error {
	ctx := context.Background()
	if s.cfg.UDP != "" {
		n := s.cfg.Readers
		if n == 0 {
			n = runtime.GOMAXPROCS(0)
		}
		if !reusePortSupported {
			n = 1
		}
		addr := s.cfg.UDP
		if !s.cfg.ReusePort {
			if err := probeUDP(ctx, addr); err != nil {
				return err
			}
		}
		for i := 0; i < n; i++ {
			lc := net.ListenConfig{Control: controlUDP(int(s.cfg.RcvBuf), n > 1 || s.cfg.ReusePort)}
			pc, err := lc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				return fmt.Errorf("%s: listen udp %s (socket %d of %d): %w", ID, addr, i+1, n, err)
			}
			c := pc.(*net.UDPConn)
			s.udp = append(s.udp, c)
			if i == 0 {
				// Bind the other sockets to the port the first one got
				// (matters for ":0").
				host, _, _ := net.SplitHostPort(s.cfg.UDP)
				addr = net.JoinHostPort(host, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
				if raw, err := c.SyscallConn(); err == nil {
					s.log.Info("udp listener", "address", c.LocalAddr().String(), "readers", n,
						"rcvbuf_requested", int64(s.cfg.RcvBuf), "rcvbuf_granted", rcvBufOf(raw))
				}
			}
		}
	}
	if s.cfg.TCP != "" {
		lc := net.ListenConfig{Control: controlTCP(int(s.cfg.RcvBuf))}
		ln, err := lc.Listen(ctx, "tcp", s.cfg.TCP)
		if err != nil {
			return fmt.Errorf("%s: listen tcp %s: %w", ID, s.cfg.TCP, err)
		}
		s.tcp = ln
		s.log.Info("tcp listener", "address", ln.Addr().String())
	}
	return nil
}

// ErrPortInUse is returned by New when another process already listens on
// the UDP address and reuse_port is not set.
var ErrPortInUse = errors.New("address already in use by another socket (set reuse_port: true to share it)")

// probeUDP binds addr once without SO_REUSEPORT: that fails if any socket,
// SO_REUSEPORT or not, already has the address, which the readers' own
// SO_REUSEPORT binds would silently share. A port of 0 picks a free one, so
// there is nothing to probe.
func probeUDP(ctx context.Context, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return nil
	}
	pc, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s: listen udp %s: %w", ID, addr, ErrPortInUse)
		}
		return fmt.Errorf("%s: listen udp %s: %w", ID, addr, err)
	}
	return pc.Close()
}

// UDPAddr returns the bound UDP address, or nil without a UDP listener.
func (s *Source) UDPAddr() *net.UDPAddr {
	if len(s.udp) == 0 {
		return nil
	}
	return s.udp[0].LocalAddr().(*net.UDPAddr)
}

// TCPAddr returns the bound TCP address, or nil without a TCP listener.
func (s *Source) TCPAddr() *net.TCPAddr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr().(*net.TCPAddr)
}

// KernelDrops returns how many datagrams the kernel dropped on the UDP
// sockets because their buffers were full, as far as reported so far.
func (s *Source) KernelDrops() uint64 { return s.kernelDrops.Load() }

// Start starts one goroutine per UDP socket and the TCP accept loop.
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
	for i, c := range s.udp {
		s.wg.Add(1)
		go s.readUDP(i, c, s.newDecoderLocked(true), out)
	}
	if s.tcp != nil {
		s.wg.Add(1)
		go s.accept(out)
	}
	return nil
}

// decoderOptions returns the options of a UDP or TCP decoder: templates
// expire only over UDP (RFC 7011 §8.4); a TCP session ends with its
// connection.
func (s *Source) decoderOptions(udp bool) ipfix.DecoderOptions {
	o := ipfix.DecoderOptions{
		PendingSets: s.cfg.PendingSets,
		PendingTTL:  s.cfg.PendingTTL,
		Budget:      s.budget,
	}
	if udp {
		o.TemplateTTL = s.cfg.TemplateTTL
	}
	return o
}

// allow reports whether allowed_exporters admits a.
func (s *Source) allow(a netip.Addr) bool {
	if len(s.allowed) == 0 {
		return true
	}
	for _, p := range s.allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Source) newDecoderLocked(udp bool) *ipfix.Decoder {
	d := ipfix.NewDecoder(s.decoderOptions(udp))
	d.UnknownIE(s.unknown.observe)
	d.OnEvent(s.logEvent) // rare; the level (which a reload may change) filters
	s.decoders[d] = struct{}{}
	return d
}

// logEvent logs, at debug, an exporter's first message in an observation
// domain and every new or changed template.
func (s *Source) logEvent(e ipfix.Event) {
	switch e.Kind {
	case "session":
		s.log.Debug("new exporter / observation domain", "exporter", e.Exporter.String(), "observation_domain_id", e.Domain)
	case "template":
		s.log.Debug("new template", "exporter", e.Exporter.String(), "observation_domain_id", e.Domain,
			"template_id", e.TemplateID, "options", e.Options)
	}
}

// batcher is one reader's batch under construction.
type batcher struct {
	s       *Source
	out     plugin.Emitter
	b       *flow.Batch
	size    int
	timeout time.Duration
	first   time.Time // when b got its first record
}

func (s *Source) newBatcher(out plugin.Emitter) *batcher {
	size := out.BatchSize()
	if size <= 0 {
		size = flow.DefaultBatchSize
	}
	timeout := out.BatchTimeout()
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	return &batcher{s: s, out: out, b: out.NewBatch(), size: size, timeout: timeout}
}

// added notes that records were appended at now and emits a full batch.
func (bt *batcher) added(before int, now time.Time) {
	if before == 0 && bt.b.Len() > 0 {
		bt.first = now
	}
	if bt.b.Len() >= bt.size {
		bt.flush()
	}
}

// due returns when the batch must be flushed, or the zero time if empty.
func (bt *batcher) due() time.Time {
	if bt.b.Len() == 0 {
		return time.Time{}
	}
	return bt.first.Add(bt.timeout)
}

func (bt *batcher) flushIfDue(now time.Time) {
	if d := bt.due(); !d.IsZero() && !now.Before(d) {
		bt.flush()
	}
}

func (bt *batcher) flush() {
	if bt.b.Len() == 0 {
		return
	}
	n := bt.b.Len()
	if err := bt.out.Emit(bt.s.emitCtx, bt.b); err != nil {
		bt.s.emitErrors.Add(1)
		bt.s.lostOnShutdown.Add(uint64(n))
		bt.s.log.Error("emit batch", "records", n, "err", err)
	}
	bt.b = bt.out.NewBatch()
}

// nextWake returns the reader's next deadline: the batch's flush time or
// the next Expire, whichever comes first.
func nextWake(bt *batcher, nextExpire time.Time) time.Time {
	if d := bt.due(); !d.IsZero() && d.Before(nextExpire) {
		return d
	}
	return nextExpire
}

func (s *Source) readUDP(idx int, c *net.UDPConn, dec *ipfix.Decoder, out plugin.Emitter) {
	defer s.wg.Done()
	bt := s.newBatcher(out)
	defer bt.flush()

	rd, err := mmsg.NewReader(c, udpBatch, maxDatagram, oobSize)
	if err != nil {
		s.readErrors.Add(1)
		s.log.Error("udp reader", "socket", idx, "err", err)
		return
	}
	var lastDrops uint32
	var deadline time.Time
	nextExpire := time.Now().Add(expireEvery)
	for {
		if !s.draining.Load() {
			if wake := nextWake(bt, nextExpire); !wake.Equal(deadline) {
				deadline = wake
				_ = c.SetReadDeadline(wake)
			}
			// Shutdown may have woken the reader between the check and
			// the set above: wake it again.
			if s.draining.Load() {
				_ = c.SetReadDeadline(time.Now())
			}
		}
		// One recvmmsg takes every datagram queued, up to udpBatch; while
		// draining, one at a time (with a batch the drain lost records
		// under load in TestShutdownDrainsSockets; not yet understood).
		batch := udpBatch
		if s.draining.Load() {
			batch = 1
		}
		count, err := rd.ReadN(batch)
		now := time.Now()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if s.draining.Load() {
					if !s.moreToDrain(c, now) {
						s.countLeftUDP(c, rd, dec)
						return
					}
					_ = c.SetReadDeadline(now.Add(drainStep))
					continue
				}
				bt.flushIfDue(now)
				if !now.Before(nextExpire) {
					dec.Expire()
					nextExpire = now.Add(expireEvery)
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) || s.draining.Load() {
				return
			}
			s.readErrors.Add(1)
			if suppressed, ok := s.logErrors.Allow(now); ok {
				s.log.Warn("udp read", "socket", idx, "err", err, "suppressed", suppressed)
			}
			continue
		}
		for i := range count {
			data, oob, from := rd.Datagram(i)
			if drops, ok := rxqOverflow(oob); ok && drops != lastDrops {
				delta := drops - lastDrops // wraps like the kernel's counter
				lastDrops = drops
				total := s.kernelDrops.Add(uint64(delta))
				if suppressed, ok := s.logDrops.Allow(now); ok {
					s.log.Warn("kernel dropped datagrams: socket buffer full", "socket", idx,
						"dropped", delta, "total", total, "rcvbuf", int64(s.cfg.RcvBuf), "suppressed", suppressed)
				}
			}
			// from is unmapped by the reader.
			if !s.allow(from.Addr()) {
				s.notAllowed.Add(1)
				if suppressed, ok := s.logConns.Allow(now); ok {
					s.log.Warn("ipfix message refused: exporter not in allowed_exporters", "exporter", from.String(),
						"suppressed", suppressed)
				}
				continue
			}
			before := bt.b.Len()
			s.handle(dec, bt.b, data, from, now)
			bt.added(before, now)
		}
		if !now.Before(nextExpire) {
			dec.Expire()
			nextExpire = now.Add(expireEvery)
		}
	}
}

// peekMessage returns the next whole IPFIX message in br without
// consuming it (the caller discards it), so that a read cut short — by
// shutdown_drain, say — leaves the partial message in br to be counted.
// Errors are those of ipfix.ReadMessage: io.EOF between messages,
// io.ErrUnexpectedEOF within one, ipfix.ErrMalformed for bad framing, or
// the reader's.
func peekMessage(br *bufio.Reader) ([]byte, error) {
	hdr, err := br.Peek(16)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if v := binary.BigEndian.Uint16(hdr); v != 10 {
		return nil, fmt.Errorf("read ipfix message header: version %d, want 10: %w", v, ipfix.ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if n < 16 {
		return nil, fmt.Errorf("read ipfix message header: length %d shorter than header: %w", n, ipfix.ErrMalformed)
	}
	msg, err := br.Peek(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	return msg, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// countLeftTCP counts what a TCP connection still holds once the drain
// deadline has passed: what br buffered and what the socket holds (at
// most two receive buffers' worth, so an exporter that keeps sending
// cannot hold Shutdown). Whole messages are decoded only to count their
// records as lost (lost_on_shutdown_records_total, _messages_total); the
// bytes of a partial message, or past bad framing, are counted in
// lost_on_shutdown_bytes_total.
func (s *Source) countLeftTCP(c net.Conn, br *bufio.Reader, dec *ipfix.Decoder, from netip.AddrPort) {
	left, _ := br.Peek(br.Buffered())
	left = append([]byte(nil), left...)
	budget := max(int(s.cfg.RcvBuf), 1<<20) * 2
	chunk := make([]byte, 64<<10)
	for len(left) < budget && pendingBytes(c) > 0 {
		_ = c.SetReadDeadline(time.Now().Add(drainStep))
		n, err := c.Read(chunk)
		left = append(left, chunk[:n]...)
		if err != nil {
			break
		}
	}
	scratch := flow.NewBatch(0)
	for len(left) >= 16 {
		n := int(binary.BigEndian.Uint16(left[2:]))
		if binary.BigEndian.Uint16(left) != 10 || n < 16 || n > len(left) {
			break
		}
		scratch.Reset()
		recs, _ := dec.Decode(scratch, left[:n], from)
		s.lostMessages.Add(1)
		s.lostOnShutdown.Add(uint64(recs))
		left = left[n:]
	}
	s.lostBytes.Add(uint64(len(left)))
}

// countLeftUDP reads what c still holds once the drain deadline has
// passed, decoding it only to count its records as lost; it reads at most
// one receive buffer's worth, so exporters that keep sending cannot hold
// Shutdown.
func (s *Source) countLeftUDP(c *net.UDPConn, rd *mmsg.Reader, dec *ipfix.Decoder) {
	if pendingBytes(c) == 0 {
		return
	}
	scratch := flow.NewBatch(0)
	budget := max(int(s.cfg.RcvBuf), 1<<20) * 2
	for read := 0; read < budget; {
		_ = c.SetReadDeadline(time.Now().Add(drainStep))
		// One datagram at a time, as the drain reads.
		count, err := rd.ReadN(1)
		if err != nil {
			return
		}
		for i := range count {
			data, _, from := rd.Datagram(i)
			read += len(data)
			if !s.allow(from.Addr()) {
				continue
			}
			scratch.Reset()
			recs, _ := dec.Decode(scratch, data, from)
			s.lostMessages.Add(1)
			s.lostOnShutdown.Add(uint64(recs))
		}
	}
}

// handle decodes msg into b or, with raw set, appends it as one raw
// record (ipfix.AppendRaw) for an exporter that ships messages undecoded.
func (s *Source) handle(dec *ipfix.Decoder, b *flow.Batch, msg []byte, from netip.AddrPort, now time.Time) {
	if s.cfg.Raw {
		ipfix.AppendRaw(b, msg, from, now)
		dec.Stats().Messages.Add(1)
		return
	}
	if _, derr := dec.Decode(b, msg, from); derr != nil {
		s.malformed(from, derr, now)
	}
}

// malformed logs a decode error, at most once a second per source; the
// decoder already counted it. A limit's refusal has its own rate limit.
func (s *Source) malformed(from netip.AddrPort, err error, now time.Time) {
	if errors.Is(err, ipfix.ErrLimit) {
		if suppressed, ok := s.logLimits.Allow(now); ok {
			s.log.Warn("decoder state limit reached", "exporter", from.String(), "err", err,
				"suppressed", suppressed)
		}
		return
	}
	if suppressed, ok := s.logMalformed.Allow(now); ok {
		s.log.Warn("malformed ipfix message", "exporter", from.String(), "err", err,
			"suppressed", suppressed)
	}
}

func (s *Source) accept(out plugin.Emitter) {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.draining.Load() {
				return
			}
			// Out of file descriptors and the like: wait, don't spin.
			s.readErrors.Add(1)
			if suppressed, ok := s.logErrors.Allow(time.Now()); ok {
				s.log.Warn("tcp accept", "err", err, "suppressed", suppressed)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		peer := remoteAddr(c)
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			c.Close()
			return
		}
		reason := -1
		switch {
		case !s.allow(peer.Addr()):
			reason = refusedNotAllowed
		case s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections:
			reason = refusedMaxConnections
		case s.cfg.MaxConnectionsPerExporter > 0 && s.perPeer[peer.Addr()] >= s.cfg.MaxConnectionsPerExporter:
			reason = refusedPerExporter
		}
		if reason >= 0 {
			s.mu.Unlock()
			s.refused[reason].Add(1)
			if suppressed, ok := s.logConns.Allow(time.Now()); ok {
				s.log.Warn("tcp connection refused", "reason", refusalNames[reason], "exporter", peer.String(),
					"max_connections", s.cfg.MaxConnections, "max_connections_per_exporter", s.cfg.MaxConnectionsPerExporter,
					"suppressed", suppressed)
			}
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.perPeer[peer.Addr()]++
		dec := s.newDecoderLocked(false)
		s.wg.Add(1)
		s.mu.Unlock()
		s.connections.Add(1)
		go s.serveTCP(c, peer, dec, out)
	}
}

// remoteAddr returns c's peer with an IPv4-mapped address unmapped.
func remoteAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// errTimeout is returned by idleReader when a TCP timeout closes the
// connection.
type errTimeout struct {
	kind  int
	after time.Duration
}

func (e *errTimeout) Error() string {
	if e.kind == timeoutIdle {
		return fmt.Sprintf("nothing received for %s (tcp_idle_timeout)", e.after)
	}
	return fmt.Sprintf("message incomplete after %s (tcp_header_timeout)", e.after)
}

// idleReader reads from a TCP connection, waking up at the batcher's
// deadlines to flush and expire without disturbing the message framing:
// a timeout with nothing read is retried, so the message framing never sees
// it.
//
// It also enforces the TCP timeouts: a message (the first one from the
// moment of connecting) must arrive whole within tcp_header_timeout of
// its start, and the connection must not be silent for tcp_idle_timeout.
type idleReader struct {
	s          *Source
	c          net.Conn
	bt         *batcher
	dec        *ipfix.Decoder
	nextExpire time.Time
	deadline   time.Time
	lastRead   time.Time // when bytes last arrived
	msgStart   time.Time // when the message being read began; zero between messages
}

func (r *idleReader) Read(p []byte) (int, error) {
	for {
		if !r.s.draining.Load() {
			if wake := nextWake(r.bt, r.nextExpire); !wake.Equal(r.deadline) {
				r.deadline = wake
				_ = r.c.SetReadDeadline(wake)
			}
			if r.s.draining.Load() {
				_ = r.c.SetReadDeadline(time.Now())
			}
		}
		n, err := r.c.Read(p)
		if n > 0 {
			r.lastRead = time.Now()
			if r.msgStart.IsZero() {
				r.msgStart = r.lastRead
			}
		}
		var ne net.Error
		if n == 0 && err != nil && errors.As(err, &ne) && ne.Timeout() {
			now := time.Now()
			if r.s.draining.Load() {
				if !r.s.moreToDrain(r.c, now) {
					return n, err
				}
				_ = r.c.SetReadDeadline(now.Add(drainStep))
				continue
			}
			r.bt.flushIfDue(now)
			r.expire(now)
			if h := r.s.cfg.TCPHeaderTimeout; h > 0 && !r.msgStart.IsZero() && now.Sub(r.msgStart) > h {
				return 0, &errTimeout{timeoutHeader, h}
			}
			if i := r.s.cfg.TCPIdleTimeout; i > 0 && now.Sub(r.lastRead) > i {
				return 0, &errTimeout{timeoutIdle, i}
			}
			continue
		}
		return n, err
	}
}

func (r *idleReader) expire(now time.Time) {
	if !now.Before(r.nextExpire) {
		r.dec.Expire()
		r.nextExpire = now.Add(expireEvery)
	}
}

func (s *Source) serveTCP(c net.Conn, from netip.AddrPort, dec *ipfix.Decoder, out plugin.Emitter) {
	defer s.wg.Done()
	bt := s.newBatcher(out)
	defer func() {
		c.Close()
		dec.Close()
		bt.flush()
		s.mu.Lock()
		delete(s.conns, c)
		if s.perPeer[from.Addr()]--; s.perPeer[from.Addr()] <= 0 {
			delete(s.perPeer, from.Addr())
		}
		delete(s.decoders, dec)
		s.retired.add(dec.Stats())
		s.mu.Unlock()
	}()
	s.log.Debug("tcp session opened", "exporter", from.String())
	now := time.Now()
	// The first message is timed from the connection.
	ir := &idleReader{s: s, c: c, bt: bt, dec: dec, nextExpire: now.Add(expireEvery), lastRead: now, msgStart: now}
	br := bufio.NewReaderSize(ir, maxDatagram)
	buf := make([]byte, 0, maxDatagram)
	for {
		msg, err := peekMessage(br)
		if err != nil {
			var te *errTimeout
			switch {
			case s.draining.Load() && isTimeout(err):
				// shutdown_drain is over: count what the connection holds.
				s.countLeftTCP(c, br, dec, from)
			case errors.As(err, &te):
				s.timeouts[te.kind].Add(1)
				s.warnConn("tcp session closed: timeout", from, err)
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), s.draining.Load():
			case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, os.ErrDeadlineExceeded):
				s.warnConn("tcp session ended mid-message", from, err)
			default:
				// Bad framing: the stream cannot be resynchronised.
				s.framingErrors.Add(1)
				s.warnConn("tcp session closed: bad ipfix framing", from, err)
			}
			s.log.Debug("tcp session closed", "exporter", from.String())
			return
		}
		// msg is bufio's: copy it before Discard lets the next read reuse it.
		buf = append(buf[:0], msg...)
		_, _ = br.Discard(len(msg))
		// The next message starts with the bytes already buffered, if any.
		ir.msgStart = time.Time{}
		if br.Buffered() > 0 {
			ir.msgStart = time.Now()
		}
		now := time.Now()
		before := bt.b.Len()
		s.handle(dec, bt.b, buf, from, now)
		bt.added(before, now)
		ir.expire(now)
	}
}

// warnConn logs a per-connection problem, at most once a second.
func (s *Source) warnConn(msg string, from netip.AddrPort, err error) {
	if suppressed, ok := s.logConns.Allow(time.Now()); ok {
		s.log.Warn(msg, "exporter", from.String(), "err", err, "suppressed", suppressed)
	}
}

// Shutdown stops reading: it lets the readers drain what their sockets
// already hold (until empty, for at most shutdown_drain; what UDP sockets
// still hold then is decoded only to be counted as lost), closes every
// socket, emits every partial batch and waits for the goroutines. If ctx ends first, batches still blocked in Emit are
// abandoned (and counted) and ctx's error is returned.
func (s *Source) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()

	if started {
		// Wake every reader; each then drains what its socket already
		// holds (data the kernel accepted) before it stops.
		now := time.Now()
		s.drainUntil.Store(now.Add(s.cfg.ShutdownDrain).UnixNano())
		s.draining.Store(true)
		for _, c := range s.udp {
			_ = c.SetReadDeadline(now)
		}
		s.mu.Lock()
		for c := range s.conns {
			_ = c.SetReadDeadline(now)
		}
		s.mu.Unlock()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}

	var err error
	if werr := plugin.AwaitShutdown(ctx, &s.wg, func() { s.emitCancel(); s.closeListeners() }); werr != nil {
		err = fmt.Errorf("%s: shutdown: %w", ID, werr)
	}
	s.emitCancel()
	s.closeListeners()
	if started {
		s.log.Info("source stopped",
			"messages", s.sum(statMessages),
			"records", s.sum(statRecords),
			"malformed_messages", s.sum(statMalformedMessages),
			"malformed_sets", s.sum(statMalformedSets),
			"kernel_drops", s.kernelDrops.Load(),
			"lost_on_shutdown", s.lostOnShutdown.Load(),
			"lost_on_shutdown_messages", s.lostMessages.Load(),
			"lost_on_shutdown_bytes", s.lostBytes.Load())
	}
	return err
}

// moreToDrain reports whether a draining reader should keep reading c: its
// socket still holds data and the drain bound has not passed.
func (s *Source) moreToDrain(c any, now time.Time) bool {
	return now.UnixNano() < s.drainUntil.Load() && pendingBytes(c) > 0
}

func (s *Source) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

var (
	_ plugin.Source = (*Source)(nil)
	_ io.Reader     = (*idleReader)(nil)
)
