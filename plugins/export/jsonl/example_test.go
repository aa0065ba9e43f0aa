package jsonl_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/export/jsonl"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, jsonl.ExampleYAML) }
