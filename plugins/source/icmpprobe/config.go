package icmpprobe

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// ExampleYAML is the example pipeline of the plugin's README.
//
//go:embed example.yaml
var ExampleYAML string

// Socket kinds.
const (
	SocketAuto         = "auto"         // raw if permitted, else unprivileged
	SocketRaw          = "raw"          // raw ICMP sockets (CAP_NET_RAW)
	SocketUnprivileged = "unprivileged" // ICMP datagram sockets ("udp4"/"udp6"), net.ipv4.ping_group_range
)

// Node address kinds for Kubernetes targets.
const (
	AddressInternalIP     = "InternalIP"
	AddressExternalIP     = "ExternalIP"
	AddressPodCIDRGateway = "PodCIDRGateway" // first address of each spec.podCIDRs, Antrea's gateway
)

// Config is source.icmpprobe's configuration.
type Config struct {
	// Targets are the IPv4 and IPv6 addresses to probe. Their metrics are
	// labelled target="targets[I]", I the index in this list (metric
	// labels never carry addresses); name them in NamedTargets instead.
	Targets []string `koanf:"targets"`
	// NamedTargets are more addresses to probe, by name: the name (letters,
	// digits, '-' and '_') is their metrics' target label.
	NamedTargets map[string]string `koanf:"named_targets"`
	// Kubernetes adds every Node of a cluster as targets, kept up to date.
	Kubernetes Kubernetes `koanf:"kubernetes"`
	// Interval is how often each target gets an echo request. Default 10s.
	Interval time.Duration `koanf:"interval"`
	// Timeout is how long a request waits for its reply before it counts
	// as lost. Default 2s.
	Timeout time.Duration `koanf:"timeout"`
	// ReportInterval is how often a record per target is emitted, covering
	// the probes whose outcome became known since the last one. Default
	// 60s; at least Interval.
	ReportInterval time.Duration `koanf:"report_interval"`
	// Socket is auto (raw sockets if permitted, else unprivileged ICMP
	// sockets), raw or unprivileged. Default auto.
	Socket string `koanf:"socket"`
	// PayloadSize is the echo data size in bytes (8-1400). Default 32.
	PayloadSize int `koanf:"payload_size"`
	// Firewall manages the nftables or iptables rules that let probes through.
	Firewall Firewall `koanf:"firewall"`
}

// Kubernetes selects Nodes as targets.
type Kubernetes struct {
	// Enabled turns Node discovery on.
	Enabled bool `koanf:"enabled"`
	// Kubeconfig is a kubeconfig path; "" is the in-cluster config.
	Kubeconfig string `koanf:"kubeconfig"`
	// Context selects a kubeconfig context; "" is the current one.
	Context string `koanf:"context"`
	// NodeName is this Node, which is not probed. Default "" (probe all).
	NodeName string `koanf:"node_name"`
	// Address is which Node address to probe: InternalIP (default),
	// ExternalIP or PodCIDRGateway (the first address of each Pod CIDR, the
	// Antrea gateway Antrea's NodeLatencyMonitor probes).
	Address string `koanf:"address"`
}

// Firewall backends.
const (
	BackendAuto     = "auto"     // iptables if the iptables command is legacy (x_tables), else nftables
	BackendNFTables = "nftables" // nftables over netlink (github.com/google/nftables)
	BackendIPTables = "iptables" // the iptables/ip6tables commands (github.com/coreos/go-iptables)
)

// Firewall configures the managed firewall rules.
type Firewall struct {
	// Manage installs rules letting echo requests out and echo replies in
	// (and IPv6 neighbour discovery) on Interface, and removes them at
	// shutdown. Default false.
	Manage bool `koanf:"manage"`
	// Interface is the only interface the rules apply to. Required with
	// manage.
	Interface string `koanf:"interface"`
	// Backend is where the rules go: auto (default; iptables when the
	// iptables command is the legacy x_tables one, else nftables),
	// nftables or iptables.
	Backend string `koanf:"backend"`
	// IPTablesPath is the iptables command of the iptables backend (its
	// IPv6 twin is the same name with ip6tables). Default "" (iptables on
	// PATH); e.g. /usr/sbin/iptables-legacy.
	IPTablesPath string `koanf:"iptables_path"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{Interval: 10 * time.Second, Timeout: 2 * time.Second, ReportInterval: time.Minute,
		Socket: SocketAuto, PayloadSize: 32, Kubernetes: Kubernetes{Address: AddressInternalIP},
		Firewall: Firewall{Backend: BackendAuto}}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Targets) == 0 && len(c.NamedTargets) == 0 && !c.Kubernetes.Enabled {
		errs = append(errs, errors.New("targets: empty, and no named_targets and kubernetes.enabled is false: nothing to probe"))
	}
	seen := map[netip.Addr]bool{}
	check := func(key, t string) {
		a, err := netip.ParseAddr(t)
		switch {
		case err != nil || a.Zone() != "":
			errs = append(errs, fmt.Errorf("%s: %q is not an IPv4 or IPv6 address", key, t))
		case seen[a.Unmap()]:
			errs = append(errs, fmt.Errorf("%s: %s is listed twice", key, t))
		case a.IsUnspecified() || a.IsMulticast():
			errs = append(errs, fmt.Errorf("%s: %s is not a unicast address", key, t))
		}
		seen[a.Unmap()] = true
	}
	for i, t := range c.Targets {
		check(fmt.Sprintf("targets[%d]", i), t)
	}
	names := make([]string, 0, len(c.NamedTargets))
	for name := range c.NamedTargets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !validName(name) {
			errs = append(errs, fmt.Errorf("named_targets.%s: the name is not 1-63 letters, digits, '-' or '_'", name))
		}
		check("named_targets."+name, c.NamedTargets[name])
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval: %s is not positive", c.Interval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s is not positive", c.Timeout))
	}
	if c.ReportInterval < c.Interval {
		errs = append(errs, fmt.Errorf("report_interval: %s is shorter than interval %s", c.ReportInterval, c.Interval))
	}
	switch c.Socket {
	case SocketAuto, SocketRaw, SocketUnprivileged:
	default:
		errs = append(errs, fmt.Errorf("socket: %q is not %s, %s or %s", c.Socket, SocketAuto, SocketRaw, SocketUnprivileged))
	}
	if c.PayloadSize < 8 || c.PayloadSize > 1400 {
		errs = append(errs, fmt.Errorf("payload_size: %d is outside 8..1400", c.PayloadSize))
	}
	switch c.Kubernetes.Address {
	case AddressInternalIP, AddressExternalIP, AddressPodCIDRGateway:
	default:
		errs = append(errs, fmt.Errorf("kubernetes.address: %q is not %s, %s or %s", c.Kubernetes.Address, AddressInternalIP, AddressExternalIP, AddressPodCIDRGateway))
	}
	if c.Firewall.Manage && c.Firewall.Interface == "" {
		errs = append(errs, errors.New("firewall.interface: missing, required with firewall.manage (the rules apply to that interface only)"))
	}
	switch c.Firewall.Backend {
	case "", BackendAuto, BackendNFTables, BackendIPTables: // "" is auto
	default:
		errs = append(errs, fmt.Errorf("firewall.backend: %q is not %s, %s or %s", c.Firewall.Backend, BackendAuto, BackendNFTables, BackendIPTables))
	}
	if len(c.Firewall.Interface) > 15 || strings.ContainsAny(c.Firewall.Interface, " /") {
		errs = append(errs, fmt.Errorf("firewall.interface: %q is not an interface name", c.Firewall.Interface))
	}
	return errors.Join(errs...)
}

// validName reports whether s is a named target's name.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
