package aggregate

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// reasonNames label weir_aggregate_flows_exported_total by flowEndReason
// (IANA IE 136).
var reasonNames = [6]string{"", "idle_timeout", "active_timeout", "end_of_flow", "forced_end", "lack_of_resources"}

type metrics struct {
	created      prometheus.Counter
	exported     [6]prometheus.Counter
	correlated   prometheus.Counter
	uncorrelated prometheus.Counter
	full         prometheus.Counter
	unkeyed      prometheus.Counter
	lost         prometheus.Counter
	fullEvents   atomic.Uint64

	live, bytesPerFlow, internedBytes atomic.Int64
}

func newMetrics(reg prometheus.Registerer, a *Aggregate) (*metrics, error) {
	m := &metrics{}
	counter := func(name, help string, labels prometheus.Labels) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_aggregate_" + name, Help: help, ConstLabels: labels})
		return c
	}
	m.created = counter("flows_created_total", "Flows entered into the table.", nil)
	for r := 1; r < len(reasonNames); r++ {
		m.exported[r] = counter("flows_exported_total", "Aggregated records exported, by flowEndReason.", prometheus.Labels{"reason": reasonNames[r]})
	}
	m.exported[0] = m.exported[reasonActive]
	m.correlated = counter("correlations_total", "Inter-Node flows whose two halves were correlated, or whose half went alone after correlation_timeout.", prometheus.Labels{"reason": "correlated"})
	m.uncorrelated = counter("correlations_total", "Inter-Node flows whose two halves were correlated, or whose half went alone after correlation_timeout.", prometheus.Labels{"reason": "uncorrelated"})
	m.full = counter("table_full_total", "Records of new flows that found the table at max_flows (when_full applied).", nil)
	m.unkeyed = counter("records_unkeyed_total", "Records without source or destination address, passed on unaggregated.", nil)
	m.lost = counter("records_lost_total", "Aggregated records the pipeline refused (it was shut down or not running).", nil)
	cs := []prometheus.Collector{m.created, m.correlated, m.uncorrelated, m.full, m.unkeyed, m.lost}
	for r := 1; r < len(reasonNames); r++ {
		cs = append(cs, m.exported[r])
	}
	gauge := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weir_aggregate_" + name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	cs = append(cs,
		gauge("flows", "Live flows in the table.", &m.live),
		gauge("bytes_per_flow", "Table memory per live flow (index, entry slabs, IPv6 prefixes), excluding interned strings, in bytes.", &m.bytesPerFlow),
		gauge("interned_bytes", "Bytes of interned strings (flow metadata, tcpState, exporter addresses).", &m.internedBytes),
	)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) fullCount() uint64 { return m.fullEvents.Load() }

// setGauges refreshes the gauges; the caller holds the table lock.
func (m *metrics) setGauges(tb *table, strs, metas *strtab) {
	m.live.Store(int64(tb.live))
	if tb.live > 0 {
		m.bytesPerFlow.Store(int64(tb.bytes() / tb.live))
	} else {
		m.bytesPerFlow.Store(0)
	}
	m.internedBytes.Store(int64(strs.size + metas.size))
}
