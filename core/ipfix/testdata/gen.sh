#!/bin/sh
# Regenerates testdata/softflowd/: softflowd's IPFIX export of
# ../shared/testdata/netns-mix.pcap, one msgNN.bin per UDP datagram
# (captured by ./capture, a Go UDP listener), plus records.txt, the number
# of data records tshark decodes from a tcpdump of the same run (options
# records excluded), which softflowd_test.go compares with ours.
#
# Needs: softflowd, tcpdump, tshark (Debian packages of the same names), go.
# Run from anywhere: sh core/ipfix/testdata/gen.sh
set -eu
cd "$(dirname "$0")"
root=$(git rev-parse --show-toplevel)
pcap=${PCAP:-$root/../shared/testdata/netns-mix.pcap}
port=${PORT:-47390}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf softflowd
go build -o "$tmp/capture" ./capture
"$tmp/capture" -listen 127.0.0.1:$port -out softflowd -idle 3s &
cap=$!
tcpdump -i lo -w "$tmp/export.pcap" -U udp port $port 2>/dev/null &
dump=$!
sleep 2
# -r: read the capture, -v 10: IPFIX, -n: collector; softflowd exports
# every flow when the file ends.
softflowd -r "$pcap" -v 10 -n 127.0.0.1:$port >/dev/null
wait $cap
sleep 1
kill $dump
wait $dump || true
# Count "Flow N" entries of data sets; template 256 is softflowd's options
# template (meteringProcessId scope, systemInitTimeMilliseconds).
tshark -r "$tmp/export.pcap" -d udp.port==$port,cflow -V 2>/dev/null | awk '
	/FlowSet Id: \(Data\) \(/ { id = $NF; gsub(/[()]/, "", id); next }
	/^ *Flow [0-9]+$/ && id != 256 { n++ }
	END { print n }' > softflowd/records.txt
echo "data records (tshark): $(cat softflowd/records.txt)"
