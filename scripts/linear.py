#!/usr/bin/env python3
"""linear.py PAIRS SMALL LARGE — the driver of scripts/linear.sh (see its header)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nwbench import Server, Work, loadavg, med, poll  # noqa: E402


def main() -> int:
    pairs, small, large = (int(a) for a in sys.argv[1:4])
    nw = os.environ["NEWSWATCH_BIN"]
    kind = os.environ.get("SERVER", "nginx")
    rules = int(os.environ.get("RULES", "1000"))
    works = {small: Work(small), large: Work(large)}
    servers = {}
    try:
        for n, w in works.items():
            w.write_config(rules)
            servers[n] = Server(kind, w)
            servers[n].start()
        print(f"server={kind}, newswatch={nw}, {pairs} pairs; load {loadavg()}")
        got = {small: [], large: []}
        for i in range(pairs):
            for n in ((small, large) if i % 2 == 0 else (large, small)):
                w, srv = works[n], servers[n]
                w.reset_db()
                srv.reset()
                c = poll(nw, w.config, cwd=w.state)
                s200, s304, _ = srv.counts()
                if c["rc"] != 0:
                    print(f"N={n} poll failed rc={c['rc']}: {c['stderr_tail']}", file=sys.stderr)
                    return 1
                got[n].append(c)
                print(f"pair {i + 1} N={n}: wall {c['wall']:.2f} s, CPU {c['cpu']:.2f} s "
                      f"(user {c['user']:.2f} + sys {c['sys']:.2f}), RSS {c['rss_mb']:.0f} MB, "
                      f"200/304 {s200}/{s304}, load {loadavg()}", flush=True)
        print()
        print(f"| pair | {small} wall s | {small} CPU s | {large} wall s | {large} CPU s | "
              f"wall ratio | CPU ratio | {large} RSS MB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        wr, cr = [], []
        for i in range(pairs):
            a, b = got[small][i], got[large][i]
            wr.append(b["wall"] / a["wall"])
            cr.append(b["cpu"] / a["cpu"])
            print(f"| {i + 1} | {a['wall']:.2f} | {a['cpu']:.2f} | {b['wall']:.2f} | {b['cpu']:.2f} | "
                  f"{wr[-1]:.2f}x | {cr[-1]:.2f}x | {b['rss_mb']:.0f} |")
        print(f"\n{large}/{small}: wall median {med(wr):.2f}x ({min(wr):.2f}-{max(wr):.2f}), CPU median "
              f"{med(cr):.2f}x ({min(cr):.2f}-{max(cr):.2f}); target <= {large / small:.0f}x. "
              f"Peak RSS N={small} {max(c['rss_mb'] for c in got[small]):.0f} MB, N={large} "
              f"{max(c['rss_mb'] for c in got[large]):.0f} MB (target <= 100 MB)")
    finally:
        for s in servers.values():
            s.stop()
        for w in works.values():
            w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
