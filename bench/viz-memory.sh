#!/usr/bin/env bash
# Memory of viz (Prometheus, tap, web, metrics-api), installed on the local west cluster
# as the docs install it (`mesh viz install | kubectl apply -f -`, the real
# Prometheus that scripts/setup.sh builds): resident memory of each
# component idle, then with 100 meshed podinfo pods behind one Service that
# a meshed client keeps calling, once Prometheus has scraped all 102
# proxies for two minutes. Then how long `mesh viz stat` takes there
# (through the API server's service proxy, as a user runs it), median of 5.
# Uses a throw-away state directory (bench/lib/local-pair.sh); run from the
# repository root as root after `cargo build --release --workspace --bins`
# (or set MESH).
set -euo pipefail
replicas="${REPLICAS:-100}"
source "$(dirname "$0")/lib/local-pair.sh"
"$mesh" --context west viz install | k apply -f - >/dev/null
"$mesh" --context west viz check --wait 5m >/dev/null
components=(prometheus="(^|/)prometheus " tap="mesh-controller tap " web="mesh-controller web " metrics-api="mesh-controller metrics-api ")
sleep 60
report "viz, idle" "${components[@]}"

fleet "$replicas"
sleep 120
report "viz, $replicas meshed pods" "${components[@]}"
for what in "deploy -n fleet" "po -n fleet"; do
  times=()
  for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    "$mesh" --context west viz stat $what >/dev/null
    times+=($(( ($(date +%s%N) - t0) / 1000000 )))
  done
  printf 'mesh viz stat %-16s median %s ms (runs: %s)\n' "$what" \
    "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)" "${times[*]}"
done
