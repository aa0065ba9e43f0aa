package expr_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/filter/expr"
)

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, expr.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := expr.New(cfg.(*expr.Config), plugin.NopSettings(expr.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestDefaultConfigNeedsExpression(t *testing.T) {
	cfg := expr.DefaultConfig()
	if cfg.OnError != "keep" {
		t.Errorf("default on_error %q, want keep", cfg.OnError)
	}
	if err := cfg.Validate(); err == nil {
		t.Error("default config (no expression) validated")
	}
}
