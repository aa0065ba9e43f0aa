package wireshark

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLuaUpToDate: the checked-in weir.lua is what the registry generates.
func TestLuaUpToDate(t *testing.T) {
	got, err := os.ReadFile("weir.lua")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Lua()) {
		t.Fatal("weir.lua differs from the IE registry's: run go generate ./deploy/wireshark")
	}
}

// TestTsharkNamesIEs: tshark with weir.lua decodes an IPFIX capture of two
// records carrying Antrea and Weir-local IEs of every decoder kind into
// named, typed fields, one value per record.
func TestTsharkNamesIEs(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is not installed (make test installs it: apt-get install tshark)")
	}
	type ie struct {
		id     uint16
		length uint16
		vals   [2][]byte
	}
	u := func(n int, v uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, v)
		return b[8-n:]
	}
	str := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	ies := []ie{
		{101, 0xffff, [2][]byte{str("client"), str("")}},                                 // sourcePodName, string
		{121, 4, [2][]byte{u(4, 1000), u(4, 5)}},                                         // octetTotalCountFromSourceNode, unsigned64 in 4 bytes (RFC 7011 §6.2)
		{145, 8, [2][]byte{u(8, 800), u(8, 1<<40)}},                                      // throughput
		{151, 4, [2][]byte{u(4, 1010), u(4, 1700000000)}},                                // flowEndSecondsFromSourceNode, dateTimeSeconds
		{106, 4, [2][]byte{{10, 96, 0, 10}, {10, 96, 0, 11}}},                            // destinationClusterIPv4
		{116, 4, [2][]byte{u(4, uint64(0xfffffffb)), u(4, 3)}},                           // ingressNetworkPolicyRulePriority, signed32
		{107, 4, [2][]byte{u(4, 1), u(4, 2)}},                                            // destinationClusterIPv6 in 4 bytes: does not fit, shown as unparsed bytes
		{32000, 2, [2][]byte{u(2, 7), u(2, 65535)}},                                      // ctZone (Weir-local)
		{32011, 8, [2][]byte{u(8, math.Float64bits(1.5)), u(8, math.Float64bits(0.25))}}, // meanRttMilliseconds, float64
		{32015, 8, [2][]byte{u(8, 1700000000123), u(8, 1000)}},                           // lastReplyMilliseconds, dateTimeMilliseconds
	}
	tmpl := binary.BigEndian.AppendUint16(nil, 256)
	tmpl = binary.BigEndian.AppendUint16(tmpl, uint16(len(ies)))
	var data []byte
	for _, e := range ies {
		tmpl = binary.BigEndian.AppendUint16(tmpl, e.id|0x8000)
		tmpl = binary.BigEndian.AppendUint16(tmpl, e.length)
		tmpl = binary.BigEndian.AppendUint32(tmpl, 56506)
	}
	for rec := range 2 {
		for _, e := range ies {
			data = append(data, e.vals[rec]...)
		}
	}
	set := func(id uint16, body []byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, id)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
		return append(b, body...)
	}
	body := append(set(2, tmpl), set(256, data)...)
	msg := binary.BigEndian.AppendUint16(nil, 10)
	msg = binary.BigEndian.AppendUint16(msg, uint16(16+len(body)))
	msg = binary.BigEndian.AppendUint32(msg, 1700000000) // export time
	msg = binary.BigEndian.AppendUint32(msg, 0)          // sequence
	msg = binary.BigEndian.AppendUint32(msg, 1)          // observation domain
	msg = append(msg, body...)
	pcap := filepath.Join(t.TempDir(), "antrea.pcap")
	if err := os.WriteFile(pcap, pcapOf(msg), 0o644); err != nil {
		t.Fatal(err)
	}

	names := []string{
		"antrea.sourcePodName", "antrea.octetTotalCountFromSourceNode", "antrea.throughput",
		"antrea.flowEndSecondsFromSourceNode", "antrea.destinationClusterIPv4", "antrea.ingressNetworkPolicyRulePriority",
		"antrea.unparsed", "weir.ctZone", "weir.meanRttMilliseconds", "weir.lastReplyMilliseconds",
	}
	args := []string{"-X", "lua_script:weir.lua", "-r", pcap, "-d", "udp.port==4739,cflow", "-T", "fields", "-E", "occurrence=a", "-E", "separator=|"}
	for _, n := range names {
		args = append(args, "-e", n)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	want := []string{
		"client", // cflow makes no item of record 2's empty string
		"1000,5", "800,1099511627776",
		"Jan  1, 1970 00:16:50.000000000 UTC,Nov 14, 2023 22:13:20.000000000 UTC", "10.96.0.10,10.96.0.11", "-5,3",
		"00000001,00000002", "7,65535", "1.5,0.25", "Nov 14, 2023 22:13:20.123000000 UTC,Jan  1, 1970 00:00:01.000000000 UTC",
	}
	got := strings.Split(strings.TrimSpace(string(out)), "|")
	if len(got) != len(want) {
		t.Fatalf("tshark printed %d fields, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: %q, want %q", names[i], got[i], want[i])
		}
	}

	// The detail view groups each record's IEs.
	out, err = exec.Command("tshark", "-X", "lua_script:weir.lua", "-r", pcap, "-d", "udp.port==4739,cflow", "-V").Output()
	if err != nil {
		t.Fatalf("tshark -V: %v\n%s", err, out)
	}
	for _, s := range []string{"Antrea IPFIX IEs (PEN 56506)", "Record 2", "throughput: 800", "ctZone: 7"} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("tshark -V lacks %q:\n%s", s, out)
		}
	}
}

// pcapOf is a capture (LINKTYPE_RAW) of one UDP datagram to port 4739.
func pcapOf(payload []byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 101)
	pkt := make([]byte, 28, 28+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(pkt[2:], uint16(28+len(payload)))
	copy(pkt[12:], []byte{192, 0, 2, 1})
	copy(pkt[16:], []byte{192, 0, 2, 2})
	binary.BigEndian.PutUint16(pkt[20:], 40000)
	binary.BigEndian.PutUint16(pkt[22:], 4739)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	pkt = append(pkt, payload...)
	b = binary.LittleEndian.AppendUint32(b, 1700000000)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	return append(b, pkt...)
}
