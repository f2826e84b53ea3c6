#!/usr/bin/env python3
"""bench/peers/run.py - runs the peer benchmark and writes its report.

    python3 bench/peers/run.py --bin <builddir>/bench/peers --out <dir>
                               [--quick] [--reps N] [--micro <builddir>]
                               [--workload NAME ...]
                               [--virt <builddir>/bench/virt]
                               [--qmp <builddir>/bench/qmp]
                               [--http <builddir>]

Every workload of bench/peers/peer.h runs on every library: rx (once with
RX_BACKEND=io_uring, once with RX_BACKEND=epoll), libev, libuv and libevent,
each library in its own executable peer_<library>. ping_pongs and pipe_chain
also run on rx's completion operations (peer_rx --ops: the columns "rx
io_uring ops" and "rx epoll ops", rows of library rx-ops), and on plain
liburing (peer_liburing, the column "liburing": the same requests with rx's
ring flags and no library in between, the floor for rx's ops). The
ops and liburing columns are not peers: the best peer is the best of libev,
libuv and libevent, and each rx column, ops or readiness, gets its ratio to
it. bus_4x3 (the event bus, bench/peers/bus.h) runs on its own
executables, bus_rx (the rx columns), bus_zmq ("zeromq") and bus_mutex
("mutex+condvar"), its peers. A (workload, column) cell is one process per
repetition. The repetitions are
interleaved: rep 1 runs every cell once, then rep 2, and so on, so that a
burst of someone else's load on a shared machine falls on all libraries
alike instead of on whichever ran at the time. Within a rep the order of the
libraries rotates from one rep to the next, so that no library always runs
right after the same other one.

With --virt, the same reps also run bench/virt's workloads (libvirt's event
API through libvirt's public functions) on rx (virt_rx, on io_uring and on
epoll) and on libvirt's default implementation (virt_libvirt); the report
gives them a section of their own, with the ratio of rx to libvirt.

With --qmp, they also run bench/qmp's workload: the QMP client (librx-qmp)
against a real QEMU that each process starts and stops, on rx (qmp_rx, on
io_uring and on epoll) and as a plain blocking client on jansson alone
(qmp_block, the floor); a section of its own, with the ratio of rx to the
blocking client. Without qemu-system-x86_64 the section says it was
skipped.

A process prints CSV rows "workload,library,backend,metric,value,unit" on
stdout; its stderr goes to <out>/logs/. The outputs:

  <out>/results.csv      the median over the reps of every metric
  <out>/results-all.csv  every rep's value (column rep), then min, median
                         and max (rep = "min", "median", "max")
  <out>/runs.csv         one row per process: status, exit code, wall time
  <out>/report.md        host facts, one table per workload with the ratio
                         of rx to the best peer, the targets and verdicts
  <out>/plots/           one plot per workload (PNG and SVG), with gnuplot
  <out>/plots/virt_*     the same for bench/virt's workloads (--virt)
  <out>/plots/qmp_*      the same for bench/qmp's (--qmp)
  <out>/micro/           with --micro: rx's own micro benchmarks,
                         bench/run.sh's table (run.txt) and the JSON of its
                         google-benchmark runs

With --http, bench/http/http_bench.py runs after them: rx-http (the
build's examples/http) against nginx and h2o, rx-load (examples/load)
against wrk and h2load; its section, CSV rows, plots (plots/http_*) and
targets join the same report and files.

The targets, those of the micro benchmarks and of HTTP included, are
bench/targets.py's one table.

--quick passes --quick to the executables (smaller sizes) and makes 2 reps
instead of 5; --reps overrides either. Exit status: 0; 1 if a process failed
(it is listed in the report, the other runs go on); 2 on a usage error.
"""

import argparse
import csv
import datetime
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import micro as micro_table  # noqa: E402  bench/micro.py
from stats import Stat  # noqa: E402  bench/stats.py
sys.path.insert(0, str(REPO / "bench" / "http"))
import http_bench  # noqa: E402  bench/http/http_bench.py
from targets import TARGETS, Target  # noqa: E402,F401  bench/targets.py

# ---------------------------------------------------------------------------
# What runs: the workloads and the report's columns.


@dataclass(frozen=True)
class Workload:
    name: str          # as the report shows it
    args: tuple        # the executable's arguments (before --quick)
    about: str         # one line for the report
    prefix: str = ""   # its executables are <prefix><library> (else the
                       # columns' own, peer_<library>)
    labels: tuple = () # the columns that run it (else every column whose
                       # `only` allows it)

    @property
    def printed(self):
        """The workload name the executable prints."""
        return self.args[0]


WORKLOADS = [
    Workload("loop_count", ("loop_count",),
             "An idle watcher counts loop iterations until a timer ends "
             "the run"),
    Workload("million_timers", ("million_timers",),
             "One-shot timers due in 1..1000 ms (fixed seed), run until "
             "all have fired"),
    Workload("timer_churn", ("timer_churn",),
             "Active timers due in 10-60 s, re-armed at random to new "
             "deadlines"),
    Workload("pipe_chain_1000", ("pipe_chain", "--pipes", "1000"),
             "The chain of libevent's test/bench.c, 1000 socket pairs: "
             "re-register every watcher, then pass 1000 bytes along (rx "
             "ops: a recv op per read end, a send op per byte; the setup "
             "cancels and resubmits every recv)"),
    Workload("pipe_chain_9000", ("pipe_chain", "--pipes", "9000"),
             "The same with 9000 socket pairs"),
    Workload("async_pummel", ("async_pummel",),
             "A producer thread sends to one async watcher as fast as it "
             "can; the loop must see the last send"),
    Workload("ping_pongs", ("ping_pongs",),
             "A TCP echo server on the loop, a client thread bouncing "
             "messages over loopback connections (rx ops: accept, recv and "
             "send ops; liburing: the same server on plain liburing)"),
    Workload("timer_start_10000", ("timer_start", "--timers", "10000"),
             "Batches of 4096 starts of fresh timers (due in 1-60 s) on a "
             "loop holding 10,000 active timers, stopped between batches"),
    Workload("timer_start_100000", ("timer_start", "--timers", "100000"),
             "The same with 100,000 active timers"),
    Workload("async_send_pending", ("async_send_pending",),
             "Sends to an async watcher that is already pending, by the "
             "loop's own thread, on a loop that does not run"),
    Workload("loop_pingpong", ("loop_pingpong",),
             "Two loops on two threads bounce one message with the "
             "library's cross-thread wake-up"),
    # The event bus (bench/peers/bus.h) against what a program would use
    # instead: its own executables, bus_<library>, and its own columns.
    Workload("bus_4x3", ("bus_4x3",),
             "The event bus: 4 producer threads publish events named "
             "bus.ev0-3 in turn to 3 subscribers that take 1/4, 1/2 and "
             "3/4 of them by name, nothing dropped; first as fast as "
             "they can (events/s), then paced at 100,000 events/s "
             "(publish-to-handler latency). rx: rx_bus_post_wait() to a "
             "bus on one loop thread, callback listeners; zeromq: an "
             "XPUB socket per producer (ZMQ_XPUB_NODROP), a SUB socket "
             "per subscriber on its own thread, inproc, topic prefixes; "
             "mutex+condvar: a bounded ring, one consumer thread running "
             "3 name filters",
             prefix="bus_", labels=("rx io_uring", "rx epoll", "zeromq",
                                    "mutex+condvar")),
]


@dataclass(frozen=True)
class Column:
    label: str         # the report's column: "rx io_uring", "libev", ...
    library: str       # the library its rows name ("rx", "rx-ops", ...)
    env: tuple = ()    # (name, value) pairs for the process
    backend: str = ""  # the backend the process must report ("" = any)
    program: str = ""  # the executable is peer_<program or library>
    args: tuple = ()   # after the workload's own arguments
    only: tuple = ()   # the workloads it runs (empty: all)
    peer: bool = True  # one of the peers rx is compared with
    prefix: str = "peer_"  # the executable's, before program or library

    @property
    def exe(self):
        return self.prefix + (self.program or self.library)

    @property
    def slug(self):
        return self.label.replace(" ", "-")

    def runs(self, workload):
        w = next((w for w in ALL_WORKLOADS if w.name == workload), None)
        if w is not None and w.labels:
            return self.label in w.labels
        return not self.only or workload in self.only


# The workloads with a completion-operation variant (peer.h, --ops).
OPS_WORKLOADS = ("pipe_chain_1000", "pipe_chain_9000", "ping_pongs")

COLUMNS = [
    Column("rx io_uring", "rx", (("RX_BACKEND", "io_uring"),), "io_uring",
           peer=False),
    Column("rx epoll", "rx", (("RX_BACKEND", "epoll"),), "epoll",
           peer=False),
    Column("rx io_uring ops", "rx-ops", (("RX_BACKEND", "io_uring"),),
           "io_uring", program="rx", args=("--ops",), only=OPS_WORKLOADS,
           peer=False),
    Column("rx epoll ops", "rx-ops", (("RX_BACKEND", "epoll"),), "epoll",
           program="rx", args=("--ops",), only=OPS_WORKLOADS, peer=False),
    Column("liburing", "liburing", backend="io_uring", only=OPS_WORKLOADS,
           peer=False),
    # The event bus's peers (bus_4x3 alone).
    Column("zeromq", "zmq", only=("bus_4x3",)),
    Column("mutex+condvar", "mutex", only=("bus_4x3",)),
    Column("libev", "libev"),
    Column("libuv", "libuv"),
    Column("libevent", "libevent"),
]
RX_COLUMNS = [c.label for c in COLUMNS if c.library.startswith("rx")]
PEERS = [c.label for c in COLUMNS if c.peer]


ALL_WORKLOADS = list(WORKLOADS)  # WORKLOADS less what --workload leaves out


def exe_of(workload, column):
    """The executable of a (workload, column) cell."""
    if workload.prefix:
        return workload.prefix + (column.program or column.library)
    return column.exe


def columns_of(workload):
    """The columns that run a workload (by name), in report order."""
    if workload in {w.name for w in VIRT_WORKLOADS}:
        return VIRT_COLUMNS
    if workload in {w.name for w in QMP_WORKLOADS}:
        return QMP_COLUMNS
    return [c for c in COLUMNS if c.runs(workload)]


# bench/virt (--virt): libvirt's six event functions, called through
# libvirt's public API, on rx and on libvirt's default implementation (its
# GLib loop), each a process of its own since libvirt's registration is for
# the whole process. Their workloads print "virt_<argument>".
VIRT_WORKLOADS = [
    Workload("virt_update", ("update",),
             "virEventUpdateHandle (events to 0 and back) and "
             "virEventUpdateTimeout (a new period, then the same again) on "
             "each of 1,000 handles and 1,000 timeouts, from a timeout "
             "callback on the loop's thread while the loop runs"),
    Workload("virt_timers", ("timers",),
             "1,000 timeouts with periods of 1-100 ms (and 1,000 idle "
             "handles) firing for a few seconds: lateness of each fire "
             "after the previous one, early fires counted"),
]
VIRT_COLUMNS = [
    Column("rx io_uring", "rx", (("RX_BACKEND", "io_uring"),), "io_uring",
           peer=False, prefix="virt_"),
    Column("rx epoll", "rx", (("RX_BACKEND", "epoll"),), "epoll",
           peer=False, prefix="virt_"),
    Column("libvirt", "libvirt", prefix="virt_"),
]

# bench/qmp (--qmp): the QMP client against a real QEMU, on rx and as a
# plain blocking client, each process starting its own QEMU. Their rows say
# "qmp_stop_cont".
QEMU = "qemu-system-x86_64"
QMP_PAIRS, QMP_QUICK_PAIRS = 2000, 500
QMP_WORKLOADS = [
    Workload("qmp_stop_cont", ("stop_cont",),
             "QEMU 7.2 (%s -machine none, no guest) on a unix socket; "
             "after the greeting and negotiation the client pipelines "
             "%s stop/cont pairs (%s with --quick), at most 8 commands "
             "in flight, until it has read every answer and every STOP and "
             "RESUME event; the figures span the first command to the last "
             "message. rx: librx-qmp given every command at once (it keeps "
             "8 in flight), events through the bus to a callback listener; "
             "blocking C: one socket, read() and write(), jansson for each "
             "message, 8 commands written ahead, no rx. Client CPU is the "
             "process's (getrusage, user + system), QEMU's is from "
             "/proc/PID/stat (10 ms ticks) over the same span, for scale"
             % (QEMU, "{:,}".format(QMP_PAIRS), QMP_QUICK_PAIRS)),
]
QMP_COLUMNS = [
    Column("rx io_uring", "rx", (("RX_BACKEND", "io_uring"),), "io_uring",
           peer=False, prefix="qmp_"),
    Column("rx epoll", "rx", (("RX_BACKEND", "epoll"),), "epoll",
           peer=False, prefix="qmp_"),
    Column("blocking C", "block", prefix="qmp_"),
]
# Every column label once, in report order.
ALL_COLUMNS = COLUMNS + [c for c in VIRT_COLUMNS + QMP_COLUMNS
                         if c.label not in {k.label for k in COLUMNS}]


@dataclass(frozen=True)
class Suite:
    """Workloads, the columns that run them, and where their executables
    are."""
    workloads: list
    columns: list
    bindir: Path
    cells: set = None  # the (workload, column label) pairs to run (None: all)

# Variables that change how a library picks its backend or threads: the
# peers run with their defaults, whatever the caller's environment holds.
SCRUB_ENV = ("RX_BACKEND", "LIBEV_FLAGS", "UV_THREADPOOL_SIZE",
             "UV_USE_IO_URING", "EVENT_NOEPOLL", "EVENT_NOSELECT",
             "EVENT_NOPOLL", "EVENT_NODEVPOLL", "EVENT_NOKQUEUE",
             "EVENT_EPOLL_USE_CHANGELIST", "EVENT_PRECISE_TIMER",
             "EVENT_SHOW_METHOD", "BUS_RX_BUSY_POLL")

DEFAULT_REPS, QUICK_REPS = 5, 2
# A safety net above the executables' own watchdog (exit status 3).
TIMEOUT_S, QUICK_TIMEOUT_S = 600, 120
WATCHDOG_STATUS = 3

# ---------------------------------------------------------------------------
# The metrics: which way is better, and what they mean.


@dataclass(frozen=True)
class Metric:
    higher: bool       # True: higher is better
    about: str


METRICS = {
    "iterations_per_s": Metric(True, "loop iterations per second"),
    "start_ns": Metric(False, "CPU ns per timer start (init + start)"),
    "cpu_per_fire_ns": Metric(False, "CPU ns per fired timer"),
    "peak_rss_mb": Metric(False, "peak resident set size"),
    "rss_per_timer_b": Metric(False, "resident bytes per timer"),
    "late_mean_us": Metric(False, "mean lateness of a timer"),
    "late_max_us": Metric(False, "worst lateness of a timer"),
    "late_max_steady_us": Metric(
        False, "worst lateness of a timer due 100 ms or more after the loop "
        "began to run"),
    "wake_late_max_us": Metric(
        False, "the machine's floor: worst overshoot of a plain 2^19 ns "
        "sleep, measured just before"),
    "early": Metric(False, "timers fired before their deadline"),
    "rearm_ns": Metric(False, "CPU ns per re-arm"),
    "setup_ns_per_watcher": Metric(False, "ns per watcher re-registered"),
    "run_us": Metric(False, "us to pass the bytes along the chain"),
    "sends_per_s": Metric(True, "async sends per second"),
    "callbacks": Metric(True, "async callbacks delivered"),
    "round_trips_per_s": Metric(True, "round trips per second"),
    "server_cpu_us_per_trip": Metric(False, "server CPU us per round trip"),
    "client_cpu_us_per_trip": Metric(
        False, "client thread CPU us per round trip (the same client for "
        "every server)"),
    "server_syscalls_per_trip": Metric(
        False, "system calls of the server thread per round trip"),
    "send_ns": Metric(False, "CPU ns per send"),
    "cpu_ns_per_trip": Metric(False, "CPU ns per round trip, both threads"),
    "events_per_s": Metric(True, "events published and handled per second"),
    "cpu_ns_per_event": Metric(False, "process CPU ns per event, every "
                               "thread"),
    "lat_p50_us": Metric(False, "publish-to-handler latency at 100,000 "
                         "events/s, median"),
    "lat_p99_us": Metric(False, "publish-to-handler latency at 100,000 "
                         "events/s, 99th percentile"),
    "lat_max_us": Metric(False, "publish-to-handler latency at 100,000 "
                         "events/s, worst"),
    "update_handle_ns": Metric(
        False, "ns per virEventUpdateHandle call, the calls alone"),
    "update_timeout_ns": Metric(
        False, "ns per virEventUpdateTimeout call, the calls alone"),
    "update_handle_loop_ns": Metric(
        False, "loop thread CPU ns per virEventUpdateHandle call, with the "
        "work the loop deferred (less an idle round's)"),
    "update_timeout_loop_ns": Metric(
        False, "loop thread CPU ns per virEventUpdateTimeout call, with the "
        "work the loop deferred (less an idle round's)"),
    "idle_round_us": Metric(
        False, "loop thread CPU us of a round without updates: one wait and "
        "wake-up of a loop holding 1,000 handles and 1,000 timeouts"),
    "fires": Metric(True, "timeout callbacks run"),
    "late_p50_us": Metric(False, "median lateness of a fire"),
    "late_p99_us": Metric(False, "99th percentile of a fire's lateness"),
    "early_max_us": Metric(False, "how early the earliest fire came"),
    "messages": Metric(True, "messages read: answers + STOP/RESUME events"),
    "wall_ms": Metric(False, "wall time from the first command to the last "
                      "message"),
    "client_cpu_ms": Metric(False, "the client process's CPU, user + "
                            "system"),
    "cpu_ns_per_message": Metric(False, "client CPU ns per message read "
                                 "(answers and events)"),
    "qemu_cpu_ms": Metric(False, "QEMU's CPU over the same span (for "
                          "scale)"),
    "qemu_cpu_ns_per_message": Metric(False, "QEMU's CPU ns per message "
                                      "(for scale)"),
}


def higher_is_better(metric, unit):
    """The table's word, or for an unknown metric a guess from its unit."""
    if metric in METRICS:
        return METRICS[metric].higher
    return unit.endswith("/s")


# ---------------------------------------------------------------------------
# The targets: bench/targets.py (TARGETS), checked on rx io_uring (rx
# epoll's ratios are informative). Those of bench == "micro" are checked on
# the micro benchmarks' medians (bench/micro.py).


# ---------------------------------------------------------------------------
# Running one process.


@dataclass
class Run:
    workload: Workload
    column: Column
    rep: int
    ok: bool = False
    why: str = ""              # what failed
    status: int = 0            # exit status (negative: killed by a signal)
    wall: float = 0.0
    backend: str = ""
    rows: dict = field(default_factory=dict)   # metric -> (value, unit)
    log: Path = None


def scrubbed_env(column):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB_ENV}
    env.update(dict(column.env))
    return env


def describe_status(status):
    if status == WATCHDOG_STATUS:
        return "exit status 3 (watchdog: the run hung)"
    if status < 0:
        try:
            return "killed by %s" % signal.Signals(-status).name
        except ValueError:
            return "killed by signal %d" % -status
    return "exit status %d" % status


def run_process(run, bindir, logdir, quick, timeout):
    """Runs one cell once; fills in run (status, rows or why it failed).
    The log holds the command, the process's stderr and how it ended (and
    its stdout if it failed)."""
    cmd = [str(bindir / exe_of(run.workload, run.column)), *run.workload.args,
           *run.column.args]
    if quick:
        cmd.append("--quick")
    run.log = logdir / ("%s-%s-rep%d.log" % (run.workload.name,
                                             run.column.slug, run.rep))
    with open(run.log, "w") as log:
        log.write("# %s\n" % " ".join(
            ["%s=%s" % kv for kv in run.column.env] + cmd))
        log.flush()
        stdout = spawn(run, cmd, log, timeout)
        if stdout is not None:
            log.write("# %s, %.2f s wall\n" % (describe_status(run.status),
                                               run.wall))
            run.why = (describe_status(run.status) if run.status != 0
                       else parse_rows(run, stdout))
        if run.why:
            log.write("# failed: %s\n# stdout:\n%s" % (run.why,
                                                       stdout or ""))
        run.ok = not run.why


def spawn(run, cmd, log, timeout):
    """Runs cmd with its stderr to log; sets run.status and run.wall and
    returns the stdout, or sets run.why and returns None on a timeout."""
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=scrubbed_env(run.column),
                              stdout=subprocess.PIPE, stderr=log, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        run.why = "timed out after %d s (killed)" % timeout
        return None
    finally:
        run.wall = time.monotonic() - start
    run.status = proc.returncode
    return proc.stdout


def parse_rows(run, stdout):
    """Reads the process's CSV rows into run.rows; returns what was wrong
    with them, or "" when they keep to the contract."""
    for line in csv.reader(stdout.splitlines()):
        if not line:
            continue
        if len(line) != 6:
            return "malformed output row: %s" % ",".join(line)
        workload, library, backend, metric, value, unit = line
        if workload not in (run.workload.printed, run.workload.name):
            return "row of workload %r, not %r" % (workload,
                                                   run.workload.printed)
        if library != run.column.library:
            return "row of library %r, not %r" % (library,
                                                  run.column.library)
        if run.column.backend and backend != run.column.backend:
            return "ran on %s, not %s" % (backend, run.column.backend)
        try:
            number = float(value)
        except ValueError:
            return "not a number: %s=%r" % (metric, value)
        run.backend = backend
        run.rows[metric] = (number, unit)
    return "" if run.rows else "no results on stdout"


# ---------------------------------------------------------------------------
# Running every cell, rep after rep.


def progress(text, end="\n"):
    sys.stderr.write(text + end)
    sys.stderr.flush()


def rotated(columns, rep):
    """The columns in the order of rep (1-based): rotated by one per rep."""
    k = (rep - 1) % len(columns)
    return columns[k:] + columns[:k]


def clock(seconds):
    return "%d:%02d" % divmod(int(seconds), 60)


def run_all(suites, logdir, reps, quick, runs):
    """Every cell of every suite in every rep, appended to runs as each one
    ends (so that an interrupt leaves the runs done so far)."""
    timeout = QUICK_TIMEOUT_S if quick else TIMEOUT_S
    began = time.monotonic()
    for rep in range(1, reps + 1):
        if rep > 1:
            spent = time.monotonic() - began
            left = spent / (rep - 1) * (reps - rep + 1)
            progress("[rep %d/%d] %s so far, about %s to go"
                     % (rep, reps, clock(spent), clock(left)))
        todo = [(workload, suite) for suite in suites
                for workload in suite.workloads]
        for w, (workload, suite) in enumerate(todo, 1):
            for column in rotated(suite.columns, rep):
                if (not column.runs(workload.name)
                        or (suite.cells is not None and
                            (workload.name, column.label) not in suite.cells)):
                    continue
                run = Run(workload, column, rep)
                progress("[rep %d/%d] workload %d/%d %s: %s ..."
                         % (rep, reps, w, len(todo), workload.name,
                            column.label), end=" ")
                run_process(run, suite.bindir, logdir, quick, timeout)
                report_run(run)
                runs.append(run)


def report_run(run):
    """Ends the progress line of a run; a failure shows its log's tail."""
    if run.ok:
        progress("%.2f s" % run.wall)
        return
    progress("%.2f s FAILED: %s (log: %s)" % (run.wall, run.why, run.log))
    with open(run.log) as log:
        said = [line for line in log.read().splitlines()
                if not line.startswith("# ")]
    for line in said[-3:]:
        progress("    | " + line)


# ---------------------------------------------------------------------------
# Medians and the CSV files.


@dataclass
class BackendStat(Stat):
    """A Stat with its unit and the backend its runs used."""
    unit: str
    backend: str


class Results:
    """Every successful run's values, by workload, column and metric."""

    def __init__(self, runs):
        self.runs = runs
        self.stats = {}      # (workload, column label, metric) -> Stat
        self.metrics = {}    # workload -> [metric] in the order first seen
        for run in runs:
            if run.ok:
                self._add(run)

    def _add(self, run):
        order = self.metrics.setdefault(run.workload.name, [])
        for metric, (value, unit) in run.rows.items():
            if metric not in order:
                order.append(metric)
            key = (run.workload.name, run.column.label, metric)
            stat = self.stats.setdefault(
                key, BackendStat([], unit, run.backend))
            stat.values.append((run.rep, value))

    def get(self, workload, label, metric):
        return self.stats.get((workload, label, metric))

    def failures(self, workload=None, label=None):
        return [r for r in self.runs if not r.ok
                and workload in (None, r.workload.name)
                and label in (None, r.column.label)]

    def backend(self, label):
        """The backend a column's processes reported."""
        for (_, lab, _), stat in self.stats.items():
            if lab == label:
                return stat.backend
        return ""

    def keys(self):
        """(workload, column, metric) in report order."""
        for workload in WORKLOADS + VIRT_WORKLOADS + QMP_WORKLOADS:
            for column in columns_of(workload.name):
                for metric in self.metrics.get(workload.name, []):
                    key = (workload.name, column.label, metric)
                    if key in self.stats:
                        yield key


def csv_number(value):
    """A value with six significant digits and no exponent."""
    if value == 0 or not math.isfinite(value):
        return "%g" % value
    digits = max(0, 5 - int(math.floor(math.log10(abs(value)))))
    text = "%.*f" % (digits, value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def library_of(label):
    return next(c.library for c in ALL_COLUMNS if c.label == label)


def write_csvs(results, out):
    head = ["workload", "library", "backend", "metric", "value", "unit"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for workload, label, metric in results.keys():
            s = results.get(workload, label, metric)
            w.writerow([workload, library_of(label), s.backend, metric,
                        csv_number(s.median), s.unit])
    with open(out / "results-all.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head + ["rep"])
        for workload, label, metric in results.keys():
            s = results.get(workload, label, metric)
            row = [workload, library_of(label), s.backend, metric]
            for rep, value in s.values:
                w.writerow(row + [csv_number(value), s.unit, rep])
            for name, value in (("min", s.lo), ("median", s.median),
                                ("max", s.hi)):
                w.writerow(row + [csv_number(value), s.unit, name])


def write_runs(runs, out):
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "library", "backend", "rep", "status",
                    "exit", "wall_s", "log"])
        for r in runs:
            w.writerow([r.workload.name, r.column.library,
                        r.backend or r.column.backend, r.rep,
                        "ok" if r.ok else "failed: " + r.why, r.status,
                        "%.3f" % r.wall, r.log.relative_to(out)])


# ---------------------------------------------------------------------------
# Ratios and verdicts.


def best_peer(results, workload, metric):
    """(label, median) of the best peer, or (None, None)."""
    have = [(label, results.get(workload, label, metric)) for label in PEERS
            if label in [c.label for c in columns_of(workload)]]
    have = [(label, s.median) for label, s in have if s is not None]
    if not have:
        return None, None
    unit = results.get(workload, have[0][0], metric).unit
    pick = max if higher_is_better(metric, unit) else min
    return pick(have, key=lambda lv: lv[1])


def ratio(results, workload, label, metric, against="best"):
    """rx's median over the best peer's (or libev's), or None."""
    mine = results.get(workload, label, metric)
    if against == "best":
        _, base = best_peer(results, workload, metric)
    else:
        other = results.get(workload, against, metric)
        base = other.median if other else None
    if mine is None or not base:
        return None
    return mine.median / base


@dataclass
class Verdict:
    target: Target
    column: str
    value: float       # what was compared with the bound (None: no data)
    met: bool
    note: str = ""

    def text(self):
        if self.value is None:
            return "MISSED (no data%s)" % (": " + self.note if self.note
                                          else "")
        shown = ("%.3gx" % self.value if self.target.against != "value"
                 else fmt(self.value))
        # A ratio that rounds onto the bound gets the digits that decide.
        if self.target.against != "value" and \
                float("%.3g" % self.value) == self.target.bound:
            shown = "%.4fx" % self.value
        word = "met" if self.met else "MISSED"
        return "%s (%s%s)" % (word, shown,
                              "; " + self.note if self.note else "")


def evaluate(results, target, label):
    """The verdict of one target on one column."""
    if target.against == "value":
        stat = results.get(target.workload, label, target.metric)
        value = None if stat is None else {
            "median": stat.median, "min": stat.lo, "max": stat.hi
        }[target.reduce]
    else:
        value = ratio(results, target.workload, label, target.metric,
                      target.against)
    failed = results.failures(target.workload, label)
    note = ("%d failed run%s" % (len(failed), "s" * (len(failed) != 1))
            if failed else "")
    if value is None:
        return Verdict(target, label, None, False, note)
    met = target.met(value)
    if target.no_failures and failed:
        met = False
    return Verdict(target, label, value, met, note)


def evaluate_micro(meds, target, label):
    """The verdict of a micro target, from bench/micro.py's medians (None:
    the micro benchmarks did not run)."""
    if meds is None:
        return None
    value = micro_table.target_value(meds, target, label)
    if value is None:
        return Verdict(target, label, None, False, "not in the micro run")
    return Verdict(target, label, value, target.met(value))


def all_verdicts(results, micro, virt):
    """The verdicts of every target that ran (the micro targets only when
    the micro benchmarks did, the virt targets only when bench/virt was
    built and asked for)."""
    meds = micro.medians if micro is not None else None
    verdicts = []
    ran = [w.name for w in WORKLOADS]
    for t in TARGETS:
        if t.bench == "peers" and t.workload not in ran:
            continue  # left out by --workload
        if t.bench == "virt" and not virt:
            continue
        if t.bench == "http":
            continue  # http_verdicts(): cells of bench/http
        for label in t.columns:
            v = (evaluate_micro(meds, t, label) if t.bench == "micro"
                 else evaluate(results, t, label))
            if v is not None:
                verdicts.append(v)
    return verdicts


# ---------------------------------------------------------------------------
# The report.


def sig3(x):
    return "%.0f" % x if abs(x) >= 100 else "%.3g" % x


def fmt(value):
    """A value for a table: three significant digits, k/M/G above 10^4."""
    if value is None:
        return "–"
    for above, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"),
                                 (1e4, 1e3, "k")):
        if abs(value) >= above:
            return sig3(value / scale) + suffix
    return sig3(value) if value != int(value) or abs(value) >= 100 \
        else "%d" % value


def command_output(cmd):
    """A command's stdout, or "" if it cannot run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def rx_version():
    """rx's version from meson.build, with the commit when git knows it."""
    version = "?"
    try:
        for line in (REPO / "meson.build").read_text().splitlines():
            if line.strip().startswith("version:"):
                version = line.split("'")[1]
                break
    except (OSError, IndexError):
        pass
    commit = command_output(["git", "-C", str(REPO), "rev-parse", "--short",
                             "HEAD"])
    return version + (" (commit %s)" % commit if commit else "")


def peer_versions():
    """{package: version} of the Debian packages of the peers (and of
    libvirt and GLib, bench/virt's, when installed)."""
    text = command_output(["dpkg-query", "-W", "-f=${Package} ${Version}\n",
                           "libev4", "libuv1", "libevent-2.1-7", "libzmq5",
                           "libvirt0", "libglib2.0-0", "qemu-system-x86",
                           "libjansson4"])
    return dict(line.split(" ", 1) for line in text.splitlines()
                if " " in line)


def host_facts(args, reps, wall, results, interrupted):
    versions = peer_versions()
    libs = ["rx %s" % rx_version()] + ["%s %s" % kv for kv in
                                        versions.items()]
    backends = ", ".join("%s: %s" % (c.label, results.backend(c.label)
                                     or "–") for c in ALL_COLUMNS
                         if c in COLUMNS or results.backend(c.label))
    return [
        "- Host: %s CPUs (%s), kernel %s" % (os.cpu_count(), cpu_model(),
                                             platform.release()),
        "- Date: %s" % datetime.datetime.now().astimezone()
        .strftime("%Y-%m-%d %H:%M %Z"),
        "- Runs: %d interleaved rep%s per cell, %s sizes; the tables show "
        "the median, [min–max] over the reps" % (
            reps, "s" * (reps != 1), "quick (--quick)" if args.quick
            else "full"),
        "- Libraries: %s" % "; ".join(libs),
        "- Backends: %s" % backends,
        "- Command: python3 %s" % " ".join(map(shlex.quote, sys.argv)),
        "- Wall time of the runs: %s%s" % (
            clock(wall), " (INTERRUPTED: only the runs done are shown)"
            if interrupted else ""),
        "- Data: [results.csv](results.csv) (medians), "
        "[results-all.csv](results-all.csv) (every rep, min, max), "
        "[runs.csv](runs.csv) (every process), logs in [logs/](logs/)",
    ]


def metric_row(results, workload, metric, verdicts):
    """One table row: the columns, the ratios, the targets, the verdicts."""
    unit = next(results.get(workload, c.label, metric).unit for c in COLUMNS
                if results.get(workload, c.label, metric))
    columns = columns_of(workload)
    cells = ["`%s` (%s, %s)" % (metric, unit, "higher is better"
                                if higher_is_better(metric, unit)
                                else "lower is better")]
    for column in columns:
        s = results.get(workload, column.label, metric)
        cells.append("–" if s is None else "%s [%s–%s]" % (
            fmt(s.median), fmt(s.lo), fmt(s.hi)))
    best, _ = best_peer(results, workload, metric)
    for label in rx_labels(workload):
        r = ratio(results, workload, label, metric)
        cells.append("–" if r is None else "%.3gx (%s)" % (r, best))
    mine = [v for v in verdicts if v.target.workload == workload
            and v.target.metric == metric]
    cells.append("<br>".join(dict.fromkeys(v.target.text() for v in mine))
                 or "–")
    cells.append("<br>".join(
        ("%s: " % v.column if len(v.target.columns) > 1
         or v.column != "rx io_uring" else "") + v.text()
        for v in mine) or "–")
    return "| " + " | ".join(cells) + " |"


def rx_labels(workload):
    """The rx columns of a workload, each of which gets a ratio column."""
    return [c.label for c in columns_of(workload) if c.label in RX_COLUMNS]


def workload_section(results, workload, verdicts, plots):
    lines = ["## %s" % workload.name, "", workload.about + ".", ""]
    metrics = results.metrics.get(workload.name, [])
    if plots and metrics:
        lines += ["![%s](plots/%s.png) ([svg](plots/%s.svg))"
                  % ((workload.name,) * 3), ""]
    if not metrics:
        lines += ["No results.", ""]
    else:
        head = (["metric"] + [c.label for c in columns_of(workload.name)]
                + ["%s / best peer" % label
                   for label in rx_labels(workload.name)]
                + ["target", "verdict"])
        lines += ["| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        lines += [metric_row(results, workload.name, m, verdicts)
                  for m in metrics]
        lines.append("")
    lines += workload_notes(results, workload)
    return lines


# Why a peer's timers may fire early: its clock, not a bug of its file.
EARLY_WHY = {
    "libuv": ": its clock counts whole milliseconds",
    "libevent": ": its default clock is CLOCK_MONOTONIC_COARSE, a kernel "
                "tick behind",
}


def log_link(run):
    """The run's log, relative to report.md."""
    return "logs/" + run.log.name


# The floor a column is measured against, beside the best peer: the echo
# server on plain liburing.
FLOOR = "liburing"


def floor_notes(results, workload):
    """The rx io_uring columns over the raw liburing server, per metric."""
    notes = []
    for metric in results.metrics.get(workload, []):
        if metric.startswith("client_"):
            continue  # the same client for every server
        base = results.get(workload, FLOOR, metric)
        if base is None or not base.median:
            continue
        parts = []
        for label in ("rx io_uring ops", "rx io_uring"):
            mine = results.get(workload, label, metric)
            if mine is not None:
                parts.append("%s %.3gx" % (label, mine.median / base.median))
        if parts:
            notes.append("- `%s` over %s (rx's cost over the same "
                         "requests on plain liburing): %s"
                         % (metric, FLOOR, ", ".join(parts)))
    return notes


def workload_notes(results, workload):
    """Failed runs of the workload, the ratios to the liburing floor, and
    early timers of the peers."""
    notes = ["- %s rep %d failed: %s ([log](%s))"
             % (r.column.label, r.rep, r.why, log_link(r))
             for r in results.failures(workload.name)]
    notes += floor_notes(results, workload.name)
    for label in PEERS:
        s = results.get(workload.name, label, "early")
        if s is not None and s.hi > 0:
            notes.append("- %s fired up to %s timers early%s (reported, no "
                         "target)" % (label, fmt(s.hi),
                                      EARLY_WHY.get(label, "")))
    return notes + [""] if notes else []


# ---------------------------------------------------------------------------
# bench/virt: libvirt's event API, rx against libvirt's default loop.


def verdict_cells(workload, metric, verdicts):
    """The target and verdict cells of a table row."""
    mine = [v for v in verdicts if v.target.workload == workload
            and v.target.metric == metric]
    return [
        "<br>".join(dict.fromkeys(v.target.text() for v in mine)) or "–",
        "<br>".join(("%s: " % v.column if len(v.target.columns) > 1
                     else "") + v.text() for v in mine) or "–"]


def virt_metric_row(results, workload, metric, verdicts):
    """One row of a bench/virt table: the columns, rx over libvirt, the
    targets and verdicts."""
    unit = next(results.get(workload, c.label, metric).unit
                for c in VIRT_COLUMNS
                if results.get(workload, c.label, metric))
    cells = ["`%s` (%s, %s)" % (metric, unit, "higher is better"
                                if higher_is_better(metric, unit)
                                else "lower is better")]
    for column in VIRT_COLUMNS:
        s = results.get(workload, column.label, metric)
        cells.append("–" if s is None else "%s [%s–%s]" % (
            fmt(s.median), fmt(s.lo), fmt(s.hi)))
    for column in VIRT_COLUMNS:
        if column.library == "rx":
            r = ratio(results, workload, column.label, metric, "libvirt")
            cells.append("–" if r is None else "%.3gx" % r)
    return "| " + " | ".join(cells + verdict_cells(workload, metric,
                                                    verdicts)) + " |"


def virt_notes(results, workload):
    """Failed runs, and libvirt's early fires."""
    notes = ["- %s rep %d failed: %s ([log](%s))"
             % (r.column.label, r.rep, r.why, log_link(r))
             for r in results.failures(workload.name)]
    early = results.get(workload.name, "libvirt", "early")
    if early is not None and early.hi > 0:
        worst = results.get(workload.name, "libvirt", "early_max_us")
        notes.append(
            "- libvirt fired up to %s timeouts early in a rep%s (reported, "
            "no target): GLib starts a repeating timeout's next period "
            "from the time its loop read before the dispatch, not from "
            "when the callback ran, so a callback that runs late in a long "
            "dispatch is followed by one less than a period after it"
            % (fmt(early.hi), ", by up to %s us" % fmt(worst.hi)
               if worst is not None else ""))
    return notes + [""] if notes else []


def virt_section(results, verdicts, plots):
    lines = ["## libvirt's event API", "",
             "bench/virt: libvirt's six event functions called through "
             "libvirt's public API (virEventAddHandle(), "
             "virEventUpdateHandle(), ...) with 1,000 handles and 1,000 "
             "timeouts registered, on rx (rx_libvirt_register(), the loop "
             "run by rx_run(); virt_rx) and on libvirt's default "
             "implementation (virEventRegisterDefaultImpl(), run by "
             "virEventRunDefaultImpl(): GLib's main loop in libvirt 9.0; "
             "virt_libvirt), each in a process of its own. Ratios are "
             "rx's median over libvirt's, from the same run; the targets "
             "are checked on rx io_uring.", ""]
    for workload in VIRT_WORKLOADS:
        lines += ["### %s" % workload.name, "", workload.about + ".", ""]
        metrics = results.metrics.get(workload.name, [])
        if plots and metrics:
            lines += ["![%s](plots/%s.png) ([svg](plots/%s.svg))"
                      % ((workload.name,) * 3), ""]
        if not metrics:
            lines += ["No results.", ""]
        else:
            head = (["metric"] + [c.label for c in VIRT_COLUMNS]
                    + ["%s / libvirt" % c.label for c in VIRT_COLUMNS
                       if c.library == "rx"]
                    + ["target", "verdict"])
            lines += ["| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            lines += [virt_metric_row(results, workload.name, m, verdicts)
                      for m in metrics]
            lines.append("")
        lines += virt_notes(results, workload)
    return lines


# ---------------------------------------------------------------------------
# bench/qmp: the QMP client against a real QEMU, rx against a blocking one.


def qmp_metric_row(results, workload, metric):
    """One row of the bench/qmp table: the columns, rx over the blocking
    client."""
    unit = next(results.get(workload, c.label, metric).unit
                for c in QMP_COLUMNS
                if results.get(workload, c.label, metric))
    cells = ["`%s` (%s, %s)" % (metric, unit, "higher is better"
                                if higher_is_better(metric, unit)
                                else "lower is better")]
    for column in QMP_COLUMNS:
        s = results.get(workload, column.label, metric)
        cells.append("–" if s is None else "%s [%s–%s]" % (
            fmt(s.median), fmt(s.lo), fmt(s.hi)))
    for column in QMP_COLUMNS:
        if column.library == "rx":
            r = ratio(results, workload, column.label, metric, "blocking C")
            cells.append("–" if r is None else "%.3gx" % r)
    return "| " + " | ".join(cells) + " |"


def qmp_section(results, plots, skipped):
    """The section of bench/qmp, or the line that says why it was
    skipped."""
    lines = ["## QMP: the client against QEMU", ""]
    if skipped:
        return lines + ["Skipped: %s." % skipped, ""]
    lines += ["bench/qmp: librx-qmp (qmp_rx) and a plain blocking client "
              "(qmp_block, the floor: what any client must spend to write "
              "the commands and parse the answers and events with jansson) "
              "against a real QEMU, each process starting its own. Ratios "
              "are rx's median over the blocking client's, from the same "
              "run; there is no target.", ""]
    for workload in QMP_WORKLOADS:
        lines += ["### %s" % workload.name, "", workload.about + ".", ""]
        metrics = results.metrics.get(workload.name, [])
        if plots and metrics:
            lines += ["![%s](plots/%s.png) ([svg](plots/%s.svg))"
                      % ((workload.name,) * 3), ""]
        if not metrics:
            lines += ["No results.", ""]
        else:
            head = (["metric"] + [c.label for c in QMP_COLUMNS]
                    + ["%s / blocking C" % c.label for c in QMP_COLUMNS
                       if c.library == "rx"])
            lines += ["| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            lines += [qmp_metric_row(results, workload.name, m)
                      for m in metrics]
            lines.append("")
        lines += ["- %s rep %d failed: %s ([log](%s))"
                  % (r.column.label, r.rep, r.why, log_link(r))
                  for r in results.failures(workload.name)]
        lines.append("")
    return lines


def summary_section(results, verdicts, missing, http=None):
    failed = results.failures()
    http_failed = http.failures() if http is not None else []
    missed = [v for v in verdicts if not v.met]
    lines = ["## Summary", "",
             "Targets (on rx io_uring, the ops targets on rx io_uring ops, "
             "the HTTP targets on the cells they name; "
             "ratios of medians of the same run): "
             "%d met, %d missed. Failed runs: %d."
             % (len(verdicts) - len(missed), len(missed),
                len(failed) + len(http_failed)), ""]
    if missing:
        lines += ["Not built (cells left empty): %s." % ", ".join(missing),
                  ""]
    lines += ["### Missed targets", ""]
    lines += ["- %s%s `%s` on %s: %s, target %s"
              % ("micro " if v.target.bench == "micro" else "",
                 v.target.workload, v.target.metric, v.column, v.text(),
                 v.target.text()) for v in missed] or ["None."]
    lines.append("")
    if failed:
        lines += ["### Failed runs", ""]
        lines += ["- %s on %s, rep %d: %s ([log](%s))"
                  % (r.workload.name, r.column.label, r.rep, r.why,
                     log_link(r)) for r in failed]
        lines.append("")
    if http_failed:
        lines += ["### Failed HTTP runs", ""]
        lines += ["- %s, depth %d, rep %d: %s ([log](logs/%s))"
                  % (r.cell.label, r.cell.depth, r.rep, r.why, r.log.name)
                  for r in http_failed]
        lines.append("")
    return lines


def http_verdicts(http):
    """The verdicts of bench/http's targets (http: its Section, or None)."""
    if http is None:
        return []
    return [Verdict(t, label, value, met, note) for t, label, value, met,
            note in http_bench.verdicts(http)]


def write_report(out, facts, results, missing, plots, micro, virt,
                 qmp=None, http=None, http_plots=False):
    """Writes report.md; returns the verdicts of the targets. virt: whether
    bench/virt's workloads ran; qmp: None (--qmp not given), "" (bench/qmp
    ran) or why it was skipped; http: bench/http's Section, if it ran."""
    verdicts = all_verdicts(results, micro, virt) + http_verdicts(http)
    lines = ["# Peer benchmark: rx, libev, libuv, libevent; the event bus, "
             "ZeroMQ, a mutex+condvar queue%s%s"
             % ("; libvirt's event API" if virt else "",
                "; HTTP: rx-http, nginx, h2o, rx-load, wrk, h2load"
                if http is not None else ""), ""]
    lines += facts + [""]
    lines += ["Ratios are rx's median over the best peer's median (the "
              "highest for a higher-is-better metric, the lowest otherwise), "
              "from the same run. The targets are checked on rx io_uring "
              "(the ops targets on rx io_uring ops); rx epoll's ratios are "
              "shown for information. The ops columns are rx's completion "
              "operations (rx_op_*) running the same workload; liburing is "
              "the same requests on plain liburing with rx's ring flags, "
              "the floor for rx's ops; neither is a peer.", ""]
    lines += summary_section(results, verdicts, missing, http)
    for workload in WORKLOADS:
        lines += workload_section(results, workload, verdicts, plots)
    if virt:
        lines += virt_section(results, verdicts, plots)
    if qmp is not None:
        lines += qmp_section(results, plots, qmp)
    if http is not None:
        lines += http_bench.report_section(
            http, [(v.target, v.column, v.value, v.met, v.note)
                   for v in verdicts if v.target.bench == "http"],
            http_plots)
    if micro is not None:
        lines += micro_section(micro, verdicts)
    (out / "report.md").write_text("\n".join(lines))
    return verdicts


# ---------------------------------------------------------------------------
# The plots, with gnuplot.

COLORS = {"rx io_uring": "#1f5fa8", "rx epoll": "#6fa8dc",
          "rx io_uring ops": "#163f73", "rx epoll ops": "#3d7fb8",
          "liburing": "#7f7f7f",
          "libev": "#c0504d", "libuv": "#4f9a48", "libevent": "#e0902f",
          "zeromq": "#8064a2", "mutex+condvar": "#4bacc6",
          "libvirt": "#b0588f", "blocking C": "#7f7f7f"}


def gnuplot_terminal():
    """"pngcairo" or "png", or None when gnuplot is not installed."""
    if not shutil.which("gnuplot"):
        return None
    terminals = command_output(["gnuplot", "-e", "set terminal"])
    if not terminals:  # some builds print the list on stderr
        terminals = subprocess.run(["gnuplot", "-e", "set terminal"],
                                   capture_output=True, text=True).stderr
    return "pngcairo" if "pngcairo" in terminals else "png"


def plot_data(results, workload, metric):
    """gnuplot data rows: x, median, min, max, color and the median as the
    report writes it, for every column with results."""
    rows = []
    for x, column in enumerate(columns_of(workload)):
        s = results.get(workload, column.label, metric)
        if s is not None:
            rows.append('%d %r %r %r 0x%s "%s"' % (
                x, s.median, s.lo, s.hi, COLORS[column.label][1:],
                fmt(s.median)))
    return "\n".join(rows) + "\n"


def plot_script(results, workload, terminal, path):
    """The gnuplot commands of one workload's plot (terminal: PNG or SVG)."""
    metrics = results.metrics.get(workload, [])
    cols = min(len(metrics), 4)
    rows = math.ceil(len(metrics) / cols)
    size = (max(380 * cols, 520), 340 * rows + 30)
    font = "font 'Sans,9'" if terminal != "png" else ""
    lines = ["set terminal %s noenhanced background rgb 'white' "
             "size %d,%d %s" % (terminal, *size, font),
             "set output '%s'" % path,
             "set style fill solid 0.85 border -1",
             "set boxwidth 0.7", "set key off", "set grid ytics",
             "set bmargin 4",
             "set xrange [-0.6:%g]" % (len(columns_of(workload)) - 0.4),
             "set xtics (%s) scale 0" % ", ".join(
                 '"%s" %d' % (c.label.replace(" ", "\\n"), x)
                 for x, c in enumerate(columns_of(workload))),
             "set multiplot layout %d,%d title '%s: median over the reps, "
             "error bars min to max'" % (rows, cols, workload)]
    for i, metric in enumerate(metrics):
        lines += plot_panel(results, workload, metric, i)
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def plot_panel(results, workload, metric, index):
    """One metric's panel: a bar per column, min-max bars, median labels."""
    stats = [s for s in (results.get(workload, c.label, metric)
                         for c in COLUMNS) if s is not None]
    unit = stats[0].unit
    top = max(s.hi for s in stats) or 1.0
    better = "higher" if higher_is_better(metric, unit) else "lower"
    return [
        "$d%d << EOD" % index, plot_data(results, workload, metric) + "EOD",
        "set title '%s (%s is better)'" % (metric, better),
        "set ylabel '%s'" % unit,
        # SI prefixes on the axis for large values: 15M rather than 1.5e7.
        "set format y '%s'" % ("%.1s%c" if top >= 1e4 else "%g"),
        "set yrange [0:%r]" % (top * 1.2),
        "plot $d%d using 1:2:5 with boxes lc rgb variable, "
        # min to max as a capped vector (yerrorbars would mark the median)
        "'' using 1:3:(0):($4-$3) with vectors heads size screen 0.008,90 "
        "lw 1.2 lc rgb 'black', "
        "'' using 1:4:6 with labels offset 0,0.8 font ',8'" % index,
    ]


def make_plots(results, out):
    """One PNG and one SVG per workload; False when gnuplot is missing."""
    terminal = gnuplot_terminal()
    if terminal is None:
        progress("gnuplot is not installed (package gnuplot-nox): no plots")
        return False
    plotdir = out / "plots"
    plotdir.mkdir(exist_ok=True)
    for workload in WORKLOADS + VIRT_WORKLOADS + QMP_WORKLOADS:
        if not results.metrics.get(workload.name):
            continue
        for term, ext in ((terminal, "png"), ("svg", "svg")):
            target = plotdir / ("%s.%s" % (workload.name, ext))
            script = plot_script(results, workload.name, term, target)
            gp = plotdir / ("%s.%s.gp" % (workload.name, ext))
            gp.write_text(script)
            done = subprocess.run(["gnuplot", str(gp)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                progress("gnuplot failed on %s:\n%s" % (gp, done.stderr))
    return True


# ---------------------------------------------------------------------------
# The micro benchmarks: bench_rx and bench/run.sh.


# google-benchmark's time per benchmark with --quick (shorter, noisier).
QUICK_MIN_TIME = "--benchmark_min_time=0.05"


@dataclass
class Micro:
    failed: list = field(default_factory=list)   # what failed
    table: str = ""                              # run.sh's stdout
    medians: dict = field(default_factory=dict)  # bench/micro.py's medians


def run_micro(builddir, out, quick):
    """bench/run.sh: bench_rx on both backends, interleaved (rx's own data
    structures: the timer wheel, the MPSC queue, the loop); its table and
    JSON go to <out>/micro. --quick makes one
    pass with google-benchmark's shorter minimum time and skips the syscall
    counts (strace, perf), so that `make bench QUICK=1` stays under two
    minutes."""
    micro, outdir = Micro(), out / "micro"
    outdir.mkdir(exist_ok=True)
    env = {"RX_BENCH_REPS": "1" if quick else "3"}
    cmd = ["sh", str(REPO / "bench" / "run.sh"), str(builddir)]
    if quick:
        cmd.append(QUICK_MIN_TIME)
        env["RX_BENCH_SYSCALLS"] = "0"
    progress("micro: %s sh bench/run.sh %s ..." % (
        " ".join("%s=%s" % kv for kv in env.items()), builddir), end=" ")
    run_logged(cmd, env, outdir / "run.txt", outdir / "run.log", micro)
    micro.table = (outdir / "run.txt").read_text()
    for path in sorted((builddir / "bench" / "results").glob("*")):
        shutil.copy(path, outdir)
    micro.medians = micro_table.medians(str(outdir))
    return micro


def run_logged(cmd, env, stdout_path, stderr_path, micro):
    """Runs cmd with env added, its output to files; notes a failure."""
    start = time.monotonic()
    with open(stdout_path, "w") as so, open(stderr_path, "a") as se:
        try:
            status = subprocess.run(cmd, env={**os.environ, **env},
                                    stdout=so, stderr=se).returncode
        except OSError as e:
            status = 127
            se.write("%s\n" % e)
    wall = time.monotonic() - start
    if status == 0:
        progress("%.1f s" % wall)
        return
    why = "%s: %s (see %s)" % (" ".join(cmd), describe_status(status),
                               stderr_path.name)
    progress("%.1f s FAILED: %s" % (wall, describe_status(status)))
    micro.failed.append(why)


def micro_section(micro, verdicts):
    lines = ["## Micro benchmarks", "",
             "google-benchmark runs of rx's own data structures and paths "
             "(bench_rx, on io_uring and on epoll; rx only, the other "
             "libraries run in the workloads above), by bench/run.sh: its "
             "table below ([run.txt](micro/run.txt)), the JSON and console "
             "output of every run in [micro/](micro/) (rx-io_uring.N.json, "
             "rx-epoll.N.json).", ""]
    mine = [v for v in verdicts if v.target.bench == "micro"]
    if mine:
        lines += ["| benchmark | metric | target | verdict |",
                  "|---|---|---|---|"]
        lines += ["| %s | `%s` | %s | %s: %s |"
                  % (v.target.workload, v.target.metric, v.target.text(),
                     v.column, v.text()) for v in mine]
        lines.append("")
    lines += ["- FAILED: %s" % why for why in micro.failed]
    if micro.failed:
        lines.append("")
    if micro.table.strip():
        lines += ["```", micro.table.rstrip(), "```", ""]
    return lines


# ---------------------------------------------------------------------------
# Putting it together.


def parse_args():
    p = argparse.ArgumentParser(
        description="Runs the peer benchmark (bench/peers) and writes "
                    "results.csv, results-all.csv, report.md and plots.")
    p.add_argument("--bin", required=True, type=Path,
                   help="the directory of peer_rx, peer_libev, ... "
                        "(<builddir>/bench/peers)")
    p.add_argument("--out", required=True, type=Path,
                   help="the output directory (created)")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes and %d reps" % QUICK_REPS)
    p.add_argument("--reps", type=int,
                   help="reps per cell (default %d, --quick %d)"
                        % (DEFAULT_REPS, QUICK_REPS))
    p.add_argument("--workload", action="append", metavar="NAME",
                   choices=[w.name for w in
                            WORKLOADS + VIRT_WORKLOADS + QMP_WORKLOADS],
                   help="run only this workload (may be repeated)")
    p.add_argument("--micro", type=Path, metavar="BUILDDIR",
                   help="also run the google-benchmark micro benchmarks of "
                        "BUILDDIR/bench")
    p.add_argument("--virt", type=Path, metavar="DIR",
                   help="also run bench/virt's workloads (libvirt's event "
                        "API on rx and on libvirt's loop), virt_rx and "
                        "virt_libvirt in DIR (<builddir>/bench/virt)")
    p.add_argument("--qmp", type=Path, metavar="DIR",
                   help="also run bench/qmp's workload (the QMP client "
                        "against a real QEMU, on rx and as a blocking "
                        "client), qmp_rx and qmp_block in DIR "
                        "(<builddir>/bench/qmp)")
    p.add_argument("--http", type=Path, metavar="BUILDDIR",
                   help="also run bench/http (rx-http and rx-load of "
                        "BUILDDIR/examples against nginx, h2o, wrk and "
                        "h2load)")
    args = p.parse_args()
    if args.reps is not None and args.reps < 1:
        p.error("--reps must be at least 1")
    if not args.bin.is_dir():
        p.error("--bin %s is not a directory" % args.bin)
    if args.micro is not None and not args.micro.is_dir():
        p.error("--micro %s is not a directory" % args.micro)
    return args


def present_columns(bindir):
    """The columns with an executable there, the (workload, column label)
    cells that have theirs, and the missing executables."""
    cells, wanted, present = set(), set(), set()
    for w in WORKLOADS:
        for c in columns_of(w.name):
            exe = exe_of(w, c)
            wanted.add(exe)
            if os.access(bindir / exe, os.X_OK):
                cells.add((w.name, c.label))
                present.add(exe)
    have = [c for c in COLUMNS if any(lab == c.label for _, lab in cells)]
    return have, cells, sorted(wanted - present)


def virt_columns(virtdir):
    """bench/virt's columns whose executable is in virtdir, and the missing
    executables."""
    have = [c for c in VIRT_COLUMNS if os.access(virtdir / c.exe, os.X_OK)]
    missing = sorted({c.exe for c in VIRT_COLUMNS} - {c.exe for c in have})
    return have, missing


def virt_suite(virtdir, missing):
    """bench/virt's suite, or None (and why, in missing) when its
    executables were not built: libvirt's development files were not
    installed, or --virt was not given."""
    if virtdir is None:
        return None
    have, gone = virt_columns(virtdir.resolve())
    if gone:
        progress("%s missing from %s (libvirt-dev not installed?): no "
                 "libvirt section" % (" and ".join(gone), virtdir))
        missing += gone
        return None
    return Suite(VIRT_WORKLOADS, have, virtdir.resolve())


def qmp_suite(qmpdir, missing):
    """bench/qmp's suite and "", or None and why it is skipped (None, None
    when --qmp was not given): QEMU is not installed, or the executables
    were not built (jansson's development files were not installed)."""
    if qmpdir is None:
        return None, None
    if not shutil.which(QEMU):
        why = ("%s is not installed (Debian: qemu-system-x86; "
               "scripts/deps.sh installs it as root)" % QEMU)
        progress("bench/qmp skipped: " + why)
        return None, why
    qmpdir = qmpdir.resolve()
    have = [c for c in QMP_COLUMNS if os.access(qmpdir / c.exe, os.X_OK)]
    gone = sorted({c.exe for c in QMP_COLUMNS} - {c.exe for c in have})
    if gone:
        why = ("%s not built in %s (libjansson-dev not installed?)"
               % (" and ".join(gone), qmpdir))
        progress("bench/qmp skipped: " + why)
        missing += gone
        return None, why
    return Suite(QMP_WORKLOADS, have, qmpdir), ""


def fresh_outdir(out):
    """Makes <out> and clears what an earlier run of this script left."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "plots", "micro"):
        shutil.rmtree(out / sub, ignore_errors=True)
    for name in ("results.csv", "results-all.csv", "runs.csv", "report.md"):
        (out / name).unlink(missing_ok=True)
    (out / "logs").mkdir()


def main():
    args = parse_args()
    if args.workload:
        WORKLOADS[:] = [w for w in WORKLOADS if w.name in args.workload]
        VIRT_WORKLOADS[:] = [w for w in VIRT_WORKLOADS
                             if w.name in args.workload]
        QMP_WORKLOADS[:] = [w for w in QMP_WORKLOADS
                            if w.name in args.workload]
    reps = args.reps or (QUICK_REPS if args.quick else DEFAULT_REPS)
    bindir, out = args.bin.resolve(), args.out.resolve()
    columns, cells, missing = present_columns(bindir)
    virt = virt_suite(args.virt, missing) if VIRT_WORKLOADS else None
    qmp, qmp_skipped = (qmp_suite(args.qmp, missing) if QMP_WORKLOADS
                        else (None, None))
    if not columns and (WORKLOADS or (virt is None and qmp is None
                                      and not qmp_skipped)):
        progress("%s: no peer_* or bus_* executables in %s"
                 % (sys.argv[0], bindir))
        return 2
    for exe in missing:
        progress("%s is missing from %s: its cells stay empty" % (exe, bindir))
    suites = [Suite(WORKLOADS, columns, bindir, cells)]
    if virt is not None:
        suites.append(virt)
    if qmp is not None:
        suites.append(qmp)
    fresh_outdir(out)

    began, runs, interrupted, http = time.monotonic(), [], False, None
    try:
        run_all(suites, out / "logs", reps, args.quick, runs)
        if args.http is not None:
            http = http_bench.Section([], {}, [], 0, 0, args.quick)
            http = http_bench.run_section(args.http.resolve(), out / "logs",
                                          args.quick, args.reps,
                                          section=http)
    except KeyboardInterrupt:
        interrupted = True
        progress("\ninterrupted: reporting the %d runs done"
                 % (len(runs) + (len(http.runs) if http else 0)))
    wall = time.monotonic() - began
    results = Results(runs)
    write_csvs(results, out)
    write_runs(runs, out)
    if http is not None:
        http_bench.append_csvs(http, out)
    plots = make_plots(results, out)
    http_plots = plots and http is not None and \
        http_bench.make_plots(http, out)
    micro = (run_micro(args.micro.resolve(), out, args.quick)
             if args.micro is not None and not interrupted else None)
    facts = host_facts(args, reps, wall, results, interrupted)
    verdicts = write_report(out, facts, results, missing, plots, micro,
                            virt is not None, qmp_skipped, http,
                            http_plots)

    failed = results.failures() + (http.failures() if http else [])
    missed = sum(not v.met for v in verdicts)
    progress("done in %s: %d runs, %d failed; targets %d met, %d missed; "
             "report: %s" % (clock(time.monotonic() - began),
                             len(runs) + (len(http.runs) if http else 0),
                             len(failed), len(verdicts) - missed, missed,
                             out / "report.md"))
    if interrupted:
        return 130
    return 1 if failed or (micro and micro.failed) else 0


if __name__ == "__main__":
    sys.exit(main())
