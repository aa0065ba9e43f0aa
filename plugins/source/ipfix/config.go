package ipfix

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/weir-flow/weir/core/config"
)

// ExampleYAML is the example pipeline of the plugin's README.
//
//go:embed example.yaml
var ExampleYAML string

// Config is source.ipfix's configuration.
type Config struct {
	// UDP is the UDP listen address, "host:port" (":4739" listens on every
	// address). "" disables UDP. Default ":4739".
	UDP string `koanf:"udp"`
	// TCP is the TCP listen address. "" disables TCP. Default ":4739".
	TCP string `koanf:"tcp"`
	// Readers is the number of UDP sockets (SO_REUSEPORT) and reader
	// goroutines. 0 means GOMAXPROCS. Default 0.
	Readers int `koanf:"readers"`
	// ReusePort lets other processes share the UDP port (SO_REUSEPORT; the
	// kernel then splits the datagrams between them). By default a UDP
	// address another process already bound is an error at start; this
	// source's own readers share it either way. Default false.
	ReusePort bool `koanf:"reuse_port"`
	// RcvBuf is the receive buffer requested for each UDP socket and TCP
	// connection, in bytes: an integer or a string with a unit ("32MiB",
	// "512KiB", "8MB"). 0 keeps the kernel default. Default 32 MiB.
	RcvBuf config.ByteSize `koanf:"rcvbuf"`
	// MaxConnections bounds concurrent TCP connections; more are refused.
	// 0 means unlimited. Default 1024.
	MaxConnections int `koanf:"max_connections"`
	// TemplateTTL expires UDP templates an exporter has not refreshed for
	// this long (RFC 7011 §8.4). 0 keeps them until withdrawn. Default 0.
	TemplateTTL time.Duration `koanf:"template_ttl"`
	// PendingTTL is how long a data set that arrived before its template
	// waits for it before it is dropped and counted. 0 means the decoder's
	// default (30s).
	PendingTTL time.Duration `koanf:"pending_ttl"`
	// PendingSets bounds the data sets held per session waiting for their
	// template. 0 means the decoder's default (64).
	PendingSets int `koanf:"pending_sets"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		UDP:            ":4739",
		TCP:            ":4739",
		RcvBuf:         32 << 20,
		MaxConnections: 1024,
	}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.UDP == "" && c.TCP == "" {
		errs = append(errs, errors.New("udp and tcp: both empty, at least one listener is needed"))
	}
	for _, l := range []struct{ key, val string }{{"udp", c.UDP}, {"tcp", c.TCP}} {
		if l.val == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(l.val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", l.key, l.val, err))
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: port %q is not a number in 0..65535", l.key, l.val, port))
		}
	}
	if c.Readers < 0 || c.Readers > 1024 {
		errs = append(errs, fmt.Errorf("readers: %d is outside 0..1024", c.Readers))
	}
	if c.RcvBuf < 0 || c.RcvBuf > 1<<31-1 {
		errs = append(errs, fmt.Errorf("rcvbuf: %d is outside 0..2GiB", int64(c.RcvBuf)))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("max_connections: %d is negative", c.MaxConnections))
	}
	if c.TemplateTTL < 0 {
		errs = append(errs, fmt.Errorf("template_ttl: %s is negative", c.TemplateTTL))
	}
	if c.PendingTTL < 0 {
		errs = append(errs, fmt.Errorf("pending_ttl: %s is negative", c.PendingTTL))
	}
	if c.PendingSets < 0 {
		errs = append(errs, fmt.Errorf("pending_sets: %d is negative", c.PendingSets))
	}
	return errors.Join(errs...)
}
