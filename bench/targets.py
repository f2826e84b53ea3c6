"""bench/targets.py - the project's benchmark targets, in one table.

Every target rx's benchmarks check is a row of TARGETS: the workload, the
metric, what rx is compared with, the bound, and which benchmark measures it
("peers": bench/peers, run by bench/peers/run.py; "virt": bench/virt,
libvirt's event API on rx and on libvirt's default loop, run by
bench/peers/run.py --virt; "micro": rx's own google-benchmark runs,
bench_rx by bench/run.sh, read by bench/micro.py; "http": bench/http,
rx-http against nginx and h2o and rx-load against wrk and h2load, run by
bench/http/http_bench.py, whose targets compare a "server + client" cell
with another).
bench/peers/run.py checks them all and writes the verdicts into
build/bench/report.md; bench/micro.py checks the "micro" rows in its own
table too. docs/benchmarks.md explains them.

A target is checked on the column "rx io_uring" unless it names others (the
completion-operation targets: "rx io_uring ops"); rx epoll's ratios are
shown for information.
"""

from dataclasses import dataclass

RX_COLUMNS = ("rx io_uring", "rx epoll")
# rx's completion operations on io_uring, where the ops targets are checked.
OPS = ("rx io_uring ops",)


@dataclass(frozen=True)
class Target:
    workload: str
    metric: str
    against: str       # "best": rx / the best peer; another column
                       # ("libev", "liburing", ...): rx / that column;
                       # "value": rx's own value, reduced over the reps
    op: str            # ">=" or "<="
    bound: float
    columns: tuple = ("rx io_uring",)
    reduce: str = "median"   # for "value": "median", "min" or "max"
    no_failures: bool = False  # a failed run of the column misses it
    label: str = ""    # the report's words for it, if not the default
    bench: str = "peers"     # "peers", "virt", "micro" or "http"

    def text(self):
        if self.label:
            return self.label
        what = {"best": "rx / best peer", "value": "rx"}.get(
            self.against, "rx / " + self.against)
        text = "%s %s %g" % (what, "≥" if self.op == ">=" else "≤",
                             self.bound)
        if self.against == "value" and self.reduce != "median":
            text += " in every rep"
        return text + (", no failed run" if self.no_failures else "")

    def met(self, value):
        return value >= self.bound if self.op == ">=" else \
            value <= self.bound


TARGETS = [
    Target("loop_count", "iterations_per_s", "best", ">=", 5.0),
    Target("million_timers", "start_ns", "best", "<=", 0.5),
    Target("million_timers", "cpu_per_fire_ns", "best", "<=", 0.5),
    Target("million_timers", "rss_per_timer_b", "libev", "<=", 1.0),
    # A correctness check on both backends: no timer fires early, ever.
    Target("million_timers", "early", "value", "<=", 0,
           RX_COLUMNS, reduce="max",
           label="0 in every rep (correctness: no timer fires early)"),
    Target("timer_start_10000", "start_ns", "libev", "<=", 0.5),
    Target("timer_start_100000", "start_ns", "libev", "<=", 0.5),
    Target("timer_churn", "rearm_ns", "best", "<=", 0.5),
    Target("pipe_chain_1000", "setup_ns_per_watcher", "best", "<=", 0.2),
    Target("pipe_chain_1000", "run_us", "best", "<=", 1.0),
    Target("pipe_chain_9000", "setup_ns_per_watcher", "best", "<=", 0.2),
    Target("pipe_chain_9000", "run_us", "best", "<=", 1.0),
    Target("async_pummel", "sends_per_s", "best", ">=", 1.0,
           no_failures=True),
    Target("async_pummel", "callbacks", "value", ">=", 1, reduce="min",
           no_failures=True,
           label="≥ 1 in every rep, no failed run (nothing lost)"),
    Target("async_send_pending", "send_ns", "libuv", "<=", 1.0),
    Target("loop_pingpong", "round_trips_per_s", "libuv", ">=", 2.0),
    Target("loop_pingpong", "round_trips_per_s", "libev", ">=", 1.0),
    Target("ping_pongs", "round_trips_per_s", "best", ">=", 1.0),
    # Completion operations (issue 14): the same workloads on rx_op_*
    # (bench/peers, --ops), against the peers' readiness servers of the
    # same run, and against an echo server on plain liburing with rx's ring
    # flags (the cost of rx's abstraction).
    Target("ping_pongs", "round_trips_per_s", "best", ">=", 1.5, OPS,
           label="rx ops / best peer ≥ 1.5"),
    Target("ping_pongs", "server_cpu_us_per_trip", "best", "<=", 0.5, OPS,
           label="rx ops / best peer ≤ 0.5"),
    Target("ping_pongs", "server_syscalls_per_trip", "value", "<=", 0.1, OPS,
           label="rx ops ≤ 0.1 syscalls per round trip (server thread)"),
    Target("ping_pongs", "round_trips_per_s", "liburing", ">=", 0.95, OPS,
           label="rx ops / liburing ≥ 0.95 (within 5% of plain liburing)"),
    Target("pipe_chain_1000", "run_us", "best", "<=", 0.5, OPS,
           label="rx ops / best peer ≤ 0.5 (2x faster)"),
    Target("pipe_chain_9000", "run_us", "best", "<=", 0.5, OPS,
           label="rx ops / best peer ≤ 0.5 (2x faster)"),
    # The event bus (issue 16): 4 producers, 3 filtered subscribers, against
    # ZeroMQ's inproc PUB/SUB and a mutex+condvar queue. Its latency at
    # 100,000 events/s is reported for all, with no bound.
    Target("bus_4x3", "events_per_s", "best", ">=", 2.0),
    # rx's task queue alone: no peer has one (a peer's is a mutex queue its
    # user writes), so the bound is a rate.
    Target("post_throughput/1", "tasks_per_s", "value", ">=", 20.0,
           label="rx ≥ 20M tasks/s", bench="micro"),
    # libvirt's event API (issue 18): rx registered with
    # rx_libvirt_register() against virEventRegisterDefaultImpl(), both
    # called through libvirt's public functions with 1,000 handles and
    # 1,000 timeouts registered. The calls alone, and with the work each
    # loop deferred to its next iteration.
    Target("virt_update", "update_handle_ns", "libvirt", "<=", 0.1,
           bench="virt"),
    Target("virt_update", "update_timeout_ns", "libvirt", "<=", 0.1,
           bench="virt"),
    Target("virt_update", "update_handle_loop_ns", "libvirt", "<=", 0.1,
           bench="virt"),
    Target("virt_update", "update_timeout_loop_ns", "libvirt", "<=", 0.1,
           bench="virt"),
    # A correctness check on both backends: no libvirt timeout fires before
    # its period has passed since the previous fire (libvirt's own loop's
    # early fires are reported, with no target).
    Target("virt_timers", "early", "value", "<=", 0,
           RX_COLUMNS, reduce="max",
           label="0 in every rep (correctness: no timeout fires early)",
           bench="virt"),
    # HTTP (issue 15), bench/http: a target names the cell it checks and
    # the cell it is compared with, each "server + client", at depth 1
    # (http_p1, no pipelining) or 16 (http_p16); 256 connections.
] + [t for depth in (1, 16) for t in (
    Target("http_p%d" % depth, "requests_per_s", "nginx + wrk", ">=", 1.3,
           ("rx-http io_uring + wrk",), bench="http",
           label="rx-http io_uring / nginx ≥ 1.3 (wrk)"),
    Target("http_p%d" % depth, "requests_per_s", "h2o + wrk", ">=", 1.0,
           ("rx-http io_uring + wrk",), bench="http",
           label="rx-http io_uring / h2o ≥ 1 (wrk)"),
    Target("http_p%d" % depth, "requests_per_s", "nginx + wrk", ">=", 1.0,
           ("nginx + rx-load",), bench="http",
           label="rx-load / wrk ≥ 1 (against nginx)"),
    Target("http_p%d" % depth, "requests_per_s", "nginx + h2load", ">=", 1.5,
           ("nginx + rx-load",), bench="http",
           label="rx-load / h2load ≥ 1.5 (against nginx)"),
    Target("http_p%d" % depth, "client_cpu_us_per_req", "nginx + wrk", "<=",
           1.0, ("nginx + rx-load",), bench="http",
           label="rx-load / wrk ≤ 1, client CPU per request (against "
           "nginx)"),
)]
