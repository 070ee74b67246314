#!/usr/bin/env bash
# scale.sh — N feeds on one host, a cycle where CHANGED% of them changed (issue 18: < 60 s CPU,
# < 200 MB RSS at N=100,000, CHANGED=5; warm all-304 at N=1,000 ≤ 0.1 s).
#
#   scripts/scale.sh [N=100000] [CHANGED=5] [CYCLES=1]
#
# 1. www/feed_NNNNNN.ext: N hard links cycling ../shared/corpus/real/* in sorted order (as
#    peers.sh), served by nginx on 127.0.0.1 (peers.sh's nginx configuration: ETag and
#    Last-Modified from the file's mtime and size, 304 on a match). SERVER=python uses the
#    shared feedserver.py instead (same validators).
# 2. A config with the N feeds and peers.sh's rules (5 seed + RULES=1000 generated).
# 3. Poll 1: cold (empty database; minutes at 100,000 — fine). Poll 2: warm, nothing changed
#    (every feed 304).
# 4. Simulated change: every (100/CHANGED)-th feed (evenly spread) is re-pointed to a
#    *different* corpus document: `ln -f v2/<the next corpus file> www/feed_NNNNNN.ext`
#    (os.link to a temporary name + rename, the same thing atomically), where v2/ holds
#    private copies of the corpus files made after poll 2 (`cp` then `touch`: mtime = now,
#    so size and mtime, hence nginx's ETag and Last-Modified, differ from the old document's;
#    the shared corpus files are never touched). Each such feed then answers 200 with
#    another feed's ~18 entries, all new to it — more new entries than a real 5% cycle has.
# 5. Poll 3 (and, with CYCLES>1, further cycles re-pointing the next evenly spread set):
#    wall, user+sys CPU, max RSS of the newswatch process, and the server's 200/304 counts
#    (nginx: its access log). Prints a table.
#
# Environment: SERVER (nginx|python), PER_HOST (sets the documented [http] per_host knob in
# the bench config; default: newswatch's default, 2), CONCURRENCY ([http] concurrency),
# NEWSWATCH_BIN (default: build the release binary), CORPUS, RULES, KEEP=1 (keep the work
# dir, e.g. to profile a cycle by hand), SKIP_WARM=1. Needs ulimit -n above concurrency + a
# few hundred; nginx gets worker_connections 8192. Only the server this script starts is
# signalled (by PID).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
if [ -z "${NEWSWATCH_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" nice cargo build --release --locked --bin newswatch >&2)
  export NEWSWATCH_BIN="$ROOT/${CARGO_TARGET_DIR:-target}/release/newswatch"
fi
echo "scale.sh: ulimit -n $(ulimit -n)" >&2
exec python3 "$HERE/scale.py" "${1:-100000}" "${2:-5}" "${3:-1}"
