#!/usr/bin/env bash
# The edge's hit path in workerd against a trivial route of the same Worker (GET
# /__edge/health, answered without cache or origin), to show what caching costs per request.
# Both through the same `wrangler dev` (local throughput is the simulator's, not Cloudflare's:
# compare the two, not the absolute numbers). Usage: bench/edge-hit.sh [seconds]
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_edge_tools
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
SECONDS_PER_RUN="${1:-10}"

cargo build --release --locked -p forecastin-origin
./scripts/build-edge >/dev/null
state=$(mktemp -d)
LISTEN_ADDR=127.0.0.1:18080 DATA_DIR="$state/origin" RUST_LOG=warn ./target/release/forecastin-origin &
origin=$!
EDGE_SKIP_BUILD=1 PURGE_SECRET=bench setsid wrangler dev --local --ip 127.0.0.1 --port 18787 --inspector-port 19229 \
  --show-interactive-dev-session=false --log-level error --persist-to "$state/edge" \
  --var ORIGIN_URL:http://127.0.0.1:18080 >/dev/null &
edge=$!
trap 'kill $origin; kill -- -$edge; rm -rf "$state"' EXIT
for _ in $(seq 120); do curl -fs http://127.0.0.1:18787/__edge/health >/dev/null && break; sleep 0.5; done

hit=http://127.0.0.1:18787/api/v1/entities/FR/ancestors
curl -fs "$hit" >/dev/null
curl -fsI "$hit" | grep -i '^cache-status: .*hit' >/dev/null || { echo "not a hit" >&2; exit 1; }
for url in http://127.0.0.1:18787/__edge/health "$hit"; do
  echo "== $url"
  wrk -t1 -c8 -d"${SECONDS_PER_RUN}s" --latency "$url" | grep -E "Requests/sec|50%|99%"
done
