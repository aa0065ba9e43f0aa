package jsonl_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/export/jsonl"
	// The example's source; not plugins/all, whose client-go the fuzz
	// build of this package would instrument.
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, jsonl.ExampleYAML) }
