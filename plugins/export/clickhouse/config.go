package clickhouse

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/weir-flow/weir/internal/sinkbuf"
)

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

// Config configures export.clickhouse.
type Config struct {
	// Address is the server's native-protocol address, "host:port".
	// Default "127.0.0.1:9000".
	Address string `koanf:"address"`
	// Database holds the table; it is created if missing. Default "default".
	Database string `koanf:"database"`
	// Table is the flow table; it is created if missing. Default "flows".
	Table string `koanf:"table"`
	// Username and Password authenticate. Default "default", "".
	Username string `koanf:"username"`
	Password string `koanf:"password"`
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// Batch sets the rows per insert and the longest a record waits.
	Batch sinkbuf.BatchConfig `koanf:"batch"`
	// Buffer bounds what is kept while inserts fail.
	Buffer sinkbuf.BufferConfig `koanf:"buffer"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Address:     "127.0.0.1:9000",
		Database:    "default",
		Table:       "flows",
		Username:    "default",
		DialTimeout: 5 * time.Second,
		Batch:       sinkbuf.DefaultBatch(),
		Buffer:      sinkbuf.DefaultBuffer(),
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: %q is not host:port: %w", c.Address, err))
	}
	if !identifier.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("database: %q is not an identifier (letters, digits, _)", c.Database))
	}
	if !identifier.MatchString(c.Table) {
		errs = append(errs, fmt.Errorf("table: %q is not an identifier (letters, digits, _)", c.Table))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("dial_timeout: %s, want a positive duration", c.DialTimeout))
	}
	errs = append(errs, sinkbuf.Validate(c.Batch, c.Buffer)...)
	return errors.Join(errs...)
}
