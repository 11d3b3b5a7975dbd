#!/usr/bin/env bash
# Write -> fresh at the edge, locally, through the edge-direct purge provider
# (tests/examples/write_to_fresh.rs): the release origin and the Worker in workerd.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_edge_tools
./scripts/build-edge >/dev/null
run_bench_example write_to_fresh
