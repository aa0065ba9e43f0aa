package pcap_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/source/pcap"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, pcap.ID, nil) }

func TestDefaultConfig(t *testing.T) {
	c := pcap.DefaultConfig()
	if c.Speed != 0 || len(c.Ports) != 0 {
		t.Errorf("defaults = %+v, want full speed and any port", c)
	}
	if err := c.Validate(); err == nil {
		t.Error("the default config has no path and must not validate")
	}
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, pcap.ExampleYAML) }
