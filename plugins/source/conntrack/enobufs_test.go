package conntrack

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugintest"
)

// syncBuffer is a bytes.Buffer safe for the source's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestEventsLostResync: with the smallest event socket buffer, a burst of
// new connections overflows it (netlink ENOBUFS): the overflow is counted
// and logged, and a dump follows at once (polls are an hour apart) that
// brings every connection of the burst into the store.
func TestEventsLostResync(t *testing.T) {
	tp := newTopo(t, true)
	cfg := DefaultConfig()
	cfg.NetNS = tp.pathB
	cfg.PollInterval = time.Hour // only Start's dump, and resyncs
	cfg.ActiveTimeout = time.Hour
	cfg.IdleTimeout = time.Hour
	cfg.Events = true
	cfg.EventBuffer = 1 // the kernel's minimum
	set := nopSettings()
	logs := &syncBuffer{}
	set.Logger = slog.New(slog.NewTextHandler(logs, nil))
	s, err := New(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), plugintest.NewEmitter(64)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	if p := s.Stats().Polls; p != 1 {
		t.Fatalf("%d polls after Start, want 1", p)
	}

	// A burst of UDP "connections" from a to b: one datagram to each of n
	// ports, each a new conntrack entry in b (and a New event).
	const n = 20000
	err = inNetNS(tp.pathA, func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			dst := &net.UDPAddr{IP: tp.b4.AsSlice(), Port: 20000 + i}
			if _, err := c.WriteToUDP([]byte("burst"), dst); err != nil {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an event socket overflow", func() bool { return s.Stats().EventsLost > 0 })
	waitFor(t, "the resync dump", func() bool { return s.Stats().Polls >= 2 })
	waitFor(t, "every connection of the burst in the store", func() bool { return s.Stats().Connections >= n })
	st := s.Stats()
	t.Logf("events received %d, overflows %d, polls %d, connections %d", st.Events, st.EventsLost, st.Polls, st.Connections)
	if !strings.Contains(logs.String(), "ENOBUFS") {
		t.Errorf("overflow not logged:\n%s", logs.String())
	}
}
