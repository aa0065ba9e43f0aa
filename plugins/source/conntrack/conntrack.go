package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "source.conntrack"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "Antrea FlowExporter's job: Linux conntrack dumps and events → a connection store → records with active/idle timeouts",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Errors of Start, matched with errors.Is.
var (
	// ErrNoCapability: the process lacks CAP_NET_ADMIN, which ctnetlink
	// requires.
	ErrNoCapability = errors.New("CAP_NET_ADMIN missing: reading conntrack over netlink needs root or CAP_NET_ADMIN (setcap cap_net_admin+ep, or systemd AmbientCapabilities=CAP_NET_ADMIN)")
	// ErrNoConntrack: the kernel (or the network namespace) has no
	// conntrack.
	ErrNoConntrack = errors.New("conntrack is not available: /proc/sys/net/netfilter/nf_conntrack_acct is absent (kernel without nf_conntrack: modprobe nf_conntrack)")
	// ErrAccountingOff: nf_conntrack_acct is 0, so every counter would be 0.
	ErrAccountingOff = errors.New("conntrack accounting is off (net.netfilter.nf_conntrack_acct = 0), so every counter would be 0: run sysctl -w net.netfilter.nf_conntrack_acct=1 or set enable_accounting: true")
)

// IEs without a typed field that the records carry (Antrea's template).
var (
	ieFlowStartSeconds = flow.IEKey{Enterprise: flow.IANA, Element: 150}
	ieFlowEndSeconds   = flow.IEKey{Enterprise: flow.IANA, Element: 151}
	ieEgressName       = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 153}
	ieEgressIP         = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 154}
	ieAppProtocolName  = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 155}
	ieHTTPVals         = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 156}
	// IECtZone and IECtMark are the conntrack zone (unsigned16) and mark
	// (unsigned32), sent with ct_ies: true. Antrea's registry has no such
	// IEs; Weir numbers them in Antrea's PEN from the top of the range.
	IECtZone = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32000}
	IECtMark = flow.IEKey{Enterprise: flow.AntreaPEN, Element: 32001}
)

// flowType values (Antrea IE 137).
const (
	flowTypeUnknown      uint8 = 0
	flowTypeIntraNode    uint8 = 1
	flowTypeInterNode    uint8 = 2
	flowTypeToExternal   uint8 = 3
	flowTypeFromExternal uint8 = 4
	reasonForcedEnd      uint8 = 4 // flowEndReason at shutdown (RFC 5102)
)

// Source is the source.conntrack plugin. Create it with [New].
type Source struct {
	cfg  Config
	set  plugin.Settings
	log  *slog.Logger
	tout timeouts

	zones    []uint16
	zoneSet  *[1 << 16]bool // nil: every zone
	protoSet *[256]bool     // nil: every protocol (set by PushDown)
	podCIDRs []netip.Prefix
	nodeCIDR []netip.Prefix

	mu         sync.Mutex
	started    bool
	stopped    bool
	cancel     context.CancelFunc
	emitCtx    context.Context // cancelled only if Shutdown's ctx ends first
	emitCancel context.CancelFunc
	wg         sync.WaitGroup

	// Owned by the run goroutine.
	store      *store
	dumper     *dumper
	eventConn  *netfilter.Conn
	requests   []dumpRequest
	kernelOK   bool
	lastDump   int64 // ns: start of the last complete dump
	out        plugin.Emitter
	batch      *flow.Batch
	batchFirst time.Time
	fullLogged time.Time

	m metrics
}

type metrics struct {
	connections     atomic.Int64
	polls           atomic.Uint64
	pollErrors      atomic.Uint64
	dumped          atomic.Uint64
	events          atomic.Uint64
	eventsLost      atomic.Uint64
	eventsUnmatched atomic.Uint64
	storeFull       atomic.Uint64
	filtered        [numFilterReasons]atomic.Uint64
	records         [5]atomic.Uint64 // by flowEndReason
	emitLost        atomic.Uint64
	pollDuration    prometheus.Histogram
}

type filterReason uint8

const (
	filteredZone filterReason = iota
	filteredMark
	filteredProtocol
	numFilterReasons
)

func (r filterReason) String() string {
	return [...]string{"zone", "mark", "protocol"}[r]
}

var reasonNames = [5]string{"", "idle", "active", "end_of_flow", "forced_end"}

// New checks cfg and registers the metrics; nothing touches the kernel
// before Start.
func New(cfg *Config, set plugin.Settings) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{
		cfg:   *cfg,
		set:   set,
		log:   set.Logger,
		store: newStore(cfg.MaxConnections),
		tout: timeouts{
			active:   int64(cfg.ActiveTimeout),
			idle:     int64(cfg.IdleTimeout),
			newGrace: int64(max(2*cfg.PollInterval, 2*time.Minute)),
		},
	}
	if len(cfg.Zones) > 0 {
		s.zoneSet = new([1 << 16]bool)
		for _, z := range cfg.Zones {
			if !s.zoneSet[z] {
				s.zones = append(s.zones, uint16(z))
			}
			s.zoneSet[z] = true
		}
		slices.Sort(s.zones)
	}
	s.emitCtx, s.emitCancel = context.WithCancel(context.Background())
	for _, c := range cfg.PodCIDRs {
		s.podCIDRs = append(s.podCIDRs, netip.MustParsePrefix(c).Masked())
	}
	for _, c := range cfg.NodeCIDR {
		s.nodeCIDR = append(s.nodeCIDR, netip.MustParsePrefix(c).Masked())
	}
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	return s, nil
}

// PushDown takes the protocol set of a filter.protocol (any
// [plugin.ProtocolSelector]) that directly follows the source: connections
// of other protocols are never stored nor built into records, and the
// kernel dump asks only for the selected ones when they are few. The
// processor still runs, so the pipeline's output is the same.
func (s *Source) PushDown(next plugin.Processor) {
	sel, ok := next.(plugin.ProtocolSelector)
	if !ok {
		return
	}
	set, all := sel.SelectedProtocols()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || all {
		return
	}
	s.protoSet = &set
	s.log.Info("protocol filter pushed down", "protocols", protoList(&set))
}

func protoList(set *[256]bool) []int {
	var l []int
	for p, ok := range set {
		if ok {
			l = append(l, p)
		}
	}
	return l
}

// Start checks privileges and the kernel's conntrack, opens the netlink
// sockets and starts polling. Its errors name the cause:
// [ErrNoCapability], [ErrNoConntrack], [ErrAccountingOff].
func (s *Source) Start(_ context.Context, out plugin.Emitter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("%s: start after shutdown", ID)
	}
	if s.started {
		return fmt.Errorf("%s: started twice", ID)
	}
	if err := s.preflight(); err != nil {
		return fmt.Errorf("%s: %w", ID, err)
	}
	err := inNetNS(s.cfg.NetNS, func() error {
		var err error
		if s.dumper, err = newDumper(); err != nil {
			return fmt.Errorf("open ctnetlink socket: %w", err)
		}
		if !s.cfg.Events {
			return nil
		}
		if s.eventConn, err = netfilter.Dial(nil); err != nil {
			return fmt.Errorf("open ctnetlink event socket: %w", err)
		}
		if s.cfg.EventBuffer > 0 {
			if err := s.eventConn.SetReadBuffer(s.cfg.EventBuffer); err != nil {
				s.log.Warn("event socket buffer", "bytes", s.cfg.EventBuffer, "err", err)
			}
		}
		if err := s.eventConn.JoinGroups([]netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy}); err != nil {
			return fmt.Errorf("join conntrack event groups: %w", err)
		}
		return nil
	})
	if err != nil {
		s.closeConns()
		return fmt.Errorf("%s: %w", ID, err)
	}
	// A first dump now, so that a refusal is Start's error.
	s.requests = s.buildRequests()
	s.kernelOK = true
	s.out = out
	s.batch = out.NewBatch()
	if err := s.poll(); err != nil {
		s.closeConns()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w: %w", ErrNoCapability, err)
		}
		return fmt.Errorf("%s: first dump: %w", ID, err)
	}
	tracked := s.store.Len() // before the run goroutine owns the store
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.started = true
	events := make(chan ct.Event, 4096)
	resync := make(chan struct{}, 1)
	if s.eventConn != nil {
		s.wg.Add(1)
		go s.readEvents(ctx, events, resync)
	}
	s.wg.Add(1)
	go s.run(ctx, events, resync)
	s.log.Info("reading conntrack", "poll_interval", s.cfg.PollInterval, "events", s.cfg.Events,
		"connections", tracked, "dump_requests", len(s.requests))
	return nil
}

// preflight checks what would otherwise make every record wrong or every
// dump fail.
func (s *Source) preflight() error {
	if s.cfg.NetNS != "" {
		if _, err := os.Stat(s.cfg.NetNS); err != nil {
			return fmt.Errorf("netns: %w", err)
		}
	}
	capOK, err := hasCapNetAdmin()
	if err != nil {
		return err
	}
	if !capOK {
		return ErrNoCapability
	}
	acct, err := readSysctl(s.cfg.NetNS, "net.netfilter.nf_conntrack_acct")
	switch {
	case errors.Is(err, os.ErrNotExist):
		return ErrNoConntrack
	case err != nil:
		return fmt.Errorf("read net.netfilter.nf_conntrack_acct: %w", err)
	case acct == "0" && s.cfg.EnableAccounting:
		if err := writeSysctl(s.cfg.NetNS, "net.netfilter.nf_conntrack_acct", "1"); err != nil {
			return fmt.Errorf("enable_accounting: set net.netfilter.nf_conntrack_acct=1: %w", err)
		}
		s.log.Warn("conntrack accounting enabled (net.netfilter.nf_conntrack_acct=1); connections created before have no counters")
	case acct == "0":
		return ErrAccountingOff
	}
	if s.cfg.EnableTimestamp {
		if ts, err := readSysctl(s.cfg.NetNS, "net.netfilter.nf_conntrack_timestamp"); err == nil && ts == "0" {
			if err := writeSysctl(s.cfg.NetNS, "net.netfilter.nf_conntrack_timestamp", "1"); err != nil {
				return fmt.Errorf("enable_timestamp: set net.netfilter.nf_conntrack_timestamp=1: %w", err)
			}
		}
	}
	return nil
}

// buildRequests plans the kernel dumps of one poll: one per selected
// protocol × family (ctnetlink filters a protocol within one family only) ×
// zone, with the mark, when that is at most maxKernelFilters requests;
// else one dump with the mark only.
func (s *Source) buildRequests() []dumpRequest {
	type pf struct {
		proto  int
		family netfilter.ProtoFamily
	}
	protos := []pf{{-1, netfilter.ProtoUnspec}}
	if s.protoSet != nil {
		protos = nil
		for _, p := range protoList(s.protoSet) {
			protos = append(protos, pf{p, netfilter.ProtoIPv4}, pf{p, netfilter.ProtoIPv6})
		}
	}
	zones := []int{-1}
	if len(s.zones) > 0 {
		zones = nil
		for _, z := range s.zones {
			zones = append(zones, int(z))
		}
	}
	if len(protos)*len(zones) > maxKernelFilters {
		protos, zones = []pf{{-1, netfilter.ProtoUnspec}}, []int{-1}
	}
	var reqs []dumpRequest
	for _, p := range protos {
		for _, z := range zones {
			reqs = append(reqs, dumpRequest{family: p.family, proto: p.proto, zone: z, mark: s.cfg.Mark.Mask != 0,
				markVal: s.cfg.Mark.Value, markMask: s.cfg.Mark.Mask})
		}
	}
	return reqs
}

// keep applies the zone, mark and protocol filters, counting what they
// drop.
func (s *Source) keep(f *ctFlow) bool {
	switch {
	case s.zoneSet != nil && !s.zoneSet[f.key.zone]:
		s.m.filtered[filteredZone].Add(1)
		return false
	case f.mark&s.cfg.Mark.Mask != s.cfg.Mark.Value:
		s.m.filtered[filteredMark].Add(1)
		return false
	case s.protoSet != nil && !s.protoSet[f.key.proto]:
		s.m.filtered[filteredProtocol].Add(1)
		return false
	}
	return true
}

// poll dumps the table into the store and exports what is due.
func (s *Source) poll() error {
	start := time.Now()
	now := start.UnixNano()
	s.store.beginDump()
	var n uint64
	observe := func(f *ctFlow) {
		n++
		if !s.keep(f) {
			return
		}
		if _, res := s.store.observe(f, now); res == observedFull {
			s.full()
		}
	}
	var err error
	if s.kernelOK {
		for _, r := range s.requests {
			if err = s.dumper.dump(r, observe); err != nil {
				break
			}
		}
		if err != nil && isRefused(err) && (len(s.requests) > 1 || s.requests[0] != (dumpRequest{proto: -1, zone: -1})) {
			s.log.Warn("the kernel refuses filtered conntrack dumps; filtering in user space", "err", err)
			s.kernelOK = false
			err = nil
		}
	}
	if !s.kernelOK {
		err = s.dumper.dump(dumpRequest{proto: -1, zone: -1}, observe)
	}
	s.m.polls.Add(1)
	s.m.dumped.Add(n)
	s.m.pollDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.pollErrors.Add(1)
		// Unseen entries are not gone: the dump was incomplete.
		s.store.expire(now, false, s.tout, s.emit(now))
		s.m.connections.Store(int64(s.store.Len()))
		return fmt.Errorf("dump conntrack: %w", err)
	}
	s.lastDump = now
	s.store.expire(now, true, s.tout, s.emit(now))
	s.m.connections.Store(int64(s.store.Len()))
	return nil
}

func (s *Source) full() {
	s.m.storeFull.Add(1)
	if time.Since(s.fullLogged) >= time.Minute {
		s.fullLogged = time.Now()
		s.log.Warn("connection store full: new connections are not tracked until room frees up",
			"max_connections", s.cfg.MaxConnections, "refused_total", s.m.storeFull.Load())
	}
}

// emit returns the store's export callback for time now.
func (s *Source) emit(now int64) func(e *entry, reason uint8) {
	return func(e *entry, reason uint8) {
		end := e.changed
		if reason == reasonActive || reason == reasonForcedEnd {
			end = max(end, now)
		}
		s.appendRecord(e, reason, end)
	}
}

// readEvents receives conntrack events until ctx ends. A full socket
// buffer (ENOBUFS) loses events: they are counted and a dump is asked for.
func (s *Source) readEvents(ctx context.Context, events chan<- ct.Event, resync chan<- struct{}) {
	defer s.wg.Done()
	var lostLogged time.Time
	for {
		msgs, err := s.eventConn.Receive()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				n := s.m.eventsLost.Add(1)
				if time.Since(lostLogged) >= time.Minute {
					lostLogged = time.Now()
					s.log.Warn("conntrack events lost: the event socket's buffer overflowed (ENOBUFS); dumping the table to resync (raise event_buffer if this repeats)",
						"event_buffer", s.cfg.EventBuffer, "overflows_total", n)
				}
				select {
				case resync <- struct{}{}:
				default:
				}
				continue
			}
			s.log.Error("conntrack events stopped", "err", err)
			return
		}
		for _, m := range msgs {
			var ev ct.Event
			if err := ev.Unmarshal(m); err != nil || ev.Flow == nil {
				continue
			}
			s.m.events.Add(1)
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// event applies a new or destroy event to the store.
func (s *Source) event(ev ct.Event) {
	var f ctFlow
	fromTiMo(ev.Flow, &f)
	if !f.tupleOK || !s.keep(&f) {
		return
	}
	now := time.Now().UnixNano()
	switch ev.Type {
	case ct.EventNew:
		if s.store.lookup(&f.key) != nil {
			return
		}
		e, res := s.store.observe(&f, now)
		if res == observedFull {
			s.full()
			return
		}
		// Not seen by a dump yet: keep the last dump's parity and wait.
		e.flags = (e.flags &^ fSeen) | (s.store.parity ^ fSeen) | fNew
	case ct.EventDestroy:
		e := s.store.lookup(&f.key)
		if e == nil {
			// Unknown: either removed already (its end was exported) or never
			// seen. Only a start after the last dump proves the latter.
			if f.start == 0 || f.start <= s.lastDump {
				s.m.eventsUnmatched.Add(1)
				return
			}
			var res observeResult
			if e, res = s.store.observe(&f, now); res == observedFull {
				s.full()
				return
			}
		} else {
			s.store.observe(&f, now)
		}
		if f.stop != 0 {
			e.changed = f.stop
		} else if e.news() {
			e.changed = now
		}
		e.flags |= fEnded
		s.store.expire(now, false, s.tout, s.emit(now))
		s.m.connections.Store(int64(s.store.Len()))
	}
}

func (s *Source) run(ctx context.Context, events <-chan ct.Event, resync <-chan struct{}) {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	timeout := s.out.BatchTimeout()
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	flushTick := time.NewTicker(timeout)
	defer flushTick.Stop()
	pollErrLogged := time.Time{}
	doPoll := func() {
		if err := s.poll(); err != nil && time.Since(pollErrLogged) >= time.Minute {
			pollErrLogged = time.Now()
			s.log.Error("conntrack poll", "err", err, "errors_total", s.m.pollErrors.Load())
		}
		s.flush(s.emitCtx)
	}
	s.flush(s.emitCtx)
	for {
		select {
		case <-ctx.Done():
			// Shutdown: export what has news, then the pending batch.
			now := time.Now().UnixNano()
			emit := s.emit(now)
			for i := 0; i < s.store.n; i++ {
				if e := s.store.at(i); e.news() || e.flags&fExported == 0 {
					emit(e, reasonForcedEnd)
					e.markExported(now)
				}
			}
			s.flush(s.emitCtx)
			return
		case <-tick.C:
			doPoll()
		case <-resync:
			doPoll()
		case ev := <-events:
			s.event(ev)
		case <-flushTick.C:
			if s.batch.Len() > 0 && time.Since(s.batchFirst) >= timeout {
				s.flush(s.emitCtx)
			}
		}
	}
}

// flush emits the pending batch.
func (s *Source) flush(ctx context.Context) {
	if s.batch.Len() == 0 {
		return
	}
	n := s.batch.Len()
	if err := s.out.Emit(ctx, s.batch); err != nil {
		s.m.emitLost.Add(uint64(n))
		s.log.Error("emit batch", "records", n, "err", err)
	}
	s.batch = s.out.NewBatch()
}

// appendRecord builds the record of e: Antrea FlowExporter's IEs (IANA,
// reverse and Antrea), with the Pod/policy fields empty for enrichers to
// fill.
func (s *Source) appendRecord(e *entry, reason uint8, end int64) {
	if s.batch.Len() == 0 {
		s.batchFirst = time.Now()
	}
	b := s.batch
	r := b.Append()
	src, dst := e.addrs()
	r.SourceAddress, r.DestinationAddress = src, dst
	if e.proto == unix.IPPROTO_ICMP || e.proto == unix.IPPROTO_ICMPV6 {
		r.SourceTransportPort, r.DestinationTransportPort = 0, 0
	} else {
		r.SourceTransportPort, r.DestinationTransportPort = e.sport, e.dport
	}
	r.ProtocolIdentifier = e.proto
	r.FlowEndReason = reason
	r.PacketTotalCount, r.OctetTotalCount = e.packets, e.octets
	r.PacketDeltaCount, r.OctetDeltaCount = e.packets-e.xpackets, e.octets-e.xoctets
	r.ReversePacketTotalCount, r.ReverseOctetTotalCount = e.rpackets, e.roctets
	r.ReversePacketDeltaCount, r.ReverseOctetDeltaCount = e.rpackets-e.xrpackets, e.roctets-e.xroctets
	if e.proto == unix.IPPROTO_TCP {
		r.TCPState = tcpStateName(e.tcpState)
	}
	r.FlowType = s.flowType(src, dst)
	if e.family == 4 {
		r.DestinationClusterIP = netip.IPv4Unspecified()
	} else {
		r.DestinationClusterIP = netip.IPv6Unspecified()
	}
	r.Present = antreaFields
	var t [4]byte
	binary.BigEndian.PutUint32(t[:], uint32(e.start/1e9))
	r.Extra = append(r.Extra, flow.Field{Element: ieFlowStartSeconds.Element, Value: b.CopyBytes(t[:])})
	binary.BigEndian.PutUint32(t[:], uint32(end/1e9))
	r.Extra = append(r.Extra, flow.Field{Element: ieFlowEndSeconds.Element, Value: b.CopyBytes(t[:])})
	for _, k := range [...]flow.IEKey{ieEgressName, ieEgressIP, ieAppProtocolName, ieHTTPVals} {
		r.Extra = append(r.Extra, flow.Field{Enterprise: k.Enterprise, Element: k.Element, Variable: true})
	}
	if s.cfg.CtIEs {
		binary.BigEndian.PutUint16(t[:2], e.zone)
		r.Extra = append(r.Extra, flow.Field{Enterprise: IECtZone.Enterprise, Element: IECtZone.Element, Value: b.CopyBytes(t[:2])})
		binary.BigEndian.PutUint32(t[:], e.mark)
		r.Extra = append(r.Extra, flow.Field{Enterprise: IECtMark.Enterprise, Element: IECtMark.Element, Value: b.CopyBytes(t[:])})
	}
	s.m.records[reason].Add(1)
	if b.Len() >= s.out.BatchSize() {
		s.flush(s.emitCtx)
	}
}

// antreaFields are the typed fields of every record: Antrea FlowExporter's
// template, whose Pod, Service and policy fields start empty.
var antreaFields = func() flow.FieldSet {
	var s flow.FieldSet
	for _, f := range []flow.FieldID{
		flow.SourceAddress, flow.DestinationAddress, flow.SourceTransportPort, flow.DestinationTransportPort,
		flow.ProtocolIdentifier, flow.FlowEndReason,
		flow.OctetDeltaCount, flow.PacketDeltaCount, flow.OctetTotalCount, flow.PacketTotalCount,
		flow.ReverseOctetDeltaCount, flow.ReversePacketDeltaCount, flow.ReverseOctetTotalCount, flow.ReversePacketTotalCount,
		flow.SourcePodNamespace, flow.SourcePodName, flow.DestinationPodNamespace, flow.DestinationPodName,
		flow.SourceNodeName, flow.DestinationNodeName, flow.DestinationClusterIP, flow.DestinationServicePort,
		flow.DestinationServicePortName, flow.IngressNetworkPolicyName, flow.IngressNetworkPolicyNamespace,
		flow.IngressNetworkPolicyRuleName, flow.IngressNetworkPolicyRuleAction, flow.IngressNetworkPolicyType,
		flow.EgressNetworkPolicyName, flow.EgressNetworkPolicyNamespace, flow.EgressNetworkPolicyRuleName,
		flow.EgressNetworkPolicyRuleAction, flow.EgressNetworkPolicyType, flow.TCPState, flow.FlowType,
	} {
		s.Add(f)
	}
	return s
}()

// flowType classifies a connection from the configured CIDRs (Antrea IE
// 137).
func (s *Source) flowType(src, dst netip.Addr) uint8 {
	if len(s.podCIDRs) == 0 {
		return flowTypeUnknown
	}
	srcPod, dstPod := in(s.podCIDRs, src), in(s.podCIDRs, dst)
	srcLocal, dstLocal := in(s.nodeCIDR, src), in(s.nodeCIDR, dst)
	switch {
	case srcLocal && dstLocal:
		return flowTypeIntraNode
	case srcPod && dstPod:
		return flowTypeInterNode
	case srcPod:
		return flowTypeToExternal
	case dstPod:
		return flowTypeFromExternal
	}
	return flowTypeUnknown
}

func in(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Source) closeConns() {
	if s.dumper != nil {
		s.dumper.Close()
	}
	if s.eventConn != nil {
		s.eventConn.Close()
	}
}

// Shutdown stops polling, exports every connection with unexported
// traffic (flowEndReason 4, forced end) and emits the last batch.
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
		s.emitCancel()
		return nil
	}
	s.cancel()
	if s.eventConn != nil {
		s.eventConn.Close() // unblocks Receive
	}
	var err error
	if werr := plugin.AwaitShutdown(ctx, &s.wg, s.emitCancel); werr != nil {
		err = fmt.Errorf("%s: shutdown: %w", ID, werr)
	}
	s.emitCancel()
	if s.dumper != nil {
		s.dumper.Close()
	}
	return err
}

// Stats is a snapshot of the source's counters, for tests and logs.
type Stats struct {
	Connections, Polls, Dumped, Events, EventsLost, EventsUnmatched, StoreFull uint64
	Filtered                                                                   map[string]uint64
}

// Stats returns the source's counters.
func (s *Source) Stats() Stats {
	st := Stats{
		Connections: uint64(s.m.connections.Load()), Polls: s.m.polls.Load(), Dumped: s.m.dumped.Load(),
		Events: s.m.events.Load(), EventsLost: s.m.eventsLost.Load(), EventsUnmatched: s.m.eventsUnmatched.Load(),
		StoreFull: s.m.storeFull.Load(), Filtered: map[string]uint64{},
	}
	for r := filterReason(0); r < numFilterReasons; r++ {
		st.Filtered[r.String()] = s.m.filtered[r].Load()
	}
	return st
}

func (s *Source) registerMetrics() error {
	const p = "weir_source_conntrack_"
	s.m.pollDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: p + "poll_duration_seconds", Help: "Time to dump the conntrack table and update the connection store.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: p + name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		s.m.pollDuration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "connections", Help: "Connections in the store."},
			func() float64 { return float64(s.m.connections.Load()) }),
		counter("polls_total", "Dumps of the conntrack table.", &s.m.polls),
		counter("poll_errors_total", "Dumps that failed or ended early.", &s.m.pollErrors),
		counter("dumped_connections_total", "Connections read by dumps, before filtering.", &s.m.dumped),
		counter("events_total", "Conntrack events received (new and destroy).", &s.m.events),
		counter("events_lost_total", "Times the event socket overflowed (ENOBUFS): events were lost and a dump followed.", &s.m.eventsLost),
		counter("events_unmatched_total", "Destroy events of connections no longer (or never) in the store, ignored.", &s.m.eventsUnmatched),
		counter("store_full_total", "New connections not tracked because the store held max_connections.", &s.m.storeFull),
		counter("emit_lost_records_total", "Records the pipeline did not accept (shutdown deadline passed).", &s.m.emitLost),
		&labelled{desc: prometheus.NewDesc(p+"filtered_total", "Connections dropped by the zones, mark or pushed-down protocol filter, before any record is built.", []string{"reason"}, nil),
			n: int(numFilterReasons), get: func(i int) (string, uint64) { return filterReason(i).String(), s.m.filtered[i].Load() }},
		&labelled{desc: prometheus.NewDesc(p+"records_total", "Records built, by flowEndReason.", []string{"reason"}, nil),
			n: 4, get: func(i int) (string, uint64) { return reasonNames[i+1], s.m.records[i+1].Load() }},
	}
	for _, c := range cs {
		if err := s.set.Metrics.Register(c); err != nil {
			return fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return nil
}

// labelled exports counters with a reason label.
type labelled struct {
	desc *prometheus.Desc
	n    int
	get  func(int) (string, uint64)
}

func (l *labelled) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *labelled) Collect(ch chan<- prometheus.Metric) {
	for i := 0; i < l.n; i++ {
		name, v := l.get(i)
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.CounterValue, float64(v), name)
	}
}

var (
	_ plugin.Source   = (*Source)(nil)
	_ plugin.Pushdown = (*Source)(nil)
)
