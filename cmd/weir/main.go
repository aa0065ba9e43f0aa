// Command weir runs Weir pipelines: `weir run`, `weir validate`,
// `weir bench` and `weir plugins`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	_ "github.com/weir-flow/weir/plugins/all"
)

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go forceExitOnSecondSignal(ctx)
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "weir:", err)
		os.Exit(1)
	}
}

// forceExitOnSecondSignal exits at once, with status 130, on a SIGINT or
// SIGTERM that arrives after the first one started a graceful shutdown: an
// operator must be able to stop a shutdown stuck on a dead collector.
func forceExitOnSecondSignal(ctx context.Context) {
	<-ctx.Done()
	// Listen only once the first signal has been handled: registered
	// earlier, this channel also receives the first signal, sometimes
	// after ctx is done, and took it for a second one.
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	<-second
	fmt.Fprintln(os.Stderr, "weir: second signal: exiting without finishing the shutdown")
	os.Exit(130)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "weir",
		Short:         "Weir runs pipelines of plugins over IPFIX flow records",
		Long:          "Weir runs a declarative pipeline over IPFIX flow records: source → filter → enrich → aggregate | proxy → export.\nEvery stage is a plugin: built-in Go, sandboxed WASM, or an out-of-process RPC plugin.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newValidateCmd(), newPluginsCmd(), newBenchCmd())
	return root
}
