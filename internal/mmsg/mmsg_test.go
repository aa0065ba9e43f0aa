package mmsg_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/weir-flow/weir/internal/mmsg"
)

func pair(t *testing.T, network, addr string) (recv, send *net.UDPConn) {
	t.Helper()
	recv, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	send, err = net.DialUDP(network, nil, recv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Close() })
	return recv, send
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, network, addr string
		count, batch        int
	}{
		{"ipv4, fewer than a batch", "udp4", "127.0.0.1:0", 5, 16},
		{"ipv4, several batches", "udp4", "127.0.0.1:0", 100, 16},
		{"ipv6", "udp6", "[::1]:0", 40, 8},
		{"batch of one", "udp4", "127.0.0.1:0", 3, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv, send := pair(t, tc.network, tc.addr)
			w, err := mmsg.NewWriter(send)
			if err != nil {
				t.Fatal(err)
			}
			var msgs [][]byte
			for i := range tc.count {
				msgs = append(msgs, fmt.Appendf(nil, "datagram %d %s", i, bytes.Repeat([]byte{'x'}, i)))
			}
			if n, err := w.Write(msgs); n != len(msgs) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(msgs))
			}
			r, err := mmsg.NewReader(recv, tc.batch, 2048, 64)
			if err != nil {
				t.Fatal(err)
			}
			want := send.LocalAddr().(*net.UDPAddr).AddrPort()
			want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
			got := 0
			_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
			for got < len(msgs) {
				n, err := r.Read()
				if err != nil {
					t.Fatalf("Read after %d datagrams: %v", got, err)
				}
				if n < 1 || n > tc.batch {
					t.Fatalf("Read = %d datagrams, want 1..%d", n, tc.batch)
				}
				for i := range n {
					data, _, from := r.Datagram(i)
					if !bytes.Equal(data, msgs[got]) {
						t.Fatalf("datagram %d = %q, want %q", got, data, msgs[got])
					}
					if from != want {
						t.Errorf("datagram %d from %v, want %v", got, from, want)
					}
					if r.Truncated(i) {
						t.Errorf("datagram %d reported truncated", got)
					}
					got++
				}
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	recv, send := pair(t, "udp4", "127.0.0.1:0")
	if _, err := send.Write(bytes.Repeat([]byte{1}, 100)); err != nil {
		t.Fatal(err)
	}
	r, _ := mmsg.NewReader(recv, 4, 10, 0)
	_ = recv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := r.Read()
	if n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if data, _, _ := r.Datagram(0); len(data) != 10 || !r.Truncated(0) {
		t.Errorf("got %d bytes, truncated %v; want 10, true", len(data), r.Truncated(0))
	}
}

func TestDeadlineAndClose(t *testing.T) {
	recv, _ := pair(t, "udp4", "127.0.0.1:0")
	r, _ := mmsg.NewReader(recv, 4, 100, 0)
	_ = recv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := r.Read()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	done := make(chan error, 1)
	_ = recv.SetReadDeadline(time.Time{})
	go func() { _, err := r.Read(); done <- err }()
	time.Sleep(10 * time.Millisecond)
	recv.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed socket: %v, want net.ErrClosed", err)
	}
}

func TestWriteRefused(t *testing.T) {
	recv, send := pair(t, "udp4", "127.0.0.1:0")
	recv.Close() // port unreachable: the kernel reports ECONNREFUSED on a later send
	w, _ := mmsg.NewWriter(send)
	var refused bool
	for range 10 {
		n, err := w.Write([][]byte{[]byte("a"), []byte("b")})
		if err != nil {
			if n > 2 {
				t.Fatalf("Write = %d with an error", n)
			}
			refused = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !refused {
		t.Error("no error writing to a closed port")
	}
}

func TestNoAllocs(t *testing.T) {
	recv, send := pair(t, "udp4", "127.0.0.1:0")
	w, _ := mmsg.NewWriter(send)
	r, _ := mmsg.NewReader(recv, 8, 256, 64)
	msgs := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
	allocs := testing.AllocsPerRun(50, func() {
		if n, err := w.Write(msgs); n != 3 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for got := 0; got < 3; {
			n, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				_, _, _ = r.Datagram(i)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per round trip, want 0", allocs)
	}
}
