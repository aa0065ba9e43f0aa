package plugin

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Stage is the pipeline stage a plugin belongs to, implied by its ID.
type Stage string

const (
	StageSource    Stage = "source"
	StageProcessor Stage = "processor"
	StageExporter  Stage = "exporter"
)

// Info registers a plugin.
type Info struct {
	// ID is "<stage>.<name>" in lowercase snake_case ("source.ipfix",
	// "filter.protocol", "export.jsonl") or a bare processor name ("proxy",
	// "wasm", "rpc"). "source." IDs are sources, "export." IDs exporters,
	// everything else a processor.
	ID string
	// Summary is one line for `weir plugins`.
	Summary string
	// NewConfig returns a pointer to the default configuration, ready to be
	// decoded into.
	NewConfig func() Config
	// New builds the plugin from a validated config (the value NewConfig
	// returned, decoded). The result implements the Stage's interface.
	New func(cfg Config, set Settings) (Component, error)
	// Excludes lists plugin IDs that may not share a pipeline with this
	// one (alternative modes, such as "aggregate" and "proxy"); loading a
	// config that has both fails and names both entries.
	Excludes []string
}

// Stage returns the stage the ID implies.
func (i Info) Stage() Stage { return StageOf(i.ID) }

// StageOf returns the stage a plugin ID implies.
func StageOf(id string) Stage {
	switch {
	case strings.HasPrefix(id, "source."):
		return StageSource
	case strings.HasPrefix(id, "export."):
		return StageExporter
	}
	return StageProcessor
}

var idPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$`)

// The registry is Weir's only global mutable state; it is written by init
// functions and read afterwards.
var registry = struct {
	sync.RWMutex
	m map[string]Info
}{m: map[string]Info{}}

// Register adds a plugin. It panics on an invalid or duplicate ID or a
// missing constructor: both are programming errors found at start-up.
func Register(info Info) {
	if !idPattern.MatchString(info.ID) {
		panic(fmt.Sprintf("plugin: invalid ID %q", info.ID))
	}
	if info.New == nil || info.NewConfig == nil {
		panic(fmt.Sprintf("plugin: %s registered without New or NewConfig", info.ID))
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[info.ID]; dup {
		panic(fmt.Sprintf("plugin: duplicate ID %q", info.ID))
	}
	registry.m[info.ID] = info
}

// Lookup returns the plugin registered as id.
func Lookup(id string) (Info, bool) {
	registry.RLock()
	defer registry.RUnlock()
	info, ok := registry.m[id]
	return info, ok
}

// All returns every registered plugin, sorted by ID.
func All() []Info {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]Info, 0, len(registry.m))
	for _, info := range registry.m {
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// IDs returns the registered IDs of one stage, sorted, for error messages.
func IDs(stage Stage) []string {
	var ids []string
	for _, info := range All() {
		if info.Stage() == stage {
			ids = append(ids, info.ID)
		}
	}
	return ids
}

// Constructor adapts a plugin's typed constructor, New(*Config, Settings),
// to Info.New: the engine passes the value NewConfig returned, decoded and
// validated.
func Constructor[C Config, T Component](build func(C, Settings) (T, error)) func(Config, Settings) (Component, error) {
	return func(cfg Config, set Settings) (Component, error) {
		c, ok := cfg.(C)
		if !ok {
			var want C
			return nil, fmt.Errorf("plugin: config is %T, want %T", cfg, want)
		}
		t, err := build(c, set)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
}

// Defaults adapts a plugin's DefaultConfig to Info.NewConfig.
func Defaults[C Config](defaults func() C) func() Config {
	return func() Config { return defaults() }
}
