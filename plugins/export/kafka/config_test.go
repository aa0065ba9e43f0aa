package kafka_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/export/kafka"
)

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, kafka.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := kafka.New(cfg.(*kafka.Config), plugin.NopSettings(kafka.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, kafka.ExampleYAML) }

func TestConfigTable(t *testing.T) { plugintest.CheckConfigTable(t, kafka.DefaultConfig()) }

func TestLifecycle(t *testing.T) {
	plugintest.Lifecycle(t, func() plugin.Component {
		cfg := kafka.DefaultConfig()
		cfg.Brokers, cfg.Topic = []string{"127.0.0.1:1"}, "t"
		e, err := kafka.New(cfg, plugin.NopSettings(kafka.ID))
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}
