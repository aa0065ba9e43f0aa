package conntrack

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ExampleYAML is the example pipeline of the plugin's README.
//
//go:embed example.yaml
var ExampleYAML string

// Config is source.conntrack's configuration. The defaults are Antrea
// FlowExporter's.
type Config struct {
	// PollInterval is how often the conntrack table is dumped. Default 5s.
	PollInterval time.Duration `koanf:"poll_interval"`
	// Events also listens to conntrack new/destroy events, so a connection
	// that opens and closes between two dumps is still exported (with the
	// final counters its destroy event carries). Default true.
	Events bool `koanf:"events"`
	// ActiveTimeout is how often a connection with new traffic is exported
	// (Antrea's activeFlowExportTimeout; flowEndReason 2). Default 5s.
	ActiveTimeout time.Duration `koanf:"active_timeout"`
	// IdleTimeout exports a connection whose counters have not changed for
	// this long (Antrea's idleFlowExportTimeout; flowEndReason 1). Default 15s.
	IdleTimeout time.Duration `koanf:"idle_timeout"`
	// MaxConnections bounds the connection store. When it is full, new
	// connections are not tracked until room frees up, and each one refused
	// is counted (weir_source_conntrack_store_full_total). Default 262144.
	MaxConnections int `koanf:"max_connections"`
	// Zones keeps only connections in these conntrack zones (CTA_ZONE,
	// 0..65535). Empty keeps every zone. Default empty.
	Zones []int `koanf:"zones"`
	// Mark keeps only connections whose connmark ANDed with Mark.Mask equals
	// Mark.Value. A zero mask keeps every connection. Default {0, 0}.
	Mark MarkConfig `koanf:"mark"`
	// PodCIDRs are the cluster's Pod CIDRs; NodeCIDR this Node's own Pod
	// CIDRs (one per family). Together they set flowType (Antrea IE 137):
	// 1 intra-Node (both ends in NodeCIDR), 2 inter-Node (destination in
	// another PodCIDR), 3 to-external (destination outside PodCIDRs), 4
	// from-external (source outside PodCIDRs, destination a local Pod).
	// Both empty leave flowType 0 (unknown). Default empty.
	PodCIDRs []string `koanf:"pod_cidrs"`
	// NodeCIDR: see PodCIDRs. A string or a list of strings.
	NodeCIDR CIDRList `koanf:"node_cidr"`
	// EnableAccounting sets net.netfilter.nf_conntrack_acct=1 at start
	// when it is 0 (counters exist only for connections created after).
	// When false and accounting is off, Start fails naming the sysctl.
	// Default false.
	EnableAccounting bool `koanf:"enable_accounting"`
	// EnableTimestamp sets net.netfilter.nf_conntrack_timestamp=1 at start,
	// so flowStartSeconds is the kernel's creation time of the connection
	// rather than the time Weir first saw it. Default false.
	EnableTimestamp bool `koanf:"enable_timestamp"`
	// CtIEs adds ctZone and ctMark (Antrea PEN 56506, elements 32000 and
	// 32001, see README) to every record. A collector in go-ipfix's strict
	// decoding mode (its default) rejects a template with IEs outside its
	// registry, so they are off by default.
	CtIEs bool `koanf:"ct_ies"`
	// NetNS is the network namespace whose conntrack table is read: a path
	// such as /var/run/netns/NAME or /proc/PID/ns/net. Empty is Weir's own.
	NetNS string `koanf:"netns"`
	// EventBuffer is the netlink receive buffer for events, in bytes. A
	// burst larger than this loses events (ENOBUFS, counted; a dump
	// follows at once). Default 8 MiB.
	EventBuffer int `koanf:"event_buffer"`
}

// MarkConfig selects connections by connmark: mark & Mask == Value.
type MarkConfig struct {
	// Value is the connmark to match after masking.
	Value uint32 `koanf:"value"`
	// Mask selects the bits of the connmark compared; 0 disables the filter.
	Mask uint32 `koanf:"mask"`
}

// CIDRList is a list of CIDRs that also decodes from one string with
// comma-separated CIDRs.
type CIDRList []string

// UnmarshalText decodes "10.0.1.0/24" or "10.0.1.0/24,fd00:1::/64".
func (l *CIDRList) UnmarshalText(b []byte) error {
	*l = nil
	for _, s := range strings.Split(string(b), ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		PollInterval:   5 * time.Second,
		Events:         true,
		ActiveTimeout:  5 * time.Second,
		IdleTimeout:    15 * time.Second,
		MaxConnections: 1 << 18,
		EventBuffer:    8 << 20,
	}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("poll_interval: %s is not positive", c.PollInterval))
	}
	if c.ActiveTimeout <= 0 {
		errs = append(errs, fmt.Errorf("active_timeout: %s is not positive", c.ActiveTimeout))
	}
	if c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("idle_timeout: %s is not positive", c.IdleTimeout))
	}
	if c.MaxConnections < 1 || c.MaxConnections > maxStoreSize {
		errs = append(errs, fmt.Errorf("max_connections: %d is outside 1..%d", c.MaxConnections, maxStoreSize))
	}
	for i, z := range c.Zones {
		if z < 0 || z > 65535 {
			errs = append(errs, fmt.Errorf("zones[%d]: %d is outside 0..65535", i, z))
		}
	}
	if c.Mark.Value&^c.Mark.Mask != 0 {
		errs = append(errs, fmt.Errorf("mark: value %#x has bits outside mask %#x, so nothing would match", c.Mark.Value, c.Mark.Mask))
	}
	for i, s := range c.PodCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			errs = append(errs, fmt.Errorf("pod_cidrs[%d]: %q is not a CIDR: %w", i, s, err))
		}
	}
	for i, s := range c.NodeCIDR {
		if _, err := netip.ParsePrefix(s); err != nil {
			errs = append(errs, fmt.Errorf("node_cidr[%d]: %q is not a CIDR: %w", i, s, err))
		}
	}
	if len(c.NodeCIDR) > 0 && len(c.PodCIDRs) == 0 {
		errs = append(errs, errors.New("pod_cidrs: missing, node_cidr needs the cluster's Pod CIDRs to tell inter-Node from to-external"))
	}
	if c.EventBuffer < 0 {
		errs = append(errs, fmt.Errorf("event_buffer: %d is negative", c.EventBuffer))
	}
	return errors.Join(errs...)
}
