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
}

# The Rust targets the workspace builds for.
ensure_rust_targets() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}
