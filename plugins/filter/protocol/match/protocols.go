package match

import (
	"strconv"
	"strings"
)

// protocolNumbers maps lower-case IANA protocol keywords (the "Keyword"
// column of https://www.iana.org/assignments/protocol-numbers, plus the
// usual aliases of /etc/protocols) to protocol numbers. It is compact on
// purpose: numbers cover everything else.
var protocolNumbers = map[string]uint8{
	"hopopt":          0,
	"icmp":            1,
	"igmp":            2,
	"ggp":             3,
	"ipv4":            4,
	"ipencap":         4, // /etc/protocols alias of IP-in-IP
	"st":              5,
	"tcp":             6,
	"egp":             8,
	"igp":             9,
	"pup":             12,
	"udp":             17,
	"hmp":             20,
	"xns-idp":         22,
	"rdp":             27,
	"iso-tp4":         29,
	"dccp":            33,
	"xtp":             36,
	"ddp":             37,
	"idpr-cmtp":       38,
	"ipv6":            41,
	"ipv6-route":      43,
	"ipv6-frag":       44,
	"idrp":            45,
	"rsvp":            46,
	"gre":             47,
	"esp":             50,
	"ah":              51,
	"skip":            57,
	"ipv6-icmp":       58,
	"icmpv6":          58, // common alias
	"icmp6":           58, // common alias
	"ipv6-nonxt":      59,
	"ipv6-opts":       60,
	"rspf":            73,
	"vmtp":            81,
	"eigrp":           88,
	"ospf":            89, // IANA keyword is OSPFIGP
	"ospfigp":         89,
	"ax.25":           93,
	"ipip":            94,
	"etherip":         97,
	"encap":           98,
	"pim":             103,
	"ipcomp":          108,
	"vrrp":            112,
	"l2tp":            115,
	"isis":            124, // "ISIS over IPv4"
	"sctp":            132,
	"fc":              133,
	"mobility-header": 135,
	"udplite":         136,
	"mpls-in-ip":      137,
	"manet":           138,
	"hip":             139,
	"shim6":           140,
	"wesp":            141,
	"rohc":            142,
	"ethernet":        143,
	"aggfrag":         144,
	"nsh":             145,
}

// lookupProtocol resolves a protocol keyword (any case) or a decimal number
// 0–255.
func lookupProtocol(s string) (uint8, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, ok := protocolNumbers[s]; ok {
		return n, true
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return uint8(n), true
	}
	return 0, false
}

// builtinGroups are the groups every filter knows; a group of the same name
// in the config replaces one of these.
var builtinGroups = map[string][]GroupEntry{
	"web": {{Protocol: "tcp", Ports: []any{80, 443}}},
	"dns": {{Protocol: "udp", Ports: []any{53}}, {Protocol: "tcp", Ports: []any{53}}},
}
