//go:build !linux

package ipfix

import "net"

// pathMTU is unknown on this system.
func pathMTU(*net.UDPConn) int { return 0 }
