//go:build !cgo || !linux

package packetcapture

import (
	"errors"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

// ErrNoCompiler is returned when Weir was built without cgo: the capture
// filter is compiled by libpcap, so a capture needs a cgo build on Linux.
var ErrNoCompiler = errors.New("source.packetcapture needs a Linux build with cgo and libpcap (CGO_ENABLED=1)")

func compileFilter(layers.LinkType, int, string) ([]bpf.RawInstruction, error) {
	return nil, ErrNoCompiler
}
