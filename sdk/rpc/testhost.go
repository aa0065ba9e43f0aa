package rpc

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weir-flow/weir/core/abi"
	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/rpchost/wire"
)

// TestHost runs a plugin in-process the way Weir's rpc processor runs it
// out of process: same Init request, same ABI buffers, same answer
// handling; only the process and gRPC are left out. Use it to test a
// plugin with `go test`. It is not safe for concurrent use.
type TestHost struct {
	srv    wire.Server
	man    abi.Manifest
	packed bool
	buf    []byte
	pkt    []byte
	ans    abi.Answer
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
	req, err := json.Marshal(wire.InitRequest{ABI: abi.Version, Name: "test", Config: raw})
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
	return &TestHost{srv: srv, man: man, packed: wire.Packable(man.Reads)}, nil
}

// Manifest returns what the plugin declared at Init.
func (h *TestHost) Manifest() abi.Manifest { return h.man }

// Process sends b through the plugin and applies its answer to b: the
// updated fields, then the verdicts. On error b is unchanged.
func (h *TestHost) Process(b *flow.Batch) error {
	h.buf = abi.AppendBatchMask(h.buf[:0], b, h.man.Reads)
	payload := h.buf
	if h.packed {
		var err error
		if h.pkt, err = wire.Pack(h.pkt[:0], h.buf); err != nil {
			return err
		}
		payload = h.pkt
	}
	rep, err := h.srv.Process(context.Background(), payload)
	if err != nil {
		return err
	}
	if err := abi.DecodeAnswer(rep, &h.ans); err != nil {
		return err
	}
	_, err = abi.Apply(b, &h.ans)
	return err
}
