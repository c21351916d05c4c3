#!/usr/bin/env bash
# Refreshes the Gateway API CRDs that `mesh install --crds` ships
# (control/api/crds/gateway-api/): HTTPRoute and GRPCRoute from the Gateway
# API project's experimental channel, at the version Linkerd's own
# linkerd-crds chart ships (HTTPRoute v1 and v1beta1, GRPCRoute v1 and
# v1alpha2 served). They come unchanged from the published Go module
# (sigs.k8s.io/gateway-api, Apache-2.0), through the Go module proxy.
#
#   scripts/fetch-gateway-api-crds.sh [version]     # default v1.1.1
set -euo pipefail
version="${1:-v1.1.1}"
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/control/api/crds/gateway-api"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching sigs.k8s.io/gateway-api@$version from the Go module proxy…" >&2
dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$dir" ] || { echo "the module did not download" >&2; exit 1; }
mkdir -p "$out"
for kind in httproutes grpcroutes; do
  cp "$dir/config/crd/experimental/gateway.networking.k8s.io_$kind.yaml" "$out/"
  chmod 644 "$out/gateway.networking.k8s.io_$kind.yaml"
done
cp "$dir/LICENSE" "$out/LICENSE"
chmod 644 "$out/LICENSE"
echo "$version" > "$out/VERSION"
echo "wrote $out (Gateway API $version, experimental channel)" >&2
