package wasmhost_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/wasmhost"
	_ "github.com/weir-flow/weir/plugins/all"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, wasmhost.ExampleYAML) }
