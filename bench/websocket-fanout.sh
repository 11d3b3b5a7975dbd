#!/usr/bin/env bash
# Websocket event latency to 1,000 clients on another instance, and message serialization
# cost (tests/examples/websocket_fanout.rs).
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
ulimit -n 8192 2>/dev/null || true
run_bench_example websocket_fanout
