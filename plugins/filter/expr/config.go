package expr

import (
	"errors"
	"fmt"
)

// Config configures filter.expr.
type Config struct {
	// Expression is a boolean expression in the expr language over IE names
	// (see the package doc and README), e.g.
	// `protocolIdentifier == 6 && destinationTransportPort in [80, 443]`.
	// Required.
	Expression string `koanf:"expression"`
	// OnError is what happens to a record whose evaluation fails at run
	// time (an integer modulo by zero, say): "keep" (default) or "drop".
	// Either way the failure is counted.
	OnError string `koanf:"on_error"`
}

// DefaultConfig returns the defaults: no expression (which Validate
// rejects) and on_error keep.
func DefaultConfig() *Config { return &Config{OnError: "keep"} }

// Validate compiles and type-checks the expression (pure: no I/O) and
// checks on_error. It joins every problem.
func (c *Config) Validate() error {
	var errs []error
	if _, err := compile(c.Expression); err != nil {
		errs = append(errs, fmt.Errorf("expression: %w", err))
	}
	switch c.OnError {
	case "keep", "drop", "":
	default:
		errs = append(errs, fmt.Errorf("on_error: %q is not keep or drop", c.OnError))
	}
	return errors.Join(errs...)
}
