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
	"math/bits"
	"os"

	"github.com/weir-flow/weir/plugins/filter/protocol/match"
	weir "github.com/weir-flow/weir/sdk/wasm"
)

// filter is the same matcher the built-in filter.protocol uses; whole and
// ported are the protocols it keeps on every port and on some ports only.
var (
	filter        *match.Matcher
	whole, ported *weir.ByteSet
	// Bitmaps reused from batch to batch.
	wholeBits, portedBits []uint64
)

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
	var hasPorts [256]bool
	for p, ps := range f.Ports {
		hasPorts[p] = ps != nil
	}
	whole, ported = weir.NewByteSet(&f.Whole), weir.NewByteSet(&hasPorts)
	// Ports matter only to groups with ports: without them the host need
	// not send them.
	if f.AnyPort {
		weir.SetReads(weir.Reads(weir.ProtocolIdentifier, weir.SourceTransportPort, weir.DestinationTransportPort))
	} else {
		weir.SetReads(weir.Reads(weir.ProtocolIdentifier))
	}
	return nil
}

// filterBatch drops the records the filter rejects, 64 at a time: a record
// is kept if its protocol is kept whole, or if its protocol is kept on some
// ports and one of its ports is among them. The per-record form,
// weir.RegisterFilter(func(r *weir.Record) bool { return filter.Keep(…) }, …),
// is simpler and about twenty times slower in WebAssembly.
func filterBatch(b *weir.Batch) {
	f := filter
	if f.KeepAll {
		return
	}
	protos := b.Uint8(weir.ProtocolIdentifier)
	if !f.AnyPort {
		b.KeepIn(protos, whole)
		return
	}
	src := b.Uint16(weir.SourceTransportPort)[:len(protos)]
	dst := b.Uint16(weir.DestinationTransportPort)[:len(protos)]
	wholeBits = whole.Select(wholeBits, protos)
	portedBits = ported.Select(portedBits, protos)
	verdicts := b.Verdicts()
	for k := range verdicts {
		keep := wholeBits[k]
		for c := portedBits[k] &^ keep; c != 0; c &= c - 1 {
			i := k<<6 | bits.TrailingZeros64(c)
			if ps := f.Ports[protos[i]]; ps.Has(src[i]) || ps.Has(dst[i]) {
				keep |= 1 << (i & 63)
			}
		}
		verdicts[k] &= keep
	}
}

func main() {}
