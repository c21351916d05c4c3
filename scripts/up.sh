#!/usr/bin/env bash
# Installs what mesh needs, builds it, and starts the two local clusters
# west and east (`mesh up`, with any extra arguments such as
# `--wan-delay 20ms`). `target/release/mesh down` stops them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$REPO_ROOT"
step "building mesh (release)"
cargo build --release --quiet --workspace --bins
ok "built target/release/mesh and the programs the clusters run"
exec target/release/mesh up "$@"
