package podlabels_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	_ "github.com/weir-flow/weir/plugins/all"
	"github.com/weir-flow/weir/plugins/enrich/podlabels"
)

func TestExample(t *testing.T) { plugintest.CheckExample(t, podlabels.ExampleYAML) }
