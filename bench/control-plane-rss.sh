#!/usr/bin/env bash
# Resident memory of a local control plane (etcd, kube-apiserver,
# kube-controller-manager), 20 s after `mesh up` returns, per component.
# Uses a throw-away state directory; run from the repository root after
# `cargo build`.
set -euo pipefail
mesh="${MESH:-target/debug/mesh}"
state="$(mktemp -d)"
trap 'MESH_STATE_DIR="$state" "$mesh" down >/dev/null 2>&1; rm -rf "$state"' EXIT
MESH_STATE_DIR="$state" "$mesh" up >/dev/null
sleep 20
total=0
printf '%-26s %10s\n' component "RSS (MiB)"
for pid in $(cat "$state/clusters/local/pgids"); do
  kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  total=$((total + kb))
  printf '%-26s %10.1f\n' "$(cat "/proc/$pid/comm")" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')"
done
printf '%-26s %10.1f\n' total "$(awk -v k="$total" 'BEGIN { print k / 1024 }')"
