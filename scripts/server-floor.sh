#!/usr/bin/env bash
# server-floor.sh — how fast the bench's Python feed server (../shared/bench/feedserver.py)
# can answer at all, measured with wrk (a C client that does nothing else), so that a
# client's cold and warm figures under SERVER=python can be read against the floor the server
# sets (issue 14/18: "warm ≤ 0.1 s").
#
#   scripts/server-floor.sh [N=1000]
#
# Builds N feed files as peers.sh does (hard links cycling ../shared/corpus/real), starts
# feedserver.py on them, and runs wrk for 4 s per case: conditional GETs with each file's
# ETag (every answer a 304: the warm cycle) over 1, 2 and 4 connections, and unconditional
# GETs with `Connection: close` (every answer a 200 with the whole file: the cold cycle) over
# 2 and 4 connections. Prints requests/s and the time N requests take at that rate.
# Needs wrk (apt-get install wrk). Only the server this script starts is signalled.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
N="${1:-1000}"
CORPUS="${CORPUS:-$HERE/../../shared/corpus}"
SERVER_PY="${SERVER_PY:-$HERE/../../shared/bench/feedserver.py}"
command -v wrk >/dev/null || { echo "server-floor.sh: wrk not installed (apt-get install wrk)" >&2; exit 1; }
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/feeds"
mapfile -t files < <(ls "$CORPUS/real" | sort)
for ((i = 0; i < N; i++)); do
  f="${files[$((i % ${#files[@]}))]}"
  ln "$CORPUS/real/$f" "$work/feeds/f$i.${f##*.}" 2>/dev/null || cp -p "$CORPUS/real/$f" "$work/feeds/f$i.${f##*.}"
done
python3 - "$work" <<'EOF'
import os, sys
work = sys.argv[1]
paths = []
for n in sorted(os.listdir(f"{work}/feeds")):
    st = os.stat(f"{work}/feeds/{n}")
    paths.append((n, '"%x-%x"' % (st.st_size, st.st_mtime_ns)))
for name, hdr in [("warm.lua", '{["If-None-Match"] = p[2]}'), ("cold.lua", '{["Connection"] = "close"}')]:
    with open(f"{work}/{name}", "w") as f:
        f.write("paths = {\n")
        for n, e in paths:
            f.write('  {"/%s", %r},\n' % (n, e))
        f.write("}\ni = 0\nrequest = function()\n  i = i %% #paths + 1\n  local p = paths[i]\n"
                "  return wrk.format(\"GET\", p[1], %s)\nend\n" % hdr)
EOF
python3 "$SERVER_PY" "$work/feeds" "$work/port" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port="$(cat "$work/port")"
echo "feedserver.py, $N files ($(du -sbL --apparent-size "$work/feeds" | cut -f1) bytes of distinct inodes), load $(cut -d' ' -f1-3 /proc/loadavg)"
run() {
  local kind=$1 c=$2
  local rate
  rate="$(wrk -t1 -c"$c" -d4s -s "$work/$kind.lua" "http://127.0.0.1:$port" | awk '/Requests\/sec/ {print $2}')"
  printf '%s, %s connection(s): %s requests/s, %s requests in %s s\n' "$kind" "$c" "$rate" "$N" \
    "$(python3 -c "print(round($N / $rate, 3))")"
}
for c in 1 2 4; do run warm "$c"; done
for c in 2 4; do run cold "$c"; done
