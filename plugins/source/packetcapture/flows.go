package packetcapture

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/weir-flow/weir/core/flow"
)

// flowKey is a 5-tuple in the direction of the flow record's forward
// direction.
type flowKey struct {
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
}

func (k flowKey) reversed() flowKey {
	return flowKey{src: k.dst, dst: k.src, sport: k.dport, dport: k.sport, proto: k.proto}
}

// counters are one direction's totals.
type counters struct {
	packets, octets uint64
	tcpFlags        uint16
}

// flowEntry summarises the packets of one flow (one direction, or both as
// an RFC 5103 biflow).
type flowEntry struct {
	key          flowKey
	first, last  time.Time
	fwd, rev     counters
	ipVersion    uint8
	order        int // creation order, for stable output
	finOrRstSeen bool
}

// flowTable summarises captured packets into flow records. With biflow set
// a packet and its reply share one entry; the forward direction is the one
// matching the spec's source-to-destination (RFC 5103 §5.2: the initiator
// when known), else the first packet seen.
type flowTable struct {
	spec    spec
	biflow  bool
	max     int
	entries map[flowKey]*flowEntry
	full    uint64 // packets of flows the table had no room for
}

func newFlowTable(s spec, biflow bool, max int) *flowTable {
	return &flowTable{spec: s, biflow: biflow, max: max, entries: map[flowKey]*flowEntry{}}
}

// packetInfo is what the flow table takes from one packet.
type packetInfo struct {
	key      flowKey
	octets   uint64 // IP total length: IP header and payload (IE 1's unit)
	tcpFlags uint16
	version  uint8
}

// add counts one packet; it reports false when the table is full.
func (t *flowTable) add(ts time.Time, p *packetInfo) bool {
	e, reverse := t.entries[p.key], false
	if e == nil && t.biflow {
		if e = t.entries[p.key.reversed()]; e != nil {
			reverse = true
		}
	}
	if e == nil {
		if len(t.entries) >= t.max {
			t.full++
			return false
		}
		key := p.key
		if t.biflow && !t.spec.matches(key) && t.spec.matches(key.reversed()) {
			key, reverse = key.reversed(), true
		}
		e = &flowEntry{key: key, first: ts, ipVersion: p.version, order: len(t.entries)}
		t.entries[key] = e
	}
	if ts.Before(e.first) {
		e.first = ts
	}
	if ts.After(e.last) {
		e.last = ts
	}
	c := &e.fwd
	if reverse {
		c = &e.rev
	}
	c.packets++
	c.octets += p.octets
	c.tcpFlags |= p.tcpFlags
	if p.tcpFlags&(0x01|0x04) != 0 { // FIN or RST
		e.finOrRstSeen = true
	}
	return true
}

// matches reports whether a packet with 5-tuple k goes from the spec's
// source to its destination.
func (s spec) matches(k flowKey) bool {
	return (!s.src.IsValid() || s.src == k.src) && (!s.dst.IsValid() || s.dst == k.dst) &&
		(s.sport == 0 || s.sport == k.sport) && (s.dport == 0 || s.dport == k.dport) &&
		(!s.hasProto || s.proto == k.proto)
}

// Flow end reasons (IE 136, RFC 7011 §6 / IANA).
const (
	endOfFlowDetected = 3
	forcedEnd         = 4
)

// IEs without a typed field, carried in Record.Extra.
var (
	ieIPVersion             = flow.IEKey{Enterprise: flow.IANA, Element: 60}      // ipVersion, unsigned8
	ieReverseTCPControlBits = flow.IEKey{Enterprise: flow.ReversePEN, Element: 6} // reverseTcpControlBits, unsigned16
)

// records yields a filler for each entry's record, in creation order.
func (t *flowTable) records(yield func(fill func(r *flow.Record, b *flow.Batch))) {
	list := make([]*flowEntry, 0, len(t.entries))
	for _, e := range t.entries {
		list = append(list, e)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].order < list[j].order })
	for _, e := range list {
		e := e
		yield(func(r *flow.Record, b *flow.Batch) { t.fill(e, r, b) })
	}
}

func (t *flowTable) fill(e *flowEntry, r *flow.Record, b *flow.Batch) {
	r.SetAddr(flow.SourceAddress, e.key.src)
	r.SetAddr(flow.DestinationAddress, e.key.dst)
	r.SetUint(flow.ProtocolIdentifier, uint64(e.key.proto))
	if hasPorts(e.key.proto) {
		r.SetUint(flow.SourceTransportPort, uint64(e.key.sport))
		r.SetUint(flow.DestinationTransportPort, uint64(e.key.dport))
	}
	r.SetUint(flow.FlowStart, uint64(e.first.UnixNano()))
	r.SetUint(flow.FlowEnd, uint64(e.last.UnixNano()))
	r.SetUint(flow.PacketDeltaCount, e.fwd.packets)
	r.SetUint(flow.OctetDeltaCount, e.fwd.octets)
	if e.key.proto == 6 {
		r.SetUint(flow.TCPControlBits, uint64(e.fwd.tcpFlags))
	}
	reason := uint64(forcedEnd)
	if e.finOrRstSeen {
		reason = endOfFlowDetected
	}
	r.SetUint(flow.FlowEndReason, reason)
	if t.biflow {
		r.SetUint(flow.ReversePacketDeltaCount, e.rev.packets)
		r.SetUint(flow.ReverseOctetDeltaCount, e.rev.octets)
		if e.key.proto == 6 {
			v := b.CopyBytes(binary.BigEndian.AppendUint16(nil, e.rev.tcpFlags))
			r.Extra = append(r.Extra, flow.Field{Enterprise: ieReverseTCPControlBits.Enterprise, Element: ieReverseTCPControlBits.Element, Value: v})
		}
	}
	r.Extra = append(r.Extra, flow.Field{Enterprise: ieIPVersion.Enterprise, Element: ieIPVersion.Element, Value: b.CopyBytes([]byte{e.ipVersion})})
}

// parser decodes the headers the flow table needs.
type parser struct {
	lt layers.LinkType
}

// parse fills p from a packet; it reports false for a packet that is not
// IP (ARP, LLDP …) or is cut before the IP header ends.
func (ps *parser) parse(data []byte, p *packetInfo) bool {
	if ps.lt == layers.LinkTypeEthernet {
		// Skip 802.1Q/802.1ad tags by hand: only the IP header matters.
		if len(data) < 14 {
			return false
		}
		et, off := binary.BigEndian.Uint16(data[12:]), 14
		for (et == 0x8100 || et == 0x88a8) && len(data) >= off+4 {
			et, off = binary.BigEndian.Uint16(data[off+2:]), off+4
		}
		if et != 0x0800 && et != 0x86dd {
			return false
		}
		data = data[off:]
	}
	if len(data) < 1 {
		return false
	}
	*p = packetInfo{}
	var transport []byte
	switch data[0] >> 4 {
	case 4:
		if len(data) < 20 {
			return false
		}
		ihl := int(data[0]&0x0f) * 4
		if ihl < 20 || len(data) < ihl {
			return false
		}
		p.version = 4
		p.key.src = netip.AddrFrom4([4]byte(data[12:16]))
		p.key.dst = netip.AddrFrom4([4]byte(data[16:20]))
		p.key.proto = data[9]
		p.octets = uint64(binary.BigEndian.Uint16(data[2:]))
		if frag := binary.BigEndian.Uint16(data[6:]) & 0x1fff; frag == 0 {
			transport = data[ihl:]
		}
	case 6:
		if len(data) < 40 {
			return false
		}
		p.version = 6
		p.key.src = netip.AddrFrom16([16]byte(data[8:24]))
		p.key.dst = netip.AddrFrom16([16]byte(data[24:40]))
		p.octets = uint64(binary.BigEndian.Uint16(data[4:])) + 40
		next, rest := data[6], data[40:]
		// Walk hop-by-hop, routing and destination options headers.
		for (next == 0 || next == 43 || next == 60) && len(rest) >= 8 {
			n := 8 + int(rest[1])*8
			if len(rest) < n {
				rest = nil
				break
			}
			next, rest = rest[0], rest[n:]
		}
		p.key.proto = next
		if next != 44 { // a fragment's ports are not in every fragment
			transport = rest
		}
	default:
		return false
	}
	if hasPorts(p.key.proto) && len(transport) >= 4 {
		p.key.sport = binary.BigEndian.Uint16(transport)
		p.key.dport = binary.BigEndian.Uint16(transport[2:])
		if p.key.proto == 6 && len(transport) >= 14 {
			p.tcpFlags = binary.BigEndian.Uint16(transport[12:]) & 0x01ff
		}
	}
	return true
}
