package ipfix

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// FuzzDecode feeds arbitrary bytes to the decoder, both as one datagram and
// as a stream of messages (templates first), and checks that it never
// panics and that whatever it decodes re-encodes and decodes to the same
// values. Seeds: softflowd's and go-ipfix's messages and our encoder's.
func FuzzDecode(f *testing.F) {
	var stream []byte
	for _, m := range softflowdMessages(f) {
		f.Add(m)
		stream = append(stream, m...)
	}
	f.Add(stream)
	tmpl, data := goIPFIXMessages(f, 3, false)
	f.Add(append(append([]byte(nil), tmpl...), data...))
	tmpl, data = goIPFIXMessages(f, 2, true)
	f.Add(append(append([]byte(nil), tmpl...), data...))
	b := flow.NewBatch(0)
	for i := 0; i < 4; i++ {
		antreaRecord(b.Append(), i, i == 3)
	}
	b.Records[1].Extra = append(b.Records[1].Extra, flow.Field{Enterprise: 4242, Element: 1, Variable: true, Value: []byte("x")})
	var ours []byte
	NewEncoder(EncoderOptions{}).Encode(b.Records, time.Unix(1_700_000_000, 0), func(m []byte) error {
		ours = append(ours, m...)
		return nil
	})
	f.Add(ours)
	f.Add(message(1, 1000, set(2, templateRecord(256, ie(22, 4), ie(21, 4), ie(156, 8), ie(82, 0xffff))),
		set(256, rec(u32(1), u32(2), u64(3), vstr("a"))), set(3, optionsTemplateRecord(257, 1, ie(143, 4), ie(160, 8))), set(257, rec(u32(1), u64(99)))))

	f.Fuzz(func(t *testing.T, in []byte) {
		b := flow.NewBatch(0)
		NewDecoder(DecoderOptions{}).Decode(b, in, testExporter)

		// As a stream: messages split by their length field.
		d := NewDecoder(DecoderOptions{})
		b.Reset()
		r := bytes.NewReader(in)
		var buf []byte
		for {
			m, err := ReadMessage(r, buf)
			if err != nil {
				break
			}
			buf = m
			d.Decode(b, m, testExporter)
		}
		if b.Len() == 0 {
			return
		}
		enc := NewEncoder(EncoderOptions{MaxMessageSize: 65535})
		d2 := NewDecoder(DecoderOptions{})
		out := flow.NewBatch(0)
		err := enc.Encode(b.Records, time.Unix(1_700_000_000, 0), func(m []byte) error {
			_, err := d2.Decode(out, m, testExporter)
			return err
		})
		if err != nil {
			if errors.Is(err, ErrRecordTooLarge) || errors.Is(err, ErrEmptyRecord) {
				return // some records were not re-encoded; nothing to compare
			}
			t.Fatalf("re-encode: %v", err)
		}
		if out.Len() != b.Len() {
			t.Fatalf("re-decoded %d records, want %d", out.Len(), b.Len())
		}
		for i := range b.Records {
			assertSameRecord(t, i, out.Records[i], b.Records[i])
		}
	})
}
