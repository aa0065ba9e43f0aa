package rpchost_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/rpchost"
)

type configCases struct {
	Valid   map[string]map[string]any `yaml:"valid"`
	Invalid map[string]struct {
		Config map[string]any `yaml:"config"`
		Keys   []string       `yaml:"keys"`
	} `yaml:"invalid"`
}

// parse decodes body as the config of an rpc stage through the real strict
// decoder.
func parse(t *testing.T, body map[string]any) (*rpchost.Config, error) {
	t.Helper()
	doc := map[string]any{"pipeline": map[string]any{
		"sources":    []any{map[string]any{"source.ipfix": map[string]any{}}},
		"processors": []any{map[string]any{rpchost.ID: body}},
	}}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, nil)
	if err != nil {
		return nil, err
	}
	return cfg.Pipeline.Processors[0].Config.(*rpchost.Config), nil
}

func TestConfigCases(t *testing.T) {
	data, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases configCases
	if err := yaml.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases.Valid) == 0 || len(cases.Invalid) == 0 {
		t.Fatal("testdata/config.yaml has no cases")
	}
	for name, body := range cases.Valid {
		t.Run("valid/"+name, func(t *testing.T) {
			if _, err := parse(t, body); err != nil {
				t.Fatalf("want valid, got:\n%v", err)
			}
		})
	}
	for name, c := range cases.Invalid {
		t.Run("invalid/"+name, func(t *testing.T) {
			_, err := parse(t, c.Config)
			if err == nil {
				t.Fatal("want an error, got none")
			}
			for _, key := range c.Keys {
				if !strings.Contains(err.Error(), key) {
					t.Errorf("error does not name %q:\n%v", key, err)
				}
			}
		})
	}
}

func TestConfigDecodes(t *testing.T) {
	cfg, err := parse(t, map[string]any{
		"cmd":             "./p",
		"config":          map[string]any{"table": "x.csv", "n": 3},
		"timeout":         "250ms",
		"restart_backoff": map[string]any{"max": "3s"},
		"env":             map[string]any{"GOMAXPROCS": "4", "Mixed_Case": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeout != 250*time.Millisecond || cfg.RestartBackoff.Initial != 100*time.Millisecond || cfg.RestartBackoff.Max != 3*time.Second {
		t.Errorf("durations: %+v", cfg)
	}
	if cfg.InFlight != 4 || cfg.StartTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}
	m, ok := cfg.Config.(map[string]any)
	if !ok || m["table"] != "x.csv" {
		t.Errorf("config: %#v", cfg.Config)
	}
	// Variable names keep their case.
	if cfg.Env["GOMAXPROCS"] != "4" || cfg.Env["Mixed_Case"] != "v" {
		t.Errorf("env: %v", cfg.Env)
	}
}

func TestDefaultConfigNeedsCmd(t *testing.T) {
	cfg := rpchost.DefaultConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cmd") {
		t.Fatalf("Validate without cmd: %v", err)
	}
	cfg.Cmd = "x"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
