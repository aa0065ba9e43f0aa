package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/internal/dbtest"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
	"github.com/weir-flow/weir/plugins/export/clickhouse"
)

// BenchmarkInsertVsClient inserts the same 20000 records per iteration
// twice into a clickhouse-server the benchmark starts: through
// export.clickhouse (Export in 256-record pipeline batches, buffered,
// 10000-row inserts) and through clickhouse-go alone (one batch of
// prebuilt column slices per 10000 rows, the client's best case), and
// reports both rates and their ratio.
func BenchmarkInsertVsClient(b *testing.B) {
	srv := dbtest.StartClickHouse(b)
	const n, size = 20000, 10000
	recs := dbtest.Records(0, n)

	cfg := clickhouse.DefaultConfig()
	cfg.Address, cfg.Table = srv.Addr, "flows"
	cfg.Batch = sinkbuf.BatchConfig{Size: size, Interval: 20 * time.Millisecond}
	e := newExporter(b, cfg)

	conn := connect(b, srv.Addr)
	s := serverSchema(b, conn)
	cols := flowtable.Columns(true)
	ctx := context.Background()
	if err := conn.Exec(ctx, s.CreateTable("default", "flows_client", cols)); err != nil {
		b.Fatal(err)
	}
	insert := fmt.Sprintf("INSERT INTO default.flows_client (%s)", strings.Join(flowtable.Names(cols), ", "))
	columns := clickhouse.Columns(s, cols, recsOf(recs))

	var weir, client time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		weir += dbtest.Feed(b, e, recs)

		start := time.Now()
		for j := 0; j < n; j += size {
			batch, err := conn.PrepareBatch(ctx, insert)
			if err != nil {
				b.Fatal(err)
			}
			for c := range cols {
				if err := batch.Column(c).Append(clickhouse.Slice(columns[c], j, j+size)); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Send(); err != nil {
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

func recsOf(b *flow.Batch) []flow.Record {
	out := make([]flow.Record, b.Len())
	for i, r := range b.Records {
		out[i] = *r
	}
	return out
}
