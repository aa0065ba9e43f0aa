package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weir-flow/weir/internal/dbtest"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
	"github.com/weir-flow/weir/plugins/export/postgres"
)

// BenchmarkCopyVsClient copies the same 20000 records per iteration twice
// into a PostgreSQL 15 cluster the benchmark starts, over TCP into logged
// tables: through export.postgres (Export in 256-record pipeline batches,
// buffered, 10000-row COPYs) and through pgx alone (CopyFrom of prebuilt
// rows, the client's best case), and reports both rates and their ratio.
func BenchmarkCopyVsClient(b *testing.B) {
	srv := dbtest.StartPostgres(b)
	const n, size = 20000, 10000
	recs := dbtest.Records(0, n)

	cfg := postgres.DefaultConfig()
	cfg.DSN, cfg.Table = srv.DSN, "flows"
	cfg.Batch = sinkbuf.BatchConfig{Size: size, Interval: 20 * time.Millisecond}
	e := newExporter(b, cfg)

	conn := connect(b, srv.DSN)
	cols := flowtable.Columns(false)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, postgres.CreateTable(pgx.Identifier{"flows_client"}, cols)); err != nil {
		b.Fatal(err)
	}
	rows := postgres.Rows(cols, recs)
	names := flowtable.Names(cols)

	var weir, client time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		weir += dbtest.Feed(b, e, recs)

		start := time.Now()
		for j := 0; j < n; j += size {
			if _, err := conn.CopyFrom(ctx, pgx.Identifier{"flows_client"}, names, pgx.CopyFromRows(rows[j:j+size])); err != nil {
				b.Fatal(err)
			}
		}
		client += time.Since(start)
	}
	b.StopTimer()
	wr, cr := float64(n*b.N)/weir.Seconds(), float64(n*b.N)/client.Seconds()
	b.ReportMetric(wr, "weir-rows/s")
	b.ReportMetric(cr, "client-rows/s")
	b.ReportMetric(wr/cr, "weir/client")
	b.ReportMetric(0, "ns/op")
}
