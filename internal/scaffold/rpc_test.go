package scaffold

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/rpchost"
)

// TestRPCBuildsAndRuns scaffolds an rpc plugin outside the repository,
// checks that it builds and that its tests pass, then runs the binary
// under the rpc processor.
func TestRPCBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module; skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "edgetag")
	if err := New("rpc", "edgetag", dir); err != nil {
		t.Fatal(err)
	}
	goBin := "go" // from PATH, as make and CI run it
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	run("build", "-o", "edgetag", ".")
	run("test", ".")

	cfg := rpchost.DefaultConfig()
	cfg.Cmd = filepath.Join(dir, "edgetag")
	cfg.Config = map[string]any{"label": "edge-1"}
	p, err := rpchost.New(cfg, plugin.NopSettings(rpchost.ID))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	b := plugintest.MixedBatch(8)
	if err := p.Process(ctx, b); err != nil {
		t.Fatal(err)
	}
	for i, r := range b.Records {
		if r.SourceNodeName != "edge-1" || !r.Has(flow.SourceNodeName) {
			t.Errorf("record %d: sourceNodeName %q", i, r.SourceNodeName)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Errorf("no go.mod outside the repository: %v", err)
	}
}

var updateRPCGoMod = flag.Bool("update-rpc-gomod", false, "rewrite templates/rpc/go.mod.tmpl from Weir's go.mod")

// rpcGoModTemplate is templates/rpc/go.mod.tmpl for the requirements of
// Weir's go.mod. An rpc plugin imports sdk/rpc, which pulls go-plugin,
// gRPC and protobuf: a standalone module must list every module its build
// uses, so the template carries Weir's requirements (extra ones are
// harmless) and must follow them.
func rpcGoModTemplate(weirGoMod []byte) []byte {
	var reqs []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(weirGoMod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "require (":
			in = true
		case in && line == ")":
			in = false
		case in && line != "" && !strings.HasPrefix(line, "//"):
			mod, _, _ := strings.Cut(line, "//")
			reqs = append(reqs, "\t"+strings.TrimSpace(mod)+" // indirect")
		case strings.HasPrefix(line, "require ") && !strings.HasSuffix(line, "("):
			mod, _, _ := strings.Cut(strings.TrimPrefix(line, "require "), "//")
			reqs = append(reqs, "\t"+strings.TrimSpace(mod)+" // indirect")
		}
	}
	var b strings.Builder
	b.WriteString("module {{.Module}}\n\ngo {{.GoVersion}}\n\nrequire github.com/weir-flow/weir v0.0.0\n\n")
	b.WriteString("// Weir's own requirements: sdk/rpc pulls go-plugin, gRPC and protobuf.\n")
	b.WriteString("// Generated from Weir's go.mod by\n")
	b.WriteString("// go test ./internal/scaffold -run RPCGoMod -update-rpc-gomod\n")
	b.WriteString("require (\n" + strings.Join(reqs, "\n") + "\n)\n")
	b.WriteString(`{{if .WeirRoot}}
// The Weir checkout this plugin was created from.
replace github.com/weir-flow/weir => {{.WeirRoot}}
{{else}}
// Point this at your Weir checkout:
// replace github.com/weir-flow/weir => ../weir
{{end}}`)
	return []byte(b.String())
}

// TestRPCGoModFollowsWeir fails when Weir's requirements changed and the
// rpc template's go.mod was not regenerated.
func TestRPCGoModFollowsWeir(t *testing.T) {
	weir, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := rpcGoModTemplate(weir)
	path := filepath.Join("templates", "rpc", "go.mod.tmpl")
	if *updateRPCGoMod {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with go.mod: run go test ./internal/scaffold -run RPCGoMod -update-rpc-gomod", path)
	}
}
