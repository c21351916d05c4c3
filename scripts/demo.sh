#!/usr/bin/env bash
# Installs what mesh needs, builds it, and runs `mesh demo`: the local
# clusters west and east linked by mesh, podinfo in both, and the failover
# controller moving traffic by success rate as west's podinfo breaks and
# recovers. Extra arguments go to `mesh demo` (`--down` removes the
# clusters at the end).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_build_and_run_mesh demo "$@"
