// Command sdkpanic is an SDK filter that panics on records of protocol
// 17, which the SDK recovers and reports.
package main

import weir "github.com/weir-flow/weir/sdk/wasm"

func init() {
	weir.RegisterFilter(func(r *weir.Record) bool {
		if r.ProtocolIdentifier == 17 {
			panic("sdkpanic: udp")
		}
		return true
	}, weir.Reads(weir.ProtocolIdentifier))
}

func main() {}
