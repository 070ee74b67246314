#!/usr/bin/env bash
# build-bins.sh — build what the issue-18 scripts run, and print where it is.
#
#   scripts/build-bins.sh            prints two lines: NEWSWATCH_BIN=… and PARSE_ONLY_BIN=…
#
# Release build of newswatch and of the parse-only benchmark (benches/parse_only.rs), one job
# at a time (CARGO_BUILD_JOBS, default 1: the machine is shared) under `nice`. A binary given
# as NEWSWATCH_BIN is used as is (only the benchmark is built).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
if [ -z "${NEWSWATCH_BIN:-}" ]; then
  nice cargo build --release --locked --bin newswatch >&2
  NEWSWATCH_BIN="$(pwd)/${CARGO_TARGET_DIR:-target}/release/newswatch"
fi
PARSE_ONLY_BIN=$(nice cargo bench --locked --bench parse_only --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "parse_only" and m.get("executable"): print(m["executable"])' | tail -1)
[ -x "$NEWSWATCH_BIN" ] || { echo "build-bins.sh: no newswatch binary at $NEWSWATCH_BIN" >&2; exit 1; }
[ -x "$PARSE_ONLY_BIN" ] || { echo "build-bins.sh: parse_only benchmark did not build" >&2; exit 1; }
echo "NEWSWATCH_BIN=$NEWSWATCH_BIN"
echo "PARSE_ONLY_BIN=$PARSE_ONLY_BIN"
