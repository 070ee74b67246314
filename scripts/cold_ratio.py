#!/usr/bin/env python3
"""cold_ratio.py N RUNS — the driver of scripts/cold-ratio.sh (see its header)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nwbench import Server, Work, loadavg, med, poll  # noqa: E402


def parse_only(binary: str, www: str) -> dict:
    out = subprocess.run([binary, www, "3"], capture_output=True, text=True, check=True).stdout
    got = dict(re.findall(r"^(\S+)-cpu-s (\S+)$", out, re.M))
    for line in out.splitlines():
        if not re.match(r"^\S+-cpu-s ", line):
            print("   ", line)
    return {k: float(v) for k, v in got.items()}


def main() -> int:
    n, runs = int(sys.argv[1]), int(sys.argv[2])
    nw, po = os.environ["NEWSWATCH_BIN"], os.environ["PARSE_ONLY_BIN"]
    kind = os.environ.get("SERVER", "nginx")
    work = Work(n)
    try:
        work.write_config(int(os.environ.get("RULES", "1000")))
        print(f"N={n} documents ({work.bytes() / 1e6:.1f} MB), server={kind}, "
              f"newswatch={nw}, load {loadavg()}")
        rows = []
        with Server(kind, work) as srv:
            for r in range(1, runs + 1):
                p = parse_only(po, work.www)
                work.reset_db()
                srv.reset()
                c = poll(nw, work.config, cwd=work.state)
                s200, s304, _ = srv.counts()
                if c["rc"] != 0:
                    print(f"poll failed rc={c['rc']}: {c['stderr_tail']}", file=sys.stderr)
                    return 1
                ratio = c["cpu"] / p["feed-rs"]
                rows.append((p["feed-rs"], p["newswatch-parse"], c, ratio))
                print(f"run {r}: feed-rs {p['feed-rs']:.3f} s CPU, newswatch parse_feed "
                      f"{p['newswatch-parse']:.3f} s; cold poll {c['cpu']:.3f} s CPU "
                      f"(user {c['user']:.2f} + sys {c['sys']:.2f}), wall {c['wall']:.2f} s, "
                      f"RSS {c['rss_mb']:.0f} MB, 200/304 {s200}/{s304}; "
                      f"ratio {ratio:.2f}x (load {loadavg()})")
        print()
        print("| run | feed-rs parse CPU s | newswatch parse_feed CPU s | cold poll CPU s "
              "(user+sys) | cold wall s | RSS MB | poll / feed-rs |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for i, (fr, nwp, c, ratio) in enumerate(rows, 1):
            print(f"| {i} | {fr:.3f} | {nwp:.3f} | {c['cpu']:.3f} ({c['user']:.2f}+{c['sys']:.2f})"
                  f" | {c['wall']:.2f} | {c['rss_mb']:.0f} | {ratio:.2f}x |")
        print(f"\nmedian ratio cold-poll CPU / feed-rs CPU: {med([r[3] for r in rows]):.2f}x "
              f"(target <= 2); median poll / newswatch parse_feed: "
              f"{med([r[2]['cpu'] / r[1] for r in rows]):.2f}x")
    finally:
        work.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
