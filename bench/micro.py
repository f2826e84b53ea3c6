#!/usr/bin/env python3
"""bench/micro.py - the table of rx's micro benchmarks (bench_rx, run by
bench/run.sh on io_uring and on epoll).

    python3 bench/micro.py <resultsdir> <passes> <strace round trips>

reads <resultsdir>/rx-io_uring.N.json and rx-epoll.N.json (google-benchmark
JSON, one file per pass) and the syscall counts of run.sh (strace-*.txt,
perf-*.txt), and prints one table: the median over the passes of every
benchmark on each backend, its counters, the "micro" targets of
bench/targets.py with their verdicts, and the syscalls per loop_pingpong
round trip. The comparisons with other libraries are bench/peers' (run.py).

Exit status: 0, or 1 if a benchmark failed or was skipped with an error; a
missed target is reported in the table, and fails only with
RX_BENCH_STRICT=1. bench/peers/run.py imports medians() to put the micro
targets' verdicts in its report.
"""

import glob
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from targets import TARGETS  # noqa: E402

RUNS = [("rx io_uring", "rx-io_uring"), ("rx epoll", "rx-epoll")]
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
# The counter that holds a cross-thread workload's item count.
ITEMS = {"async_pummel": "sends", "post_throughput/1": "tasks",
         "post_throughput/2": "tasks", "loop_pingpong": "round_trips",
         "loop_pingpong_eventfd": "round_trips"}
MICRO_TARGETS = [t for t in TARGETS if t.bench == "micro"]


def base_name(run_name):
    # million_timers/iterations:1/process_time/real_time -> million_timers
    return re.sub(r"/(iterations|repeats|min_time|real_time|manual_time|"
                  r"process_time)(:[^/]*)?", "", run_name)


def load(out, stem):
    """(context, {benchmark: [one entry per pass]}, errors)."""
    ctx, res, errors = None, {}, []
    paths = sorted(glob.glob(os.path.join(out, stem + ".[0-9]*.json")),
                   key=lambda p: int(p.rsplit(".", 2)[1]))
    for path in paths:
        if os.path.getsize(path) == 0:
            continue  # a filter that matched nothing
        with open(path) as f:
            doc = json.load(f)
        ctx = ctx or doc.get("context", {})
        for b in doc.get("benchmarks", []):
            name = base_name(b.get("run_name", b["name"]))
            if b.get("error_occurred"):
                errors.append("%s: %s" % (name, b.get("error_message", "?")))
            elif b.get("run_type", "iteration") == "iteration":
                res.setdefault(name, []).append(b)
    return ctx, res, errors


def cpu_ns(e):
    return e["cpu_time"] * TO_NS[e.get("time_unit", "ns")]


def metric(name, e):
    """(metric, value, unit, higher_is_better) of one run."""
    if name == "loop_count":
        return "iterations_per_s", e["items_per_second"] / 1e6, \
            "M iter/s", True
    if name == "async_pummel":
        return "sends_per_s", e["items_per_second"] / 1e6, "M sends/s", True
    if name.startswith("post_throughput/"):
        return "tasks_per_s", e["items_per_second"] / 1e6, "M tasks/s", True
    if name.startswith("loop_pingpong"):
        return "round_trips_per_s", e["items_per_second"] / 1e3, \
            "k trips/s", True
    if name == "million_timers":
        return "cpu_per_fire_ns", cpu_ns(e) / e["fired"], "ns/timer", False
    if name == "async_send_pending":
        return "send_ns", cpu_ns(e), "ns/send", False
    return "ns", cpu_ns(e), "ns/op", False


def medians(out):
    """{(benchmark, column): (metric, median, unit, higher)} of every
    benchmark that ran, from the JSON in <out>."""
    meds = {}
    for label, stem in RUNS:
        _, res, _ = load(out, stem)
        for name, runs in res.items():
            ms = [metric(name, e) for e in runs]
            meds[(name, label)] = (ms[0][0], statistics.median(
                m[1] for m in ms), ms[0][2], ms[0][3])
    return meds


def target_value(meds, target, label):
    """The value a micro target compares with its bound, or None."""
    m = meds.get((target.workload, label))
    if m is None or m[0] != target.metric:
        return None
    return m[1]


def cell(v, spec):
    return "-" if v is None else spec % v


AGG = {"median": statistics.median, "max": max, "min": min}


def main(argv):
    out, reps, strace_n = argv[1], int(argv[2]), int(argv[3])
    data, bad, have, host = {}, [], [], {}
    for label, stem in RUNS:
        ctx, res, errors = load(out, stem)
        if ctx is None:
            continue
        have.append(label)
        data[label] = res
        host = ctx
        bad += ["%s %s" % (label, e) for e in errors]
        print("%-11s %s, backend=%s (%s) allocator=%s" % (
            label, ctx.get("library", "?"), ctx.get("backend", "?"),
            ctx.get("backend_reason", "-"), ctx.get("allocator", "?")))
    print("host: %s CPUs @ %s MHz, %s; medians of %d interleaved passes" % (
        host.get("num_cpus", "?"), host.get("mhz_per_cpu", "?"),
        host.get("date", ""), reps))
    print()

    order = []
    for label in have:
        for name in data[label]:
            if name not in order:
                order.append(name)
    meds = medians(out)

    def counter_row(title, name, agg, fn, spec="%.0f"):
        cells = []
        for label, _ in RUNS:
            vals = [v for v in map(fn, data.get(label, {}).get(name, []))
                    if v is not None]
            cells.append(cell(AGG[agg](vals) if vals else None, spec))
        print("  %-26s %-9s %11s %11s" % (title, "(%s)" % agg, *cells))

    hdr = "%-28s %-9s %11s %11s %8s  %s" % (
        "benchmark", "unit", "rx io_uring", "rx epoll", "ep/uring",
        "target")
    print(hdr)
    print("-" * len(hdr))
    misses = 0
    for name in order:
        vals, unit = {}, ""
        for label, _ in RUNS:
            m = meds.get((name, label))
            if m is not None:
                vals[label], unit = m[1], m[2]
        verdicts = []
        for t in MICRO_TARGETS:
            if t.workload != name:
                continue
            for label in t.columns:
                v = target_value(meds, t, label)
                good = v is not None and t.met(v)
                misses += not good
                verdicts.append("%s %s" % (t.text(), "ok" if good else
                                           "MISS" if v is not None
                                           else "MISS (no data)"))
        u, e = vals.get("rx io_uring"), vals.get("rx epoll")
        print("%-28s %-9s %11s %11s %8s  %s" % (
            name, unit, cell(u, "%.2f"), cell(e, "%.2f"),
            cell(e / u if u and e is not None else None, "%.2fx"),
            "; ".join(verdicts) or "-"))
        if name == "million_timers":
            for counter, agg in (("early", "max"), ("max_late_us", "median"),
                                 ("wakeups", "median"),
                                 ("start_ns", "median")):
                counter_row(counter, name, agg,
                            lambda e, c=counter: e.get(c),
                            "%.1f" if counter == "start_ns" else "%.0f")
            for label in have:
                if any(e.get("early", 0) != 0
                       for e in data[label].get(name, [])):
                    print("  %s: a timer fired early (MISS)" % label)
                    misses += 1
        if name in ITEMS:
            items = ITEMS[name]
            counter_row("cpu ns/item, all threads", name, "median",
                        lambda e: cpu_ns(e) / e[items] if e.get(items)
                        else None, "%.1f")
        if name == "async_pummel":
            counter_row("callbacks", name, "median",
                        lambda e: e.get("callbacks"))
            counter_row("after_last (1 = a callback", name, "min",
                        lambda e: e.get("after_last"))
            print("  %-26s" % " ran after the last send)")
            for label in have:
                if any(e.get("after_last") != 1
                       for e in data[label].get(name, [])):
                    bad.append("%s async_pummel: no callback after the last"
                               " send" % label)

    print()
    print("ep/uring: rx epoll over rx io_uring. M iter/s, M sends/s, M"
          " tasks/s, k trips/s: higher is\n  better; ns: CPU time, lower is"
          " better. Cross-thread rows (async_pummel, post_throughput,\n"
          "  loop_pingpong) are wall-time rates of one whole run per pass,"
          " threads not pinned.\n  loop_pingpong posts with"
          " rx_loop_post_from(), loop_pingpong_eventfd with plain\n"
          "  rx_loop_post(). The other libraries run these workloads in"
          " bench/peers.")
    print("JSON and console output: %s" % out)
    syscall_tables(out, strace_n)

    if bad:
        print("\nFAILED: " + "; ".join(bad))
        return 1
    if misses and os.environ.get("RX_BENCH_STRICT") == "1":
        return 1
    return 0


# Syscalls per loop_pingpong round trip.
STRACE = [("rx io_uring", "rx-io_uring"),
          ("rx io_uring, post (eventfd)", "rx-io_uring-eventfd"),
          ("rx epoll", "rx-epoll"),
          ("rx epoll, post (eventfd)", "rx-epoll-eventfd")]


def strace_calls(out, stem, strace_n):
    path = os.path.join(out, "strace-%s.txt" % stem)
    if not os.path.exists(path):
        return None
    calls = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 5 and fields[3].isdigit() and \
                    re.match(r"^[0-9.]+$", fields[0]):
                calls[fields[-1]] = int(fields[3])
    return calls, strace_n


def perf_calls(out, stem, strace_n):
    """Syscall counts by name ("total" for all) and the round trips made,
    from perf stat -x, and the run's JSON."""
    path = os.path.join(out, "perf-%s.txt" % stem)
    if not os.path.exists(path):
        return None
    calls = {}
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) < 3 or not fields[0].isdigit():
                continue
            if fields[2] == "raw_syscalls:sys_enter":
                calls["total"] = int(fields[0])
            elif fields[2].startswith("syscalls:sys_enter_"):
                calls[fields[2][len("syscalls:sys_enter_"):]] = int(fields[0])
    trips = None
    with open(os.path.join(out, "perf-%s.json" % stem)) as f:
        for b in json.load(f).get("benchmarks", []):
            trips = b.get("round_trips", trips)
    return (calls, int(trips)) if trips else None


def per_trip(calls, n):
    total = calls.pop("total", sum(calls.values()))
    top = sorted(calls.items(), key=lambda kv: -kv[1])
    parts = ["%s %.2f" % (k, v / n) for k, v in top if v / n >= 0.01]
    return "%6.2f  %s" % (total / n, ", ".join(parts))


def syscall_tables(out, strace_n):
    for title, how in (
            ("syscalls per loop_pingpong round trip, strace -c -f (whole"
             " process, %d round trips):", strace_calls),
            ("the same at full speed, perf stat on the syscall tracepoints"
             " (whole process, %d round trips;\n  the total counts every"
             " syscall, the breakdown only those named):", perf_calls)):
        rows = [(label, r) for label, r in
                ((label, how(out, stem, strace_n)) for label, stem in STRACE)
                if r is not None]
        if rows:
            print()
            print(title % rows[0][1][1])
            for label, (calls, n) in rows:
                print("  %-28s %s" % (label, per_trip(calls, n)))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.stderr.write("usage: %s <resultsdir> <passes> <strace round "
                         "trips>\n" % sys.argv[0])
        sys.exit(2)
    sys.exit(main(sys.argv))
