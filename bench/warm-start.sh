#!/usr/bin/env bash
# Warm scale-out (tests/examples/warm_start.rs): release origins on PostgreSQL (the 1,000,000
# entity database, grown first if missing; WARM_START_ENTITIES to change) and Redis; a new
# instance's time to ready and L1 hit ratio over its first 10 s, with preloading on and off.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
run_bench_example warm_start
