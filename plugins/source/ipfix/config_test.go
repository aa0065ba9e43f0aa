package ipfix_test

import (
	"testing"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, source.ID, nil) }

// TestDecode checks the YAML forms of the config through the real loader:
// rcvbuf as a string with a unit or as an integer, durations as strings.
func TestDecode(t *testing.T) {
	for _, c := range []struct {
		yaml   string
		rcvbuf plugin.ByteSize
	}{
		{`{udp: ":4739", rcvbuf: 64MiB, template_ttl: 30m}`, 64 << 20},
		{`{udp: ":4739", rcvbuf: 1048576}`, 1 << 20},
		{`{tcp: ":4739"}`, 32 << 20},
	} {
		cfg, err := config.Parse([]byte("pipeline:\n  sources:\n    - source.ipfix: "+c.yaml+"\n  exporters:\n    - export.jsonl: {path: \"-\"}\n"), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		got := cfg.Pipeline.Sources[0].Config.(*source.Config)
		if got.RcvBuf != c.rcvbuf {
			t.Errorf("%s: rcvbuf = %d, want %d", c.yaml, got.RcvBuf, c.rcvbuf)
		}
	}
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, source.ExampleYAML) }
