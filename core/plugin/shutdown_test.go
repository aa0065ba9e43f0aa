package plugin_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugin"
)

func TestAwaitShutdown(t *testing.T) {
	t.Run("goroutines finish in time", func(t *testing.T) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); time.Sleep(5 * time.Millisecond) }()
		abandoned := false
		if err := plugin.AwaitShutdown(context.Background(), &wg, func() { abandoned = true }); err != nil || abandoned {
			t.Fatalf("err %v, abandoned %v; want nil, false", err, abandoned)
		}
	})
	t.Run("deadline abandons, then waits", func(t *testing.T) {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		finished := false
		wg.Add(1)
		go func() { defer wg.Done(); <-stop; finished = true }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		err := plugin.AwaitShutdown(ctx, &wg, func() { close(stop) })
		if !errors.Is(err, context.DeadlineExceeded) || !finished {
			t.Fatalf("err %v, goroutine finished %v; want DeadlineExceeded, true", err, finished)
		}
	})
}

func TestAwaitShutdownWithoutAbandon(t *testing.T) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); <-stop }()
	defer func() { close(stop); wg.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := plugin.AwaitShutdown(ctx, &wg, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded while the goroutine still runs", err)
	}
}
