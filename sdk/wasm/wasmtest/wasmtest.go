// Package wasmtest is a host emulator for WASM plugins written with the
// Weir SDK: it runs a plugin under plain `go test`, through the same
// encode → decode → answer → apply path as the WASM host, minus the
// sandbox.
//
//	func TestFilter(t *testing.T) {
//		h, err := wasmtest.New(map[string]any{"protocols": []any{"tcp"}})
//		...
//		removed, err := h.Process(batch)
//	}
//
// The plugin is the one the package under test registered from its init
// functions (weir.RegisterFilter, weir.RegisterEnricher, …).
package wasmtest

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/sdk/wasm/internal/guest"
)

// Host runs the registered plugin as the WASM host would. It is not safe
// for concurrent use (nor is a WASM instance).
type Host struct {
	manifest abi.Manifest
	buf      []byte
	scratch  abi.Scratch
}

// ErrRejected is wrapped by New's error when the plugin rejects its config.
var ErrRejected = errors.New("plugin rejected its config")

// New initialises the registered plugin with config, encoded as JSON the
// way the host encodes `config:` (nil becomes null). A config the plugin
// rejects returns an error wrapping ErrRejected with the plugin's message.
func New(config any) (*Host, error) {
	js, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encode config as JSON: %w", err)
	}
	g := &guest.Default
	copy(g.Alloc(len(js)), js)
	m, err := abi.DecodeManifest(g.Init(js))
	if err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Status != abi.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrRejected, m.Message)
	}
	return &Host{manifest: m}, nil
}

// Manifest returns the plugin's answer to init: kind and what it reads.
func (h *Host) Manifest() abi.Manifest { return h.manifest }

// Process runs the plugin over b and applies its answer: b keeps the
// records the plugin keeps, with the plugin's updates. It returns how many
// records were removed. A plugin panic returns an *abi.PluginError with
// Status abi.StatusPanic; b is then unchanged.
func (h *Host) Process(b *flow.Batch) (removed int, err error) {
	h.buf = abi.AppendBatchMask(h.buf[:0], b, h.manifest.Reads)
	g := &guest.Default
	in := g.Alloc(len(h.buf))
	copy(in, h.buf)
	return abi.Apply(b, g.Process(in[:len(h.buf)]), &h.scratch)
}
