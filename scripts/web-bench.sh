#!/usr/bin/env bash
# web-bench.sh BIN — cost of the web layer at 100,000 stored matches.
#
# 1. Builds a database of 100,000 matches (3 feeds, 5 rules) with SQL on the real schema
#    (the schema comes from a first `BIN poll` of the local feed).
# 2. Starts `BIN run` with [web] on 127.0.0.1:PORT and one loopback feed polled every minute
#    (so the daemon polls during the load test).
# 3. Server time for a page of 50: the first page, a page 1,000 deep (by cursor) and a page
#    filtered by rule and status, each the median of 20 requests (curl time_total on loopback).
# 4. /api/v1/matches?limit=50 under load: wrk (or oha) with 2 threads, 16 connections, 10 s.
# Needs sqlite3, curl, python3 and wrk or oha. Only the processes this script started are
# signalled (by PID).
set -euo pipefail
BIN="$(realpath "${1:?usage: web-bench.sh path/to/newswatch (a release build)}")"
N="${N:-100000}"
PORT="${PORT:-18280}"
FEED_PORT="${FEED_PORT:-18281}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TMP="$(mktemp -d /tmp/nw-web-bench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$TMP/www"
cp "$ROOT/tests/fixtures/uk-news.rss" "$TMP/www/feed.xml"
cat > "$TMP/newswatch.toml" <<CFG
[storage]
path = "$TMP/nw.db"
[schedule]
poll = "* * * * *"
timezone = "UTC"
[web]
listen = "127.0.0.1:$PORT"
[[feeds]]
name = "local"
url = "http://127.0.0.1:$FEED_PORT/feed.xml"
[[rules]]
name = "nca"
query = 'NCA OR "National Crime Agency"'
CFG
python3 -m http.server "$FEED_PORT" --bind 127.0.0.1 --directory "$TMP/www" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
# Creates the database (schema and all) and stores the local feed's matches.
"$BIN" --config "$TMP/newswatch.toml" poll 2>/dev/null || true
echo "building $N matches…" >&2
sqlite3 "$TMP/nw.db" >/dev/null <<SQL
BEGIN;
INSERT INTO feeds (name, url) VALUES ('bench-a', 'https://a.example/feed'), ('bench-b', 'https://b.example/feed'), ('bench-c', 'https://c.example/feed');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO items (canonical_url, link, guid, title, summary, content, published_at, first_seen_at, updated_at, snippet, status)
SELECT 'https://a.example/story-' || i, 'https://a.example/story-' || i, 'g' || i,
       'Story ' || i || ': NCA and GCHQ in the news',
       'The National Crime Agency (NCA) said on day ' || i || ' that GCHQ helped.', '',
       strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', '+' || (i * 5) || ' minutes'),
       strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', '+' || (i * 5 + 3) || ' minutes'),
       strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', '+' || (i * 5 + 3) || ' minutes'),
       'The National Crime Agency (NCA) said on day ' || i || ' that GCHQ helped.',
       CASE i % 4 WHEN 0 THEN 'read' WHEN 1 THEN 'new' WHEN 2 THEN 'new' ELSE 'starred' END
FROM n;
INSERT INTO item_rules (item_id, rule, terms, first_matched_at)
SELECT id, 'rule' || (id % 5), '["NCA"]', first_seen_at FROM items;
INSERT INTO item_rules (item_id, rule, terms, first_matched_at)
SELECT id, 'nca', '["NCA"]', first_seen_at FROM items WHERE id % 3 = 0;
INSERT INTO sightings (feed_id, entry_key, fingerprint, item_id, first_seen_at, changed_at)
SELECT (SELECT id FROM feeds WHERE name = 'bench-' || char(97 + i.id % 3)), randomblob(16), randomblob(16), i.id, i.first_seen_at, i.first_seen_at FROM items i;
-- Stories: every 4th report joins the story of the report before it (100,000 reports, 75,000 stories).
INSERT OR IGNORE INTO stories (id, first_seen_at, updated_at)
SELECT id - (id % 4 = 0), first_seen_at, updated_at FROM items;
UPDATE items SET story_id = id - (id % 4 = 0), story_pending = 0;
COMMIT;
SQL
echo "database: $(du -h "$TMP/nw.db" | cut -f1), $(sqlite3 "$TMP/nw.db" 'SELECT count(*) FROM items') matches" >&2
"$BIN" --config "$TMP/newswatch.toml" run 2> "$TMP/daemon.log" &
DPID=$!
PIDS+=($DPID)
for _ in $(seq 1 600); do
  grep -q "listening on" "$TMP/daemon.log" 2>/dev/null && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT"
curl -sf "$URL/healthz" >/dev/null
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_ms() {
  for _ in $(seq 1 20); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done | median | awk '{printf "%.1f", $1 * 1000}'
}
# The cursor 10,000 matches deep (or the last page's, on a smaller database).
CURSOR=$(python3 - "$URL" <<'PY'
import json, sys, urllib.parse, urllib.request
url, cursor = sys.argv[1], None
for _ in range(20):
    q = "limit=500" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
    page = json.load(urllib.request.urlopen(f"{url}/api/v1/matches?{q}"))
    if not page["next_cursor"]:
        break
    cursor = page["next_cursor"]
print(cursor or "")
PY
)
ENC=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$CURSOR")
echo "page of 50, server time on loopback (median of 20):"
echo "  review page, newest:            $(time_ms "$URL/") ms"
echo "  review page, 10,000 deep:       $(time_ms "$URL/?cursor=$ENC") ms"
echo "  review page, rule + status:     $(time_ms "$URL/?rule=nca&status=new") ms"
echo "  /api/v1/matches, newest:        $(time_ms "$URL/api/v1/matches") ms"
echo "  /api/v1/matches, 10,000 deep:   $(time_ms "$URL/api/v1/matches?cursor=$ENC") ms"
echo "load: /api/v1/matches (50 per page) while the daemon polls every minute:"
if command -v oha >/dev/null; then
  oha -z 10s -c 16 --no-tui "$URL/api/v1/matches" | grep -E "Requests/sec|Success rate|Slowest|Average"
else
  wrk -t2 -c16 -d10s "$URL/api/v1/matches" | grep -E "Requests/sec|Latency|requests in|Non-2xx"
fi
curl -s "$URL/metrics" | grep -E '^newswatch_polls_total' || true
