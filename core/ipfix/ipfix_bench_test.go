package ipfix

import (
	"fmt"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// AntreaMessage returns a template message and a data message of n
// Antrea-like IPv4 records (5-tuple, times, counters, reverse counters and
// four variable-length pod strings), encoded by our Encoder.
func antreaMessages(tb testing.TB, n int) (tmpl, data []byte) {
	b := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		antreaRecord(b.Append(), i, false)
	}
	return encodeTwice(tb, b)
}

// encodeTwice encodes b's records into one message with the template set
// and one without.
func encodeTwice(tb testing.TB, b *flow.Batch) (tmpl, data []byte) {
	enc := NewEncoder(EncoderOptions{MaxMessageSize: 65535})
	var msgs [][]byte
	for range 2 { // the second message has no template set
		if err := enc.Encode(b.Records, time.Unix(1_700_000_100, 0), func(m []byte) error {
			msgs = append(msgs, append([]byte(nil), m...))
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	if len(msgs) != 2 {
		tb.Fatalf("%d messages", len(msgs))
	}
	return msgs[0], msgs[1]
}

func reportPerRecord(b *testing.B, records int) {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*records)
	b.ReportMetric(ns, "ns/record")
	b.ReportMetric(1e9/ns, "records/s")
}

func BenchmarkDecode(b *testing.B) {
	const n = 30
	tmpl, data := antreaMessages(b, n)
	benchDecode(b, tmpl, data, n)
}

// benchDecode decodes data, a message of n records, b.N times with a
// decoder that has seen tmpl.
func benchDecode(b *testing.B, tmpl, data []byte, n int) {
	d := NewDecoder(DecoderOptions{})
	out := flow.NewBatch(256)
	d.Decode(out, tmpl, testExporter)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		if got, err := d.Decode(out, data, testExporter); got != n || err != nil {
			b.Fatalf("decoded %d, %v", got, err)
		}
	}
	reportPerRecord(b, n)
}

// BenchmarkDecodePodNames decodes messages whose records each name other
// Pods (as test/bench/cmd/ipfixgen sends them, and as a Node's flows do):
// the string values change from record to record, so they are looked up
// in the intern table rather than matched against the previous record's.
func BenchmarkDecodePodNames(b *testing.B) {
	const n = 30
	batch := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		r := batch.Append()
		antreaRecord(r, i, false)
		r.SetString(flow.SourcePodName, fmt.Sprintf("frontend-7d9c6b-%05d", i))
		r.SetString(flow.DestinationPodName, fmt.Sprintf("backend-%d", i%7))
	}
	tmpl, data := encodeTwice(b, batch)
	benchDecode(b, tmpl, data, n)
}

func BenchmarkDecodeSoftflowd(b *testing.B) {
	msgs := softflowdMessages(b)
	d := NewDecoder(DecoderOptions{})
	batch := flow.NewBatch(256)
	records, size := 0, 0
	for _, m := range msgs {
		n, _ := d.Decode(batch, m, testExporter)
		records += n
		size += len(m)
		batch.Reset()
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range msgs {
			batch.Reset()
			d.Decode(batch, m, testExporter)
		}
	}
	reportPerRecord(b, records)
}

func BenchmarkEncode(b *testing.B) {
	const n = 30
	batch := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		antreaRecord(batch.Append(), i, false)
	}
	enc := NewEncoder(EncoderOptions{})
	emit := func([]byte) error { return nil }
	enc.Encode(batch.Records, time.Unix(1, 0), emit)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := enc.Encode(batch.Records, time.Unix(1, 0), emit); err != nil {
			b.Fatal(err)
		}
	}
	reportPerRecord(b, n)
}

// BenchmarkReexport forwards Antrea-like messages of 30 records as raw
// records stamped by the proxy: the forwarding path of source.ipfix (raw)
// → proxy → export.ipfix, to compare with BenchmarkDecode + BenchmarkEncode.
func BenchmarkReexport(b *testing.B) {
	const n = 30
	tmpl, data := antreaMessages(b, n)
	stats := new(RawStats)
	enc := NewEncoder(EncoderOptions{MaxMessageSize: 1472, RawStats: stats})
	emit := func([]byte) error { return nil }
	if err := enc.Encode(rawBatch(testExporter, true, tmpl).Records, reexportTime, emit); err != nil {
		b.Fatal(err)
	}
	recs := rawBatch(testExporter, true, data).Records
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := enc.Encode(recs, reexportTime, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if stats.Copied.Load() != uint64(n*(b.N+1)) {
		b.Fatalf("copied %d records, want %d", stats.Copied.Load(), n*(b.N+1))
	}
	reportPerRecord(b, n)
}
