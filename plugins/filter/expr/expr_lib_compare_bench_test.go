//go:build libcompare

// The comparison that chose expr-lang over cel-go for filter.expr. It needs
// cel-go, which Weir does not otherwise depend on, so it only builds with
// the libcompare tag:
//
//	go get github.com/google/cel-go@v0.31.0
//	go test -tags libcompare -run '^$' -bench LibCompare -cpu 1 ./plugins/filter/expr/

package expr

import (
	"testing"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/internal/cputime"
)

const compareExpression = `protocolIdentifier == 6 && destinationTransportPort in [80, 443] && sourcePodNamespace != "kube-system"`

func compareRecords() []*flow.Record {
	b := plugintest.MixedBatch(flow.DefaultBatchSize)
	for i, r := range b.Records {
		ns := "default"
		if i%3 == 0 {
			ns = "kube-system"
		}
		r.SetString(flow.SourcePodNamespace, ns)
	}
	return b.Records
}

// wantKept is how many of compareRecords the expression keeps, so every
// variant is checked to compute the same thing.
func wantKept(b *testing.B, recs []*flow.Record) int {
	n := 0
	for _, r := range recs {
		if r.ProtocolIdentifier == 6 && (r.DestinationTransportPort == 80 || r.DestinationTransportPort == 443) && r.SourcePodNamespace != "kube-system" {
			n++
		}
	}
	if n == 0 {
		b.Fatal("no record matches")
	}
	return n
}

func runCompare(b *testing.B, recs []*flow.Record, eval func(*flow.Record) bool) {
	want := wantKept(b, recs)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Start()
	for i := 0; i < b.N; i++ {
		kept := 0
		for _, r := range recs {
			if eval(r) {
				kept++
			}
		}
		if kept != want {
			b.Fatalf("kept %d, want %d", kept, want)
		}
	}
	cpu.ReportPer(b, b.N*len(recs), "record")
}

// structEnv is expr's documented way to type an environment.
type structEnv struct {
	ProtocolIdentifier       int    `expr:"protocolIdentifier"`
	DestinationTransportPort int    `expr:"destinationTransportPort"`
	SourcePodNamespace       string `expr:"sourcePodNamespace"`
}

// celActivation resolves CEL variables from a record.
type celActivation struct{ r *flow.Record }

func (a *celActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "protocolIdentifier":
		return types.Int(a.r.ProtocolIdentifier), true
	case "destinationTransportPort":
		return types.Int(a.r.DestinationTransportPort), true
	case "sourcePodNamespace":
		return types.String(a.r.SourcePodNamespace), true
	}
	return nil, false
}

func (a *celActivation) Parent() interpreter.Activation { return nil }

func BenchmarkLibCompare(b *testing.B) {
	recs := compareRecords()

	b.Run("expr/struct_env", func(b *testing.B) {
		prog, err := exprlang.Compile(compareExpression, exprlang.Env(structEnv{}), exprlang.AsBool())
		if err != nil {
			b.Fatal(err)
		}
		var (
			m   vm.VM
			env structEnv
		)
		runCompare(b, recs, func(r *flow.Record) bool {
			env = structEnv{int(r.ProtocolIdentifier), int(r.DestinationTransportPort), r.SourcePodNamespace}
			out, err := m.Run(prog, &env)
			return err == nil && out.(bool)
		})
	})

	b.Run("expr/map_env", func(b *testing.B) {
		env := map[string]any{"protocolIdentifier": 0, "destinationTransportPort": 0, "sourcePodNamespace": ""}
		prog, err := exprlang.Compile(compareExpression, exprlang.Env(env), exprlang.AsBool())
		if err != nil {
			b.Fatal(err)
		}
		var m vm.VM
		runCompare(b, recs, func(r *flow.Record) bool {
			env["protocolIdentifier"] = int(r.ProtocolIdentifier)
			env["destinationTransportPort"] = int(r.DestinationTransportPort)
			env["sourcePodNamespace"] = r.SourcePodNamespace
			out, err := m.Run(prog, env)
			return err == nil && out.(bool)
		})
	})

	b.Run("expr/weir_cells", func(b *testing.B) {
		p, err := compile(compareExpression)
		if err != nil {
			b.Fatal(err)
		}
		ev := p.newEvaluator()
		runCompare(b, recs, func(r *flow.Record) bool {
			keep, err := ev.eval(p, r)
			return err == nil && keep
		})
	})

	b.Run("cel/activation", func(b *testing.B) {
		env, err := cel.NewEnv(
			cel.Variable("protocolIdentifier", cel.IntType),
			cel.Variable("destinationTransportPort", cel.IntType),
			cel.Variable("sourcePodNamespace", cel.StringType),
		)
		if err != nil {
			b.Fatal(err)
		}
		ast, iss := env.Compile(compareExpression)
		if iss.Err() != nil {
			b.Fatal(iss.Err())
		}
		prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			b.Fatal(err)
		}
		act := &celActivation{}
		runCompare(b, recs, func(r *flow.Record) bool {
			act.r = r
			out, _, err := prg.Eval(act)
			return err == nil && out == types.True
		})
	})
}
