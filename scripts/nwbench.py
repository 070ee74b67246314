"""nwbench.py — shared pieces of the issue-18 benchmark scripts (imported, not run).

    from nwbench import Work, Server, poll, loadavg

- `Work(n, corpus)`: a temporary work dir with `www/feed_NNNNNN.ext`, N hard links cycling
  the corpus's real feeds in sorted order (as ../shared/bench/peers.sh builds them), and
  `write_config()` writing a newswatch config with those N feeds and peers.sh's rules (the
  five seed rules + RULES generated ones, same generator and seed as peers.sh).
- `Server(kind, work)`: serves `www/` on 127.0.0.1 with nginx (the same configuration as
  peers.sh's SERVER=nginx: ETag / Last-Modified / 304 from file mtime and size, one worker)
  or the shared feedserver.py (SERVER=python). Counts 200s and 304s (nginx: its access log).
  Only the server process this module started is ever signalled, by its PID.
- `poll(bin, config)`: runs `newswatch --config CONFIG poll` and returns wall seconds, user
  and sys CPU seconds and the max RSS of that child alone (os.wait4's rusage).
"""
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared"))
BENCH = os.environ.get("BENCH_DIR", os.path.join(SHARED, "bench"))
CORPUS = os.environ.get("CORPUS", os.path.join(SHARED, "corpus"))
EXTS = (".xml", ".rss", ".atom", ".rdf", ".json")


def _exit_on_signal(signum, _frame):
    # SystemExit unwinds through the drivers' `finally`: the server they started is stopped
    # and the work dir removed. SIGINT too, which bash ignores in background jobs otherwise.
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _exit_on_signal)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def corpus_files(corpus: str = CORPUS) -> list:
    src = os.path.join(corpus, "real")
    if not os.path.isdir(src):
        src = corpus
    files = sorted(
        os.path.join(src, f) for f in os.listdir(src)
        if f.endswith(EXTS) and os.path.isfile(os.path.join(src, f))
    )
    if not files:
        sys.exit(f"nwbench: no feed files in {src}")
    return files


def rules(n: int = 1000) -> list:
    """peers.sh's rules (setup_newswatch): five seed rules, ten common-word rules, random
    phrases up to n + 5 in all, same seed."""
    rnd = random.Random(7)
    common = "police government election market security data court minister bank health".split()
    out = ['"Investigatory Powers Bill"', 'JOC OR "Joint Operations Cell"',
           'NCA OR "National Crime Agency"', 'GCHQ', '"dark web" OR darknet']
    out += [f'{w} AND NOT {rnd.choice(common)}x' for w in common]
    while len(out) < n + 5:
        out.append('"' + " ".join(
            "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(4, 9)))
            for _ in range(rnd.randint(1, 2))) + '"')
    return out


class Work:
    def __init__(self, n: int, corpus: str = CORPUS, keep: bool = False, prefix="nwbench."):
        self.n = n
        self.keep = keep or os.environ.get("KEEP") == "1"
        self.dir = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR", "/tmp"))
        os.chmod(self.dir, 0o755)  # nginx's workers run unprivileged
        self.www = os.path.join(self.dir, "www")
        os.mkdir(self.www)
        os.chmod(self.www, 0o755)
        self.state = os.path.join(self.dir, "newswatch")
        os.mkdir(self.state)
        self.sources = corpus_files(corpus)
        width = max(5, len(str(n)))
        self.names = []
        self.chosen = []
        for i in range(1, n + 1):
            src = self.sources[(i - 1) % len(self.sources)]
            name = f"feed_{i:0{width}d}{os.path.splitext(src)[1]}"
            dst = os.path.join(self.www, name)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            self.names.append(name)
            self.chosen.append(src)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(self.state, "newswatch.toml")

    def write_config(self, n_rules: int = 1000, extra: str = "", path=None) -> str:
        path = path or self.config
        out = [f'[storage]\npath = "{self.state}/nw.db"\n']
        if extra:
            out.append(extra.strip() + "\n")
        for i, name in enumerate(self.names, 1):
            out.append(f'[[feeds]]\nname = "f{i:06d}"\nurl = "{self.base}/{name}"\n')
        for i, q in enumerate(rules(n_rules)):
            out.append(f"[[rules]]\nname = \"r{i:05d}\"\nquery = '{q}'\n")
        with open(path, "w") as f:
            f.write("\n".join(out))
        return path

    def reset_db(self):
        for f in ("nw.db", "nw.db-wal", "nw.db-shm"):
            try:
                os.unlink(os.path.join(self.state, f))
            except FileNotFoundError:
                pass

    def bytes(self) -> int:
        return sum(os.path.getsize(p) for p in self.chosen)

    def close(self):
        if self.keep:
            print(f"work dir kept: {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, kind: str, work: Work, worker_connections: int = 8192):
        self.kind = kind
        self.work = work
        self.proc = None
        self.ng = os.path.join(work.dir, f"nginx-{work.port}")
        self.worker_connections = worker_connections
        if kind not in ("nginx", "python"):
            sys.exit("nwbench: SERVER must be nginx or python")

    def start(self):
        w = self.work
        if self.kind == "nginx":
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            os.makedirs(self.ng, exist_ok=True)
            conf = os.path.join(self.ng, "nginx.conf")
            ng = self.ng
            with open(conf, "w") as f:
                # peers.sh's SERVER=nginx configuration, verbatim but for worker_connections.
                f.write(
                    f"worker_processes 1; pid {ng}/nginx.pid; error_log {ng}/error.log;\n"
                    f"worker_rlimit_nofile {self.worker_connections * 2};\n"
                    f"events {{ worker_connections {self.worker_connections}; }}\n"
                    "http {\n"
                    f"  log_format st '$status'; access_log {ng}/access.log st;\n"
                    "  types { application/rss+xml xml rss; application/atom+xml atom; "
                    "application/rdf+xml rdf; application/feed+json json; }\n"
                    "  default_type application/octet-stream;\n"
                    "  sendfile on; tcp_nodelay on; keepalive_timeout 15; keepalive_requests 100000;\n"
                    f"  client_body_temp_path {ng}; proxy_temp_path {ng}; fastcgi_temp_path {ng}; "
                    f"uwsgi_temp_path {ng}; scgi_temp_path {ng};\n"
                    f"  server {{ listen 127.0.0.1:{w.port} backlog=4096; root {w.www}; "
                    "add_header Cache-Control no-cache; }\n"
                    "}\n")
            self.proc = subprocess.Popen(
                [nginx, "-p", ng, "-c", conf, "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(ng, "stderr"), "w"))
        else:
            portfile = os.path.join(w.dir, f"port.{w.port}")
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(BENCH, "feedserver.py"), w.www, portfile,
                 "--port", str(w.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = f"{w.base}/{w.names[0]}"
        deadline = time.time() + 10
        while True:
            try:
                urllib.request.urlopen(first, timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    sys.exit(f"nwbench: {self.kind} server did not start")
                time.sleep(0.05)
        self.reset()

    def reset(self):
        if self.kind == "nginx":
            # nginx opens its log O_APPEND: truncating is enough (as peers.sh does).
            open(os.path.join(self.ng, "access.log"), "w").close()
        else:
            urllib.request.urlopen(f"{self.work.base}/__reset").read()

    def counts(self) -> tuple:
        """(200s, 304s, requests) since the last reset."""
        if self.kind == "nginx":
            time.sleep(0.1)  # nginx writes the log line after the response
            c = {"200": 0, "304": 0}
            n = 0
            with open(os.path.join(self.ng, "access.log")) as f:
                for line in f:
                    n += 1
                    s = line.strip()
                    if s in c:
                        c[s] += 1
            return c["200"], c["304"], n
        import json
        d = json.load(urllib.request.urlopen(f"{self.work.base}/__stats"))
        return d.get("status_200", 0), d.get("status_304", 0), d.get("requests", 0)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def poll(binary: str, config: str, env=None, cwd=None, args=("poll",)) -> dict:
    """One `newswatch --config CONFIG poll`: wall, user, sys, cpu (s) and max RSS (MB).

    stderr goes to a file (a pipe read only after the exit would fill up with a large poll's
    warnings and block the poll); its last 500 characters are returned."""
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        p = subprocess.Popen([binary, "--config", config, *args], cwd=cwd,
                             env=dict(os.environ, **(env or {})),
                             stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        size = err.seek(0, os.SEEK_END)
        err.seek(max(0, size - 500))
        tail = err.read().decode(errors="replace")
    return {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime,
            "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
            "rc": p.returncode, "stderr_tail": tail}


def med(xs):
    return statistics.median(xs) if xs else float("nan")
