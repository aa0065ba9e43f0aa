package ipfix

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
)

// Packet times of ../shared/testdata/netns-mix.pcap (first and last
// frame.time_epoch, from tshark), which bound every flow softflowd reports.
var (
	netnsMixFirst = time.Unix(1795564970, 496897000)
	netnsMixLast  = time.Unix(1795564978, 797028000)
)

func softflowdMessages(t testing.TB) [][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/softflowd/msg*.bin")
	if err != nil || len(files) == 0 {
		t.Fatalf("no softflowd messages (run testdata/gen.sh): %v", err)
	}
	var msgs [][]byte
	for _, f := range files {
		m, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestSoftflowd(t *testing.T) {
	msgs := softflowdMessages(t)
	raw, err := os.ReadFile("testdata/softflowd/records.txt")
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder(DecoderOptions{})
	b, errs := decodeAll(t, d, msgs...)
	if len(errs) > 0 {
		t.Fatalf("decode errors: %v", errs)
	}
	st := d.Stats()
	if b.Len() != want || st.Records.Load() != uint64(want) {
		t.Fatalf("decoded %d records (stats %d), tshark counts %d", b.Len(), st.Records.Load(), want)
	}
	if got := st.OptionsRecords.Load(); got != 1 {
		t.Errorf("options records = %d, want 1", got)
	}
	if got := st.TimesApproximated.Load(); got != 0 {
		t.Errorf("times approximated = %d, want 0 (init time is in the first message's options set)", got)
	}
	if got := st.MalformedSets.Load() + st.MalformedMessages.Load() + st.PendingHeld.Load(); got != 0 {
		t.Errorf("malformed/held = %d, want 0", got)
	}
	lo := netnsMixFirst.Truncate(time.Millisecond).UnixNano()
	hi := netnsMixLast.UnixNano()
	var v4, v6 int
	protos := map[uint8]int{}
	for i, r := range b.Records {
		if !r.Has(flow.FlowStart) || !r.Has(flow.FlowEnd) {
			t.Fatalf("record %d has no times", i)
		}
		if r.FlowStart < lo || r.FlowEnd > hi || r.FlowStart > r.FlowEnd {
			t.Errorf("record %d times %v..%v outside the capture %v..%v", i,
				time.Unix(0, r.FlowStart).UTC(), time.Unix(0, r.FlowEnd).UTC(), netnsMixFirst.UTC(), netnsMixLast.UTC())
		}
		if !r.Has(flow.SourceAddress) || !r.Has(flow.DestinationAddress) || !r.Has(flow.ProtocolIdentifier) {
			t.Errorf("record %d lacks its 5-tuple", i)
		}
		if r.SourceAddress.Is4() {
			v4++
		} else {
			v6++
		}
		if r.PacketDeltaCount == 0 || r.OctetDeltaCount == 0 {
			t.Errorf("record %d has zero counters", i)
		}
		protos[r.ProtocolIdentifier]++
	}
	// softflowd's own summary for this capture: 679 TCP, 72 UDP, 48 ICMP and
	// 63 ICMPv6 packets.
	// and 2448916, 2682, 4032 and 6176 octets.
	pk, oc := map[uint8]uint64{}, map[uint8]uint64{}
	for _, r := range b.Records {
		pk[r.ProtocolIdentifier] += r.PacketDeltaCount
		oc[r.ProtocolIdentifier] += r.OctetDeltaCount
	}
	for proto, n := range map[uint8][2]uint64{6: {679, 2448916}, 17: {72, 2682}, 1: {48, 4032}, 58: {63, 6176}} {
		if pk[proto] != n[0] || oc[proto] != n[1] {
			t.Errorf("protocol %d: %d packets %d octets, softflowd reported %d and %d", proto, pk[proto], oc[proto], n[0], n[1])
		}
	}
	if v4 == 0 || v6 == 0 {
		t.Errorf("v4 %d v6 %d records: want both families", v4, v6)
	}
	t.Logf("%d records (%d v4, %d v6), protocols %v", b.Len(), v4, v6, protos)
}
