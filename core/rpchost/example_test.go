package rpchost_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/core/rpchost"
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, rpchost.ExampleYAML) }
