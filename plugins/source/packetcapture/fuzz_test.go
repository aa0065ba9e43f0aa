package packetcapture

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// synFrame is an Ethernet frame carrying a TCP SYN 10.18.0.1:40001 →
// 10.18.0.2:8080 (from the netns test's capture).
var synFrame, _ = hex.DecodeString("" +
	"0a0000000002" + "0a0000000001" + "0800" + // Ethernet
	"45000028000140004006" + "0000" + "0a120001" + "0a120002" + // IPv4, 40 bytes
	"9c411f90" + "00000001" + "00000000" + "5002ffff" + "00000000") // TCP SYN

func TestParse(t *testing.T) {
	var p packetInfo
	ps := parser{lt: layers.LinkTypeEthernet}
	if !ps.parse(synFrame, &p) {
		t.Fatal("parse failed")
	}
	want := flowKey{src: netip.MustParseAddr("10.18.0.1"), dst: netip.MustParseAddr("10.18.0.2"), sport: 40001, dport: 8080, proto: 6}
	if p.key != want || p.octets != 40 || p.tcpFlags != 0x02 || p.version != 4 {
		t.Errorf("parsed %+v, want %+v, 40 octets, SYN", p, want)
	}
	if ps.parse(synFrame[:20], &p) {
		t.Error("a frame cut inside the IP header parsed")
	}
}

// TestFlowTable: a reply joins its request's biflow, whose forward
// direction is the spec's source → destination even when the reply comes
// first; as uniflows they are two records.
func TestFlowTable(t *testing.T) {
	client, server := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	req := packetInfo{key: flowKey{src: client, dst: server, sport: 40000, dport: 80, proto: 6}, octets: 60, tcpFlags: 0x02, version: 4}
	rep := packetInfo{key: req.key.reversed(), octets: 40, tcpFlags: 0x12, version: 4}
	sp := spec{dport: 80, proto: 6, hasProto: true}
	for _, c := range []struct {
		biflow bool
		want   int
	}{{true, 1}, {false, 2}} {
		table := newFlowTable(sp, c.biflow, 10)
		table.add(time.Unix(1, 0), &rep) // the reply first: a capture started mid-handshake
		table.add(time.Unix(2, 0), &req)
		table.add(time.Unix(3, 0), &rep)
		if len(table.entries) != c.want {
			t.Fatalf("biflow %v: %d records, want %d", c.biflow, len(table.entries), c.want)
		}
		if c.biflow {
			e := table.entries[req.key]
			if e == nil || e.fwd.packets != 1 || e.rev.packets != 2 || e.fwd.octets != 60 || e.rev.tcpFlags != 0x12 ||
				!e.first.Equal(time.Unix(1, 0)) || !e.last.Equal(time.Unix(3, 0)) {
				t.Errorf("biflow %+v", e)
			}
		}
	}
	full := newFlowTable(sp, false, 1)
	full.add(time.Unix(1, 0), &req)
	if full.add(time.Unix(1, 0), &rep) || full.full != 1 {
		t.Error("a full table took a new flow")
	}
}

// FuzzParse: any frame parses or is refused, without panicking, and the
// flow table takes what parses.
func FuzzParse(f *testing.F) {
	f.Add(synFrame, uint8(0))
	f.Add(synFrame[14:], uint8(1))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 0, 64}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, raw uint8) {
		ps := parser{lt: layers.LinkTypeEthernet}
		if raw&1 == 1 {
			ps.lt = layers.LinkTypeRaw
		}
		var p packetInfo
		if ps.parse(data, &p) {
			table := newFlowTable(spec{}, true, 4)
			table.add(time.Unix(0, 0), &p)
			if len(table.entries) != 1 {
				t.Fatalf("a parsed packet made %d flows", len(table.entries))
			}
		}
	})
}

// BenchmarkSummarise is the per-packet cost of the flow summary: parse and
// count one packet of an existing flow (0 allocs).
func BenchmarkSummarise(b *testing.B) {
	ps := parser{lt: layers.LinkTypeEthernet}
	table := newFlowTable(spec{}, true, 1024)
	var p packetInfo
	ts := time.Unix(1, 0)
	b.ReportAllocs()
	for b.Loop() {
		ps.parse(synFrame, &p)
		table.add(ts, &p)
	}
}
