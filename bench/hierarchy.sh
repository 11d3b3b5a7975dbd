#!/usr/bin/env bash
# The hierarchy read benchmark (origin/benches/hierarchy.rs). The first run generates the
# 100k and 1M entity databases (kept in .bench/ and on PostgreSQL), later runs reuse them.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
cargo bench --locked -p forecastin-origin --bench hierarchy
