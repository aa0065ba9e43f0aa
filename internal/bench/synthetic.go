package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// Spec describes a synthetic input: how many flow records, their protocol
// and address-family mix, and the cluster they come from. Its text form is
// comma-separated key=value pairs (see [ParseSpec]).
type Spec struct {
	// Flows is the number of records. Default 100000.
	Flows int
	// TCP, UDP and ICMP are the shares of each protocol, in [0, 1]; the rest
	// (1 - their sum) is GRE and SCTP. ICMP is ICMPv6 (58) on IPv6 flows.
	// Default 0.7, 0.2, 0.1. Setting any of them zeroes the others not set.
	TCP, UDP, ICMP float64
	// IPv6 is the share of IPv6 flows, in [0, 1]. Default 0.3.
	IPv6 float64
	// Antrea adds the Antrea IEs (PEN 56506) an Antrea flow exporter sends:
	// Pod, Node, Service and NetworkPolicy names, Pod labels, tcpState,
	// flowType, throughput. Default true; false gives bare 5-tuples with
	// counters and times, as softflowd sends.
	Antrea bool
	// Labels is the number of labels per Pod (sourcePodLabels /
	// destinationPodLabels JSON). Default 5; 0 leaves the fields out.
	Labels int
	// Pods, Nodes, Namespaces and Services size the cluster the flows run
	// in. Defaults 1000, 10, 8, 50.
	Pods, Nodes, Namespaces, Services int
	// External is the share of flows to addresses outside the cluster
	// (flowType 3), in [0, 1]. Default 0.1.
	External float64
}

// DefaultSpec returns the default synthetic input.
func DefaultSpec() Spec {
	return Spec{
		Flows: 100000, TCP: 0.7, UDP: 0.2, ICMP: 0.1, IPv6: 0.3, Antrea: true, Labels: 5,
		Pods: 1000, Nodes: 10, Namespaces: 8, Services: 50, External: 0.1,
	}
}

// ErrSpec is wrapped by every [ParseSpec] error.
var ErrSpec = errors.New("invalid synthetic spec")

// ParseSpec parses "flows=100000,tcp=0.7,udp=0.2,icmp=0.1,ipv6=0.3,
// antrea=true,labels=5" (also pods, nodes, namespaces, services, external)
// over [DefaultSpec]. An empty string is the default. Every problem is
// reported, each naming its key and value.
func ParseSpec(s string) (Spec, error) {
	spec := DefaultSpec()
	var errs []error
	protoSet := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !ok {
			errs = append(errs, fmt.Errorf("%q: want key=value", part))
			continue
		}
		integer := func(dst *int, min int) {
			n, err := strconv.Atoi(val)
			if err != nil || n < min {
				errs = append(errs, fmt.Errorf("%s: %q is not an integer >= %d", key, val, min))
				return
			}
			*dst = n
		}
		share := func(dst *float64) {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
				errs = append(errs, fmt.Errorf("%s: %q is not a share in [0, 1]", key, val))
				return
			}
			*dst = f
		}
		switch key {
		case "flows":
			integer(&spec.Flows, 1)
		case "tcp":
			share(&spec.TCP)
			protoSet[key] = true
		case "udp":
			share(&spec.UDP)
			protoSet[key] = true
		case "icmp":
			share(&spec.ICMP)
			protoSet[key] = true
		case "ipv6":
			share(&spec.IPv6)
		case "external":
			share(&spec.External)
		case "antrea":
			b, err := strconv.ParseBool(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not true or false", key, val))
				continue
			}
			spec.Antrea = b
		case "labels":
			integer(&spec.Labels, 0)
		case "pods":
			integer(&spec.Pods, 1)
		case "nodes":
			integer(&spec.Nodes, 1)
		case "namespaces":
			integer(&spec.Namespaces, 1)
		case "services":
			integer(&spec.Services, 0)
		default:
			errs = append(errs, fmt.Errorf("%s: unknown key (want flows, tcp, udp, icmp, ipv6, external, antrea, labels, pods, nodes, namespaces or services)", key))
		}
	}
	if len(protoSet) > 0 {
		// A mix given in part means "only these": tcp=1 is all TCP.
		if !protoSet["tcp"] {
			spec.TCP = 0
		}
		if !protoSet["udp"] {
			spec.UDP = 0
		}
		if !protoSet["icmp"] {
			spec.ICMP = 0
		}
	}
	if sum := spec.TCP + spec.UDP + spec.ICMP; sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("tcp+udp+icmp: %g exceeds 1", sum))
	}
	if err := errors.Join(errs...); err != nil {
		return Spec{}, fmt.Errorf("%w %q: %w", ErrSpec, s, err)
	}
	return spec, nil
}

// String returns the spec in the form ParseSpec reads, every key set.
func (s Spec) String() string {
	g := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	return fmt.Sprintf("flows=%d,tcp=%s,udp=%s,icmp=%s,ipv6=%s,external=%s,antrea=%t,labels=%d,pods=%d,nodes=%d,namespaces=%d,services=%d",
		s.Flows, g(s.TCP), g(s.UDP), g(s.ICMP), g(s.IPv6), g(s.External), s.Antrea, s.Labels, s.Pods, s.Nodes, s.Namespaces, s.Services)
}

// Antrea IEs without a typed field (PEN 56506; go-ipfix registry): bits/s
// of the flow in each direction, unsigned64.
const (
	ieThroughput        = 145
	ieReverseThroughput = 146
)

// epoch is the synthetic flows' first end time, fixed so a seed gives the
// same records on every machine.
var epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()

// Generate builds spec.Flows records from seed. The same spec and seed give
// the same records. Records look like an Antrea flow exporter's: Pod-to-Pod
// flows (intra- and inter-Node), flows through Service ClusterIPs and
// flows to external addresses, with counters in both directions and
// second-resolution times (flowStartSeconds/flowEndSeconds, RFC 7011
// §6.1.7).
func Generate(spec Spec, seed uint64) *Input {
	c := newCluster(spec, seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	b := flow.NewBatch(spec.Flows)
	var scratch [8]byte
	for i := 0; i < spec.Flows; i++ {
		c.flow(b.Append(), b, rng, i, scratch[:])
	}
	return &Input{Name: fmt.Sprintf("synthetic %s seed=%d", spec, seed), Batch: b}
}

var (
	tcpPorts   = []uint16{80, 443, 8080, 5432, 6379, 9090, 3306, 9092, 2379, 8443}
	udpPorts   = []uint16{53, 123, 4789, 8125, 514, 6081}
	tcpStates  = []string{"ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "TIME_WAIT", "TIME_WAIT", "CLOSE_WAIT", "SYN_SENT"}
	otherProto = []uint8{47, 132} // GRE, SCTP
)

// flow fills r with flow i.
func (c *cluster) flow(r *flow.Record, b *flow.Batch, rng *rand.Rand, i int, scratch []byte) {
	s := c.spec
	v6 := rng.Float64() < s.IPv6
	var proto uint8
	switch x := rng.Float64(); {
	case x < s.TCP:
		proto = 6
	case x < s.TCP+s.UDP:
		proto = 17
	case x < s.TCP+s.UDP+s.ICMP:
		proto = 1
		if v6 {
			proto = 58
		}
	default:
		proto = otherProto[rng.IntN(len(otherProto))]
	}
	src := &c.pods[rng.IntN(len(c.pods))]
	var (
		dst      *pod
		dstAddr  netip.Addr
		svc      *service
		flowType uint8
		dport    uint16
	)
	switch {
	case rng.Float64() < s.External:
		flowType = 3 // to external
		if v6 {
			var a [16]byte
			copy(a[:], netip.MustParseAddr("2001:db8::").AsSlice()[:8])
			binary.BigEndian.PutUint64(a[8:], rng.Uint64())
			dstAddr = netip.AddrFrom16(a)
		} else {
			dstAddr = netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + rng.IntN(254))})
		}
	default:
		if len(c.services) > 0 && (proto == 6 || proto == 17) && rng.IntN(2) == 0 {
			candidates := c.tcpServices
			if proto == 17 {
				candidates = c.udpServices
			}
			if len(candidates) > 0 {
				svc = &c.services[candidates[rng.IntN(len(candidates))]]
				dst = &c.pods[svc.backends[rng.IntN(len(svc.backends))]]
				dport = svc.port
			}
		}
		if dst == nil {
			dst = &c.pods[rng.IntN(len(c.pods))]
		}
		dstAddr = dst.addr(v6)
		flowType = 2 // inter-node
		if dst.node == src.node {
			flowType = 1
		}
	}
	var sport uint16
	switch proto {
	case 6, 17:
		sport = uint16(32768 + rng.IntN(28232))
		if dport == 0 {
			if proto == 6 {
				dport = tcpPorts[rng.IntN(len(tcpPorts))]
			} else {
				dport = udpPorts[rng.IntN(len(udpPorts))]
			}
		}
	case 1:
		dport = 8 << 8 // echo request, type<<8|code as exporters put it in the port
	case 58:
		dport = 128 << 8
	}

	node := &c.nodes[src.node]
	r.Exporter = netip.AddrPortFrom(node.v4, 4739)
	r.ObservationDomainID = node.domain
	r.SetAddr(flow.SourceAddress, src.addr(v6))
	r.SetAddr(flow.DestinationAddress, dstAddr)
	r.SetUint(flow.ProtocolIdentifier, uint64(proto))
	r.SetUint(flow.SourceTransportPort, uint64(sport))
	r.SetUint(flow.DestinationTransportPort, uint64(dport))

	packets := 1 + uint64(rng.ExpFloat64()*40)
	octets := packets * uint64(64+rng.IntN(1400))
	rpackets := packets * uint64(60+rng.IntN(60)) / 100
	roctets := rpackets * uint64(64+rng.IntN(1400))
	periods := uint64(1 + rng.IntN(6)) // active-timeout reports so far
	r.SetUint(flow.PacketDeltaCount, packets)
	r.SetUint(flow.OctetDeltaCount, octets)
	r.SetUint(flow.PacketTotalCount, packets*periods)
	r.SetUint(flow.OctetTotalCount, octets*periods)
	r.SetUint(flow.ReversePacketDeltaCount, rpackets)
	r.SetUint(flow.ReverseOctetDeltaCount, roctets)
	r.SetUint(flow.ReversePacketTotalCount, rpackets*periods)
	r.SetUint(flow.ReverseOctetTotalCount, roctets*periods)

	end := epoch + int64(i)*int64(10*time.Millisecond)
	durSec := 1 + rng.IntN(120)
	end -= end % int64(time.Second) // Antrea sends whole seconds
	r.SetUint(flow.FlowEnd, uint64(end))
	r.SetUint(flow.FlowStart, uint64(end-int64(durSec)*int64(time.Second)*int64(periods)))
	reason := uint64(2) // active timeout
	if rng.IntN(4) == 0 {
		reason = 3 // end of flow detected
	}
	r.SetUint(flow.FlowEndReason, reason)

	if !s.Antrea {
		return
	}
	r.SetString(flow.SourcePodName, src.name)
	r.SetString(flow.SourcePodNamespace, src.namespace)
	r.SetString(flow.SourceNodeName, node.name)
	if src.labels != "" {
		r.SetString(flow.SourcePodLabels, src.labels)
	}
	if dst != nil {
		r.SetString(flow.DestinationPodName, dst.name)
		r.SetString(flow.DestinationPodNamespace, dst.namespace)
		r.SetString(flow.DestinationNodeName, c.nodes[dst.node].name)
		if dst.labels != "" {
			r.SetString(flow.DestinationPodLabels, dst.labels)
		}
	}
	if svc != nil {
		r.SetAddr(flow.DestinationClusterIP, svc.addr(v6))
		r.SetUint(flow.DestinationServicePort, uint64(svc.port))
		r.SetString(flow.DestinationServicePortName, svc.portName)
	}
	if dst != nil && rng.IntN(10) < 3 {
		r.SetString(flow.IngressNetworkPolicyName, "allow-"+dst.app)
		r.SetString(flow.IngressNetworkPolicyNamespace, dst.namespace)
		r.SetString(flow.IngressNetworkPolicyRuleName, "ingress-0")
		r.SetUint(flow.IngressNetworkPolicyRuleAction, 1) // Allow
		r.SetUint(flow.IngressNetworkPolicyType, 1)       // K8sNetworkPolicy
	}
	if rng.IntN(20) == 0 {
		r.SetString(flow.EgressNetworkPolicyName, "egress-"+src.app)
		r.SetString(flow.EgressNetworkPolicyNamespace, src.namespace)
		r.SetString(flow.EgressNetworkPolicyRuleName, "egress-0")
		r.SetUint(flow.EgressNetworkPolicyRuleAction, 1)
		r.SetUint(flow.EgressNetworkPolicyType, 1)
	}
	if proto == 6 {
		st := tcpStates[rng.IntN(len(tcpStates))]
		r.SetString(flow.TCPState, st)
	}
	r.SetUint(flow.FlowType, uint64(flowType))
	seconds := uint64(durSec)
	binary.BigEndian.PutUint64(scratch, octets*8/seconds)
	r.Extra = append(r.Extra, flow.Field{Enterprise: flow.AntreaPEN, Element: ieThroughput, Value: b.CopyBytes(scratch)})
	binary.BigEndian.PutUint64(scratch, roctets*8/seconds)
	r.Extra = append(r.Extra, flow.Field{Enterprise: flow.AntreaPEN, Element: ieReverseThroughput, Value: b.CopyBytes(scratch)})
}

// crc is the observation domain an Antrea agent would use for a Node:
// any stable per-Node number does.
func crc(s string) uint32 { return crc32.ChecksumIEEE([]byte(s)) }
