#!/usr/bin/env bash
# Installs what mesh needs, builds it, and starts the two local clusters
# west and east (`mesh up`, with any extra arguments such as
# `--wan-delay 20ms`). `target/debug/mesh down` stops them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_build_and_run_mesh up "$@"
