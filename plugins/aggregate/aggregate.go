package aggregate

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "aggregate"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "correlate both Nodes' halves of a flow and aggregate records per flow (Antrea Flow Aggregator, RFC 7015)",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
		// One pipeline runs one mode of the Flow Aggregator.
		Excludes: []string{"proxy"},
	})
}

// IEs the aggregation writes (Antrea PEN 56506, go-ipfix v0.17.0's
// registry; IANA for RFC 7015's).
const (
	ieFromSourceNode               = 120 // packetTotalCountFromSourceNode … reverseOctetDeltaCountFromSourceNode
	ieFromDestinationNode          = 128 // the same eight, FromDestinationNode
	ieThroughput                   = 145 // throughput, reverseThroughput, then …FromSourceNode/…FromDestinationNode
	ieFlowEndSecondsFromSourceNode = 151 // dateTimeSeconds; …FromDestinationNode is 152
	ieOriginalFlowsPresent         = 375
	ieOriginalFlowsInitiated       = 376
	ieOriginalFlowsCompleted       = 377
)

// flowEndReason values (IANA IE 136, RFC 5102).
const (
	reasonIdle     = 1
	reasonActive   = 2
	reasonEnd      = 3
	reasonForced   = 4
	reasonResource = 5
)

// Antrea's flowType and NetworkPolicy rule action values.
const (
	flowTypeInterNode = 2
	actionDrop        = 2
	actionReject      = 3
)

// Aggregate is the aggregate processor. Process is safe for concurrent use
// (one lock per batch); it removes the records it holds from the batch and
// replaces a record with its flow's aggregated record when that record
// makes the flow ready (correlated, or not needing correlation) or ends it.
// Other exports leave through the emitter the engine gives it.
type Aggregate struct {
	log          *slog.Logger
	out          plugin.Emitter
	batchSize    int
	exportOldest bool
	active       uint32 // ms
	inactive     uint32
	corr         uint32
	every        time.Duration
	epoch        time.Time
	clock        func() time.Time
	m            *metrics

	mu      sync.Mutex
	tb      *table
	strs    *strtab // tcpState values and exporter addresses
	metas   *strtab // encoded metadata, see meta.go
	scratch []byte
	keep    []uint64
	keys    []key
	touch   uint8       // keeps the loads of Process's second pass
	pending *flow.Batch // exports Process made beyond its batch, emitted after it
	hand    uint32      // export-oldest sampling position
	lastExp struct {    // cache of the last exporter address looked up
		addr [16]byte
		id   uint32
	}
	fullLogged time.Time

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New returns an aggregate processor for a validated cfg.
func New(cfg *Config, set plugin.Settings) (*Aggregate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Aggregate{
		log:          set.Logger,
		batchSize:    set.BatchSize,
		exportOldest: cfg.WhenFull == "export-oldest",
		active:       ms(cfg.ActiveTimeout),
		inactive:     ms(cfg.InactiveTimeout),
		corr:         ms(cfg.CorrelationTimeout),
		clock:        time.Now,
		tb:           newTable(cfg.MaxFlows),
		strs:         newStrtab(),
		metas:        newStrtab(),
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.batchSize <= 0 {
		a.batchSize = flow.DefaultBatchSize
	}
	a.epoch = a.clock()
	// Check often enough that a flow leaves within a quarter of its
	// shortest timeout, at most once a second (as Antrea does).
	a.every = min(cfg.ActiveTimeout, cfg.InactiveTimeout, cfg.CorrelationTimeout) / 4
	a.every = max(min(a.every, time.Second), 5*time.Millisecond)
	m, err := newMetrics(set.Metrics, a)
	if err != nil {
		return nil, fmt.Errorf("aggregate: register metrics: %w", err)
	}
	a.m = m
	return a, nil
}

func ms(d time.Duration) uint32 { return uint32(min(d.Milliseconds(), math.MaxUint32/2)) }

// SetEmitter receives the engine's handle for records exported outside
// Process (plugin.Emitting).
func (a *Aggregate) SetEmitter(out plugin.Emitter) {
	a.out = out
	if n := out.BatchSize(); n > 0 {
		a.batchSize = n
	}
}

// Start starts the goroutine that exports flows on their timeouts.
func (a *Aggregate) Start(context.Context) error {
	if a.out == nil {
		return errors.New("aggregate: no emitter: the processor must run in a pipeline (plugin.Emitting)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(a.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.sweep(ctx, false)
			}
		}
	}()
	return nil
}

// Shutdown stops the timeouts and exports every live flow (flowEndReason
// 4, forced end) through the emitter. It is idempotent.
func (a *Aggregate) Shutdown(ctx context.Context) error {
	var err error
	a.stopOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		a.wg.Wait()
		err = a.sweep(ctx, true)
	})
	return err
}

// tick is the time in ms since New; differences of ticks are wrap-safe.
func (a *Aggregate) tick() uint32 { return uint32(a.clock().Sub(a.epoch).Milliseconds()) }

// Process aggregates b's records. Records held in the table leave b; a
// record whose flow becomes ready or ends is replaced by the flow's
// aggregated record; records without addresses pass unchanged (counted).
func (a *Aggregate) Process(ctx context.Context, b *flow.Batch) error {
	now := a.tick()
	n := b.Len()
	a.mu.Lock()
	words := (n + 63) / 64
	if cap(a.keep) < words {
		a.keep = make([]uint64, words)
	}
	keep := a.keep[:words]
	clear(keep)
	if cap(a.keys) < n {
		a.keys = make([]key, n)
	}
	keys := a.keys[:n]
	// Three passes so the cache misses of a batch overlap: keys and
	// hashes; then the index slots and entries they lead to, loads that
	// do not depend on each other; then the merging, which finds them in
	// cache.
	for i, r := range b.Records {
		k := &keys[i]
		k.ok = a.flowKey(r, &k.t, &k.scope)
		if k.ok {
			k.h = hash(&k.t, k.scope)
		}
	}
	var touch uint8
	for i := range keys {
		if !keys[i].ok {
			continue
		}
		if id, ok := a.tb.peek(keys[i].h); ok {
			touch += a.tb.at(id).t.proto
			if id&id6 != 0 {
				touch += a.tb.flows6.at(id &^ id6).iid[0][0]
			}
		}
	}
	a.touch = touch
	for i, r := range b.Records {
		if a.record(r, b, now, &keys[i]) {
			keep[i>>6] |= 1 << (i & 63)
		}
	}
	b.RetainMask(keep)
	pend := a.pending
	a.pending = nil
	a.mu.Unlock()
	if pend != nil {
		return a.emit(ctx, pend)
	}
	return nil
}

func (a *Aggregate) emit(ctx context.Context, b *flow.Batch) error {
	n := b.Len()
	if err := a.out.Emit(ctx, b); err != nil {
		a.m.lost.Add(float64(n))
		return fmt.Errorf("aggregate: emit %d records: %w", n, err)
	}
	return nil
}

// flowKey builds r's Flow Key; false when r has no addresses.
func (a *Aggregate) flowKey(r *flow.Record, t *tuple, scope *[2]uint32) bool {
	if !r.SourceAddress.IsValid() || !r.DestinationAddress.IsValid() {
		return false
	}
	t.src, t.dst = r.SourceAddress.As16(), r.DestinationAddress.As16()
	t.sport, t.dport, t.proto = r.SourceTransportPort, r.DestinationTransportPort, r.ProtocolIdentifier
	t.kind = kindUsed
	if !r.SourceAddress.Is4() || !r.DestinationAddress.Is4() {
		t.kind |= kindV6
	}
	if (t.proto == 1 || t.proto == 58) && t.dport == 0 {
		// ICMP has no ports: its type and code distinguish flows, as
		// NetFlow and nfdump key them (icmpTypeCodeIPv4/IPv6, IEs 32/139).
		el := uint16(32)
		if t.proto == 58 {
			el = 139
		}
		if f := r.FindExtra(flow.IEKey{Element: el}); f != nil && len(f.Value) == 2 {
			t.dport = uint16(f.Value[0])<<8 | uint16(f.Value[1])
			t.kind |= kindICMP
		}
	}
	if r.Present.Has(flow.FlowType) {
		t.kind |= kindAntrea
		return true
	}
	scope[0] = r.ObservationDomainID
	scope[1] = a.exporterID(r)
	return true
}

// exporterID is the interned index of r's exporter address, 0 when no flow
// has it yet.
func (a *Aggregate) exporterID(r *flow.Record) uint32 {
	ea := r.Exporter.Addr().Unmap().As16()
	if a.lastExp.id != 0 && a.lastExp.addr == ea && a.strs.get(a.lastExp.id) == string(ea[:]) {
		return a.lastExp.id
	}
	id := a.strs.ids[string(ea[:])]
	a.lastExp.addr, a.lastExp.id = ea, id
	return id
}

// correlation reports whether r is one half of an inter-Node flow that
// waits for the other (Antrea: flowType inter-Node, not denied by an egress
// rule nor rejected by an ingress rule, which the other Node never sees),
// and which half.
func correlation(r *flow.Record) (correlate, fromSource bool) {
	if r.FlowType != flowTypeInterNode || r.EgressNetworkPolicyRuleAction == actionDrop ||
		r.EgressNetworkPolicyRuleAction == actionReject || r.IngressNetworkPolicyRuleAction == actionReject {
		return false, false
	}
	src, dst := r.SourcePodName != "", r.DestinationPodName != ""
	if src == dst {
		return false, false // both Pods known (or neither): nothing to wait for
	}
	return true, src
}

// key is a record's Flow Key and its hash.
type key struct {
	t     tuple
	ok    bool
	scope [2]uint32
	h     uint64
}

// record aggregates one record; it reports whether r stays in the batch.
func (a *Aggregate) record(r *flow.Record, b *flow.Batch, now uint32, k *key) bool {
	if !k.ok {
		a.m.unkeyed.Inc()
		return true
	}
	t, scope, h := k.t, k.scope, k.h
	if t.kind&kindAntrea == 0 {
		// An earlier record of the batch may have interned (or released)
		// the exporter address since the first pass.
		if id := a.exporterID(r); id != scope[1] {
			scope[1] = id
			h = hash(&t, scope)
		}
	}
	correlate, fromSource := false, false
	if t.kind&kindAntrea != 0 {
		correlate, fromSource = correlation(r)
	}
	i, _, ok := a.tb.find(&t, scope, h)
	if ok {
		return a.update(i, r, b, now, correlate, fromSource)
	}
	// A new flow. Take its exporter reference first, so evicting the
	// oldest flow cannot free the exporter address this flow uses.
	if t.kind&kindAntrea == 0 {
		if scope[1] == 0 {
			ea := r.Exporter.Addr().Unmap().As16()
			scope[1] = a.strs.intern(ea[:])
			a.lastExp.addr, a.lastExp.id = ea, scope[1]
			h = hash(&t, scope)
		} else {
			a.strs.refs[scope[1]]++
		}
	}
	if a.tb.live >= a.tb.max {
		a.m.full.Inc()
		a.m.fullEvents.Add(1)
		a.logFull()
		if !a.exportOldest {
			// drop-new: the flow stays out of the table; its record
			// goes on as it is, marked lack of resources.
			if t.kind&kindAntrea == 0 {
				a.strs.release(scope[1])
			}
			r.SetUint(flow.FlowEndReason, reasonResource)
			return true
		}
		a.evictOldest(now)
	}
	_, slot, _ := a.tb.find(&t, scope, h)
	i = a.tb.insert(&t, scope, h, slot)
	return a.create(i, r, b, now, correlate, fromSource)
}

func (a *Aggregate) logFull() {
	if now := time.Now(); now.Sub(a.fullLogged) >= 10*time.Second {
		a.fullLogged = now
		policy := "drop-new"
		if a.exportOldest {
			policy = "export-oldest"
		}
		a.log.Warn("aggregate: flow table full; new flows are handled by when_full", "max_flows", a.tb.max,
			"when_full", policy, "events", a.m.fullCount())
	}
}

func (a *Aggregate) extOf(e *entry) *ext {
	if e.t.kind&kindAntrea != 0 && e.scope[0] != 0 {
		return a.tb.exts.at(e.scope[0] - 1)
	}
	return nil
}

// create fills the new entry i from its first record.
func (a *Aggregate) create(i uint32, r *flow.Record, b *flow.Batch, now uint32, correlate, fromSource bool) bool {
	e := a.tb.at(i)
	a.m.created.Inc()
	e.start = r.FlowStart
	if e.start == 0 {
		e.start = r.FlowEnd
	}
	if e.start == 0 {
		e.start = a.clock().UnixNano()
	}
	e.endOff = offset(r.FlowEnd, e.start)
	e.touched, e.exported = now, now
	a.scratch = appendMeta(a.scratch[:0], r)
	meta := a.metas.intern(a.scratch)
	sd := &e.s
	if correlate {
		xi := a.tb.exts.alloc()
		e.scope[0] = xi + 1
		e.ctrl |= ctrlCorrelate
		x := a.tb.exts.at(xi)
		if fromSource {
			e.meta = meta
			e.ctrl |= ctrlHaveSrc
			x.end[0] = endSeconds(r.FlowEnd)
		} else {
			x.meta = meta
			sd = &x.s
			e.ctrl |= ctrlHaveDst
			x.end[1] = endSeconds(r.FlowEnd)
		}
	} else {
		e.meta = meta
	}
	if e.t.kind&kindAntrea != 0 {
		e.scope[1] = a.strs.internString(r.TCPState)
	}
	addCounters(sd, r)
	e.present = 1
	e.origs = 1 << 4
	if completes(r.FlowEndReason) {
		e.origs |= 1
	}
	e.tcpFlags = uint8(r.TCPControlBits)
	e.flags = r.FlowEndReason & 7
	e.ctrl |= ctrlDirty
	ended := r.FlowEndReason == reasonEnd
	switch {
	case correlate:
		if ended && fromSource {
			e.ctrl |= ctrlEndSrc
		} else if ended {
			e.ctrl |= ctrlEndDst
		}
		return false
	case e.t.kind&kindAntrea != 0:
		// Ready at once: exported as soon as it arrives (Antrea #7997).
		return a.exportInPlace(i, r, b, now, ended)
	case ended:
		return a.exportInPlace(i, r, b, now, true)
	}
	return false
}

// update merges r into the live entry i.
func (a *Aggregate) update(i uint32, r *flow.Record, b *flow.Batch, now uint32, correlate, fromSource bool) bool {
	e := a.tb.at(i)
	x := a.extOf(e)
	sd := &e.s
	newly := false
	if e.ctrl&ctrlCorrelate != 0 && correlate {
		sn := 0
		if !fromSource {
			sn = 1
		}
		x.end[sn] = max(x.end[sn], endSeconds(r.FlowEnd))
		if fromSource {
			newly = e.ctrl&ctrlHaveSrc == 0
			if newly {
				a.scratch = appendMeta(a.scratch[:0], r)
				e.meta = a.metas.intern(a.scratch)
				e.ctrl |= ctrlHaveSrc
			}
		} else {
			sd = &x.s
			newly = e.ctrl&ctrlHaveDst == 0
			if newly {
				a.scratch = appendMeta(a.scratch[:0], r)
				x.meta = a.metas.intern(a.scratch)
				e.ctrl |= ctrlHaveDst
			}
		}
	}
	if overflows(sd, r) {
		// A delta would not fit its 32 bits: export what the entry has
		// first, as a NetFlow cache does on counter overflow.
		a.exportPending(i, reasonActive, now)
	}
	addCounters(sd, r)
	prevEnd := e.start + int64(e.endOff)*1e6
	if r.FlowStart != 0 && r.FlowStart < e.start {
		shift := offset(e.start, r.FlowStart)
		e.endOff += shift
		e.lastEnd += shift
		e.start = r.FlowStart
	}
	latest := false
	if end := offset(r.FlowEnd, e.start); end >= e.endOff {
		e.endOff, latest = end, true
	}
	if r.FlowStart > prevEnd {
		e.origs = min(e.origs>>4+1, 15)<<4 | e.origs&15 // a new original flow on this key
	}
	if completes(r.FlowEndReason) {
		e.origs = e.origs&0xf0 | min(e.origs&15+1, 15)
	}
	if e.present < math.MaxUint16 {
		e.present++
	}
	e.tcpFlags |= uint8(r.TCPControlBits)
	if e.flags&7 != reasonEnd {
		e.flags = e.flags&^7 | r.FlowEndReason&7
	}
	if e.t.kind&kindAntrea != 0 && latest && r.TCPState != "" && a.strs.get(e.scope[1]) != r.TCPState {
		a.strs.release(e.scope[1])
		e.scope[1] = a.strs.internString(r.TCPState)
	}
	e.touched = now
	e.ctrl |= ctrlDirty
	ended := r.FlowEndReason == reasonEnd
	if e.ctrl&ctrlCorrelate == 0 {
		if ended {
			return a.exportInPlace(i, r, b, now, true)
		}
		return false
	}
	if ended {
		if fromSource || !correlate {
			e.ctrl |= ctrlEndSrc
		} else {
			e.ctrl |= ctrlEndDst
		}
	}
	both := e.ctrl&(ctrlHaveSrc|ctrlHaveDst) == ctrlHaveSrc|ctrlHaveDst
	bothEnded := e.ctrl&(ctrlEndSrc|ctrlEndDst) == ctrlEndSrc|ctrlEndDst
	switch {
	case newly && both:
		a.m.correlated.Inc()
		return a.exportInPlace(i, r, b, now, bothEnded)
	case bothEnded, ended && e.ctrl&ctrlOrphan != 0:
		return a.exportInPlace(i, r, b, now, true)
	}
	return false
}

// endSeconds is a flowEnd (ns since the Unix epoch) in seconds, clamped to
// dateTimeSeconds' 32 bits.
func endSeconds(ns int64) uint32 {
	if ns <= 0 {
		return 0
	}
	return uint32(min(ns/1e9, math.MaxUint32))
}

// offset is t − start in ms, clamped to uint32.
func offset(t, start int64) uint32 {
	if t <= start {
		return 0
	}
	return uint32(min((t-start)/1e6, math.MaxUint32))
}

// completes reports whether a flowEndReason ends the original flow (RFC
// 7015 §7.3: every reason but an active timeout).
func completes(reason uint8) bool { return reason != 0 && reason != reasonActive }

// deltas returns r's four deltas, from its delta IEs or, for an exporter
// of totals only, as the growth of its totals over what sd holds.
func deltas(sd *side, r *flow.Record) (d [4]uint64) {
	d = [4]uint64{r.PacketDeltaCount, r.OctetDeltaCount, r.ReversePacketDeltaCount, r.ReverseOctetDeltaCount}
	t := [4]uint64{r.PacketTotalCount, r.OctetTotalCount, r.ReversePacketTotalCount, r.ReverseOctetTotalCount}
	fd := [4]flow.FieldID{flow.PacketDeltaCount, flow.OctetDeltaCount, flow.ReversePacketDeltaCount, flow.ReverseOctetDeltaCount}
	ft := [4]flow.FieldID{flow.PacketTotalCount, flow.OctetTotalCount, flow.ReversePacketTotalCount, flow.ReverseOctetTotalCount}
	for k := range 4 {
		if !r.Present.Has(fd[k]) && r.Present.Has(ft[k]) && t[k] >= sd.tot[k] {
			d[k] = t[k] - sd.tot[k]
		}
	}
	return d
}

func overflows(sd *side, r *flow.Record) bool {
	d := deltas(sd, r)
	for k := range 4 {
		if uint64(sd.del[k])+d[k] > math.MaxUint32 {
			return true
		}
	}
	return false
}

// addCounters merges r's counters into sd: deltas add up; totals take the
// exporter's newest total, or grow by the delta when it sends none.
func addCounters(sd *side, r *flow.Record) {
	d := deltas(sd, r)
	t := [4]uint64{r.PacketTotalCount, r.OctetTotalCount, r.ReversePacketTotalCount, r.ReverseOctetTotalCount}
	ft := [4]flow.FieldID{flow.PacketTotalCount, flow.OctetTotalCount, flow.ReversePacketTotalCount, flow.ReverseOctetTotalCount}
	for k := range 4 {
		sd.del[k] = uint32(min(uint64(sd.del[k])+d[k], math.MaxUint32))
		if r.Present.Has(ft[k]) {
			sd.tot[k] = max(sd.tot[k], t[k])
		} else {
			sd.tot[k] += d[k]
		}
	}
}

// exportInPlace turns r into entry i's aggregated record and, when evict,
// removes the flow. It reports true (r stays in the batch).
func (a *Aggregate) exportInPlace(i uint32, r *flow.Record, b *flow.Batch, now uint32, evict bool) bool {
	e := a.tb.at(i)
	reason := e.flags & 7
	if evict {
		reason = reasonEnd
	} else if reason == 0 || reason == reasonEnd {
		reason = reasonActive
	}
	a.write(r, b, i, reason)
	a.exported(e, reason, now)
	if evict {
		a.evict(i)
	}
	return true
}

// exportPending exports entry i through the pending batch.
func (a *Aggregate) exportPending(i uint32, reason uint8, now uint32) {
	if a.pending == nil {
		a.pending = a.out.NewBatch()
	}
	e := a.tb.at(i)
	a.write(a.pending.Append(), a.pending, i, reason)
	a.exported(e, reason, now)
}

// evictOldest makes room: it exports (flowEndReason 5) and evicts the
// least recently updated of up to 8 flows past a rotating hand.
func (a *Aggregate) evictOldest(now uint32) {
	n := a.tb.n()
	best, bestPos, bestAge, seen := uint32(0), uint32(0), int64(-1), 0
	for k := uint32(0); k < n && seen < 8; k++ {
		pos := (a.hand + k) % n
		j := a.tb.nth(pos)
		e := a.tb.at(j)
		if e.t.kind&kindUsed == 0 {
			continue
		}
		seen++
		if age := int64(now - e.touched); age > bestAge {
			best, bestPos, bestAge = j, pos, age
		}
	}
	if bestAge < 0 {
		return
	}
	a.hand = (bestPos + 1) % n
	e := a.tb.at(best)
	if e.ctrl&ctrlCorrelate != 0 && e.ctrl&(ctrlHaveSrc|ctrlHaveDst) != ctrlHaveSrc|ctrlHaveDst && e.ctrl&ctrlOrphan == 0 {
		a.m.uncorrelated.Inc()
	}
	a.exportPending(best, reasonResource, now)
	a.evict(best)
}

// evict removes flow i and releases its interned strings.
func (a *Aggregate) evict(i uint32) {
	e := a.tb.at(i)
	a.releaseMeta(e.meta)
	if x := a.extOf(e); x != nil {
		a.releaseMeta(x.meta)
	}
	a.strs.release(e.scope[1]) // tcpState (Antrea) or exporter address
	a.tb.remove(i)
}

func (a *Aggregate) releaseMeta(m uint32) { a.metas.release(m) }

// exported resets the entry's interval after an export.
func (a *Aggregate) exported(e *entry, reason uint8, now uint32) {
	e.s.del = [4]uint32{}
	if x := a.extOf(e); x != nil {
		x.s.del = [4]uint32{}
	}
	e.present, e.origs = 0, 0
	e.lastEnd = e.endOff
	e.exported = now
	e.ctrl &^= ctrlDirty
	a.m.exported[reason].Inc()
}

// write fills r (reset first) with flow id's aggregated record; IE values
// go to b's arena.
func (a *Aggregate) write(r *flow.Record, b *flow.Batch, id uint32, reason uint8) {
	r.Reset()
	e := a.tb.at(id)
	x := a.extOf(e)
	if e.meta != 0 {
		decodeMeta(r, a.metas.get(e.meta), false, b)
	}
	if x != nil && x.meta != 0 {
		decodeMeta(r, a.metas.get(x.meta), e.meta != 0, b)
	}
	srcAddr, dstAddr := a.tb.addrs(id)
	r.SetAddr(flow.SourceAddress, srcAddr)
	r.SetAddr(flow.DestinationAddress, dstAddr)
	r.SetUint(flow.SourceTransportPort, uint64(e.t.sport))
	if e.t.kind&kindICMP == 0 {
		r.SetUint(flow.DestinationTransportPort, uint64(e.t.dport))
	} else {
		r.SetUint(flow.DestinationTransportPort, 0)
	}
	r.SetUint(flow.ProtocolIdentifier, uint64(e.t.proto))
	if e.tcpFlags != 0 || e.t.proto == 6 {
		r.SetUint(flow.TCPControlBits, uint64(e.tcpFlags))
	}
	r.SetUint(flow.FlowEndReason, uint64(reason))
	r.SetUint(flow.FlowStart, uint64(e.start))
	r.SetUint(flow.FlowEnd, uint64(e.start+int64(e.endOff)*1e6))
	src, dst := &e.s, &e.s
	if x != nil {
		dst = &x.s
	}
	var del [4]uint64
	for k := range 4 {
		del[k] = uint64(max(src.del[k], dst.del[k]))
	}
	r.SetUint(flow.PacketDeltaCount, del[0])
	r.SetUint(flow.OctetDeltaCount, del[1])
	r.SetUint(flow.PacketTotalCount, max(src.tot[0], dst.tot[0]))
	r.SetUint(flow.OctetTotalCount, max(src.tot[1], dst.tot[1]))
	if e.t.kind&kindAntrea != 0 || src.tot[2]|src.tot[3]|dst.tot[2]|dst.tot[3] != 0 {
		r.SetUint(flow.ReversePacketDeltaCount, del[2])
		r.SetUint(flow.ReverseOctetDeltaCount, del[3])
		r.SetUint(flow.ReversePacketTotalCount, max(src.tot[2], dst.tot[2]))
		r.SetUint(flow.ReverseOctetTotalCount, max(src.tot[3], dst.tot[3]))
	}
	if e.t.kind&kindAntrea != 0 {
		if s := a.strs.get(e.scope[1]); s != "" {
			r.SetString(flow.TCPState, s)
		}
		// Per side: the newest totals and the deltas since the last
		// export, in the registry's order.
		for sn, sd := range [2]*side{src, dst} {
			base := uint16(ieFromSourceNode + 8*sn)
			vals := [8]uint64{sd.tot[0], sd.tot[1], uint64(sd.del[0]), uint64(sd.del[1]), sd.tot[2], sd.tot[3], uint64(sd.del[2]), uint64(sd.del[3])}
			for k, v := range vals {
				appendU64(r, b, flow.AntreaPEN, base+uint16(k), v)
			}
		}
		// Throughputs in bits/s over the interval since the last export
		// (flowEnd at that export, or flowStart), from octet deltas.
		interval := uint64(e.endOff - e.lastEnd)
		bps := func(octets uint64) uint64 {
			if interval == 0 {
				return 0
			}
			return octets * 8 * 1000 / interval
		}
		// Each Node's newest flowEnd; a flow that needs no correlation
		// has one exporter, which is both sides (as for the counters).
		ends := [2]uint32{endSeconds(e.start + int64(e.endOff)*1e6)}
		ends[1] = ends[0]
		if x != nil {
			ends = x.end
		}
		for sn, v := range ends {
			appendU32(r, b, flow.AntreaPEN, ieFlowEndSecondsFromSourceNode+uint16(sn), v)
		}
		srcDel, dstDel := uint64(src.del[1]), uint64(dst.del[1])
		srcRev, dstRev := uint64(src.del[3]), uint64(dst.del[3])
		for k, v := range [6]uint64{bps(del[1]), bps(del[3]), bps(srcDel), bps(dstDel), bps(srcRev), bps(dstRev)} {
			appendU64(r, b, flow.AntreaPEN, ieThroughput+uint16(k), v)
		}
	}
	appendU64(r, b, flow.IANA, ieOriginalFlowsPresent, uint64(e.present))
	appendU64(r, b, flow.IANA, ieOriginalFlowsInitiated, uint64(e.origs>>4))
	appendU64(r, b, flow.IANA, ieOriginalFlowsCompleted, uint64(e.origs&15))
}

func appendU32(r *flow.Record, b *flow.Batch, enterprise uint32, element uint16, v uint32) {
	var buf [4]byte
	binary.BigEndian.PutUint32(buf[:], v)
	r.Extra = append(r.Extra, flow.Field{Enterprise: enterprise, Element: element, Value: b.CopyBytes(buf[:])})
}

func appendU64(r *flow.Record, b *flow.Batch, enterprise uint32, element uint16, v uint64) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	r.Extra = append(r.Extra, flow.Field{Enterprise: enterprise, Element: element, Value: b.CopyBytes(buf[:])})
}

// sweep exports the flows whose timeouts passed, or every flow when final,
// through the emitter, a batch at a time; the lock is dropped between
// batches and every chunk of the slab so Process is not held up.
func (a *Aggregate) sweep(ctx context.Context, final bool) error {
	var errs []error
	a.mu.Lock()
	b := a.pending
	a.pending = nil
	if b == nil && a.out != nil {
		b = a.out.NewBatch()
	}
	now := a.tick()
	for _, fam := range [2]uint32{0, id6} {
		for j := uint32(0); j < a.tb.slabLen(fam); j++ {
			if b != nil && b.Len() >= a.batchSize || (j&(chunkSize-1) == chunkSize-1 && !final) {
				a.mu.Unlock()
				if b != nil && b.Len() > 0 {
					errs = append(errs, a.emit(ctx, b))
					b = a.out.NewBatch()
				}
				a.mu.Lock()
			}
			i := j | fam
			e := a.tb.at(i)
			if e.t.kind&kindUsed == 0 {
				continue
			}
			reason, export, evict := a.due(e, now, final)
			if export && b != nil {
				a.write(b.Append(), b, i, reason)
				a.exported(e, reason, now)
			} else if export {
				a.m.lost.Inc()
			}
			if evict {
				a.evict(i)
			}
		}
	}
	a.m.setGauges(a.tb, a.strs, a.metas)
	a.mu.Unlock()
	if b != nil {
		errs = append(errs, a.emit(ctx, b))
	}
	return errors.Join(errs...)
}

// due decides what happens to a flow at tick now.
func (a *Aggregate) due(e *entry, now uint32, final bool) (reason uint8, export, evict bool) {
	if final {
		if e.flags&7 == reasonEnd && e.ctrl&ctrlCorrelate == 0 {
			return reasonEnd, true, true
		}
		return reasonForced, true, true
	}
	idle := now-e.touched >= a.inactive
	since := now - e.exported
	dirty := e.ctrl&ctrlDirty != 0
	waiting := e.ctrl&ctrlCorrelate != 0 && e.ctrl&(ctrlHaveSrc|ctrlHaveDst) != ctrlHaveSrc|ctrlHaveDst && e.ctrl&ctrlOrphan == 0
	if waiting && (since >= a.corr || idle) {
		// The other Node's half never came: the half goes alone (Antrea's
		// aggregator would drop it after two retries). Its flowEndReason is
		// the half's own newest, as for any aggregated record: end of flow
		// or idle (the Node is done with it: evicted), else active (more
		// may come and merge).
		a.m.uncorrelated.Inc()
		e.ctrl |= ctrlOrphan
		switch {
		case e.ctrl&(ctrlEndSrc|ctrlEndDst) != 0:
			return reasonEnd, true, true
		case idle || e.flags&7 == reasonIdle:
			return reasonIdle, true, true
		}
		return reasonActive, true, false
	}
	if waiting {
		return 0, false, false
	}
	if idle {
		return reasonIdle, dirty, true
	}
	if since >= a.active && dirty {
		return reasonActive, true, false
	}
	return 0, false, false
}

var (
	_ plugin.Processor = (*Aggregate)(nil)
	_ plugin.Emitting  = (*Aggregate)(nil)
)
