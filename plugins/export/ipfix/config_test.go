package ipfix_test

import (
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	exporter "github.com/weir-flow/weir/plugins/export/ipfix"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, exporter.ID, nil) }

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
