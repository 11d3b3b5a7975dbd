#!/usr/bin/env bash
# The edge's hit path in workerd against a minimal JavaScript Worker that caches with
# `caches.default.match` / `put` (bench/js-cache-worker), both in the same workerd (the npm
# wrangler of package-lock.json), in front of the same origin, for the same cached response.
# Alternating rounds, medians, the throughput ratio edge / JS per round. Local throughput is the
# simulator's, not Cloudflare's: compare the two, not the absolute numbers.
# Usage: [EDGE_HIT_PATH=/api/v1/...] bench/edge-hit.sh [seconds per run] [rounds]
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-5}"

start_bench_origin
start_bench_worker 18787 19229 wrangler.toml
start_bench_worker 18788 19230 bench/js-cache-worker/wrangler.toml

path="${EDGE_HIT_PATH:-/api/v1/entities/FR/ancestors}"
edge="http://127.0.0.1:18787$path"
js="http://127.0.0.1:18788$path"
for url in "$edge" "$js"; do curl -fs "$url" >/dev/null; curl -fs "$url" >/dev/null; done
curl -fsI "$edge" | grep -i '^cache-status: .*hit' >/dev/null || { echo "the edge did not hit" >&2; exit 1; }
cmp <(curl -fs "$edge") <(curl -fs "$js")
echo "response body: $(curl -fs "$edge" | wc -c) bytes, the same from both"

# Prints "req/s p50 p99" (latencies in ms) of one wrk run.
measure() {
  wrk -t1 -c8 -d"${SECONDS_PER_RUN}s" --latency "$1" | wrk_summary
}
alternate_rounds "$ROUNDS" "$BENCH_STATE" "edge (Rust)" "$edge" "JS worker" "$js"
