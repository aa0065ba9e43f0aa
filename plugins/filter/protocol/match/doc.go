// Package match is filter.protocol's configuration and matcher, free of
// the plugin machinery so that a WASM guest (examples/wasm/protocolfilter)
// compiles the very same logic: IANA protocol keywords and numbers, the
// built-in groups "web" and "dns", user port groups, and an O(1) verdict
// per record from a [256]bool plus per-protocol port bitmaps.
package match
