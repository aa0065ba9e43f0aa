package packetcapture_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	// The example's other stages; not plugins/all, whose client-go the
	// fuzz build of this package would instrument.
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	"github.com/weir-flow/weir/plugins/source/packetcapture"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, packetcapture.ID, nil) }

func TestExample(t *testing.T) { plugintest.CheckExample(t, packetcapture.ExampleYAML) }

func TestCheck(t *testing.T) {
	cfg := packetcapture.DefaultConfig()
	cfg.Interface, cfg.Path, cfg.Packets = "eth0", "c.pcapng", 1
	cfg.Flow = packetcapture.Flow{SourceIP: "fd00::1", DestinationPort: 443, Protocol: "tcp"}
	if err := cfg.Check(context.Background(), ""); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestDefaultConfig(t *testing.T) {
	c := packetcapture.DefaultConfig()
	if c.Direction != packetcapture.SourceToDestination || c.SnapLength != packetcapture.DefaultSnapLength {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.Validate(); err == nil {
		t.Error("the default config has no interface, path or limit and must not validate")
	}
}

// TestReadmeConfigTable checks that the README documents every key.
func TestReadmeConfigTable(t *testing.T) { plugintest.CheckConfigTable(t, packetcapture.Config{}) }

func TestExpression(t *testing.T) {
	cases := []struct {
		name      string
		flow      packetcapture.Flow
		direction string
		want      string
	}{
		{"five tuple", packetcapture.Flow{SourceIP: "10.0.0.1", DestinationIP: "10.0.0.2", SourcePort: 1234, DestinationPort: 80, Protocol: "tcp"},
			packetcapture.SourceToDestination, "ip and tcp and src host 10.0.0.1 and dst host 10.0.0.2 and src port 1234 and dst port 80"},
		{"replies", packetcapture.Flow{SourceIP: "10.0.0.1", DestinationPort: 53, Protocol: "udp"},
			packetcapture.DestinationToSource, "ip and udp and dst host 10.0.0.1 and src port 53"},
		{"both", packetcapture.Flow{DestinationIP: "fd00::2", Protocol: 58},
			packetcapture.Both, "(ip6 and icmp6 and dst host fd00::2) or (ip6 and icmp6 and src host fd00::2)"},
		{"numeric protocol, any family", packetcapture.Flow{Protocol: 47}, packetcapture.Both, "(ip proto 47 or ip6 proto 47)"},
		{"numeric protocol, IPv4", packetcapture.Flow{SourceIP: "10.0.0.1", Protocol: "58"}, packetcapture.SourceToDestination, "ip and ip proto 58 and src host 10.0.0.1"},
		{"ports only", packetcapture.Flow{DestinationPort: 443}, packetcapture.SourceToDestination, "dst port 443"},
		{"empty", packetcapture.Flow{}, packetcapture.Both, ""},
		{"protocol only, both", packetcapture.Flow{Protocol: "ICMP"}, packetcapture.Both, "icmp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := packetcapture.Config{Flow: c.flow, Direction: c.direction}
			got, err := cfg.Expression()
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Expression() = %q, want %q", got, c.want)
			}
		})
	}
}
