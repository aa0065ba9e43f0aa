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

// Config is export.ipfix's configuration.
type Config struct {
	// Address is the collector, "host:port". Required.
	Address string `koanf:"address"`
	// Transport is "udp" or "tcp". Default "udp".
	Transport string `koanf:"transport"`
	// ObservationDomainID is written in every message header. Default 0.
	ObservationDomainID uint32 `koanf:"observation_domain_id"`
	// TemplateRefresh resends templates at least this often over UDP
	// (RFC 7011 §8.4). Ignored for TCP. 0 sends each template once.
	// Default 60s.
	TemplateRefresh time.Duration `koanf:"template_refresh"`
	// MaxMessageSize bounds a message in bytes, 256..65535. 0 means, for
	// UDP, the route's MTU less the IP and UDP headers (1472 bytes on a
	// 1500-byte Ethernet path, 65507 on loopback; 1400 where the MTU is
	// unknown), so no datagram is fragmented; 65535 for TCP. Default 0.
	MaxMessageSize int `koanf:"max_message_size"`
	// DialTimeout bounds one TCP connection attempt. Default 5s.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// MaxBackoff caps the wait between TCP reconnection attempts, which
	// starts at 100ms and doubles. Default 30s.
	MaxBackoff time.Duration `koanf:"max_backoff"`
	// ResendWindow bounds, in bytes, the TCP messages kept after they are
	// written until the collector acknowledges them, to send them again
	// on the next connection if the current one breaks first. The socket's
	// send buffer is sized to it, so every unacknowledged byte fits. 0
	// resends nothing: unacknowledged records are only counted as possibly
	// lost. Default 4 MiB.
	ResendWindow config.ByteSize `koanf:"resend_window"`
	// OneSetPerMessage sends every template set and data set in a message
	// of its own: go-ipfix's collecting process, and so Antrea's Flow
	// Aggregator, reads only the first set of each message. Default false.
	OneSetPerMessage bool `koanf:"one_set_per_message"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		Transport:       "udp",
		TemplateRefresh: 60 * time.Second,
		DialTimeout:     5 * time.Second,
		MaxBackoff:      30 * time.Second,
		ResendWindow:    4 << 20,
	}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Address == "" {
		errs = append(errs, errors.New("address: missing, the collector's host:port is required"))
	} else if host, port, err := net.SplitHostPort(c.Address); err != nil {
		errs = append(errs, fmt.Errorf("address: %q is not host:port: %w", c.Address, err))
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		errs = append(errs, fmt.Errorf("address: %q: port %q is not a number in 1..65535", c.Address, port))
	} else if host == "" {
		errs = append(errs, fmt.Errorf("address: %q has no host", c.Address))
	}
	if c.Transport != "udp" && c.Transport != "tcp" {
		errs = append(errs, fmt.Errorf("transport: %q is not udp or tcp", c.Transport))
	}
	if c.TemplateRefresh < 0 {
		errs = append(errs, fmt.Errorf("template_refresh: %s is negative", c.TemplateRefresh))
	}
	if c.MaxMessageSize != 0 && (c.MaxMessageSize < 256 || c.MaxMessageSize > 65535) {
		errs = append(errs, fmt.Errorf("max_message_size: %d is outside 256..65535", c.MaxMessageSize))
	}
	if c.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("dial_timeout: %s is negative", c.DialTimeout))
	}
	if c.MaxBackoff < 0 {
		errs = append(errs, fmt.Errorf("max_backoff: %s is negative", c.MaxBackoff))
	}
	if c.ResendWindow < 0 || c.ResendWindow > 1<<30 {
		errs = append(errs, fmt.Errorf("resend_window: %d is outside 0..1GiB", int64(c.ResendWindow)))
	}
	return errors.Join(errs...)
}

// HandlesRaw reports that raw records are re-exported (config.RawStage).
func (c *Config) HandlesRaw() bool { return true }

// messageSize returns the effective MaxMessageSize.
func (c *Config) messageSize() int {
	switch {
	case c.MaxMessageSize != 0:
		return c.MaxMessageSize
	case c.Transport == "tcp":
		return 65535
	}
	return 1400
}

// udpMessageSize is the largest IPFIX message that fits one unfragmented
// datagram on a path of mtu bytes (0: unknown, 1400), within 256..65507.
func udpMessageSize(mtu int, v6 bool) int {
	if mtu <= 0 {
		return 1400
	}
	headers := 20 + 8
	if v6 {
		headers = 40 + 8
	}
	return min(max(mtu-headers, 256), maxUDPPayload)
}
