# Shared helpers for the scripts in this folder; sourced, not run.

# Progress lines on stderr, green/red on a terminal.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
  _ok=$'\e[32m✔\e[0m' _no=$'\e[31m×\e[0m' _dim=$'\e[2m' _off=$'\e[0m'
else
  _ok='✔' _no='×' _dim='' _off=''
fi
step() { printf '  … %s\n' "$*" >&2; }
ok()   { printf '%s %s\n' "$_ok" "$*" >&2; }
fail() { printf '%s %s\n' "$_no" "$*" >&2; exit 1; }
note() { printf '%s%s%s\n' "$_dim" "$*" "$_off" >&2; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# The programs the local clusters and `mesh demo` run: the CLI, the node
# agent, the control plane, the proxy and its init container, the demo app.
RUN_BINS=(mesh mesh-node mesh-controller mesh-proxy mesh-init mesh-podinfo)

# Installs what running mesh needs, builds the programs above and the
# pinned Kubernetes binaries, and replaces this shell with
# `target/debug/mesh "$@"`. The dev profile (dependencies optimised, our
# code not) is the one the tests use, so the build is shared with
# `scripts/test.sh`; it carries the demo's load with room to spare, and
# `cargo build --release` remains the way to benchmark.
setup_build_and_run_mesh() {
  "$REPO_ROOT/scripts/setup.sh" --run
  export PATH="$HOME/.cargo/bin:$PATH"
  cd "$REPO_ROOT"
  local started=$SECONDS bins=()
  for bin in "${RUN_BINS[@]}"; do bins+=(--bin "$bin"); done
  step "building ${RUN_BINS[*]} (a few minutes on a fresh machine)"
  cargo build --workspace "${bins[@]}"
  ok "built ${RUN_BINS[*]} in target/debug ($((SECONDS - started)) s)"
  target/debug/mesh k8s build
  exec target/debug/mesh "$@"
}
