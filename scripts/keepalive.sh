#!/usr/bin/env bash
# keepalive.sh — unconditional requests with `Connection: close` (A, the default) against
# kept-alive connections (B, NEWSWATCH_BENCH_KEEPALIVE=1), paired, under both bench servers.
#
#   scripts/keepalive.sh [PAIRS=4] [N=1000]
#
# For SERVER in nginx python: scripts/paired.py --server SERVER --n N --pairs PAIRS
# --env-b NEWSWATCH_BENCH_KEEPALIVE=1 BIN BIN (cold polls from an empty database: every
# request is unconditional then; warm polls send validators and reuse connections either way).
# Prints paired.py's medians of the per-pair B/A ratios of CPU and wall for each server.
#
# Environment: NEWSWATCH_BIN (default: build the release binary), SERVERS (default
# "nginx python").
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
if [ -z "${NEWSWATCH_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" nice cargo build --release --locked --bin newswatch >&2)
  NEWSWATCH_BIN="$ROOT/${CARGO_TARGET_DIR:-target}/release/newswatch"
fi
for server in ${SERVERS:-nginx python}; do
  echo "## SERVER=$server: A = Connection: close on unconditional requests, B = keep-alive"
  python3 "$HERE/paired.py" --server "$server" --n "${2:-1000}" --pairs "${1:-4}" \
    --env-b NEWSWATCH_BENCH_KEEPALIVE=1 "$NEWSWATCH_BIN" "$NEWSWATCH_BIN"
done
