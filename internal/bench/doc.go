// Package bench measures a configured processor chain in-process: what
// `weir bench` runs.
//
// A [Chain] holds the processors of a configuration (and, with
// [ChainOptions.WithIO], its exporters) built from the plugin registry and
// started. [Chain.Run] feeds it copies of an [Input] — a seeded synthetic
// Antrea-like flow set ([Generate]) or the records of an IPFIX capture
// ([ReadCapture]) — one batch at a time in one goroutine, timing every
// stage's Process call, and a counting sink takes what leaves the chain.
// The [Result] gives, per stage and for the chain, records in/out,
// records/s, ns/record (p50/p99 over batches), allocations/record, and the
// peak RSS and Go heap of the run. [Compare] runs two chains alternately
// over several rounds and reports the ratio with its spread.
//
// # Notes
//   - Sources are never started: the feeder replaces them, also with
//     WithIO. Exporters are replaced by the counting sink unless WithIO.
//   - One goroutine runs the chain, whatever pipeline.workers says, so
//     figures are per core.
//   - Allocations are counted in a separate pass (runtime.ReadMemStats around
//     every Process call stops the world, which would skew the timings), over
//     at most [RunOptions.AllocBatches] batches. An RPC plugin's own
//     allocations happen in its process and are not counted; the host side
//     (gRPC, encoding) is.
//   - Peak RSS is the process's VmHWM (Linux), reset before each run where
//     the kernel allows it (/proc/self/clear_refs), so it includes the input
//     held in memory.
package bench
