package postgres

import (
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weir-flow/weir/internal/sinkbuf"
)

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

// Config configures export.postgres.
type Config struct {
	// DSN is the connection string, a URL
	// ("postgres://weir@db:5432/flows?sslmode=disable") or key=value
	// pairs ("host=/run/postgresql dbname=flows"); libpq's PG* environment
	// variables fill what it leaves out. Required.
	DSN string `koanf:"dsn"`
	// Table is the flow table, optionally schema-qualified
	// ("public.flows"); it is created if missing. Default "flows".
	Table string `koanf:"table"`
	// ConnectTimeout bounds connecting. Default 5s.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// Batch sets the rows per COPY and the longest a record waits.
	Batch sinkbuf.BatchConfig `koanf:"batch"`
	// Buffer bounds what is kept while COPYs fail.
	Buffer sinkbuf.BufferConfig `koanf:"buffer"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Table:          "flows",
		ConnectTimeout: 5 * time.Second,
		Batch:          sinkbuf.DefaultBatch(),
		Buffer:         sinkbuf.DefaultBuffer(),
	}
}

var tableName = regexp.MustCompile(`^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$`)

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn: must not be empty"))
	} else if _, err := pgx.ParseConfig(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("dsn: %w", err))
	}
	if !tableName.MatchString(c.Table) {
		errs = append(errs, fmt.Errorf("table: %q is not [schema.]name in lowercase letters, digits and _", c.Table))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("connect_timeout: %s, want a positive duration", c.ConnectTimeout))
	}
	errs = append(errs, sinkbuf.Validate(c.Batch, c.Buffer)...)
	return errors.Join(errs...)
}
