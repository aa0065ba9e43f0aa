package jsonl

import (
	"errors"
	"fmt"
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
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{Path: "-", Extra: true} }

// Validate checks the config without touching the file system.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, fmt.Errorf("path: must not be empty (use \"-\" for standard output)"))
	}
	return errors.Join(errs...)
}
