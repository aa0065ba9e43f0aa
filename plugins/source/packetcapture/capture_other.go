//go:build !linux

package packetcapture

import (
	"errors"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

var errUnsupported = errors.New("source.packetcapture captures on Linux only (AF_PACKET)")

func linkTypeOf(string) (layers.LinkType, error)         { return 0, errUnsupported }
func compileLinkType(lt layers.LinkType) layers.LinkType { return lt }

type handle struct{}

var errTimeout = errors.New("timeout")

func openHandle(string, layers.LinkType, int, []bpf.RawInstruction) (*handle, error) {
	return nil, errUnsupported
}
func (h *handle) read() ([]byte, gopacket.CaptureInfo, error) {
	return nil, gopacket.CaptureInfo{}, errUnsupported
}
func (h *handle) stats() (uint64, uint64) { return 0, 0 }
func (h *handle) close()                  {}
