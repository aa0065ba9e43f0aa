package plugin

import (
	"context"
	"strings"
	"testing"
)

type testConfig struct{ n int }

func (*testConfig) Validate() error { return nil }

type otherConfig struct{}

func (*otherConfig) Validate() error { return nil }

type testComponent struct{ n int }

func (*testComponent) Shutdown(context.Context) error { return nil }

func TestConstructor(t *testing.T) {
	build := Constructor(func(c *testConfig, _ Settings) (*testComponent, error) {
		return &testComponent{n: c.n}, nil
	})
	c, err := build(&testConfig{n: 7}, NopSettings("filter.test"))
	if err != nil || c.(*testComponent).n != 7 {
		t.Fatalf("build = %v, %v", c, err)
	}
	if _, err := build(&otherConfig{}, NopSettings("filter.test")); err == nil || !strings.Contains(err.Error(), "*plugin.otherConfig") {
		t.Errorf("wrong config type: %v", err)
	}
	if got := Defaults(func() *testConfig { return &testConfig{n: 3} })(); got.(*testConfig).n != 3 {
		t.Errorf("Defaults = %v", got)
	}
}

func TestStageOf(t *testing.T) {
	for id, want := range map[string]Stage{
		"source.ipfix": StageSource, "export.jsonl": StageExporter,
		"filter.protocol": StageProcessor, "proxy": StageProcessor, "wasm": StageProcessor,
	} {
		if got := StageOf(id); got != want {
			t.Errorf("StageOf(%q) = %s, want %s", id, got, want)
		}
	}
}
