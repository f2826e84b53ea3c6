#!/usr/bin/env python3
"""bench/http/http_bench.py - the HTTP section of `make bench`.

    python3 bench/http/http_bench.py --build <builddir> --out <dir>
                                     [--quick] [--reps N] [--seconds S]

Servers: rx-http (examples/http, on io_uring and on epoll, RX_BACKEND),
nginx (nginx-light, 1 worker) and h2o (1 thread), each answering GET
/plaintext with "Hello, World!" (text/plain). Clients: wrk, rx-load
(examples/load) and h2load (nghttp2-client, --h1). Every (server, client,
depth) cell, with 256 connections, at pipeline depth 1 (none) and 16, runs
as its own pair of processes: the server pinned to CPU 0, the client to CPU
1, the server started afresh on a free port of 127.0.0.1 for each run and
stopped by its pid (its temporary directory removed). The runs are
interleaved: rep 1 runs every cell once, then rep 2, the order rotated by
one cell per rep; the report gives medians with min and max.

Measured per run: requests/s (the client's figure), the client's CPU per
request (user + system time of the client process, from os.wait4's
rusage), the server's CPU per request (/proc/<pid>/stat, the process and
its children, over the client's run), errors, and the latency percentiles
the client reports (wrk: pipeline.lua's done() hook, one sample per batch
when pipelining; rx-load: --json, one sample per request).

bench/peers/run.py --http <builddir> runs this section after the peer
workloads and puts it in the same report (report.md, results.csv,
results-all.csv, runs.csv, plots/http_*); run alone, this script writes
<out>/http.md and the same CSV files for the HTTP cells only. The targets
are bench/targets.py's rows of bench "http". A server or client that is not
installed or not built leaves its cells empty, and the section says which
package (or build) is missing.
"""

import argparse
import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))
from stats import Stat  # noqa: E402  bench/stats.py
from targets import TARGETS  # noqa: E402  bench/targets.py

CONNECTIONS = 256
DEPTHS = (1, 16)
PATH = "/plaintext"
BODY = b"Hello, World!"
# Seconds per run and runs per cell: full, and with --quick.
SECONDS, QUICK_SECONDS = 5, 2
REPS, QUICK_REPS = 5, 2
# The CPUs: the server on one, the client on the other.
SERVER_CPU, CLIENT_CPU = 0, 1
# A server has this long to listen, a client this long past its duration.
START_TIMEOUT_S, CLIENT_GRACE_S = 10.0, 30.0
# The percentiles the report shows and plots (those a client reports).
PERCENTILES = ("50", "75", "90", "99", "99.9", "99.99")
SHOWN_PERCENTILES = ("50", "90", "99", "99.9")

# ---------------------------------------------------------------------------
# The servers and the clients.


@dataclass(frozen=True)
class Server:
    label: str         # the report's: "rx-http io_uring", "nginx", ...
    kind: str          # "rx-http", "nginx", "h2o" (the CSV's library)
    backend: str       # the CSV's backend
    package: str = ""  # the Debian package, when it is one


@dataclass(frozen=True)
class Client:
    name: str          # "wrk", "rx-load", "h2load"
    package: str = ""  # the Debian package, when it is one
    latency: bool = False  # reports latency percentiles


SERVERS = [
    Server("rx-http io_uring", "rx-http", "io_uring"),
    Server("rx-http epoll", "rx-http", "epoll"),
    Server("nginx", "nginx", "epoll", "nginx-light"),
    Server("h2o", "h2o", "epoll", "h2o"),
]
CLIENTS = [
    Client("wrk", "wrk", latency=True),
    Client("rx-load", latency=True),
    Client("h2load", "nghttp2-client"),
]
COLORS = {"rx-http io_uring": "#1f5fa8", "rx-http epoll": "#6fa8dc",
          "nginx": "#4f9a48", "h2o": "#e0902f"}
DASH = {"wrk": 1, "rx-load": 2, "h2load": 3}


def cell_label(server, client):
    """A cell's name in the targets and the report: "nginx + wrk"."""
    return "%s + %s" % (server, client)


def workload_name(client, depth):
    """The CSV's workload of a cell: http_<client>_p<depth>."""
    return "http_%s_p%d" % (client, depth)


def depth_workload(depth):
    """The targets' workload: http_p1, http_p16."""
    return "http_p%d" % depth


@dataclass(frozen=True)
class Cell:
    server: Server
    client: Client
    depth: int

    @property
    def label(self):
        return cell_label(self.server.label, self.client.name)

    @property
    def workload(self):
        return workload_name(self.client.name, self.depth)

    @property
    def slug(self):
        return "%s-%s-p%d" % (self.server.label.replace(" ", "-"),
                              self.client.name, self.depth)


METRICS = {
    # metric: (unit, higher is better, what)
    "requests_per_s": ("req/s", True, "responses per second, the "
                       "client's figure"),
    "client_cpu_us_per_req": ("us", False, "client process user + system "
                              "CPU per response"),
    "server_cpu_us_per_req": ("us", False, "server process (and children) "
                              "user + system CPU per response"),
    "errors": ("errors", False, "socket errors, timeouts and non-2xx "
               "responses"),
}
for _p in PERCENTILES:
    METRICS["lat_p%s_us" % _p] = ("us", False, "latency, %s%%" % _p)

# ---------------------------------------------------------------------------
# Finding the programs.


def which(name):
    """A program on PATH, or in /usr/sbin (nginx, when PATH lacks it)."""
    return shutil.which(name) or shutil.which(
        name, path="/usr/sbin:/usr/local/sbin:/sbin")


def find_built(build, name):
    """examples/<dir>/<name> (or examples/<name>) in the build dir."""
    if build is None:
        return None
    for sub in ("examples/http", "examples/load", "examples"):
        path = build / sub / name
        if os.access(path, os.X_OK) and path.is_file():
            return path
    return None


def find_programs(build):
    """{name: path or None} of the servers and clients, and {name: why it
    is missing}."""
    progs, why = {}, {}
    for name, package in (("nginx", "nginx-light"), ("h2o", "h2o"),
                          ("wrk", "wrk"), ("h2load", "nghttp2-client")):
        progs[name] = which(name)
        if progs[name] is None:
            why[name] = "%s is not installed (Debian package %s)" \
                % (name, package)
    for name, src in (("rx-http", "examples/http"),
                      ("rx-load", "examples/load")):
        progs[name] = find_built(build, name)
        if progs[name] is None:
            why[name] = "%s is not built (%s/%s)" % (name, build, src)
    return progs, why


# ---------------------------------------------------------------------------
# Running a server.


def pin(cpu):
    """A preexec_fn that pins the child to one CPU (as taskset -c does)."""
    def run():
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return run


def cpus():
    """The CPUs for the server and the client, or (None, None) when this
    process may not use two."""
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        return None, None
    return mine[SERVER_CPU], mine[CLIENT_CPU]


def free_port():
    """A port of 127.0.0.1 that nothing listens on (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_config(tmp, port):
    return """\
# Generated by bench/http/http_bench.py for one run.
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {path} {{
            default_type text/plain;
            return 200 '{body}';
        }}
    }}
}}
""".format(tmp=tmp, port=port, path=PATH, body=BODY.decode())


def h2o_config(port):
    # h2o refuses to run as root without a user to switch to.
    user = "user: nobody\n" if os.geteuid() == 0 else ""
    return """\
# Generated by bench/http/http_bench.py for one run.
{user}num-threads: 1
max-connections: 4096
http1-request-timeout: 300
listen:
  host: 127.0.0.1
  port: {port}
hosts:
  default:
    paths:
      {path}:
        mruby.handler: |
          Proc.new do |env|
            [200, {{"content-type" => "text/plain"}}, ["{body}"]]
          end
""".format(user=user, port=port, path=PATH, body=BODY.decode())


@dataclass
class Running:
    proc: subprocess.Popen
    port: int
    tmp: str
    children: list = field(default_factory=list)  # (pid, starttime)


LISTENING = re.compile(r"listening on \[?([0-9a-fA-F.:]+?)\]?:(\d+)")


def start_server(server, progs, log, cpu):
    """Starts a server on a free port; returns a Running, or raises
    RuntimeError with what went wrong."""
    tmp = tempfile.mkdtemp(prefix="rx-hbench-")
    env = {k: v for k, v in os.environ.items() if k != "RX_BACKEND"}
    port = None
    if server.kind == "rx-http":
        env["RX_BACKEND"] = server.backend
        # --collect: a 50 us nap before each wait, so that the clients'
        # requests gather instead of each waking the server
        # (docs/benchmarks.md, "Completions that wait for the loop").
        cmd = [str(progs["rx-http"]), "--threads", "1", "--port", "0",
               "--collect", "50us"]
    elif server.kind == "nginx":
        port = free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(nginx_config(tmp, port))
        cmd = [progs["nginx"], "-c", str(conf), "-p", tmp + "/", "-e",
               tmp + "/error.log"]
    else:
        port = free_port()
        os.chmod(tmp, 0o755)  # readable by the user h2o switches to
        conf = Path(tmp) / "h2o.yaml"
        conf.write_text(h2o_config(port))
        cmd = [progs["h2o"], "-c", str(conf)]
    log.write("# server: %s%s\n" % ("RX_BACKEND=%s " % server.backend
                                    if server.kind == "rx-http" else "",
                                    " ".join(cmd)))
    log.flush()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, preexec_fn=pin(cpu),
                            cwd=tmp)
    running = Running(proc, port, tmp)
    try:
        running.port = wait_listening(server, running, log)
        check_plaintext(running.port)
    except RuntimeError:
        stop_server(running)
        raise
    running.children = children_of(proc.pid)
    return running


def wait_listening(server, running, log):
    """Waits for the server to accept connections; returns its port."""
    deadline = time.monotonic() + START_TIMEOUT_S
    port = running.port
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise RuntimeError("the server exited at start (%s)"
                               % describe_status(running.proc.returncode))
        if port is None:  # rx-http: its line on stderr says the port
            log.flush()
            m = LISTENING.search(Path(log.name).read_text())
            if m:
                port = int(m.group(2))
        if port is not None:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return port
            except OSError:
                pass
        time.sleep(0.02)
    raise RuntimeError("the server did not listen within %g s"
                       % START_TIMEOUT_S)


def check_plaintext(port):
    """One GET of the path: a 200 with the expected body, or RuntimeError."""
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
           % (PATH, port)).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, rest = data.partition(b"\r\n\r\n")
                if sep:
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if m and len(rest) >= int(m.group(1)):
                        break
    except OSError as e:
        raise RuntimeError("GET %s failed: %s" % (PATH, e))
    head, _, rest = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200") or rest != BODY:
        raise RuntimeError("GET %s answered %r, body %r, not 200 and %r"
                           % (PATH, status.decode(errors="replace"),
                              rest[:64], BODY))


def proc_start(pid):
    """A process's start time (field 22 of /proc/<pid>/stat), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children_of(pid):
    """(pid, start time) of a process's children (nginx's worker)."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                out += [(int(c), proc_start(int(c))) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def server_cpu_s(running):
    """The server's CPU seconds so far: the process and its children."""
    pids = [running.proc.pid] + [p for p, _ in running.children]
    return sum(cpu_ticks(p) for p in pids) / os.sysconf("SC_CLK_TCK")


def stop_server(running):
    """SIGTERM to the server's pid, SIGKILL if it has not exited in 5 s,
    then SIGKILL to any of its children still alive (same pid, same start
    time); the temporary directory removed."""
    proc = running.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid, start in running.children:
        if start is not None and proc_start(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(running.tmp, ignore_errors=True)


def describe_status(status):
    if status is None:
        return "running"
    if status < 0:
        try:
            return "killed by %s" % signal.Signals(-status).name
        except ValueError:
            return "killed by signal %d" % -status
    return "exit status %d" % status


# ---------------------------------------------------------------------------
# Running a client.


def client_command(client, progs, depth, seconds, url):
    c = str(CONNECTIONS)
    if client.name == "wrk":
        return [progs["wrk"], "-t1", "-c" + c, "-d%ds" % seconds,
                "--timeout", "5s", "--latency", "-s",
                str(HERE / "pipeline.lua"), url, "--", str(depth)]
    if client.name == "rx-load":
        # --batch: a pipeline refilled whole, as pipeline.lua makes wrk
        # do; --collect: a 50 us nap before each wait gathers completions
        # (docs/benchmarks.md, "rx-load at depth 16 against nginx").
        return [str(progs["rx-load"]), "-t1", "-c" + c, "-d%ds" % seconds,
                "--timeout", "5s", "--pipeline", str(depth), "--batch",
                "--collect", "50us", "--latency", "--json", url]
    # h2load pipelines HTTP/1.1 with -m: requests in flight per connection.
    return [progs["h2load"], "--h1", "-t1", "-c" + c, "-D", str(seconds),
            "-m", str(depth), url]


def run_client(cmd, out_path, log, cpu, timeout):
    """Runs the client pinned to cpu, stdout to out_path and stderr to log;
    returns (exit status, CPU seconds of user + system, wall seconds)."""
    start = time.monotonic()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=log, preexec_fn=pin(cpu),
                                env={k: v for k, v in os.environ.items()
                                     if k != "RX_BACKEND"})
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise RuntimeError("the client ran past %g s (killed)" % timeout)
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, usage.ru_utime + usage.ru_stime,
            time.monotonic() - start)


def parse_wrk(text):
    """pipeline.lua's "wrk-json:" line: (requests/s, requests, errors,
    {percentile: us})."""
    m = re.search(r"^wrk-json: (\{.*\})\s*$", text, re.M)
    if not m:
        raise RuntimeError("no wrk-json line in wrk's output")
    d = json.loads(m.group(1))
    requests = d["requests"]
    seconds = d["duration_us"] / 1e6
    errors = sum(d[k] for k in ("connect", "read", "write", "status",
                                "timeout"))
    lat = {}
    p50 = d["latency_us"].get("50", 0)
    for p, us in d["latency_us"].items():
        # wrk's percentile() answers 0 when the rank falls past the
        # samples it counted (it happens when it corrects a pipelined run):
        # left out.
        if us > 0 and (p == "50" or us >= p50):
            lat[p] = float(us)
    return requests / seconds, requests, errors, lat


def parse_h2load(text):
    """h2load's summary: (requests/s, requests, errors, {})."""
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                  r"(\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", text)
    if not m or not r:
        raise RuntimeError("no summary in h2load's output")
    done, failed, errored, timeout = (int(r.group(i)) for i in (3, 5, 6, 7))
    return float(m.group(1)), done, failed + errored + timeout, {}


def parse_rx_load(text):
    """rx-load --json: (requests/s, requests, errors, {percentile: us})."""
    start = text.find("{")
    if start < 0:
        raise RuntimeError("no JSON in rx-load's output")
    d, _ = json.JSONDecoder().raw_decode(text[start:])
    errors = sum(v for v in d.get("errors", {}).values()
                 if isinstance(v, (int, float)))
    lat = {p: float(us) for p, us in
           d.get("latency", {}).get("percentiles_us", {}).items()}
    return float(d["requests_per_sec"]), d["requests"], errors, lat


PARSERS = {"wrk": parse_wrk, "h2load": parse_h2load,
           "rx-load": parse_rx_load}


# ---------------------------------------------------------------------------
# One run of a cell.


@dataclass
class Run:
    cell: Cell
    rep: int
    ok: bool = False
    why: str = ""
    status: int = 0
    wall: float = 0.0
    rows: dict = field(default_factory=dict)  # metric -> value
    log: Path = None


def run_cell(run, progs, logdir, seconds, cpus_):
    """Starts the cell's server, runs its client, stops the server; fills
    in run."""
    cell = run.cell
    server_cpu, client_cpu = cpus_
    run.log = logdir / ("http-%s-rep%d.log" % (cell.slug, run.rep))
    out_path = logdir / ("http-%s-rep%d.out" % (cell.slug, run.rep))
    began = time.monotonic()
    with open(run.log, "w") as log:
        running = None
        try:
            running = start_server(cell.server, progs, log, server_cpu)
            url = "http://127.0.0.1:%d%s" % (running.port, PATH)
            cmd = client_command(cell.client, progs, cell.depth, seconds,
                                 url)
            log.write("# client: %s\n" % " ".join(cmd))
            log.flush()
            before = server_cpu_s(running)
            status, client_cpu_s, _ = run_client(
                cmd, out_path, log, client_cpu, seconds + CLIENT_GRACE_S)
            server_s = server_cpu_s(running) - before
            run.status = status
            if running.proc.poll() is not None:
                raise RuntimeError("the server died during the run (%s)"
                                   % describe_status(running.proc.returncode))
            text = out_path.read_text()
            if status != 0:
                raise RuntimeError("the client ended with %s"
                                   % describe_status(status))
            rate, requests, errors, lat = PARSERS[cell.client.name](text)
            if not requests or rate <= 0:
                raise RuntimeError("no requests answered")
            run.rows["requests_per_s"] = rate
            run.rows["client_cpu_us_per_req"] = client_cpu_s / requests * 1e6
            run.rows["server_cpu_us_per_req"] = server_s / requests * 1e6
            run.rows["errors"] = float(errors)
            for p in PERCENTILES:
                if p in lat:
                    run.rows["lat_p%s_us" % p] = lat[p]
            log.write("# client output:\n%s" % text)
            run.ok = True
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            run.why = str(e) or type(e).__name__
            log.write("# failed: %s\n" % run.why)
            if out_path.exists():
                log.write("# client output:\n%s" % out_path.read_text())
        finally:
            if running is not None:
                stop_server(running)
            out_path.unlink(missing_ok=True)
            run.wall = time.monotonic() - began
            log.write("# %.2f s wall\n" % run.wall)


def progress(text, end="\n"):
    sys.stderr.write(text + end)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# The whole section.


class Section:
    """The HTTP section's runs and what came of them."""

    def __init__(self, cells, skipped, missing, reps, seconds, quick):
        self.cells = cells            # the cells that ran
        self.skipped = skipped        # {cell label: why} (per depth alike)
        self.missing = missing        # [why] a program is missing
        self.reps, self.seconds, self.quick = reps, seconds, quick
        self.runs = []
        self.wall = 0.0

    def stats(self):
        """{(workload, cell label, metric): Stat} of the successful runs."""
        out = {}
        for run in self.runs:
            if not run.ok:
                continue
            for metric, value in run.rows.items():
                key = (run.cell.workload, run.cell.label, metric)
                out.setdefault(key, Stat([])).values.append((run.rep, value))
        return out

    def get(self, depth, label, metric):
        """The Stat of a cell "server + client" at a depth, or None."""
        client = label.rsplit(" + ", 1)[1]
        return self.stats().get((workload_name(client, depth), label,
                                 metric))

    def failures(self):
        return [r for r in self.runs if not r.ok]


def plan(progs, why, only=None):
    """The cells to run, and {cell label: why skipped}."""
    cells, skipped = [], {}
    for server in SERVERS:
        for client in CLIENTS:
            label = cell_label(server.label, client.name)
            if only and label not in only:
                continue
            gone = [why[n] for n in (server.kind, client.name) if n in why]
            if gone:
                skipped[label] = "; ".join(gone)
                continue
            cells += [Cell(server, client, depth) for depth in DEPTHS]
    return cells, skipped


def run_section(build, logdir, quick=False, reps=None, seconds=None,
                only=None, section=None):
    """Runs every cell, interleaved; returns the Section (section, if
    given, filled in: it holds the runs done so far if interrupted)."""
    progs, why = find_programs(build)
    cells, skipped = plan(progs, why, only)
    reps = reps or (QUICK_REPS if quick else REPS)
    seconds = seconds or (QUICK_SECONDS if quick else SECONDS)
    if section is None:
        section = Section([], {}, [], 0, 0, quick)
    section.cells, section.skipped = cells, skipped
    section.missing = sorted(set(why.values()))
    section.reps, section.seconds, section.quick = reps, seconds, quick
    for line in section.missing:
        progress("http: %s: its cells are skipped" % line)
    server_cpu, client_cpu = cpus()
    if server_cpu is None:
        progress("http: fewer than 2 CPUs: server and client are not "
                 "pinned")
    began = time.monotonic()
    try:
        for rep in range(1, reps + 1):
            k = (rep - 1) % max(len(cells), 1)
            for i, cell in enumerate(cells[k:] + cells[:k], 1):
                run = Run(cell, rep)
                progress("[http rep %d/%d] %d/%d %s, depth %d ..."
                         % (rep, reps, i, len(cells), cell.label,
                            cell.depth), end=" ")
                run_cell(run, progs, logdir, seconds,
                         (server_cpu, client_cpu))
                if run.ok:
                    progress("%s req/s" % fmt(run.rows["requests_per_s"]))
                else:
                    progress("FAILED: %s (log: %s)" % (run.why, run.log))
                section.runs.append(run)
    finally:
        section.wall = time.monotonic() - began
    return section


# ---------------------------------------------------------------------------
# Targets and verdicts (bench/targets.py, bench "http"): a target names the
# cell it checks (columns) and the cell it compares with (against), both
# "server + client", at the depth of its workload (http_p1, http_p16).


def http_targets():
    return [t for t in TARGETS if t.bench == "http"]


def evaluate(section, target, label):
    """(value, met, note) of one target on one cell: value is the ratio of
    the medians, None when either cell has no results."""
    depth = int(target.workload.rsplit("_p", 1)[1])
    mine = section.get(depth, label, target.metric)
    base = section.get(depth, target.against, target.metric)
    if mine is None or base is None or not base.median:
        gone = [lab for lab, s in ((label, mine), (target.against, base))
                if s is None]
        ran = {c.label for c in section.cells}
        why = "; ".join(section.skipped.get(
            lab, "%s: %s" % (lab, "no successful run" if lab in ran
                             else "not run")) for lab in gone)
        return None, False, why
    unit = METRICS[target.metric][0]
    value = mine.median / base.median
    note = "%s %s / %s %s" % (fmt(mine.median), unit, fmt(base.median), unit)
    return value, target.met(value), note


def verdicts(section):
    """[(target, cell label, value, met, note)] of every HTTP target."""
    out = []
    for t in http_targets():
        for label in t.columns:
            out.append((t, label) + evaluate(section, t, label))
    return out


def verdict_text(target, value, met, note):
    if value is None:
        return "MISSED (no data%s)" % (": " + note if note else "")
    return "%s (%.3gx; %s)" % ("met" if met else "MISSED", value, note)


# ---------------------------------------------------------------------------
# CSV rows (the columns of bench/peers/run.py's files).


def csv_number(value):
    if value == 0 or not math.isfinite(value):
        return "%g" % value
    digits = max(0, 5 - int(math.floor(math.log10(abs(value)))))
    text = "%.*f" % (digits, value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def stat_rows(section):
    """(workload, library, backend, metric, Stat, unit), report order."""
    stats = section.stats()
    for client in CLIENTS:
        for depth in DEPTHS:
            for server in SERVERS:
                label = cell_label(server.label, client.name)
                for metric in METRICS:
                    s = stats.get((workload_name(client.name, depth), label,
                                   metric))
                    if s is not None:
                        yield (workload_name(client.name, depth),
                               server.kind, server.backend, metric, s,
                               METRICS[metric][0])


def append_csvs(section, out, header=False):
    """Appends the section's rows to results.csv, results-all.csv and
    runs.csv (with their header lines when header is set)."""
    head = ["workload", "library", "backend", "metric", "value", "unit"]
    mode = "w" if header else "a"
    with open(out / "results.csv", mode, newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(head)
        for workload, lib, backend, metric, s, unit in stat_rows(section):
            w.writerow([workload, lib, backend, metric, csv_number(s.median),
                        unit])
    with open(out / "results-all.csv", mode, newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(head + ["rep"])
        for workload, lib, backend, metric, s, unit in stat_rows(section):
            row = [workload, lib, backend, metric]
            for rep, value in s.values:
                w.writerow(row + [csv_number(value), unit, rep])
            for name, value in (("min", s.lo), ("median", s.median),
                                ("max", s.hi)):
                w.writerow(row + [csv_number(value), unit, name])
    with open(out / "runs.csv", mode, newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(["workload", "library", "backend", "rep", "status",
                        "exit", "wall_s", "log"])
        for r in section.runs:
            w.writerow([r.cell.workload, r.cell.server.kind,
                        r.cell.server.backend, r.rep,
                        "ok" if r.ok else "failed: " + r.why, r.status,
                        "%.3f" % r.wall, r.log.relative_to(out)])


# ---------------------------------------------------------------------------
# The plots.


def sig3(x):
    return "%.0f" % x if abs(x) >= 100 else "%.3g" % x


def fmt(value):
    if value is None:
        return "–"
    for above, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"),
                                 (1e4, 1e3, "k")):
        if abs(value) >= above:
            return sig3(value / scale) + suffix
    return sig3(value) if value != int(value) or abs(value) >= 100 \
        else "%d" % value


def gnuplot_terminal():
    if not shutil.which("gnuplot"):
        return None
    done = subprocess.run(["gnuplot", "-e", "set terminal"],
                          capture_output=True, text=True)
    return "pngcairo" if "pngcairo" in done.stdout + done.stderr else "png"


def bars_panel(section, depth, metric, index):
    """Clustered bars: a group per client, a bar per server, min-max."""
    unit, higher, _ = METRICS[metric]
    rows, top = [], 0.0
    for client in CLIENTS:
        cells = []
        for server in SERVERS:
            s = section.get(depth, cell_label(server.label, client.name),
                            metric)
            if s is None:
                cells.append("- - -")
            else:
                cells.append("%r %r %r" % (s.median, s.lo, s.hi))
                top = max(top, s.hi)
        rows.append('"%s" %s' % (client.name, " ".join(cells)))
    plots = []
    for i, server in enumerate(SERVERS):
        c = 2 + 3 * i
        plots.append("$h%d using %d:%d:%d%s title '%s' lc rgb '%s'"
                     % (index, c, c + 1, c + 2,
                        ":xtic(1)" if i == 0 else "", server.label,
                        COLORS[server.label]))
    return [
        "$h%d << EOD" % index, *rows, "EOD",
        "set title '%s, depth %d (%s is better)'"
        % (metric, depth, "higher" if higher else "lower"),
        "set ylabel '%s'" % unit,
        "set format y '%s'" % ("%.1s%c" if top >= 1e4 else "%g"),
        # Room above the bars for the key.
        "set yrange [0:%r]" % ((top or 1.0) * 1.45),
        "plot " + ", ".join(plots),
    ]


def bars_script(section, terminal, path):
    font = "font 'Sans,9'" if terminal != "png" else ""
    lines = ["set terminal %s noenhanced background rgb 'white' "
             "size 1100,760 %s" % (terminal, font),
             "set output '%s'" % path,
             "set datafile missing '-'",
             "set style data histogram",
             "set style histogram errorbars gap 1.5 lw 1",
             "set style fill solid 0.85 border -1",
             "set boxwidth 0.9", "set grid ytics",
             "set key top center horizontal maxcols 2",
             "set xtics scale 0",
             "set multiplot layout 2,2 title 'HTTP /plaintext, %d "
             "connections: median over the reps, error bars min to max'"
             % CONNECTIONS]
    i = 0
    for metric in ("requests_per_s", "client_cpu_us_per_req"):
        for depth in DEPTHS:
            lines += bars_panel(section, depth, metric, i)
            i += 1
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def nines(p):
    """A percentile's x on the plot: 50 -> 0.3, 90 -> 1, 99 -> 2, ..."""
    return -math.log10(1 - float(p) / 100)


def latency_script(section, terminal, path):
    """Latency percentile curves, a panel per depth, a curve per cell that
    reports them (colour: the server, dashes: the client)."""
    font = "font 'Sans,9'" if terminal != "png" else ""
    lines = ["set terminal %s noenhanced background rgb 'white' "
             "size 1100,560 %s" % (terminal, font),
             "set output '%s'" % path,
             "set logscale y", "set grid xtics ytics",
             "set ylabel 'latency (ms)'",
             "set key below maxrows 3",
             # A tic label is a format: "50%%" prints 50%.
             "set xtics (%s)" % ", ".join('"%s%%%%" %r' % (p, nines(p))
                                          for p in PERCENTILES),
             "set xrange [%r:%r]" % (nines("50") - 0.1,
                                     nines(PERCENTILES[-1]) + 0.1),
             "set multiplot layout 1,%d title 'HTTP /plaintext latency "
             "percentiles, medians over the reps (wrk: one sample per "
             "batch when pipelining)'" % len(DEPTHS)]
    block = 0
    for depth in DEPTHS:
        plots = []
        for client in CLIENTS:
            if not client.latency:
                continue
            for server in SERVERS:
                label = cell_label(server.label, client.name)
                pts = [(nines(p), section.get(depth, label,
                                              "lat_p%s_us" % p))
                       for p in PERCENTILES]
                pts = [(x, s.median / 1000) for x, s in pts
                       if s is not None]
                if not pts:
                    continue
                lines += ["$l%d << EOD" % block] + \
                    ["%r %r" % xy for xy in pts] + ["EOD"]
                plots.append("$l%d using 1:2 with linespoints title '%s' "
                             "lc rgb '%s' dt %d pt 7 ps 0.6 lw 1.5"
                             % (block, label, COLORS[server.label],
                                DASH[client.name]))
                block += 1
        lines.append("set title 'depth %d'" % depth)
        if plots:
            lines.append("plot " + ", ".join(plots))
        else:
            lines += ["set label 1 'no latency figures' at graph 0.4,0.5",
                      "plot [0:1] NaN notitle", "unset label 1"]
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def make_plots(section, out):
    """plots/http_requests.{png,svg} and plots/http_latency.{png,svg};
    False when gnuplot is missing or nothing ran."""
    terminal = gnuplot_terminal()
    if terminal is None or not section.stats():
        return False
    plotdir = out / "plots"
    plotdir.mkdir(exist_ok=True)
    ok = True
    for name, script in (("http_requests", bars_script),
                         ("http_latency", latency_script)):
        for term, ext in ((terminal, "png"), ("svg", "svg")):
            target = plotdir / ("%s.%s" % (name, ext))
            gp = plotdir / ("%s.%s.gp" % (name, ext))
            gp.write_text(script(section, term, target))
            done = subprocess.run(["gnuplot", str(gp)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                progress("gnuplot failed on %s:\n%s" % (gp, done.stderr))
                ok = False
    return ok


# ---------------------------------------------------------------------------
# The report's section.


def cell_text(s, scale=1.0):
    """median [min–max], each divided by scale."""
    if s is None:
        return "–"
    return "%s [%s–%s]" % (fmt(s.median / scale), fmt(s.lo / scale),
                           fmt(s.hi / scale))


def matrix(section, metric):
    """A table: a row per server, a column per (client, depth)."""
    cols = [(c, d) for d in DEPTHS for c in CLIENTS]
    head = ["server"] + ["%s, depth %d" % (c.name, d) for c, d in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for server in SERVERS:
        cells = [server.label]
        for client, depth in cols:
            label = cell_label(server.label, client.name)
            s = section.get(depth, label, metric)
            cells.append(cell_text(s) if s is not None else
                         ("skipped" if label in section.skipped else "–"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def latency_table(section):
    head = ["server", "client", "depth"] + ["p%s (ms)" % p
                                            for p in SHOWN_PERCENTILES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for depth in DEPTHS:
        for client in CLIENTS:
            if not client.latency:
                continue
            for server in SERVERS:
                label = cell_label(server.label, client.name)
                stats = [section.get(depth, label, "lat_p%s_us" % p)
                         for p in SHOWN_PERCENTILES]
                if all(s is None for s in stats):
                    continue
                lines.append("| " + " | ".join(
                    [server.label, client.name, str(depth)]
                    + [cell_text(s, 1000) for s in stats]) + " |")
    return lines + [""]


def versions():
    """The Debian packages' versions of the peers, when installed."""
    try:
        text = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${Version}\n",
             "nginx-light", "h2o", "wrk", "nghttp2-client"],
            capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return "; ".join(line for line in text.splitlines() if line.strip())


def report_section(section, verdict_list, plots, level=2):
    """The markdown lines of the section (verdict_list: verdicts())."""
    h = "#" * level
    lines = [
        "%s HTTP: rx-http against nginx and h2o, rx-load against wrk and "
        "h2load" % h, "",
        "GET %s (`Hello, World!`, text/plain) over %d keep-alive "
        "connections, without pipelining (depth 1) and with 16 requests "
        "in flight per connection (depth 16: wrk sends them as one batch "
        "through bench/http/pipeline.lua, rx-load with --pipeline 16 "
        "--batch, each batch once the last is answered, h2load with -m 16, "
        "a request for each response; rx-load also naps 50 us before "
        "each wait, --collect 50us, at both depths). Servers: rx-http "
        "with --threads 1 --collect 50us (a 50 us nap before each wait) "
        "on io_uring and on epoll; nginx, 1 worker, `return 200` from its "
        "configuration; h2o, 1 thread, an mruby handler. Each server is "
        "pinned to CPU %d, each client (1 thread) to CPU %d; a fresh server "
        "on a free port of 127.0.0.1 per run. %d interleaved rep%s of %d s "
        "per cell; the tables show the median [min–max] over the reps. "
        "Client CPU is the client process's user + system time over the "
        "responses it counted; server CPU the server's (nginx: master and "
        "worker) over the client's run."
        % (PATH, CONNECTIONS, SERVER_CPU, CLIENT_CPU, section.reps,
           "s" * (section.reps != 1), section.seconds), ""]
    v = versions()
    if v:
        lines += ["Packages: %s. Wall time of the HTTP runs: %d:%02d."
                  % (v, *divmod(int(section.wall), 60)), ""]
    if section.missing:
        lines += ["Skipped: %s. (`make bench` installs the packages when "
                  "run as root, and builds rx-http and rx-load with the "
                  "examples.)" % "; ".join(section.missing), ""]
    if plots:
        lines += ["![http requests](plots/http_requests.png) "
                  "([svg](plots/http_requests.svg))", "",
                  "![http latency](plots/http_latency.png) "
                  "([svg](plots/http_latency.svg))", ""]
    if verdict_list:
        lines += ["%s# Targets" % h, "",
                  "| cell, depth | target | verdict |", "|---|---|---|"]
        for t, label, value, met, note in verdict_list:
            lines.append("| %s, %s | %s | %s |"
                         % (label, t.workload, t.text(),
                            verdict_text(t, value, met, note)))
        lines.append("")
    lines += ["%s# Requests per second" % h, ""] + \
        matrix(section, "requests_per_s")
    lines += ["%s# Client CPU per request (us, lower is better)" % h, "",
              "The client's user + system time over the responses it "
              "counted: what a load generator spends to produce its load.",
              ""] + matrix(section, "client_cpu_us_per_req")
    lines += ["%s# Server CPU per request (us, lower is better)" % h, ""] + \
        matrix(section, "server_cpu_us_per_req")
    lines += ["%s# Latency percentiles" % h, "",
              "As the clients report them: wrk (`--latency`, read through "
              "pipeline.lua's done()) takes one sample per batch when "
              "pipelining, from the batch's send to its last response; "
              "rx-load one per request; h2load reports no percentiles. In a "
              "closed loop with 256 connections the latency is mostly the "
              "queue: about connections x depth / rate.", ""] + \
        latency_table(section)
    errors = [(lab, d) for d in DEPTHS for lab in
              {c.label for c in section.cells}
              if (section.get(d, lab, "errors") or Stat([(0, 0)])).hi > 0]
    notes = ["- %s, depth %d: up to %s errors in a rep (socket errors, "
             "timeouts, non-2xx)" % (lab, d,
                                     fmt(section.get(d, lab, "errors").hi))
             for lab, d in sorted(errors)]
    notes += ["- %s, depth %d, rep %d failed: %s ([log](logs/%s))"
              % (r.cell.label, r.cell.depth, r.rep, r.why, r.log.name)
              for r in section.failures()]
    if notes:
        lines += notes + [""]
    return lines


# ---------------------------------------------------------------------------
# Alone: python3 bench/http/http_bench.py --build DIR --out DIR.


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", type=Path,
                   help="the build dir with examples/http/rx-http and "
                        "examples/load/rx-load")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int)
    p.add_argument("--seconds", type=int)
    p.add_argument("--cell", action="append", metavar="'SERVER + CLIENT'",
                   help="run only this cell (may be repeated)")
    args = p.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logdir = out / "logs"
    logdir.mkdir(exist_ok=True)
    for old in logdir.glob("http-*"):
        old.unlink()
    section = run_section(args.build.resolve() if args.build else None,
                          logdir, args.quick, args.reps, args.seconds,
                          args.cell)
    append_csvs(section, out, header=True)
    plots = make_plots(section, out)
    vs = verdicts(section)
    (out / "http.md").write_text("\n".join(
        ["# HTTP benchmark", ""] + report_section(section, vs, plots)))
    missed = sum(not v[3] for v in vs)
    progress("http: %d runs, %d failed; targets %d met, %d missed; %s"
             % (len(section.runs), len(section.failures()),
                len(vs) - missed, missed, out / "http.md"))
    return 1 if section.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
