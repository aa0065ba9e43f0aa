package podlabels_test

import (
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/enrich/podlabels"
)

// parseProcessor decodes body as the only processor of a pipeline, the way
// `weir run` does, and returns its config.
func parseProcessor(t *testing.T, body map[string]any) (*podlabels.Config, error) {
	t.Helper()
	cfg, err := plugintest.ParseStage(t, podlabels.ID, body)
	if err != nil {
		return nil, err
	}
	return cfg.(*podlabels.Config), nil
}

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, podlabels.ID, nil) }

func TestConfigDecodedValues(t *testing.T) {
	cfg, err := parseProcessor(t, map[string]any{
		"file":         "cluster.yaml",
		"grace_period": "45s",
		"labels":       map[string]any{"allow": []any{"app"}, "max_bytes": "2KiB"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.File != "cluster.yaml" || cfg.GracePeriod != 45*time.Second ||
		cfg.Labels.MaxBytes != 2048 || len(cfg.Labels.Allow) != 1 || cfg.Labels.Allow[0] != "app" {
		t.Errorf("decoded %+v", cfg)
	}
	// Keys left out keep their defaults.
	def := podlabels.DefaultConfig()
	if cfg.ReloadInterval != def.ReloadInterval || cfg.SyncTimeout != def.SyncTimeout {
		t.Errorf("defaults lost: %+v", cfg)
	}
}

func TestDefaultConfig(t *testing.T) {
	c := podlabels.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.GracePeriod != 30*time.Second || c.Labels.MaxBytes != 1024 || c.Overwrite {
		t.Errorf("defaults: %+v", c)
	}
}
