package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugin"
	"github.com/weir-flow/weir/core/plugintest"
	"github.com/weir-flow/weir/plugins/filter/protocol"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
)

// configs are given to both filters as YAML would decode them.
var configs = map[string]string{
	"none":           `{}`,
	"tcp":            `{"protocols": ["tcp"]}`,
	"mixed":          `{"protocols": ["TCP", "udp", 1, "58"]}`,
	"web and dns":    `{"protocols": ["web", "dns"]}`,
	"custom group":   `{"protocols": ["mail", "icmp"], "groups": {"Mail": [{"protocol": "tcp", "ports": [25, "993-995"]}]}}`,
	"typo":           `{"protocols": ["tpc", "udp"]}`,
	"nothing valid":  `{"protocols": ["tpc", 300]}`,
	"override group": `{"protocols": ["web"], "groups": {"web": [{"protocol": "udp", "ports": [443]}]}}`,
	"number as text": `{"protocols": ["17"]}`,
}

// randomBatch has every protocol 0–255 and ports around the interesting
// ones.
func randomBatch(n int, seed uint64) *flow.Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	ports := []uint16{25, 53, 80, 443, 992, 993, 995, 996, 8080}
	b := flow.NewBatch(n)
	for range n {
		plugintest.Record(b, "10.0.0.1", "10.0.0.2", uint8(rng.IntN(256)),
			ports[rng.IntN(len(ports))], ports[rng.IntN(len(ports))], 1, 1)
	}
	return b
}

func TestSameAsBuiltin(t *testing.T) {
	for name, js := range configs {
		t.Run(name, func(t *testing.T) {
			var cfg protocol.Config
			if err := json.Unmarshal([]byte(js), &cfg); err != nil {
				t.Fatal(err)
			}
			builtin, err := protocol.New(&cfg, plugin.NopSettings(protocol.ID))
			if err != nil {
				t.Fatal(err)
			}
			var raw any
			_ = json.Unmarshal([]byte(js), &raw)
			h, err := wasmtest.New(raw)
			if err != nil {
				t.Fatal(err)
			}
			for seed := range uint64(4) {
				want, got := randomBatch(1000, seed), randomBatch(1000, seed)
				if err := builtin.Process(context.Background(), want); err != nil {
					t.Fatal(err)
				}
				if _, err := h.Process(got); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(summary(got)) != fmt.Sprint(summary(want)) {
					t.Fatalf("seed %d: wasm kept %d records, built-in %d; they differ", seed, got.Len(), want.Len())
				}
			}
		})
	}
}

func summary(b *flow.Batch) [][3]int {
	var out [][3]int
	for _, r := range b.Records {
		out = append(out, [3]int{int(r.ProtocolIdentifier), int(r.SourceTransportPort), int(r.DestinationTransportPort)})
	}
	return out
}

func TestRejectsLikeBuiltin(t *testing.T) {
	for name, js := range map[string]string{
		"map entry":         `{"protocols": [{"x": 1}]}`,
		"empty group":       `{"protocols": ["g"], "groups": {"g": []}}`,
		"group is protocol": `{"groups": {"tcp": [{"protocol": "udp"}]}}`,
		"bad port":          `{"groups": {"g": [{"protocol": "udp", "ports": ["70000"]}]}}`,
		"unknown key":       `{"protocolz": ["tcp"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			var raw any
			_ = json.Unmarshal([]byte(js), &raw)
			if _, err := wasmtest.New(raw); !errors.Is(err, wasmtest.ErrRejected) {
				t.Fatalf("err = %v, want ErrRejected", err)
			}
			var cfg protocol.Config
			if json.Unmarshal([]byte(js), &cfg) == nil && name != "unknown key" {
				if err := cfg.Validate(); err == nil {
					t.Fatalf("built-in accepts %s", js)
				}
			}
		})
	}
}
