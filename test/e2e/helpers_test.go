package e2e

// Shared helpers of the end-to-end tests: weir as a child process
// (test/weirtest), softflowd, nfcapd/nfdump and tshark.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weir-flow/weir/test/weirtest"
)

// weirBin is the weir binary built by TestMain.
var weirBin string

func TestMain(m *testing.M) { weirtest.Main(m, &weirBin) }

// needTools fails (never skips) when a tool the e2e tests use is missing:
// `make test` installs them (Debian: softflowd nfdump tshark).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs it: apt-get install softflowd nfdump tshark)", tool)
		}
	}
}

type (
	weirProc     = weirtest.Proc
	lockedBuffer = weirtest.LockedBuffer
)

// startWeir runs weir on yaml (see weirtest.Start) and waits until the
// pipeline runs.
func startWeir(t *testing.T, yaml string) *weirProc {
	t.Helper()
	return weirtest.Start(t, weirBin, yaml, nil)
}

// startWeirCmd is startWeir with setup called on the command before it
// starts (to add arguments or process attributes).
func startWeirCmd(t *testing.T, yaml string, setup func(*exec.Cmd)) *weirProc {
	t.Helper()
	return weirtest.Start(t, weirBin, yaml, setup)
}

// runSoftflowd turns a packet capture into IPFIX sent to 127.0.0.1:port.
func runSoftflowd(t *testing.T, capture string, port int) {
	t.Helper()
	out, err := exec.Command("softflowd", "-r", capture, "-v", "10", "-n", fmt.Sprintf("127.0.0.1:%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("softflowd: %v\n%s", err, out)
	}
}

// nfcapd is a running nfcapd writing to its own directory.
type nfcapd struct {
	cmd    *exec.Cmd
	dir    string
	out    *lockedBuffer
	exited chan struct{}
}

func startNfcapd(t *testing.T, port int) *nfcapd {
	t.Helper()
	n := &nfcapd{dir: t.TempDir(), out: &lockedBuffer{}, exited: make(chan struct{})}
	n.cmd = exec.Command("nfcapd", "-b", "127.0.0.1", "-p", strconv.Itoa(port), "-w", n.dir)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nfcapd: %v", err)
	}
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		select {
		case <-n.exited:
		default:
			n.cmd.Process.Kill()
			<-n.exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(n.out.String(), "Startup") {
		if time.Now().After(deadline) {
			t.Fatalf("nfcapd did not start:\n%s", n.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// stop ends nfcapd with SIGTERM, which makes it write its current file.
func (n *nfcapd) stop(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("nfcapd did not exit on SIGTERM")
	}
}

// nfFlow is one flow as nfdump prints it: times to the millisecond (UTC),
// protocol, full addresses, ports (ICMP: type.code), packets, bytes.
type nfFlow struct {
	Start, End, Proto, SrcAddr, SrcPort, DstAddr, DstPort, Packets, Bytes string
}

func (f nfFlow) String() string {
	return fmt.Sprintf("%s..%s proto=%s %s:%s→%s:%s packets=%s bytes=%s", f.Start, f.End, f.Proto,
		f.SrcAddr, f.SrcPort, f.DstAddr, f.DstPort, f.Packets, f.Bytes)
}

// flows lists what nfcapd stored, with nfdump's own formatting (TZ=UTC).
func (n *nfcapd) flows(t *testing.T) []nfFlow {
	t.Helper()
	cmd := exec.Command("nfdump", "-6", "-N", "-q", "-R", n.dir, "-o", "fmt:%ts|%te|%pr|%sa|%sp|%da|%dp|%pkt|%byt")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	var fl []nfFlow
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 9 {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		fl = append(fl, nfFlow{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]})
	}
	slices.SortFunc(fl, func(a, b nfFlow) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return fl
}

// udpRecorder receives datagrams on a loopback port and keeps them, to
// check what weir sends byte by byte or to write them as a capture.
type udpRecorder struct {
	conn *net.UDPConn
	mu   sync.Mutex
	msgs [][]byte
	from []*net.UDPAddr
	done chan struct{}
}

func newUDPRecorder(t *testing.T) *udpRecorder {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(8 << 20)
	r := &udpRecorder{conn: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, bytes.Clone(buf[:n]))
			r.from = append(r.from, from)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-r.done })
	return r
}

func (r *udpRecorder) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *udpRecorder) messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// writePcap writes the recorded datagrams as a raw-IPv4 capture (link type
// 101), addressed from their sender to the recorder's port, for tshark.
func (r *udpRecorder) writePcap(t *testing.T, path string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var buf bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 101)
	buf.Write(hdr)
	now := time.Now()
	for i, m := range r.msgs {
		pkt := make([]byte, 28, 28+len(m))
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(28+len(m)))
		pkt[8], pkt[9] = 64, 17
		copy(pkt[12:], r.from[i].IP.To4())
		copy(pkt[16:], []byte{127, 0, 0, 1})
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(pkt[j:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(pkt[10:], ^uint16(sum))
		binary.BigEndian.PutUint16(pkt[20:], uint16(r.from[i].Port))
		binary.BigEndian.PutUint16(pkt[22:], uint16(r.port()))
		binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(m)))
		pkt = append(pkt, m...)
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(now.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
		buf.Write(rec)
		buf.Write(pkt)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// jsonlLines returns the non-empty lines of a JSONL file.
func jsonlLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
