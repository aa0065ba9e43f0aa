package protocol_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/filter/protocol"
)

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, protocol.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := protocol.New(cfg.(*protocol.Config), nopSettings()); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestDefaultConfigValid(t *testing.T) {
	if err := protocol.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
