// Package conntrack is the source.conntrack plugin: it does Antrea
// FlowExporter's job on a Node. It dumps the Linux conntrack table every
// poll_interval over ctnetlink (github.com/ti-mo/conntrack) and, with
// events, listens to new/destroy events; a connection store keyed by the
// conntrack original tuple and zone keeps each connection's forward and
// reverse totals and the totals last exported, and turns them into
// records with active and idle timeouts (flowEndReason 2 and 1) and a
// final record when the connection ends (3).
//
// Records carry Antrea FlowExporter's template: the IANA and reverse
// (RFC 5103) counters, flowStartSeconds/flowEndSeconds, tcpState and
// flowType, and Antrea's Pod, Service and policy IEs left empty for an
// enricher (enrich.podlabels) to fill. export.ipfix sends them as they
// are, so Antrea's Flow Aggregator or go-ipfix's collector takes them.
//
// # Notes
//   - Counters come from dumps and from destroy events: new events carry
//     zero counters, and a destroy after a timeout arrives lazily (tens of
//     seconds late), so timeouts are the store's own.
//   - Zones, mark and a filter.protocol directly after the source are
//     applied before a connection enters the store, and in the kernel's
//     dump request where ctnetlink allows (protocol: Linux ≥ 5.8; zone:
//     ≥ 6.8; mark: always).
//   - Dumps are decoded by Weir's own ctnetlink reader into one reused
//     value; the store costs 136 bytes per connection plus a 4-byte index
//     slot, and an unchanged connection costs a lookup and no allocation
//     per poll (README: benchmark figures). Events go through
//     ti-mo/conntrack.
package conntrack
