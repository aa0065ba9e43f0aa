package ipfix

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/weir-flow/weir/core/ipfix"
)

// FuzzPeekMessage: the TCP framing (peekMessage, which leaves a cut-short
// message in the reader to be counted at shutdown) frames a stream exactly
// as ipfix.ReadMessage does: the same messages, then the same kind of
// error.
func FuzzPeekMessage(f *testing.F) {
	msg := func(n int) []byte {
		b := make([]byte, n)
		b[1], b[2], b[3] = 10, byte(n>>8), byte(n)
		return b
	}
	f.Add(append(msg(16), msg(40)...))
	f.Add(append(msg(20), msg(40)[:30]...))
	f.Add([]byte{0, 9, 0, 16})
	f.Add(append(msg(16), 0, 10, 0, 3))
	f.Add(msg(65535))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), maxDatagram)
		ref := bytes.NewReader(data)
		var buf []byte
		for i := 0; ; i++ {
			got, gerr := peekMessage(br)
			want, werr := ipfix.ReadMessage(ref, buf)
			if !bytes.Equal(got, want) {
				t.Fatalf("message %d: peek % x, ReadMessage % x", i, got, want)
			}
			if (gerr == nil) != (werr == nil) || kind(gerr) != kind(werr) {
				t.Fatalf("message %d: peek error %v, ReadMessage %v", i, gerr, werr)
			}
			if gerr != nil {
				return
			}
			_, _ = br.Discard(len(got))
		}
	})
}

func kind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected eof"
	case errors.Is(err, ipfix.ErrMalformed):
		return "malformed"
	}
	return "other"
}
