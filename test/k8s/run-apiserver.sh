#!/usr/bin/env bash
# run-apiserver.sh runs a throwaway Kubernetes API server on loopback for
# Weir's e2e tests: etcd (Debian's etcd-server package) and kube-apiserver
# (built by build-apiserver.sh), token auth, AlwaysAllow, TLS with a CA made
# by openssl, no controllers, no kubelet. Loopback cannot be an endpoint of
# the "kubernetes" Service, hence --endpoint-reconciler-type none.
#
#   run-apiserver.sh start DIR   start both, wait until ready, write
#                                DIR/kubeconfig and print its path
#   run-apiserver.sh stop DIR    stop what start started (by its PID files)
#
# Ports: WEIR_K8S_ETCD_PORT (default 23790; peer port +1) and
# WEIR_K8S_API_PORT (default 26443), all on 127.0.0.1. With
# WEIR_K8S_WATCH_PID set, both are stopped once that process exits (a test
# binary that dies without running its cleanup leaves nothing behind).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

etcd_port="${WEIR_K8S_ETCD_PORT:-23790}"
peer_port=$((etcd_port + 1))
api_port="${WEIR_K8S_API_PORT:-26443}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

stop() {
	local name pid
	for name in watchdog kube-apiserver etcd; do
		[[ -f "$dir/$name.pid" ]] || continue
		pid="$(cat "$dir/$name.pid")"
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$dir/$name.pid"
	done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# readyz prints the HTTP status line of GET /readyz.
readyz() {
	local token="$1"
	if command -v curl >/dev/null; then
		curl -s -o /dev/null -w 'HTTP %{http_code}\n' --cacert "$dir/ca.crt" \
			-H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" || true
	else
		printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' "$token" |
			timeout 5 openssl s_client -quiet -CAfile "$dir/ca.crt" -connect "127.0.0.1:$api_port" 2>/dev/null | head -1 || true
	fi
}

case "$cmd" in
stop)
	stop
	exit 0
	;;
start) ;;
*)
	echo "usage: $0 start|stop DIR" >&2
	exit 2
	;;
esac

command -v etcd >/dev/null || { echo "run-apiserver: etcd not found (apt-get install etcd-server)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "run-apiserver: openssl not found (apt-get install openssl)" >&2; exit 1; }
apiserver="$("$here/build-apiserver.sh")"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
stop
for p in "$etcd_port" "$peer_port" "$api_port"; do
	if port_busy "$p"; then
		echo "run-apiserver: 127.0.0.1:$p is in use (set WEIR_K8S_ETCD_PORT / WEIR_K8S_API_PORT)" >&2
		exit 1
	fi
done

# Credentials: a CA, a serving certificate for 127.0.0.1, the service
# account signing key pair, and one static bearer token.
(
	cd "$dir"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=weir-e2e-ca" \
		-keyout ca.key -out ca.crt 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
		-keyout apiserver.key -out apiserver.csr 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
	openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
		-extfile apiserver.ext -out apiserver.crt 2>/dev/null
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	openssl rand -hex 24 >token
	printf '%s,weir-e2e,weir-e2e,system:masters\n' "$(cat token)" >tokens.csv
)
token="$(cat "$dir/token")"

rm -rf "$dir/etcd-data"
etcd --name weir-e2e --data-dir "$dir/etcd-data" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" \
	--advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "weir-e2e=http://127.0.0.1:$peer_port" \
	>"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

"$apiserver" \
	--etcd-servers "http://127.0.0.1:$etcd_port" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
	--tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
	--cert-dir "$dir/certs" \
	--token-auth-file "$dir/tokens.csv" --anonymous-auth=false \
	--authorization-mode AlwaysAllow \
	--service-account-issuer https://kubernetes.default.svc \
	--service-account-key-file "$dir/sa.pub" \
	--service-account-signing-key-file "$dir/sa.key" \
	--service-cluster-ip-range 10.96.0.0/16 \
	--disable-admission-plugins ServiceAccount \
	--endpoint-reconciler-type none \
	>"$dir/kube-apiserver.log" 2>&1 &
echo $! >"$dir/kube-apiserver.pid"

if [[ -n "${WEIR_K8S_WATCH_PID:-}" ]]; then
	(
		while kill -0 "$WEIR_K8S_WATCH_PID" 2>/dev/null; do sleep 1; done
		for name in kube-apiserver etcd; do
			[[ -f "$dir/$name.pid" ]] && kill "$(cat "$dir/$name.pid")" 2>/dev/null
		done
	) </dev/null >/dev/null 2>&1 &
	echo $! >"$dir/watchdog.pid"
fi

cat >"$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: weir-e2e
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/ca.crt
users:
- name: weir-e2e
  user:
    token: $token
contexts:
- name: weir-e2e
  context:
    cluster: weir-e2e
    user: weir-e2e
current-context: weir-e2e
KUBECONFIG

# Ready within 120 s (the first start creates the built-in objects).
for _ in $(seq 240); do
	if ! kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null; then
		echo "run-apiserver: kube-apiserver exited; last log lines:" >&2
		tail -20 "$dir/kube-apiserver.log" >&2
		stop
		exit 1
	fi
	if [[ "$(readyz "$token")" == *" 200"* ]]; then
		echo "$dir/kubeconfig"
		exit 0
	fi
	sleep 0.5
done
echo "run-apiserver: kube-apiserver not ready after 120s; last log lines:" >&2
tail -20 "$dir/kube-apiserver.log" >&2
stop
exit 1
