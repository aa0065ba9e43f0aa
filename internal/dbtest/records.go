package dbtest

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/internal/flowtable"
)

// Records returns n varied records whose ids are first…first+n-1: the id
// is in sourceTransportPort (low 16 bits) and observationDomainId (the
// rest), so ID finds a row. Half are IPv6; every third carries Antrea
// Pod/Node/Service/policy fields.
func Records(first, n int) *flow.Batch {
	b := flow.NewBatch(n)
	base := time.Date(2026, 11, 25, 0, 2, 51, 288e6, time.UTC)
	for i := first; i < first+n; i++ {
		r := b.Append()
		r.Exporter = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i%3)}), 4739)
		r.ObservationDomainID = uint32(i >> 16)
		if i%2 == 0 {
			r.SetAddr(flow.SourceAddress, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
			r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("10.96.0.10"))
		} else {
			r.SetAddr(flow.SourceAddress, netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(i), 14: byte(i >> 8), 13: byte(i >> 16)}))
			r.SetAddr(flow.DestinationAddress, netip.MustParseAddr("fd00::53"))
		}
		r.SetUint(flow.SourceTransportPort, uint64(i&0xffff))
		r.SetUint(flow.DestinationTransportPort, uint64(80+i%3))
		r.SetUint(flow.ProtocolIdentifier, []uint64{6, 17, 1, 58}[i%4])
		r.SetUint(flow.TCPControlBits, uint64(i%64))
		r.SetUint(flow.FlowEndReason, uint64(1+i%5))
		r.SetUint(flow.FlowStart, uint64(base.Add(time.Duration(i)*time.Millisecond).UnixNano()))
		r.SetUint(flow.FlowEnd, uint64(base.Add(time.Duration(i)*time.Millisecond+1500*time.Millisecond).UnixNano()))
		r.SetUint(flow.PacketDeltaCount, uint64(1+i%100))
		r.SetUint(flow.OctetDeltaCount, uint64(60+i*7))
		r.SetUint(flow.ReverseOctetDeltaCount, uint64(i*3))
		r.SetUint(flow.IngressInterface, uint64(i%7))
		if i%3 == 0 {
			r.SourcePodNamespace, r.SourcePodName = "shop", fmt.Sprintf("web-%d", i%50)
			r.DestinationPodNamespace, r.DestinationPodName = "kube-system", "coredns-0"
			r.SourceNodeName, r.DestinationNodeName = "node-a", "node-b"
			r.SetAddr(flow.DestinationClusterIP, netip.MustParseAddr("10.96.0.10"))
			r.SetUint(flow.DestinationServicePort, 53)
			r.DestinationServicePortName = "kube-system/kube-dns:dns"
			r.IngressNetworkPolicyName, r.IngressNetworkPolicyNamespace = "allow-dns", "kube-system"
			r.IngressNetworkPolicyRuleName = "rule-1"
			r.SetUint(flow.IngressNetworkPolicyRuleAction, 1)
			r.SetUint(flow.IngressNetworkPolicyType, 1)
			r.TCPState = "ESTABLISHED"
			r.SetUint(flow.FlowType, 2)
			r.SourcePodLabels = `{"app":"web"}`
		}
	}
	return b
}

// ID returns the id Records gave r.
func ID(r *flow.Record) int { return int(r.ObservationDomainID)<<16 | int(r.SourceTransportPort) }

// Expected formats column c of r as the test queries read it back: an
// address as IPv6NumToString (ClickHouse, IPv4-mapped) or host() (PostgreSQL),
// "" when absent; times as integer seconds or milliseconds; numbers in
// decimal; strings as they are.
func Expected(c *flowtable.Column, r *flow.Record, postgres bool) string {
	switch c.Kind {
	case flow.KindAddress:
		a := c.Addr(r)
		if !a.IsValid() {
			if postgres {
				return ""
			}
			return "::"
		}
		if !postgres && a.Unmap().Is4() {
			return "::ffff:" + a.Unmap().String()
		}
		return a.Unmap().String()
	case flow.KindString:
		return c.String(r)
	}
	v := c.Uint(r)
	if postgres && c.Kind == flow.KindTime && v == 0 {
		return ""
	}
	return strconv.FormatUint(v, 10)
}
