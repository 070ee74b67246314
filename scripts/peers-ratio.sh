#!/usr/bin/env bash
# peers-ratio.sh — newswatch's cold poll against the fastest peer, median of RUNS runs, under
# both bench servers (issue 18: ≥ 6× median, no run under 5×, warm ≤ 0.1 s).
#
#   scripts/peers-ratio.sh [RUNS=5] [N=1000]
#
# Runs ../shared/bench/peers.sh N (POLLS=3: cold, warm, 3rd) RUNS times per server, the two
# servers alternating (nginx, python, nginx, …) so that slow drift of the host spreads over
# both, with NEWSWATCH_BIN added to PEERS (default "newsboat sfeed newswatch": in a full run
# python and rss2email were far slower than newsboat; PEERS=all runs every peer). Raw rows
# go to RESULTS (default results/peers-ratio-<date>.tsv, one row per poll with the run and
# server prepended). Per run: ratio = fastest peer's cold wall / newswatch's cold wall.
# Prints per server the runs, median and worst ratio, newswatch's cold/warm/3rd medians and
# peak RSS, and the load average before each run.
#
# Environment: PEERS, SERVERS (default "nginx python"), NEWSWATCH_BIN (default: build the
# release binary), PEERS_SH, CORPUS, JOBS/RULES (passed to peers.sh).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
RUNS="${1:-5}"
N="${2:-1000}"
PEERS_SH="${PEERS_SH:-$ROOT/../shared/bench/peers.sh}"
CORPUS="${CORPUS:-$ROOT/../shared/corpus}"
SERVERS="${SERVERS:-nginx python}"
PEERS="${PEERS:-newsboat sfeed newswatch}"
[ "$PEERS" = all ] && PEERS="newsboat sfeed python rss2email newswatch"
if [ -z "${NEWSWATCH_BIN:-}" ]; then
  (cd "$ROOT" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" nice cargo build --release --locked --bin newswatch >&2)
  NEWSWATCH_BIN="$ROOT/${CARGO_TARGET_DIR:-target}/release/newswatch"
fi
mkdir -p "$ROOT/results"
RESULTS="${RESULTS:-$ROOT/results/peers-ratio-$(date +%Y%m%d-%H%M%S).tsv}"
: > "$RESULTS"
echo "peers-ratio.sh: RUNS=$RUNS N=$N SERVERS=\"$SERVERS\" PEERS=\"$PEERS\" bin=$NEWSWATCH_BIN results=$RESULTS" >&2
for ((r = 1; r <= RUNS; r++)); do
  for server in $SERVERS; do
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    tmp="$(mktemp)"
    echo "== run $r server $server (load $load)" >&2
    SERVER="$server" PEERS="$PEERS" POLLS=3 RESULTS="$tmp" NEWSWATCH_BIN="$NEWSWATCH_BIN" \
      bash "$PEERS_SH" "$N" "$CORPUS" >/dev/null
    awk -v r="$r" -v s="$server" -v l="$load" 'BEGIN{OFS="\t"} { print r, s, l, $0 }' "$tmp" >> "$RESULTS"
    rm -f "$tmp"
  done
done
exec python3 - "$RESULTS" <<'PY'
import statistics, sys
from collections import defaultdict
# row: run, server, load, n, jobs, peer, poll, wall, rss, rc, 200, 304, req, items, ids, feeds
runs = defaultdict(dict)   # (server, run) -> {(peer, poll): (wall, rss, rc)}
load = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    run, server, ld, peer, k = f[0], f[1], f[2], f[5], int(f[6])
    runs[(server, run)][(peer, k)] = (float(f[7]), float(f[8]), int(f[9]))
    load[(server, run)] = ld
for server in dict.fromkeys(s for s, _ in runs):
    print(f"\n### SERVER={server}\n")
    print("| run | load before | newswatch cold s | warm s | 3rd s | RSS MB | fastest peer | its cold s | ratio |")
    print("|---:|---|---:|---:|---:|---:|---|---:|---:|")
    ratios, cold, warm, third, rss = [], [], [], [], []
    for (s, run), d in sorted(runs.items(), key=lambda kv: int(kv[0][1])):
        if s != server or ("newswatch", 1) not in d:
            continue
        peers = {p: v for (p, k), v in d.items() if k == 1 and p != "newswatch" and v[2] == 0}
        nw = [d.get(("newswatch", k), (float("nan"), 0, 0)) for k in (1, 2, 3)]
        fast = min(peers, key=lambda p: peers[p][0]) if peers else None
        ratio = peers[fast][0] / nw[0][0] if fast and nw[0][0] > 0 else float("nan")
        ratios.append(ratio); cold.append(nw[0][0]); warm.append(nw[1][0]); third.append(nw[2][0])
        rss.append(max(v[1] for (p, k), v in d.items() if p == "newswatch"))
        print(f"| {run} | {load[(s, run)]} | {nw[0][0]:.2f} | {nw[1][0]:.2f} | {nw[2][0]:.2f} | {rss[-1]:.0f} "
              f"| {fast} | {peers[fast][0] if fast else float('nan'):.2f} | {ratio:.2f}x |")
    if ratios:
        print(f"\n{server}: ratio median **{statistics.median(ratios):.2f}x**, worst {min(ratios):.2f}x, "
              f"best {max(ratios):.2f}x over {len(ratios)} runs (target: median >= 6x, none < 5x); "
              f"newswatch cold median {statistics.median(cold):.2f} s, warm median {statistics.median(warm):.2f} s "
              f"(max {max(warm):.2f}), 3rd median {statistics.median(third):.2f} s (target warm <= 0.1 s), "
              f"peak RSS {max(rss):.0f} MB")
PY
