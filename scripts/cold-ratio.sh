#!/usr/bin/env bash
# cold-ratio.sh — cold-poll CPU against parse-only CPU, same documents, same run (issue 18).
#
#   scripts/cold-ratio.sh [N=1000] [RUNS=3]
#
# Builds N feed files as peers.sh does (hard links cycling ../shared/corpus/real), a config
# with those N feeds and peers.sh's rules, then RUNS times, alternately:
#   (a) parse-only: benches/parse_only.rs, single-threaded, feed_rs::parser::parse on each
#       document's raw bytes (min of 3 passes), and newswatch's own parse_feed for reference;
#   (b) a cold `newswatch --config … poll` (empty database) of the same N documents served on
#       127.0.0.1 (SERVER=nginx, default, or SERVER=python), user+sys CPU of that process
#       (os.wait4 rusage), wall and max RSS;
# and prints both, the ratio poll-CPU / feed-rs-CPU per run, and the median (target ≤ 2).
#
# Environment: SERVER (nginx|python), NEWSWATCH_BIN (skip building newswatch), CORPUS,
# RULES (default 1000), KEEP=1 (keep the work dir), CARGO_BUILD_JOBS (default 1).
# Only the server this script starts is signalled (by PID).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
eval "$("$HERE/build-bins.sh")"
export NEWSWATCH_BIN PARSE_ONLY_BIN
exec python3 "$HERE/cold_ratio.py" "${1:-1000}" "${2:-3}"
