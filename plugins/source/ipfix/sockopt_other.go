//go:build !linux

package ipfix

import "syscall"

const reusePortSupported = false

func controlUDP(rcvbuf int, reusePort bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
	}
}

func controlTCP(rcvbuf int) func(network, address string, c syscall.RawConn) error {
	return controlUDP(rcvbuf, false)
}

func rcvBufOf(c syscall.RawConn) int { return -1 }

var oobSize = 0

func rxqOverflow(oob []byte) (uint32, bool) { return 0, false }

func pendingBytes(c any) int { return 0 }
