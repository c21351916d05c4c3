#!/usr/bin/env bash
# Memory of mesh's control plane (identity, destination, proxy injector),
# installed on the local west cluster as the docs install it: resident
# memory of each controller idle, then with 100 meshed podinfo pods behind
# one Service that a meshed client keeps calling (so the destination
# service watches all 100 endpoints and every proxy has a certificate from
# the identity service). Also the proxies' average resident memory. The
# podinfo pods request 1m of CPU instead of 100m so that 100 fit on the
# local node's two cores.
# Uses a throw-away state directory (bench/lib/local-pair.sh); run from the
# repository root as root after `cargo build --release --workspace --bins`
# (or set MESH).
set -euo pipefail
replicas="${REPLICAS:-100}"
source "$(dirname "$0")/lib/local-pair.sh"
components=(identity="mesh-controller identity" destination="mesh-controller destination" injector="mesh-controller injector")
sleep 20
report "control plane, idle" "${components[@]}"

fleet "$replicas"
sleep 30
report "control plane, $replicas meshed pods" "${components[@]}"
proxies=$(for pid in $(pair_pids); do if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = mesh-proxy ]; then echo "$pid"; fi; done)
echo "proxies: $(echo "$proxies" | wc -w), average RSS $(for p in $proxies; do awk '/^VmRSS:/ {print $2}' "/proc/$p/status"; done | awk '{ s += $1; n++ } END { printf "%.1f", s / n / 1024 }') MiB"
