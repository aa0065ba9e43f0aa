//go:build linux

package packetcapture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"
)

// ARPHRD types of /sys/class/net/IF/type (linux/if_arp.h) read as Ethernet.
const (
	arphrdEther    = 1
	arphrdLoopback = 772
)

// linkTypeOf returns the link type a capture on iface sees: Ethernet for
// Ethernet-like devices (veth, bridges, loopback), raw IP otherwise (tun,
// WireGuard), read through a SOCK_DGRAM socket.
func linkTypeOf(iface string) (layers.LinkType, error) {
	if _, err := net.InterfaceByName(iface); err != nil {
		return 0, fmt.Errorf("interface %q: %w", iface, err)
	}
	b, err := os.ReadFile("/sys/class/net/" + iface + "/type")
	if err != nil {
		return layers.LinkTypeEthernet, nil // no sysfs: assume Ethernet
	}
	switch t, _ := strconv.Atoi(strings.TrimSpace(string(b))); t {
	case arphrdEther, arphrdLoopback:
		return layers.LinkTypeEthernet, nil
	}
	return layers.LinkTypeRaw, nil
}

// compileLinkType is the DLT libpcap compiles for: DLT_RAW is 12 on Linux,
// while pcapng files name it LINKTYPE_RAW (101).
func compileLinkType(lt layers.LinkType) layers.LinkType {
	if lt == layers.LinkTypeRaw {
		return 12
	}
	return lt
}

// handle is an AF_PACKET capture (TPACKET_V3 ring) with the filter attached
// in the kernel.
type handle struct {
	tp *afpacket.TPacket
}

func openHandle(iface string, lt layers.LinkType, snap int, prog []bpf.RawInstruction) (*handle, error) {
	socket := afpacket.SocketRaw
	if lt != layers.LinkTypeEthernet {
		socket = afpacket.SocketDgram
	}
	frame := 1 << 16 // largest GSO packet a veth hands over
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(iface),
		afpacket.OptSocketType(socket),
		afpacket.OptFrameSize(frame),
		afpacket.OptBlockSize(frame*16),
		afpacket.OptNumBlocks(8),
		afpacket.OptBlockTimeout(10*time.Millisecond),
		afpacket.OptPollTimeout(100*time.Millisecond),
		afpacket.TPacketVersion3,
	)
	if err != nil {
		return nil, fmt.Errorf("open AF_PACKET socket on %q (needs CAP_NET_RAW): %w", iface, err)
	}
	if err := tp.SetBPF(prog); err != nil {
		tp.Close()
		return nil, fmt.Errorf("attach filter on %q: %w", iface, err)
	}
	_ = snap // the filter's return value truncates packets to snap bytes
	return &handle{tp: tp}, nil
}

// errTimeout is a poll timeout: no packet yet.
var errTimeout = afpacket.ErrTimeout

func (h *handle) read() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := h.tp.ZeroCopyReadPacketData()
	if errors.Is(err, afpacket.ErrTimeout) {
		return nil, ci, errTimeout
	}
	return data, ci, err
}

// stats returns the packets the kernel passed the filter and dropped for
// lack of ring space, since the socket opened.
func (h *handle) stats() (received, dropped uint64) {
	_, v3, err := h.tp.SocketStats()
	if err != nil {
		return 0, 0
	}
	return uint64(v3.Packets()), uint64(v3.Drops())
}

func (h *handle) close() { h.tp.Close() }
