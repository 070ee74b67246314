#!/usr/bin/env bash
# linear.sh — does a cold poll of 10,000 feeds take ≤ 10× the time of 1,000? (issue 18)
#
#   scripts/linear.sh [PAIRS=3] [SMALL=1000] [LARGE=10000]
#
# Two peers.sh-style work dirs (SMALL and LARGE hard links cycling the corpus, peers.sh's
# rules), each served by its own server (SERVER=nginx default, or python); then PAIRS pairs
# of cold polls (empty database each time), back to back and alternating the order
# (S L, L S, S L, …), each measured as wall, user+sys CPU and max RSS of the newswatch
# process. Prints every poll, the per-pair ratios LARGE/SMALL of wall and CPU and their
# medians (target ≤ 10×), and peak RSS at LARGE (target ≤ 100 MB).
#
# Environment: SERVER, NEWSWATCH_BIN (default: build the release binary), CORPUS, RULES, KEEP.
# Only the servers this script starts are signalled (by PID).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
if [ -z "${NEWSWATCH_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" nice cargo build --release --locked --bin newswatch >&2)
  export NEWSWATCH_BIN="$ROOT/${CARGO_TARGET_DIR:-target}/release/newswatch"
fi
exec python3 "$HERE/linear.py" "${1:-3}" "${2:-1000}" "${3:-10000}"
