//go:build !linux

package ipfix

import (
	"net"
	"syscall"
)

// bytesAcked is unknown outside Linux: every tracked message counts as
// unacknowledged when a connection breaks.
func bytesAcked(net.Conn) (uint64, bool) { return 0, false }

func controlSndBuf(int) func(string, string, syscall.RawConn) error { return nil }
