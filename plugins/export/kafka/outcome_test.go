package kafka_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	exportkafka "github.com/weir-flow/weir/plugins/export/kafka"
)

// TestOutcome: export.kafka is plugin.Deferred and plugin.AckExporter — it tells the engine of
// every record once its fate is known: delivered when the broker
// acknowledged its message, dropped by reason otherwise. Against an
// in-process Kafka (kfake).
func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name      string
		edit      func(*exportkafka.Config)
		delivered int
		dropped   map[string]int
	}{
		{"delivered", func(*exportkafka.Config) {}, 1000, map[string]int{}},
		// 1000 records in one message cannot fit in 1 KiB.
		{"too large", func(c *exportkafka.Config) { c.MaxMessageBytes = 1024 }, 0, map[string]int{exportkafka.ReasonTooLarge: 1000}},
		// payload raw takes the IPFIX messages a source kept; decoded
		// records have none.
		{"not raw", func(c *exportkafka.Config) { c.Payload = "raw" }, 0, map[string]int{exportkafka.ReasonNotRaw: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "flows"))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			cfg := exportkafka.DefaultConfig()
			cfg.Brokers, cfg.Topic = cluster.ListenAddrs(), "flows"
			tc.edit(cfg)
			e, err := exportkafka.New(cfg, plugin.NopSettings(exportkafka.ID))
			if err != nil {
				t.Fatal(err)
			}
			o := &plugintest.Outcome{}
			var _ plugin.Deferred = e
			e.SetOutcome(o)
			if err := e.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Through ExportAcked (plugin.AckExporter): stored runs once,
			// when every record's fate is known.
			var calls atomic.Int32
			settledAtAck := -1
			stored := func() {
				calls.Add(1)
				delivered, dropped := o.Counts()
				settledAtAck = delivered
				for _, n := range dropped {
					settledAtAck += n
				}
			}
			if err := e.ExportAcked(context.Background(), plugintest.MixedBatch(1000), stored); err != nil {
				t.Fatal(err)
			}
			if err := e.Shutdown(context.Background()); err != nil { // flushes: every promise has run
				t.Fatal(err)
			}
			if calls.Load() != 1 || settledAtAck != 1000 {
				t.Errorf("stored ran %d times, with %d of 1000 records settled; want once, all", calls.Load(), settledAtAck)
			}
			delivered, dropped := o.Counts()
			total := delivered
			for _, n := range dropped {
				total += n
			}
			if delivered != tc.delivered || len(dropped) != len(tc.dropped) || total != 1000 {
				t.Fatalf("delivered %d, dropped %v; want %d, %v (every record once)", delivered, dropped, tc.delivered, tc.dropped)
			}
			for r, n := range tc.dropped {
				if dropped[r] != n {
					t.Errorf("dropped %s = %d, want %d", r, dropped[r], n)
				}
			}
		})
	}
}
