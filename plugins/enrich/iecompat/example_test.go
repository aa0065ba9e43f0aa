package iecompat_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"

	// The plugins the example names; not plugins/all, which would link
	// every plugin (Kubernetes clients included) into this test binary.
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, iecompat.ExampleYAML) }

// TestExampleFilesLoad checks that the example's shim files exist and
// compile, as `weir validate` would with the config at the repository root.
func TestExampleFilesLoad(t *testing.T) {
	cfg, err := config.Parse([]byte(iecompat.ExampleYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BaseDir = repoRoot(t)
	if err := cfg.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}
