package ipfix

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/ipfix"
	"github.com/weir-flow/weir/core/plugin"
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
	RcvBuf plugin.ByteSize `koanf:"rcvbuf"`
	// MaxConnections bounds concurrent TCP connections; more are refused.
	// 0 means unlimited. Default 1024.
	MaxConnections int `koanf:"max_connections"`
	// MaxConnectionsPerExporter bounds the concurrent TCP connections of
	// one exporter address, so that one peer cannot take every slot. 0
	// means unlimited. Default 16.
	MaxConnectionsPerExporter int `koanf:"max_connections_per_exporter"`
	// TCPHeaderTimeout bounds how long a TCP connection may take to send
	// its first complete message, and how long any message may take to
	// arrive once its first byte has; the connection is closed and counted
	// past it. 0 means no bound. Default 10s.
	TCPHeaderTimeout time.Duration `koanf:"tcp_header_timeout"`
	// TCPIdleTimeout closes a TCP connection that sent nothing for this
	// long. 0 means never. Default 15m.
	TCPIdleTimeout time.Duration `koanf:"tcp_idle_timeout"`
	// AllowedExporters lists the exporter prefixes ("10.0.0.0/8",
	// "2001:db8::/32", or a single address) whose messages and connections
	// are accepted; others are refused and counted. Empty allows every
	// address. Default empty.
	AllowedExporters []string `koanf:"allowed_exporters"`
	// TemplateTTL expires UDP templates an exporter has not refreshed for
	// this long (RFC 7011 §8.4), and forgets UDP sessions idle for this
	// long. 0 keeps them until withdrawn. TCP templates live as long as
	// their connection. Default 30m.
	TemplateTTL time.Duration `koanf:"template_ttl"`
	// PendingTTL is how long a data set that arrived before its template
	// waits for it before it is dropped and counted. 0 means the decoder's
	// default (30s).
	PendingTTL time.Duration `koanf:"pending_ttl"`
	// PendingSets bounds the data sets held per session waiting for their
	// template. 0 means the decoder's default (64).
	PendingSets int `koanf:"pending_sets"`
	// ShutdownDrain bounds how long Shutdown keeps reading what the
	// sockets already hold; what is left past it is decoded only to be
	// counted as lost (weir_source_ipfix_lost_on_shutdown_records_total)
	// and logged. 0 reads nothing more: everything left is counted.
	// Default 5s.
	ShutdownDrain time.Duration `koanf:"shutdown_drain"`
	// Limits bound the decoder state exporters can create.
	Limits Limits `koanf:"limits"`
	// Raw hands each IPFIX message on undecoded, as one raw record with
	// the exporter's address and the receive time (ipfix.AppendRaw), for
	// an exporter that ships messages as received (export.kafka with
	// payload: raw) or re-exports them without decoding (proxy →
	// export.ipfix). Raw records have no decoded fields for filters or
	// enrichers. Default false.
	Raw bool `koanf:"raw"`
}

// EmitsRaw reports whether the source hands on raw records (config.RawSource).
func (c *Config) EmitsRaw() bool { return c.Raw }

// Limits bound what exporters can make source.ipfix hold in memory. An
// exporter is a source IP address; a session is an exporter address:port
// and observation domain (RFC 7011 §8.4). What a limit refuses is counted
// in weir_source_ipfix_limit_refusals_total{reason=<key>} and logged (at
// most once a second): a refused session drops its message, a refused
// template leaves its data sets to wait and expire, a refused held set is
// dropped. 0 means unlimited.
type Limits struct {
	// Sessions bounds the sessions of all exporters. Default 16384.
	Sessions int `koanf:"sessions"`
	// SessionsPerExporter bounds the sessions of one exporter address.
	// Default 1024.
	SessionsPerExporter int `koanf:"sessions_per_exporter"`
	// TemplatesPerSession bounds the templates of one session. Default
	// 1024.
	TemplatesPerSession int `koanf:"templates_per_session"`
	// TemplateFields bounds the fields of one template (RFC 7011 allows
	// 16,383); a longer template is refused before it is compiled.
	// Default 1024.
	TemplateFields int `koanf:"template_fields"`
	// TemplateBytes bounds the memory of all stored templates. Default
	// 256 MiB.
	TemplateBytes config.ByteSize `koanf:"template_bytes"`
	// TemplateBytesPerExporter bounds that of one exporter. Default 32 MiB.
	TemplateBytesPerExporter config.ByteSize `koanf:"template_bytes_per_exporter"`
	// HeldBytes bounds the data sets held waiting for their template.
	// Default 64 MiB.
	HeldBytes config.ByteSize `koanf:"held_bytes"`
	// HeldBytesPerExporter bounds those of one exporter. Default 8 MiB.
	HeldBytesPerExporter config.ByteSize `koanf:"held_bytes_per_exporter"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	d := ipfix.DefaultLimits()
	return &Config{
		UDP:                       ":4739",
		TCP:                       ":4739",
		RcvBuf:                    32 << 20,
		MaxConnections:            1024,
		MaxConnectionsPerExporter: 16,
		TCPHeaderTimeout:          10 * time.Second,
		TCPIdleTimeout:            15 * time.Minute,
		TemplateTTL:               30 * time.Minute,
		ShutdownDrain:             5 * time.Second,
		Limits: Limits{
			Sessions:                 d.Sessions,
			SessionsPerExporter:      d.SessionsPerExporter,
			TemplatesPerSession:      d.TemplatesPerSession,
			TemplateFields:           d.TemplateFields,
			TemplateBytes:            config.ByteSize(d.TemplateBytes),
			TemplateBytesPerExporter: config.ByteSize(d.TemplateBytesPerExporter),
			HeldBytes:                config.ByteSize(d.HeldBytes),
			HeldBytesPerExporter:     config.ByteSize(d.HeldBytesPerExporter),
		},
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
	if c.MaxConnectionsPerExporter < 0 {
		errs = append(errs, fmt.Errorf("max_connections_per_exporter: %d is negative", c.MaxConnectionsPerExporter))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"tcp_header_timeout", c.TCPHeaderTimeout}, {"tcp_idle_timeout", c.TCPIdleTimeout}, {"shutdown_drain", c.ShutdownDrain}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %s is negative", d.key, d.v))
		}
	}
	for i, a := range c.AllowedExporters {
		if _, err := parsePrefix(a); err != nil {
			errs = append(errs, fmt.Errorf("allowed_exporters[%d]: %q is not an address or CIDR prefix: %w", i, a, err))
		}
	}
	for _, l := range []struct {
		key string
		v   int64
	}{
		{"sessions", int64(c.Limits.Sessions)}, {"sessions_per_exporter", int64(c.Limits.SessionsPerExporter)},
		{"templates_per_session", int64(c.Limits.TemplatesPerSession)}, {"template_fields", int64(c.Limits.TemplateFields)},
		{"template_bytes", int64(c.Limits.TemplateBytes)}, {"template_bytes_per_exporter", int64(c.Limits.TemplateBytesPerExporter)},
		{"held_bytes", int64(c.Limits.HeldBytes)}, {"held_bytes_per_exporter", int64(c.Limits.HeldBytesPerExporter)},
	} {
		if l.v < 0 {
			errs = append(errs, fmt.Errorf("limits.%s: %d is negative", l.key, l.v))
		}
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

// parsePrefix parses a CIDR prefix or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// budget returns the decoders' shared limits.
func (l Limits) budget() *ipfix.Budget {
	return ipfix.NewBudget(ipfix.Limits{
		Sessions:                 l.Sessions,
		SessionsPerExporter:      l.SessionsPerExporter,
		TemplatesPerSession:      l.TemplatesPerSession,
		TemplateFields:           l.TemplateFields,
		TemplateBytes:            int64(l.TemplateBytes),
		TemplateBytesPerExporter: int64(l.TemplateBytesPerExporter),
		HeldBytes:                int64(l.HeldBytes),
		HeldBytesPerExporter:     int64(l.HeldBytesPerExporter),
	})
}
