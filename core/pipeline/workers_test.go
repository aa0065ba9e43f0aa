package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
)

// serial is a no-op processor.
type serial struct{}

func (serial) Start(context.Context) error                { return nil }
func (serial) Shutdown(context.Context) error             { return nil }
func (serial) Process(context.Context, *flow.Batch) error { return nil }

// concurrent is a no-op plugin.Concurrent processor with InFlight n.
type concurrent struct {
	serial
	n int
}

func (c concurrent) InFlight() int { return c.n }

func TestWorkerCount(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	tests := []struct {
		name    string
		workers int
		procs   []plugin.Processor
		want    int
		warn    string // substring of the expected warning; "" for none
	}{
		{"default, no concurrent processor", 0, []plugin.Processor{serial{}}, procs, ""},
		{"default reaches the largest in_flight", 0, []plugin.Processor{concurrent{n: procs + 3}, concurrent{n: procs + 5}}, procs + 5, ""},
		{"default never below GOMAXPROCS", 0, []plugin.Processor{concurrent{n: 1}}, procs, ""},
		{"explicit wins over in_flight, with a warning", 1, []plugin.Processor{concurrent{n: 5}}, 1, "stage=processors[0] workers=1 in_flight=5"},
		{"explicit at or above in_flight, no warning", 8, []plugin.Processor{concurrent{n: 5}, concurrent{n: 8}}, 8, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			p := &Pipeline{
				cfg: &config.Config{Pipeline: config.Pipeline{Workers: tt.workers}},
				log: slog.New(slog.NewTextHandler(&logs, nil)),
			}
			var procs []*processor
			for i, pr := range tt.procs {
				procs = append(procs, &processor{Processor: pr, stage: stage{name: fmt.Sprintf("processors[%d]", i)}})
			}
			if got := p.workerCount(procs); got != tt.want {
				t.Errorf("workerCount() = %d, want %d", got, tt.want)
			}
			switch got := logs.String(); {
			case tt.warn == "" && got != "":
				t.Errorf("unexpected log: %s", got)
			case tt.warn != "" && (!strings.Contains(got, "level=WARN") || !strings.Contains(got, tt.warn)):
				t.Errorf("log %q does not warn with %q", got, tt.warn)
			}
		})
	}
}
