package wasmhost

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugintest"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, ID, nil) }

// TestConfigNotJSON: a module config YAML cannot produce (a map with
// non-string keys) is refused, since the guest reads it as JSON.
func TestConfigNotJSON(t *testing.T) {
	c := DefaultConfig()
	c.Path, c.Config = "filter.wasm", map[any]any{1: 2}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "config: cannot be encoded as JSON") {
		t.Fatalf("Validate: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.MemoryLimit != 64<<20 || c.Timeout != time.Second || c.Instances != 0 {
		t.Fatalf("defaults %+v", c)
	}
	if l := c.limits(); l.tables != DefaultTableLimit || l.pages != 1024 {
		t.Fatalf("limits %+v, want 1024 pages and %d table elements", l, DefaultTableLimit)
	}
	if c.memoryPages() != 1024 {
		t.Fatalf("64MiB is %d pages, want 1024", c.memoryPages())
	}
	if c.instances() < 1 {
		t.Fatal("instances default < 1")
	}
	if got := resolve("/etc/weir", "m.wasm"); got != "/etc/weir/m.wasm" {
		t.Fatalf("resolve: %s", got)
	}
	if got := resolve("/etc/weir", "/abs/m.wasm"); got != "/abs/m.wasm" {
		t.Fatalf("resolve absolute: %s", got)
	}
	c.CacheDir = "off"
	if c.cacheDir("") != "" {
		t.Fatal(`cache_dir "off" still caches`)
	}
}
