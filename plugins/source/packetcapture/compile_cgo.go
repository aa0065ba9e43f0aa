//go:build cgo && linux

package packetcapture

import (
	"fmt"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/net/bpf"
)

// compileFilter compiles a pcap-filter(7) expression with libpcap's own
// compiler (pcap_compile on a dead handle of the link type), so the program
// matches exactly what tcpdump matches for the same expression. "" compiles
// to "accept everything, snap bytes".
func compileFilter(linkType layers.LinkType, snap int, expression string) ([]bpf.RawInstruction, error) {
	prog, err := pcap.CompileBPFFilter(linkType, snap, expression)
	if err != nil {
		return nil, fmt.Errorf("compile filter %q: %w", expression, err)
	}
	raw := make([]bpf.RawInstruction, len(prog))
	for i, in := range prog {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return raw, nil
}
