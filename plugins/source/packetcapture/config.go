package packetcapture

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/weir-flow/weir/core/config"
)

// ExampleYAML is the example pipeline of the plugin's README.
//
//go:embed example.yaml
var ExampleYAML string

// Directions of a capture (Antrea PacketCapture's bidirectional: false/true).
const (
	SourceToDestination = "source-to-destination"
	DestinationToSource = "destination-to-source"
	Both                = "both"
)

// Summaries of the captured packets (Config.Records).
const (
	RecordsBiflow  = "biflow"
	RecordsUniflow = "uniflow"
	RecordsNone    = "none"
)

// DefaultSnapLength is tcpdump's default snap length, in bytes.
const DefaultSnapLength = 262144

// Config is source.packetcapture's configuration.
type Config struct {
	// Interface is the network interface to capture on (e.g. "eth0",
	// "antrea-gw0"). Required.
	Interface string `koanf:"interface"`
	// Flow selects the conversation; every field is optional, and an empty
	// flow captures every packet of the interface.
	Flow Flow `koanf:"flow"`
	// Direction is which packets of the flow to keep: source-to-destination
	// (packets from Flow's source to its destination), destination-to-source
	// (the replies) or both. Default source-to-destination.
	Direction string `koanf:"direction"`
	// Packets ends the capture after this many packets. 0 = no packet limit.
	Packets uint64 `koanf:"packets"`
	// Bytes ends the capture once the captured packets' original lengths
	// (on the wire, link header included) add up to this many bytes; the
	// packet that reaches it is kept. 0 = no byte limit.
	Bytes config.ByteSize `koanf:"bytes"`
	// Duration ends the capture this long after it starts. 0 = no time
	// limit. At least one of packets, bytes and duration is required: the
	// first one reached ends the capture.
	Duration time.Duration `koanf:"duration"`
	// Path is the pcapng file to write; relative to the config file's
	// directory. Required.
	Path string `koanf:"path"`
	// SnapLength is the most bytes kept of each packet. Default 262144
	// (tcpdump's); 0 means the default.
	SnapLength int `koanf:"snap_length"`
	// Rotation limits the files the capture writes.
	Rotation Rotation `koanf:"rotation"`
	// Records is how the captured packets are summarised: biflow (one
	// RFC 5103 record per conversation when direction is both), uniflow
	// (one record per 5-tuple and direction) or none. Default biflow; with
	// one direction both give one record per 5-tuple.
	Records string `koanf:"records"`
	// MaxFlows bounds the flow table that summarises the captured packets
	// into flow records; packets of further flows are written to the file
	// but counted, not summarised. Default 65536.
	MaxFlows int `koanf:"max_flows"`
}

// Flow is the 5-tuple of a capture spec; unset fields match anything.
type Flow struct {
	// SourceIP is the source address (IPv4 or IPv6) of the flow.
	SourceIP string `koanf:"source_ip"`
	// DestinationIP is the destination address, same family as SourceIP.
	DestinationIP string `koanf:"destination_ip"`
	// SourcePort is the source transport port (tcp, udp or sctp); 0 = any.
	SourcePort int `koanf:"source_port"`
	// DestinationPort is the destination transport port; 0 = any.
	DestinationPort int `koanf:"destination_port"`
	// Protocol is an IANA keyword (tcp, udp, sctp, icmp, icmpv6) or a
	// protocol number 0-255. Unset = any.
	Protocol any `koanf:"protocol"`
}

// Rotation limits the pcapng files: when the current file reaches MaxBytes
// the next packet starts a new file (PATH, then NAME.1.EXT, NAME.2.EXT …),
// and when there are more than MaxFiles files the oldest is deleted.
type Rotation struct {
	// MaxBytes is the largest size of one file, in bytes. 0 = one file.
	MaxBytes config.ByteSize `koanf:"max_bytes"`
	// MaxFiles is how many files are kept. 0 = all of them.
	MaxFiles int `koanf:"max_files"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{Direction: SourceToDestination, SnapLength: DefaultSnapLength, Records: RecordsBiflow, MaxFlows: 65536}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Interface == "" {
		errs = append(errs, errors.New("interface: missing, the interface to capture on is required"))
	} else if len(c.Interface) > 15 || strings.ContainsAny(c.Interface, " /") {
		errs = append(errs, fmt.Errorf("interface: %q is not an interface name", c.Interface))
	}
	if _, err := c.Flow.spec(); err != nil {
		errs = append(errs, err)
	}
	switch c.Direction {
	case SourceToDestination, DestinationToSource, Both:
	default:
		errs = append(errs, fmt.Errorf("direction: %q is not %s, %s or %s", c.Direction, SourceToDestination, DestinationToSource, Both))
	}
	if c.Packets == 0 && c.Bytes == 0 && c.Duration == 0 {
		errs = append(errs, errors.New("packets, bytes, duration: set at least one limit, the first one reached ends the capture"))
	}
	if c.Bytes < 0 {
		errs = append(errs, fmt.Errorf("bytes: %d is negative", c.Bytes))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration: %s is negative", c.Duration))
	}
	if c.Path == "" {
		errs = append(errs, errors.New("path: missing, the pcapng file to write is required"))
	}
	if c.SnapLength < 0 || c.SnapLength > DefaultSnapLength {
		errs = append(errs, fmt.Errorf("snap_length: %d is outside 0..%d", c.SnapLength, DefaultSnapLength))
	}
	if c.Rotation.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("rotation.max_bytes: %d is negative", c.Rotation.MaxBytes))
	}
	if c.Rotation.MaxFiles < 0 {
		errs = append(errs, fmt.Errorf("rotation.max_files: %d is negative", c.Rotation.MaxFiles))
	}
	switch c.Records {
	case RecordsBiflow, RecordsUniflow, RecordsNone:
	default:
		errs = append(errs, fmt.Errorf("records: %q is not %s, %s or %s", c.Records, RecordsBiflow, RecordsUniflow, RecordsNone))
	}
	if c.MaxFlows < 0 {
		errs = append(errs, fmt.Errorf("max_flows: %d is negative", c.MaxFlows))
	}
	return errors.Join(errs...)
}

// spec is a parsed Flow.
type spec struct {
	src, dst     netip.Addr // invalid = any
	sport, dport uint16     // 0 = any
	proto        uint8
	hasProto     bool
}

var protocolNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "icmp6": 58, "ipv6-icmp": 58, "sctp": 132}

func (f *Flow) spec() (spec, error) {
	var s spec
	var errs []error
	addr := func(key, v string) netip.Addr {
		if v == "" {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("flow.%s: %q is not an IPv4 or IPv6 address", key, v))
			return netip.Addr{}
		}
		return a.Unmap()
	}
	s.src = addr("source_ip", f.SourceIP)
	s.dst = addr("destination_ip", f.DestinationIP)
	if s.src.IsValid() && s.dst.IsValid() && s.src.Is4() != s.dst.Is4() {
		errs = append(errs, fmt.Errorf("flow.destination_ip: %s is not of source_ip %s's family", s.dst, s.src))
	}
	port := func(key string, v int) uint16 {
		if v < 0 || v > 65535 {
			errs = append(errs, fmt.Errorf("flow.%s: %d is outside 0..65535", key, v))
			return 0
		}
		return uint16(v)
	}
	s.sport = port("source_port", f.SourcePort)
	s.dport = port("destination_port", f.DestinationPort)
	switch p := f.Protocol.(type) {
	case nil:
	case string:
		if n, ok := protocolNames[strings.ToLower(p)]; ok {
			s.proto, s.hasProto = n, true
		} else if n, err := strconv.ParseUint(p, 10, 8); err == nil {
			s.proto, s.hasProto = uint8(n), true
		} else {
			errs = append(errs, fmt.Errorf("flow.protocol: %q is not tcp, udp, sctp, icmp, icmpv6 or a number 0-255", p))
		}
	case int, int64, uint64, float64:
		n, err := strconv.ParseFloat(fmt.Sprint(p), 64)
		if err != nil || n < 0 || n > 255 || n != float64(int(n)) {
			errs = append(errs, fmt.Errorf("flow.protocol: %v is not a protocol number 0-255", p))
		} else {
			s.proto, s.hasProto = uint8(n), true
		}
	default:
		errs = append(errs, fmt.Errorf("flow.protocol: %v (%T) is not a keyword or a number", p, p))
	}
	if (s.sport != 0 || s.dport != 0) && s.hasProto && !hasPorts(s.proto) {
		errs = append(errs, fmt.Errorf("flow.protocol: %v has no ports, but source_port/destination_port are set", f.Protocol))
	}
	return s, errors.Join(errs...)
}

// hasPorts reports whether protocol p carries transport ports.
func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 }

// Check compiles the spec's filter expression with libpcap (for Ethernet),
// so `weir validate` reports an expression libpcap refuses and a build
// without cgo. The interface is checked by New, where Weir runs.
func (c *Config) Check(context.Context, string) error {
	expression, err := c.Expression()
	if err != nil {
		return err
	}
	if _, err := compileFilter(layers.LinkTypeEthernet, DefaultSnapLength, expression); err != nil {
		return fmt.Errorf("flow: %w", err)
	}
	return nil
}

var _ config.Checker = (*Config)(nil)
