#!/usr/bin/env bash
# The edge's hit path in workerd against the floor for a Rust Worker (bench/floor-worker: only
# `caches.default.match`, through the same workers-rs glue and build) and a minimal JavaScript
# Worker doing the same (bench/js-cache-worker), all in the same workerd (the npm wrangler of
# package-lock.json), in front of the same origin, for the same cached response. Alternating
# rounds, medians, the throughput ratio of each pair per round. Local throughput is the
# simulator's, not Cloudflare's: compare the Workers, not the absolute numbers.
# BENCH_RUNTIME=workerd runs them in bare `workerd serve` instead of `wrangler dev`, without
# wrangler's proxy in front (see start_bench_worker).
# EDGE_BASELINE=DIR adds the edge of another checkout (built: its edge/build) as a fourth,
# to measure a change against what it changes in one run.
# Usage: [EDGE_HIT_PATH=/api/v1/...] [BENCH_RUNTIME=workerd] [EDGE_BASELINE=DIR] bench/edge-hit.sh [seconds per run] [rounds]
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-5}"

start_bench_origin
path="${EDGE_HIT_PATH:-/api/v1/entities/FR/ancestors}"
build_bench_worker wrangler.toml
build_bench_worker bench/floor-worker/wrangler.toml
start_bench_worker 18787 19229 wrangler.toml
start_bench_worker 18788 19230 bench/js-cache-worker/wrangler.toml
start_bench_worker 18789 19231 bench/floor-worker/wrangler.toml
contenders=()
if [ -n "${EDGE_BASELINE:-}" ]; then
  start_bench_worker 18790 19232 "$EDGE_BASELINE/wrangler.toml"
  contenders=("edge (baseline)" "http://127.0.0.1:18790$path")
fi

edge="http://127.0.0.1:18787$path"
js="http://127.0.0.1:18788$path"
floor="http://127.0.0.1:18789$path"
for url in "$edge" "$js" "$floor" "${contenders[@]:1}"; do curl -fs "$url" >/dev/null; curl -fs "$url" >/dev/null; done
curl -fsI "$edge" | grep -i '^cache-status: .*hit' >/dev/null || { echo "the edge did not hit" >&2; exit 1; }
for url in "$js" "$floor"; do
  curl -fsI "$url" | grep -i '^cf-cache-status: hit' >/dev/null || { echo "$url did not hit" >&2; exit 1; }
done
cmp <(curl -fs "$edge") <(curl -fs "$js")
cmp <(curl -fs "$edge") <(curl -fs "$floor")
echo "response body: $(curl -fs "$edge" | wc -c) bytes, the same from all three"

# Prints "req/s p50 p99" (latencies in ms) of one wrk run.
measure() {
  wrk -t1 -c8 -d"${SECONDS_PER_RUN}s" --latency "$1" | wrk_summary
}
alternate_rounds "$ROUNDS" "$BENCH_STATE" "edge (Rust)" "$edge" "${contenders[@]}" "floor (Rust)" "$floor" \
  "JS worker" "$js"
