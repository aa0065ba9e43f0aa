// Package wasmhosttest builds WASM guests for tests, so `go test` works
// without `make examples`.
package wasmhosttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// RepoRoot returns the repository root (the directory of go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

var (
	mu    sync.Mutex
	built = map[string]string{}
)

// Build compiles the Go package pkg (an import path or a path relative to
// the repository root, e.g. "./examples/wasm/misbehave") as a WASM
// reactor module into dir and returns the .wasm file's path. Builds are
// memoised per process.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o dir/<name>.wasm pkg
func Build(dir, pkg string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p, nil
	}
	name := filepath.Base(strings.TrimSuffix(pkg, "/"))
	out := filepath.Join(dir, name+".wasm")
	goBin := "go" // from PATH, as make and CI run it
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, msg)
	}
	built[pkg] = out
	return out, nil
}

// CacheDir returns a compilation cache directory shared by test runs, so
// only the first run of a machine compiles modules cold.
func CacheDir() string {
	return filepath.Join(os.TempDir(), "weir-wasm-test-cache")
}
