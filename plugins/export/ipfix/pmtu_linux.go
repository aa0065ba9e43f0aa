//go:build linux

package ipfix

import (
	"net"

	"golang.org/x/sys/unix"
)

// pathMTU returns the MTU of the route of the connected socket c (IP_MTU
// or IPV6_MTU, ip(7)/ipv6(7)): 1500 over Ethernet, 65536 on loopback. It
// returns 0 when the kernel does not say.
func pathMTU(c *net.UDPConn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	mtu := 0
	v6 := c.RemoteAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().Is6()
	_ = raw.Control(func(fd uintptr) {
		var v int
		var err error
		if v6 {
			v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU)
		} else {
			v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU)
		}
		if err == nil {
			mtu = v
		}
	})
	return mtu
}
