#!/usr/bin/env bash
# What a request costs the local runtime in CPU, by how the edge answers it: a miss (fetched
# and stored), a hit, and a read of an expired entry (our edge revalidates it: the origin's
# 304 is merged and stored again). The release origin on its embedded default and our Worker
# in `wrangler dev --local` (purge secret set, so fills register in the purge index as in the
# load test); N distinct pages (entities, breadcrumbs, children) found by walking the
# hierarchy. CPU is read from /proc for wrangler's two workerd processes (the one listening on
# the dev port, and the other one), divided by the requests answered. Local CPU is the
# simulator's, not Cloudflare's: compare the rows, not the absolute numbers.
# WORKER_CONFIG=bench/js-cache-worker/wrangler.toml measures the minimal JavaScript Worker
# instead (fetch and put on a miss, match on a hit), the floor for the same runtime.
# Usage: [WORKER_CONFIG=...] bench/edge-cpu.sh [distinct pages] [seconds of hits]
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_edge_tools
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
PAGES="${1:-3000}"
HIT_SECONDS="${2:-10}"
WORKER_CONFIG="${WORKER_CONFIG:-wrangler.toml}"

cargo build --release --locked -p forecastin-origin
./scripts/build-edge >/dev/null
state=$(mktemp -d)
LISTEN_ADDR=127.0.0.1:18080 DATA_DIR="$state/origin" RUST_LOG=warn ./target/release/forecastin-origin &
pids=($!)
EDGE_SKIP_BUILD=1 PURGE_SECRET=bench setsid wrangler dev --local --ip 127.0.0.1 --port 18787 \
  --inspector-port 19229 --config "$WORKER_CONFIG" --show-interactive-dev-session=false --log-level error \
  --persist-to "$state/edge" --var ORIGIN_URL:http://127.0.0.1:18080 >/dev/null &
pids+=(-$!)
trap 'kill -- "${pids[@]}" 2>/dev/null || true; rm -rf "$state"' EXIT
for _ in $(seq 120); do curl -fs http://127.0.0.1:18787/ >/dev/null && break; sleep 0.5; done

python3 - "$PAGES" >"$state/paths" <<'EOF'
import json, sys, urllib.request
wanted, queue, paths = int(sys.argv[1]), ["world"], []
while queue and len(paths) < wanted:
    url = f"http://127.0.0.1:18080/api/v1/entities/{queue.pop(0)}/children?limit=200"
    for child in json.load(urllib.request.urlopen(url))["items"]:
        paths += [f"/api/v1/entities/{child['id']}{suffix}" for suffix in ("", "/ancestors", "/children")]
        queue.append(child["id"])
print("\n".join(paths[:wanted]))
EOF
pages=$(wc -l <"$state/paths")
cat >"$state/cycle.lua" <<EOF
local paths, i = {}, 0
for line in io.lines("$state/paths") do paths[#paths + 1] = line end
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
EOF

# CPU ticks (1/100 s) of the workerd listening on the dev port, then of the other one.
ticks() {
  local listener=0 other=0 pid
  for pid in $(pgrep -f 'workerd serve'); do
    local t
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    if grep -q 'entry=127.0.0.1:18787' "/proc/$pid/cmdline"; then listener=$((listener + t)); else other=$((other + t)); fi
  done
  echo "$listener $other"
}
# Prints one row: what, requests, ms of CPU per request (listener, other, both).
row() {
  awk -v what="$1" -v n="$2" -v a="$3" -v b="$4" 'BEGIN {
    split(a, x, " "); split(b, y, " "); e = (y[1] - x[1]) * 10 / n; w = (y[2] - x[2]) * 10 / n
    printf "%-28s %6d requests   CPU ms per request: listener %.2f, other %.2f, both %.2f\n", what, n, e, w, e + w }'
}
read_all() { xargs -P 8 -I{} curl -fs -o /dev/null "http://127.0.0.1:18787{}" <"$state/paths"; }

echo "$pages distinct pages"
before=$(ticks); read_all; row "miss (fetched and stored)" "$pages" "$before" "$(ticks)"
filled_at=$SECONDS
before=$(ticks)
hits=$(wrk -t1 -c8 -d"${HIT_SECONDS}s" -s "$state/cycle.lua" http://127.0.0.1:18787 | awk '/requests in/ { print $1 }')
row "hit" "$hits" "$before" "$(ticks)"
if [ "$WORKER_CONFIG" = wrangler.toml ]; then
  curl -fsI "http://127.0.0.1:18787$(head -1 "$state/paths")" | grep -qi '^cache-status: .*; hit' ||
    { echo "the edge did not hit" >&2; exit 1; }
fi
# Every entry past s-maxage (60 s), so that each read revalidates with the origin.
sleep $((filled_at + 62 - SECONDS))
before=$(ticks); read_all; row "expired entry" "$pages" "$before" "$(ticks)"
