// Package weir is the guest SDK for Weir's WASM plugins: a plugin author
// writes a filter or an enricher over [Record] in standard Go, builds it
// with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o X.wasm .
//
// and declares it in a pipeline as `- wasm: {path: X.wasm, config: {...}}`.
//
// A plugin registers itself from an init function:
//
//	func init() {
//		weir.RegisterInit(func(config []byte) error { return json.Unmarshal(config, &cfg) })
//		weir.RegisterFilter(keep, weir.Reads(weir.ProtocolIdentifier))
//	}
//
// The SDK exports the ABI v1 functions (docs/abi.md) and handles the batch
// buffer: the host writes a whole batch into guest memory, by column, and
// makes one call per batch; the SDK decodes it into reused records, calls
// the plugin for each record and answers with a keep/drop bitmap and, for
// enrichers, the fields that changed.
//
// A filter that loops over the batch itself ([RegisterBatchFilter], over
// [Batch] columns) avoids the call per record and runs tens of times
// faster; one that works 64 records at a time ([Batch.Verdicts],
// [ByteSet]) runs at about a nanosecond per record.
//
// Test a plugin with plain `go test` through the host emulator in
// sdk/wasm/wasmtest, which runs the same encode/decode path as the host.
//
// # Notes
//   - The host calls a module from one goroutine at a time and runs several
//     instances for parallelism: package-level state is per instance.
//   - A panic in the plugin is recovered by the SDK and reported to the
//     host, which recreates the instance; the engine applies the stage's
//     on_error policy to the batch.
//   - The module has no filesystem, network or environment unless the
//     pipeline's config grants them (allow.fs, allow.env).
//   - Build with -buildmode=c-shared: the host runs the module's
//     _initialize, which runs the package init functions, then calls the
//     exports; main is never called.
package weir
