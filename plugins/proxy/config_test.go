package proxy_test

import (
	"testing"

	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/proxy"
)

func TestConfigCases(t *testing.T) { plugintest.ConfigCases(t, proxy.ID, nil) }
