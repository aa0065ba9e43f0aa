package iecompat_test

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
)

type configCases struct {
	Valid   map[string]map[string]any `yaml:"valid"`
	Invalid map[string]struct {
		Config map[string]any `yaml:"config"`
		Keys   []string       `yaml:"keys"`
	} `yaml:"invalid"`
}

// parse decodes body as the config of an enrich.iecompat stage, through the
// real strict decoder.
func parse(t *testing.T, body map[string]any) (*iecompat.Config, error) {
	t.Helper()
	doc := map[string]any{"pipeline": map[string]any{
		"processors": []any{map[string]any{iecompat.ID: body}},
	}}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, nil)
	if err != nil {
		return nil, err
	}
	return cfg.Pipeline.Processors[0].Config.(*iecompat.Config), nil
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
			cfg, err := parse(t, body)
			if err != nil {
				t.Fatalf("want valid, got:\n%v", err)
			}
			set := plugin.NopSettings(iecompat.ID)
			set.BaseDir = repoRoot(t)
			if _, err := iecompat.New(cfg, set); err != nil {
				t.Fatalf("New: %v", err)
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

func TestDefaultConfigValid(t *testing.T) {
	if err := iecompat.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
