#!/usr/bin/env bash
# ingest.sh — loopback UDP ingest bench: weir next to goflow2 v2.2.6 and
# pmacct's nfacctd on the same paced IPFIX stream.
#
# For every collector and offered rate, a fresh collector is started on a
# free loopback port, test/bench/cmd/ipfixgen offers RATE records/s for
# DURATION seconds (30-record Antrea-like messages from 4 sockets), the
# collector gets 2 s to finish, and the script reports:
#   received   records the collector wrote (JSON lines, or its own counter
#              for the cheapest binary outputs)
#   loss %     1 - received/sent (negative = duplicates)
#   cpu s/M    CPU seconds (utime+stime from /proc/PID/stat, the process and
#              its children) per million records received, from the first
#              record sent until the end of the drain
#   rcvbuf Δ   the kernel's UDP RcvbufErrors/InErrors (/proc/net/snmp)
#              during the run: datagrams dropped before any collector saw
#              them
# then, per collector, the highest offered rate with < 0.1 % loss.
#
# Collectors (-c, default all):
#   weir          weir's engine and source.ipfix (128 MiB buffers as nfacctd, 2
#                 SO_REUSEPORT readers) → export.count, a counting sink
#                 (test/bench/cmd/weircount: weir's pipeline plus that
#                 bench-only exporter); counted by the sink
#   weir-null     the weir binary → export.jsonl to /dev/null: every record
#                 still encoded as JSON; counted by
#                 weir_source_ipfix_records_total
#   weir-json     the weir binary writing JSON lines to a file, counted by
#                 lines
#   goflow2       goflow2 -format=bin to /dev/null, default 2 workers;
#                 counted by goflow2_flow_process_nf_flowset_records_total
#   goflow2-json  goflow2 -format=json to a file, counted by lines
#   nfacctd       nfacctd, print plugin writing JSON to a file, aggregated by
#                 protocol, counted as the sum of packets (every record has
#                 packetDeltaCount 1); 128 MiB socket buffer
#                 (nfacctd_pipe_size, net.core.rmem_max raised for the run
#                 and restored) and large plugin pipes
#
# Usage: test/bench/ingest.sh [-d SECONDS] [-r "RATE ..."] [-c "NAME ..."]
# Needs: go, python3, nfacctd (Debian pmacct); goflow2 is installed with
# `go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6` if absent.
# Not part of `make test`: it takes a few minutes and measures this machine.
set -euo pipefail

duration=4
rates="100000 300000 500000 1000000 1500000"
collectors="weir weir-null weir-json goflow2 goflow2-json nfacctd"
while getopts "d:r:c:" opt; do
	case $opt in
	d) duration=$OPTARG ;;
	r) rates=$OPTARG ;;
	c) collectors=$OPTARG ;;
	*) sed -n '2,40p' "$0"; exit 2 ;;
	esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
clk_tck="$(getconf CLK_TCK)"
pid=""
old_rmem_max="$(cat /proc/sys/net/core/rmem_max)"
cleanup() {
	[[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	if [[ "$(cat /proc/sys/net/core/rmem_max)" != "$old_rmem_max" ]]; then
		echo "$old_rmem_max" >/proc/sys/net/core/rmem_max || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building weir and ipfixgen..." >&2
(cd "$root" && go build -o "$tmp/weir" ./cmd/weir && go build -o "$tmp/ipfixgen" ./test/bench/cmd/ipfixgen &&
	go build -o "$tmp/weircount" ./test/bench/cmd/weircount)
goflow2="$(command -v goflow2 || true)"
if [[ -z "$goflow2" && " $collectors " == *" goflow2"* ]]; then
	echo "installing goflow2 v2.2.6..." >&2
	GOBIN="$tmp/bin" go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6
	goflow2="$tmp/bin/goflow2"
fi

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"; }

# cpu_ticks PID: utime+stime of PID and its children, in clock ticks.
cpu_ticks() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" || true); do
		# Fields after the ")" that ends the command name: utime is 14, stime 15.
		total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo "$total"
}

# udp_counter NAME: a column of the Udp: line of /proc/net/snmp.
udp_counter() {
	awk -v name="$1" '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1 } else print $col[name] }' /proc/net/snmp
}

# wait_udp PORT: wait until something listens on UDP PORT.
wait_udp() {
	local hex
	hex="$(printf '%04X' "$1")"
	for _ in $(seq 100); do
		grep -q ":$hex " /proc/net/udp && return 0
		sleep 0.05
	done
	echo "nothing listens on udp $1" >&2
	return 1
}

metric() { # metric URL NAME: sum of the samples of NAME
	curl -s "$1" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

start_collector() { # start_collector NAME PORT: sets pid, out, murl
	local name=$1 port=$2 mport
	out="$tmp/$name.out"
	rm -f "$out"
	mport="$(free_port SOCK_STREAM)"
	murl="http://127.0.0.1:$mport/metrics"
	case $name in
	weir | weir-null | weir-json)
		local exporter="export.jsonl: {path: /dev/null}" bin=("$tmp/weir" run)
		[[ $name == weir-json ]] && exporter="export.jsonl: {path: \"$out\"}"
		[[ $name == weir ]] && exporter="export.count: {}" bin=("$tmp/weircount")
		cat >"$tmp/weir.yaml" <<EOF
log: {level: warn}
telemetry: {metrics_address: "127.0.0.1:$mport"}
pipeline:
  batch: {size: 256, timeout: 200ms}
  sources:
    - source.ipfix: {udp: "127.0.0.1:$port", tcp: "", readers: 2, rcvbuf: 128MiB}
  exporters:
    - $exporter
EOF
		"${bin[@]}" -c "$tmp/weir.yaml" >/dev/null 2>"$tmp/$name.log" &
		;;
	goflow2 | goflow2-json)
		local fmt=bin path=/dev/null
		[[ $name == goflow2-json ]] && fmt=json path=$out
		"$goflow2" -listen "netflow://127.0.0.1:$port" -format "$fmt" -transport file \
			-transport.file "$path" -addr "127.0.0.1:$mport" -loglevel error 2>"$tmp/$name.log" &
		;;
	nfacctd)
		echo 134217728 >/proc/sys/net/core/rmem_max
		cat >"$tmp/nfacctd.conf" <<EOF
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: $port
nfacctd_pipe_size: 134217728
plugin_pipe_size: 268435456
plugin_buffer_size: 65536
plugins: print[json]
aggregate[json]: proto
print_output[json]: json
print_output_file[json]: $out
print_output_file_append[json]: true
print_refresh_time[json]: 1
EOF
		nfacctd -f "$tmp/nfacctd.conf" >"$tmp/$name.log" 2>&1 &
		;;
	*) echo "unknown collector $name" >&2; exit 2 ;;
	esac
	pid=$!
	wait_udp "$port"
	sleep 0.5
}

# stop_collector: SIGTERM, then SIGKILL after 5 s (nfacctd's core process
# can spin after its plugin exited; the plugin has written its output by
# then).
stop_collector() {
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=""
}

count_received() { # count_received NAME (after the collector stopped)
	case $1 in
	weir | weir-null | goflow2) echo "$received_metric" ;;
	weir-json | goflow2-json) [[ -f $out ]] && wc -l <"$out" || echo 0 ;;
	nfacctd) [[ -f $out ]] && python3 -c 'import json,sys; print(sum(json.loads(l).get("packets", 0) for l in open(sys.argv[1]) if l.strip()))' "$out" || echo 0 ;;
	esac
}

results="$tmp/results"
: >"$results"
printf '%-13s %10s %10s %10s %8s %8s %9s %9s\n' collector offered/s sent received loss% cpu_s/M rcvbufΔ inerrΔ
for name in $collectors; do
	for rate in $rates; do
		port="$(free_port SOCK_DGRAM)"
		start_collector "$name" "$port"
		rb0="$(udp_counter RcvbufErrors)"
		ie0="$(udp_counter InErrors)"
		c0="$(cpu_ticks "$pid")"
		sent="$("$tmp/ipfixgen" -addr "127.0.0.1:$port" -rate "$rate" -duration "${duration}s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')"
		sleep 2
		[[ $name == nfacctd ]] && sleep 1 # one more print refresh
		c1="$(cpu_ticks "$pid")"
		rb1="$(udp_counter RcvbufErrors)"
		ie1="$(udp_counter InErrors)"
		received_metric=0
		case $name in
		weir) received_metric="$(metric "$murl" weir_export_count_records_total)" ;;
		weir-null) received_metric="$(metric "$murl" weir_source_ipfix_records_total)" ;;
		goflow2) received_metric="$(metric "$murl" goflow2_flow_process_nf_flowset_records_total)" ;;
		esac
		stop_collector
		[[ $name == nfacctd ]] && echo "$old_rmem_max" >/proc/sys/net/core/rmem_max
		received="$(count_received "$name")"
		python3 - "$name" "$rate" "$sent" "$received" "$((c1 - c0))" "$clk_tck" "$((rb1 - rb0))" "$((ie1 - ie0))" >>"$results" <<'EOF'
import sys
name, rate, sent, recv, ticks, hz, rb, ie = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
loss = 100.0 * (1 - recv / sent) if sent else 100.0
cpu = (ticks / hz) / (recv / 1e6) if recv else float("nan")
print(f"{name:<13} {rate:>10} {sent:>10} {recv:>10} {loss:>8.3f} {cpu:>8.3f} {rb:>9} {ie:>9}")
EOF
		tail -n 1 "$results"
	done
done

echo
echo "highest offered rate with < 0.1 % loss (and no duplicates):"
python3 - "$results" <<'EOF'
import sys
best = {}
order = []
for line in open(sys.argv[1]):
    f = line.split()
    name, rate, sent, recv, loss = f[0], int(f[1]), int(f[2]), int(f[3]), float(f[4])
    if name not in order:
        order.append(name)
    if 0 <= loss < 0.1 and rate > best.get(name, (0, ""))[0]:
        best[name] = (rate, f[5])
for name in order:
    rate, cpu = best.get(name, (0, "-"))
    print(f"  {name:<13} {rate:>10} records/s   ({cpu} CPU s per M records there)" if rate else f"  {name:<13} none of the rates tried")
EOF
