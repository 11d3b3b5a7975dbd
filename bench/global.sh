#!/usr/bin/env bash
# The global model (load/model.py) in full: the analyst mix over the 1,000,000-entity
# hierarchy (ENTITIES), 100,000 req/s over 300 Cloudflare locations with tiered cache as
# deployed, priced at 10k and 100k req/s; writes target/global.json. The hierarchy is the
# hierarchy benchmark's SQLite database (.bench/hierarchy-<size>.db), generated here by
# `forecastin-origin generate` when missing. Arguments go to the model, e.g. `--upper-tiers 0`
# (tiered cache off) or `--locations 1`.
set -euo pipefail
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"
ensure_load_tools
ENTITIES="${ENTITIES:-1000000}"
tree=".bench/hierarchy-$ENTITIES.db"
if [ ! -f "$tree" ]; then
  log "generating $ENTITIES entities into $tree"
  cargo build --release --locked -p forecastin-origin
  mkdir -p .bench
  DATABASE_URL="sqlite://$tree?mode=rwc" ./target/release/forecastin-origin generate --entities "$ENTITIES"
fi
mkdir -p target
"$TOOLS/venv/bin/python" load/model.py --tree "$tree" --out target/global.json \
  --write-samples "${WRITE_SAMPLES:-100000}" "$@"
