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
ensure_edge_tools
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
SECONDS_PER_RUN="${1:-10}"
ROUNDS="${2:-5}"

cargo build --release --locked -p forecastin-origin
./scripts/build-edge >/dev/null
state=$(mktemp -d)
LISTEN_ADDR=127.0.0.1:18080 DATA_DIR="$state/origin" RUST_LOG=warn ./target/release/forecastin-origin &
pids=($!)
start_worker() { # port inspector-port config
  EDGE_SKIP_BUILD=1 PURGE_SECRET=bench setsid wrangler dev --local --ip 127.0.0.1 --port "$1" \
    --inspector-port "$2" --config "$3" --show-interactive-dev-session=false --log-level error \
    --persist-to "$state/$1" --var ORIGIN_URL:http://127.0.0.1:18080 >/dev/null &
  pids+=(-$!)
}
start_worker 18787 19229 wrangler.toml
start_worker 18788 19230 bench/js-cache-worker/wrangler.toml
trap 'kill -- "${pids[@]}" 2>/dev/null || true; rm -rf "$state"' EXIT
for port in 18787 18788; do
  for _ in $(seq 120); do curl -fs "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.5; done
done

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
alternate_rounds "$ROUNDS" "$state" "edge (Rust)" "$edge" "JS worker" "$js"
