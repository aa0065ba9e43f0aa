package ipfix

import (
	"encoding/binary"
	"fmt"
	"io"
)

// ReadMessage reads one IPFIX message from a stream transport (TCP, RFC
// 7011 §10.4) into buf, growing it as needed, and returns the message. The
// returned slice aliases buf's array (or a grown one).
//
// It returns io.EOF when r ends before a message starts,
// io.ErrUnexpectedEOF when it ends inside one, and an error matching
// ErrMalformed when the header's version is not 10 or its length is shorter
// than the header; the stream cannot be resynchronised after that.
func ReadMessage(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) < headerLen {
		buf = make([]byte, 0, 2048)
	}
	buf = buf[:headerLen]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if v := binary.BigEndian.Uint16(buf); v != version {
		return nil, fmt.Errorf("read ipfix message header: version %d, want %d: %w", v, version, ErrMalformed)
	}
	n := int(binary.BigEndian.Uint16(buf[2:]))
	if n < headerLen {
		return nil, fmt.Errorf("read ipfix message header: length %d shorter than header: %w", n, ErrMalformed)
	}
	if cap(buf) < n {
		grown := make([]byte, n, max(n, 2*cap(buf)))
		copy(grown, buf)
		buf = grown
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf[headerLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}
