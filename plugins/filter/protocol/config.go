package protocol

import "github.com/weir-flow/weir/plugins/filter/protocol/match"

// Config configures filter.protocol; see [match.Config] for its keys.
type Config = match.Config

// GroupEntry is one protocol of a group; see [match.GroupEntry].
type GroupEntry = match.GroupEntry

// DefaultConfig returns the defaults: no protocols (keep everything).
func DefaultConfig() *Config { return &Config{} }
