package wasmhost

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Eviction of the on-disk compilation cache: wazero writes one file per
// compiled module (per wazero version) and never removes any, so modules
// that changed or went away, and older Weir versions, would pile up.
const (
	// cacheMaxAge evicts entries compiled longer ago than this; a module
	// still in use is compiled again once (hundreds of milliseconds).
	cacheMaxAge = 30 * 24 * time.Hour
	// cacheMaxBytes bounds the directory; the oldest entries go first.
	cacheMaxBytes = 1 << 30
)

// pruned records the cache directories pruned by this process.
var pruned sync.Map

// pruneCache evicts old entries from the compilation cache in dir (once per
// process and directory), then empty version directories. Errors are
// ignored: the cache is an optimisation.
func pruneCache(dir string, now time.Time) {
	if _, done := pruned.LoadOrStore(dir, true); done {
		return
	}
	type entry struct {
		path string
		size int64
		mod  time.Time
	}
	var entries []entry
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != dir {
				dirs = append(dirs, p)
			}
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			entries = append(entries, entry{p, info.Size(), info.ModTime()})
		}
		return nil
	})
	slices.SortFunc(entries, func(a, b entry) int { return a.mod.Compare(b.mod) })
	var total int64
	for _, e := range entries {
		total += e.size
	}
	for _, e := range entries {
		if now.Sub(e.mod) <= cacheMaxAge && total <= cacheMaxBytes {
			break
		}
		if os.Remove(e.path) == nil {
			total -= e.size
		}
	}
	for _, d := range slices.Backward(dirs) {
		_ = os.Remove(d) // only succeeds when empty
	}
}
