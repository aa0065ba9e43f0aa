package rpc

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/rpcwire"
)

// TestHost runs a plugin in-process the way Weir's rpc processor runs it
// out of process: same Init request, same ABI buffers, same answer
// handling; only the process and gRPC are left out. Use it to test a
// plugin with `go test`. It is not safe for concurrent use.
type TestHost struct {
	srv     rpcwire.Server
	man     abi.Manifest
	layout  *abi.PackedLayout // packed batches, as Weir sends them; nil for plain
	buf     []byte
	scratch abi.Scratch
}

// NewTestHost initialises p with config (any value that marshals to JSON,
// as the `config:` of the rpc processor) and returns a host for it. It
// returns the plugin's error if Init rejects the config.
func NewTestHost(p Plugin, config any) (*TestHost, error) {
	srv, err := NewServer(p)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	req, err := json.Marshal(rpcwire.InitRequest{ABI: abi.Version, Name: "test", Config: raw})
	if err != nil {
		return nil, err
	}
	rep, err := srv.Init(context.Background(), req)
	if err != nil {
		return nil, err
	}
	man, err := abi.DecodeManifest(rep)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if man.Status != abi.StatusOK {
		return nil, &abi.PluginError{Status: man.Status, Message: man.Message}
	}
	return &TestHost{srv: srv, man: man, layout: abi.NewPackedLayout(man.Reads)}, nil
}

// Manifest returns what the plugin declared at Init.
func (h *TestHost) Manifest() abi.Manifest { return h.man }

// Process sends b through the plugin and applies its answer to b: the
// updated fields, then the verdicts. On error b is unchanged.
func (h *TestHost) Process(b *flow.Batch) error {
	h.buf = h.layout.Append(h.buf[:0], b)
	rep, err := h.srv.Process(context.Background(), h.buf)
	if err != nil {
		return err
	}
	_, err = abi.Apply(b, rep, &h.scratch)
	if r, ok := h.srv.(rpcwire.Releaser); ok {
		r.Release(rep)
	}
	return err
}
