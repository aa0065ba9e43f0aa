// Package packetcapture is the source.packetcapture plugin, Antrea's
// PacketCapture as a Weir source: it captures the packets of one
// conversation on one interface, in one direction or both, writes them to a
// pcapng file, and summarises them as flow records into the pipeline.
//
// The spec (interface, a 5-tuple whose fields are all optional, a direction,
// and packets/bytes/duration limits) becomes a pcap-filter(7) expression,
// compiled by libpcap's own compiler (so a spec matches exactly what tcpdump
// matches for the same expression) and attached to an AF_PACKET socket
// (TPACKET_V3 ring, gopacket/afpacket). The expression and the program are
// logged at debug level.
//
// Files are pcapng (gopacket/pcapgo NgWriter) with one interface, whose
// description carries the filter expression; they rotate by size and count.
// When the capture ends, one flow record per 5-tuple is emitted (one per
// direction, or an RFC 5103 biflow with direction: both).
//
// The source is finite ([plugin.Finite]): when its limit is reached and its
// records are emitted Done closes, and `weir run` ends when it is the only
// source.
//
// # Notes
//   - Needs CAP_NET_RAW, Linux, and a cgo build with libpcap (the filter
//     compiler); without cgo New returns ErrNoCompiler.
package packetcapture
