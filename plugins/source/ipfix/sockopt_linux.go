//go:build linux

package ipfix

import (
	"encoding/binary"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reusePortSupported reports whether several UDP sockets can share a port.
const reusePortSupported = true

// controlUDP returns a net.ListenConfig Control function that enables
// SO_REUSEPORT and SO_RXQ_OVFL and sets the receive buffer to rcvbuf bytes
// (0 keeps the kernel default).
func controlUDP(rcvbuf int, reusePort bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if reusePort {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
					return
				}
			}
			setRcvBuf(int(fd), rcvbuf)
			// The drop counter is best effort: without it the source still
			// works, it just cannot see kernel drops.
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// controlTCP sets the receive buffer of a TCP listener; accepted
// connections inherit it.
func controlTCP(rcvbuf int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { setRcvBuf(int(fd), rcvbuf) })
	}
}

// setRcvBuf asks for n bytes of receive buffer: SO_RCVBUFFORCE (root,
// CAP_NET_ADMIN) may exceed net.core.rmem_max, SO_RCVBUF is capped by it.
func setRcvBuf(fd, n int) {
	if n <= 0 {
		return
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) == nil {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}

// rcvBufOf returns the socket's receive buffer as the kernel reports it
// (twice the usable size: the kernel doubles requests for bookkeeping).
func rcvBufOf(c syscall.RawConn) int {
	n := -1
	_ = c.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
			n = v
		}
	})
	return n
}

// oobSize is the ancillary buffer needed for the SO_RXQ_OVFL message.
var oobSize = unix.CmsgSpace(4)

// rxqOverflow returns the socket's cumulative kernel drop count carried in
// the ancillary data of a received datagram (SO_RXQ_OVFL). The kernel adds
// the message only once the socket has dropped something. It does not
// allocate.
func rxqOverflow(oob []byte) (uint32, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && l >= unix.CmsgLen(4) {
			return binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]), true
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(oob) {
			return 0, false
		}
		oob = oob[next:]
	}
	return 0, false
}

// pendingBytes returns how much data the socket holds unread (SIOCINQ: for
// UDP the size of the next datagram, for TCP the bytes queued), or 0.
func pendingBytes(c any) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
