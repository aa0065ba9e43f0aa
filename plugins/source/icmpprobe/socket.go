package icmpprobe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/net/icmp"
)

// ErrNoPermission is returned when neither a raw ICMP socket (CAP_NET_RAW)
// nor an unprivileged ICMP socket (net.ipv4.ping_group_range) may be
// opened.
var ErrNoPermission = errors.New("no permission to send ICMP echo requests")

// conn is one ICMP socket of one family.
type conn struct {
	pc   *icmp.PacketConn
	raw  bool
	v6   bool
	kind string // "raw" or "unprivileged", for logs
}

// listen opens the family's socket of the configured kind.
func listen(kind string, v6 bool) (*conn, error) {
	rawNet, udpNet, addr := "ip4:icmp", "udp4", "0.0.0.0"
	if v6 {
		rawNet, udpNet, addr = "ip6:ipv6-icmp", "udp6", "::"
	}
	if kind == SocketAuto || kind == SocketRaw {
		pc, err := icmp.ListenPacket(rawNet, addr)
		if err == nil {
			return &conn{pc: pc, raw: true, v6: v6, kind: SocketRaw}, nil
		}
		if kind == SocketRaw || !isPermission(err) {
			return nil, fmt.Errorf("raw ICMP socket (%s): %w", rawNet, err)
		}
	}
	pc, err := icmp.ListenPacket(udpNet, addr)
	if err != nil {
		if isPermission(err) {
			return nil, fmt.Errorf("%w: raw ICMP sockets need CAP_NET_RAW, and unprivileged ICMP sockets (%s) need group %d within net.ipv4.ping_group_range (e.g. sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"): %v",
				ErrNoPermission, udpNet, os.Getegid(), err)
		}
		return nil, fmt.Errorf("unprivileged ICMP socket (%s): %w", udpNet, err)
	}
	return &conn{pc: pc, v6: v6, kind: SocketUnprivileged}, nil
}

func isPermission(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission)
}

// dest is the socket address of a target for this socket kind.
func (c *conn) dest(a netip.Addr) net.Addr {
	if c.raw {
		return &net.IPAddr{IP: a.AsSlice()}
	}
	return &net.UDPAddr{IP: a.AsSlice()}
}

// peer returns the address a packet came from.
func peer(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.IPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
