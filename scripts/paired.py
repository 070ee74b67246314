#!/usr/bin/env python3
"""paired.py — compare two newswatch builds (or settings) on the same poll, in alternating pairs.

    scripts/paired.py [--n 1000] [--pairs 8] [--server python|nginx] [--warm]
                      [--corpus ../shared/corpus] [--bench ../shared/bench]
                      [--env-a KEY=VALUE]... [--env-b KEY=VALUE]...
                      [--append-a TOML] [--append-b TOML] [--append TOML] [--pg-b URL] BIN_A BIN_B

With the same binary twice, --env-a / --append-a compare two settings of one build, e.g. the
cost of the archive (--append-a '[archive]\\nkeep = "0"') or of stories
(--env-a NEWSWATCH_BENCH_NO_STORIES=1). --append adds TOML to both configs (e.g. an [http]
section). Pass real newlines (bash: $'[http]\\nper_host = 16').

Single wall-clock runs on a shared VM drift by ±15%, more than most optimisations are worth.
This script polls the same N loopback feeds with build A and build B alternately (A B, B A,
A B, ...) and reports the median of the per-pair ratios B/A of CPU time (user + sys of
newswatch) and of wall time. Pairs run seconds apart, so the host's slow drift cancels out of
the ratio. Default: cold polls, each from an empty database. --warm: each side keeps its own
database, polled cold once (not measured), then every measured poll is a warm one (all 304).

Set-up (scripts/nwbench.py): N hard links cycling the corpus and peers.sh's config (seed rules
+ 1,000 generated ones, same generator), served on 127.0.0.1 by the shared feedserver.py
(--server python, the default, as before) or by nginx with peers.sh's nginx configuration.
Only the server this script started is signalled (by its PID); the work dir is removed at the
end unless KEEP=1.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nwbench  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="feeds (default 1000)")
    ap.add_argument("--pairs", type=int, default=8, help="pairs of polls (default 8)")
    ap.add_argument("--server", default="python", choices=("python", "nginx"))
    ap.add_argument("--warm", action="store_true", help="measure warm (all-304) polls")
    ap.add_argument("--corpus", default=nwbench.CORPUS)
    ap.add_argument("--bench", default=nwbench.BENCH, help="folder of feedserver.py")
    ap.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for build A's polls only (repeatable)")
    ap.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for build B's polls only (repeatable)")
    ap.add_argument("--append-a", default="", metavar="TOML",
                    help="text appended to the config for build A's polls only")
    ap.add_argument("--append-b", default="", metavar="TOML",
                    help="text appended to the config for build B's polls only")
    ap.add_argument("--append", default="", metavar="TOML", help="text appended to both configs")
    ap.add_argument("--pg-b", default="", metavar="URL",
                    help="build B stores in this PostgreSQL database instead of an SQLite file; "
                         "it is dropped and created afresh (with psql, through the server's "
                         "'postgres' database) before each cold poll. Only newswatch's own CPU "
                         "is measured, not the server's")
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    args = ap.parse_args()
    nwbench.BENCH = os.path.abspath(args.bench)
    bins = [os.path.abspath(args.bin_a), os.path.abspath(args.bin_b)]
    for b in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"paired.py: not an executable: {b}")

    work = nwbench.Work(args.n, args.corpus)
    runs = {0: [], 1: []}
    try:
        configs, dbs = [], []
        for which, extra in ((0, args.append_a), (1, args.append_b)):
            db = f"nw-{'ab'[which]}.db"
            path = work.write_config(path=os.path.join(work.state, f"newswatch-{'ab'[which]}.toml"),
                                     extra="")
            text = open(path).read().replace(f'{work.state}/nw.db', f'{work.state}/{db}', 1)
            if which == 1 and args.pg_b:
                text = text.replace(f'path = "{work.state}/{db}"', f'url = "{args.pg_b}"', 1)
            # Appended sections go at the end: after the [[rules]] array, a new table header.
            for more in (args.append, extra):
                if more:
                    text += "\n" + more + "\n"
            open(path, "w").write(text)
            configs.append(path)
            dbs.append(db)
        envs = [{}, {}]
        for which, kvs in ((0, args.env_a), (1, args.env_b)):
            for kv in kvs:
                k, _, v = kv.partition("=")
                envs[which][k] = v

        def reset(which):
            if which == 1 and args.pg_b:
                import subprocess
                import urllib.parse
                u = urllib.parse.urlsplit(args.pg_b)
                name = u.path.lstrip("/")
                admin = urllib.parse.urlunsplit(u._replace(path="/postgres"))
                subprocess.run(["psql", "-q", admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                                "-c", f'CREATE DATABASE "{name}"'], check=True,
                               stdout=subprocess.DEVNULL)
                return
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(os.path.join(work.state, dbs[which] + suffix))
                except FileNotFoundError:
                    pass

        with nwbench.Server(args.server, work) as srv:
            if args.warm:
                for which in (0, 1):
                    reset(which)
                    done = nwbench.poll(bins[which], configs[which], envs[which], work.state)
                    if done["rc"] != 0:
                        sys.exit(f"paired.py: {bins[which]} poll exited {done['rc']}: "
                                 f"{done['stderr_tail']}")
            for i in range(args.pairs):
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    if not args.warm:
                        reset(which)
                    srv.reset()
                    done = nwbench.poll(bins[which], configs[which], envs[which], work.state)
                    if done["rc"] != 0:
                        sys.exit(f"paired.py: {bins[which]} poll exited {done['rc']}: "
                                 f"{done['stderr_tail']}")
                    s200, s304, _ = srv.counts()
                    runs[which].append((done["wall"], done["cpu"], done["rss_mb"], s200, s304))
    finally:
        work.close()

    def med(which, k):
        return statistics.median(r[k] for r in runs[which])

    print(f"N={args.n}, {args.pairs} pairs, {'warm (all-304)' if args.warm else 'cold'} polls, "
          f"server {args.server}, load {nwbench.loadavg()}"
          + (", B on PostgreSQL (newswatch's CPU only)" if args.pg_b else ""))
    for which, label in ((0, "A"), (1, "B")):
        last = runs[which][-1]
        print(f"{label} {bins[which]}: wall median {med(which, 0):.3f} s, "
              f"CPU median {med(which, 1):.3f} s, RSS median {med(which, 2):.0f} MB "
              f"(last poll 200/304: {last[3]}/{last[4]})")
    for k, name in ((1, "CPU"), (0, "wall")):
        ratios = [runs[1][i][k] / runs[0][i][k] for i in range(args.pairs)]
        print(f"B/A {name}: median of per-pair ratios {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
