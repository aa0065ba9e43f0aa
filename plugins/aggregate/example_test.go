package aggregate_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/aggregate"
	// The example's other stages; not plugins/all, whose client-go the
	// fuzz build of this package would instrument.
	_ "github.com/weir-flow/weir/plugins/export/ipfix"
	_ "github.com/weir-flow/weir/plugins/proxy"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, aggregate.ExampleYAML) }
