package conntrack

import "github.com/weir-flow/weir/core/plugin"

type pluginSettings = plugin.Settings

func nopSettings() plugin.Settings { return plugin.NopSettings(ID) }
