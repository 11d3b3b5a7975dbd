#!/usr/bin/env bash
# Where a hit's CPU goes in workerd: the edge (or WORKER_CONFIG's Worker) built with its
# function names, in bare `workerd serve` (no wrangler proxy; see start_bench_worker), the
# page read until it hits, then the V8 sampling profiler on through the Worker's inspector
# while wrk reads it. Prints the time by kind (our Rust in WASM, the JavaScript glue, the
# runtime's built-ins and APIs, garbage collection) and by function, per request; writes the
# profile to $PROFILE_OUT (default edge-hit.cpuprofile, for Chrome's DevTools).
# Usage: [WORKER_CONFIG=bench/floor-worker/wrangler.toml] [EDGE_HIT_PATH=...] bench/edge-profile.sh [seconds]
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
SECONDS_PROFILED="${1:-10}"
WORKER_CONFIG="${WORKER_CONFIG:-wrangler.toml}"
PROFILE_OUT="${PROFILE_OUT:-$ROOT/edge-hit.cpuprofile}"
export BENCH_RUNTIME=workerd

start_bench_origin
WORKER_KEEP_NAMES=1 build_bench_worker "$WORKER_CONFIG"
start_bench_worker 18787 19229 "$WORKER_CONFIG"

url="http://127.0.0.1:18787${EDGE_HIT_PATH:-/api/v1/entities/FR/ancestors}"
for _ in 1 2 3; do curl -fs -o /dev/null "$url"; done
curl -fsI "$url" | grep -Eiq '^(cf-)?cache-status: .*hit' || { echo "$url did not hit" >&2; exit 1; }
mkfifo "$BENCH_STATE/control"
node bench/workerd/profile.mjs 127.0.0.1:19229 "$PROFILE_OUT" <"$BENCH_STATE/control" 2>"$BENCH_STATE/started" &
profiler=$!
exec 3>"$BENCH_STATE/control"
for _ in $(seq 100); do grep -q profiling "$BENCH_STATE/started" && break; sleep 0.1; done
out=$(wrk -t1 -c8 -d"${SECONDS_PROFILED}s" "$url")
requests=$(awk '/requests in/ { print $1 }' <<<"$out")
echo "$requests" >&3
exec 3>&-
wait "$profiler"
