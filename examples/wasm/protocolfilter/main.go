// Command protocolfilter is a WASM filter with the configuration and the
// behaviour of the built-in filter.protocol: it keeps the records whose
// protocolIdentifier (and, for groups, a transport port) is in a set.
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o protocolfilter.wasm .
//
// and use it as
//
//	processors:
//	  - wasm: {path: protocolfilter.wasm, config: {protocols: [tcp, udp, 1]}}
//
// Config, as filter.protocol's:
//
//	protocols: [tcp, "UDP", 1, web]   # keywords, numbers 0-255, group names
//	groups:                           # extra groups of protocol/ports
//	  mail: [{protocol: tcp, ports: [25, 587, "993-995"]}]
//
// No protocols keeps every record; entries that name nothing are ignored
// with a warning on stderr (which the host logs); if none is valid, every
// record is dropped. test/e2e checks that both filters give the same output.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/weir-flow/weir/plugins/filter/protocol/match"
	weir "github.com/weir-flow/weir/sdk/wasm"
)

// filter is the same matcher the built-in filter.protocol uses.
var filter *match.Matcher

func init() {
	weir.RegisterInit(configure)
	// The filter reads three fields; the host sends only those, by
	// column, and the filter loops over them itself.
	weir.RegisterBatchFilter(filterBatch, weir.Reads(weir.ProtocolIdentifier, weir.SourceTransportPort, weir.DestinationTransportPort))
}

// configure decodes the config from JSON, strictly, and builds the filter.
func configure(config []byte) error {
	var cfg match.Config
	if len(bytes.TrimSpace(config)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(config))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("protocolfilter config: %w", err)
		}
	}
	f, warnings, err := match.New(&cfg)
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "protocolfilter:", w)
	}
	if err != nil {
		return err
	}
	filter = f
	return nil
}

// filterBatch drops the records the filter rejects. The loop over the
// columns compiles to a few instructions per record; the per-record form,
// weir.RegisterFilter(func(r *weir.Record) bool { return filter.Keep(r) }, …),
// is simpler and about ten times slower in WebAssembly.
func filterBatch(b *weir.Batch) {
	f := filter
	if f.KeepAll {
		return
	}
	protos := b.Uint8(weir.ProtocolIdentifier)
	src := b.Uint16(weir.SourceTransportPort)[:len(protos)]
	dst := b.Uint16(weir.DestinationTransportPort)[:len(protos)]
	whole, ports := &f.Whole, &f.Ports
	for i, p := range protos {
		if whole[p] {
			continue
		}
		if ps := ports[p]; ps == nil || !ps.Has(src[i]) && !ps.Has(dst[i]) {
			b.Drop(i)
		}
	}
}

func main() {}
