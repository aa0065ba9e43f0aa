package rpcwire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
)

// echoServer answers a batch with its own bytes reversed, after sleeping
// for "slow" batches; "fail" batches return an error.
type echoServer struct{}

func (echoServer) Init(_ context.Context, req []byte) ([]byte, error) { return req, nil }

func (echoServer) Process(ctx context.Context, batch []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(batch, []byte("slow")):
		time.Sleep(100 * time.Millisecond)
	case bytes.HasPrefix(batch, []byte("hang")):
		<-ctx.Done()
	case bytes.Equal(batch, []byte("fail")):
		return nil, errors.New("no such table")
	}
	out := bytes.Clone(batch)
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// startStream serves echoServer on a unix socket and opens a Stream to it.
func startStream(t *testing.T) (*Stream, *grpc.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	Register(srv, echoServer{})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	conn, err := grpc.NewClient("unix://"+path, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewClient(conn, nil).OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		conn.Close()
		srv.Stop()
		<-done
	})
	return s, srv
}

func call(t *testing.T, s *Stream, ctx context.Context, payload string) ([]byte, error) {
	t.Helper()
	a, err := s.Call(ctx, append(make([]byte, FrameHeadroom), payload...))
	defer a.Release()
	return bytes.Clone(a.Data), err
}

// TestStreamMatchesAnswers sends batches concurrently, some slow, and
// checks each call gets the answer to its own batch.
func TestStreamMatchesAnswers(t *testing.T) {
	s, _ := startStream(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := strings.Repeat("ab", i) + "x"
			if i%4 == 0 {
				payload = "slow" + payload
			}
			rep, err := call(t, s, context.Background(), payload)
			if err != nil {
				t.Error(err)
				return
			}
			want, _ := echoServer{}.Process(context.Background(), []byte("x"+payload))
			want = want[:len(want)-1]
			if !bytes.Equal(rep, want) {
				t.Errorf("batch %d: answer %q, want the reverse of %q", i, rep, payload)
			}
		}()
	}
	wg.Wait()
}

func TestStreamPluginError(t *testing.T) {
	s, _ := startStream(t)
	rep, err := call(t, s, context.Background(), "fail")
	if err != nil {
		t.Fatal(err)
	}
	var pe *abi.PluginError
	if _, err := abi.Apply(flow.NewBatch(0), rep, new(abi.Scratch)); !errors.As(err, &pe) || pe.Message != "no such table" {
		t.Fatalf("got %v, want the plugin's error", err)
	}
	// The stream goes on.
	if rep, err := call(t, s, context.Background(), "ok"); err != nil || string(rep) != "ko" {
		t.Fatalf("after an error: %q, %v", rep, err)
	}
}

// TestStreamContext checks that a call gives up when its context ends and
// that a late answer does not reach the next call.
func TestStreamContext(t *testing.T) {
	s, _ := startStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := call(t, s, ctx, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if rep, err := call(t, s, context.Background(), "ok"); err != nil || string(rep) != "ko" {
		t.Fatalf("next call: %q, %v", rep, err)
	}
	if _, err := s.Call(context.Background(), nil); err == nil {
		t.Error("a buffer without headroom was accepted")
	}
}

// TestStreamEnd checks that calls out and later calls fail when the
// stream ends, and that Done and Err report it.
func TestStreamEnd(t *testing.T) {
	s, srv := startStream(t)
	errc := make(chan error, 1)
	go func() {
		_, err := call(t, s, context.Background(), "hang")
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	srv.Stop()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a call out when the stream ended succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call out when the stream ended still waits")
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if s.Err() == nil {
		t.Error("Err is nil after the end")
	}
	if _, err := call(t, s, context.Background(), "ok"); err == nil {
		t.Error("a call after the end succeeded")
	}
}
