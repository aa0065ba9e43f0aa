package icmpprobe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "source.icmpprobe"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "ICMP echo latency to targets or every Kubernetes Node: RTT min/avg/max/last, loss, as records and gauges",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// IEs of a probe record without a typed field, carried in Record.Extra.
// Neither IANA nor Antrea define RTT, lost-request or last-reply IEs, so
// these are Weir-local IEs in Antrea's PEN 56506, elements 32010–32015 (the
// allocation is in core/ipfix/local.go, which names them). The forward ICMP
// type and code are IANA's icmpTypeCodeIPv4 / icmpTypeCodeIPv6.
var (
	IEMinimumRTT = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32010} // minimumRttMilliseconds, float64
	IEMeanRTT    = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32011} // meanRttMilliseconds, float64
	IEMaximumRTT = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32012} // maximumRttMilliseconds, float64
	IELastRTT    = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32013} // lastRttMilliseconds, float64
	IELost       = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32014} // lostPacketDeltaCount, unsigned64
	IELastReply  = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32015} // lastReplyMilliseconds, dateTimeMilliseconds

	IEICMPTypeCodeIPv4 = flow.IEKey{Enterprise: flow.IANA, Element: 32}  // icmpTypeCodeIPv4, unsigned16: 0x0800, echo request
	IEICMPTypeCodeIPv6 = flow.IEKey{Enterprise: flow.IANA, Element: 139} // icmpTypeCodeIPv6, unsigned16: 0x8000, echo request
)

// Source is the source.icmpprobe plugin. Create it with [New].
type Source struct {
	cfg     Config
	set     plugin.Settings
	log     *slog.Logger
	static  []staticTarget
	id      uint16 // echo identifier of raw sockets
	payload []byte

	mu      sync.Mutex // guards targets and what the collector reads
	targets map[string]*target
	started bool
	stopped bool

	conns    [2]*conn // IPv4, IPv6
	nodes    *nodeWatcher
	clashed  map[string]bool // Node names a named target has, warned once (run goroutine)
	firewall firewall
	cancel   context.CancelFunc
	emitCtx  context.Context
	emitStop context.CancelFunc
	wg       sync.WaitGroup
	metrics  *metrics
}

// staticTarget is a configured target and its metric label.
type staticTarget struct {
	label string // "targets[I]" or the named_targets name
	addr  netip.Addr
}

// target is one probed address and its statistics.
type target struct {
	key   string // targets map key: the address, or NODE/FAMILY for a Node
	label string // metric label: the Node name, the target's name or targets[I]
	node  string // Kubernetes Node name, "" for a configured target
	addr  netip.Addr

	// The current report window.
	windowStart                   time.Time
	sent, received, lost          uint64
	rttMin, rttMax, rttSum        time.Duration
	sentOctets, receivedOctets    uint64
	lastRTT                       time.Duration
	hasRTT                        bool
	lastSeen                      time.Time
	sentTotal, recvTotal, lostTot uint64
	// Gauges of the last report window.
	gMin, gMean, gMax, gLoss float64
	reported                 bool // a report window has closed
	removed                  bool
}

// pending is an echo request awaiting its reply.
type pending struct {
	t    *target
	at   time.Time
	size int
}

// reply is an echo reply read from a socket.
type reply struct {
	v6   bool
	from netip.Addr
	id   uint16
	seq  uint16
	at   time.Time
	size int
}

// New checks the configuration and connects to the cluster when Node
// discovery is on; sockets and firewall rules are set up in Start.
func New(cfg *Config, set plugin.Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if set.Metrics == nil {
		set.Metrics = prometheus.NewRegistry()
	}
	s := &Source{cfg: *cfg, set: set, log: set.Logger, targets: map[string]*target{}, clashed: map[string]bool{}}
	for i, t := range cfg.Targets {
		s.static = append(s.static, staticTarget{label: fmt.Sprintf("targets[%d]", i), addr: netip.MustParseAddr(t).Unmap()})
	}
	for name, t := range cfg.NamedTargets {
		s.static = append(s.static, staticTarget{label: name, addr: netip.MustParseAddr(t).Unmap()})
	}
	sort.Slice(s.static, func(i, j int) bool { return s.static[i].label < s.static[j].label })
	var b [2]byte
	_, _ = rand.Read(b[:])
	s.id = binary.BigEndian.Uint16(b[:])
	s.payload = make([]byte, cfg.PayloadSize)
	copy(s.payload, "weir icmpprobe")
	if cfg.Kubernetes.Enabled {
		nw, err := newNodeWatcher(cfg.Kubernetes, s.log)
		if err != nil {
			return nil, fmt.Errorf("%s: kubernetes: %w", ID, err)
		}
		s.nodes = nw
	}
	s.metrics = newMetrics(s)
	if err := set.Metrics.Register(s.metrics); err != nil {
		return nil, fmt.Errorf("%s: register metrics: %w", ID, err)
	}
	s.emitCtx, s.emitStop = context.WithCancel(context.Background())
	return s, nil
}

// Start installs the firewall rules (if managed), opens the sockets (in the
// caller's network namespace) and starts probing.
func (s *Source) Start(_ context.Context, out plugin.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if s.started {
		return fmt.Errorf("%s: started twice", ID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if s.nodes != nil {
		if err := s.nodes.start(ctx); err != nil {
			cancel()
			return fmt.Errorf("%s: %w", ID, err)
		}
	}
	need4, need6 := s.nodes != nil, s.nodes != nil
	for _, a := range s.static {
		need4, need6 = need4 || a.addr.Is4(), need6 || a.addr.Is6()
	}
	for i, need := range []bool{need4, need6} {
		if !need {
			continue
		}
		c, err := listen(s.cfg.Socket, i == 1)
		if err != nil && s.nodes != nil && len(s.static) == 0 && i == 1 && !errors.Is(err, ErrNoPermission) {
			s.log.Warn("no IPv6 ICMP socket: IPv6 Node addresses are not probed", "err", err)
			continue
		}
		if err != nil {
			cancel()
			s.closeConns()
			return fmt.Errorf("%s: %w", ID, err)
		}
		s.conns[i] = c
	}
	if s.cfg.Firewall.Manage {
		fw, err := newFirewall(s.cfg.Firewall, s.log)
		if err == nil {
			err = fw.install()
		}
		if err != nil {
			cancel()
			s.closeConns()
			if fw != nil {
				fw.close()
			}
			return fmt.Errorf("%s: firewall: %w", ID, err)
		}
		s.firewall = fw
	}
	s.started = true
	s.cancel = cancel
	replies := make(chan reply, 256)
	for _, c := range s.conns {
		if c != nil {
			s.log.Info("icmp socket", "kind", c.kind, "ipv6", c.v6)
			s.wg.Add(1)
			go s.read(ctx, c, replies)
		}
	}
	s.wg.Add(1)
	go s.run(ctx, out, replies)
	return nil
}

func (s *Source) closeConns() {
	for i, c := range s.conns {
		if c != nil {
			c.Close()
			s.conns[i] = nil
		}
	}
}

// read passes the echo replies of c to the prober until ctx ends.
func (s *Source) read(ctx context.Context, c *conn, out chan<- reply) {
	defer s.wg.Done()
	buf, oob := make([]byte, 1500), make([]byte, 128)
	proto := 1
	if c.v6 {
		proto = 58
	}
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, at, err := c.read(buf, oob)
		if err != nil {
			continue // deadline, or closed at shutdown
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
			continue // raw sockets see every ICMP message
		}
		select {
		case out <- reply{v6: c.v6, from: from, id: uint16(echo.ID), seq: uint16(echo.Seq), at: at, size: n}:
		case <-ctx.Done():
		}
	}
}

// run owns the probing: it sends a round every interval, matches replies,
// expires requests past the timeout and emits a report every
// report_interval.
func (s *Source) run(ctx context.Context, out plugin.Emitter, replies <-chan reply) {
	defer s.wg.Done()
	probe := time.NewTicker(s.cfg.Interval)
	defer probe.Stop()
	report := time.NewTicker(s.cfg.ReportInterval)
	defer report.Stop()
	sweep := time.NewTicker(min(s.cfg.Timeout/4+time.Millisecond, 100*time.Millisecond))
	defer sweep.Stop()
	inflight := map[uint32]pending{}
	var seq [2]uint16
	round := func() {
		s.refreshTargets()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, t := range s.sortedTargets() {
			if t.removed {
				continue
			}
			fam := 0
			if t.addr.Is6() {
				fam = 1
			}
			c := s.conns[fam]
			if c == nil {
				continue
			}
			seq[fam]++
			key := uint32(fam)<<16 | uint32(seq[fam])
			if old, ok := inflight[key]; ok { // sequence wrapped before it expired
				s.lose(old.t)
			}
			typ := icmp.Type(ipv4.ICMPTypeEcho)
			if fam == 1 {
				typ = ipv6.ICMPTypeEchoRequest
			}
			msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(s.id), Seq: int(seq[fam]), Data: s.payload}}
			b, err := msg.Marshal(nil)
			if err != nil {
				continue
			}
			at := time.Now()
			if err := c.write(b, t.addr); err != nil {
				// Unreachable (no route, no neighbour): a lost probe.
				t.sent++
				t.sentTotal++
				s.lose(t)
				s.log.Debug("echo request not sent", "target", t.label, "err", err)
				continue
			}
			ipLen := len(b) + 20
			if fam == 1 {
				ipLen = len(b) + 40
			}
			t.sent++
			t.sentTotal++
			t.sentOctets += uint64(ipLen)
			inflight[key] = pending{t: t, at: at, size: ipLen}
		}
	}
	round()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for _, p := range inflight {
				if time.Since(p.at) >= s.cfg.Timeout {
					s.lose(p.t)
				}
			}
			s.mu.Unlock()
			s.report(out)
			return
		case <-probe.C:
			round()
		case r := <-replies:
			fam := 0
			if r.v6 {
				fam = 1
			}
			key := uint32(fam)<<16 | uint32(r.seq)
			p, ok := inflight[key]
			// Unprivileged sockets get the kernel's echo ID, so replies are
			// matched by sequence and source; raw sockets also check the ID.
			if !ok || p.t.addr != r.from || (s.conns[fam].raw && r.id != s.id) {
				continue
			}
			delete(inflight, key)
			rtt := r.at.Sub(p.at)
			if rtt > s.cfg.Timeout {
				s.mu.Lock()
				s.lose(p.t)
				s.mu.Unlock()
				continue
			}
			s.mu.Lock()
			t := p.t
			t.received++
			t.recvTotal++
			t.receivedOctets += uint64(p.size)
			if t.received == 1 || rtt < t.rttMin {
				t.rttMin = rtt
			}
			t.rttMax = max(t.rttMax, rtt)
			t.rttSum += rtt
			t.lastRTT, t.hasRTT, t.lastSeen = rtt, true, r.at
			s.mu.Unlock()
		case now := <-sweep.C:
			s.mu.Lock()
			for k, p := range inflight {
				if now.Sub(p.at) >= s.cfg.Timeout {
					delete(inflight, k)
					s.lose(p.t)
				}
			}
			s.mu.Unlock()
		case <-report.C:
			s.report(out)
		}
	}
}

// lose counts a request without a reply; s.mu is held.
func (s *Source) lose(t *target) {
	t.lost++
	t.lostTot++
}

// sortedTargets returns the targets by label and family; s.mu is held.
func (s *Source) sortedTargets() []*target {
	list := make([]*target, 0, len(s.targets))
	for _, t := range s.targets {
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].label != list[j].label {
			return list[i].label < list[j].label
		}
		return list[i].addr.Less(list[j].addr)
	})
	return list
}

// family is the family metric label of a.
func family(a netip.Addr) string {
	if a.Is6() {
		return "ipv6"
	}
	return "ipv4"
}

// refreshTargets adds the configured targets and the current Nodes, and
// marks Nodes that are gone (reported once more, then dropped).
func (s *Source) refreshTargets() {
	type want struct {
		addr        netip.Addr
		label, node string
	}
	wanted := map[string]want{}
	for _, a := range s.static {
		wanted[a.addr.String()] = want{addr: a.addr, label: a.label}
	}
	if s.nodes != nil {
		named := map[string]bool{}
		for _, a := range s.static {
			named[a.label] = true
		}
		for _, n := range s.nodes.targets() {
			if named[n.name] {
				// Its series would clash with the named target's.
				if !s.clashed[n.name] {
					s.log.Warn("Node not probed: a named target has its name", "node", n.name)
					s.clashed[n.name] = true
				}
				continue
			}
			wanted[n.name+"/"+family(n.addr)] = want{addr: n.addr, label: n.name, node: n.name}
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, w := range wanted {
		if t, ok := s.targets[key]; ok && t.addr == w.addr {
			t.removed = false
			continue
		}
		// A Node whose address changed starts afresh (and its old
		// statistics, under the same key, are dropped).
		s.targets[key] = &target{key: key, label: w.label, node: w.node, addr: w.addr, windowStart: now}
	}
	for key, t := range s.targets {
		if _, ok := wanted[key]; !ok {
			t.removed = true
		}
	}
}

// report emits one record per target for the window since the last report
// and updates the window gauges.
func (s *Source) report(out plugin.Emitter) {
	now := time.Now()
	b := out.NewBatch()
	s.mu.Lock()
	for _, t := range s.sortedTargets() {
		s.fill(b.Append(), b, t, now)
		t.gMin, t.gMean, t.gMax = math.NaN(), math.NaN(), math.NaN()
		if t.received > 0 {
			t.gMin, t.gMax = t.rttMin.Seconds(), t.rttMax.Seconds()
			t.gMean = (t.rttSum / time.Duration(t.received)).Seconds()
		}
		t.gLoss = math.NaN()
		if t.received+t.lost > 0 {
			t.gLoss = float64(t.lost) / float64(t.received+t.lost)
		}
		t.reported = true
		t.windowStart, t.sent, t.received, t.lost = now, 0, 0, 0
		t.rttMin, t.rttMax, t.rttSum, t.sentOctets, t.receivedOctets = 0, 0, 0, 0, 0
		if t.removed {
			delete(s.targets, t.key)
		}
	}
	s.mu.Unlock()
	if b.Len() == 0 {
		return
	}
	n := b.Len()
	if err := out.Emit(s.emitCtx, b); err != nil {
		s.metrics.lost.Add(float64(n))
		s.log.Error("emit probe records", "records", n, "err", err)
		return
	}
	s.metrics.records.Add(float64(n))
}

// fill writes t's window as a record: an RFC 5103 biflow whose forward
// direction is the echo requests and reverse the replies.
func (s *Source) fill(r *flow.Record, b *flow.Batch, t *target, now time.Time) {
	r.SetAddr(flow.DestinationAddress, t.addr)
	proto := uint64(1)
	if t.addr.Is6() {
		proto = 58
	}
	r.SetUint(flow.ProtocolIdentifier, proto)
	r.SetUint(flow.FlowStart, uint64(t.windowStart.UnixNano()))
	r.SetUint(flow.FlowEnd, uint64(now.UnixNano()))
	r.SetUint(flow.PacketDeltaCount, t.sent)
	r.SetUint(flow.OctetDeltaCount, t.sentOctets)
	r.SetUint(flow.ReversePacketDeltaCount, t.received)
	r.SetUint(flow.ReverseOctetDeltaCount, t.receivedOctets)
	if t.node != "" {
		r.SetString(flow.DestinationNodeName, t.node)
		if s.cfg.Kubernetes.NodeName != "" {
			r.SetString(flow.SourceNodeName, s.cfg.Kubernetes.NodeName)
		}
	}
	f64 := func(k flow.IEKey, v float64) {
		r.Extra = append(r.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element,
			Value: b.CopyBytes(binary.BigEndian.AppendUint64(nil, math.Float64bits(v)))})
	}
	u64 := func(k flow.IEKey, v uint64) {
		r.Extra = append(r.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element,
			Value: b.CopyBytes(binary.BigEndian.AppendUint64(nil, v))})
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	if t.addr.Is4() {
		r.Extra = append(r.Extra, flow.Field{Element: IEICMPTypeCodeIPv4.Element, Value: b.CopyBytes([]byte{8, 0})})
	} else {
		r.Extra = append(r.Extra, flow.Field{Element: IEICMPTypeCodeIPv6.Element, Value: b.CopyBytes([]byte{128, 0})})
	}
	if t.received > 0 {
		f64(IEMinimumRTT, ms(t.rttMin))
		f64(IEMeanRTT, ms(t.rttSum/time.Duration(t.received)))
		f64(IEMaximumRTT, ms(t.rttMax))
	}
	if t.hasRTT {
		f64(IELastRTT, ms(t.lastRTT))
	}
	u64(IELost, t.lost)
	if !t.lastSeen.IsZero() {
		u64(IELastReply, uint64(t.lastSeen.UnixMilli()))
	}
}

// Shutdown stops probing, emits a last report, removes the firewall rules
// and closes the sockets. It is idempotent.
func (s *Source) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	var errs []error
	if started {
		s.cancel()
		if err := plugin.AwaitShutdown(ctx, &s.wg, s.emitStop); err != nil {
			errs = append(errs, fmt.Errorf("%s: shutdown: %w", ID, err))
		}
	}
	s.emitStop()
	if s.firewall != nil {
		if err := s.firewall.remove(); err != nil {
			errs = append(errs, fmt.Errorf("%s: remove firewall rules: %w", ID, err))
		}
		s.firewall.close()
	}
	s.closeConns()
	if s.nodes != nil {
		s.nodes.stop()
	}
	return errors.Join(errs...)
}

// Stats is a target's statistics, for tests and debugging.
type Stats struct {
	Target               string // the metric label: Node name, target name or targets[I]
	Address              netip.Addr
	Sent, Received, Lost uint64 // since Start
	LastRTT              time.Duration
	LastSeen             time.Time
}

// Stats returns every target's totals, by label and address.
func (s *Source) Stats() []Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Stats
	for _, t := range s.sortedTargets() {
		out = append(out, Stats{Target: t.label, Address: t.addr, Sent: t.sentTotal, Received: t.recvTotal, Lost: t.lostTot, LastRTT: t.lastRTT, LastSeen: t.lastSeen})
	}
	return out
}

var _ plugin.Source = (*Source)(nil)
