#!/usr/bin/env python3
"""cluster-throughput.py — issue 17's scaling figure: N feeds behind a loopback server that
delays every response, polled by 1, 2, 4 … `newswatch run` workers on one PostgreSQL database.

    scripts/cluster-throughput.py [--feeds 10000] [--delay 0.2] [--workers 1 2 4]
                                  [--concurrency 16] [--bin target/release/newswatch]
                                  [--pg postgres://postgres@127.0.0.1:5432/postgres]

For each worker count: a fresh database (created from --pg's server, dropped at the end), one
config (every feed due at once, then not again for a year; `[http] concurrency` per worker,
`per_host` high enough for every worker's fetches: all feeds are on one loopback host, and the
per-host limit is cluster-wide), W worker processes started together. The figure is the time
from the workers' start until the server has answered every feed once, taken by polling the
server's own count (no sleep-and-hope). Feeds are tiny RSS documents (one item each), so
fetching — the delay — is the limit, not CPU. Workers are stopped with SIGTERM (leases given
back), then SIGKILL if they linger. Prints one row per worker count and the speed-up against
the first.
"""
import argparse
import http.server
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def feed_doc(i: int) -> bytes:
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>feed {i}</title>'
        f"<link>http://example.org/{i}</link><description>d</description>"
        f"<item><title>Report {i} on the NCA and GCHQ</title><link>http://example.org/{i}/1</link>"
        f"<guid>tp-{i}-1</guid><description>Item {i} text</description></item>"
        f"</channel></rss>"
    ).encode()


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.seen = set()
        self.requests = 0

    def hit(self, path):
        with self.lock:
            self.requests += 1
            self.seen.add(path)

    def snapshot(self):
        with self.lock:
            return len(self.seen), self.requests

    def reset(self):
        with self.lock:
            self.seen.clear()
            self.requests = 0


def serve(delay: float, counter: Counter):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = urllib.parse.urlparse(self.path).path
            try:
                i = int(path.strip("/").split(".")[0].split("_")[1])
            except (IndexError, ValueError):
                self.send_error(404)
                return
            time.sleep(delay)
            body = feed_doc(i)
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            counter.hit(path)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024

    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def psql(pg: str, sql: str):
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    subprocess.run(["psql", pg, "-qAtc", sql], check=True, stdout=subprocess.DEVNULL, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=10000)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "newswatch"))
    ap.add_argument("--pg", default=os.environ.get("NEWSWATCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--timeout", type=float, default=1800)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    counter = Counter()
    srv = serve(a.delay, counter)
    port = srv.server_address[1]
    base_url = a.pg.rsplit("/", 1)[0]
    work = tempfile.mkdtemp(prefix="nwtp.")
    rows = []
    try:
        for w in a.workers:
            db = f"nwtp_{os.getpid()}_{w}"
            psql(a.pg, f"DROP DATABASE IF EXISTS {db}")
            psql(a.pg, f"CREATE DATABASE {db}")
            cfg = os.path.join(work, f"w{w}.toml")
            with open(cfg, "w") as f:
                f.write(f'[storage]\nurl = "{base_url}/{db}"\n\n')
                f.write('[schedule]\npoll = "0 0 1 1 *"\n\n')
                f.write(f"[http]\nconcurrency = {a.concurrency}\nper_host = {a.concurrency * max(a.workers)}\n\n")
                f.write('[cluster]\nlease = "2m"\n\n')
                for i in range(1, a.feeds + 1):
                    f.write(f'[[feeds]]\nname = "f{i:06d}"\nurl = "http://127.0.0.1:{port}/feed_{i}.xml"\n')
                f.write("\n[[rules]]\nname = \"nca\"\nquery = 'NCA'\n")
            # Schema and feed rows first, so that every worker starts on the same footing.
            subprocess.run([binary, "--config", cfg, "check"], check=True, stdout=subprocess.DEVNULL)
            counter.reset()
            started = time.monotonic()
            procs = [
                subprocess.Popen([binary, "--config", cfg, "--log-format", "text", "run"],
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"w{w}-{k}.log"), "w"))
                for k in range(w)
            ]
            deadline = started + a.timeout
            while True:
                seen, reqs = counter.snapshot()
                if seen >= a.feeds:
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    print(f"workers={w}: stopped early ({seen} of {a.feeds} feeds fetched)", file=sys.stderr)
                    break
                time.sleep(0.05)  # polling the count, not waiting for an outcome
            elapsed = time.monotonic() - started
            seen, reqs = counter.snapshot()
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            psql(a.pg, f"DROP DATABASE IF EXISTS {db}")
            rows.append((w, elapsed, seen, reqs))
            print(f"workers={w}: {seen} feeds ({reqs} requests) in {elapsed:.1f} s", file=sys.stderr, flush=True)
    finally:
        srv.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{a.feeds} feeds, {a.delay * 1000:.0f} ms per response, concurrency {a.concurrency} per worker\n")
    print("| workers | wall s | feeds fetched | requests | time vs 1 worker |")
    print("|---:|---:|---:|---:|---:|")
    for w, e, s, r in rows:
        print(f"| {w} | {e:.1f} | {s} | {r} | {e / rows[0][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
