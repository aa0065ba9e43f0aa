// Package all registers every built-in plugin, and the processors that run
// WASM modules ("wasm") and out-of-process plugins ("rpc"). Import it for
// its side effects: `import _ "github.com/weir-flow/weir/plugins/all"`.
//
// Build tags leave plugins out of a smaller binary: weir_nokube drops
// enrich.podlabels (and client-go with it).
package all

import (
	_ "github.com/weir-flow/weir/core/rpchost"
	_ "github.com/weir-flow/weir/core/wasmhost"
	_ "github.com/weir-flow/weir/plugins/aggregate"
	_ "github.com/weir-flow/weir/plugins/enrich/iecompat"
	_ "github.com/weir-flow/weir/plugins/export/clickhouse"
	_ "github.com/weir-flow/weir/plugins/export/discard"
	_ "github.com/weir-flow/weir/plugins/export/ipfix"
	_ "github.com/weir-flow/weir/plugins/export/jsonl"
	_ "github.com/weir-flow/weir/plugins/export/kafka"
	_ "github.com/weir-flow/weir/plugins/export/postgres"
	_ "github.com/weir-flow/weir/plugins/filter/expr"
	_ "github.com/weir-flow/weir/plugins/filter/protocol"
	_ "github.com/weir-flow/weir/plugins/proxy"
	_ "github.com/weir-flow/weir/plugins/source/conntrack"
	_ "github.com/weir-flow/weir/plugins/source/icmpprobe"
	_ "github.com/weir-flow/weir/plugins/source/ipfix"
	_ "github.com/weir-flow/weir/plugins/source/kafka"
	_ "github.com/weir-flow/weir/plugins/source/packetcapture"
	_ "github.com/weir-flow/weir/plugins/source/pcap"
)
