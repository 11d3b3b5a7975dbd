#!/usr/bin/env bash
# Performance against peers, side by side in one run (issue 7). Usage: bench/peers.sh [seconds]
#  1. The origin's L1-hit path against nginx serving the same response bytes from a file, with
#     the same CPU budget: each pinned to CPU 0 (nginx with one worker, the origin with one
#     tokio worker thread), wrk pinned to CPU 1. Three alternating rounds; medians; the ratio.
#  2. The origin's database path (L1 and L2 off) on PostgreSQL, unpinned.
#  3. The edge's hit path in workerd against a minimal JavaScript caching Worker
#     (bench/edge-hit.sh).
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { log "installing nginx"; apt-get install -y -qq nginx-light >/dev/null; }
SECONDS_PER_RUN="${1:-10}"
ROUNDS=3

cargo build --release --locked -p forecastin-origin
state=$(mktemp -d)
chmod 755 "$state"  # nginx workers run as nobody
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$state"' EXIT
wait_for() { for _ in $(seq 120); do curl -fs "$1" >/dev/null && return; sleep 0.5; done; exit 1; }

# 1. L1 hit vs nginx, one core each.
TOKIO_WORKER_THREADS=1 LISTEN_ADDR=127.0.0.1:18081 DATA_DIR="$state/origin" RUST_LOG=warn \
  taskset -c 0 ./target/release/forecastin-origin &
pids+=($!)
wait_for http://127.0.0.1:18081/readyz
path=/api/v1/entities/FR
mkdir -p "$state/www$(dirname "$path")"
curl -fs "http://127.0.0.1:18081$path" > "$state/www$path"
cat > "$state/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $state/nginx.pid;
error_log $state/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/json;
  server { listen 127.0.0.1:18082; root $state/www; }
}
CONF
taskset -c 0 nginx -c "$state/nginx.conf" -p "$state" &
pids+=($!)
wait_for "http://127.0.0.1:18082$path"
cmp <(curl -fs "http://127.0.0.1:18081$path") <(curl -fs "http://127.0.0.1:18082$path")
echo "response body: $(wc -c < "$state/www$path") bytes, the same from both"

# Prints "req/s p50 p99" (latencies in ms) of one wrk run on CPU 1.
measure() {
  taskset -c 1 wrk -t1 -c32 -d"${SECONDS_PER_RUN}s" --latency "$1" | wrk_summary
}
alternate_rounds "$ROUNDS" "$state" "origin (L1 hit)" "http://127.0.0.1:18081$path" "nginx (file)" "http://127.0.0.1:18082$path"

# 2. The database path on PostgreSQL: no L1, no L2 (no Redis), the hottest read.
psql -q postgres://postgres@127.0.0.1:5432/postgres -c "DROP DATABASE IF EXISTS forecastin_peers WITH (FORCE)" \
  -c "CREATE DATABASE forecastin_peers"
LISTEN_ADDR=127.0.0.1:18083 DATABASE_URL=postgres://postgres@127.0.0.1:5432/forecastin_peers \
  L1_CAPACITY=0 RUST_LOG=warn ./target/release/forecastin-origin &
pids+=($!)
wait_for http://127.0.0.1:18083/readyz
for round in $(seq "$ROUNDS"); do
  wrk -t1 -c32 -d"${SECONDS_PER_RUN}s" --latency http://127.0.0.1:18083/api/v1/entities/FR-75/ancestors \
    | grep -E "Requests/sec|50%|99%" | tr -s ' ' | tr '\n' ' ' | sed "s/^/round $round origin DB path (PostgreSQL): /"
  echo
done
kill "${pids[@]}" 2>/dev/null || true
pids=()

# 3. The edge in workerd.
./bench/edge-hit.sh "$SECONDS_PER_RUN" "$ROUNDS"
