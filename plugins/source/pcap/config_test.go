package pcap_test

import (
	"math"
	"strings"
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/source/pcap"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  pcap.Config
		want []string // substrings of the error; none means valid
	}{
		{"minimal", pcap.Config{Path: "x.pcap"}, nil},
		{"paced", pcap.Config{Path: "x.pcap", Speed: 1, Ports: []int{4739, 9995}}, nil},
		{"fast forward", pcap.Config{Path: "x.pcap", Speed: 0.5}, nil},
		{"no path", pcap.Config{}, []string{"path: missing"}},
		{"negative speed", pcap.Config{Path: "x", Speed: -1}, []string{"speed: -1"}},
		{"nan speed", pcap.Config{Path: "x", Speed: math.NaN()}, []string{"speed: NaN"}},
		{"bad ports", pcap.Config{Path: "x", Ports: []int{0, 70000}}, []string{"ports[0]: 0", "ports[1]: 70000"}},
		{"everything wrong", pcap.Config{Speed: -2, Ports: []int{-1}}, []string{"path", "speed", "ports[0]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", c.cfg)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

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
