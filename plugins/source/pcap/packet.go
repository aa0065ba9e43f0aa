package pcap

import (
	"encoding/binary"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// Link types gopacket has no constant for (tcpdump.org/linktypes).
const (
	linkTypeRawAlt  layers.LinkType = 12 // DLT_RAW on some BSDs
	linkTypeRawAlt2 layers.LinkType = 14 // DLT_RAW on OpenBSD
)

// skipReason says why a packet carried no IPFIX message.
type skipReason uint8

const (
	skipNone      skipReason = iota
	skipLinkType             // link type or EtherType not handled
	skipMalformed            // headers cut short or inconsistent
	skipTruncated            // captured length below the IP length (snap length)
	skipFragment             // an IP fragment
	skipNotUDP               // TCP and other transports
	skipPort                 // UDP to a port not in Config.Ports
	skipNotIPFIX             // payload is not an IPFIX message (ports empty)
	numSkipReasons
)

var skipReasonNames = [numSkipReasons]string{
	skipNone:      "none",
	skipLinkType:  "link_type",
	skipMalformed: "malformed",
	skipTruncated: "truncated",
	skipFragment:  "fragment",
	skipNotUDP:    "not_udp",
	skipPort:      "port",
	skipNotIPFIX:  "not_ipfix",
}

func (r skipReason) String() string { return skipReasonNames[r] }

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
)

// udpPayload extracts the UDP payload and the source address of a packet of
// the given link type. It does not allocate; payload aliases data.
func udpPayload(lt layers.LinkType, data []byte, ports *portSet) (payload []byte, src netip.AddrPort, why skipReason) {
	var ip []byte
	switch lt {
	case layers.LinkTypeEthernet:
		if len(data) < 14 {
			return nil, src, skipMalformed
		}
		et := binary.BigEndian.Uint16(data[12:14])
		data = data[14:]
		for et == etherTypeVLAN || et == etherTypeQinQ {
			if len(data) < 4 {
				return nil, src, skipMalformed
			}
			et = binary.BigEndian.Uint16(data[2:4])
			data = data[4:]
		}
		if et != etherTypeIPv4 && et != etherTypeIPv6 {
			return nil, src, skipLinkType
		}
		ip = data
	case layers.LinkTypeLinuxSLL:
		if len(data) < 16 {
			return nil, src, skipMalformed
		}
		if et := binary.BigEndian.Uint16(data[14:16]); et != etherTypeIPv4 && et != etherTypeIPv6 {
			return nil, src, skipLinkType
		}
		ip = data[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(data) < 20 {
			return nil, src, skipMalformed
		}
		if et := binary.BigEndian.Uint16(data[0:2]); et != etherTypeIPv4 && et != etherTypeIPv6 {
			return nil, src, skipLinkType
		}
		ip = data[20:]
	case layers.LinkTypeRaw, linkTypeRawAlt, linkTypeRawAlt2, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		ip = data
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		// A 4-byte address family, in the capturing host's byte order for
		// Null and network order for Loop: the IP version nibble that
		// follows is unambiguous, so read that instead.
		if len(data) < 4 {
			return nil, src, skipMalformed
		}
		ip = data[4:]
	default:
		return nil, src, skipLinkType
	}
	if len(ip) < 1 {
		return nil, src, skipMalformed
	}
	var udp []byte
	var srcAddr netip.Addr
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < 20 {
			return nil, src, skipMalformed
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || total < ihl {
			return nil, src, skipMalformed
		}
		if total > len(ip) {
			return nil, src, skipTruncated
		}
		if frag := binary.BigEndian.Uint16(ip[6:8]); frag&0x3fff != 0 { // MF or offset
			return nil, src, skipFragment
		}
		if ip[9] != 17 {
			return nil, src, skipNotUDP
		}
		srcAddr = netip.AddrFrom4([4]byte(ip[12:16]))
		udp = ip[ihl:total]
	case 6:
		if len(ip) < 40 {
			return nil, src, skipMalformed
		}
		total := 40 + int(binary.BigEndian.Uint16(ip[4:6]))
		if total > len(ip) {
			return nil, src, skipTruncated
		}
		srcAddr = netip.AddrFrom16([16]byte(ip[8:24]))
		next, off := ip[6], 40
		for {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+8 > total {
					return nil, src, skipMalformed
				}
				next, off = ip[off], off+(int(ip[off+1])+1)*8
				continue
			case 44:
				return nil, src, skipFragment
			case 17:
			default:
				return nil, src, skipNotUDP
			}
			break
		}
		if off > total {
			return nil, src, skipMalformed
		}
		udp = ip[off:total]
	default:
		return nil, src, skipLinkType
	}
	if len(udp) < 8 {
		return nil, src, skipMalformed
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return nil, src, skipMalformed
	}
	sport := binary.BigEndian.Uint16(udp[0:2])
	dport := binary.BigEndian.Uint16(udp[2:4])
	payload = udp[8:ulen]
	if ports.any() {
		// Without a port list, keep what looks like IPFIX: version 10 and
		// a length that fits.
		if len(payload) < 16 || binary.BigEndian.Uint16(payload[0:2]) != 10 ||
			int(binary.BigEndian.Uint16(payload[2:4])) > len(payload) {
			return nil, src, skipNotIPFIX
		}
	} else if !ports.has(dport) {
		return nil, src, skipPort
	}
	return payload, netip.AddrPortFrom(srcAddr, sport), skipNone
}

// portSet is a set of UDP ports; empty means any.
type portSet struct {
	bits  [65536 / 64]uint64
	empty bool
}

func newPortSet(ports []int) *portSet {
	s := &portSet{empty: len(ports) == 0}
	for _, p := range ports {
		if p > 0 && p < 65536 {
			s.bits[p>>6] |= 1 << (p & 63)
		}
	}
	return s
}

func (s *portSet) any() bool         { return s.empty }
func (s *portSet) has(p uint16) bool { return s.bits[p>>6]&(1<<(p&63)) != 0 }
