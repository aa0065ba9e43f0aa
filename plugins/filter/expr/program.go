package expr

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	exprlang "github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/weir-flow/weir/core/flow"
)

// program is a compiled expression and the variables it reads.
type program struct {
	prog  *vm.Program
	vars  []variable     // sorted by name
	funcs map[string]any // helper functions it calls
}

// identifiers collects the names an expression reads.
type identifiers map[string]bool

func (ids identifiers) Visit(node *ast.Node) {
	if n, ok := (*node).(*ast.IdentifierNode); ok {
		ids[n.Value] = true
	}
}

// functions are the helpers expressions may call besides expr's built-ins.
// They are typed variables of the environment rather than expr.Function
// options: expr calls a variable of a common func type directly, where an
// expr.Function call allocates its argument slice.
var functions = map[string]any{
	"inCIDR": inCIDR,
}

// inCIDR reports whether addr (text form, as the address variables hold it)
// is in prefix ("10.0.0.0/8", "fd00::/8"). Malformed input is false.
func inCIDR(addr, prefix string) bool {
	if addr == "" || prefix == "" {
		return false // the common absent address, without an error value
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return false
	}
	return p.Contains(a)
}

// compile parses and type-checks source as a boolean expression over IE
// names. It is pure. Errors name the line and column (1-based).
func compile(source string) (*program, error) {
	if strings.TrimSpace(source) == "" {
		return nil, errors.New("missing")
	}
	tree, err := parser.Parse(source)
	if err != nil {
		return nil, positioned(err)
	}
	ids := identifiers{}
	ast.Walk(&tree.Node, ids)
	if ids["$env"] {
		return nil, errors.New("$env is not supported; name IEs directly")
	}
	env := map[string]any{}
	var vars []variable
	funcs := map[string]any{}
	for name := range ids {
		if fn, ok := functions[name]; ok {
			env[name], funcs[name] = fn, fn
		} else if v, ok := lookupVariable(name); ok {
			env[name] = v.sample
			vars = append(vars, v)
		}
	}
	sort.Slice(vars, func(i, j int) bool { return vars[i].name < vars[j].name })
	prog, err := exprlang.Compile(source, exprlang.Env(env), exprlang.AsBool())
	if err != nil {
		return nil, positioned(err)
	}
	return &program{prog: prog, vars: vars, funcs: funcs}, nil
}

// positioned rewrites expr's error as "line L, column C: message", adding a
// suggestion for a misspelt IE name.
func positioned(err error) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return err
	}
	msg := fe.Message
	if name, ok := strings.CutPrefix(msg, "unknown name "); ok {
		if s := suggest(name); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
	}
	return fmt.Errorf("line %d, column %d: %s", fe.Line, fe.Column+1, msg)
}

// suggest returns the typed IE name closest to name, if it is close.
func suggest(name string) string {
	best, bestD := "", 4
	for _, fi := range flow.Fields {
		for _, n := range []string{fi.Name, fi.Name6} {
			if n == "" {
				continue
			}
			if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d < bestD {
				best, bestD = n, d
			}
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// evaluator runs a program for one goroutine at a time.
type evaluator struct {
	vm    vm.VM
	env   map[string]any
	loads []func(*flow.Record)
}

func (p *program) newEvaluator() *evaluator {
	ev := &evaluator{env: make(map[string]any, len(p.vars)+len(p.funcs))}
	for name, fn := range p.funcs {
		ev.env[name] = fn
	}
	for _, v := range p.vars {
		b := v.bind()
		ev.env[v.name] = b.box
		ev.loads = append(ev.loads, b.load)
	}
	return ev
}

// eval loads r's values and runs the program on them.
func (ev *evaluator) eval(p *program, r *flow.Record) (bool, error) {
	for _, load := range ev.loads {
		load(r)
	}
	out, err := ev.vm.Run(p.prog, ev.env)
	if err != nil {
		return false, err
	}
	keep, _ := out.(bool)
	return keep, nil
}
