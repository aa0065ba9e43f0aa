package iecompat_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
)

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, iecompat.ID, func(t *testing.T, cfg plugin.Config) {
		set := plugin.NopSettings(iecompat.ID)
		set.BaseDir = repoRoot(t)
		if _, err := iecompat.New(cfg.(*iecompat.Config), set); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestDefaultConfigValid(t *testing.T) {
	if err := iecompat.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
