package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/internal/bench"
)

// benchFlags are `weir bench`'s flags.
type benchFlags struct {
	config, compare      string
	records              int
	duration             time.Duration
	input, synthetic     string
	seed                 uint64
	batch, rounds        int
	warmup, allocBatches int
	withIO, json         bool
	plot, writePods      string
	noProgress           bool
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench [-c] [FILE]",
		Short: "Benchmark a pipeline's processor chain in-process",
		Long: `Run the configured processors in-process on a realistic input and report, per stage and for the
whole chain: records in/out, records/s, ns/record (mean, and p50/p99 over batches), allocations/record,
and peak memory (RSS and Go heap).

The config is validated first as 'weir validate' does (sources and exporters may be absent); a chain that
would not run is refused.
Sources are replaced by an in-memory feeder and exporters by a counting sink; --with-io adds the
configured exporters after the processors (the input still comes from the feeder). One goroutine runs
the chain, whatever pipeline.workers says.

Input is a seeded synthetic set of Antrea-like flow records (default), or the IPFIX records of a
capture (--input, read as source.pcap reads it). --compare runs a second config alternately on the
same input for --rounds rounds and prints the cost ratio with its spread.

Examples:
  weir bench -c configs/bench/protocol.yaml
  weir bench -c configs/bench/protocol.yaml --compare configs/bench/wasm.yaml --batch 64
  weir bench -c pipeline.yaml --input capture.pcap --records 1000000 --json
  weir bench -c pipeline.yaml --synthetic "flows=50000,tcp=1,ipv6=0.5,labels=10" --plot stages.svg`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if f.config, err = configArg(f.config, args); err != nil {
				return err
			}
			if f.rounds == 0 {
				f.rounds = 1
				if f.compare != "" {
					f.rounds = 5
				}
			}
			return runBench(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.config, "config", "c", "", "pipeline config file (YAML); default: the embedded one")
	fl.StringVar(&f.compare, "compare", "", "second config to run alternately on the same input; prints other/base cost ratio")
	fl.IntVar(&f.records, "records", 0, "records to feed per run, cycling through the input (default: the input once)")
	fl.DurationVar(&f.duration, "duration", 0, "feed for this long per run instead of a record count (e.g. 10s)")
	fl.StringVar(&f.input, "input", "", "IPFIX capture (pcap/pcapng) to decode and feed instead of synthetic records")
	fl.StringVar(&f.synthetic, "synthetic", "", `synthetic input spec, e.g. "flows=100000,tcp=0.7,udp=0.2,icmp=0.1,ipv6=0.3,antrea=true,labels=5"`+
		"\n(also external, pods, nodes, namespaces, services; default: that example)")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of the synthetic input")
	fl.IntVar(&f.batch, "batch", 0, "records per batch (default: pipeline.batch.size)")
	fl.IntVar(&f.rounds, "rounds", 0, "runs of each chain (0: 5 with --compare, else 1)")
	fl.IntVar(&f.warmup, "warmup", 0, "records fed before measuring (0: automatic, -1: none)")
	fl.IntVar(&f.allocBatches, "alloc-batches", 0, "batches of the allocation-counting pass (0: 200, -1: skip)")
	fl.BoolVar(&f.withIO, "with-io", false, "include the configured exporters after the processors")
	fl.BoolVar(&f.json, "json", false, "print machine-readable JSON instead of tables")
	fl.StringVar(&f.plot, "plot", "", "write a bar chart of per-stage ns/record to this file (.svg, .png, .pdf)")
	fl.StringVar(&f.writePods, "write-pods", "", "write the synthetic input's Pods, Nodes and Services as a Kubernetes\nv1 List (JSON, for enrich.podlabels' file backend) to this file and exit")
	fl.BoolVar(&f.noProgress, "no-progress", false, "no progress bar, even on a terminal")
	return cmd
}

func runBench(ctx context.Context, stdout, stderr io.Writer, f benchFlags) error {
	if f.input != "" && f.synthetic != "" {
		return errors.New("--input and --synthetic: give one or the other")
	}
	if f.records < 0 || f.duration < 0 || f.batch < 0 || f.rounds < 1 {
		return fmt.Errorf("--records, --duration and --batch must not be negative and --rounds must be at least 1 (got %d, %v, %d, %d)",
			f.records, f.duration, f.batch, f.rounds)
	}
	if f.writePods != "" {
		return writePods(stdout, f)
	}
	// Refuse what `weir validate` refuses, with the same message.
	cfg, err := loadConfig(f.config)
	if err != nil {
		return err
	}
	if err := cfg.Check(ctx); err != nil {
		return err
	}
	var other *config.Config
	if f.compare != "" {
		if other, err = loadConfig(f.compare); err != nil {
			return err
		}
		if err := other.Check(ctx); err != nil {
			return err
		}
	}

	in, err := benchInput(ctx, f)
	if err != nil {
		return err
	}
	level := "warn" // plugins' start-up chatter would garble the tables
	if cfg.Log.Level == "debug" {
		level = "debug"
	}
	log := newLogger(config.Log{Level: level, Format: cfg.Log.Format}, new(slog.LevelVar))

	newChain := func(c *config.Config, path string) (*bench.Chain, error) {
		if path == "" {
			path = "embedded default config"
		}
		return bench.NewChain(ctx, c, bench.ChainOptions{Name: path, BatchSize: f.batch, WithIO: f.withIO, Logger: log.With("config", path)})
	}
	base, err := newChain(cfg, f.config)
	if err != nil {
		return err
	}
	defer closeChain(base, stderr)
	chains := 1
	var otherChain *bench.Chain
	if other != nil {
		if otherChain, err = newChain(other, f.compare); err != nil {
			return err
		}
		defer closeChain(otherChain, stderr)
		chains = 2
	}

	bar := newBenchBar(stdout, stderr, f, in, chains)
	opts := bench.RunOptions{Records: f.records, Duration: f.duration, Warmup: f.warmup, AllocBatches: f.allocBatches}
	host := bench.HostInfo()
	report := &bench.Report{Host: &host}
	if otherChain != nil {
		opts.Progress = bar.progress
		cmp, err := bench.Compare(ctx, base, otherChain, in, f.rounds, opts, func(round int) {
			bar.next(fmt.Sprintf("round %d/%d", round, f.rounds))
		})
		bar.finish()
		if err != nil {
			return err
		}
		report.Comparison = cmp
	} else {
		opts.Progress = bar.progress
		for r := 1; r <= f.rounds; r++ {
			bar.next(fmt.Sprintf("round %d/%d %s", r, f.rounds, base.Name()))
			o := opts
			if r > 1 {
				o.Warmup = -1
			}
			res, err := base.Run(ctx, in, o)
			if err != nil {
				bar.finish()
				return err
			}
			report.Runs = append(report.Runs, res)
		}
		bar.finish()
		if len(report.Runs) > 1 {
			xs := make([]float64, len(report.Runs))
			for i, r := range report.Runs {
				xs[i] = r.Total.NsPerRecord
			}
			sp := bench.NewSpread(xs)
			report.RunsNsPerRecord = &sp
		}
	}
	if f.plot != "" {
		if err := report.Plot(f.plot); err != nil {
			return err
		}
	}
	if f.json {
		return report.WriteJSON(stdout)
	}
	if err := report.WriteText(stdout); err != nil {
		return err
	}
	if f.plot != "" {
		fmt.Fprintf(stdout, "plot      %s\n", f.plot)
	}
	return nil
}

// benchInput reads the capture or generates the synthetic records.
func benchInput(ctx context.Context, f benchFlags) (*bench.Input, error) {
	if f.input != "" {
		return bench.ReadCapture(ctx, f.input)
	}
	spec, err := bench.ParseSpec(f.synthetic)
	if err != nil {
		return nil, fmt.Errorf("--synthetic: %w", err)
	}
	return bench.Generate(spec, f.seed), nil
}

func writePods(stdout io.Writer, f benchFlags) error {
	if f.input != "" {
		return errors.New("--write-pods describes the synthetic input's cluster; it does not go with --input")
	}
	spec, err := bench.ParseSpec(f.synthetic)
	if err != nil {
		return fmt.Errorf("--synthetic: %w", err)
	}
	file, err := os.Create(f.writePods)
	if err != nil {
		return fmt.Errorf("--write-pods: %w", err)
	}
	if err := bench.WritePods(file, spec, f.seed); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("--write-pods: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d Pods, %d Nodes and up to %d Services of synthetic %s seed=%d\n",
		f.writePods, spec.Pods, spec.Nodes, spec.Services, spec, f.seed)
	return nil
}

func closeChain(c *bench.Chain, stderr io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		fmt.Fprintf(stderr, "weir bench: %s: %v\n", c.Name(), err)
	}
}

// benchBar is the progress bar over the records (or milliseconds with
// --duration) of every round, on stderr, shown only when stdout is a
// terminal.
type benchBar struct {
	bar      *progressbar.ProgressBar
	duration bool
	perRun   int64
	runs     int64 // runs started
}

func newBenchBar(stdout, stderr io.Writer, f benchFlags, in *bench.Input, chains int) *benchBar {
	b := &benchBar{duration: f.duration > 0}
	if f.noProgress || !isTerminal(stdout) {
		return b
	}
	b.perRun = int64(f.records)
	if b.perRun == 0 {
		b.perRun = int64(in.Len())
	}
	if b.duration {
		b.perRun = f.duration.Milliseconds()
	}
	// A comparison round feeds both chains together.
	b.perRun *= int64(chains)
	b.bar = progressbar.NewOptions64(b.perRun*int64(f.rounds),
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)
	return b
}

func (b *benchBar) next(desc string) {
	b.runs++
	if b.bar != nil {
		b.bar.Describe(desc)
		_ = b.bar.Set64((b.runs - 1) * b.perRun)
	}
}

func (b *benchBar) progress(records uint64, elapsed time.Duration) {
	if b.bar == nil {
		return
	}
	done := int64(records)
	if b.duration {
		done = elapsed.Milliseconds()
	}
	_ = b.bar.Set64((b.runs-1)*b.perRun + min(done, b.perRun))
}

func (b *benchBar) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
		_ = b.bar.Clear()
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}
