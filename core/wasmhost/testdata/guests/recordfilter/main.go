// Command recordfilter keeps TCP and UDP flows through the SDK's
// per-record API (weir.RegisterFilter), for benchmarks against
// protocolfilter's batch API.
package main

import weir "github.com/weir-flow/weir/sdk/wasm"

func init() {
	weir.RegisterFilter(func(r *weir.Record) bool {
		return r.ProtocolIdentifier == 6 || r.ProtocolIdentifier == 17
	}, weir.Reads(weir.ProtocolIdentifier, weir.SourceTransportPort, weir.DestinationTransportPort))
}

func main() {}
