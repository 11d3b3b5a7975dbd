#!/usr/bin/env bash
# Moving a 10,000-node subtree at 1,000,000 entities (tests/examples/subtree_move.rs): commit
# time, time until the moved nodes read correctly, and read latency idle vs during the move.
# The first run grows the PostgreSQL database forecastin_bench_move_1000000 (about a minute).
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
run_bench_example subtree_move
