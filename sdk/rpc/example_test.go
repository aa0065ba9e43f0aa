package rpc_test

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/sdk/rpc"
)

// An enricher: it names the node of every record's source. A real plugin
// passes the same Plugin to rpc.Serve from main; TestHost runs it
// in-process over the same encoding.
func Example_enricher() {
	var node string
	p := rpc.Plugin{
		Name: "nodenamer",
		Init: func(config []byte) error {
			var cfg struct {
				Node string `json:"node"`
			}
			if err := json.Unmarshal(config, &cfg); err != nil {
				return err
			}
			node = cfg.Node
			return nil
		},
		Enrich: func(r *flow.Record) { r.SetString(flow.SourceNodeName, node) },
		// The plugin reads nothing; Weir sends only presence bits.
		Reads: []flow.FieldID{},
	}
	h, err := rpc.NewTestHost(p, map[string]any{"node": "edge-1"})
	if err != nil {
		panic(err)
	}
	b := flow.NewBatch(2)
	plugintest.Record(b, "10.0.0.1", "10.0.0.2", 6, 40000, 443, 3, 180)
	plugintest.Record(b, "fd00::1", "fd00::2", 17, 5353, 53, 1, 80)
	if err := h.Process(b); err != nil {
		panic(err)
	}
	for _, r := range b.Records {
		fmt.Println(r.SourceAddress, r.SourceNodeName, r.PacketDeltaCount)
	}
	// Output:
	// 10.0.0.1 edge-1 3
	// fd00::1 edge-1 1
}

// A filter: it drops flows from a blocked prefix. It reads only the
// source address.
func Example_filter() {
	blocked := netip.MustParsePrefix("10.66.0.0/16")
	p := rpc.Plugin{
		Filter: func(r *flow.Record) bool { return !blocked.Contains(r.SourceAddress) },
		Reads:  []flow.FieldID{flow.SourceAddress},
	}
	h, err := rpc.NewTestHost(p, nil)
	if err != nil {
		panic(err)
	}
	b := flow.NewBatch(3)
	plugintest.Record(b, "10.66.1.1", "10.0.0.2", 6, 1, 80, 1, 60)
	plugintest.Record(b, "10.1.1.1", "10.0.0.2", 6, 2, 80, 1, 60)
	plugintest.Record(b, "10.66.9.9", "10.0.0.2", 6, 3, 80, 1, 60)
	if err := h.Process(b); err != nil {
		panic(err)
	}
	for _, r := range b.Records {
		fmt.Println(r.SourceAddress, r.SourceTransportPort)
	}
	// Output:
	// 10.1.1.1 2
}

// A config the plugin rejects is an error from Init, reported by Weir at
// start and by `weir validate`.
func Example_rejectedConfig() {
	p := rpc.Plugin{
		Init:   func([]byte) error { return fmt.Errorf("table: required") },
		Enrich: func(*flow.Record) {},
	}
	_, err := rpc.NewTestHost(p, map[string]any{})
	fmt.Println(err)
	// Output:
	// table: required
}
