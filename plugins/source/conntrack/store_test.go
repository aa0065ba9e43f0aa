package conntrack

import (
	"net/netip"
	"testing"
	"time"

	ct "github.com/ti-mo/conntrack"
)

// synthFlow returns a TCP (or UDP) flow from 10.0.x.y:port to a server,
// or its IPv6 twin, with the given counters.
func synthFlow(i int, v6 bool, proto uint8, packets, octets uint64) ct.Flow {
	src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	dst := netip.AddrFrom4([4]byte{10, 99, 0, 1})
	if v6 {
		src = netip.AddrFrom16([16]byte{0xfd, 0, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		dst = netip.MustParseAddr("fd00::99")
	}
	f := ct.NewFlow(proto, 0, src, dst, uint16(1024+i%60000), 80, 120, 0)
	f.CountersOrig = ct.Counter{Packets: packets, Bytes: octets}
	f.CountersReply = ct.Counter{Direction: true, Packets: packets / 2, Bytes: octets * 3}
	if proto == 6 {
		f.ProtoInfo.TCP = &ct.ProtoInfoTCP{State: 3}
	}
	return f
}

// observeCT converts a ti-mo flow and observes it.
func observeCT(s *store, f *ct.Flow, now int64) (*entry, observeResult) {
	var c ctFlow
	fromTiMo(f, &c)
	return s.observe(&c, now)
}

type exported struct {
	key    key
	reason uint8
	dp, do uint64 // forward deltas
	tp     uint64
}

func collect(out *[]exported) func(e *entry, reason uint8) {
	return func(e *entry, reason uint8) {
		*out = append(*out, exported{e.key, reason, e.packets - e.xpackets, e.octets - e.xoctets, e.packets})
	}
}

func TestStoreTimeouts(t *testing.T) {
	tout := timeouts{active: int64(5 * time.Second), idle: int64(15 * time.Second), newGrace: int64(time.Minute)}
	s := newStore(100)
	at := func(sec float64) int64 { return int64(sec * 1e9) }
	var out []exported
	dump := func(now int64, flows ...ct.Flow) {
		s.beginDump()
		for i := range flows {
			observeCT(s, &flows[i], now)
		}
		s.expire(now, true, tout, collect(&out))
	}
	f := synthFlow(1, false, 6, 10, 1000)
	dump(at(0), f)
	if len(out) != 0 || s.Len() != 1 {
		t.Fatalf("new connection exported at once: %+v", out)
	}
	f.CountersOrig = ct.Counter{Packets: 20, Bytes: 2000}
	dump(at(5), f) // active timeout: first export with everything so far
	if len(out) != 1 || out[0].reason != reasonActive || out[0].dp != 20 || out[0].do != 2000 {
		t.Fatalf("active export = %+v", out)
	}
	dump(at(10), f) // no news: not exported again
	dump(at(15), f)
	if len(out) != 1 {
		t.Fatalf("no-news connection re-exported: %+v", out)
	}
	f.CountersOrig = ct.Counter{Packets: 25, Bytes: 2500}
	dump(at(16), f) // news, 11 s after the last export: active
	if len(out) != 2 || out[1].reason != reasonActive || out[1].dp != 5 || out[1].do != 500 {
		t.Fatalf("second active export = %+v", out)
	}
	dump(at(30), f)
	dump(at(31), f) // idle 15 s since the change at 16: one idle record, no deltas
	dump(at(50), f)
	if len(out) != 3 || out[2].reason != reasonIdle || out[2].dp != 0 {
		t.Fatalf("idle export = %+v", out)
	}
	f.ProtoInfo.TCP.State = tcpTimeWait
	f.CountersOrig = ct.Counter{Packets: 27, Bytes: 2600}
	dump(at(52), f) // dying: end of flow at once
	if len(out) != 4 || out[3].reason != reasonEndOfFlow || out[3].dp != 2 {
		t.Fatalf("dying export = %+v", out)
	}
	dump(at(60), f)
	dump(at(80)) // gone from the table, no news since its end: removed silently
	if len(out) != 4 || s.Len() != 0 {
		t.Fatalf("gone after end: out %+v, store %d", out, s.Len())
	}
	var sum uint64
	for _, o := range out {
		sum += o.dp
	}
	if sum != 27 {
		t.Errorf("deltas add up to %d, want the total 27", sum)
	}
}

func TestStoreGoneWithNews(t *testing.T) {
	s := newStore(10)
	tout := timeouts{active: 1e12, idle: 1e12, newGrace: 1e12}
	var out []exported
	f := synthFlow(2, true, 17, 3, 300)
	s.beginDump()
	observeCT(s, &f, 1)
	s.expire(1, true, tout, collect(&out))
	s.beginDump()
	s.expire(2, true, tout, collect(&out))
	if len(out) != 1 || out[0].reason != reasonEndOfFlow || out[0].dp != 3 || s.Len() != 0 {
		t.Fatalf("gone connection: %+v, store %d", out, s.Len())
	}
}

func TestStoreFullAndRemove(t *testing.T) {
	s := newStore(1000)
	flows := make([]ct.Flow, 1200)
	full := 0
	for i := range flows {
		flows[i] = synthFlow(i, i%2 == 0, 6, 1, 60)
		if _, res := observeCT(s, &flows[i], 1); res == observedFull {
			full++
		}
	}
	if s.Len() != 1000 || full != 200 {
		t.Fatalf("store %d, refused %d; want 1000 and 200", s.Len(), full)
	}
	// Remove every third; every other must still be found.
	for i := 0; i < s.Len(); {
		if s.at(i).sport%3 == 0 {
			s.remove(i)
			continue
		}
		i++
	}
	for i := 0; i < 1000; i++ {
		var k key
		setKey(&k, &flows[i])
		got := s.lookup(&k) != nil
		if want := k.sport%3 != 0; got != want {
			t.Fatalf("flow %d found %v, want %v", i, got, want)
		}
	}
}

func TestStoreCounterReset(t *testing.T) {
	s := newStore(10)
	tout := timeouts{active: 1, idle: 1e12, newGrace: 1e12}
	var out []exported
	f := synthFlow(3, false, 17, 50, 5000)
	s.beginDump()
	observeCT(s, &f, 1)
	s.expire(10, true, tout, collect(&out))
	// The tuple now belongs to a new connection with fewer packets.
	f.CountersOrig = ct.Counter{Packets: 4, Bytes: 400}
	s.beginDump()
	observeCT(s, &f, 20)
	s.expire(30, true, tout, collect(&out))
	if len(out) != 2 || out[1].dp != 4 {
		t.Fatalf("after a counter reset: %+v, want a delta of 4", out)
	}
}

func TestEntrySize(t *testing.T) {
	if n := unsafeSizeofEntry(); n > 136 {
		t.Errorf("entry is %d bytes, want ≤ 136", n)
	}
}
