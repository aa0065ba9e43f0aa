package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/dbtest"
	exportkafka "github.com/weir-flow/weir/plugins/export/kafka"
)

// TestKafkaToPostgresAtLeastOnce: an outlet consumes every record while
// PostgreSQL is down and is killed (-9) with them in its buffer. Its
// offsets must not have been committed, so a new outlet, once the
// database is back, reads them again and every record reaches the table.
func TestKafkaToPostgresAtLeastOnce(t *testing.T) {
	const n = 3000
	broker := kafkaCluster(t, "weir-flows", 2)
	pg := dbtest.StartPostgres(t)
	pg.Stop("fast")

	// Publish the records as an inlet would (export.kafka, records payload).
	cfg := exportkafka.DefaultConfig()
	cfg.Brokers, cfg.Topic = []string{broker}, "weir-flows"
	exp, err := exportkafka.New(cfg, plugin.NopSettings(exportkafka.ID))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := exp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	recs := dbtest.Records(0, n)
	for i := 0; i < n; i += 256 {
		if err := exp.Export(ctx, &flow.Batch{Records: recs.Records[i:min(i+256, n)]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	outlet := fmt.Sprintf(`
telemetry: {metrics_address: "{{metrics}}"}
pipeline:
  sources:
    - source.kafka: {brokers: [%q], topic: weir-flows, group: outlets, commit_interval: 100ms}
  exporters:
    - export.postgres: {dsn: %q, table: flows, batch: {size: 500, interval: 100ms}, buffer: {max_records: 10000}}
`, broker, pg.DSN)
	first := startWeir(t, outlet)
	first.WaitMetric(t, "weir_source_kafka_records_total", n)
	time.Sleep(time.Second) // ten commit intervals: a premature commit would have happened
	if err := first.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.Exited

	pg.Start()
	second := startWeir(t, outlet)
	second.WaitMetric(t, "weir_source_kafka_records_total", n) // read again: nothing was committed
	conn, err := pgx.Connect(ctx, pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var distinct, rows int64
	dbtest.Wait(t, 60*time.Second, "every record in the table", func() (bool, string) {
		err := conn.QueryRow(ctx, `SELECT count(DISTINCT ("sourceTransportPort", "observationDomainId")), count(*) FROM flows`).Scan(&distinct, &rows)
		return err == nil && distinct == n, fmt.Sprintf("%d distinct of %d rows (%v)", distinct, rows, err)
	})
	second.Stop(t)
	t.Logf("%d records, %d rows after the crash and restart", n, rows)
}
