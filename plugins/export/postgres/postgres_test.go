package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/dbtest"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/export/postgres"
)

func newExporter(t testing.TB, cfg *postgres.Config) *postgres.Exporter {
	t.Helper()
	e, err := postgres.New(cfg, plugin.NopSettings(postgres.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func count(t testing.TB, conn *pgx.Conn, table string) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// selectExpr reads a column back as the string dbtest.Expected formats.
func selectExpr(c *flowtable.Column) string {
	q := pgx.Identifier{c.Name}.Sanitize()
	switch c.Kind {
	case flow.KindAddress:
		return "coalesce(host(" + q + "), '')"
	case flow.KindTime:
		return "coalesce((extract(epoch from " + q + ") * 1000)::bigint::text, '')"
	}
	return q + "::text"
}

func spotCheck(t *testing.T, conn *pgx.Conn, table string, recs *flow.Batch, ids ...int) {
	t.Helper()
	cols := flowtable.Columns(false)
	exprs := make([]string, len(cols))
	for i := range cols {
		exprs[i] = selectExpr(&cols[i])
	}
	dbtest.SpotCheck(t, cols, recs, true, func(id int) ([]string, error) {
		q := fmt.Sprintf(`SELECT %s FROM %s WHERE "sourceTransportPort" = %d AND "observationDomainId" = %d`,
			strings.Join(exprs, ", "), table, id&0xffff, id>>16)
		got, dest := dbtest.Scan(len(cols))
		return got, conn.QueryRow(context.Background(), q).Scan(dest...)
	}, ids...)
}

// TestCopy: every record becomes a row (count), and rows read back equal
// the records field by field (inet addresses, timestamptz times); the
// table is created on demand.
func TestCopy(t *testing.T) {
	srv := dbtest.StartPostgres(t)
	cfg := postgres.DefaultConfig()
	cfg.DSN, cfg.Table = srv.DSN, "public.flows"
	cfg.Batch = sinkbuf.BatchConfig{Size: 700, Interval: 50 * time.Millisecond}
	e := newExporter(t, cfg)
	const n = 5000
	b := dbtest.Records(0, n)
	for i := 0; i < n; i += 256 {
		if err := e.Export(context.Background(), &flow.Batch{Records: b.Records[i:min(i+256, n)]}); err != nil {
			t.Fatal(err)
		}
	}
	dbtest.Wait(t, 60*time.Second, "all rows", func() (bool, string) {
		got := e.Buffer().Inserted()
		return got == n, fmt.Sprintf("%d rows inserted of %d", got, n)
	})
	conn := connect(t, srv.DSN)
	if got := count(t, conn, "public.flows"); got != n {
		t.Fatalf("table has %d rows, want %d", got, n)
	}
	spotCheck(t, conn, "public.flows", b, 0, 1, 2, 3, 999, 4998, 4999)
	var typ string
	if err := conn.QueryRow(context.Background(), `SELECT data_type FROM information_schema.columns WHERE table_name = 'flows' AND column_name = 'sourceIPAddress'`).Scan(&typ); err != nil || typ != "inet" {
		t.Errorf("sourceIPAddress is %q (%v), want inet", typ, err)
	}
}

// TestServerKilledMidStream stops the server as a crash would (pg_ctl -m
// immediate) between two exports and restarts it: what fit in the buffer is
// copied after the restart, what did not is counted, nothing else is
// missing.
func TestServerKilledMidStream(t *testing.T) {
	srv := dbtest.StartPostgres(t)
	cfg := postgres.DefaultConfig()
	cfg.DSN = srv.DSN
	cfg.Batch = sinkbuf.BatchConfig{Size: 200, Interval: 20 * time.Millisecond}
	cfg.Buffer = sinkbuf.BufferConfig{MaxRecords: 3000, WhenFull: "drop", MaxBackoff: 200 * time.Millisecond}
	e := newExporter(t, cfg)
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

	srv.Stop("immediate")
	kept := export(1000, 2500)
	export(3500, 1000)
	if got := e.Buffer().Dropped(sinkbuf.ReasonBufferFull); got != 500 {
		t.Fatalf("dropped %d records as buffer_full, want 500", got)
	}
	time.Sleep(500 * time.Millisecond)
	srv.Start()

	dbtest.Wait(t, 90*time.Second, "the buffered rows after the restart", func() (bool, string) {
		return e.Buffer().Inserted() == 4000 && e.Buffer().Buffered() == 0,
			fmt.Sprintf("%d inserted, %d buffered", e.Buffer().Inserted(), e.Buffer().Buffered())
	})
	conn := connect(t, srv.DSN)
	if got := count(t, conn, "flows"); got != 4000 {
		t.Fatalf("table has %d rows, want 4000 (1000 before the crash + 3000 buffered)", got)
	}
	spotCheck(t, conn, "flows", kept, 1000, 2000, 3499)
}

// TestServerKilledDuringCopy crashes the server (pg_ctl -m immediate)
// while a COPY is running: the COPY's transaction is lost, the exporter
// copies the whole batch again after the restart, and the table ends up
// with every record exactly once.
func TestServerKilledDuringCopy(t *testing.T) {
	const n = 200000
	srv := dbtest.StartPostgres(t)
	cfg := postgres.DefaultConfig()
	cfg.DSN = srv.DSN
	cfg.Batch = sinkbuf.BatchConfig{Size: n, Interval: 20 * time.Millisecond}
	cfg.Buffer = sinkbuf.BufferConfig{MaxRecords: n, WhenFull: "drop", MaxBackoff: 200 * time.Millisecond}
	e := newExporter(t, cfg)
	watch := connect(t, srv.DSN)
	ctx := context.Background()
	if _, err := watch.Exec(ctx, postgres.CreateTable(pgx.Identifier{"flows"}, flowtable.Columns(false))); err != nil {
		t.Fatal(err)
	}
	if err := e.Export(ctx, dbtest.Records(0, n)); err != nil {
		t.Fatal(err)
	}
	dbtest.Wait(t, 30*time.Second, "a COPY in progress", func() (bool, string) {
		var copying int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'copy%'`).Scan(&copying)
		return err == nil && copying > 0, fmt.Sprintf("%d COPY running (%v), %d inserted", copying, err, e.Buffer().Inserted())
	})
	srv.Stop("immediate")
	if got := e.Buffer().Inserted(); got != 0 {
		t.Fatalf("%d rows counted inserted before the crash; the COPY was still running", got)
	}
	srv.Start()
	dbtest.Wait(t, 120*time.Second, "the batch copied again after the restart", func() (bool, string) {
		return e.Buffer().Inserted() == n, fmt.Sprintf("%d inserted, %d buffered", e.Buffer().Inserted(), e.Buffer().Buffered())
	})
	conn := connect(t, srv.DSN)
	var rows, distinct int64
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT ("sourceTransportPort", "observationDomainId")) FROM flows`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Fatalf("table has %d rows, %d distinct, want %d of each", rows, distinct, n)
	}
	if r := e.Buffer().Dropped(sinkbuf.ReasonRejected) + e.Buffer().Dropped(sinkbuf.ReasonBufferFull); r != 0 {
		t.Errorf("%d records dropped", r)
	}
}

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, postgres.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := postgres.New(cfg.(*postgres.Config), plugin.NopSettings(postgres.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, postgres.ExampleYAML) }

func TestConfigTable(t *testing.T) { plugintest.CheckConfigTable(t, postgres.DefaultConfig()) }

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		cfg := postgres.DefaultConfig()
		cfg.DSN = "postgres://nobody@127.0.0.1:1/none?sslmode=disable"
		e, err := postgres.New(cfg, plugin.NopSettings(postgres.ID))
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}
