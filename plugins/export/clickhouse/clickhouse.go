package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/internal/flowtable"
	"github.com/weir-flow/weir/internal/sinkbuf"
)

// ID is the plugin's registry ID.
const ID = "export.clickhouse"

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "batched inserts into a ClickHouse flow table (native protocol), created on demand",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Exporter is export.clickhouse.
type Exporter struct {
	*sinkbuf.Sink

	cfg  Config
	log  *slog.Logger
	cols []flowtable.Column

	// Used by the buffer's writer goroutine only.
	conn    driver.Conn
	schema  *Schema
	created bool
	addrs   []byte // backing store of the address columns
	vals    []any  // one typed slice per column
}

// New checks cfg and registers the metrics; nothing connects before Start.
func New(cfg *Config, set plugin.Settings) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Exporter{cfg: *cfg, log: set.Logger, cols: flowtable.Columns(true)}
	sink, err := sinkbuf.NewSink(sinkbuf.SinkOptions{
		ID: ID, Name: "clickhouse", Batch: cfg.Batch, Buffer: cfg.Buffer,
		Write: e.write, Close: e.closeConn,
	}, set)
	if err != nil {
		return nil, err
	}
	e.Sink = sink
	return e, nil
}

// Schema is the table layout chosen for a server version.
type Schema struct {
	// Version is the server's "major.minor.patch".
	Version string
	// IPv6 is true when the server has the IPv6 type (19.3+); addresses are
	// FixedString(16) before (IPv4 as IPv4-mapped IPv6, IPv6NumToString
	// shows them).
	IPv6 bool
	// DateTime64 is true when the server has DateTime64 (20.1+): the
	// millisecond times are DateTime64(3); before, UInt64 milliseconds
	// since the epoch.
	DateTime64 bool
	// LowCardinality is true when the server has it without an
	// experimental setting (19.1+); before, those columns are String.
	LowCardinality bool
}

// SchemaFor returns the layout for a server version.
func SchemaFor(major, minor, patch uint64) *Schema {
	at := func(ma, mi uint64) bool { return major > ma || (major == ma && minor >= mi) }
	return &Schema{
		Version:        fmt.Sprintf("%d.%d.%d", major, minor, patch),
		IPv6:           at(19, 3),
		DateTime64:     at(20, 1),
		LowCardinality: at(19, 1),
	}
}

// Type returns the ClickHouse type of a column.
func (s *Schema) Type(c *flowtable.Column) string {
	switch c.Kind {
	case flow.KindAddress:
		if s.IPv6 {
			return "IPv6"
		}
		return "FixedString(16)"
	case flow.KindString:
		if c.LowCardinality && s.LowCardinality {
			return "LowCardinality(String)"
		}
		return "String"
	case flow.KindTime:
		if c.Source == flowtable.SourceStartSeconds || c.Source == flowtable.SourceEndSeconds {
			return "DateTime"
		}
		if s.DateTime64 {
			return "DateTime64(3)"
		}
		return "UInt64"
	}
	switch c.Width {
	case 1:
		return "UInt8"
	case 2:
		return "UInt16"
	case 4:
		return "UInt32"
	}
	return "UInt64"
}

// CreateTable returns the CREATE TABLE statement for the flow table.
func (s *Schema) CreateTable(database, table string, cols []flowtable.Column) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "CREATE TABLE IF NOT EXISTS %s.%s (\n  timeInserted DateTime DEFAULT now()", database, table)
	for i := range cols {
		fmt.Fprintf(&sb, ",\n  %s %s", cols[i].Name, s.Type(&cols[i]))
	}
	sb.WriteString("\n) ENGINE = MergeTree()\nPARTITION BY toYYYYMMDD(flowEndSeconds)\nORDER BY (flowEndSeconds, sourceIPAddress, destinationIPAddress)")
	return sb.String()
}

// connect opens the connection, reads the server version and creates the
// database and table once.
func (e *Exporter) connect(ctx context.Context) error {
	if e.conn == nil {
		conn, err := ch.Open(&ch.Options{
			Protocol:        ch.Native,
			Addr:            []string{e.cfg.Address},
			Auth:            ch.Auth{Database: "default", Username: e.cfg.Username, Password: e.cfg.Password},
			DialTimeout:     e.cfg.DialTimeout,
			MaxOpenConns:    1,
			MaxIdleConns:    1,
			ConnMaxLifetime: time.Hour,
		})
		if err != nil {
			return fmt.Errorf("open %s: %w", e.cfg.Address, err)
		}
		e.conn = conn
	}
	if e.schema == nil {
		v, err := e.conn.ServerVersion()
		if err != nil {
			e.closeConn()
			return fmt.Errorf("server version of %s: %w", e.cfg.Address, err)
		}
		e.schema = SchemaFor(v.Version.Major, v.Version.Minor, v.Version.Patch)
		e.log.Info("clickhouse server", "address", e.cfg.Address, "version", e.schema.Version,
			"ipv6_type", e.schema.IPv6, "datetime64", e.schema.DateTime64, "low_cardinality", e.schema.LowCardinality)
	}
	if !e.created {
		if e.cfg.Database != "default" {
			if err := e.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+e.cfg.Database); err != nil {
				return fmt.Errorf("create database %s: %w", e.cfg.Database, err)
			}
		}
		if err := e.conn.Exec(ctx, e.schema.CreateTable(e.cfg.Database, e.cfg.Table, e.cols)); err != nil {
			return fmt.Errorf("create table %s.%s: %w", e.cfg.Database, e.cfg.Table, err)
		}
		e.created = true
	}
	return nil
}

func (e *Exporter) closeConn() {
	if e.conn != nil {
		_ = e.conn.Close()
		e.conn, e.schema = nil, nil
	}
}

// write inserts rows in one native INSERT naming its columns, column by
// column. It is the buffer's Write.
func (e *Exporter) write(ctx context.Context, rows []flow.Record) error {
	if err := e.connect(ctx); err != nil {
		e.closeConn()
		return err
	}
	insert := fmt.Sprintf("INSERT INTO %s.%s (%s)", e.cfg.Database, e.cfg.Table, strings.Join(flowtable.Names(e.cols), ", "))
	batch, err := e.conn.PrepareBatch(ctx, insert)
	if err != nil {
		return e.classify(err)
	}
	e.fill(rows)
	for i := range e.cols {
		if err := batch.Column(i).Append(e.vals[i]); err != nil {
			_ = batch.Abort()
			return sinkbuf.Permanent(fmt.Errorf("column %s: %w", e.cols[i].Name, err))
		}
	}
	if err := batch.Send(); err != nil {
		return e.classify(err)
	}
	return nil
}

// fill builds one typed slice per column from rows, reusing the slices.
func (e *Exporter) fill(rows []flow.Record) {
	n := len(rows)
	if len(e.vals) != len(e.cols) {
		e.vals = make([]any, len(e.cols))
	}
	addrCols := 0
	for i := range e.cols {
		if e.cols[i].Kind == flow.KindAddress {
			addrCols++
		}
	}
	if cap(e.addrs) < addrCols*n*16 {
		e.addrs = make([]byte, addrCols*n*16)
	}
	e.addrs = e.addrs[:addrCols*n*16]
	a := 0
	for i := range e.cols {
		c := &e.cols[i]
		switch c.Kind {
		case flow.KindAddress:
			v := grow[[]byte](e.vals[i], n)
			for j := range rows {
				p := e.addrs[a : a+16 : a+16]
				a += 16
				if ip := c.Addr(&rows[j]); ip.IsValid() {
					b := ip.As16()
					copy(p, b[:])
				} else {
					clear(p)
				}
				v[j] = p
			}
			e.vals[i] = v
		case flow.KindString:
			v := grow[string](e.vals[i], n)
			for j := range rows {
				v[j] = c.String(&rows[j])
			}
			e.vals[i] = v
		case flow.KindTime:
			switch {
			case c.Source == flowtable.SourceStartSeconds || c.Source == flowtable.SourceEndSeconds:
				v := grow[time.Time](e.vals[i], n)
				for j := range rows {
					v[j] = time.Unix(int64(c.Uint(&rows[j])), 0)
				}
				e.vals[i] = v
			case e.schema.DateTime64:
				v := grow[time.Time](e.vals[i], n)
				for j := range rows {
					v[j] = time.UnixMilli(int64(c.Uint(&rows[j])))
				}
				e.vals[i] = v
			default:
				v := grow[uint64](e.vals[i], n)
				for j := range rows {
					v[j] = c.Uint(&rows[j])
				}
				e.vals[i] = v
			}
		default:
			switch c.Width {
			case 1:
				v := grow[uint8](e.vals[i], n)
				for j := range rows {
					v[j] = uint8(c.Uint(&rows[j]))
				}
				e.vals[i] = v
			case 2:
				v := grow[uint16](e.vals[i], n)
				for j := range rows {
					v[j] = uint16(c.Uint(&rows[j]))
				}
				e.vals[i] = v
			case 4:
				v := grow[uint32](e.vals[i], n)
				for j := range rows {
					v[j] = uint32(c.Uint(&rows[j]))
				}
				e.vals[i] = v
			default:
				v := grow[uint64](e.vals[i], n)
				for j := range rows {
					v[j] = c.Uint(&rows[j])
				}
				e.vals[i] = v
			}
		}
	}
}

// grow returns prev (a []T in an any) resized to n, or a new slice.
func grow[T any](prev any, n int) []T {
	if s, ok := prev.([]T); ok && cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// permanentCodes are server exceptions about the data or the table's
// layout: retrying the same batch cannot succeed.
var permanentCodes = map[int32]bool{
	6:  true, // CANNOT_PARSE_TEXT
	16: true, // NO_SUCH_COLUMN_IN_TABLE
	27: true, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
	47: true, // UNKNOWN_IDENTIFIER
	53: true, // TYPE_MISMATCH
	70: true, // CANNOT_CONVERT_TYPE
}

// classify marks data errors permanent; anything else (connection lost,
// server overloaded) is retried, on a fresh connection.
func (e *Exporter) classify(err error) error {
	var ex *ch.Exception
	if errors.As(err, &ex) {
		switch {
		case permanentCodes[ex.Code]:
			return sinkbuf.Permanent(err)
		case ex.Code == 60 || ex.Code == 81: // UNKNOWN_TABLE, UNKNOWN_DATABASE: dropped behind our back
			e.created = false
		}
		return err
	}
	e.closeConn()
	return err
}

var (
	_ plugin.AckExporter = (*Exporter)(nil)
	_ plugin.Deferred    = (*Exporter)(nil)
)

// Columns returns rows as one typed slice per column, as the exporter
// sends them, for benchmarks that compare with the client alone.
func Columns(s *Schema, cols []flowtable.Column, rows []flow.Record) []any {
	e := &Exporter{cols: cols, schema: s}
	e.fill(rows)
	out := make([]any, len(e.vals))
	copy(out, e.vals)
	return out
}

// Slice returns rows i..j of a column slice made by Columns.
func Slice(col any, i, j int) any {
	switch v := col.(type) {
	case [][]byte:
		return v[i:j]
	case []string:
		return v[i:j]
	case []time.Time:
		return v[i:j]
	case []uint8:
		return v[i:j]
	case []uint16:
		return v[i:j]
	case []uint32:
		return v[i:j]
	case []uint64:
		return v[i:j]
	}
	return nil
}
