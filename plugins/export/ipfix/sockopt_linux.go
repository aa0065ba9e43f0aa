package ipfix

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// bytesAcked returns how many bytes the peer acknowledged on c
// (tcpi_bytes_acked, Linux 4.1+); it works after the peer reset c.
func bytesAcked(c net.Conn) (uint64, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var serr error
	if err := raw.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || serr != nil {
		return 0, false
	}
	return info.Bytes_acked, true
}

// controlSndBuf sizes the socket's send buffer (SO_SNDBUF, which the
// kernel doubles for its overhead) so that unacknowledged data fits the
// resend window; 0 keeps the default.
func controlSndBuf(size int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, raw syscall.RawConn) error {
		if size <= 0 {
			return nil
		}
		var serr error
		if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size) }); err != nil {
			return err
		}
		return serr
	}
}
