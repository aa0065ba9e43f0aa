package discard

import _ "embed"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

// Config configures export.discard. It has no settings.
type Config struct{}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{} }

// Validate has nothing to check; it exists for the plugin.Config contract.
func (c *Config) Validate() error { return nil }

// HandlesRaw reports that raw records are counted like any other
// (config.RawStage).
func (c *Config) HandlesRaw() bool { return true }
