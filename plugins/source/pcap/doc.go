// Package pcap is the source.pcap plugin: it replays the IPFIX messages of a
// pcap or pcapng capture file, at full speed or at the capture's pace, so a
// pipeline runs offline on recorded exports.
//
// It reads the file with gopacket's pure-Go pcapgo (no libpcap, no cgo) and
// understands the Ethernet (with VLAN tags), Linux cooked (SLL and SLL2),
// raw IP and BSD loopback link types, and IPv4 and IPv6. It takes IPFIX over
// UDP only: TCP streams in the capture are skipped and counted, as are IP
// fragments and packets cut short by the capture's snap length.
//
// Each UDP payload is one IPFIX message from the exporter at the packet's
// source address and port. One decoder reads the whole file in order, and
// its clock is the capture's: data sets waiting for a template expire by
// capture time, so a replay gives the same records at any speed.
//
// The source is finite ([plugin.Finite]): Done is closed after the last
// batch is emitted, and `weir run` exits when the file is done.
package pcap
