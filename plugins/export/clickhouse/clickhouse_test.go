package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/dbtest"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/export/clickhouse"
)

func newExporter(t testing.TB, cfg *clickhouse.Config) *clickhouse.Exporter {
	t.Helper()
	return startExporter(t, cfg, plugin.NopSettings(clickhouse.ID), nil)
}

// startExporter starts an exporter with set, reporting to out (when not
// nil) as the engine's accounting would see it.
func startExporter(t testing.TB, cfg *clickhouse.Config, set plugin.Settings, out plugin.Outcome) *clickhouse.Exporter {
	t.Helper()
	e, err := clickhouse.New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		e.SetOutcome(out)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func connect(t testing.TB, addr string) driver.Conn {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}, Auth: ch.Auth{Database: "default", Username: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func count(t testing.TB, conn driver.Conn, table string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// selectExpr reads a column back as the string dbtest.Expected formats.
func selectExpr(s *clickhouse.Schema, c *flowtable.Column) string {
	switch {
	case c.Kind == flow.KindAddress && !s.IPv6:
		return "IPv6NumToString(" + c.Name + ")"
	case c.Kind == flow.KindTime && (c.Source == flowtable.SourceStartSeconds || c.Source == flowtable.SourceEndSeconds):
		return "toString(toUInt32(" + c.Name + "))"
	case c.Kind == flow.KindTime && s.DateTime64:
		return "toString(toUnixTimestamp64Milli(" + c.Name + "))"
	}
	return "toString(" + c.Name + ")"
}

func serverSchema(t testing.TB, conn driver.Conn) *clickhouse.Schema {
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	return clickhouse.SchemaFor(v.Version.Major, v.Version.Minor, v.Version.Patch)
}

// spotCheck compares every column of the rows with ids with the records.
func spotCheck(t *testing.T, conn driver.Conn, table string, recs *flow.Batch, ids ...int) {
	t.Helper()
	s := serverSchema(t, conn)
	cols := flowtable.Columns(true)
	exprs := make([]string, len(cols))
	for i := range cols {
		exprs[i] = selectExpr(s, &cols[i])
	}
	dbtest.SpotCheck(t, cols, recs, false, func(id int) ([]string, error) {
		q := fmt.Sprintf("SELECT %s FROM %s WHERE sourceTransportPort = %d AND observationDomainId = %d",
			strings.Join(exprs, ", "), table, id&0xffff, id>>16)
		got, dest := dbtest.Scan(len(cols))
		return got, conn.QueryRow(context.Background(), q).Scan(dest...)
	}, ids...)
}

// TestInsert: every record becomes a row (count), and rows read back
// equal the records field by field; the table and database are created on
// demand, in the types the server's version has.
func TestInsert(t *testing.T) {
	srv := dbtest.StartClickHouse(t)
	cfg := clickhouse.DefaultConfig()
	cfg.Address, cfg.Database, cfg.Table = srv.Addr, "weir", "flows"
	cfg.Batch = sinkbuf.BatchConfig{Size: 700, Interval: 50 * time.Millisecond}
	e := newExporter(t, cfg)
	const n = 5000
	b := dbtest.Records(0, n)
	for i := 0; i < n; i += 256 {
		if err := e.Export(context.Background(), &flow.Batch{Records: b.Records[i:min(i+256, n)]}); err != nil {
			t.Fatal(err)
		}
	}
	conn := connect(t, srv.Addr)
	dbtest.Wait(t, 60*time.Second, "all rows", func() (bool, string) {
		got := e.Buffer().Inserted()
		return got == n, fmt.Sprintf("%d rows inserted of %d", got, n)
	})
	if got := count(t, conn, "weir.flows"); got != n {
		t.Fatalf("table has %d rows, want %d", got, n)
	}
	spotCheck(t, conn, "weir.flows", b, 0, 1, 2, 3, 999, 4998, 4999)
	s := serverSchema(t, conn)
	t.Logf("server %s: IPv6 type %v, DateTime64 %v, LowCardinality %v", s.Version, s.IPv6, s.DateTime64, s.LowCardinality)
}

// TestServerKilledMidStream kills the server between two exports and
// restarts it: what fit in the buffer is inserted after the restart, what
// did not is counted as dropped (buffer_full) in the exporter's metrics
// and in what it tells the engine, and every record sent is either a row
// or a counted drop.
func TestServerKilledMidStream(t *testing.T) {
	srv := dbtest.StartClickHouse(t)
	cfg := clickhouse.DefaultConfig()
	cfg.Address, cfg.Table = srv.Addr, "flows"
	cfg.Batch = sinkbuf.BatchConfig{Size: 200, Interval: 20 * time.Millisecond}
	cfg.Buffer = sinkbuf.BufferConfig{MaxRecords: 3000, WhenFull: "drop", MaxBackoff: 200 * time.Millisecond}
	reg := prometheus.NewRegistry()
	set := plugin.NopSettings(clickhouse.ID)
	set.Metrics = reg
	out := &plugintest.Outcome{}
	e := startExporter(t, cfg, set, out)
	ctx := context.Background()

	export := func(first, n int) *flow.Batch {
		b := dbtest.Records(first, n)
		if err := e.Export(ctx, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	export(0, 1000)
	dbtest.Wait(t, 60*time.Second, "the first 1000 rows", func() (bool, string) {
		return e.Buffer().Inserted() == 1000, fmt.Sprintf("%d inserted", e.Buffer().Inserted())
	})

	srv.Kill()
	kept := export(1000, 2500) // fits: buffered, retried
	export(3500, 1000)         // 500 fit, 500 are over the bound
	if got := e.Buffer().Dropped(sinkbuf.ReasonBufferFull); got != 500 {
		t.Fatalf("dropped %d records as buffer_full, want 500", got)
	}
	time.Sleep(500 * time.Millisecond) // a few failed retries
	srv.Start()

	dbtest.Wait(t, 90*time.Second, "the buffered rows after the restart", func() (bool, string) {
		return e.Buffer().Inserted() == 4000 && e.Buffer().Buffered() == 0,
			fmt.Sprintf("%d inserted, %d buffered", e.Buffer().Inserted(), e.Buffer().Buffered())
	})
	conn := connect(t, srv.Addr)
	if got := count(t, conn, "default.flows"); got != 4000 {
		t.Fatalf("table has %d rows, want 4000 (1000 before the kill + 3000 buffered)", got)
	}
	spotCheck(t, conn, "default.flows", kept, 1000, 2000, 3499)

	// Every record in is a row or a counted drop, in the exporter's
	// metrics and in what the engine was told.
	const in = 4500
	rows := plugintest.MetricValue(t, reg, "weir_export_clickhouse_rows_total")
	full := plugintest.MetricValue(t, reg, "weir_export_clickhouse_dropped_records_total", "reason", sinkbuf.ReasonBufferFull)
	allDrops := plugintest.MetricValue(t, reg, "weir_export_clickhouse_dropped_records_total")
	if rows != 4000 || full != 500 || allDrops != 500 || rows+allDrops != in {
		t.Errorf("metrics: rows_total %v, dropped buffer_full %v, dropped (all reasons) %v; want 4000 + 500 = %d records in", rows, full, allDrops, in)
	}
	if retries := plugintest.MetricValue(t, reg, "weir_export_clickhouse_retries_total"); retries < 1 {
		t.Errorf("retries_total %v, want at least one failed insert while the server was down", retries)
	}
	delivered, dropped := out.Counts()
	if delivered != 4000 || dropped[sinkbuf.ReasonBufferFull] != 500 || len(dropped) != 1 {
		t.Errorf("engine told %d delivered, dropped %v; want 4000 delivered, 500 buffer_full", delivered, dropped)
	}
}

// TestServerKilledDuringInsert kills the server (SIGKILL) while one large
// INSERT is in flight, at three stages seen in system.processes, and
// restarts it on the same data directory and port. The exporter retries
// the batch, so every record ends up in the table (nothing lost within the
// buffer bound). ClickHouse 18.16 has no transactions and no insert
// deduplication for non-replicated MergeTree: a part is written under a
// tmp_ name and renamed when complete (a kill before the rename leaves
// nothing), but a kill after a rename and before the client heard of it, or
// between the parts of a batch that spans several partitions (days), keeps
// those rows and the retry stores them again. Duplicates are therefore
// bounded by the rows of the one batch in flight (the exporter has one
// insert in flight at a time), which the README documents; the test
// asserts that bound, not zero.
func TestServerKilledDuringInsert(t *testing.T) {
	const n = 300000
	for _, tc := range []struct {
		name string
		// days spreads the batch over this many daily partitions
		// (flowEndSeconds), each stored as its own part.
		days int
		// at reports whether the INSERT has reached the stage: the
		// server's memory for it, its rows written, and the parts stored
		// since the batch was sent.
		at func(mem int64, written, parts uint64) bool
		// minDup is the fewest duplicates the stage must leave: a part
		// stored before the kill is not rolled back.
		minDup uint64
	}{
		// The client sent the query and builds the block.
		{"query sent", 1, func(int64, uint64, uint64) bool { return true }, 0},
		// The block is arriving (the server's memory grows with it).
		{"block arriving", 1, func(mem int64, written, _ uint64) bool { return mem > 64<<20 && written == 0 }, 0},
		// The server writes the part (rows counted written, not renamed).
		{"part being written", 1, func(_ int64, written, parts uint64) bool { return written > 0 && parts == 0 }, 0},
		// One of the batch's two parts is stored, the other is not: the
		// retry stores the first part's rows again.
		{"between two parts", 2, func(_ int64, _, parts uint64) bool { return parts == 1 }, n / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dbtest.StartClickHouse(t)
			cfg := clickhouse.DefaultConfig()
			cfg.Address, cfg.Table = srv.Addr, "flows"
			cfg.Batch = sinkbuf.BatchConfig{Size: n, Interval: 20 * time.Millisecond}
			cfg.Buffer = sinkbuf.BufferConfig{MaxRecords: n, WhenFull: "drop", MaxBackoff: 200 * time.Millisecond}
			out := &plugintest.Outcome{}
			e := startExporter(t, cfg, plugin.NopSettings(clickhouse.ID), out)
			ctx := context.Background()
			watch := connect(t, srv.Addr)
			// A stage is a few hundred milliseconds long; on a loaded
			// machine the poll may miss it and the insert completes: then
			// send another batch and try again.
			sent, state := 0, ""
			for attempt := 0; ; attempt++ {
				if attempt == 5 {
					t.Fatalf("the INSERT never reached the stage %q in %d batches", tc.name, attempt)
				}
				var partsBefore uint64
				if err := watch.QueryRow(ctx, `SELECT count() FROM system.parts WHERE database = 'default' AND table = 'flows' AND active`).Scan(&partsBefore); err != nil && !strings.Contains(err.Error(), "no rows") {
					t.Fatal(err)
				}
				recs := dbtest.Records(sent, n)
				for i, r := range recs.Records {
					day := time.Duration(i*tc.days/n) * 24 * time.Hour
					r.SetUint(flow.FlowEnd, r.Uint(flow.FlowEnd)+uint64(day))
				}
				if err := e.Export(ctx, recs); err != nil {
					t.Fatal(err)
				}
				sent += n
				caught := false
				for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					if e.Buffer().Inserted() == uint64(sent) {
						break
					}
					var elapsed float64
					var mem int64
					var written, parts uint64
					err := watch.QueryRow(ctx, `SELECT elapsed, memory_usage, written_rows,
						(SELECT count() FROM system.parts WHERE database = 'default' AND table = 'flows' AND active)
						FROM system.processes WHERE query LIKE 'INSERT INTO default.flows%' LIMIT 1`).Scan(&elapsed, &mem, &written, &parts)
					if err == nil && tc.at(mem, written, parts-partsBefore) {
						srv.Kill()
						caught = true
						state = fmt.Sprintf("INSERT open for %.2fs, %d MB of server memory, %d rows written, %d of its parts stored", elapsed, mem>>20, written, parts-partsBefore)
						break
					}
				}
				if caught {
					break
				}
			}
			t.Logf("killed with the %s (batch %d)", state, sent/n)
			before := e.Buffer().Inserted()
			if before != uint64(sent-n) {
				t.Fatalf("%d rows counted inserted before the kill, want %d; the INSERT was still running", before, sent-n)
			}
			srv.Start()
			dbtest.Wait(t, 120*time.Second, "the batch inserted again after the restart", func() (bool, string) {
				return e.Buffer().Inserted() == uint64(sent), fmt.Sprintf("%d inserted, %d buffered", e.Buffer().Inserted(), e.Buffer().Buffered())
			})
			conn := connect(t, srv.Addr)
			var rows, distinct uint64
			if err := conn.QueryRow(ctx, `SELECT count(), uniqExact(observationDomainId, sourceTransportPort) FROM default.flows`).Scan(&rows, &distinct); err != nil {
				t.Fatal(err)
			}
			t.Logf("table: %d rows, %d distinct records, %d duplicates (bound: the %d rows of the batch in flight)", rows, distinct, rows-distinct, n)
			if distinct != uint64(sent) {
				t.Fatalf("table has %d distinct records, want all %d", distinct, sent)
			}
			if rows-distinct > n {
				t.Fatalf("table has %d duplicates, more than the %d rows of the one batch in flight", rows-distinct, n)
			}
			if rows-distinct < tc.minDup {
				t.Fatalf("table has %d duplicates; the part stored before the kill (%d rows) should have stayed", rows-distinct, tc.minDup)
			}
			delivered, dropped := out.Counts()
			if delivered != sent || len(dropped) != 0 {
				t.Errorf("engine told %d delivered, dropped %v; want %d delivered, none dropped", delivered, dropped, sent)
			}
		})
	}
}

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, clickhouse.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := clickhouse.New(cfg.(*clickhouse.Config), plugin.NopSettings(clickhouse.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, clickhouse.ExampleYAML) }

func TestConfigTable(t *testing.T) { plugintest.CheckConfigTable(t, clickhouse.DefaultConfig()) }

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		e, err := clickhouse.New(clickhouse.DefaultConfig(), plugin.NopSettings(clickhouse.ID))
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

func TestSchemaByVersion(t *testing.T) {
	for _, tc := range []struct {
		name                string
		major, minor        uint64
		ipv6, dt64, lowcard bool
	}{
		{"debian 18.16", 18, 16, false, false, false},
		{"19.3", 19, 3, true, false, true},
		{"24.8", 24, 8, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := clickhouse.SchemaFor(tc.major, tc.minor, 1)
			if s.IPv6 != tc.ipv6 || s.DateTime64 != tc.dt64 || s.LowCardinality != tc.lowcard {
				t.Errorf("SchemaFor(%d.%d) = %+v", tc.major, tc.minor, s)
			}
			ddl := s.CreateTable("weir", "flows", flowtable.Columns(true))
			for _, want := range []string{"sourceIPAddress", "destinationClusterIP", "sourcePodNamespace", "flowEndSeconds DateTime", "octetDeltaCount UInt64"} {
				if !strings.Contains(ddl, want) {
					t.Errorf("DDL lacks %q:\n%s", want, ddl)
				}
			}
		})
	}
}
