package expr_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	"github.com/weir-flow/weir/plugins/filter/expr"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, expr.ExampleYAML) }
