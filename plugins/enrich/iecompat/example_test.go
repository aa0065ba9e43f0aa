package iecompat_test

import (
	"context"
	"testing"

	"github.com/weir-flow/weir/core/config"
	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/enrich/iecompat"
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
