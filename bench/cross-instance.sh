#!/usr/bin/env bash
# Cross-instance L1 invalidation (tests/examples/cross_instance.rs): three release origins on
# PostgreSQL and Redis, 200 writes on one, read back on another.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
run_bench_example cross_instance
