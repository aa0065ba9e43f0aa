package ipfix_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	exporter "github.com/weir-flow/weir/plugins/export/ipfix"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestValidate(t *testing.T) {
	ok := func(f func(c *exporter.Config)) exporter.Config {
		c := *exporter.DefaultConfig()
		c.Address = "127.0.0.1:9995"
		f(&c)
		return c
	}
	cases := []struct {
		name string
		cfg  exporter.Config
		want []string
	}{
		{"udp", ok(func(*exporter.Config) {}), nil},
		{"tcp v6", ok(func(c *exporter.Config) { c.Address, c.Transport = "[::1]:4739", "tcp" }), nil},
		{"hostname", ok(func(c *exporter.Config) { c.Address = "collector.example:4739" }), nil},
		{"no address", ok(func(c *exporter.Config) { c.Address = "" }), []string{"address: missing"}},
		{"no port", ok(func(c *exporter.Config) { c.Address = "10.0.0.1" }), []string{`address: "10.0.0.1"`}},
		{"port 0", ok(func(c *exporter.Config) { c.Address = "10.0.0.1:0" }), []string{`port "0"`}},
		{"no host", ok(func(c *exporter.Config) { c.Address = ":4739" }), []string{"no host"}},
		{"transport", ok(func(c *exporter.Config) { c.Transport = "sctp" }), []string{`transport: "sctp"`}},
		{"sizes and times", ok(func(c *exporter.Config) {
			c.MaxMessageSize, c.TemplateRefresh, c.DialTimeout, c.MaxBackoff = 100, -time.Second, -1, -1
		}), []string{"max_message_size: 100", "template_refresh: -1s", "dial_timeout", "max_backoff"}},
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

func TestDecode(t *testing.T) {
	cfg, err := config.Parse([]byte(`pipeline:
  sources:
    - source.ipfix: {udp: ":4739", tcp: ""}
  exporters:
    - export.ipfix: {address: "127.0.0.1:9995", transport: tcp, observation_domain_id: 9, template_refresh: 10s, max_message_size: 9000, resend_window: 1MiB}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Pipeline.Exporters[0].Config.(*exporter.Config)
	want := exporter.Config{Address: "127.0.0.1:9995", Transport: "tcp", ObservationDomainID: 9,
		TemplateRefresh: 10 * time.Second, MaxMessageSize: 9000, DialTimeout: 5 * time.Second, MaxBackoff: 30 * time.Second, ResendWindow: 1 << 20}
	if *got != want {
		t.Errorf("decoded %+v\nwant %+v", *got, want)
	}
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, exporter.ExampleYAML) }
