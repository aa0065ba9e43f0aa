package plugintest

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
)

// configCases is the shape of a plugin folder's testdata/config.yaml.
type configCases struct {
	// Valid maps a case name to a plugin config that must decode and
	// validate.
	Valid map[string]map[string]any `yaml:"valid"`
	// Invalid maps a case name to a config that must fail, with an error
	// that names every key in Keys.
	Invalid map[string]struct {
		Config map[string]any `yaml:"config"`
		Keys   []string       `yaml:"keys"`
	} `yaml:"invalid"`
}

// ParseStage decodes body as the config of plugin id, placed in the list
// its stage implies, through the real strict decoder and Validate.
func ParseStage(t *testing.T, id string, body map[string]any) (plugin.Config, error) {
	t.Helper()
	list := map[plugin.Stage]string{
		plugin.StageSource: "sources", plugin.StageProcessor: "processors", plugin.StageExporter: "exporters",
	}[plugin.StageOf(id)]
	doc := map[string]any{"pipeline": map[string]any{list: []any{map[string]any{id: body}}}}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, nil)
	if err != nil {
		return nil, err
	}
	switch plugin.StageOf(id) {
	case plugin.StageSource:
		return cfg.Pipeline.Sources[0].Config, nil
	case plugin.StageExporter:
		return cfg.Pipeline.Exporters[0].Config, nil
	}
	return cfg.Pipeline.Processors[0].Config, nil
}

// ConfigCases runs the named cases of testdata/config.yaml for plugin id:
// every valid case decodes and validates, and then passes check (nil: no
// further check, e.g. calling New); every invalid case fails with an error
// naming each of its keys.
func ConfigCases(t *testing.T, id string, check func(t *testing.T, cfg plugin.Config)) {
	t.Helper()
	data, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases configCases
	if err := yaml.Unmarshal(data, &cases); err != nil {
		t.Fatalf("testdata/config.yaml: %v", err)
	}
	if len(cases.Valid) == 0 || len(cases.Invalid) == 0 {
		t.Fatal("testdata/config.yaml needs valid and invalid cases")
	}
	for name, body := range cases.Valid {
		t.Run("valid/"+name, func(t *testing.T) {
			cfg, err := ParseStage(t, id, body)
			if err != nil {
				t.Fatalf("want valid, got:\n%v", err)
			}
			if check != nil {
				check(t, cfg)
			}
		})
	}
	for name, c := range cases.Invalid {
		t.Run("invalid/"+name, func(t *testing.T) {
			_, err := ParseStage(t, id, c.Config)
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
