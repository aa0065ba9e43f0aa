package bench

// Comparative IPFIX decode benchmarks: Weir's core/ipfix against goflow2
// v2.2.6's decoders/netflow on the same messages. go-ipfix v0.17.0 is not
// measured: its decode path (collector.CollectingProcess.decodePacket) is
// private and only reachable through a live UDP/TCP collector.
//
//	go test -bench . -benchmem -cpu 1 ./test/bench
//
// Besides ns/record (wall time) each case reports cpu-ns/record, the
// decoding thread's CPU time, which stays meaningful on a loaded machine.

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/ipfix"
)

var benchExporter = netip.MustParseAddrPort("10.0.0.1:4739")

// antreaMessages returns a template message and a data message of n
// Antrea-like IPv4 records (5-tuple, times, counters, reverse counters and
// four variable-length pod strings).
func antreaMessages(tb testing.TB, n int) [][]byte {
	b := flow.NewBatch(n)
	for i := 0; i < n; i++ {
		r := b.Append()
		r.SetAddr(flow.SourceAddress, netip.AddrFrom4([4]byte{10, 244, 1, byte(i)}))
		r.SetAddr(flow.DestinationAddress, netip.AddrFrom4([4]byte{10, 244, 2, byte(i * 7)}))
		r.SetUint(flow.SourceTransportPort, uint64(30000+i))
		r.SetUint(flow.DestinationTransportPort, 8080)
		r.SetUint(flow.ProtocolIdentifier, 6)
		r.SetUint(flow.FlowStart, uint64(time.Unix(1_700_000_000, 123e6).UnixNano()))
		r.SetUint(flow.FlowEnd, uint64(time.Unix(1_700_000_060, 456e6).UnixNano()))
		r.SetUint(flow.FlowEndReason, 2)
		r.SetUint(flow.PacketDeltaCount, uint64(10+i))
		r.SetUint(flow.OctetDeltaCount, uint64(1500*(10+i)))
		r.SetUint(flow.ReversePacketDeltaCount, uint64(8+i))
		r.SetUint(flow.ReverseOctetDeltaCount, uint64(900*(8+i)))
		r.SetString(flow.SourcePodNamespace, "default")
		r.SetString(flow.SourcePodName, "frontend-7d9c8b6f5-x2x9p")
		r.SetString(flow.DestinationPodNamespace, "backend")
		r.SetString(flow.DestinationPodName, "api-5f6d7c8b9-qw3er")
	}
	enc := ipfix.NewEncoder(ipfix.EncoderOptions{MaxMessageSize: 65535})
	var msgs [][]byte
	for range 2 { // template+data, then data only
		if err := enc.Encode(b.Records, time.Unix(1_700_000_100, 0), func(m []byte) error {
			msgs = append(msgs, bytes.Clone(m))
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	return msgs
}

func softflowdMessages(tb testing.TB) [][]byte {
	files, _ := filepath.Glob("../../core/ipfix/testdata/softflowd/msg*.bin")
	if len(files) == 0 {
		tb.Fatal("no softflowd messages in core/ipfix/testdata/softflowd")
	}
	var msgs [][]byte
	for _, f := range files {
		m, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

type decoder interface {
	// decode decodes one message and returns how many data records it held.
	decode(tb testing.TB, msg []byte) int
}

type weir struct {
	d *ipfix.Decoder
	b *flow.Batch
}

func newWeir() decoder {
	return &weir{d: ipfix.NewDecoder(ipfix.DecoderOptions{}), b: flow.NewBatch(256)}
}

func (w *weir) decode(tb testing.TB, msg []byte) int {
	w.b.Reset()
	n, err := w.d.Decode(w.b, msg, benchExporter)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

type goflow2 struct {
	ts netflow.NetFlowTemplateSystem
}

func newGoflow2() decoder { return &goflow2{ts: netflow.CreateTemplateSystem()} }

func (g *goflow2) decode(tb testing.TB, msg []byte) int {
	var v9 netflow.NFv9Packet
	var p netflow.IPFIXPacket
	if err := netflow.DecodeMessageVersion(bytes.NewBuffer(msg), g.ts, &v9, &p); err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, fs := range p.FlowSets {
		if ds, ok := fs.(netflow.DataFlowSet); ok {
			n += len(ds.Records)
		}
	}
	return n
}

// run primes dec with msgs (templates, options) and then decodes the
// steady-state messages msgs[steady:] b.N times.
func run(b *testing.B, newDec func() decoder, msgs [][]byte, steady int) {
	dec := newDec()
	for _, m := range msgs {
		dec.decode(b, m)
	}
	records, size := 0, 0
	for _, m := range msgs[steady:] {
		records += dec.decode(b, m)
		size += len(m)
	}
	if records == 0 {
		b.Fatal("no records")
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	cpu0 := threadCPU()
	for i := 0; i < b.N; i++ {
		for _, m := range msgs[steady:] {
			dec.decode(b, m)
		}
	}
	cpu := threadCPU() - cpu0
	b.StopTimer()
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*records)
	b.ReportMetric(ns, "ns/record")
	// CPU time of the decoding thread: steadier than wall time on a shared
	// machine. It leaves out garbage collection done by other threads, which
	// only flatters the allocating decoders.
	b.ReportMetric(float64(cpu)/float64(b.N*records), "cpu-ns/record")
	b.ReportMetric(testing.AllocsPerRun(10, func() {
		for _, m := range msgs[steady:] {
			dec.decode(b, m)
		}
	})/float64(records), "allocs/record")
}

func BenchmarkDecodeCompare(b *testing.B) {
	antrea := antreaMessages(b, 30)
	sfd := softflowdMessages(b)
	cases := []struct {
		name   string
		msgs   [][]byte
		steady int
	}{
		{"antrea30", antrea, 1},
		{"softflowd", sfd, 0},
	}
	decoders := []struct {
		name string
		new  func() decoder
	}{
		{"weir", newWeir},
		{"goflow2", newGoflow2},
	}
	for _, c := range cases {
		for _, d := range decoders {
			b.Run(c.name+"/"+d.name, func(b *testing.B) { run(b, d.new, c.msgs, c.steady) })
		}
	}
}

// TestDecodersAgree checks that both decoders see the same number of data
// records in the benchmark messages, so the comparison is like for like.
func TestDecodersAgree(t *testing.T) {
	for name, msgs := range map[string][][]byte{"antrea30": antreaMessages(t, 30), "softflowd": softflowdMessages(t)} {
		t.Run(name, func(t *testing.T) {
			w, g := newWeir(), newGoflow2()
			nw, ng := 0, 0
			for _, m := range msgs {
				nw += w.decode(t, m)
				ng += g.decode(t, m)
			}
			if nw != ng || nw == 0 {
				t.Errorf("weir decoded %d records, goflow2 %d", nw, ng)
			}
		})
	}
}
