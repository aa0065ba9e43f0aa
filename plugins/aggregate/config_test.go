package aggregate_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/aggregate"
)

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, aggregate.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := aggregate.New(cfg.(*aggregate.Config), plugin.NopSettings(aggregate.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestDefaultConfigValid(t *testing.T) {
	if err := aggregate.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// The README's config table documents every koanf key.
func TestReadmeConfigTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(aggregate.Config{})
	for i := range typ.NumField() {
		key := typ.Field(i).Tag.Get("koanf")
		if !strings.Contains(string(readme), "| `"+key+"` |") {
			t.Errorf("README.md config table lacks %s", key)
		}
	}
}

// One pipeline runs one mode: aggregate or proxy.
func TestRejectsProxyInSamePipeline(t *testing.T) {
	_, err := config.Parse([]byte(`
pipeline:
  sources:
    - source.ipfix: {udp: "127.0.0.1:0"}
  processors:
    - proxy: {}
    - aggregate: {}
`), nil)
	if err == nil || !strings.Contains(err.Error(), "pipeline.processors[1].aggregate") || !strings.Contains(err.Error(), "pipeline.processors[0].proxy") {
		t.Fatalf("want an error naming both entries, got %v", err)
	}
}
