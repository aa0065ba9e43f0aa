#!/usr/bin/env bash
# Installs what Weir's tests need on a fresh Debian machine: the real IPFIX
# peers (softflowd, nfcapd/nfdump, tshark, pmacct), capture tools, etcd for
# the Kubernetes e2e test, and Go tools. Idempotent: it installs only what is
# missing, and runs apt-get update once.
set -euo pipefail

packages=(softflowd nfdump tshark tcpdump libpcap-dev iproute2 pmacct etcd-server openssl systemd)
# export.postgres / export.clickhouse tests start these servers themselves.
packages+=(postgresql-15 clickhouse-server)
# source.conntrack tests: iptables (a rule that makes conntrack track), the
# conntrack CLI (oracle), util-linux setpriv (no CAP_NET_ADMIN), ping.
packages+=(iptables conntrack util-linux iputils-ping)
# source.packetcapture (cgo + libpcap) and source.icmpprobe tests: netns peers, delay line, firewall.
packages+=(gcc nftables iptables ethtool curl iputils-ping procps)
# export.jsonl direct_io tests: an ext4 image on a loop device.
packages+=(e2fsprogs mount)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "install-deps: apt-get install ${missing[*]}"
	$sudo apt-get update -qq
	# tshark asks whether non-root users may capture; answer no.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

gobin="$(go env GOPATH)/bin"
if [ ! -x "$gobin/staticcheck" ]; then
	echo "install-deps: go install staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
