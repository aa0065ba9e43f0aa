package aggregate

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the aggregate processor. Defaults are Antrea's Flow
// Aggregator's where it has them.
type Config struct {
	// ActiveTimeout is how often a running flow with news is exported: the
	// deltas since its last export (flowEndReason 2, active timeout).
	// Default 60s (Antrea's activeFlowRecordTimeout).
	ActiveTimeout time.Duration `koanf:"active_timeout"`
	// InactiveTimeout evicts a flow no record has updated for that long,
	// exporting it first if it has news (flowEndReason 1, idle timeout).
	// Default 90s (Antrea's inactiveFlowRecordTimeout).
	InactiveTimeout time.Duration `koanf:"inactive_timeout"`
	// CorrelationTimeout is how long a half of an inter-Node flow waits for
	// the other Node's half; after it, the half is exported alone and
	// counted as uncorrelated. Default 5s.
	CorrelationTimeout time.Duration `koanf:"correlation_timeout"`
	// MaxFlows bounds the table (live flows). Default 1000000.
	MaxFlows int `koanf:"max_flows"`
	// WhenFull is what a record of a new flow does when the table holds
	// max_flows: "export-oldest" exports and evicts the least recently
	// updated of a sample of flows (flowEndReason 5) to make room;
	// "drop-new" leaves the new flow out of the table and passes its
	// record on unaggregated, marked flowEndReason 5. Both are counted and
	// logged. Default export-oldest.
	WhenFull string `koanf:"when_full"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		ActiveTimeout:      60 * time.Second,
		InactiveTimeout:    90 * time.Second,
		CorrelationTimeout: 5 * time.Second,
		MaxFlows:           1000000,
		WhenFull:           "export-oldest",
	}
}

// maxFlowsLimit keeps slab indexes in 31 bits.
const maxFlowsLimit = 1 << 30

// Validate checks every key and joins the problems.
func (c *Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"active_timeout", c.ActiveTimeout}, {"inactive_timeout", c.InactiveTimeout}, {"correlation_timeout", c.CorrelationTimeout}} {
		switch {
		case d.v < time.Millisecond:
			errs = append(errs, fmt.Errorf("%s: %v must be at least 1ms", d.key, d.v))
		case d.v > 24*time.Hour:
			errs = append(errs, fmt.Errorf("%s: %v must be at most 24h", d.key, d.v))
		}
	}
	if c.MaxFlows < 1 || c.MaxFlows > maxFlowsLimit {
		errs = append(errs, fmt.Errorf("max_flows: %d must be between 1 and %d", c.MaxFlows, maxFlowsLimit))
	}
	if c.WhenFull != "export-oldest" && c.WhenFull != "drop-new" {
		errs = append(errs, fmt.Errorf("when_full: %q is not export-oldest or drop-new", c.WhenFull))
	}
	return errors.Join(errs...)
}
