// Package mmsg moves UDP datagrams in batches: [Reader] receives up to N
// datagrams per system call (recvmmsg(2)) and [Writer] sends a batch of
// datagrams on a connected socket per call (sendmmsg(2)). Both go through
// the socket's syscall.RawConn, so read and write deadlines, Close and the
// Go network poller work as with the socket's own methods, and neither
// allocates per datagram: buffers, headers and source addresses are
// reused and the source address is returned as a netip.AddrPort.
//
// On systems other than Linux both fall back to one datagram per call.
package mmsg
