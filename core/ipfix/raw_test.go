package ipfix

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// msg builds an IPFIX message from sets (each: set ID, body).
func rawMsg(domain uint32, sets ...[]byte) []byte {
	m := make([]byte, 16)
	binary.BigEndian.PutUint16(m, 10)
	binary.BigEndian.PutUint32(m[4:], 1_800_000_000)
	binary.BigEndian.PutUint32(m[12:], domain)
	for _, s := range sets {
		m = append(m, s...)
	}
	binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
	return m
}

func rawSet(id uint16, body ...byte) []byte {
	s := binary.BigEndian.AppendUint16(nil, id)
	s = binary.BigEndian.AppendUint16(s, uint16(4+len(body)))
	return append(s, body...)
}

func TestAppendRaw(t *testing.T) {
	b := flow.NewBatch(1)
	m := rawMsg(7, rawSet(2, 1, 0, 0, 1, 0, 8, 0, 4))
	at := time.UnixMilli(1_800_000_000_123)
	from := netip.MustParseAddrPort("192.0.2.1:4739")
	AppendRaw(b, m, from, at)
	r := b.Records[0]
	got, gotAt, ok := Raw(r)
	if !ok || string(got) != string(m) || !gotAt.Equal(at) || r.Exporter != from || r.ObservationDomainID != 7 {
		t.Fatalf("Raw = %x %v %v; exporter %v domain %d", got, gotAt, ok, r.Exporter, r.ObservationDomainID)
	}
	if _, _, ok := Raw(b.Append()); ok {
		t.Error("Raw accepts a decoded record")
	}
}

// TestTemplateCarrier: a data-only message gets a preamble with its
// template and the options template and data; a fresh decoder fed the
// preamble then the message decodes what a decoder that saw every message
// decodes.
func TestTemplateCarrier(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:4739")
	tmpl := rawSet(2, 1, 0, 0, 2, 0, 8, 0, 4, 0, 2, 0, 8) // template 256: sourceIPv4Address, packetDeltaCount
	// options template 257: scope observationDomainId(149, 4), systemInitTimeMilliseconds(160, 8)
	opts := rawSet(3, 1, 1, 0, 2, 0, 1, 0, 149, 0, 4, 0, 160, 0, 8)
	optData := rawSet(257, 0, 0, 0, 0, 0, 0, 1, 0x9c, 0, 0, 0, 0)
	data := rawSet(256, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5)
	c := NewTemplateCarrier()
	now := time.Now()
	if p := c.Preamble(nil, rawMsg(0, tmpl, opts, optData), from, now); len(p) != 0 {
		t.Errorf("a message without data sets got a %d-byte preamble", len(p))
	}
	second := rawMsg(0, data)
	pre := c.Preamble(nil, second, from, now)
	if len(pre) == 0 {
		t.Fatal("no preamble for a data-only message")
	}
	b := flow.NewBatch(0)
	d := NewDecoder(DecoderOptions{})
	if _, err := d.Decode(b, pre, from); err != nil {
		t.Fatalf("preamble: %v", err)
	}
	if n, err := d.Decode(b, second, from); err != nil || n != 1 {
		t.Fatalf("data after preamble: %d records, %v", n, err)
	}
	if r := b.Records[0]; r.SourceAddress != netip.MustParseAddr("10.0.0.1") || r.PacketDeltaCount != 5 {
		t.Errorf("record %+v", r)
	}
	if d.Stats().OptionsRecords.Load() != 1 {
		t.Errorf("options records = %d, want 1 (systemInitTimeMilliseconds carried)", d.Stats().OptionsRecords.Load())
	}
	// A withdrawal removes the template from later preambles.
	c.Preamble(nil, rawMsg(0, rawSet(2, 1, 0, 0, 0)), from, now)
	pre = c.Preamble(nil, second, from, now)
	b2 := flow.NewBatch(0)
	d2 := NewDecoder(DecoderOptions{})
	_, _ = d2.Decode(b2, pre, from)
	if n, _ := d2.Decode(b2, second, from); n != 0 {
		t.Errorf("withdrawn template still carried: %d records", n)
	}
	c.Expire(now.Add(time.Second))
	if c.Sessions() != 0 {
		t.Errorf("Expire kept %d sessions", c.Sessions())
	}
}

func FuzzTemplateCarrier(f *testing.F) {
	f.Add(rawMsg(0, rawSet(2, 1, 0, 0, 1, 0, 8, 0, 4)), rawMsg(0, rawSet(256, 1, 2, 3, 4)))
	f.Add(rawMsg(1, rawSet(3, 1, 1, 0, 1, 0, 1, 0, 149, 0, 4)), []byte{0, 10, 0, 16})
	f.Fuzz(func(t *testing.T, first, second []byte) {
		c := NewTemplateCarrier()
		from := netip.MustParseAddrPort("192.0.2.1:4739")
		now := time.Now()
		c.Preamble(nil, first, from, now)
		pre := c.Preamble(nil, second, from, now)
		if len(pre) == 0 {
			return
		}
		if len(pre) > 0xffff || int(binary.BigEndian.Uint16(pre[2:])) != len(pre) {
			t.Fatalf("preamble of %d bytes says %d", len(pre), binary.BigEndian.Uint16(pre[2:]))
		}
		b := flow.NewBatch(0)
		d := NewDecoder(DecoderOptions{})
		_, _ = d.Decode(b, pre, from) // must not panic
	})
}
