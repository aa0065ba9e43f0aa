package proxy

// Config configures the proxy.
type Config struct {
	// Overwrite replaces originalExporter*/originalObservationDomainId a
	// record already carries (from an upstream proxy). Default false: the
	// first proxy's values win, so a chain of proxies still names the
	// exporting process that metered the flow.
	Overwrite bool `koanf:"overwrite"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{} }

// Validate has nothing to check; it exists for the plugin.Config contract.
func (c *Config) Validate() error { return nil }

// HandlesRaw reports that the proxy stamps raw records too (config.RawStage).
func (c *Config) HandlesRaw() bool { return true }
