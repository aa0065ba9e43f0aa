package rpchost

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

// MaxInFlight bounds in_flight.
const MaxInFlight = 1024

// Config configures the rpc processor: one out-of-process plugin.
type Config struct {
	// Cmd is the plugin binary. A relative path resolves against the
	// directory of the config file, then the working directory. Required.
	Cmd string `koanf:"cmd"`
	// Args are the binary's command-line arguments. Default none.
	Args []string `koanf:"args"`
	// Env adds variables to the plugin's environment, which is otherwise
	// Weir's, e.g. {GOMAXPROCS: "4"} for a plugin that needs more than the
	// half of the CPUs the Go SDK takes by default. Default none.
	Env map[string]string `koanf:"env"`
	// Config is handed to the plugin's Init as JSON (any YAML value).
	// Default null.
	Config any `koanf:"config"`
	// SHA256 pins the binary: the lowercase or uppercase hex SHA-256 of
	// the file at Cmd (64 digits). The plugin is refused at start, and at
	// every restart, when the file differs. Empty (default) pins nothing.
	SHA256 string `koanf:"sha256"`
	// Timeout bounds one batch call, a duration such as "2s". A plugin
	// that does not answer in time is killed and restarted. Default 2s.
	Timeout time.Duration `koanf:"timeout"`
	// StartTimeout bounds starting the plugin: exec, go-plugin handshake
	// and Init. Default 10s.
	StartTimeout time.Duration `koanf:"start_timeout"`
	// InFlight is how many batches may be in the plugin at once, from 1 to
	// 1024; calls beyond it wait. Default 4.
	InFlight int `koanf:"in_flight"`
	// RestartBackoff spaces restarts of a failing plugin.
	RestartBackoff Backoff `koanf:"restart_backoff"`
}

// Backoff is an exponential restart back-off: the first restart after a
// healthy plugin fails waits Initial; each failed attempt doubles the wait,
// up to Max.
type Backoff struct {
	// Initial is the first wait, e.g. "100ms". Default 100ms.
	Initial time.Duration `koanf:"initial"`
	// Max caps the wait. Default 10s.
	Max time.Duration `koanf:"max"`
}

// DefaultConfig returns the defaults; Cmd must still be set.
func DefaultConfig() *Config {
	return &Config{
		Timeout:        2 * time.Second,
		StartTimeout:   10 * time.Second,
		InFlight:       4,
		RestartBackoff: Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second},
	}
}

// Validate checks c without touching the file system; [Config.Check] also
// starts the plugin.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Cmd) == "" {
		errs = append(errs, errors.New("cmd: required: the plugin binary to run"))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(c.Env[k], 0) {
			errs = append(errs, fmt.Errorf("env: %q: a variable needs a name without '=' and a value without NUL", k))
		}
	}
	if c.SHA256 != "" {
		if _, err := parseSHA256(c.SHA256); err != nil {
			errs = append(errs, fmt.Errorf("sha256: %q: %w", c.SHA256, err))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s: must be positive", c.Timeout))
	}
	if c.StartTimeout <= 0 {
		errs = append(errs, fmt.Errorf("start_timeout: %s: must be positive", c.StartTimeout))
	}
	if c.InFlight < 1 || c.InFlight > MaxInFlight {
		errs = append(errs, fmt.Errorf("in_flight: %d: must be from 1 to %d", c.InFlight, MaxInFlight))
	}
	if c.RestartBackoff.Initial <= 0 {
		errs = append(errs, fmt.Errorf("restart_backoff.initial: %s: must be positive", c.RestartBackoff.Initial))
	}
	if c.RestartBackoff.Max < c.RestartBackoff.Initial {
		errs = append(errs, fmt.Errorf("restart_backoff.max: %s: must be at least restart_backoff.initial (%s)", c.RestartBackoff.Max, c.RestartBackoff.Initial))
	}
	if _, err := json.Marshal(c.Config); err != nil {
		errs = append(errs, fmt.Errorf("config: cannot be sent to the plugin as JSON: %w", err))
	}
	return errors.Join(errs...)
}

// Check starts the plugin as Process would (checksum, handshake, Init) and
// stops it again, so `weir validate` finds a missing binary, a checksum
// mismatch or a config the plugin rejects. baseDir resolves a relative
// Cmd, as [plugin.Settings.BaseDir] does.
func (c *Config) Check(ctx context.Context, baseDir string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	l, err := newLauncher(c, baseDir, "rpc", slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < l.startTimeout {
		l.startTimeout = max(time.Until(d), time.Millisecond)
	}
	inst, err := l.start(ctx)
	if err != nil {
		return err
	}
	return inst.stop(ctx)
}

// parseSHA256 decodes a 64-digit hex digest.
func parseSHA256(s string) ([]byte, error) {
	sum, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not hexadecimal")
	}
	if len(sum) != 32 {
		return nil, fmt.Errorf("%d hex digits, want 64", 2*len(sum))
	}
	return sum, nil
}

// Files is the plugin binary: a new binary makes a hot reload replace the
// stage. A command that cannot be resolved lists nothing.
func (c *Config) Files(baseDir string) []string {
	path, err := resolveCmd(c.Cmd, baseDir)
	if err != nil {
		return nil
	}
	return []string{path}
}
