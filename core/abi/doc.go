// Package abi owns every byte layout that crosses a plugin boundary, and
// the one implementation of each (docs/abi.md describes them byte by byte):
//
//   - the batch buffer, ABI v1: a header, then records as fixed blocks or
//     as columns ([FlagColumns]), then a data section ([AppendBatchMask],
//     [Encoder], [ParseBatch], [Decoder]);
//   - the packed batch ([MagicPacked], [PackedLayout], [ParsePacked]): the
//     RPC transport's batch, only the masked fields in their natural widths;
//   - the answer ([MagicAnswer], [Answer]) and its field updates
//     ([Updates]), and the compact answer ([MagicCompact],
//     [CompactWriter]), the RPC form with a per-batch string table;
//   - the manifest ([Manifest]), a plugin's reply to init.
//
// The WASM host (core/wasmhost) writes batch buffers into guest memory and
// the RPC host (core/rpchost) sends packed batches over gRPC
// (core/rpcwire carries them); both apply answers with [Apply]. The
// SDKs (sdk/wasm, sdk/rpc) decode with this package and answer with
// [Updates.Diff] or [CompactWriter.Diff]. Records are read and written
// only through core/flow's accessors.
//
// One exchange per batch:
//
//	host:  AppendBatchMask or PackedLayout.Append → batch buffer
//	guest: Decoder.Record or Packed.Record        → records, run the plugin
//	guest: Updates.Diff / CompactWriter.Diff       → answer buffer
//	host:  Apply(batch, answer, scratch)           → updates, then verdicts
//
// # Notes
//   - Update indexes refer to the batch as sent: [Apply] applies updates
//     before the verdicts.
//   - Every decoder validates offsets and lengths: malformed input returns
//     an error wrapping [ErrMalformed], never a panic.
//   - The package compiles for GOOS=wasip1 and uses no cgo.
package abi
