package pcap_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/source/pcap"
)

// countingEmitter counts records and recycles batches.
type countingEmitter struct {
	records atomic.Int64
	free    chan *flow.Batch
}

func (e *countingEmitter) NewBatch() *flow.Batch {
	select {
	case b := <-e.free:
		b.Reset()
		return b
	default:
		return flow.NewBatch(256)
	}
}
func (e *countingEmitter) BatchSize() int              { return 256 }
func (e *countingEmitter) BatchTimeout() time.Duration { return time.Second }
func (e *countingEmitter) Emit(_ context.Context, b *flow.Batch) error {
	e.records.Add(int64(b.Len()))
	select {
	case e.free <- b:
	default:
	}
	return nil
}

// BenchmarkReplay measures a full-speed replay of 1000 Ethernet/IPv4
// packets, each one IPFIX message of about 30 records; ns/op is per record.
func BenchmarkReplay(b *testing.B) {
	_, msgs := testMessages(b, 30*1000)
	var pkts []packet
	ts := time.Unix(1767323045, 0)
	for _, m := range msgs {
		pkts = append(pkts, packet{ts, frame(1, udp(exporter4, 4739, m))})
	}
	path := writePcap(b, 1, pkts)
	em := &countingEmitter{free: make(chan *flow.Batch, 8)}
	b.ReportAllocs()
	b.ResetTimer()
	var total int64
	for b.Loop() {
		s, err := pcap.New(&pcap.Config{Path: path, Ports: []int{4739}}, plugin.NopSettings(pcap.ID))
		if err != nil {
			b.Fatal(err)
		}
		before := em.records.Load()
		s.Start(context.Background(), em)
		<-s.Done()
		s.Shutdown(context.Background())
		total += em.records.Load() - before
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/record")
	b.ReportMetric(float64(total)/b.Elapsed().Seconds()/1e6, "Mrecords/s")
}
