# Shared by the memory benchmarks: a throw-away local pair with mesh
# installed on west, and the resident memory of its processes. Source it
# from the repository root, as root, after `cargo build --release
# --workspace --bins` (or set MESH).
mesh="$(realpath "${MESH:-target/release/mesh}")"
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
# RSS (MiB) of this pair's processes whose command line matches the
# extended regular expression $1.
rss_of() {
  for pid in $(pair_pids); do
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -Eq "$1" || continue
    awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null
  done | awk '{ s += $1 } END { printf "%.1f", s / 1024 }'
}
# Prints a table of components (name=regex ...) under the title $1.
report() {
  local title="$1" total=0 name pattern r
  shift
  printf '%-28s %10s\n' "$title" "RSS (MiB)"
  for component in "$@"; do
    name="${component%%=*}"; pattern="${component#*=}"
    r=$(rss_of "$pattern"); total=$(awk -v a="$total" -v b="$r" 'BEGIN { print a + b }')
    printf '  %-26s %10s\n' "$name" "$r"
  done
  printf '  %-26s %10.1f\n' total "$total"
}
# A meshed fleet: $1 podinfo pods behind one Service in namespace fleet
# and a meshed client calling it ten times a second. The podinfo pods
# request 1m of CPU instead of 100m so that 100 fit on the node's two cores.
fleet() {
  local replicas="$1" t0
  k create namespace fleet >/dev/null
  k annotate namespace fleet linkerd.io/inject=enabled >/dev/null
  sed -e "s/replicas: 2/replicas: $replicas/" -e "s/progressDeadlineSeconds: 60/progressDeadlineSeconds: 1800/" -e "s/cpu: 100m/cpu: 1m/" demo/podinfo.yaml | k -n fleet apply -f - >/dev/null
  k -n fleet run client --image=curlimages/curl:8.10.1 --restart=Never --command -- \
    sh -c 'while true; do curl -s -o /dev/null http://podinfo:9898/; sleep 0.1; done' >/dev/null
  t0=$(date +%s)
  k -n fleet rollout status deploy/podinfo --timeout=20m >/dev/null
  k -n fleet wait pod/client --for=condition=Ready --timeout=5m >/dev/null
  echo "$replicas meshed pods ready in $(( $(date +%s) - t0 )) s"
}
