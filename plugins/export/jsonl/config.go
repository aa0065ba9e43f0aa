package jsonl

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the JSON-lines exporter.
type Config struct {
	// Path is the file to append to, created if missing; "-" is standard
	// output. Default "-".
	Path string `koanf:"path"`
	// Extra prints IEs that have no typed field (named from the IANA and
	// Antrea registries; unknown ones as "ie<enterprise>_<element>" with
	// hex bytes). Default true.
	Extra bool `koanf:"extra"`
	// RetryFor bounds how long one write (up to 1 MiB of lines) is
	// retried when it fails (disk full: ENOSPC, EDQUOT, EIO), waiting
	// 100ms, then twice as long each time, up to 5s between attempts; past
	// it the write's unwritten records are dropped and counted. 0 drops them at the first failure.
	// Default 30s.
	RetryFor time.Duration `koanf:"retry_for"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{Path: "-", Extra: true, RetryFor: 30 * time.Second} }

// Validate checks the config without touching the file system.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, fmt.Errorf("path: must not be empty (use \"-\" for standard output)"))
	}
	if c.RetryFor < 0 {
		errs = append(errs, fmt.Errorf("retry_for: %s is negative", c.RetryFor))
	}
	return errors.Join(errs...)
}
