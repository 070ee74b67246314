#!/usr/bin/env python3
"""scale.py N CHANGED CYCLES — the driver of scripts/scale.sh (see its header)."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nwbench import Server, Work, loadavg, poll  # noqa: E402


def main() -> int:
    n, changed, cycles = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    nw = os.environ["NEWSWATCH_BIN"]
    kind = os.environ.get("SERVER", "nginx")
    extra = []
    if os.environ.get("PER_HOST") or os.environ.get("CONCURRENCY"):
        extra.append("[http]")
        if os.environ.get("PER_HOST"):
            extra.append(f"per_host = {int(os.environ['PER_HOST'])}")
        if os.environ.get("CONCURRENCY"):
            extra.append(f"concurrency = {int(os.environ['CONCURRENCY'])}")
    t0 = time.monotonic()
    work = Work(n, prefix="nwscale.")
    rows = []
    try:
        work.write_config(int(os.environ.get("RULES", "1000")), "\n".join(extra))
        print(f"N={n} feeds ({work.bytes() / 1e9:.2f} GB of documents, {len(work.sources)} distinct) "
              f"built in {time.monotonic() - t0:.1f} s; config {os.path.getsize(work.config) / 1e6:.1f} MB"
              f"{'; ' + ' '.join(extra[1:]) if extra else ''}; server={kind}; newswatch={nw}",
              flush=True)
        with Server(kind, work) as srv:
            def cycle(label):
                srv.reset()
                load = loadavg()
                c = poll(nw, work.config, cwd=work.state)
                s200, s304, req = srv.counts()
                c.update(label=label, s200=s200, s304=s304, req=req, load=load)
                rows.append(c)
                print(f"{label}: wall {c['wall']:.2f} s, CPU {c['cpu']:.2f} s (user {c['user']:.2f} "
                      f"+ sys {c['sys']:.2f}), RSS {c['rss_mb']:.0f} MB, 200/304 {s200}/{s304} of "
                      f"{req} requests, rc {c['rc']}, load before {load}", flush=True)
                if c["rc"] != 0:
                    print(c["stderr_tail"], file=sys.stderr)
                return c

            cycle("cold (empty database)")
            if os.environ.get("SKIP_WARM") != "1":
                cycle("warm (nothing changed)")
            v2 = os.path.join(work.dir, "v2")
            os.mkdir(v2)
            os.chmod(v2, 0o755)
            now = time.time()
            fresh = []
            for src in work.sources:
                dst = os.path.join(v2, os.path.basename(src))
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o644)
                os.utime(dst, (now, now))
                fresh.append(dst)
            step = max(1, round(100 / changed)) if changed > 0 else 0
            for c in range(cycles):
                picked = 0
                if step:
                    for i in range(c % step, n, step):
                        j = i % len(work.sources)
                        # The next corpus document (another feed's), from the fresh copies;
                        # cycle c > 0 takes the one after, so a feed changed twice changes again.
                        src = fresh[(j + 1 + c) % len(fresh)]
                        dst = os.path.join(work.www, work.names[i])
                        tmp = dst + ".new"
                        os.link(src, tmp)
                        os.rename(tmp, dst)
                        picked += 1
                cycle(f"cycle {c + 1}: {picked} feeds ({picked / n:.1%}) changed")
        print()
        print("| poll | wall s | CPU s (user+sys) | max RSS MB | 200 | 304 | load before |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for c in rows:
            print(f"| {c['label']} | {c['wall']:.2f} | {c['cpu']:.2f} ({c['user']:.2f}+{c['sys']:.2f}) "
                  f"| {c['rss_mb']:.0f} | {c['s200']} | {c['s304']} | {c['load']} |")
        db = os.path.join(work.state, "nw.db")
        if os.path.exists(db):
            print(f"\ndatabase: {os.path.getsize(db) / 1e6:.0f} MB")
    finally:
        work.close()
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
