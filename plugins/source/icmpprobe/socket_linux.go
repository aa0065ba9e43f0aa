//go:build linux

package icmpprobe

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// conn is one ICMP socket of one family. Replies carry the kernel's
// receive time (SO_TIMESTAMPNS), so a busy machine's scheduling delay after
// the reply arrived does not count in the RTT.
type conn struct {
	pc   net.PacketConn // *net.IPConn (raw) or *net.UDPConn (unprivileged)
	raw  bool
	v6   bool
	kind string // SocketRaw or SocketUnprivileged, for logs
}

// listen opens the family's socket of the configured kind.
func listen(kind string, v6 bool) (*conn, error) {
	rawNet, addr := "ip4:icmp", "0.0.0.0"
	if v6 {
		rawNet, addr = "ip6:ipv6-icmp", "::"
	}
	var c *conn
	if kind == SocketAuto || kind == SocketRaw {
		pc, err := net.ListenPacket(rawNet, addr)
		switch {
		case err == nil:
			c = &conn{pc: pc, raw: true, v6: v6, kind: SocketRaw}
		case kind == SocketRaw || !isPermission(err):
			return nil, fmt.Errorf("raw ICMP socket (%s): %w", rawNet, err)
		}
	}
	if c == nil {
		pc, err := listenUnprivileged(v6)
		if err != nil {
			udpNet := map[bool]string{false: "udp4", true: "udp6"}[v6]
			if isPermission(err) {
				return nil, fmt.Errorf("%w: raw ICMP sockets need CAP_NET_RAW, and unprivileged ICMP sockets (%s) need group %d within net.ipv4.ping_group_range (e.g. sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"): %v",
					ErrNoPermission, udpNet, os.Getegid(), err)
			}
			return nil, fmt.Errorf("unprivileged ICMP socket (%s): %w", udpNet, err)
		}
		c = &conn{pc: pc, v6: v6, kind: SocketUnprivileged}
	}
	if err := c.enableTimestamps(); err != nil {
		c.pc.Close()
		return nil, fmt.Errorf("%s ICMP socket: SO_TIMESTAMPNS: %w", c.kind, err)
	}
	return c, nil
}

// listenUnprivileged opens an ICMP datagram socket (what the x/net/icmp
// package calls "udp4"/"udp6").
func listenUnprivileged(v6 bool) (net.PacketConn, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if v6 {
		family, proto, sa = unix.AF_INET6, unix.IPPROTO_ICMPV6, &unix.SockaddrInet6{}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	f := os.NewFile(uintptr(fd), "icmp")
	defer f.Close()
	return net.FilePacketConn(f)
}

func (c *conn) enableTimestamps() error {
	sc, ok := c.pc.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return fmt.Errorf("%T has no file descriptor", c.pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	return serr
}

func (c *conn) Close() error { return c.pc.Close() }

func (c *conn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// read reads one ICMP message into b (without the IPv4 header raw sockets
// deliver) and returns its length, sender and kernel receive time.
func (c *conn) read(b, oob []byte) (int, netip.Addr, time.Time, error) {
	var n, oobn int
	var from netip.Addr
	var err error
	switch pc := c.pc.(type) {
	case *net.IPConn:
		var a *net.IPAddr
		n, oobn, _, a, err = pc.ReadMsgIP(b, oob)
		if a != nil {
			from, _ = netip.AddrFromSlice(a.IP)
		}
	case *net.UDPConn:
		var ap netip.AddrPort
		n, oobn, _, ap, err = pc.ReadMsgUDPAddrPort(b, oob)
		from = ap.Addr()
	}
	at := time.Now()
	if err != nil {
		return 0, from, at, err
	}
	if c.raw && !c.v6 && n >= 20 && b[0]>>4 == 4 {
		if l := int(b[0]&0x0f) * 4; l >= 20 && l <= n {
			n = copy(b, b[l:n])
		}
	}
	if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
				at = time.Unix(int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:])))
			}
		}
	}
	return n, from.Unmap(), at, nil
}

// write sends an ICMP message to a.
func (c *conn) write(b []byte, a netip.Addr) error {
	var err error
	if c.raw {
		_, err = c.pc.WriteTo(b, &net.IPAddr{IP: a.AsSlice()})
	} else {
		_, err = c.pc.WriteTo(b, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	}
	return err
}
