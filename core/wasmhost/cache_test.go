package wasmhost

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugintest"
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

// TestCacheEvictedAtStart: starting a processor prunes its cache_dir —
// entries compiled over 30 days ago, then the oldest until the directory
// is within 1 GiB (sparse files stand in for large compiled modules) —
// and then caches the module it compiled.
func TestCacheEvictedAtStart(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	const big = 600 << 20 // two of these pass the 1 GiB bound
	files := []struct {
		name string
		size int64
		age  time.Duration
		kept bool
	}{
		{"wazero-v0-amd64-linux/stale", 10, 31 * 24 * time.Hour, false},
		{"wazero-v0-amd64-linux/older-big", big, 48 * time.Hour, false},
		{"wazero-v0-amd64-linux/newer-big", big, 24 * time.Hour, true},
		{"wazero-v0-amd64-linux/recent", 10, time.Hour, true},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, f.size); err != nil { // sparse: no disk used
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-f.age), now.Add(-f.age)); err != nil {
			t.Fatal(err)
		}
	}
	p := newProcessor(t, "handwritten", nil, func(c *Config) { c.CacheDir = dir })
	if err := p.Process(context.Background(), plugintest.MixedBatch(4)); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if got := err == nil; got != f.kept {
			t.Errorf("%s (%d bytes, %s old) kept = %v, want %v", f.name, f.size, f.age, got, f.kept)
		}
	}
	// The module compiled at start is cached beside what was kept.
	var entries int
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			entries++
		}
		return nil
	})
	if entries < 3 {
		t.Errorf("%d cache entries after start, want the 2 kept plus the module's", entries)
	}
}
