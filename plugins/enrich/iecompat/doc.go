// Package iecompat is the "enrich.iecompat" processor: declarative
// Information-Element compatibility shims that let exporters and collectors
// of different versions work together.
//
// A shim is selected per record by the exporter address (or CIDR), the
// observation domain and the IEs present or absent, and applies actions in
// order: rename (renumber) an IE, change its width, drop it, derive it from
// others, or set a default when it is missing. Shims come from the plugin
// config or from shim files (configs/shims/antrea-*.yaml ship with Weir).
//
// An action reads and writes an IE wherever the record keeps it: a typed
// field of [flow.Record] or a verbatim IE in [flow.Record.Extra]; renaming an
// IE onto a typed field moves it out of Extra. Shims are compiled once into
// per-record operations with no map lookups, and steady state does not
// allocate.
//
// The plugin works on records. The codec (core/ipfix) already keeps every
// unknown IE verbatim and never rejects a template for one, and it owns
// template bookkeeping (per exporter and observation domain, withdrawal and
// expiry, RFC 7011 §8).
package iecompat
