package ipfix_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	source "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestValidate(t *testing.T) {
	ok := func(f func(c *source.Config)) source.Config {
		c := *source.DefaultConfig()
		f(&c)
		return c
	}
	cases := []struct {
		name string
		cfg  source.Config
		want []string // substrings of the error; none means valid
	}{
		{"defaults", *source.DefaultConfig(), nil},
		{"udp only", ok(func(c *source.Config) { c.TCP = "" }), nil},
		{"tcp only on v6", ok(func(c *source.Config) { c.UDP, c.TCP = "", "[::1]:4739" }), nil},
		{"tuned", ok(func(c *source.Config) {
			c.Readers, c.RcvBuf, c.TemplateTTL, c.PendingTTL, c.PendingSets = 8, 128<<20, time.Hour, time.Minute, 16
		}), nil},
		{"no listener", ok(func(c *source.Config) { c.UDP, c.TCP = "", "" }), []string{"udp and tcp"}},
		{"no port", ok(func(c *source.Config) { c.UDP = "localhost" }), []string{`udp: "localhost"`}},
		{"bad port", ok(func(c *source.Config) { c.TCP = ":99999" }), []string{`tcp: ":99999"`}},
		{"negative", ok(func(c *source.Config) {
			c.Readers, c.RcvBuf, c.MaxConnections, c.TemplateTTL, c.PendingTTL, c.PendingSets = -1, -1, -1, -1, -1, -1
		}), []string{"readers: -1", "rcvbuf: -1", "max_connections: -1", "template_ttl", "pending_ttl", "pending_sets: -1"}},
		{"huge buffer", ok(func(c *source.Config) { c.RcvBuf = 4 << 30 }), []string{"rcvbuf"}},
		{"allow-list", ok(func(c *source.Config) { c.AllowedExporters = []string{"10.0.0.0/8", "2001:db8::1", "192.0.2.7"} }), nil},
		{"bad allow-list", ok(func(c *source.Config) { c.AllowedExporters = []string{"10.0.0.0/40", "host"} }),
			[]string{`allowed_exporters[0]: "10.0.0.0/40"`, `allowed_exporters[1]: "host"`}},
		{"negative limits and timeouts", ok(func(c *source.Config) {
			c.Limits.Sessions, c.Limits.TemplateBytes, c.Limits.HeldBytesPerExporter = -1, -1, -1
			c.TCPHeaderTimeout, c.TCPIdleTimeout, c.ShutdownDrain, c.MaxConnectionsPerExporter = -1, -1, -1, -1
		}), []string{"limits.sessions: -1", "limits.template_bytes: -1", "limits.held_bytes_per_exporter: -1",
			"tcp_header_timeout", "tcp_idle_timeout", "shutdown_drain", "max_connections_per_exporter: -1"}},
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

// TestDecode checks the YAML forms of the config through the real loader:
// rcvbuf as a string with a unit or as an integer, durations as strings.
func TestDecode(t *testing.T) {
	for _, c := range []struct {
		yaml   string
		rcvbuf config.ByteSize
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
	_, err := config.Parse([]byte("pipeline:\n  sources:\n    - source.ipfix: {udp: \":4739\", rcv_buf: 1}\n  exporters:\n    - export.jsonl: {}\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "rcv_buf") {
		t.Errorf("unknown key rcv_buf: got %v, want an error naming it", err)
	}
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, source.ExampleYAML) }
