package conntrack

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

func unsafeSizeofEntry() uintptr { return unsafe.Sizeof(entry{}) }

// cpuNanos is the process's CPU time (user + system). On a shared machine
// it measures the work where wall time measures the queue for a core.
func cpuNanos() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkStorePoll is one poll over a table of n unchanged connections
// (half IPv6): per op, the store update path of every connection (key,
// hash, lookup, compare counters) and the expiry scan. ns/conn is the cost
// per connection per poll, B/conn the store's heap per connection.
func BenchmarkStorePoll(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			flows := make([]ctFlow, n) // what the dump decoder hands the store
			for i := range flows {
				f := synthFlow(i, i%2 == 1, 6, 10, 1000)
				fromTiMo(&f, &flows[i])
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s := newStore(n)
			for i := range flows {
				s.observe(&flows[i], 1)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			perConn := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
			tout := timeouts{active: 1 << 62, idle: 1 << 62, newGrace: 1 << 62}
			emit := func(*entry, uint8) {}
			s.expire(2, false, tout, emit) // first export
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuNanos()
			for it := 0; it < b.N; it++ {
				now := int64(3 + it)
				s.beginDump()
				for i := range flows {
					s.observe(&flows[i], now)
				}
				s.expire(now, true, tout, emit)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N)/float64(n), "cpu-ns/conn")
			if s.Len() != n {
				b.Fatalf("store has %d, want %d", s.Len(), n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
			b.ReportMetric(perConn, "B/conn")
			runtime.KeepAlive(s)
		})
	}
}

// ctnetlinkDump builds the reply of a dump of n entries (half IPv6, TCP
// ESTABLISHED with counters, as the kernel sends them), split in reads of
// about 32 KiB like the kernel's, with NLMSG_DONE at the end.
func ctnetlinkDump(b *testing.B, n int) [][]byte {
	var reads [][]byte
	var cur []byte
	for i := 0; i < n; i++ {
		f := synthFlow(i, i%2 == 1, 6, 10, 1000)
		ipAttrs := []netfilter.Attribute{
			{Type: ctaIPv4Src, Data: f.TupleOrig.IP.SourceAddress.AsSlice()},
			{Type: ctaIPv4Dst, Data: f.TupleOrig.IP.DestinationAddress.AsSlice()},
		}
		if i%2 == 1 {
			ipAttrs[0].Type, ipAttrs[1].Type = ctaIPv6Src, ctaIPv6Dst
		}
		tuple := func() netfilter.Attribute {
			return netfilter.Attribute{Nested: true, Children: []netfilter.Attribute{
				{Type: ctaTupleIP, Nested: true, Children: ipAttrs},
				{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
					{Type: ctaProtoNum, Data: []byte{6}},
					{Type: ctaProtoSrc, Data: netfilter.Uint16Bytes(f.TupleOrig.Proto.SourcePort)},
					{Type: ctaProtoDst, Data: netfilter.Uint16Bytes(80)},
				}},
			}}
		}
		orig, reply := tuple(), tuple()
		orig.Type, reply.Type = ctaTupleOrig, 2
		counters := func(typ uint16, p, o uint64) netfilter.Attribute {
			return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaCountersPackets, Data: netfilter.Uint64Bytes(p)},
				{Type: ctaCountersBytes, Data: netfilter.Uint64Bytes(o)},
			}}
		}
		attrs, err := netfilter.MarshalAttributes([]netfilter.Attribute{
			orig, reply,
			{Type: 3, Data: netfilter.Uint32Bytes(0x18e)}, // CTA_STATUS
			{Type: ctaProtoinfo, Nested: true, Children: []netfilter.Attribute{{Type: ctaProtoinfoTCP, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaProtoinfoTCPState, Data: []byte{3}}, {Type: 2, Data: []byte{7}}, {Type: 3, Data: []byte{7}},
			}}}},
			{Type: 7, Data: netfilter.Uint32Bytes(431999)}, // CTA_TIMEOUT
			counters(ctaCountersOrig, 10, 1000), counters(ctaCountersReply, 5, 3000),
			{Type: ctaMark, Data: netfilter.Uint32Bytes(0)},
			{Type: 11, Data: netfilter.Uint32Bytes(1)},         // CTA_USE
			{Type: 12, Data: netfilter.Uint32Bytes(uint32(i))}, // CTA_ID
			{Type: ctaTimestamp, Nested: true, Children: []netfilter.Attribute{{Type: ctaTimestampStart, Data: netfilter.Uint64Bytes(1_780_000_000e9)}}},
		})
		if err != nil {
			b.Fatal(err)
		}
		msg := make([]byte, 20, 20+len(attrs))
		binary.NativeEndian.PutUint32(msg, uint32(20+len(attrs)))
		binary.NativeEndian.PutUint16(msg[4:], 1<<8) // CTNETLINK, IPCTNL_MSG_CT_NEW
		binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_MULTI)
		binary.NativeEndian.PutUint32(msg[8:], 1) // sequence
		msg[16] = 2                               // nfgenmsg: AF_INET
		msg = append(msg, attrs...)
		if len(cur)+len(msg) > 32<<10 {
			reads, cur = append(reads, cur), nil
		}
		cur = append(cur, msg...)
	}
	done := make([]byte, 20)
	binary.NativeEndian.PutUint32(done, 20)
	binary.NativeEndian.PutUint16(done[4:], unix.NLMSG_DONE)
	binary.NativeEndian.PutUint32(done[8:], 1)
	return append(reads, append(cur, done...))
}

// BenchmarkPollUserSpace is a poll's user-space work per unchanged
// connection: walking the kernel's dump reply, decoding each entry, the
// zone/mark/protocol filter, the store update, and the expiry scan — all
// but the syscalls and the kernel's own dump.
func BenchmarkPollUserSpace(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			reads := ctnetlinkDump(b, n)
			cfg := DefaultConfig()
			cfg.MaxConnections = n
			src, err := New(cfg, nopSettings())
			if err != nil {
				b.Fatal(err)
			}
			s := src.store
			tout := timeouts{active: 1 << 62, idle: 1 << 62, newGrace: 1 << 62}
			emit := func(*entry, uint8) {}
			now := int64(1)
			observe := func(f *ctFlow) {
				if src.keep(f) {
					s.observe(f, now)
				}
			}
			poll := func() {
				s.beginDump()
				var st parseState
				for _, r := range reads {
					if _, err := st.parse(r, 1, observe); err != nil {
						b.Fatal(err)
					}
				}
				s.expire(now, true, tout, emit)
			}
			poll()
			if s.Len() != n {
				b.Fatalf("store has %d, want %d", s.Len(), n)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuNanos()
			for it := 0; it < b.N; it++ {
				now++
				poll()
			}
			b.ReportMetric(float64(cpuNanos()-cpu0)/float64(b.N)/float64(n), "cpu-ns/conn")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
		})
	}
}
