// Package rpc is the SDK for Weir's out-of-process plugins: a filter or
// enricher written as its own program, run by Weir's "rpc" processor over
// hashicorp/go-plugin and gRPC.
//
// A plugin is a main package that describes itself with a [Plugin] and calls
// [Serve]:
//
//	func main() {
//		rpc.Serve(rpc.Plugin{
//			Name:   "tagger",
//			Enrich: func(r *flow.Record) { r.SetString(flow.SourceNodeName, "edge-1") },
//		})
//	}
//
// and is configured in Weir as
//
//	processors:
//	  - rpc: {cmd: ./tagger, config: {any: value}}
//
// The callbacks have the shape of the WASM SDK's: Filter keeps or drops a
// record, Enrich modifies it, Init receives the processor's `config:` as
// JSON. Weir sends whole batches (one message each on a gRPC stream,
// several in flight); the SDK decodes each record, runs the callbacks and
// sends back only the verdicts and the fields that changed, each distinct
// string once per batch (docs/plugins-rpc.md).
//
// [NewTestHost] runs a plugin in-process over the same encoding, so a
// plugin is tested with plain `go test`.
//
// # Notes
//   - Filter and Enrich are called from several goroutines at once (one per
//     batch in flight) and must be safe for concurrent use. A record and
//     its Extra values are valid only during the call.
//   - Serve runs the plugin on half the machine's CPUs unless GOMAXPROCS
//     is set (the stage's env: sets it): Weir needs the rest.
//   - A panic in a callback is recovered and reported; Weir then restarts
//     the plugin process and handles that batch per its on_error.
//   - The plugin exits when Weir stops it or when Weir's process dies.
//   - Write logs with [Logger]: they reach Weir's log under the plugin's
//     name. Anything printed to stdout or stderr is logged too, at info.
package rpc
