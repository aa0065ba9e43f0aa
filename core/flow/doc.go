// Package flow is Weir's canonical flow record and the batch that carries
// records between pipeline stages.
//
// A [Record] has typed fields for the IPFIX Information Elements (IEs) that
// stages commonly read or write (the IPv4/IPv6 5-tuple, times, counters and
// their reverse twins, and the Antrea enterprise IEs, PEN 56506). Every other
// IE is kept verbatim in [Record.Extra] so that re-exporting a record never
// loses an IE, known or unknown.
//
// Records travel in a [Batch]. See docs/record.md for the model and the flat
// layout used across the WASM and RPC plugin boundaries.
package flow
