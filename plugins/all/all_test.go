package all

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/plugin"
)

// TestFoldersRegisterTheirID checks that every plugin folder registers the
// ID its path implies: plugins/<stage>/<name> registers "<stage>.<name>",
// plugins/<name> registers "<name>".
func TestFoldersRegisterTheirID(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "all" || strings.Contains(rel, "testdata") {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(path, "doc.go")); err != nil {
			return nil // a stage folder such as plugins/filter
		}
		id := strings.ReplaceAll(filepath.ToSlash(rel), "/", ".")
		t.Run(id, func(t *testing.T) {
			if _, ok := plugin.Lookup(id); !ok {
				t.Errorf("folder plugins/%s has no plugin registered as %q (missing from plugins/all, or registered under another ID)", rel, id)
			}
		})
		return filepath.SkipDir
	})
	if err != nil {
		t.Fatal(err)
	}
}
