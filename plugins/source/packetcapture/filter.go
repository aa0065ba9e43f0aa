package packetcapture

import (
	"fmt"
	"strings"
)

// Expression returns the libpcap filter expression (pcap-filter(7)) that
// selects the packets of the spec in the given direction: the conjunction
// of the set 5-tuple fields for one direction, and for Both the
// disjunction of the two directions. An empty spec gives "" (every packet).
func (c *Config) Expression() (string, error) {
	s, err := c.Flow.spec()
	if err != nil {
		return "", err
	}
	return s.expression(c.Direction), nil
}

func (s spec) expression(direction string) string {
	fwd := s.oneWay()
	rev := s.reversed().oneWay()
	switch direction {
	case DestinationToSource:
		return rev
	case Both:
		if fwd == rev {
			return fwd
		}
		if fwd == "" || rev == "" {
			return "" // one direction already matches everything
		}
		return "(" + fwd + ") or (" + rev + ")"
	}
	return fwd
}

// reversed swaps the spec's source and destination.
func (s spec) reversed() spec {
	s.src, s.dst = s.dst, s.src
	s.sport, s.dport = s.dport, s.sport
	return s
}

// oneWay is the expression for packets from s.src:s.sport to s.dst:s.dport.
func (s spec) oneWay() string {
	var terms []string
	family := ""
	switch {
	case s.src.IsValid():
		family = map[bool]string{true: "ip", false: "ip6"}[s.src.Is4()]
	case s.dst.IsValid():
		family = map[bool]string{true: "ip", false: "ip6"}[s.dst.Is4()]
	}
	proto := ""
	if s.hasProto {
		switch {
		case s.proto == 6:
			proto = "tcp"
		case s.proto == 17:
			proto = "udp"
		case s.proto == 132:
			proto = "sctp"
		case s.proto == 1 && family != "ip6":
			proto = "icmp"
		case s.proto == 58 && family != "ip":
			proto = "icmp6"
		case family != "":
			proto = fmt.Sprintf("%s proto %d", family, s.proto)
		default:
			proto = fmt.Sprintf("(ip proto %d or ip6 proto %d)", s.proto, s.proto)
		}
	}
	if family != "" {
		terms = append(terms, family)
	}
	if proto != "" {
		terms = append(terms, proto)
	}
	if s.src.IsValid() {
		terms = append(terms, "src host "+s.src.String())
	}
	if s.dst.IsValid() {
		terms = append(terms, "dst host "+s.dst.String())
	}
	// "port" alone means tcp, udp or sctp; after "tcp" it narrows to tcp.
	if s.sport != 0 {
		terms = append(terms, fmt.Sprintf("src port %d", s.sport))
	}
	if s.dport != 0 {
		terms = append(terms, fmt.Sprintf("dst port %d", s.dport))
	}
	return strings.Join(terms, " and ")
}
