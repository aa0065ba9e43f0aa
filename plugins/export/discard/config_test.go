package discard_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/export/discard"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, discard.ID, nil) }
