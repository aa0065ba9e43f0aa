package rpchost_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/rpchost"
)

// parse decodes body as the config of an rpc stage through the real strict
// decoder.
func parse(t *testing.T, body map[string]any) (*rpchost.Config, error) {
	t.Helper()
	cfg, err := plugintest.ParseStage(t, rpchost.ID, body)
	if err != nil {
		return nil, err
	}
	return cfg.(*rpchost.Config), nil
}

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, rpchost.ID, nil) }

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
