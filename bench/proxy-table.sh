#!/usr/bin/env bash
# The whole proxy table in one command: mesh-proxy beside a baseline proxy
# (a stock linkerd2-proxy, say; never part of this repository) in the same
# run — added latency, CPU, memory, memory per idle connection, heap
# allocations per request (`--allocations`, with perf) and the rate one
# proxy core sustains (`--saturation`) — then the
# cross-cluster path, ours only (`gateway-bench`: client proxy → gateway
# over the emulated WAN, TCP vs QUIC, 0 % and 2 % loss, small and 1 MiB
# responses). Prints Markdown headed by the date and both binaries'
# revisions, ready for BENCHMARKS.md.
#
# Run from the repository root as root:
#   bench/proxy-table.sh [seconds per run, default 10]
# with the baseline in MESH_PROXY_BASELINE (or none: the report then says
# it measured ours alone). Builds what it runs first (release).
set -euo pipefail
seconds="${1:-10}"
baseline="${MESH_PROXY_BASELINE:-}"
cd "$(dirname "$0")/.."

echo "proxy-table: building (release) ..." >&2
cargo build --release -p mesh-proxy -p mesh-bench -p mesh-clusters >&2

echo "# mesh-proxy against ${baseline:-no baseline}, $(date -u +%Y-%m-%d)"
echo
echo "- mesh-proxy: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- proxy core || echo ' (with uncommitted changes)'), $(sha256sum target/release/mesh-proxy | cut -c1-16)"
if [[ -n "$baseline" ]]; then
  echo "- baseline: $baseline, sha256 $(sha256sum "$baseline" | cut -c1-16)"
else
  echo "- baseline: none given (MESH_PROXY_BASELINE): ours alone"
fi
echo "- command: bench/proxy-table.sh $seconds"
echo
echo "## Same run, both proxies"
echo
echo "proxy-table: proxy-bench ..." >&2
args=("$seconds" --saturation --allocations)
[[ -n "$baseline" ]] && args+=(--baseline "$baseline")
target/release/proxy-bench "${args[@]}"
echo
echo "## Across clusters, ours only"
echo
echo "proxy-table: gateway-bench ..." >&2
target/release/gateway-bench "$seconds"
