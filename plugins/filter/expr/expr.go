package expr

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// ID is the plugin's registry ID.
const ID = "filter.expr"

// ExampleYAML is example.yaml, a complete pipeline using the plugin.
//
//go:embed example.yaml
var ExampleYAML string

func init() {
	plugin.Register(plugin.Info{
		ID:        ID,
		Summary:   "keep records for which an expr-language expression over IE names is true",
		NewConfig: plugin.Defaults(DefaultConfig),
		New:       plugin.Constructor(New),
	})
}

// Filter keeps the records for which its expression is true. It never
// modifies a record and is safe for concurrent use: each goroutine borrows
// its own evaluator.
type Filter struct {
	prog     *program
	keepErr  bool
	pool     sync.Pool // *evaluator
	errors   prometheus.Counter
	log      *slog.Logger
	logFirst sync.Once
}

// New compiles cfg.Expression and returns the filter.
func New(cfg *Config, set plugin.Settings) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", ID, err)
	}
	prog, err := compile(cfg.Expression)
	if err != nil {
		return nil, fmt.Errorf("%s: expression: %w", ID, err)
	}
	f := &Filter{
		prog:    prog,
		keepErr: cfg.OnError != "drop",
		log:     set.Logger,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weir_filter_expr_evaluation_errors_total",
			Help: "Records whose expression evaluation failed (kept or dropped per on_error).",
		}),
	}
	f.pool.New = func() any { return prog.newEvaluator() }
	if err := set.Metrics.Register(f.errors); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("%s: register metrics: %w", ID, err)
		}
		f.errors = are.ExistingCollector.(prometheus.Counter)
	}
	return f, nil
}

func (f *Filter) Start(context.Context) error    { return nil }
func (f *Filter) Shutdown(context.Context) error { return nil }

// Process removes the records for which the expression is false, keeping
// the order of the others. A record whose evaluation fails is kept or
// dropped as on_error says, and counted.
func (f *Filter) Process(_ context.Context, b *flow.Batch) error {
	ev := f.pool.Get().(*evaluator)
	failed := 0
	b.Retain(func(r *flow.Record) bool {
		keep, err := ev.eval(f.prog, r)
		if err != nil {
			failed++
			f.logFirst.Do(func() {
				f.log.Warn("expression evaluation failed (further failures are only counted)", "error", err)
			})
			return f.keepErr
		}
		return keep
	})
	f.pool.Put(ev)
	if failed > 0 {
		f.errors.Add(float64(failed))
	}
	return nil
}

var _ plugin.Processor = (*Filter)(nil)
