#!/usr/bin/env bash
# The local west/east clusters, measured: how long `mesh up` takes (with the
# Kubernetes binaries already built), the resident memory of both clusters
# idle (20 s after `mesh up` returned) per component, how long `mesh down`
# takes, and what it leaves behind (network namespaces, host iptables rules,
# processes). Uses a throw-away state directory; run from the repository
# root after `cargo build --release --workspace --bins` (or set MESH).
set -euo pipefail
mesh="${MESH:-target/release/mesh}"
state="$(mktemp -d)"
trap 'MESH_STATE_DIR="$state" "$mesh" down >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
export MESH_STATE_DIR="$state"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

"$mesh" k8s build >/dev/null 2>&1   # warm cache: a no-op when built
host_rules() { iptables-save | { grep -v '^#' || true; } | sed 's/ \[[0-9:]*\]$//'; }
rules_before="$(host_rules)"
t0=$(now); "$mesh" up >/dev/null 2>&1; t1=$(now)
echo "mesh up: $(secs "$t0" "$t1") s"
slot=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slot"])' "$state/clusters/pair.json")
sleep 20

# Every process of the pair: those in its network namespaces (nodes and
# pods) and the WAN forwarder.
declare -A rss
total=0
pids=$(for ns in $(ip netns list | awk '{print $1}' | { grep "^mesh${slot}-" || true; }); do ip netns pids "$ns"; done; cat "$state/clusters/pgids")
for pid in $(echo "$pids" | sort -u); do
  [ -r "/proc/$pid/status" ] || continue
  kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  [ -n "$kb" ] || continue
  comm=$(cat "/proc/$pid/comm")
  rss[$comm]=$(( ${rss[$comm]:-0} + kb ))
  total=$((total + kb))
done
printf '%-26s %12s\n' "process (both clusters)" "RSS (MiB)"
for comm in "${!rss[@]}"; do
  printf '%-26s %12.1f\n' "$comm" "$(awk -v k="${rss[$comm]}" 'BEGIN { print k / 1024 }')"
done | sort -k2 -n -r
printf '%-26s %12.1f\n' total "$(awk -v k="$total" 'BEGIN { print k / 1024 }')"

t0=$(now); "$mesh" down >/dev/null 2>&1; t1=$(now)
echo "mesh down: $(secs "$t0" "$t1") s"
echo "left after mesh down:"
echo "  network namespaces: $(ip netns list | grep -c "^mesh${slot}-" || true)"
echo "  host links: $(ip -o link | grep -c "mesh${slot}[we]" || true)"
rules_after="$(host_rules)"
if [ "$rules_before" = "$rules_after" ]; then echo "  host iptables: unchanged"; else echo "  host iptables: CHANGED"; fi
echo "  processes: $({ grep -l -s "$state" /proc/[0-9]*/cmdline || true; } | wc -l)"
echo "  files: $(ls -A "$state" | wc -l)"
