package packetcapture_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/pipeline"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/source/internal/netnstest"
	"github.com/weir-flow/weir/plugins/source/packetcapture"
)

// TestPacketLimitEndsPipeline runs the source as the only source of a
// pipeline, as `weir run` does: with packets: 3 and direction both it keeps
// the three-way handshake, emits one biflow and the pipeline is done.
func TestPacketLimitEndsPipeline(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "flows.jsonl")
	capture := filepath.Join(dir, "handshake.pcapng")
	yaml := fmt.Sprintf(`
pipeline:
  sources:
    - source.packetcapture:
        interface: c0
        flow: {source_ip: %s, destination_ip: %s, source_port: %d, destination_port: %d, protocol: tcp}
        direction: both
        packets: 3
        path: %s
  exporters:
    - export.jsonl: {path: %s}
`, clientIP, serverIP, convPort, httpPort, capture, out)
	cfg, err := config.Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	var p *pipeline.Pipeline
	netnstest.Do(t, l.client, func() {
		if p, err = pipeline.New(context.Background(), cfg, pipeline.Options{}); err == nil {
			err = p.Start(context.Background())
		}
	})
	if err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	l.traffic(t)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the pipeline did not end when the capture reached its packet limit")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ps := tsharkPackets(t, capture)
	if len(ps) != 3 || ps[0].flags != 0x02 || ps[1].flags != 0x12 || ps[2].flags != 0x10 {
		t.Errorf("capture = %+v, want SYN, SYN-ACK, ACK", ps)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := fmt.Sprintf(`"sourceIPv4Address":"%s","destinationIPv4Address":"%s","sourceTransportPort":%d,"destinationTransportPort":%d,"protocolIdentifier":6,"tcpControlBits":18`,
		clientIP, serverIP, convPort, httpPort)
	if len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.Contains(lines[0], `"packetDeltaCount":2,`) ||
		!strings.Contains(lines[0], `"reversePacketDeltaCount":1`) || !strings.Contains(lines[0], `"reverseTcpControlBits":18`) {
		t.Errorf("records:\n%s\nwant one biflow with %s, 2 forward and 1 reverse packet", data, want)
	}
}

// TestFileFormat checks the pcapng structure (every packet on interface 0,
// the one the section declares, with the filter), rotation, and that the
// attached program is the one tcpdump compiles for the same expression.
func TestFileFormat(t *testing.T) {
	l := newLab(t)
	cfg := packetcapture.DefaultConfig()
	cfg.Interface = "c0"
	cfg.Flow = packetcapture.Flow{SourceIP: clientIP, DestinationIP: serverIP, Protocol: "tcp"}
	cfg.Direction = packetcapture.Both
	cfg.Duration = 3 * time.Second
	cfg.Path = filepath.Join(t.TempDir(), "rotated.pcapng")
	cfg.Rotation = packetcapture.Rotation{MaxBytes: 2048, MaxFiles: 3}
	set := plugin.NopSettings(packetcapture.ID)
	set.Metrics = prometheus.NewRegistry()
	var s *packetcapture.Source
	var err error
	em := plugintest.NewEmitter(256)
	netnstest.Do(t, l.client, func() {
		if s, err = packetcapture.New(cfg, set); err == nil {
			err = s.Start(context.Background(), em)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	// tcpdump -ddd prints the program libpcap compiles: count, then
	// "code jt jf k" per instruction.
	dump := netnstest.Exec(t, l.client, "tcpdump", "-i", "c0", "-ddd", s.Expression())
	sc := bufio.NewScanner(strings.NewReader(dump))
	var want []string
	for sc.Scan() {
		want = append(want, strings.TrimSpace(sc.Text()))
	}
	var got []string
	got = append(got, strconv.Itoa(len(s.Program())))
	for _, in := range s.Program() {
		got = append(got, fmt.Sprintf("%d %d %d %d", in.Op, in.Jt, in.Jf, in.K))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("program:\n%s\ntcpdump -ddd:\n%s", strings.Join(got, "\n"), dump)
	}

	l.traffic(t)
	<-s.Done()
	st := s.Status()
	if len(st.Files) != 3 {
		t.Fatalf("files %v, want the 3 newest of the rotation", st.Files)
	}
	total := 0
	for _, name := range st.Files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.NInterfaces() != 1 {
			t.Errorf("%s: %d interfaces", name, r.NInterfaces())
		}
		iface, _ := r.Interface(0)
		if iface.Name != "c0" || iface.Filter != s.Expression() {
			t.Errorf("%s: interface %q filter %q", name, iface.Name, iface.Filter)
		}
		n := 0
		for {
			_, ci, err := r.ReadPacketData()
			if err != nil {
				break
			}
			if ci.InterfaceIndex != 0 {
				t.Errorf("%s: packet on interface %d", name, ci.InterfaceIndex)
			}
			n++
		}
		f.Close()
		if n == 0 || n != len(tsharkPackets(t, name)) {
			t.Errorf("%s: %d packets, tshark reads %d", name, n, len(tsharkPackets(t, name)))
		}
		total += n
	}
	if base := filepath.Base(st.Files[2]); !strings.HasPrefix(base, "rotated.") || !strings.HasSuffix(base, ".pcapng") {
		t.Errorf("rotated file name %s", base)
	}
	if total >= int(st.Packets) {
		t.Errorf("the kept files hold %d of %d packets: the oldest file was not deleted", total, st.Packets)
	}
}
