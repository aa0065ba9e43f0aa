// Package protocol is the "filter.protocol" processor: it keeps the records
// whose protocolIdentifier (IE 4) is in a configured set of IANA protocols,
// optionally narrowed to transport ports through named groups ("web" is
// TCP ports 80 and 443), and drops the rest.
//
// Lookup is O(1) per record: a 256-entry table for whole protocols and, for
// protocols that appear only with ports, a 65536-bit port bitmap. A record
// matches a port group when its sourceTransportPort (IE 7) or its
// destinationTransportPort (IE 11) is in the group's ports, so both
// directions of a conversation match.
package protocol
