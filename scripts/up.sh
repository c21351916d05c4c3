#!/usr/bin/env bash
# Installs what mesh needs, builds it, and starts the local cluster
# (`mesh up`). `target/release/mesh down` stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$REPO_ROOT"
step "building mesh (release)"
cargo build --release --quiet --bin mesh
ok "built target/release/mesh"
exec target/release/mesh up "$@"
