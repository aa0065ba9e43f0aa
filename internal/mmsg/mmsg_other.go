//go:build !linux

package mmsg

import (
	"net"
	"net/netip"
)

// Reader receives datagrams from a UDP socket, one per call on this
// system. Not safe for concurrent use.
type Reader struct {
	c    *net.UDPConn
	buf  []byte
	oob  []byte
	n    int
	oobn int
	from netip.AddrPort
	flag int
}

// NewReader returns a reader of c for datagrams of at most size bytes with
// oobSize bytes of ancillary data; batch is ignored on this system.
func NewReader(c *net.UDPConn, batch, size, oobSize int) (*Reader, error) {
	return &Reader{c: c, buf: make([]byte, size), oob: make([]byte, oobSize)}, nil
}

// ReadN is Read: one datagram per call on this system.
func (r *Reader) ReadN(int) (int, error) { return r.Read() }

// Read receives one datagram.
func (r *Reader) Read() (int, error) {
	n, oobn, flags, from, err := r.c.ReadMsgUDPAddrPort(r.buf, r.oob)
	if err != nil {
		return 0, err
	}
	r.n, r.oobn, r.flag = n, oobn, flags
	r.from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return 1, nil
}

// Datagram returns the datagram of the last Read.
func (r *Reader) Datagram(int) (data, oob []byte, from netip.AddrPort) {
	return r.buf[:r.n], r.oob[:r.oobn], r.from
}

// Truncated reports whether the last datagram was longer than the buffer.
func (r *Reader) Truncated(int) bool { return r.n == len(r.buf) }

// Writer sends datagrams on a connected UDP socket, one per call on this
// system.
type Writer struct{ c *net.UDPConn }

// MaxBatch is the most datagrams one call carries.
const MaxBatch = 1

// NewWriter returns a writer on the connected socket c.
func NewWriter(c *net.UDPConn) (*Writer, error) { return &Writer{c: c}, nil }

// Write sends msgs one by one and returns how many were sent.
func (w *Writer) Write(msgs [][]byte) (int, error) {
	for i, m := range msgs {
		if _, err := w.c.Write(m); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}
