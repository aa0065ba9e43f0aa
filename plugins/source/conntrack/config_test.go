package conntrack_test

import (
	"os"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	// The example's other stages; not plugins/all, whose client-go the
	// fuzz build of this package would instrument.
	_ "github.com/weir-flow/weir/plugins/export/ipfix"
	_ "github.com/weir-flow/weir/plugins/filter/protocol"
	"github.com/weir-flow/weir/plugins/source/conntrack"
)

func TestConfigCases(t *testing.T) {
	plugintest.ConfigCases(t, conntrack.ID, func(t *testing.T, cfg plugin.Config) {
		if _, err := conntrack.New(cfg.(*conntrack.Config), plugin.NopSettings(conntrack.ID)); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestDefaultConfig(t *testing.T) {
	c := conntrack.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// Antrea FlowExporter's defaults.
	if c.PollInterval != 5*time.Second || c.ActiveTimeout != 5*time.Second || c.IdleTimeout != 15*time.Second || !c.Events {
		t.Errorf("defaults = %+v", c)
	}
}

func TestNodeCIDRString(t *testing.T) {
	cfg, err := plugintest.ParseStage(t, conntrack.ID, map[string]any{
		"pod_cidrs": []any{"10.10.0.0/16"}, "node_cidr": "10.10.1.0/24, fd00:1::/64"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.(*conntrack.Config).NodeCIDR; !reflect.DeepEqual(got, conntrack.CIDRList{"10.10.1.0/24", "fd00:1::/64"}) {
		t.Errorf("node_cidr = %q", got)
	}
}

// TestREADMEConfigTable: the README's config table lists exactly the koanf
// keys of Config.
func TestREADMEConfigTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	typ := reflect.TypeOf(conntrack.Config{})
	for i := 0; i < typ.NumField(); i++ {
		key := typ.Field(i).Tag.Get("koanf")
		if !documented[key] {
			t.Errorf("config key %q is not in the README's table", key)
		}
		delete(documented, key)
	}
	for k := range documented {
		if !regexp.MustCompile(`^weir_`).MatchString(k) {
			t.Errorf("README documents %q, which Config does not have", k)
		}
	}
}

func TestExample(t *testing.T) { plugintest.CheckExample(t, conntrack.ExampleYAML) }
