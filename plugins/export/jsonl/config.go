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
	// DirectIO is how a regular file is written: "auto" in whole aligned
	// blocks with O_DIRECT, bypassing the page cache, on the local
	// block-device file systems known to do it well (ext4, xfs, btrfs,
	// f2fs), and through the page cache elsewhere or when the file system
	// refuses O_DIRECT (the reason is logged); "on" requires O_DIRECT
	// (Start fails otherwise); "off" always writes through the page cache.
	// Standard output, pipes and devices are always written through the
	// page cache. Default "auto": a collector writes without pause, and
	// then O_DIRECT keeps up where the page cache's writeback falls behind,
	// at less CPU (see the README).
	DirectIO string `koanf:"direct_io"`
}

// DirectIO values.
const (
	DirectAuto = "auto"
	DirectOn   = "on"
	DirectOff  = "off"
)

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{Path: "-", Extra: true, RetryFor: 30 * time.Second, DirectIO: DirectAuto}
}

// Validate checks the config without touching the file system.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, fmt.Errorf("path: must not be empty (use \"-\" for standard output)"))
	}
	if c.RetryFor < 0 {
		errs = append(errs, fmt.Errorf("retry_for: %s is negative", c.RetryFor))
	}
	switch c.DirectIO {
	case DirectAuto, DirectOff:
	case DirectOn:
		if c.Path == "-" {
			errs = append(errs, fmt.Errorf("direct_io: on needs a file path, not standard output"))
		}
	default:
		errs = append(errs, fmt.Errorf("direct_io: %q is not auto, on or off", c.DirectIO))
	}
	return errors.Join(errs...)
}
