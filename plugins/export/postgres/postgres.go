package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
)

// ID is the plugin's registry ID.
const ID = "export.postgres"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "COPY batches into a PostgreSQL flow table (inet addresses), created on demand",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Exporter is export.postgres.
type Exporter struct {
	*sinkbuf.Sink

	cfg   Config
	pgcfg *pgx.ConnConfig
	log   *slog.Logger
	cols  []flowtable.Column
	names []string
	ident pgx.Identifier

	// Used by the buffer's writer goroutine only.
	conn    *pgx.Conn
	created bool
	src     copySource
}

// New checks cfg and registers the metrics; nothing connects before Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pgcfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: dsn: %w", ID, err)
	}
	pgcfg.ConnectTimeout = cfg.ConnectTimeout
	e := &Exporter{cfg: *cfg, pgcfg: pgcfg, log: set.Logger, cols: flowtable.Columns(false),
		ident: pgx.Identifier(strings.Split(cfg.Table, "."))}
	e.names = flowtable.Names(e.cols)
	e.src.cols = e.cols
	sink, err := sinkbuf.NewSink(sinkbuf.SinkOptions{
		ID: ID, Name: "postgres", Batch: cfg.Batch, Buffer: cfg.Buffer,
		Write: e.write, Close: e.closeConn,
	}, set)
	if err != nil {
		return nil, err
	}
	e.Sink = sink
	return e, nil
}

// Type returns the PostgreSQL type of a column: inet for addresses,
// timestamptz for times, text, and the smallest signed integer that holds
// the IE's unsigned width (unsigned64 as bigint: values above 2^63-1 are
// stored as 2^63-1).
func Type(c *flowtable.Column) string {
	switch c.Kind {
	case flow.KindAddress:
		return "inet"
	case flow.KindString:
		return "text"
	case flow.KindTime:
		return "timestamptz"
	}
	switch c.Width {
	case 1:
		return "smallint"
	case 2:
		return "integer"
	}
	return "bigint"
}

// CreateTable returns the CREATE TABLE statement for the flow table.
func CreateTable(ident pgx.Identifier, cols []flowtable.Column) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "CREATE TABLE IF NOT EXISTS %s (\n  \"timeInserted\" timestamptz NOT NULL DEFAULT now()", ident.Sanitize())
	for i := range cols {
		fmt.Fprintf(&sb, ",\n  %s %s", pgx.Identifier{cols[i].Name}.Sanitize(), Type(&cols[i]))
	}
	sb.WriteString("\n)")
	return sb.String()
}

func (e *Exporter) connect(ctx context.Context) error {
	if e.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, e.pgcfg)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", e.pgcfg.Host, err)
		}
		e.conn = conn
	}
	if !e.created {
		if _, err := e.conn.Exec(ctx, CreateTable(e.ident, e.cols)); err != nil {
			return fmt.Errorf("create table %s: %w", e.cfg.Table, err)
		}
		e.created = true
	}
	return nil
}

func (e *Exporter) closeConn() {
	if e.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = e.conn.Close(ctx)
		cancel()
		e.conn = nil
	}
}

// write COPYs rows; it is the buffer's Write.
func (e *Exporter) write(ctx context.Context, rows []flow.Record) error {
	if err := e.connect(ctx); err != nil {
		return e.classify(err)
	}
	e.src.rows, e.src.i = rows, -1
	_, err := e.conn.CopyFrom(ctx, e.ident, e.names, &e.src)
	e.src.rows = nil
	if err != nil {
		return e.classify(fmt.Errorf("copy %d rows into %s: %w", len(rows), e.cfg.Table, err))
	}
	return nil
}

// classify marks data errors (SQLSTATE classes 22 and 23) permanent; an
// undefined table is created again; anything else is retried on a fresh
// connection.
func (e *Exporter) classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23"):
			return sinkbuf.Permanent(err)
		case pe.Code == "42P01": // undefined_table: dropped behind our back
			e.created = false
		}
		return err
	}
	e.closeConn()
	return err
}

// copySource feeds rows to COPY, converting each record to the table's
// column values.
type copySource struct {
	cols []flowtable.Column
	rows []flow.Record
	i    int
	vals []any
}

func (s *copySource) Next() bool { s.i++; return s.i < len(s.rows) }
func (s *copySource) Err() error { return nil }

func (s *copySource) Values() ([]any, error) {
	r := &s.rows[s.i]
	if len(s.vals) != len(s.cols) {
		s.vals = make([]any, len(s.cols))
	}
	for j := range s.cols {
		c := &s.cols[j]
		switch c.Kind {
		case flow.KindAddress:
			if a := c.Addr(r); a.IsValid() {
				s.vals[j] = a.Unmap()
			} else {
				s.vals[j] = nil
			}
		case flow.KindString:
			s.vals[j] = c.String(r)
		case flow.KindTime:
			if ms := c.Uint(r); ms != 0 {
				s.vals[j] = time.UnixMilli(int64(ms))
			} else {
				s.vals[j] = nil
			}
		default:
			v := c.Uint(r)
			switch c.Width {
			case 1:
				s.vals[j] = int16(v)
			case 2:
				s.vals[j] = int32(v)
			default:
				s.vals[j] = int64(min(v, math.MaxInt64))
			}
		}
	}
	return s.vals, nil
}

var (
	_ plugin.AckExporter = (*Exporter)(nil)
	_ plugin.Deferred    = (*Exporter)(nil)
)

// Rows converts records to COPY rows as the exporter does, for benchmarks
// that compare with the client alone.
func Rows(cols []flowtable.Column, b *flow.Batch) [][]any {
	s := copySource{cols: cols}
	out := make([][]any, 0, b.Len())
	for _, r := range b.Records {
		s.rows, s.i, s.vals = []flow.Record{*r}, 0, nil
		v, _ := s.Values()
		out = append(out, v)
	}
	return out
}
