package weir_test

import (
	"fmt"

	"github.com/weir-flow/weir/core/flow"
	"github.com/weir-flow/weir/core/plugintest"
	weir "github.com/weir-flow/weir/sdk/wasm"
	"github.com/weir-flow/weir/sdk/wasm/wasmtest"
)

// A filter keeps TCP flows; wasmtest runs it as the host would.
func Example_filter() {
	weir.RegisterFilter(func(r *weir.Record) bool {
		return r.ProtocolIdentifier == 6
	}, weir.Reads(weir.ProtocolIdentifier))

	h, err := wasmtest.New(nil)
	if err != nil {
		panic(err)
	}
	b := plugintest.MixedBatch(8) // TCP, UDP, ICMP, ICMPv6, …
	removed, _ := h.Process(b)
	fmt.Println("removed", removed, "kept", b.Len(), "protocol", b.Records[0].ProtocolIdentifier)
	// Output: removed 6 kept 2 protocol 6
}

// An enricher labels flows; only the changed field crosses back.
func Example_enricher() {
	weir.RegisterEnricher(func(r *weir.Record) {
		if r.DestinationTransportPort == 443 {
			r.SetString(weir.DestinationPodLabels, `{"service":"https"}`)
		}
	}, weir.Reads(weir.DestinationTransportPort))

	h, err := wasmtest.New(nil)
	if err != nil {
		panic(err)
	}
	b := plugintest.MixedBatch(2) // port 80, then 443
	_, _ = h.Process(b)
	fmt.Printf("%q %q\n", b.Records[0].DestinationPodLabels, b.Records[1].DestinationPodLabels)
	// Output: "" "{\"service\":\"https\"}"
}

// Init receives the config as JSON and may reject it.
func Example_init() {
	weir.RegisterInit(func(config []byte) error {
		if string(config) != `{"ok":true}` {
			return fmt.Errorf("want ok: true, got %s", config)
		}
		return nil
	})
	weir.RegisterFilter(func(*weir.Record) bool { return true }, weir.Reads())

	_, err := wasmtest.New(map[string]any{"ok": false})
	fmt.Println(err)
	// Output: plugin rejected its config: want ok: true, got {"ok":false}
}

// A panic is recovered and reported, and the batch is left unchanged.
func Example_panic() {
	weir.RegisterInit(nil)
	weir.RegisterFilter(func(r *weir.Record) bool { panic("boom") }, weir.Reads())
	h, _ := wasmtest.New(nil)
	b := flow.NewBatch(1)
	b.Append()
	_, err := h.Process(b)
	fmt.Println(err != nil, b.Len())
	// Output: true 1
}

// A batch filter loops over columns itself: the fastest way through the
// sandbox. It keeps UDP flows to port 443 (QUIC).
func Example_batchFilter() {
	weir.RegisterInit(nil)
	weir.RegisterBatchFilter(func(b *weir.Batch) {
		protos := b.Uint8(weir.ProtocolIdentifier)
		ports := b.Uint16(weir.DestinationTransportPort)[:len(protos)]
		for i, p := range protos {
			if p != 17 || ports[i] != 443 {
				b.Drop(i)
			}
		}
	}, weir.Reads(weir.ProtocolIdentifier, weir.DestinationTransportPort))

	h, err := wasmtest.New(nil)
	if err != nil {
		panic(err)
	}
	b := plugintest.MixedBatch(8)
	removed, _ := h.Process(b)
	fmt.Println("removed", removed, "kept", b.Len(), b.Records[0].ProtocolIdentifier, b.Records[0].DestinationTransportPort)
	// Output: removed 6 kept 2 17 443
}

// A ByteSet, built once, tests a 1-byte column 64 records per word: here
// it keeps TCP and UDP.
func ExampleBatch_KeepIn() {
	var in [256]bool
	in[6], in[17] = true, true
	transport := weir.NewByteSet(&in)
	weir.RegisterInit(nil)
	weir.RegisterBatchFilter(func(b *weir.Batch) {
		b.KeepIn(b.Uint8(weir.ProtocolIdentifier), transport)
	}, weir.Reads(weir.ProtocolIdentifier))

	h, err := wasmtest.New(nil)
	if err != nil {
		panic(err)
	}
	b := plugintest.MixedBatch(8) // tcp udp icmp icmpv6 …
	removed, _ := h.Process(b)
	fmt.Println("removed", removed, "kept", b.Len())
	// Output: removed 4 kept 4
}
