package ipfix

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// spec is a template field specifier for hand-built messages.
type spec struct {
	ent    uint32
	elem   uint16
	length uint16
}

func ie(elem, length uint16) spec              { return spec{0, elem, length} }
func eie(ent uint32, elem, length uint16) spec { return spec{ent, elem, length} }

func appendSpecs(b []byte, specs []spec) []byte {
	for _, s := range specs {
		if s.ent != 0 {
			b = binary.BigEndian.AppendUint16(b, s.elem|0x8000)
			b = binary.BigEndian.AppendUint16(b, s.length)
			b = binary.BigEndian.AppendUint32(b, s.ent)
		} else {
			b = binary.BigEndian.AppendUint16(b, s.elem)
			b = binary.BigEndian.AppendUint16(b, s.length)
		}
	}
	return b
}

// templateRecord encodes one template record (RFC 7011 §3.4.1).
func templateRecord(id uint16, specs ...spec) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(specs)))
	return appendSpecs(b, specs)
}

// optionsTemplateRecord encodes one options template record (§3.4.2.2).
func optionsTemplateRecord(id uint16, scope int, specs ...spec) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(specs)))
	b = binary.BigEndian.AppendUint16(b, uint16(scope))
	return appendSpecs(b, specs)
}

// set wraps records in a set header with the given ID.
func set(id uint16, records ...[]byte) []byte {
	n := 4
	for _, r := range records {
		n += len(r)
	}
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, r := range records {
		b = append(b, r...)
	}
	return b
}

// message wraps sets in a message header.
func message(domain, exportTime uint32, sets ...[]byte) []byte {
	n := 16
	for _, s := range sets {
		n += len(s)
	}
	b := binary.BigEndian.AppendUint16(nil, 10)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, exportTime)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, domain)
	for _, s := range sets {
		b = append(b, s...)
	}
	return b
}

// rec concatenates field values into a data record.
func rec(values ...[]byte) []byte {
	var b []byte
	for _, v := range values {
		b = append(b, v...)
	}
	return b
}

func u8(v uint8) []byte   { return []byte{v} }
func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func ip(s string) []byte  { return netip.MustParseAddr(s).AsSlice() }

// vstr encodes a variable-length value (RFC 7011 §7).
func vstr(s string) []byte {
	if len(s) < 255 {
		return append([]byte{byte(len(s))}, s...)
	}
	b := []byte{255}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

var testExporter = netip.MustParseAddrPort("10.0.0.1:4739")

// fakeClock is a settable clock for DecoderOptions.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

// decodeAll decodes msgs with a fresh decoder and returns the batch.
func decodeAll(t *testing.T, d *Decoder, msgs ...[]byte) (*flow.Batch, []error) {
	t.Helper()
	b := flow.NewBatch(0)
	var errs []error
	for _, m := range msgs {
		if _, err := d.Decode(b, m, testExporter); err != nil {
			errs = append(errs, err)
		}
	}
	return b, errs
}
