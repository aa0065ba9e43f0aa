// Package wasmhost is the "wasm" processor: it runs a sandboxed
// WebAssembly module, built with the guest SDK (sdk/wasm) or any language
// that implements ABI v1 (docs/abi.md), as a filter or an enricher.
//
//	processors:
//	  - wasm: {path: protocolfilter.wasm, config: {protocols: [tcp]}, on_error: fail-open}
//
// The module runs on wazero (no cgo), compiled to native code once and
// cached on disk. A whole batch crosses the boundary in one call: the host
// writes it into guest memory as one flat buffer ([abi.AppendBatchMask],
// limited to the fields the module reads) and applies the module's answer
// (keep/drop bitmap and field updates).
//
// # Notes
//   - Sandbox: no filesystem, environment or network unless allow grants
//     them; a memory ceiling per instance (memory_limit, table_limit); a deadline per
//     batch (timeout) that stops an endless loop. The module is rewritten
//     before compiling (internal/interrupt) with a countdown at every loop
//     header that calls the host every few thousand checks, where the
//     deadline is enforced; modules the rewriter does not handle fall back
//     to wazero's own, slower, checks.
//   - A trap, panic, out-of-memory, timeout or malformed answer never
//     reaches the pipeline: the batch is left unchanged, the failure is
//     counted in weir_wasm_errors_total{reason} and returned as a
//     *plugin.Error (the engine applies on_error and logs it), and the
//     instance is recreated.
//   - Process is safe for concurrent use: a pool of instances (instances,
//     default GOMAXPROCS) serves parallel batches.
//   - `weir validate` calls [Config.Check], which loads the module and
//     passes it its config, so a bad module or config fails there.
package wasmhost
