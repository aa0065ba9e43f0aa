// Package rpchost is the "rpc" processor: it runs a filter or enricher as
// its own process, on hashicorp/go-plugin with gRPC, behind the same
// [plugin.Processor] interface as built-in and WASM plugins.
//
//	processors:
//	  - rpc: {cmd: examples/rpc/subnetlabels/subnetlabels, config: {table: subnets.csv}}
//
// A plugin is a program written with sdk/rpc. Start launches it (go-plugin
// handshake with a magic cookie and protocol version, AutoMTLS, optional
// SHA-256 pinning), sends it the `config:` as JSON and reads its ABI
// manifest: its kind and the record fields it reads. Each Process call
// then sends the batch as one message on a long-lived bidirectional gRPC
// stream, an ABI v1 buffer (docs/abi.md) packed to the fields the plugin
// reads, and waits for the answer with the same sequence number: the
// keep/drop verdicts and the changed fields (a compact answer, each
// distinct string once). Up to in_flight batches are out at once, so the
// engine keeps working while one is out.
//
// # Faults
//
// A plugin that crashes (or panics), does not answer within timeout or
// answers garbage is killed and restarted with exponential back-off
// (restart_backoff). Process leaves the batch unchanged and returns a
// *plugin.Error with the reason, wrapping a *BatchError; the engine
// applies the stage's on_error (fail-open passes the batch on, fail-closed
// drops it). weir_rpc_errors_total{reason} counts the batch. A batch that
// arrives while a restart is due within its timeout waits for it; other
// batches fail at once with reason "unavailable". No call waits longer
// than timeout.
//
// # Notes
//   - The plugin's own logs (sdk/rpc's Logger, hclog JSON on its stderr)
//     reach the processor's slog logger at their level, with the attribute
//     cmd=<binary name>; other stdout/stderr lines are logged at info.
//   - The plugin dies with Weir: the kernel SIGKILLs it when Weir dies
//     (PR_SET_PDEATHSIG on Linux) and the SDK exits when its parent
//     changes. Shutdown asks it to exit, then kills it when its ctx ends.
//   - A relative cmd resolves against the config file's directory, then
//     the working directory; WEIR_BASE_DIR tells the plugin the former.
//   - [Config.Check] starts and stops the plugin, for `weir validate`.
package rpchost
