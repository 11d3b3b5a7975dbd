#!/usr/bin/env bash
# Write -> fresh at the edge, locally, through the edge-direct purge provider
# (tests/examples/write_to_fresh.rs): the release origin and the Worker in workerd.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_edge_tools
cargo build --release --locked -p forecastin-origin
./scripts/build-edge >/dev/null
FORECASTIN_ORIGIN_BIN="$ROOT/target/release/forecastin-origin" \
  cargo run --release --locked -q -p forecastin-e2e --example write_to_fresh
