#!/usr/bin/env bash
# bench.sh — reproduce the figures in BENCHMARKS.md with one command.
#
#   scripts/bench.sh [N=1000 ...]     e.g. scripts/bench.sh 1000 10000
#
# 1. records the machine and its load (nproc, CPU model, RAM, uptime);
# 2. builds the release binary (cargo build --release, ~3 min from cold);
# 3. runs the shared side-by-side harness (peers.sh) for each N, with newswatch added;
# 4. measures the daemon's idle CPU over 10 s (newswatch run: hourly schedule, then a
#    one-minute schedule right after its first poll);
# 5. unless SKIP_MICRO=1, runs the micro-benchmarks (cargo bench, corpus text).
#
# Environment: PEERS_SH (default ../shared/bench/peers.sh), CORPUS (default ../shared/corpus),
# PEERS / JOBS / POLLS / RULES are passed through to peers.sh, RESULTS=file.tsv keeps raw rows.
# Long steps run under `nice`; the machine's load is printed so figures can be judged.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PEERS_SH="${PEERS_SH:-$ROOT/../shared/bench/peers.sh}"
CORPUS="${CORPUS:-$ROOT/../shared/corpus}"
[ -x "$PEERS_SH" ] || [ -f "$PEERS_SH" ] || { echo "bench.sh: no peers.sh at $PEERS_SH" >&2; exit 1; }
[ "$#" -gt 0 ] || set -- 1000

echo "## machine"
echo "nproc: $(nproc)"
grep -m1 'model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*: /cpu: /'
awk '/MemTotal/ { printf "ram: %.1f GiB\n", $2 / 1048576 }' /proc/meminfo
echo "load before: $(uptime)"

echo "## build"
nice cargo build --release --locked
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/newswatch"

for n in "$@"; do
  echo "## peers.sh N=$n (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
  NEWSWATCH_BIN="$BIN" nice bash "$PEERS_SH" "$n" "$CORPUS"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo "## idle CPU of the daemon"
"$ROOT/scripts/idle-cpu.sh" "$BIN"
SCHEDULE='* * * * *' WAIT_POLL=1 "$ROOT/scripts/idle-cpu.sh" "$BIN"

if [ "${SKIP_MICRO:-0}" != 1 ]; then
  echo "## micro-benchmarks"
  NEWSWATCH_CORPUS="$CORPUS" nice cargo bench --locked --bench pipeline
fi
