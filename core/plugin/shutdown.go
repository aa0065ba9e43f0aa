package plugin

import (
	"context"
	"sync"
)

// AwaitShutdown is the end of a Shutdown: it waits for the plugin's
// goroutines (wg). If ctx ends first, it calls abandon — which must make
// them return, typically by cancelling the context they emit with, so
// that records the pipeline no longer takes are counted as lost — waits
// for them again and returns ctx's error. With a nil abandon it returns
// ctx's error at once, leaving them running. Nil when they finished in
// time.
func AwaitShutdown(ctx context.Context, wg *sync.WaitGroup, abandon func()) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if abandon != nil {
			abandon()
			<-done
		}
		return ctx.Err()
	}
}
