package clickhouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

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
	e, err := clickhouse.New(cfg, plugin.NopSettings(clickhouse.ID))
	if err != nil {
		t.Fatal(err)
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
// did not is counted as dropped, and nothing else is missing.
func TestServerKilledMidStream(t *testing.T) {
	srv := dbtest.StartClickHouse(t)
	cfg := clickhouse.DefaultConfig()
	cfg.Address, cfg.Table = srv.Addr, "flows"
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
