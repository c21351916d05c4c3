#!/usr/bin/env bash
# Installs everything mesh and its tests need on a fresh Linux machine, and
# builds the pinned Kubernetes binaries once. Safe to run again: each step
# checks first and does nothing when its part is already there.
#
#   scripts/setup.sh            # everything (the tests' needs included)
#   scripts/setup.sh --run      # only what running mesh needs: system
#                               # packages, Rust and Go (scripts/demo.sh and
#                               # up.sh then build mesh and the Kubernetes
#                               # binaries themselves)
#
# Needs: Debian/Ubuntu (apt) for system packages, and root for them and for
# the network namespaces the local clusters use. Go: the machine's own when it
# is new enough, else one is fetched from the Go module proxy into the cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FOR_TESTS=1
case "${1:-}" in
  --run) FOR_TESTS=0 ;;
  "") ;;
  *) fail "usage: scripts/setup.sh [--run]" ;;
esac

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mesh"
mkdir -p "$CACHE"

# --- system packages --------------------------------------------------------
need_pkgs=()
command -v ip >/dev/null        || need_pkgs+=(iproute2)
command -v iptables >/dev/null  || need_pkgs+=(iptables)
command -v curl >/dev/null      || need_pkgs+=(curl ca-certificates)
command -v unzip >/dev/null     || need_pkgs+=(unzip)
command -v cc >/dev/null        || need_pkgs+=(gcc libc6-dev)
command -v nsenter >/dev/null   || need_pkgs+=(util-linux)
command -v python3 >/dev/null   || need_pkgs+=(python3)
if [ "$FOR_TESTS" -eq 1 ]; then
  # The image tests: a registry on loopback, skopeo to push and pull,
  # umoci to unpack, runc to run (crun needs cgroup v2; these hosts have v1).
  command -v skopeo >/dev/null          || need_pkgs+=(skopeo)
  command -v umoci >/dev/null           || need_pkgs+=(umoci)
  command -v runc >/dev/null            || need_pkgs+=(runc)
  command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
  # The dashboard's tests load its pages in headless Chromium.
  command -v chromium >/dev/null        || need_pkgs+=(chromium)
  # The benchmarks' profiles and allocation counts (proxy-bench --allocations).
  command -v perf >/dev/null            || need_pkgs+=(linux-perf)
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || fail "missing ${need_pkgs[*]} and no apt-get to install them; install them and run again"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  step "installing ${need_pkgs[*]} with apt"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
ok "system packages: iproute2, iptables, curl, unzip, a C compiler, nsenter, python3$([ "$FOR_TESTS" -eq 1 ] && echo ', skopeo, umoci, runc, docker-registry, chromium, perf')"

# --- Rust --------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    step "installing Rust with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt >/dev/null
  }
  export PATH="$HOME/.cargo/bin:$PATH"
fi
ok "Rust: $(cargo --version)"

# --- Go (only to build the pinned Kubernetes binaries) ----------------------
go_needed="$(sed -n 's/^go //p' "$REPO_ROOT/clusters/k8s/go.mod")"
go_ok() {
  command -v go >/dev/null || return 1
  local have; have="$(go env GOVERSION 2>/dev/null | sed 's/^go//')" || return 1
  [ "$(printf '%s\n%s\n' "$go_needed" "$have" | sort -V | head -1)" = "$go_needed" ]
}
if ! go_ok; then
  GO_BOOT="$CACHE/go"
  if [ ! -x "$GO_BOOT/bin/go" ]; then
    found="$(command -v go >/dev/null && go version || echo 'no go on PATH')"
    # The toolchain modules on the Go module proxy are the official releases.
    go_release="1.25.5"
    step "Go $go_needed or newer is needed ($found); fetching Go $go_release from the Go module proxy"
    zip="$CACHE/go.zip"
    curl -sSfL -o "$zip" "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go${go_release}.linux-amd64.zip" \
      || fail "could not download Go $go_release; install Go $go_needed or newer (https://go.dev/doc/install) and run again"
    rm -rf "$CACHE/go-unpack" && mkdir -p "$CACHE/go-unpack"
    unzip -q "$zip" -d "$CACHE/go-unpack"
    rm -rf "$GO_BOOT" && mv "$CACHE/go-unpack/golang.org/toolchain@v0.0.1-go${go_release}.linux-amd64" "$GO_BOOT"
    chmod +x "$GO_BOOT"/bin/* "$GO_BOOT"/pkg/tool/*/* 2>/dev/null || true
    rm -rf "$zip" "$CACHE/go-unpack"
  fi
  export PATH="$GO_BOOT/bin:$PATH"
  go_ok || fail "the Go in $GO_BOOT does not work; install Go $go_needed or newer and run again"
fi
ok "Go: $(go env GOVERSION)"

# --- Prometheus (viz runs it in the local clusters, `mesh demo` too; the
# failover controller's Prometheus path is tested against it). Built from its Go module, once:
# Debian's package lacks the Kubernetes service discovery Linkerd's scrape
# configuration needs. Module v0.316.0 is Prometheus v3.16.0.
PROMETHEUS_VERSION="v3.16.0"
PROMETHEUS_MODULE_VERSION="v0.316.0"
PROMETHEUS="$CACHE/prometheus-$PROMETHEUS_VERSION/prometheus"
if [ ! -x "$PROMETHEUS" ]; then
  step "building Prometheus $PROMETHEUS_VERSION from its Go module (about five minutes, once)"
  GOBIN="$CACHE/prometheus-$PROMETHEUS_VERSION" GOFLAGS="" go install \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    || fail "could not build Prometheus $PROMETHEUS_VERSION from the Go module proxy"
fi
ok "Prometheus: $("$PROMETHEUS" --version 2>&1 | head -1)"

[ "$FOR_TESTS" = 1 ] || exit 0

# --- cargo tools (the tests' runner and the dependency policy) -----------------
for tool in cargo-nextest cargo-deny; do
  if ! command -v "$tool" >/dev/null; then
    step "installing $tool (a few minutes, once)"
    cargo install --locked --quiet "$tool"
  fi
  ok "$tool: $("$tool" --version 2>/dev/null | head -1 | sed 's/^cargo-[a-z]* //')"
done

# --- Helm (the charts are linted and rendered with the real helm) ------------
# Built from its Go module through the Go module proxy, once; tests/charts.rs
# finds it here (or at $MESH_HELM).
HELM_VERSION="v4.3.2"
HELM="$CACHE/helm-$HELM_VERSION/helm"
if [ ! -x "$HELM" ]; then
  step "building helm $HELM_VERSION from its Go module (a few minutes, once)"
  GOBIN="$CACHE/helm-$HELM_VERSION" GOFLAGS="" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" \
    || fail "could not build helm $HELM_VERSION from the Go module proxy"
fi
ok "helm: $("$HELM" version --short 2>/dev/null)"

# --- Kubernetes binaries -----------------------------------------------------------
# Built by mesh itself (`mesh k8s build`): it skips the build when the cache
# already holds binaries from the same pinned sources.
cd "$REPO_ROOT"
step "building the mesh CLI, which builds them"
cargo build --bin mesh
target/debug/mesh k8s build
