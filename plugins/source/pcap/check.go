package pcap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Check reports a capture file that cannot be opened, as Start would, for
// `weir validate`.
func (c *Config) Check(_ context.Context, baseDir string) error {
	path := c.Path
	if !filepath.IsAbs(path) && baseDir != "" {
		path = filepath.Join(baseDir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("path: %w", err)
	}
	return f.Close()
}
