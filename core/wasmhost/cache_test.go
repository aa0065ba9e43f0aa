package wasmhost

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneCache: entries older than cacheMaxAge go, with version
// directories left empty; recent ones stay.
func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	files := map[string]time.Time{
		"wazero-old-amd64-linux/aa": now.Add(-2 * cacheMaxAge),
		"wazero-new-amd64-linux/bb": now.Add(-2 * cacheMaxAge),
		"wazero-new-amd64-linux/cc": now.Add(-time.Hour),
	}
	for name, mod := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("compiled"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	pruneCache(dir, now)
	for name, want := range map[string]bool{
		"wazero-old-amd64-linux/aa": false, "wazero-old-amd64-linux": false,
		"wazero-new-amd64-linux/bb": false, "wazero-new-amd64-linux/cc": true,
	} {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
}
