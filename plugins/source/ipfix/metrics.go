package ipfix

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

// statsTotals accumulates the counters of decoders that are gone, so that
// the exported counters never go down when a TCP session closes.
type statsTotals struct {
	v [numStats]uint64
}

const numStats = 12

// statFields lists the decoder counters in metric order.
var statFields = [numStats]struct {
	name, help string
	get        func(*ipfix.Stats) *atomic.Uint64
}{
	{"messages_total", "IPFIX messages decoded, even partly.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.Messages }},
	{"malformed_messages_total", "IPFIX messages with a bad header or a set overrunning the message.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.MalformedMessages }},
	{"malformed_sets_total", "Sets skipped as malformed (bad set ID, length or template).", func(s *ipfix.Stats) *atomic.Uint64 { return &s.MalformedSets }},
	{"records_total", "Data records decoded.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.Records }},
	{"options_records_total", "Options data records consumed (not emitted).", func(s *ipfix.Stats) *atomic.Uint64 { return &s.OptionsRecords }},
	{"templates_total", "Template and options-template records stored.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.Templates }},
	{"template_withdrawals_total", "Template withdrawals (RFC 7011 §8.1).", func(s *ipfix.Stats) *atomic.Uint64 { return &s.Withdrawals }},
	{"pending_held_total", "Data sets held waiting for their template.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.PendingHeld }},
	{"pending_decoded_total", "Held data sets decoded when their template arrived.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.PendingDecoded }},
	{"pending_expired_total", "Held data sets dropped without their template (TTL or limit).", func(s *ipfix.Stats) *atomic.Uint64 { return &s.PendingExpired }},
	{"unknown_ies_total", "Template fields with an IE Weir has no name for (kept verbatim).", func(s *ipfix.Stats) *atomic.Uint64 { return &s.UnknownIEs }},
	{"times_approximated_total", "Records whose sysUpTime times were resolved before the exporter's systemInitTimeMilliseconds was known.", func(s *ipfix.Stats) *atomic.Uint64 { return &s.TimesApproximated }},
}

// maxUnknownIELabels bounds the ie label of weir_source_ipfix_unknown_ie_total:
// exporters choose IE numbers, so past this many distinct IEs the rest are
// counted under ie="other".
const maxUnknownIELabels = 256

// unknownIEs counts template fields per unknown IE, labelled
// "<enterprise>/<element>".
type unknownIEs struct {
	vec  *prometheus.CounterVec
	mu   sync.Mutex
	seen map[flow.IEKey]prometheus.Counter
}

func newUnknownIEs() *unknownIEs {
	return &unknownIEs{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_source_ipfix_unknown_ie_total",
			Help: "Template fields with an IE in no registry, by IE (enterprise/element); the IE is kept verbatim and the template accepted.",
		}, []string{"ie"}),
		seen: map[flow.IEKey]prometheus.Counter{},
	}
}

// observe is the decoders' UnknownIE hook; it runs when a template is
// stored, not per record.
func (u *unknownIEs) observe(k flow.IEKey) {
	u.mu.Lock()
	c, ok := u.seen[k]
	if !ok {
		label := "other"
		if len(u.seen) < maxUnknownIELabels {
			label = fmt.Sprintf("%d/%d", k.Enterprise, k.Element)
		}
		c = u.vec.WithLabelValues(label)
		u.seen[k] = c
	}
	u.mu.Unlock()
	c.Inc()
}

func (t *statsTotals) add(st *ipfix.Stats) {
	for i, f := range statFields {
		t.v[i] += f.get(st).Load()
	}
}

// Indices of statFields used outside the metrics.
const (
	statMessages          = 0
	statMalformedMessages = 1
	statMalformedSets     = 2
	statRecords           = 3
)

// sum returns counter i of statFields summed over live and retired
// decoders.
func (s *Source) sum(i int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.retired.v[i]
	for d := range s.decoders {
		n += statFields[i].get(d.Stats()).Load()
	}
	return n
}

func (s *Source) registerMetrics() error {
	var cs []prometheus.Collector
	for i, f := range statFields {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_source_ipfix_" + f.name,
			Help: f.help,
		}, func() float64 { return float64(s.sum(i)) }))
	}
	for _, c := range []struct {
		name, help string
		v          *atomic.Uint64
	}{
		{"kernel_drops_total", "Datagrams the kernel dropped because a UDP socket buffer was full (SO_RXQ_OVFL).", &s.kernelDrops},
		{"read_errors_total", "Socket read and accept errors other than timeouts.", &s.readErrors},
		{"tcp_framing_errors_total", "TCP sessions closed because the stream was not IPFIX (bad version or length).", &s.framingErrors},
		{"tcp_connections_total", "TCP connections accepted.", &s.connections},
		{"emit_errors_total", "Batches the pipeline did not accept (shutdown deadline passed).", &s.emitErrors},
		{"messages_not_allowed_total", "UDP messages refused because their exporter is not in allowed_exporters.", &s.notAllowed},
		{"lost_on_shutdown_records_total", "Records lost at shutdown: decoded but not accepted by the pipeline, or left in the UDP sockets or TCP connections past shutdown_drain.", &s.lostOnShutdown},
		{"lost_on_shutdown_messages_total", "Messages left in the UDP sockets or TCP connections past shutdown_drain (their records are in lost_on_shutdown_records_total).", &s.lostMessages},
		{"lost_on_shutdown_bytes_total", "Bytes left in TCP connections past shutdown_drain that form no whole message (a partial message, or what follows bad framing).", &s.lostBytes},
	} {
		v := c.v
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_source_ipfix_" + c.name,
			Help: c.help,
		}, func() float64 { return float64(v.Load()) }))
	}
	labelled := func(name, help, reason string, get func() uint64) {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_source_ipfix_" + name, Help: help, ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(get()) }))
	}
	for i := range numRefusals {
		labelled("tcp_connections_refused_total", "TCP connections refused, by reason (max_connections, max_connections_per_exporter, not_allowed).",
			refusalNames[i], s.refused[i].Load)
	}
	for i := range numTimeouts {
		labelled("tcp_timeouts_total", "TCP connections closed by a timeout, by reason (header: tcp_header_timeout, idle: tcp_idle_timeout).",
			timeoutNames[i], s.timeouts[i].Load)
	}
	for l := range ipfix.NumLimits {
		labelled("limit_refusals_total", "Sessions, templates or held data sets refused by a limit, by limit (reason).",
			l.String(), func() uint64 { return s.budget.Refused(l) })
	}
	for _, g := range []struct {
		name, help string
		get        func(ipfix.Usage) float64
	}{
		{"sessions", "Decoder sessions (exporter address:port and observation domain) held.", func(u ipfix.Usage) float64 { return float64(u.Sessions) }},
		{"template_bytes", "Estimated memory of the templates held, in bytes.", func(u ipfix.Usage) float64 { return float64(u.TemplateBytes) }},
		{"held_bytes", "Bytes of data sets held waiting for their template.", func(u ipfix.Usage) float64 { return float64(u.HeldBytes) }},
	} {
		get := g.get
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weir_source_ipfix_" + g.name, Help: g.help},
			func() float64 { return get(s.budget.Usage()) }))
	}
	cs = append(cs, s.unknown.vec)
	for _, c := range cs {
		if err := s.set.Metrics.Register(c); err != nil {
			return fmt.Errorf("%s: register metrics: %w", ID, err)
		}
	}
	return nil
}
