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

# Installs what mesh needs, builds the workspace's programs (release) and
# replaces this shell with `target/release/mesh "$@"`.
setup_build_and_run_mesh() {
  "$REPO_ROOT/scripts/setup.sh"
  export PATH="$HOME/.cargo/bin:$PATH"
  cd "$REPO_ROOT"
  step "building mesh (release)"
  cargo build --release --quiet --workspace --bins
  ok "built target/release/mesh and the programs the clusters run"
  exec target/release/mesh "$@"
}
