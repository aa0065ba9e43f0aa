// Package icmpprobe is the source.icmpprobe plugin, Antrea's
// NodeLatencyMonitor as a Weir source: it sends ICMP echo requests (IPv4
// and IPv6) to configured targets, or to every Node of a Kubernetes
// cluster, every interval, and reports per target the RTT minimum, mean,
// maximum and last (milliseconds), the requests sent, the replies received,
// the requests lost and when the last reply came — as flow records (one
// per target every report_interval) and as Prometheus gauges.
//
// As root it uses raw ICMP sockets; otherwise unprivileged ICMP sockets
// ("udp4"/"udp6", allowed by net.ipv4.ping_group_range), on which the
// kernel rewrites the echo identifier, so replies are matched by sequence
// number and source address.
//
// With firewall.manage it installs, through nftables or iptables (legacy or
// iptables-nft, github.com/coreos/go-iptables), the narrow rules that
// let echo requests out and echo replies in (and IPv6 neighbour discovery)
// on one interface only, tagged with the comment "weir-icmpprobe IFACE",
// and removes them at shutdown; tagged rules left by a crash are replaced
// at the next start.
//
// Metrics are labelled by target name (the Node name, a named_targets name
// or targets[I]) and family, never by address. The RTT, loss and
// last-reply IEs of the records are Weir-local IEs in Antrea's PEN 56506
// (elements 32010-32015, named in core/ipfix/local.go).
package icmpprobe
