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

// FuzzDecodeLimited feeds a stream of messages from a few exporter ports
// to decoders sharing a small Budget and checks the accounting: never past
// a limit, never negative, and nothing left once the decoders are closed.
func FuzzDecodeLimited(f *testing.F) {
	for _, m := range softflowdMessages(f) {
		f.Add(m, uint8(3))
	}
	f.Add(message(1, 1000, set(2, templateRecord(256, ie(8, 4), ie(12, 4)), templateRecord(257, ie(8, 4))),
		set(300, rec(u32(1))), set(256, rec(ip("10.0.0.1"), ip("10.0.0.2"))), set(2, templateRecord(256, ie(8, 4)))), uint8(7))
	f.Add(message(1, 1000, set(300, make([]byte, 900)), set(2, templateRecord(300, ie(8, 4), ie(82, 0xffff)))), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, ports uint8) {
		lim := Limits{Sessions: 4, SessionsPerExporter: 3, TemplatesPerSession: 3, TemplateFields: 8,
			TemplateBytes: 4096, TemplateBytesPerExporter: 3000, HeldBytes: 2048, HeldBytesPerExporter: 1500}
		budget := NewBudget(lim)
		clk := newClock()
		ds := []*Decoder{
			NewDecoder(DecoderOptions{Budget: budget, Now: clk.Now, TemplateTTL: time.Minute}),
			NewDecoder(DecoderOptions{Budget: budget, Now: clk.Now}),
		}
		b := flow.NewBatch(0)
		r := bytes.NewReader(in)
		var buf []byte
		for i := 0; ; i++ {
			m, err := ReadMessage(r, buf)
			if err != nil {
				break
			}
			buf = m
			from := exporterPort("10.0.0.1", 1000+i%(int(ports)%8+1))
			if i%5 == 4 {
				from = exporterPort("10.0.0.2", 1000)
			}
			b.Reset()
			ds[i%2].Decode(b, m, from)
			u := budget.Usage()
			if u.Sessions > lim.Sessions || u.TemplateBytes > lim.TemplateBytes || u.HeldBytes > lim.HeldBytes ||
				u.Sessions < 0 || u.TemplateBytes < 0 || u.HeldBytes < 0 {
				t.Fatalf("after message %d: %+v exceeds %+v", i, u, lim)
			}
			clk.Advance(7 * time.Second)
			if i%3 == 2 {
				ds[i%2].Expire()
			}
		}
		for _, d := range ds {
			d.Close()
		}
		if u := budget.Usage(); u != (Usage{}) {
			t.Fatalf("after Close: %+v accounted", u)
		}
	})
}
