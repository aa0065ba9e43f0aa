package aggregate_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/aggregate"
	_ "github.com/weir-flow/weir/plugins/all"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, aggregate.ExampleYAML) }
