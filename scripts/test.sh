#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration against a real
# kube-apiserver, and end-to-end), after installing what they need.
# Extra arguments go to cargo-nextest, e.g. `scripts/test.sh -E 'test(tokens)'`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$REPO_ROOT/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$REPO_ROOT"
# Property tests (proptest) draw the same cases on every run unless a seed
# is given: a failure in CI is a failure here.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-1835365224}"
exec cargo nextest run --workspace --profile ci "$@"
