package jsonl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Check reports a file whose directory does not exist, for `weir
// validate`; it creates nothing.
func (c *Config) Check(_ context.Context, baseDir string) error {
	if c.Path == "-" {
		return nil
	}
	path := c.Path
	if !filepath.IsAbs(path) && baseDir != "" {
		path = filepath.Join(baseDir, path)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("path: %s is not a directory", dir)
	}
	return nil
}
