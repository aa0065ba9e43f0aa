package wasmhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/weir-flow/weir/core/plugin"
)

// Config configures the wasm processor.
type Config struct {
	// Path is the module file (.wasm), relative to the config file's
	// directory unless absolute. Required.
	Path string `koanf:"path"`
	// Config is passed to the module's init as JSON (any YAML value; absent
	// is null). The module may reject it, which fails `weir validate` and
	// start-up with the module's message.
	Config any `koanf:"config"`
	// MemoryLimit caps each instance's linear memory, in bytes; YAML takes
	// units ("64MiB", "1GiB"). Rounded up to 64 KiB pages. Default 64MiB;
	// at most 4GiB. A Go guest needs a few MiB to start.
	MemoryLimit plugin.ByteSize `koanf:"memory_limit"`
	// TableLimit caps the elements of each table the module defines
	// (function references, 8 bytes each of host memory, outside
	// memory_limit): table.grow past it fails in the module, and a module
	// whose table starts larger is refused. Default 0 means 1048576
	// (8 MiB); at most 268435456.
	TableLimit int `koanf:"table_limit"`
	// Timeout is the longest one batch may run in the module before the
	// call is stopped (within about a millisecond) and the instance
	// replaced. Default 1s. 0 disables the deadline: a module stuck in a
	// loop then keeps its instance and a CPU busy until Shutdown. The
	// deadline costs a few instructions per loop (docs/abi.md), so 0 is
	// not faster.
	Timeout time.Duration `koanf:"timeout"`
	// Instances is how many instances run batches in parallel. Default 0
	// means GOMAXPROCS. Instances are created on demand.
	Instances int `koanf:"instances"`
	// Allow grants the module access to host resources; default nothing.
	Allow Allow `koanf:"allow"`
	// CacheDir holds compiled modules across runs (a cold compile takes
	// hundreds of milliseconds, a cached one tens). Default "" means
	// <user cache dir>/weir/wasm; "off" disables the on-disk cache.
	// Entries compiled over 30 days ago, and the oldest past 1 GiB, are
	// evicted at start-up.
	CacheDir string `koanf:"cache_dir"`
}

// Allow lists what a module may reach outside its sandbox. WASI preview 1
// has no sockets API a host can grant, so there is no network access.
type Allow struct {
	// FS lists host directories mounted read-only at the same path in the
	// module, relative to the config file's directory unless absolute.
	// Each is confined with os.Root: ".." and symlinks that lead out of it
	// (absolute ones included) fail to open. Default none: the module sees
	// no filesystem.
	FS []string `koanf:"fs"`
	// Env lists host environment variables passed to the module by name;
	// unset ones are skipped. Default none.
	Env []string `koanf:"env"`
}

// Defaults.
const (
	DefaultMemoryLimit = 64 << 20
	DefaultTimeout     = time.Second
	// DefaultTableLimit is table_limit's default, in elements.
	DefaultTableLimit = 1 << 20
	maxTableLimit     = 1 << 28
	pageSize          = 64 << 10
	maxPages          = 65536 // 4 GiB, the wasm32 limit
)

// DefaultConfig returns the defaults: fail-open, 64 MiB, 1s, GOMAXPROCS
// instances, nothing allowed, the user cache directory.
func DefaultConfig() *Config {
	return &Config{MemoryLimit: DefaultMemoryLimit, Timeout: DefaultTimeout}
}

// Validate checks every field without touching the module; see [Check]
// for what needs the module. It is pure and joins every problem.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Path) == "" {
		errs = append(errs, errors.New("path: missing: give the .wasm module's path"))
	}
	if c.MemoryLimit <= 0 || c.MemoryLimit > maxPages*pageSize {
		errs = append(errs, fmt.Errorf("memory_limit: %s: want more than 0 and at most 4GiB, the most a wasm32 module can address", c.MemoryLimit))
	}
	if c.TableLimit < 0 || c.TableLimit > maxTableLimit {
		errs = append(errs, fmt.Errorf("table_limit: %d: want 0 (default %d) to %d elements", c.TableLimit, DefaultTableLimit, maxTableLimit))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %s: must be positive, or 0 for no deadline", c.Timeout))
	}
	if c.Instances < 0 {
		errs = append(errs, fmt.Errorf("instances: %d: must be 0 (GOMAXPROCS) or more", c.Instances))
	}
	for i, d := range c.Allow.FS {
		if strings.TrimSpace(d) == "" {
			errs = append(errs, fmt.Errorf("allow.fs[%d]: empty directory", i))
		}
	}
	for i, e := range c.Allow.Env {
		if e == "" || strings.ContainsAny(e, "=\x00") {
			errs = append(errs, fmt.Errorf("allow.env[%d]: %q is not an environment variable name", i, e))
		}
	}
	if _, err := json.Marshal(c.Config); err != nil {
		errs = append(errs, fmt.Errorf("config: cannot be encoded as JSON: %w", err))
	}
	return errors.Join(errs...)
}

// memoryPages returns the memory limit in 64 KiB pages.
func (c *Config) memoryPages() uint32 {
	n := int64(c.MemoryLimit)
	if n <= 0 || n > maxPages*pageSize {
		n = DefaultMemoryLimit
	}
	return uint32((n + pageSize - 1) / pageSize)
}

// limits returns the memory and table bounds of an instance.
func (c *Config) limits() limits {
	t := c.TableLimit
	if t <= 0 || t > maxTableLimit {
		t = DefaultTableLimit
	}
	return limits{pages: c.memoryPages(), tables: uint32(t)}
}

// instances returns the pool size.
func (c *Config) instances() int {
	if c.Instances > 0 {
		return c.Instances
	}
	return runtime.GOMAXPROCS(0)
}

// configJSON returns Config as JSON.
func (c *Config) configJSON() ([]byte, error) {
	return json.Marshal(c.Config)
}

// resolve returns p relative to baseDir unless absolute, as
// plugin.Settings.Path does (Check has a base directory, not Settings).
func resolve(baseDir, p string) string { return plugin.Settings{BaseDir: baseDir}.Path(p) }

// cacheDir returns the compilation cache directory, or "" for none.
func (c *Config) cacheDir(baseDir string) string {
	switch c.CacheDir {
	case "off":
		return ""
	case "":
		dir, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(dir, "weir", "wasm")
	}
	return resolve(baseDir, c.CacheDir)
}
