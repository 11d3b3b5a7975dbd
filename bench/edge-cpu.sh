#!/usr/bin/env bash
# What a request costs the local runtime in CPU, by how the edge answers it: a page's first
# read (a miss, fetched and stored, unless a fetch ahead stored it already), a hit, and a read
# after the entry expired (our edge revalidates it: the origin's 304 is merged and stored). The release origin on its embedded default and our Worker
# in `wrangler dev --local` (purge secret set, so fills register in the purge index as in the
# load test; BENCH_PURGE_INDEX=0 starts it without); N distinct pages (entities, breadcrumbs,
# children) found by walking the hierarchy. CPU is read from /proc for wrangler's two workerd
# processes (its proxy, on the dev port, and the one running the Worker), divided by the
# requests answered; each row also counts the answers by their Cache-Status. Local CPU is the
# simulator's, not Cloudflare's: compare the rows, not the absolute numbers.
# WORKER_CONFIG=bench/js-cache-worker/wrangler.toml measures the minimal JavaScript Worker
# instead (fetch and put on a miss, match on a hit), and bench/floor-worker/wrangler.toml the
# same in Rust: the floors for the same runtime. BENCH_RUNTIME=workerd runs the Worker in bare
# `workerd serve` (one process, no proxy; see start_bench_worker).
# Usage: [WORKER_CONFIG=...] [BENCH_PURGE_INDEX=0] [BENCH_RUNTIME=workerd] bench/edge-cpu.sh [pages] [seconds of hits]
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
PAGES="${1:-3000}"
HIT_SECONDS="${2:-10}"
WORKER_CONFIG="${WORKER_CONFIG:-wrangler.toml}"

start_bench_origin
build_bench_worker "$WORKER_CONFIG"
start_bench_worker 18787 19229 "$WORKER_CONFIG"

python3 - "$PAGES" >"$BENCH_STATE/paths" <<'EOF'
import json, sys, urllib.request
wanted, queue, paths = int(sys.argv[1]), ["world"], []
while queue and len(paths) < wanted:
    url = f"http://127.0.0.1:18080/api/v1/entities/{queue.pop(0)}/children?limit=200"
    for child in json.load(urllib.request.urlopen(url))["items"]:
        paths += [f"/api/v1/entities/{child['id']}{suffix}" for suffix in ("", "/ancestors", "/children")]
        queue.append(child["id"])
print("\n".join(paths[:wanted]))
EOF
pages=$(wc -l <"$BENCH_STATE/paths")
cat >"$BENCH_STATE/cycle.lua" <<EOF
local paths, i = {}, 0
for line in io.lines("$BENCH_STATE/paths") do paths[#paths + 1] = line end
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
EOF

# CPU ticks of the Worker's workerd processes (its process group): wrangler's proxy, listening
# on the dev port, then the one running the Worker.
worker_group=${BENCH_PIDS[-1]#-}
hz=$(getconf CLK_TCK)
ticks() {
  local proxy=0 worker=0 pid t
  for pid in $(pgrep -g "$worker_group" workerd); do
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    if grep -q 'entry=127.0.0.1:18787' "/proc/$pid/cmdline"; then proxy=$((proxy + t)); else worker=$((worker + t)); fi
  done
  echo "$proxy $worker"
}
# Prints one row: what, requests, ms of CPU per request (proxy, Worker, both), how answered.
row() {
  awk -v what="$1" -v n="$2" -v a="$3" -v b="$4" -v hz="$hz" -v how="${5:-}" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    p = (y[1] - x[1]) * 1000 / hz / n; w = (y[2] - x[2]) * 1000 / hz / n
    printf "%-18s %6d requests  CPU ms each: proxy %.2f, Worker %.2f, both %.2f  %s\n", what, n, p, w, p + w, how }'
}
# Reads every page once, 8 at a time; prints how many answers each Cache-Status had (its
# verdict: hit or the forward reason), so a row says what it measured.
read_all() {
  xargs -P 8 -I{} curl -fs -o /dev/null -w '%header{cache-status}\n' "http://127.0.0.1:18787{}" \
    <"$BENCH_STATE/paths" | sed -E 's/^[^;]*; *//; s/;.*//; s/^$/(none)/' | sort | uniq -c |
    awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }'
}

echo "$pages distinct pages"
before=$(ticks); how=$(read_all); row "first read" "$pages" "$before" "$(ticks)" "$how"
filled_at=$SECONDS
before=$(ticks)
out=$(wrk -t1 -c8 -d"${HIT_SECONDS}s" -s "$BENCH_STATE/cycle.lua" http://127.0.0.1:18787)
hits=$(awk '/requests in/ { print $1 }' <<<"$out")
if [ -z "$hits" ] || grep -q 'Non-2xx' <<<"$out"; then echo "wrk: $out" >&2; exit 1; fi
row "hit" "$hits" "$before" "$(ticks)"
if [ "$WORKER_CONFIG" = wrangler.toml ]; then
  curl -fsI "http://127.0.0.1:18787$(head -1 "$BENCH_STATE/paths")" | grep -qi '^cache-status: .*; hit' ||
    { echo "the edge did not hit" >&2; exit 1; }
fi
# Every entry past s-maxage (60 s): each read revalidates with the origin, in the background
# for entries still within stale-while-revalidate (30 s), before answering for the others.
wait_s=$((filled_at + 62 - SECONDS))
if [ "$wait_s" -gt 0 ]; then sleep "$wait_s"; fi
before=$(ticks); how=$(read_all); row "read after expiry" "$pages" "$before" "$(ticks)" "$how"
