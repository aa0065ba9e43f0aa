// Package aggregate is the "aggregate" processor, the aggregate mode of
// Antrea's Flow Aggregator and an RFC 7015 Intermediate Aggregation Process:
// it correlates the two halves of an inter-Node connection (one from each
// Node's FlowExporter) into one record with both sides' fields, merges the
// records of each flow into one entry per Flow Key, and exports the entry on
// its active and inactive timeouts, at the end of the flow, when the table
// is full, and on Shutdown (flowEndReason 2, 1, 3, 5 and 4, RFC 5102).
//
// The table is a pointer-free open-addressing hash over flat slabs of
// fixed-size entries (104 bytes per IPv4 flow, 120 per IPv6 flow with its
// /64 prefixes interned), so the Go GC does not scan it; strings
// (Pod names, policies, labels, and each flow's other IEs) are interned and
// reference-counted. It exports records later than the batches that brought
// them through plugin.Emitting.
package aggregate
