package icmpprobe

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics exports per-target gauges and counters, labelled target (the
// Node name, the named_targets name or "targets[I]") and family (ipv4,
// ipv6): a bounded set the operator configures, and never an address.
type metrics struct {
	s                                            *Source
	rttLast, rttMin, rttMean, rttMax, loss, seen *prometheus.Desc
	sent, received, lostTotal                    *prometheus.Desc
	records, lost                                prometheus.Counter
}

func newMetrics(s *Source) *metrics {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("weir_source_icmpprobe_"+name, help, []string{"target", "family"}, nil)
	}
	return &metrics{
		s:         s,
		rttLast:   d("rtt_last_seconds", "Round-trip time of the target's last echo reply."),
		rttMin:    d("rtt_min_seconds", "Smallest round-trip time of the last report window (NaN without replies)."),
		rttMean:   d("rtt_avg_seconds", "Mean round-trip time of the last report window (NaN without replies)."),
		rttMax:    d("rtt_max_seconds", "Largest round-trip time of the last report window (NaN without replies)."),
		loss:      d("loss_ratio", "Lost requests over answered and lost ones, in the last report window (NaN without outcomes)."),
		seen:      d("last_seen_timestamp_seconds", "When the target's last echo reply came, seconds since the epoch (0: never)."),
		sent:      d("requests_total", "Echo requests sent to the target."),
		received:  d("replies_total", "Echo replies received in time."),
		lostTotal: d("lost_total", "Echo requests without a reply within the timeout."),
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_source_icmpprobe_records_total",
			Help: "Probe records emitted."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_source_icmpprobe_emit_lost_records_total",
			Help: "Probe records the pipeline did not accept (shutdown deadline passed)."}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.rttLast, m.rttMin, m.rttMean, m.rttMax, m.loss, m.seen, m.sent, m.received, m.lostTotal} {
		ch <- d
	}
	m.records.Describe(ch)
	m.lost.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.s.mu.Lock()
	for _, t := range m.s.sortedTargets() {
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, t.label, family(t.addr))
		}
		c := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), t.label, family(t.addr))
		}
		last := math.NaN()
		if t.hasRTT {
			last = t.lastRTT.Seconds()
		}
		g(m.rttLast, last)
		g(m.rttMin, orNaN(t.gMin, t))
		g(m.rttMean, orNaN(t.gMean, t))
		g(m.rttMax, orNaN(t.gMax, t))
		g(m.loss, orNaN(t.gLoss, t))
		seen := 0.0
		if !t.lastSeen.IsZero() {
			seen = float64(t.lastSeen.UnixNano()) / 1e9
		}
		g(m.seen, seen)
		c(m.sent, t.sentTotal)
		c(m.received, t.recvTotal)
		c(m.lostTotal, t.lostTot)
	}
	m.s.mu.Unlock()
	m.records.Collect(ch)
	m.lost.Collect(ch)
}

// orNaN is NaN before the target's first report window closes.
func orNaN(v float64, t *target) float64 {
	if t.reported {
		return v
	}
	return math.NaN()
}
