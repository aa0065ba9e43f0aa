package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
)

type testConfig struct {
	Protocols []string        `koanf:"protocols"`
	Timeout   time.Duration   `koanf:"timeout"`
	Buffer    config.ByteSize `koanf:"buffer"`
	Count     int             `koanf:"count"`
}

func (c *testConfig) Validate() error {
	var errs []error
	if c.Count < 0 {
		errs = append(errs, fmt.Errorf("count: %d must not be negative", c.Count))
	}
	var perr []error
	for i, p := range c.Protocols {
		if p == "" {
			perr = append(perr, fmt.Errorf("[%d]: empty", i))
		}
	}
	if len(perr) > 0 {
		errs = append(errs, fmt.Errorf("protocols: %w", errors.Join(perr...)))
	}
	return errors.Join(errs...)
}

func init() {
	newCfg := func() plugin.Config { return &testConfig{Count: 1} }
	build := func(plugin.Config, plugin.Settings) (plugin.Component, error) { return nil, nil }
	plugin.Register(plugin.Info{ID: "source.cfgtest", NewConfig: newCfg, New: build})
	plugin.Register(plugin.Info{ID: "filter.cfgtest", NewConfig: newCfg, New: build})
	plugin.Register(plugin.Info{ID: "export.cfgtest", NewConfig: newCfg, New: build})
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     []string
		wantErr []string // substrings every one of which the error must contain
		check   func(t *testing.T, c *config.Config)
	}{
		{
			name: "valid with defaults",
			yaml: `
pipeline:
  sources: [{source.cfgtest: {}}]
  processors:
    - filter.cfgtest: {protocols: [tcp, udp], timeout: 2s, buffer: 32MiB}
  exporters: [{export.cfgtest: null}]
`,
			check: func(t *testing.T, c *config.Config) {
				if c.Pipeline.Batch.Size != 256 || c.Pipeline.Batch.Timeout != 200*time.Millisecond || c.Pipeline.Name != "main" {
					t.Errorf("defaults not applied: %+v", c.Pipeline)
				}
				got := c.Pipeline.Processors[0].Config.(*testConfig)
				if got.Timeout != 2*time.Second || got.Buffer != 32<<20 || len(got.Protocols) != 2 || got.Count != 1 {
					t.Errorf("plugin config decoded wrong: %+v", got)
				}
				if c.Pipeline.Processors[0].Path != "pipeline.processors[0].filter.cfgtest" {
					t.Errorf("path = %q", c.Pipeline.Processors[0].Path)
				}
			},
		},
		{
			name: "env overrides",
			yaml: `pipeline: {sources: [{source.cfgtest: {}}]}`,
			env:  []string{"WEIR_PIPELINE__BATCH__SIZE=512", "WEIR_PIPELINE__QUEUE__WHEN_FULL=block", "OTHER=1", "WEIR_CACHE=/tmp/x", "WEIR_K8S_E2E=1"},
			check: func(t *testing.T, c *config.Config) {
				if c.Pipeline.Batch.Size != 512 || c.Pipeline.Queue.WhenFull != "block" {
					t.Errorf("env not applied: %+v", c.Pipeline)
				}
			},
		},
		{
			name: "stage names label stages; positions otherwise",
			yaml: `
pipeline:
  sources: [{name: edge-in, source.cfgtest: {}}]
  processors: [{filter.cfgtest: {}}, {name: second, filter.cfgtest: {}}]
`,
			check: func(t *testing.T, c *config.Config) {
				p := c.Pipeline
				if p.Sources[0].Label != "edge-in" || p.Sources[0].Name != "edge-in" || p.Processors[0].Label != "processors[0]" || p.Processors[1].Label != "second" {
					t.Errorf("labels %q %q %q", p.Sources[0].Label, p.Processors[0].Label, p.Processors[1].Label)
				}
				if p.Processors[1].Path != "pipeline.processors[1].filter.cfgtest" {
					t.Errorf("path = %q", p.Processors[1].Path)
				}
			},
		},
		{
			name:    "bad and duplicate stage names",
			yaml:    `pipeline: {sources: [{name: "a b", source.cfgtest: {}}, {name: x, source.cfgtest: {}}], processors: [{name: x, filter.cfgtest: {}}, {name: 7, filter.cfgtest: {}}]}`,
			wantErr: []string{`pipeline.sources[0].name: "a b": want 1-63 letters`, `pipeline.processors[0].filter.cfgtest.name: "x" is already the name of pipeline.sources[1].source.cfgtest`, "pipeline.processors[1].name: want a string, got int"},
		},
		{
			name: "reload, pprof, progress_interval",
			yaml: `{reload: {watch: true}, telemetry: {pprof: true}, log: {progress_interval: 0s}, pipeline: {sources: [{source.cfgtest: {}}]}}`,
			check: func(t *testing.T, c *config.Config) {
				if !c.Reload.Watch || !c.Telemetry.Pprof || c.Log.ProgressInterval != 0 {
					t.Errorf("got %+v %+v %+v", c.Reload, c.Telemetry, c.Log)
				}
			},
		},
		{
			name:    "unknown plugin",
			yaml:    `pipeline: {sources: [{source.nope: {}}]}`,
			wantErr: []string{`pipeline.sources[0].source.nope: unknown plugin "source.nope"`, "source.cfgtest"},
		},
		{
			name:    "plugin in the wrong list",
			yaml:    `pipeline: {sources: [{export.cfgtest: {}}]}`,
			wantErr: []string{`pipeline.sources[0].export.cfgtest: plugin "export.cfgtest" is a exporter, not a source`},
		},
		{
			name:    "unknown plugin key",
			yaml:    `pipeline: {sources: [{source.cfgtest: {protocol: [tcp]}}]}`,
			wantErr: []string{"pipeline.sources[0].source.cfgtest", "protocol"},
		},
		{
			name:    "wrong type",
			yaml:    `pipeline: {sources: [{source.cfgtest: {count: many}}]}`,
			wantErr: []string{"pipeline.sources[0].source.cfgtest", "count"},
		},
		{
			name: "every problem reported",
			yaml: `
pipeline:
  batch: {size: 0}
  sources: [{source.cfgtest: {count: -1, protocols: [""]}}]
`,
			wantErr: []string{"pipeline.batch.size: 0", "count: -1 must not be negative", "protocols: [0]: empty"},
		},
		{
			name:    "absurd sizes are refused, not allocated",
			yaml:    `pipeline: {batch: {size: 99999999999}, queue: {size: 10000000, exporter_size: 10000000}, sources: [{source.cfgtest: {}}]}`,
			wantErr: []string{"pipeline.batch.size: 99999999999 must be from 1 to 65536", "pipeline.queue.size: 10000000", "pipeline.queue.exporter_size: 10000000"},
		},
		{
			name:    "unknown top-level key",
			yaml:    `pipelines: {}`,
			wantErr: []string{"pipelines: unknown key"},
		},
		{
			name:    "bad yaml",
			yaml:    "pipeline: [",
			wantErr: []string{"parse yaml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.yaml), tt.env)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want one containing %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]config.ByteSize{"512": 512, "64KiB": 64 << 10, "32MiB": 32 << 20, "1GiB": 1 << 30, "10MB": 10e6} {
		got, err := config.ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := config.ParseByteSize("lots"); err == nil {
		t.Error("ParseByteSize(lots) accepted")
	}
	if s := config.ByteSize(32 << 20).String(); s != "32MiB" {
		t.Errorf("String() = %q", s)
	}
}

// TestLoadFileSizeCap: `-c /dev/zero` must not be read without limit.
func TestLoadFileSizeCap(t *testing.T) {
	_, err := config.LoadFile("/dev/zero")
	if err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Fatalf("LoadFile(/dev/zero) = %v, want the size cap", err)
	}
}
