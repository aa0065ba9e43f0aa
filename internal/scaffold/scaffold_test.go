package scaffold

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	if err := New("wasm", "Bad-Name", filepath.Join(dir, "x")); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
	if err := New("cobol", "x", filepath.Join(dir, "x")); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
	full := filepath.Join(dir, "full")
	_ = os.MkdirAll(full, 0o755)
	_ = os.WriteFile(filepath.Join(full, "f"), nil, 0o644)
	if err := New("wasm", "x", full); !errors.Is(err, ErrExists) {
		t.Errorf("existing dir: %v", err)
	}
}

// TestWasmBuildsAsIs scaffolds a wasm plugin outside the repository and
// checks that it builds to WASM and that its tests pass.
func TestWasmBuildsAsIs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module; skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "bigflows")
	if err := New("wasm", "bigflows", dir); err != nil {
		t.Fatal(err)
	}
	goBin := "go" // from PATH, as make and CI run it
	run := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	run([]string{"GOOS=wasip1", "GOARCH=wasm"}, "build", "-buildmode=c-shared", "-o", "bigflows.wasm", ".")
	if fi, err := os.Stat(filepath.Join(dir, "bigflows.wasm")); err != nil || fi.Size() == 0 {
		t.Fatalf("no module built: %v", err)
	}
	run(nil, "test", ".")
}
