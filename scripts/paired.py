#!/usr/bin/env python3
"""paired.py — compare two newswatch builds on the same cold poll, in alternating pairs.

    scripts/paired.py [--n 1000] [--pairs 8] [--corpus ../shared/corpus] [--bench ../shared/bench]
                      [--env-a KEY=VALUE]... [--append-a TOML] BIN_A BIN_B

With the same binary twice, --env-a / --append-a compare two settings of one build, e.g. the
cost of the archive (--append-a '[archive]\nkeep = "0"') or of stories
(--env-a NEWSWATCH_BENCH_NO_STORIES=1).

Single wall-clock runs on a shared VM drift by ±15%, more than most optimisations are worth.
This script polls the same N loopback feeds with build A and build B alternately (A B, B A,
A B, ...), each from an empty database, and reports the median of the per-pair ratios B/A of
CPU time (user + sys of newswatch) and of wall time. Pairs run seconds apart, so the host's
slow drift cancels out of the ratio.

Set-up comes from the shared harness: `KEEP=1 POLLS=2 PEERS=newswatch ../shared/bench/peers.sh N`
builds the feed files and the config (seed rules + 1,000 generated ones) and keeps its work
dir; this script then serves that dir with `feedserver.py` on the same port and polls it.
Only the server this script started is signalled (by its PID); the work dir is removed at the
end unless KEEP=1.
"""
import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="feeds (default 1000)")
    ap.add_argument("--pairs", type=int, default=8, help="pairs of polls (default 8)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "..", "shared", "corpus"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "..", "shared", "bench"),
                    help="folder of peers.sh and feedserver.py")
    ap.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for build A's polls only (repeatable)")
    ap.add_argument("--append-a", default="", metavar="TOML",
                    help="text appended to the config for build A's polls only")
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    args = ap.parse_args()
    bench = os.path.abspath(args.bench)
    bins = [os.path.abspath(args.bin_a), os.path.abspath(args.bin_b)]
    for b in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"paired.py: not an executable: {b}")

    env = dict(os.environ, KEEP="1", POLLS="2", PEERS="newswatch", NEWSWATCH_BIN=bins[0])
    setup = subprocess.run(
        ["bash", os.path.join(bench, "peers.sh"), str(args.n), args.corpus],
        env=env, capture_output=True, text=True,
    )
    kept = re.search(r"work dir kept: (\S+)", setup.stderr)
    if setup.returncode != 0 or not kept:
        sys.exit(f"paired.py: peers.sh set-up failed:\n{setup.stderr[-2000:]}")
    work = kept.group(1)
    nw = os.path.join(work, "newswatch")
    config = os.path.join(nw, "newswatch.toml")
    configs = [config, config]
    if args.append_a:
        configs[0] = os.path.join(nw, "newswatch-a.toml")
        with open(config) as src, open(configs[0], "w") as dst:
            dst.write(src.read() + "\n" + args.append_a + "\n")
    envs = [dict(os.environ), dict(os.environ)]
    for kv in args.env_a:
        k, _, v = kv.partition("=")
        envs[0][k] = v
    port = open(os.path.join(work, "port")).read().strip()

    server = subprocess.Popen(
        [sys.executable, os.path.join(bench, "feedserver.py"), os.path.join(work, "www"),
         os.path.join(work, "port.paired"), "--port", port],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(work, "port.paired")):
            if time.time() > deadline or server.poll() is not None:
                sys.exit("paired.py: feedserver.py did not start")
            time.sleep(0.05)
        runs = {0: [], 1: []}
        for i in range(args.pairs):
            for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                for f in ("nw.db", "nw.db-wal", "nw.db-shm"):
                    try:
                        os.unlink(os.path.join(nw, f))
                    except FileNotFoundError:
                        pass
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.monotonic()
                done = subprocess.run([bins[which], "--config", configs[which], "poll"], cwd=nw,
                                      env=envs[which],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall = time.monotonic() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                if done.returncode != 0:
                    sys.exit(f"paired.py: {bins[which]} poll exited {done.returncode}")
                runs[which].append((wall, cpu))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work dir kept: {work}", file=sys.stderr)

    def med(which, k):
        return statistics.median(r[k] for r in runs[which])

    print(f"N={args.n}, {args.pairs} pairs, cold polls from an empty database")
    for which, label in ((0, "A"), (1, "B")):
        print(f"{label} {bins[which]}: wall median {med(which, 0):.2f} s, "
              f"CPU median {med(which, 1):.2f} s")
    for k, name in ((1, "CPU"), (0, "wall")):
        ratios = [runs[1][i][k] / runs[0][i][k] for i in range(args.pairs)]
        print(f"B/A {name}: median of per-pair ratios {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
