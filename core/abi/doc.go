// Package abi is Weir's flat batch format, ABI v1: how a [flow.Batch]
// crosses a plugin boundary as one little-endian buffer, and how the plugin
// answers with keep/drop verdicts and field updates.
//
// The WASM host (core/wasmhost) writes a batch straight into guest memory
// and the RPC host sends the same bytes over gRPC; the guest side (sdk/wasm)
// uses the same package to decode, so both sides share one implementation.
// The layout is documented byte by byte in docs/abi.md.
//
// One exchange per batch:
//
//	host:  AppendBatch(dst, batch)          → batch buffer
//	guest: Decoder.Decode(buf, records)     → records, run the plugin
//	guest: Answer{Verdicts, Updates}.Append → answer buffer
//	host:  DecodeAnswer(buf); ApplyUpdates; batch.RetainMask(verdicts)
//
// # Notes
//   - Update indexes refer to the batch as sent: apply updates before the
//     verdicts ([Apply] does both in that order).
//   - Every decoder validates offsets and lengths: malformed input returns
//     an error wrapping [ErrMalformed], never a panic.
//   - The package compiles for GOOS=wasip1 and uses no cgo.
package abi
