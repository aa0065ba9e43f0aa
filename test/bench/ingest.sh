#!/usr/bin/env bash
# ingest.sh — loopback UDP bench of the shipped weir binary: ingest next to
# goflow2 v2.2.6 and pmacct's nfacctd, and forwarding (proxy mode) next to
# nfacctd's tee plugin, on the same paced IPFIX stream.
#
# For every offered rate and setup (the order of the setups alternates from
# one rate to the next, so a noisy neighbour falls on both sides alike), a
# fresh collector is started on a free loopback port, test/bench/cmd/ipfixgen
# offers RATE records/s for DURATION seconds (30-record Antrea-like
# messages from 4 sockets), the collector gets until its output stops
# growing for 1 s (at least 2 s, at most 30 s) to finish, and the script
# reports:
#   received   records that came out: the counting exporter's count, JSON
#              lines, or the collector's own counter
#   loss %     1 - received/sent (negative = duplicates)
#   cpu s/M    CPU seconds (utime+stime from /proc/PID/stat, the process and
#              its children) of the collector or forwarder per million
#              records received, from the first record sent until the end
#              of the drain
#   kdrop      records the kernel dropped on the bench's sockets: the
#              "drops" column of /proc/net/udp{,6} for the collector's (and
#              the forwarding receiver's) port, in datagrams, times the
#              records per datagram (30 from ipfixgen; the forwarder's
#              records/messages for what it sent)
#   wdrop      records dropped inside Weir and counted by reason: what
#              the exporter stages count as dropped, whatever the reason
#              (weir_stage_records_dropped_total{plugin="export.*"}: queue
#              full, UDP send errors, write errors, shutdown...) or
#              errored (weir_stage_records_errored_total)
#   unexpl     sent - received - kdrop - wdrop: what no counter explains
#              (0 when the accounting is complete; kdrop of forwarded
#              datagrams is an estimate)
#   backlogΔ   packets the kernel dropped machine-wide before any socket
#              (/proc/net/softnet_stat, column 2), for information
#   MB/s       for the JSON-to-file setups, bytes written per second of
#              the offered window (and, at the end, dd's write bandwidth on
#              the same file system, measured in the same run)
# then, per setup, the highest offered rate with < 0.01 % loss.
#
# Setups (-c, default all):
#   weir          the weir binary: source.ipfix (128 MiB buffers as nfacctd,
#                 2 SO_REUSEPORT readers) → export.discard, the counting
#                 exporter; counted by weir_export_discard_records_total
#   weir-null     the weir binary → export.jsonl to /dev/null: every record
#                 still encoded as JSON; counted by the exporter's
#                 weir_stage_records_out_total
#   weir-json     the weir binary writing JSON lines to a file, counted by
#                 lines (export.jsonl's default direct_io: auto, O_DIRECT on
#                 ext4/xfs/btrfs/f2fs)
#   weir-pc-json  the same through the page cache (direct_io: off)
#   goflow2       goflow2 -format=bin to /dev/null, default 2 workers;
#                 counted by goflow2_flow_process_nf_flowset_records_total
#   goflow2-json  goflow2 -format=json to a file, counted by lines
#   nfacctd       nfacctd, print plugin writing JSON to a file, aggregated by
#                 protocol, counted as the sum of packets (every record has
#                 packetDeltaCount 1); 128 MiB socket buffer
#                 (nfacctd_pipe_size, net.core.rmem_max raised for the run
#                 and restored) and large plugin pipes
#   weir-fwd      forwarding: the weir binary source.ipfix (raw: true) →
#                 proxy → export.ipfix (UDP, default max_message_size): the
#                 messages are re-exported without decoding (records copied
#                 with the proxy's stamp appended) → a second weir binary
#                 (source.ipfix → export.discard) that counts; CPU is the
#                 forwarder's. Its in-weir drops are raw records (messages
#                 of 30 records) and the raw data records it dropped.
#   weir-fwd-dec  the same forwarder decoding every record and encoding it
#                 again (source.ipfix without raw)
#   nfacctd-tee   forwarding: nfacctd's tee plugin (replicates datagrams,
#                 128 MiB socket buffers and plugin pipe, 100 KB plugin
#                 buffer: with the print setup's 256 MiB pipe the tee
#                 plugin exits, with the defaults it reports missing data)
#                 → the same counting weir receiver;
#                 CPU is nfacctd's (core process and tee plugin)
#
# Usage: test/bench/ingest.sh [-d SECONDS] [-r "RATE ..."] [-c "NAME ..."] [-q QUEUE]
#   -q sets every weir's pipeline.queue (YAML flow map), e.g.
#      -q "{exporter_size: 64}"; default: the engine's defaults
# Needs: go, python3, curl, nfacctd (Debian pmacct); goflow2 is installed
# with `go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6` if
# absent. Run as root (it raises net.core.rmem_max for nfacctd). Not part of
# `make test`: it takes minutes and measures this machine.
set -euo pipefail

duration=4
rates="300000 1000000 1500000 3000000"
collectors="weir weir-null weir-json weir-pc-json goflow2 goflow2-json nfacctd weir-fwd weir-fwd-dec nfacctd-tee"
queue="{}"
while getopts "d:r:c:q:" opt; do
	case $opt in
	d) duration=$OPTARG ;;
	r) rates=$OPTARG ;;
	c) collectors=$OPTARG ;;
	q) queue=$OPTARG ;;
	*) sed -n '2,72p' "$0"; exit 2 ;;
	esac
done

root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
clk_tck="$(getconf CLK_TCK)"
pid=""
rpid=""
old_rmem_max="$(cat /proc/sys/net/core/rmem_max)"
cleanup() {
	for p in $pid $rpid; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
	done
	if [[ "$(cat /proc/sys/net/core/rmem_max)" != "$old_rmem_max" ]]; then
		echo "$old_rmem_max" >/proc/sys/net/core/rmem_max || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building weir and ipfixgen..." >&2
(cd "$root" && go build -o "$tmp/weir" ./cmd/weir && go build -o "$tmp/ipfixgen" ./test/bench/cmd/ipfixgen)
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
		total=$((total + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
	done
	echo "$total"
}

# sock_drops PORT: datagrams the kernel dropped on the UDP sockets bound
# to PORT (the "drops" column of /proc/net/udp and udp6).
sock_drops() {
	local hex
	hex="$(printf '%04X' "$1")"
	cat /proc/net/udp /proc/net/udp6 | awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { s += $NF } END { print s + 0 }'
}

# backlog_drops: packets dropped by the kernel's per-CPU input backlog.
backlog_drops() {
	local s=0 d
	while read -r _ d _; do s=$((s + 16#$d)); done </proc/net/softnet_stat
	echo "$s"
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

metric() { # metric URL NAME [LABEL-SUBSTRING]: sum of the samples of NAME
	curl -s "$1" | awk -v n="$2" -v l="${3:-}" '($1 == n || index($1, n "{") == 1) && index($1, l) { s += $NF } END { printf "%.0f\n", s }'
}

# weir_drops URL: records dropped inside a weir process, counted by reason.
# Every exporter stage keeps in = out + dropped{reason} + errored, so its
# drops of every reason (queue_full, send_error, record_too_large,
# write_error, shutdown...) and its errored records are the whole story.
weir_drops() {
	local d e
	d="$(metric "$1" weir_stage_records_dropped_total 'plugin="export.')"
	e="$(metric "$1" weir_stage_records_errored_total 'plugin="export.')"
	echo $((d + e))
}

weir_config() { # weir_config FILE PORT MPORT EXPORTER [PROCESSOR [SOURCE-OPTIONS]]
	cat >"$1" <<EOC
log: {level: warn}
telemetry: {metrics_address: "127.0.0.1:$3"}
pipeline:
  batch: {size: 256, timeout: 200ms}
  queue: $queue
  sources:
    - source.ipfix: {udp: "127.0.0.1:$2", tcp: "", readers: 2, rcvbuf: 128MiB${6:-}}
  processors: [${5:-}]
  exporters:
    - $4
EOC
}

# start_receiver: the counting weir behind a forwarder; sets rpid, rport, rurl.
start_receiver() {
	local mport
	rport="$(free_port SOCK_DGRAM)"
	mport="$(free_port SOCK_STREAM)"
	rurl="http://127.0.0.1:$mport/metrics"
	weir_config "$tmp/receiver.yaml" "$rport" "$mport" "export.discard: {}"
	"$tmp/weir" run -c "$tmp/receiver.yaml" >/dev/null 2>"$tmp/receiver.log" &
	rpid=$!
	wait_udp "$rport"
}

start_collector() { # start_collector NAME PORT: sets pid, out, murl
	local name=$1 port=$2 mport
	out="$tmp/$name.out"
	rm -f "$out"
	mport="$(free_port SOCK_STREAM)"
	murl="http://127.0.0.1:$mport/metrics"
	case $name in
	weir | weir-null | weir-json | weir-pc-json | weir-fwd | weir-fwd-dec)
		local exporter="export.discard: {}" processor="" source=""
		[[ $name == weir-null ]] && exporter="export.jsonl: {path: /dev/null}"
		[[ $name == weir-json ]] && exporter="export.jsonl: {path: \"$out\"}"
		[[ $name == weir-pc-json ]] && exporter="export.jsonl: {path: \"$out\", direct_io: off}"
		if [[ $name == weir-fwd* ]]; then
			start_receiver
			exporter="export.ipfix: {address: \"127.0.0.1:$rport\", transport: udp}"
			processor="proxy: {}"
			[[ $name == weir-fwd ]] && source=", raw: true"
		fi
		weir_config "$tmp/weir.yaml" "$port" "$mport" "$exporter" "$processor" "$source"
		"$tmp/weir" run -c "$tmp/weir.yaml" >/dev/null 2>"$tmp/$name.log" &
		;;
	goflow2 | goflow2-json)
		local fmt=bin path=/dev/null
		[[ $name == goflow2-json ]] && fmt=json path=$out
		"$goflow2" -listen "netflow://127.0.0.1:$port" -format "$fmt" -transport file \
			-transport.file "$path" -addr "127.0.0.1:$mport" -loglevel error 2>"$tmp/$name.log" &
		;;
	nfacctd)
		echo 134217728 >/proc/sys/net/core/rmem_max
		cat >"$tmp/nfacctd.conf" <<EOC
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
EOC
		nfacctd -f "$tmp/nfacctd.conf" >"$tmp/$name.log" 2>&1 &
		;;
	nfacctd-tee)
		start_receiver
		echo 134217728 >/proc/sys/net/core/rmem_max
		echo "id=1 ip=127.0.0.1:$rport" >"$tmp/tee_receivers.lst"
		cat >"$tmp/nfacctd-tee.conf" <<EOC
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: $port
nfacctd_pipe_size: 134217728
plugins: tee[fwd]
plugin_pipe_size[fwd]: 134217728
plugin_buffer_size[fwd]: 102400
tee_receivers[fwd]: $tmp/tee_receivers.lst
tee_transparent[fwd]: false
tee_pipe_size[fwd]: 134217728
EOC
		nfacctd -f "$tmp/nfacctd-tee.conf" >"$tmp/$name.log" 2>&1 &
		;;
	*) echo "unknown setup $name" >&2; exit 2 ;;
	esac
	pid=$!
	wait_udp "$port"
	sleep 0.5
}

# stop PID: SIGTERM, then SIGKILL after 5 s (nfacctd's core process can spin
# after its plugin exited; the plugin has written its output by then), and
# then its children: nfacctd's plugin processes outlive a killed core.
stop() {
	[[ -z "$1" ]] && return 0
	local children
	children="$(pgrep -P "$1" || true)"
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for c in $children; do
		kill -KILL "$c" 2>/dev/null || true
	done
}

# progress NAME: a number that grows while the setup still delivers
# records (its output count, or its output file's size).
progress() {
	case $1 in
	weir) metric "$murl" weir_export_discard_records_total ;;
	weir-null) metric "$murl" weir_stage_records_out_total 'plugin="export.jsonl"' ;;
	goflow2) metric "$murl" goflow2_flow_process_nf_flowset_records_total ;;
	weir-fwd* | nfacctd-tee) metric "$rurl" weir_export_discard_records_total ;;
	*) stat -c %s "$out" 2>/dev/null || echo 0 ;;
	esac
}

# settle NAME: wait until the setup has delivered what it will (its
# progress unchanged for 1 s; at least 2 s, at most 30 s), so a setup
# slower than the offered rate is measured on everything it took in,
# not cut off while its socket buffer still holds records.
settle() {
	local last=-1 now same=0
	sleep 1
	for _ in $(seq 60); do
		sleep 0.5
		now="$(progress "$1")"
		if [[ $now == "$last" ]]; then
			same=$((same + 1))
			((same >= 2)) && break
		else
			same=0
		fi
		last=$now
	done
	[[ $1 == nfacctd ]] && sleep 1.5 # one more print refresh
	return 0
}

count_lines() { [[ -f $1 ]] && wc -l <"$1" || echo 0; }

results="$tmp/results"
: >"$results"
header() {
	printf '%-12s %9s %9s %9s %8s %7s %8s %8s %7s %8s %7s\n' setup offered/s sent received loss% cpu_s/M kdrop wdrop unexpl backlogΔ MB/s
}
header
flip=0
for rate in $rates; do
	order="$collectors"
	if ((flip)); then order="$(echo "$collectors" | tr ' ' '\n' | tac | tr '\n' ' ')"; fi
	flip=$((1 - flip))
	for name in $order; do
		port="$(free_port SOCK_DGRAM)"
		rpid="" rport=""
		start_collector "$name" "$port"
		bl0="$(backlog_drops)"
		c0="$(cpu_ticks "$pid")"
		sent="$("$tmp/ipfixgen" -addr "127.0.0.1:$port" -rate "$rate" -duration "${duration}s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])')"
		settle "$name"
		c1="$(cpu_ticks "$pid")"
		bl1="$(backlog_drops)"
		# Kernel drops: datagrams of 30 records from ipfixgen; what the
		# forwarder sent has its own records per datagram.
		kdrop=$(($(sock_drops "$port") * 30))
		wdrop=0 received=0
		case $name in
		weir) received="$(metric "$murl" weir_export_discard_records_total)" ;;
		weir-null) received="$(metric "$murl" weir_stage_records_out_total 'plugin="export.jsonl"')" ;;
		goflow2) received="$(metric "$murl" goflow2_flow_process_nf_flowset_records_total)" ;;
		weir-fwd* | nfacctd-tee) received="$(metric "$rurl" weir_export_discard_records_total)" ;;
		esac
		case $name in
		weir | weir-null | weir-json | weir-pc-json) wdrop="$(weir_drops "$murl")" ;;
		weir-fwd*)
			fwd="$(weir_drops "$murl")"
			# The raw forwarder's records are messages of 30 records, plus
			# the data records it could not fit and the data sets (of 30
			# records) whose template never came.
			[[ $name == weir-fwd ]] && fwd=$((fwd * 30 + $(metric "$murl" weir_export_ipfix_raw_records_dropped_total) + 30 * $(metric "$murl" weir_export_ipfix_raw_sets_expired_total)))
			wdrop=$((fwd + $(weir_drops "$rurl")))
			recs="$(metric "$murl" weir_export_ipfix_records_total)"
			msgs="$(metric "$murl" weir_export_ipfix_messages_total)"
			rd="$(sock_drops "$rport")"
			((msgs > 0)) && kdrop=$((kdrop + rd * recs / msgs))
			;;
		nfacctd-tee)
			wdrop="$(weir_drops "$rurl")"
			kdrop=$((kdrop + $(sock_drops "$rport") * 30))
			;;
		esac
		stop "$pid"
		pid=""
		stop "$rpid"
		rpid=""
		[[ $name == nfacctd* ]] && echo "$old_rmem_max" >/proc/sys/net/core/rmem_max
		bytes=0
		case $name in
		weir-json | weir-pc-json | goflow2-json)
			received="$(count_lines "$out")"
			bytes="$(stat -c %s "$out" 2>/dev/null || echo 0)"
			;;
		nfacctd) received="$( [[ -f $out ]] && python3 -c 'import json,sys; print(sum(json.loads(l).get("packets", 0) for l in open(sys.argv[1]) if l.strip()))' "$out" || echo 0)" ;;
		esac
		rm -f "$out"
		python3 - "$name" "$rate" "$sent" "$received" "$((c1 - c0))" "$clk_tck" "$kdrop" "$wdrop" "$((bl1 - bl0))" "$bytes" "$duration" >>"$results" <<'EOP'
import sys
name = sys.argv[1]
rate, sent, recv, ticks, hz, kdrop, wdrop, bl, nbytes = map(int, sys.argv[2:11])
dur = float(sys.argv[11])
loss = 100.0 * (1 - recv / sent) if sent else 100.0
cpu = (ticks / hz) / (recv / 1e6) if recv else float("nan")
unexpl = sent - recv - kdrop - wdrop
mbs = f"{nbytes / dur / 1e6:.0f}" if nbytes else "-"
print(f"{name:<12} {rate:>9} {sent:>9} {recv:>9} {loss:>8.3f} {cpu:>7.3f} {kdrop:>8} {wdrop:>8} {unexpl:>7} {bl:>8} {mbs:>7}")
EOP
		tail -n 1 "$results"
	done
done

if [[ " $collectors " == *"-json "* || " $collectors " == *"-json" ]]; then
	# The physical limit of the JSON-to-file setups: dd's write bandwidth on
	# the same file system: through the page cache, as the collectors write
	# (noisy: it depends on how much dirty memory the kernel must reclaim),
	# with the data forced to disk, and bypassing the cache.
	for flags in "" "conv=fdatasync" "oflag=direct"; do
		bw="$(dd if=/dev/zero of="$tmp/dd.bin" bs=1M count=2048 $flags 2>&1 | awk '/copied/ { print $(NF-1), $NF }')"
		echo "dd bs=1M count=2048 $flags on $(df --output=target "$tmp" | tail -n 1): $bw"
		rm -f "$tmp/dd.bin"
	done
fi

echo
echo "highest offered rate with < 0.01 % loss (and no duplicates):"
python3 - "$results" <<'EOP'
import sys
best = {}
order = []
for line in open(sys.argv[1]):
    f = line.split()
    name, rate, loss = f[0], int(f[1]), float(f[4])
    if name not in order:
        order.append(name)
    if 0 <= loss < 0.01 and rate > best.get(name, (0, ""))[0]:
        best[name] = (rate, f[5])
for name in order:
    rate, cpu = best.get(name, (0, "-"))
    print(f"  {name:<12} {rate:>10} records/s   ({cpu} CPU s per M records there)" if rate else f"  {name:<12} none of the rates tried")
EOP
