#!/usr/bin/env bash
# make-capture.sh — regenerate test/testdata/netns-traffic.pcap (raw
# packets, what the README feeds softflowd) and softflowd-ipfix.pcap (the
# IPFIX softflowd exports for it), the project's own real captures.
#
#   1. Two network namespaces joined by a veth pair exchange real traffic:
#      HTTP over TCP (IPv4 and IPv6, python3 http.server + curl), UDP
#      request/reply (IPv4 and IPv6) and ICMP/ICMPv6 echo. tcpdump records
#      it (traffic.pcap, kept as netns-traffic.pcap: headers only, 128-byte
#      snaplen, so the file stays small).
#   2. softflowd reads that capture (-r) and exports its flows as IPFIX
#      (-v 10) to a UDP port on loopback, while tcpdump records the IPFIX
#      datagrams: that is softflowd-ipfix.pcap.
#
# Usage (as root): test/testdata/make-capture.sh [--from PCAP] [OUT]
#   --from PCAP  skip step 1 and turn PCAP (e.g. ../shared/testdata/
#                netns-mix.pcap) into IPFIX instead.
#   OUT          output file (default: softflowd-ipfix.pcap beside this
#                script).
# Needs: ip (iproute2), tcpdump, softflowd, python3, curl (no ping).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
from=""
if [[ "${1:-}" == "--from" ]]; then
	from="$2"
	shift 2
fi
out="${1:-$here/softflowd-ipfix.pcap}"

if [[ $EUID -ne 0 ]]; then
	echo "make-capture.sh: run as root (network namespaces, tcpdump)" >&2
	exit 1
fi
for tool in ip tcpdump softflowd python3 curl; do
	command -v "$tool" >/dev/null || { echo "make-capture.sh: $tool not found" >&2; exit 1; }
done

tmp="$(mktemp -d)"
nsa="weircap-a-$$"
nsb="weircap-b-$$"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$nsa" 2>/dev/null || true
	ip netns del "$nsb" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# wait_file FILE: wait until tcpdump has written its file header.
wait_file() {
	for _ in $(seq 50); do
		[[ -s "$1" ]] && return 0
		sleep 0.1
	done
	echo "make-capture.sh: $1 never appeared" >&2
	return 1
}

if [[ -z "$from" ]]; then
	ip netns add "$nsa"
	ip netns add "$nsb"
	ip link add wa netns "$nsa" type veth peer name wb netns "$nsb"
	ip -n "$nsa" addr add 10.78.0.1/24 dev wa
	ip -n "$nsb" addr add 10.78.0.2/24 dev wb
	ip -n "$nsa" addr add fd78::1/64 dev wa nodad
	ip -n "$nsb" addr add fd78::2/64 dev wb nodad
	for ns in "$nsa" "$nsb"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$nsa" link set wa up
	ip -n "$nsb" link set wb up

	mkdir -p "$tmp/www"
	echo "hello from weir's capture" >"$tmp/www/index.html"
	head -c 20000 /dev/zero | tr '\0' 'w' >"$tmp/www/big.txt"

	ip netns exec "$nsa" tcpdump -i wa -s 128 -U -w "$tmp/traffic.pcap" 2>/dev/null &
	pids+=($!)
	wait_file "$tmp/traffic.pcap"
	(cd "$tmp/www" && exec ip netns exec "$nsb" python3 -m http.server 8080 --bind :: >/dev/null 2>&1) &
	pids+=($!)
	# A UDP echo service on port 5353, IPv4 and IPv6.
	ip netns exec "$nsb" python3 -c '
import socket, select
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s4.bind(("0.0.0.0", 5353))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); s6.bind(("::", 5353))
while True:
    for s in select.select([s4, s6], [], [])[0]:
        data, addr = s.recvfrom(2048); s.sendto(data.upper(), addr)
' &
	pids+=($!)
	for _ in $(seq 50); do
		ip netns exec "$nsa" curl -s -o /dev/null http://10.78.0.2:8080/ && break
		sleep 0.1
	done
	ip netns exec "$nsa" curl -s -o /dev/null http://10.78.0.2:8080/big.txt
	ip netns exec "$nsa" curl -s -o /dev/null -g 'http://[fd78::2]:8080/'
	ip netns exec "$nsa" curl -s -o /dev/null -g 'http://[fd78::2]:8080/big.txt'
	ip netns exec "$nsa" python3 -c '
import socket
for fam, addr in ((socket.AF_INET, "10.78.0.2"), (socket.AF_INET6, "fd78::2")):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
    for i in range(3):
        s.sendto(b"weir query %d" % i, (addr, 5353)); s.recvfrom(2048)
'
	# ICMP and ICMPv6 echo from raw sockets (no ping binary needed); the
	# kernel in the other namespace answers.
	ip netns exec "$nsa" python3 -c '
import socket, struct, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s4.settimeout(2)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); s6.settimeout(2)
for seq in range(3):
    body = struct.pack("!HH", 0x5745, seq) + b"weir echo"
    s4.sendto(struct.pack("!BBH", 8, 0, csum(b"\x08\x00\x00\x00" + body)) + body, ("10.78.0.2", 0)); s4.recv(2048)
    s6.sendto(struct.pack("!BBH", 128, 0, 0) + body, ("fd78::2", 0)); s6.recv(2048)
    time.sleep(0.2)
'
	sleep 0.5
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=()
	from="$tmp/traffic.pcap"
	raw="$(dirname "$out")/netns-traffic.pcap"
	cp "$from" "$raw"
	echo "make-capture.sh: wrote $raw ($(stat -c %s "$raw") bytes), the raw traffic"
fi

# A free UDP port on loopback for softflowd's exports.
port="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
tcpdump -i lo -s 0 -U -w "$tmp/ipfix.pcap" "udp and dst port $port" 2>/dev/null &
pids+=($!)
wait_file "$tmp/ipfix.pcap"
sleep 0.5
softflowd -r "$from" -v 10 -n "127.0.0.1:$port" >/dev/null
sleep 1
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()
cp "$tmp/ipfix.pcap" "$out"
echo "make-capture.sh: wrote $out ($(stat -c %s "$out") bytes) from $(basename "$from") via softflowd to udp port $port"
