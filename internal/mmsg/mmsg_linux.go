//go:build linux

package mmsg

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2)/recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// Reader receives datagrams from a UDP socket, up to len(Reader's
// buffers) per system call. Not safe for concurrent use.
type Reader struct {
	raw   syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte
	oobs  [][]byte

	// Per call: the arguments and results of the recvmmsg in flight, kept
	// here so the closure passed to RawConn.Read is built once.
	vlen  int
	got   int
	errno syscall.Errno
	read  func(fd uintptr) bool
}

// NewReader returns a reader of c receiving up to batch datagrams of at
// most size bytes per call, each with oobSize bytes of ancillary data.
func NewReader(c *net.UDPConn, batch, size, oobSize int) (*Reader, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mmsg: raw conn: %w", err)
	}
	batch = max(batch, 1)
	r := &Reader{
		raw:   raw,
		hdrs:  make([]mmsghdr, batch),
		iovs:  make([]unix.Iovec, batch),
		names: make([]unix.RawSockaddrInet6, batch),
		bufs:  make([][]byte, batch),
		oobs:  make([][]byte, batch),
	}
	data := make([]byte, batch*size)
	oob := make([]byte, batch*oobSize)
	for i := range batch {
		r.bufs[i] = data[i*size : (i+1)*size : (i+1)*size]
		r.oobs[i] = oob[i*oobSize : (i+1)*oobSize : (i+1)*oobSize]
	}
	r.read = func(fd uintptr) bool {
		r.reset()
		for {
			n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
				uintptr(r.vlen), unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // nothing queued: wait for the poller
			}
			if errno != 0 {
				n = 0 // the kernel returned -1
			}
			r.got, r.errno = int(n), errno
			return true
		}
	}
	return r, nil
}

// reset points every header at its buffers again (the kernel rewrote
// the lengths).
func (r *Reader) reset() {
	for i := range r.hdrs {
		h := &r.hdrs[i]
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(len(r.bufs[i]))
		h.hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.hdr.Namelen = unix.SizeofSockaddrInet6
		h.hdr.Iov = &r.iovs[i]
		h.hdr.SetIovlen(1)
		if len(r.oobs[i]) > 0 {
			h.hdr.Control = &r.oobs[i][0]
			h.hdr.SetControllen(len(r.oobs[i]))
		} else {
			h.hdr.Control = nil
			h.hdr.SetControllen(0)
		}
		h.hdr.Flags = 0
		h.n = 0
	}
}

// Read waits until at least one datagram is available (or the socket's
// read deadline passes, or it is closed) and receives as many as are
// queued, up to the batch size. It returns how many it received; see
// [Reader.Datagram].
func (r *Reader) Read() (int, error) { return r.ReadN(len(r.hdrs)) }

// ReadN is Read receiving at most n datagrams (1..the batch size).
func (r *Reader) ReadN(n int) (int, error) {
	r.vlen = min(max(n, 1), len(r.hdrs))
	r.got, r.errno = 0, 0
	if err := r.raw.Read(r.read); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: r.errno}
	}
	return r.got, nil
}

// Datagram returns datagram i of the last Read: its payload (truncated to
// the buffer size), its ancillary data and its source address (IPv4 as
// 4-byte addresses, IPv4-mapped IPv6 unmapped). The slices are valid
// until the next Read.
func (r *Reader) Datagram(i int) (data, oob []byte, from netip.AddrPort) {
	h := &r.hdrs[i]
	n := min(int(h.n), len(r.bufs[i]))
	data = r.bufs[i][:n]
	oob = r.oobs[i][:min(int(h.hdr.Controllen), len(r.oobs[i]))]
	return data, oob, sockaddr(&r.names[i], h.hdr.Namelen)
}

// Truncated reports whether datagram i of the last Read was longer than
// its buffer (MSG_TRUNC).
func (r *Reader) Truncated(i int) bool { return r.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 }

func sockaddr(sa *unix.RawSockaddrInet6, n uint32) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// Writer sends batches of datagrams on a connected UDP socket. Not safe
// for concurrent use.
type Writer struct {
	raw  syscall.RawConn
	hdrs []mmsghdr
	iovs []unix.Iovec

	pending [][]byte
	sent    int
	errno   syscall.Errno
	write   func(fd uintptr) bool
}

// MaxBatch is the most datagrams one sendmmsg carries (the kernel's
// UIO_MAXIOV bound).
const MaxBatch = 1024

// NewWriter returns a writer on the connected socket c.
func NewWriter(c *net.UDPConn) (*Writer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mmsg: raw conn: %w", err)
	}
	w := &Writer{raw: raw}
	w.write = func(fd uintptr) bool {
		for {
			n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[0])),
				uintptr(len(w.pending)), unix.MSG_DONTWAIT, 0, 0)
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // socket buffer full: wait until writable
			}
			if errno != 0 {
				n = 0 // the kernel returned -1
			}
			w.sent, w.errno = int(n), errno
			return true
		}
	}
	return w, nil
}

// Write sends msgs, each as one datagram, with as few system calls as the
// kernel allows. It returns how many were sent; when that is less than
// len(msgs), err says why msgs[n] was not (e.g. ECONNREFUSED: the
// collector's port was unreachable for an earlier datagram), and the
// caller decides whether to retry it or skip it.
func (w *Writer) Write(msgs [][]byte) (int, error) {
	done := 0
	for done < len(msgs) {
		batch := msgs[done:min(len(msgs), done+MaxBatch)]
		w.prepare(batch)
		w.sent, w.errno = 0, 0
		if err := w.raw.Write(w.write); err != nil {
			return done, err
		}
		done += w.sent
		if w.errno != 0 {
			return done, &net.OpError{Op: "sendmmsg", Net: "udp", Err: w.errno}
		}
		if w.sent == 0 {
			return done, &net.OpError{Op: "sendmmsg", Net: "udp", Err: unix.EIO}
		}
	}
	return done, nil
}

func (w *Writer) prepare(msgs [][]byte) {
	if cap(w.hdrs) < len(msgs) {
		w.hdrs = make([]mmsghdr, len(msgs))
		w.iovs = make([]unix.Iovec, len(msgs))
	}
	w.hdrs, w.iovs = w.hdrs[:len(msgs)], w.iovs[:len(msgs)]
	w.pending = msgs
	for i, m := range msgs {
		h := &w.hdrs[i]
		*h = mmsghdr{}
		if len(m) > 0 {
			w.iovs[i].Base = &m[0]
		} else {
			w.iovs[i].Base = nil
		}
		w.iovs[i].SetLen(len(m))
		h.hdr.Iov = &w.iovs[i]
		h.hdr.SetIovlen(1)
	}
}
