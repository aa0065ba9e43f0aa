package podlabels_test

import (
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/plugins/enrich/podlabels"
)

// parseProcessor decodes body as the only processor of a pipeline, the way
// `weir run` does, and returns its config.
func parseProcessor(t *testing.T, body map[string]any) (*podlabels.Config, error) {
	t.Helper()
	doc, err := yaml.Marshal(map[string]any{
		"pipeline": map[string]any{
			"processors": []any{map[string]any{podlabels.ID: body}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(doc, nil)
	if err != nil {
		return nil, err
	}
	return cfg.Pipeline.Processors[0].Config.(*podlabels.Config), nil
}

func TestConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]struct {
		Config map[string]any `yaml:"config"`
		Errors []string       `yaml:"errors"`
	}
	if err := yaml.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(cases))
	for name := range cases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		tc := cases[name]
		t.Run(name, func(t *testing.T) {
			cfg, err := parseProcessor(t, tc.Config)
			if len(tc.Errors) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if err := cfg.Validate(); err != nil {
					t.Fatalf("Validate after decode: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want errors naming %v, got none", tc.Errors)
			}
			for _, key := range tc.Errors {
				if !strings.Contains(err.Error(), key) {
					t.Errorf("error does not name %q:\n%v", key, err)
				}
			}
			// Every problem is reported, each on its own line.
			if got := strings.Count(err.Error(), "\n") + 1; got < len(tc.Errors) {
				t.Errorf("want %d problems, got %d:\n%v", len(tc.Errors), got, err)
			}
		})
	}
}

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
