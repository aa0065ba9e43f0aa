package ipfix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// setIDs lists the set IDs of a message.
func setIDs(m []byte) []uint16 {
	var ids []uint16
	for off := headerLen; off+4 <= len(m); {
		ids = append(ids, binary.BigEndian.Uint16(m[off:]))
		l := int(binary.BigEndian.Uint16(m[off+2:]))
		if l < 4 {
			break
		}
		off += l
	}
	return ids
}

func antreaBatch(n int) (*flow.Batch, []*flow.Record) {
	b := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		antreaRecord(b.Append(), i, i%4 == 3)
	}
	return b, b.Records
}

func TestEncoderMessages(t *testing.T) {
	_, recs := antreaBatch(200)
	enc := NewEncoder(EncoderOptions{ObservationDomainID: 42, MaxMessageSize: 512})
	dec := NewDecoder(DecoderOptions{})
	out := flow.NewBatch(0)
	export := time.Unix(1_700_000_123, 0)
	var seqs []uint32
	total := 0
	err := enc.Encode(recs, export, func(m []byte) error {
		if len(m) > 512 {
			t.Errorf("message of %d bytes", len(m))
		}
		if binary.BigEndian.Uint16(m[2:]) != uint16(len(m)) || binary.BigEndian.Uint32(m[4:]) != uint32(export.Unix()) || binary.BigEndian.Uint32(m[12:]) != 42 {
			t.Errorf("bad header % x", m[:16])
		}
		seqs = append(seqs, binary.BigEndian.Uint32(m[8:]))
		n, err := dec.Decode(out, m, testExporter)
		if err != nil {
			t.Error(err)
		}
		if seqs[len(seqs)-1] != uint32(total) {
			t.Errorf("sequence %d, want %d", seqs[len(seqs)-1], total)
		}
		total += n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != 200 || len(seqs) < 10 {
		t.Fatalf("decoded %d records in %d messages", total, len(seqs))
	}
	if dec.Stats().PendingHeld.Load() != 0 {
		t.Errorf("a data set preceded its template")
	}
	for i := range recs {
		assertSameRecord(t, i, out.Records[i], recs[i])
	}
}

func TestEncoderTemplates(t *testing.T) {
	_, recs := antreaBatch(8) // two shapes: v4 and v6
	t0 := time.Unix(1_700_000_000, 0)
	collect := func(enc *Encoder, at time.Time) (tmplSets int, seq uint32) {
		t.Helper()
		first := true
		if err := enc.Encode(recs, at, func(m []byte) error {
			if first {
				seq, first = binary.BigEndian.Uint32(m[8:]), false
			}
			for _, id := range setIDs(m) {
				if id == setIDTemplate {
					tmplSets++
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return tmplSets, seq
	}
	t.Run("sent once without refresh", func(t *testing.T) {
		enc := NewEncoder(EncoderOptions{})
		if n, _ := collect(enc, t0); n != 2 {
			t.Errorf("first encode: %d template sets, want 2", n)
		}
		if n, seq := collect(enc, t0.Add(time.Hour)); n != 0 || seq != 8 {
			t.Errorf("second encode: %d template sets, seq %d; want 0 and 8", n, seq)
		}
	})
	t.Run("refresh", func(t *testing.T) {
		enc := NewEncoder(EncoderOptions{TemplateRefresh: time.Minute})
		collect(enc, t0)
		if n, _ := collect(enc, t0.Add(30*time.Second)); n != 0 {
			t.Errorf("after 30s: %d template sets", n)
		}
		if n, _ := collect(enc, t0.Add(61*time.Second)); n != 2 {
			t.Errorf("after 61s: %d template sets, want 2", n)
		}
	})
	t.Run("reset", func(t *testing.T) {
		enc := NewEncoder(EncoderOptions{})
		collect(enc, t0)
		enc.Reset()
		if n, seq := collect(enc, t0); n != 2 || seq != 0 {
			t.Errorf("after reset: %d template sets, seq %d; want 2 and 0", n, seq)
		}
	})
	t.Run("consecutive records share a data set", func(t *testing.T) {
		b := flow.NewBatch(0)
		for i := 0; i < 6; i++ {
			antreaRecord(b.Append(), i, i >= 3)
		}
		enc := NewEncoder(EncoderOptions{})
		enc.Encode(b.Records, t0, func(m []byte) error {
			if got := setIDs(m); len(got) != 4 || got[0] != 2 || got[1] != 256 || got[2] != 2 || got[3] != 257 {
				t.Errorf("sets %v, want [2 256 2 257]", got)
			}
			return nil
		})
	})
}

func TestEncoderErrors(t *testing.T) {
	b, _ := antreaBatch(3)
	b.Records[1].SetString(flow.SourcePodLabels, strings.Repeat("x", 2000))
	enc := NewEncoder(EncoderOptions{})
	dec := NewDecoder(DecoderOptions{})
	out := flow.NewBatch(0)
	err := enc.Encode(b.Records, time.Unix(1, 0), func(m []byte) error {
		_, err := dec.Decode(out, m, testExporter)
		return err
	})
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Errorf("error %v, want ErrRecordTooLarge", err)
	}
	if out.Len() != 2 {
		t.Errorf("decoded %d records, want the 2 others", out.Len())
	}

	// An emit error stops encoding; templates are resent afterwards.
	boom := errors.New("boom")
	enc = NewEncoder(EncoderOptions{})
	_, recs := antreaBatch(2)
	if err := enc.Encode(recs, time.Unix(1, 0), func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("error %v, want boom", err)
	}
	enc.Encode(recs, time.Unix(1, 0), func(m []byte) error {
		if ids := setIDs(m); ids[0] != setIDTemplate {
			t.Errorf("templates not resent after an emit error: %v", ids)
		}
		return nil
	})
}

func TestReadMessage(t *testing.T) {
	m1 := message(1, 1, set(2, templateRecord(256, ie(4, 1))))
	m2 := message(1, 2, set(256, rec(u8(6)), rec(u8(17))))
	t.Run("stream", func(t *testing.T) {
		r := bytes.NewReader(append(append([]byte(nil), m1...), m2...))
		buf := make([]byte, 0, 8)
		var got [][]byte
		for {
			m, err := ReadMessage(r, buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, append([]byte(nil), m...))
			buf = m
		}
		if len(got) != 2 || !bytes.Equal(got[0], m1) || !bytes.Equal(got[1], m2) {
			t.Errorf("got %d messages", len(got))
		}
	})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"truncated body", m2[:len(m2)-1], io.ErrUnexpectedEOF},
		{"truncated header", m2[:5], io.ErrUnexpectedEOF},
		{"bad version", append([]byte{0, 9}, m1[2:]...), ErrMalformed},
		{"bad length", []byte{0, 10, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadMessage(bytes.NewReader(tt.in), nil); !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	_, recs := antreaBatch(30)
	enc := NewEncoder(EncoderOptions{MaxMessageSize: 65535})
	var msg []byte
	enc.Encode(recs, time.Unix(1, 0), func(m []byte) error { msg = append([]byte(nil), m...); return nil })
	if a := testing.AllocsPerRun(100, func() {
		enc.Encode(recs, time.Unix(1, 0), func([]byte) error { return nil })
	}); a != 0 {
		t.Errorf("Encode: %v allocs per 30 records", a)
	}
	dec := NewDecoder(DecoderOptions{})
	b := flow.NewBatch(64)
	dec.Decode(b, msg, testExporter)
	if a := testing.AllocsPerRun(100, func() {
		b.Reset()
		if n, err := dec.Decode(b, msg, testExporter); n != 30 || err != nil {
			t.Fatalf("decoded %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Decode: %v allocs per 30-record message", a)
	}
}

// TestEncoderOneSetPerMessage: each message holds one set (go-ipfix's
// collecting process reads only the first), and every record decodes.
func TestEncoderOneSetPerMessage(t *testing.T) {
	_, recs := antreaBatch(50) // two shapes (IPv4 and IPv6)
	enc := NewEncoder(EncoderOptions{MaxMessageSize: 1400, OneSetPerMessage: true})
	dec := NewDecoder(DecoderOptions{})
	out := flow.NewBatch(64)
	messages := 0
	err := enc.Encode(recs, time.Unix(1_780_000_000, 0), func(m []byte) error {
		messages++
		if ids := setIDs(m); len(ids) != 1 {
			t.Errorf("message %d has sets %v, want one", messages, ids)
		}
		_, err := dec.Decode(out, m, netip.MustParseAddrPort("127.0.0.1:4739"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Len() != len(recs) || messages < 4 {
		t.Errorf("decoded %d of %d records in %d messages", out.Len(), len(recs), messages)
	}
}
