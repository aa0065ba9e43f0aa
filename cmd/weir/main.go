// Command weir runs Weir pipelines: `weir run`, `weir validate`,
// `weir reload`, `weir bench`, `weir plugins` and `weir version`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weir-flow/weir/core/version"
	_ "github.com/weir-flow/weir/plugins/all"
)

// exitError carries a process exit code through cobra.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// globals are the root command's flags and the process's signals, handed to
// the subcommands that use them.
type globals struct {
	logLevel, logFormat string
	// hup receives SIGHUP: `weir run` reloads on it; other commands ignore
	// it (it no longer kills the process).
	hup chan os.Signal
}

func main() {
	g := &globals{hup: make(chan os.Signal, 1)}
	// Registered before anything else, so a SIGHUP during start-up (what
	// `systemctl reload` sends) never kills the process.
	signal.Notify(g.hup, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go forceExitOnSecondSignal(ctx)
	root := newRootCmd(g)
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

func newRootCmd(g *globals) *cobra.Command {
	if g == nil {
		g = &globals{hup: make(chan os.Signal, 1)}
	}
	root := &cobra.Command{
		Use:           "weir",
		Short:         "Weir runs pipelines of plugins over IPFIX flow records",
		Long:          "Weir runs a declarative pipeline over IPFIX flow records: source → filter → enrich → aggregate | proxy → export.\nEvery stage is a plugin: built-in Go, sandboxed WASM, or an out-of-process RPC plugin.",
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn or error (overrides log.level)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "", "log format: text or json (overrides log.format)")
	root.AddCommand(newRunCmd(g), newValidateCmd(), newReloadCmd(), newPluginsCmd(), newBenchCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version.Get().String())
			return nil
		},
	}
}
