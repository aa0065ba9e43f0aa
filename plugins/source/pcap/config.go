package pcap

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
)

// ExampleYAML is the example pipeline of the plugin's README.
//
//go:embed example.yaml
var ExampleYAML string

// Config is source.pcap's configuration.
type Config struct {
	// Path is the pcap or pcapng file to replay; a relative path is
	// resolved against the config file's directory. Required.
	Path string `koanf:"path"`
	// Speed is the replay pace: 0 reads as fast as the pipeline takes
	// records, 1 replays at the pace of the capture, 2 twice as fast, 0.5
	// half as fast. Default 0.
	Speed float64 `koanf:"speed"`
	// Ports are the UDP destination ports that carry IPFIX (e.g. [4739]).
	// Empty takes every UDP packet whose payload starts like an IPFIX
	// message (version 10). Default empty.
	Ports []int `koanf:"ports"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{} }

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("path: missing, the capture file to replay is required"))
	}
	if c.Speed < 0 || math.IsNaN(c.Speed) || math.IsInf(c.Speed, 0) {
		errs = append(errs, fmt.Errorf("speed: %v is not 0 (full speed) or a positive factor", c.Speed))
	}
	for i, p := range c.Ports {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("ports[%d]: %d is outside 1..65535", i, p))
		}
	}
	return errors.Join(errs...)
}
