#!/usr/bin/env bash
# idle-cpu.sh BIN — CPU used by an idle `newswatch run` daemon.
#
# Starts the daemon on a throw-away config (one local file:// feed, SCHEDULE default hourly),
# then reads utime+stime from /proc/PID/stat before and after WINDOW seconds (default 10) and
# prints the ticks used (USER_HZ, normally 100/s). The daemon's first poll is jittered into the
# first interval, so with the hourly schedule the window is pure waiting; with
# SCHEDULE='* * * * *' WAIT_POLL=1 the script first waits (up to 2 min) for that first poll.
# Only the daemon this script started is signalled (by its PID).
set -euo pipefail
BIN="$(realpath "${1:?usage: idle-cpu.sh path/to/newswatch}")"
WINDOW="${WINDOW:-10}"
SCHEDULE="${SCHEDULE:-0 * * * *}"
WAIT_POLL="${WAIT_POLL:-0}"
# WEB=127.0.0.1:PORT also serves [web] there (the review page, API and metrics stay idle too).
WEB="${WEB:-}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TMP="$(mktemp -d /tmp/nw-idle.XXXXXX)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
cat > "$TMP/newswatch.toml" <<CFG
[storage]
path = "$TMP/nw.db"

[schedule]
poll = "$SCHEDULE"
timezone = "UTC"

[[feeds]]
name = "fixture"
url = "file://$ROOT/tests/fixtures/uk-news.rss"

[[rules]]
name = "nca"
query = 'NCA OR "National Crime Agency"'
CFG
if [ -n "$WEB" ]; then printf '\n[web]\nlisten = "%s"\n' "$WEB" >> "$TMP/newswatch.toml"; fi
"$BIN" --config "$TMP/newswatch.toml" run 2> "$TMP/daemon.log" &
PID=$!
polled() { "$BIN" --config "$TMP/newswatch.toml" feeds --format json 2>/dev/null | grep -Eq '"last_fetch_at": *"'; }
if [ "$WAIT_POLL" = 1 ]; then
  for _ in $(seq 1200); do polled && break; sleep 0.1; done
  polled || { echo "idle-cpu.sh: no first poll within 2 min; log:" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
fi
sleep 1
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
t0=$(ticks)
sleep "$WINDOW"
t1=$(ticks)
echo "polls logged by the daemon: $(grep -c 'fetched' "$TMP/daemon.log" || true)"
polled && p="after its first poll" || p="(first poll not yet due)"
echo "idle daemon (schedule '$SCHEDULE'): $((t1 - t0)) CPU ticks (utime+stime, $(getconf CLK_TCK)/s) over ${WINDOW}s $p; ticks before the window: ${t0}"
