package config_test

import (
	"slices"
	"testing"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
)

type rawSource struct{ raw bool }

func (c *rawSource) Validate() error { return nil }
func (c *rawSource) EmitsRaw() bool  { return c.raw }

type rawStage struct{ handles bool }

func (c *rawStage) Validate() error  { return nil }
func (c *rawStage) HandlesRaw() bool { return c.handles }

type plainStage struct{}

func (c *plainStage) Validate() error { return nil }

// TestRawWarnings: a stage that reads decoded fields behind a source that
// hands on raw messages is warned about; stages that handle raw records,
// and every stage behind a decoding source, are not.
func TestRawWarnings(t *testing.T) {
	stage := func(path string, c plugin.Config) config.Stage { return config.Stage{Path: path, Config: c} }
	tests := []struct {
		name string
		raw  bool
		want []string
	}{
		{"raw source", true, []string{
			"pipeline.processors[1].filter: reads decoded fields, but pipeline.sources[0].src hands on raw (undecoded) messages, which have none (decode them: raw: false)",
			"pipeline.exporters[1].json: reads decoded fields, but pipeline.sources[0].src hands on raw (undecoded) messages, which have none (decode them: raw: false)",
			"pipeline.exporters[2].kafka-records: reads decoded fields, but pipeline.sources[0].src hands on raw (undecoded) messages, which have none (decode them: raw: false)",
		}},
		{"decoding source", false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c config.Config
			c.Pipeline.Sources = []config.Stage{stage("pipeline.sources[0].src", &rawSource{tc.raw})}
			c.Pipeline.Processors = []config.Stage{
				stage("pipeline.processors[0].proxy", &rawStage{true}),
				stage("pipeline.processors[1].filter", &plainStage{}),
			}
			c.Pipeline.Exporters = []config.Stage{
				stage("pipeline.exporters[0].ipfix", &rawStage{true}),
				stage("pipeline.exporters[1].json", &plainStage{}),
				stage("pipeline.exporters[2].kafka-records", &rawStage{false}),
			}
			if got := c.Warnings(); !slices.Equal(got, tc.want) {
				t.Errorf("warnings:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
