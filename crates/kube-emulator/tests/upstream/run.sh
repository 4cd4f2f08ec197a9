#!/usr/bin/env bash
# Starts the upstream apiextensions-apiserver (built by setup.sh) with etcd on loopback, for
# poking at by hand: prints the kubeconfig path, stops both on Ctrl-C.
#   crates/kube-emulator/tests/upstream/run.sh [port]   then: kubectl --kubeconfig <printed path> get crd
set -euo pipefail
cache="${APIKEY_UPSTREAM_CACHE:-$HOME/.cache/apikey-operator-upstream}"
port="${1:-6443}"
dir="$(mktemp -d -t apikey-upstream-XXXXXX)"
[ -x "$cache/bin/apiextensions-wrapper" ] || { echo "not built: run crates/kube-emulator/tests/upstream/setup.sh" >&2; exit 1; }

"$cache/bin/etcd" --name run --data-dir "$dir/etcd" \
    --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster run=http://127.0.0.1:23800 --log-level warn --unsafe-no-fsync >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
"$cache/bin/apiextensions-wrapper" --etcd-servers http://127.0.0.1:23790 --secure-port "$port" \
    --cert-dir "$dir/pki" >"$dir/server.log" 2>&1 &
server_pid=$!
stop() { kill "$server_pid" "$etcd_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT INT TERM

for _ in $(seq 1 120); do
    if [ -f "$dir/pki/kubeconfig" ] && kubectl --kubeconfig "$dir/pki/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
        echo "ready: KUBECONFIG=$dir/pki/kubeconfig (logs in $dir); Ctrl-C stops"
        wait "$server_pid"
        exit
    fi
    sleep 0.5
done
echo "not ready after 60s; server log:" >&2
tail -20 "$dir/server.log" >&2
exit 1
