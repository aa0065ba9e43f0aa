package ipfix

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/weir-flow/weir/core/ipfix"
)

// BenchmarkTCPFraming compares the TCP source's framing (peekMessage,
// copy, Discard) with ipfix.ReadMessage on a stream of 1400-byte messages.
func BenchmarkTCPFraming(b *testing.B) {
	msg := make([]byte, 1400)
	msg[1], msg[2], msg[3] = 10, 1400>>8, 1400&0xff
	stream := bytes.Repeat(msg, 1000)
	b.Run("peek", func(b *testing.B) {
		rd := bytes.NewReader(stream)
		br := bufio.NewReaderSize(rd, maxDatagram)
		buf := make([]byte, 0, maxDatagram)
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			m, err := peekMessage(br)
			if err == io.EOF {
				rd.Reset(stream)
				br.Reset(rd)
				continue
			}
			buf = append(buf[:0], m...)
			_, _ = br.Discard(len(m))
		}
	})
	b.Run("ReadMessage", func(b *testing.B) {
		rd := bytes.NewReader(stream)
		br := bufio.NewReaderSize(rd, maxDatagram)
		buf := make([]byte, 0, maxDatagram)
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			_, err := ipfix.ReadMessage(br, buf)
			if err == io.EOF {
				rd.Reset(stream)
				br.Reset(rd)
			}
		}
	})
}
