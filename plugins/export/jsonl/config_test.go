package jsonl_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/export/jsonl"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, jsonl.ID, nil) }
