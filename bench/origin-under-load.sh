#!/usr/bin/env bash
# The analyst mix (load/locustfile.py) straight at a release origin on PostgreSQL with
# 1,000,000 entities, no edge: the origin's own latency per route under load, first with its
# L1, then with L1 off (every read on the database). Judged by load/slo-origin.yaml; reports in
# .bench/. The first run grows the database forecastin_bench_load_1000000 (about a minute).
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_services
ensure_load_tools
cargo build --release --locked -p forecastin-origin
mkdir -p .bench
server=postgres://postgres@127.0.0.1:5432
database=forecastin_bench_load_1000000
if [ -z "$(psql -XAtq "$server/postgres" -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
  psql -q "$server/postgres" -c "CREATE DATABASE $database"
fi
DATABASE_URL="$server/$database" RUST_LOG=warn ./target/release/forecastin-origin generate --entities 1000000
status=0
for l1 in 50000 0; do
  LISTEN_ADDR=127.0.0.1:18095 DATABASE_URL="$server/$database" L1_CAPACITY=$l1 ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes \
    RUST_LOG=warn ./target/release/forecastin-origin &
  origin=$!
  for _ in $(seq 120); do curl -fs http://127.0.0.1:18095/readyz >/dev/null && break; sleep 0.5; done
  log "L1_CAPACITY=$l1: 50 analysts for 60 s straight at the origin"
  "$TOOLS/venv/bin/locust" -f load/locustfile.py --headless --only-summary \
    --host http://127.0.0.1:18095 --origin-url http://127.0.0.1:18095 --admin-token bench-admin-token-of-at-least-32-bytes \
    -u 50 -r 50 -t 60s --think-min 0.01 --think-max 0.1 --catalogue-size 20000 --warm-entities 0 \
    --slo-file load/slo-origin.yaml --report ".bench/origin-load-l1-$l1.json" 2>/dev/null \
    | grep -E "^(origin|purges|PASS|FAIL|SLO)" || status=1
  kill $origin
  wait $origin 2>/dev/null || true
done
exit $status
