// Package ipfix is Weir's IPFIX codec (RFC 7011): a zero-allocation
// Decoder from IPFIX messages to [flow.Record] batches, an Encoder from
// records to messages with templates derived from the records, TCP framing
// ([ReadMessage]) and IE registry helpers ([LookupIE], [FormatValue]).
//
// The Decoder supports several sets per message and templates per set,
// options templates, withdrawals (§8.1), variable-length IEs (§7),
// reduced-size encoding (§6.2), enterprise IEs, set padding, templates
// scoped per transport session and observation domain (§8.4), every time
// form of flowStart/flowEnd, and holds data sets whose template has not
// arrived yet. Malformed parts are counted in [Stats] and reported as
// [*DecodeError]s while every good set is still decoded.
//
// See docs/ipfix.md for the design and performance figures.
package ipfix
