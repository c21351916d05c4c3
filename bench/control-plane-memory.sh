#!/usr/bin/env bash
# Memory of mesh's control plane (identity, destination, proxy injector),
# installed on the local west cluster as the docs install it: resident
# memory of each controller idle, then with 100 meshed podinfo pods behind
# one Service that a meshed client keeps calling (so the destination
# service watches all 100 endpoints and every proxy has a certificate from
# the identity service). Also the proxies' average resident memory. The
# podinfo pods request 1m of CPU instead of 100m so that 100 fit on the
# local node's two cores.
# Uses a throw-away state directory; run from the repository root as root
# after `cargo build --release --workspace --bins` (or set MESH).
set -euo pipefail
mesh="$(realpath "${MESH:-target/release/mesh}")"
replicas="${REPLICAS:-100}"
state="$(mktemp -d)"
trap 'MESH_STATE_DIR="$state" "$mesh" down >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
export MESH_STATE_DIR="$state"
"$mesh" up --output json >"$state/up.json" 2>/dev/null
export KUBECONFIG="$state/clusters/kubeconfig"
kubectl="$("$mesh" k8s path)/kubectl"
k() { "$kubectl" --context west "$@"; }
"$mesh" --context west install --crds | k apply -f - >/dev/null
"$mesh" --context west install | k apply -f - >/dev/null
"$mesh" --context west check --wait 5m >/dev/null

slot=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slot"])' "$state/clusters/pair.json")
# The processes of this pair (nodes and pods), not of another pair on the host.
pair_pids() {
  for ns in $(ip netns list | awk '{print $1}' | { grep "^mesh${slot}-" || true; }); do ip netns pids "$ns"; done | sort -u
}
# RSS (MiB) of this pair's processes whose command line has "mesh-controller <component>".
controller_rss() {
  for pid in $(pair_pids); do
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q "mesh-controller $1" || continue
    awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null
  done | awk '{ s += $1 } END { printf "%.1f", s / 1024 }'
}
report() {
  local total=0
  printf '%-28s %10s\n' "$1" "RSS (MiB)"
  for c in identity destination injector; do
    r=$(controller_rss "$c"); total=$(awk -v a="$total" -v b="$r" 'BEGIN { print a + b }')
    printf '  %-26s %10s\n' "$c" "$r"
  done
  printf '  %-26s %10.1f\n' total "$total"
}
sleep 20
report "control plane, idle"

k create namespace fleet >/dev/null
k annotate namespace fleet linkerd.io/inject=enabled >/dev/null
sed -e "s/replicas: 2/replicas: $replicas/" -e "s/progressDeadlineSeconds: 60/progressDeadlineSeconds: 1800/" -e "s/cpu: 100m/cpu: 1m/" e2e-kind/manifests/podinfo.yaml | k -n fleet apply -f - >/dev/null
k -n fleet run client --image=curlimages/curl:8.10.1 --restart=Never --command -- \
  sh -c 'while true; do curl -s -o /dev/null http://podinfo:9898/; sleep 0.1; done' >/dev/null
t0=$(date +%s)
k -n fleet rollout status deploy/podinfo --timeout=20m >/dev/null
k -n fleet wait pod/client --for=condition=Ready --timeout=5m >/dev/null
echo "$replicas meshed pods ready in $(( $(date +%s) - t0 )) s"
sleep 30
report "control plane, $replicas meshed pods"
proxies=$(for pid in $(pair_pids); do if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mesh-proxy ]; then echo "$pid"; fi; done)
echo "proxies: $(echo "$proxies" | wc -w), average RSS $(for p in $proxies; do awk '/^VmRSS:/ {print $2}' "/proc/$p/status"; done | awk '{ s += $1; n++ } END { printf "%.1f", s / n / 1024 }') MiB"
