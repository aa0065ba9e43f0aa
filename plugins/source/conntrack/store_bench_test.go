package conntrack

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"
)

func unsafeSizeofEntry() uintptr { return unsafe.Sizeof(entry{}) }

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
			for it := 0; it < b.N; it++ {
				now := int64(3 + it)
				s.beginDump()
				for i := range flows {
					s.observe(&flows[i], now)
				}
				s.expire(now, true, tout, emit)
			}
			b.StopTimer()
			if s.Len() != n {
				b.Fatalf("store has %d, want %d", s.Len(), n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/conn")
			b.ReportMetric(perConn, "B/conn")
			runtime.KeepAlive(s)
		})
	}
}
