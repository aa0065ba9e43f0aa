package wasmhost

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func(edit func(*Config)) *Config {
		c := DefaultConfig()
		c.Path = "filter.wasm"
		edit(c)
		return c
	}
	cases := []struct {
		name string
		cfg  *Config
		want []string // substrings of the error; none means valid
	}{
		{"defaults", valid(func(*Config) {}), nil},
		{"no deadline", valid(func(c *Config) { c.Timeout = 0 }), nil},
		{"grants", valid(func(c *Config) { c.Allow = Allow{FS: []string{"data"}, Env: []string{"HOME"}} }), nil},
		{"missing path", valid(func(c *Config) { c.Path = " " }), []string{"path: missing"}},
		{"memory zero", valid(func(c *Config) { c.MemoryLimit = 0 }), []string{"memory_limit: 0"}},
		{"memory too big", valid(func(c *Config) { c.MemoryLimit = 8 << 30 }), []string{"memory_limit: 8GiB", "4GiB"}},
		{"table limit", valid(func(c *Config) { c.TableLimit = 4096 }), nil},
		{"negative table limit", valid(func(c *Config) { c.TableLimit = -1 }), []string{"table_limit: -1"}},
		{"table limit too big", valid(func(c *Config) { c.TableLimit = 1 << 29 }), []string{"table_limit: 536870912", "268435456"}},
		{"negative timeout", valid(func(c *Config) { c.Timeout = -time.Second }), []string{"timeout: -1s"}},
		{"negative instances", valid(func(c *Config) { c.Instances = -1 }), []string{"instances: -1"}},
		{"bad env", valid(func(c *Config) { c.Allow.Env = []string{"A=B"} }), []string{`allow.env[0]: "A=B"`}},
		{"empty fs", valid(func(c *Config) { c.Allow.FS = []string{""} }), []string{"allow.fs[0]"}},
		{"config not JSON", valid(func(c *Config) { c.Config = map[any]any{1: 2} }), []string{"config: cannot be encoded as JSON"}},
		{"every problem", &Config{Timeout: -1}, []string{"path", "memory_limit", "timeout"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
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
