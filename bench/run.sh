#!/bin/sh
# bench/run.sh - the peer comparison: rx (io_uring, then epoll), libev and
# libuv on the same micro benchmarks, then one table of medians with the
# ratio of rx to the best peer per workload and the project's targets, and
# the syscalls per loop_pingpong round trip of each library.
#
#   bench/run.sh <builddir> [extra google-benchmark flags...]
#
# e.g. bench/run.sh build --benchmark_filter='timer_'  (a subset), or
#      bench/run.sh build --benchmark_min_time=0.1    (quicker, noisier).
#
# The repetitions are interleaved: pass 1 runs every library once, then pass
# 2, and so on (RX_BENCH_REPS passes, default 5), and the medians are taken
# over the passes. On a shared machine a burst of someone else's load then
# falls on all libraries alike instead of on whichever ran at the time.
# bench_libuv has only the cross-thread workloads and is left out when meson
# did not find libuv.
#
# Syscalls per loop_pingpong round trip are counted twice, unless
# RX_BENCH_SYSCALLS=0: with strace -c -f (when installed) on a shorter run,
# RX_BENCH_STRACE_N round trips (default 20000), because strace slows every
# syscall; and at full speed and length with perf stat on the kernel's
# syscall tracepoints, when perf may read them. strace stops the process at
# each syscall, which changes how often a loop is found asleep and so how
# often it has to be woken: the perf count is the one the timed runs see.
#
# The JSON of each run stays in <builddir>/bench/results/ with the console
# output beside it; the table is printed on stdout. Exit status: 0, or 1 if a
# benchmark failed or was skipped with an error; a missed target is reported
# in the table, and fails the script only with RX_BENCH_STRICT=1.
set -eu

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 <builddir> [benchmark flags...]" >&2
  exit 2
fi
build=$1
shift
bin=$build/bench
out=$bin/results
for exe in bench_rx bench_libev; do
  if [ ! -x "$bin/$exe" ]; then
    echo "$0: $bin/$exe is missing: configure with -Dbench=enabled (needs" \
         "google-benchmark and libev) and build it" >&2
    exit 2
  fi
done
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.txt "$out"/*.log

reps=${RX_BENCH_REPS:-5}
common="--benchmark_repetitions=1 --benchmark_out_format=json"

# run <name> <env> <exe> [flags...]: JSON to $out/<name>.json, console to
# $out/<name>.txt.
run() {
  name=$1 envset=$2 exe=$3
  shift 3
  echo "running $name ..." >&2
  # shellcheck disable=SC2086 # word lists on purpose
  if ! env $envset "$bin/$exe" $common --benchmark_out="$out/$name.json" \
       "$@" >"$out/$name.txt" 2>&1; then
    echo "$0: $exe ($name) failed; see $out/$name.txt" >&2
    tail -n 20 "$out/$name.txt" >&2
    exit 1
  fi
}

pass=1
while [ "$pass" -le "$reps" ]; do
  run "rx-io_uring.$pass" RX_BACKEND=io_uring bench_rx "$@"
  run "rx-epoll.$pass" RX_BACKEND=epoll bench_rx "$@"
  run "libev.$pass" "-u LIBEV_FLAGS" bench_libev "$@"
  if [ -x "$bin/bench_libuv" ]; then
    run "libuv.$pass" "-u UV_THREADPOOL_SIZE" bench_libuv "$@"
  fi
  pass=$((pass + 1))
done

# strace_run <name> <env> <exe> <benchmark>: one run of <benchmark> under
# strace -c -f, its summary to $out/strace-<name>.txt. A failure (no ptrace
# in a container, say) only leaves the count out.
strace_n=${RX_BENCH_STRACE_N:-20000}
strace_run() {
  name=$1 envset=$2 exe=$3 filter=$4
  [ -x "$bin/$exe" ] || return 0
  echo "counting syscalls (strace): $name ..." >&2
  # shellcheck disable=SC2086 # $envset is a word list on purpose
  if ! env $envset RX_BENCH_PINGPONG_N="$strace_n" \
       strace -f -c -o "$out/strace-$name.txt" "$bin/$exe" \
       --benchmark_filter="^$filter/" --benchmark_repetitions=1 \
       >"$out/strace-$name.log" 2>&1 ||
     grep -q "ERROR OCCURRED" "$out/strace-$name.log"; then
    echo "$0: strace of $exe ($name) failed; see $out/strace-$name.log" >&2
    rm -f "$out/strace-$name.txt"
  fi
}

# perf_run <name> <env> <exe> <benchmark>: the same count from perf stat,
# at full speed and length.
perf_events=""
if command -v perf >/dev/null &&
   perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
  perf_events="-e raw_syscalls:sys_enter"
  for sc in io_uring_enter write read epoll_wait epoll_pwait epoll_pwait2 \
            sched_yield futex; do
    if perf stat -e "syscalls:sys_enter_$sc" true >/dev/null 2>&1; then
      perf_events="$perf_events -e syscalls:sys_enter_$sc"
    fi
  done
fi
perf_run() {
  name=$1 envset=$2 exe=$3 filter=$4
  [ -x "$bin/$exe" ] && [ -n "$perf_events" ] || return 0
  echo "counting syscalls (perf): $name ..." >&2
  # shellcheck disable=SC2086 # word lists on purpose
  if ! env $envset perf stat -x, -o "$out/perf-$name.txt" $perf_events \
       "$bin/$exe" --benchmark_filter="^$filter/" --benchmark_repetitions=1 \
       --benchmark_out_format=json --benchmark_out="$out/perf-$name.json" \
       >"$out/perf-$name.log" 2>&1 ||
     grep -q "ERROR OCCURRED" "$out/perf-$name.log"; then
    echo "$0: perf stat of $exe ($name) failed; see $out/perf-$name.log" >&2
    rm -f "$out/perf-$name.txt"
  fi
}

# count <name> <env> <exe> <benchmark>: both counts.
count() {
  if command -v strace >/dev/null; then
    strace_run "$@"
  fi
  perf_run "$@"
}

if [ "${RX_BENCH_SYSCALLS:-1}" != 0 ]; then
  count rx-io_uring RX_BACKEND=io_uring bench_rx loop_pingpong
  count rx-io_uring-eventfd RX_BACKEND=io_uring bench_rx loop_pingpong_eventfd
  count rx-epoll RX_BACKEND=epoll bench_rx loop_pingpong
  count rx-epoll-eventfd RX_BACKEND=epoll bench_rx loop_pingpong_eventfd
  count libev "-u LIBEV_FLAGS" bench_libev loop_pingpong
  count libuv "-u UV_THREADPOOL_SIZE" bench_libuv loop_pingpong
fi

exec python3 - "$out" "$reps" "$strace_n" <<'EOF'
import glob, json, os, re, statistics, sys

out, reps, strace_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
RUNS = [("rx io_uring", "rx-io_uring"), ("rx epoll", "rx-epoll"),
        ("libev", "libev"), ("libuv", "libuv")]
PEERS = ("libev", "libuv")
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
# Workloads that exist in rx only, compared with the peers' version.
PEER_NAME = {"loop_pingpong_eventfd": "loop_pingpong"}
# The counter that holds a cross-thread workload's item count.
ITEMS = {"async_pummel": "sends", "post_throughput/1": "tasks",
         "post_throughput/2": "tasks", "loop_pingpong": "round_trips",
         "loop_pingpong_eventfd": "round_trips"}


def base_name(run_name):
    # million_timers/iterations:1/process_time/real_time -> million_timers
    return re.sub(r"/(iterations|repeats|min_time|real_time|manual_time|"
                  r"process_time)(:[^/]*)?", "", run_name)


def load(stem):
    """(context, {workload: [one entry per run]}, errors) of every pass."""
    ctx, res, errors = None, {}, []
    paths = sorted(glob.glob(os.path.join(out, stem + ".[0-9]*.json")),
                   key=lambda p: int(p.rsplit(".", 2)[1]))
    for path in paths:
        if os.path.getsize(path) == 0:
            continue  # a filter that matched nothing in this executable
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
    """(value, unit, higher_is_better) of one run."""
    if name == "loop_count":
        return e["items_per_second"] / 1e6, "M iter/s", True
    if name == "async_pummel":
        return e["items_per_second"] / 1e6, "M sends/s", True
    if name.startswith("post_throughput/"):
        return e["items_per_second"] / 1e6, "M tasks/s", True
    if name.startswith("loop_pingpong"):
        return e["items_per_second"] / 1e3, "k trips/s", True
    if name == "million_timers":
        return cpu_ns(e) / e["fired"], "ns/timer", False
    if name == "async_send_pending":
        return cpu_ns(e), "ns/send", False
    return cpu_ns(e), "ns/op", False


def rel(v, base):
    return None if v is None or not base else v / base


# The project's targets (DESIGN.md goals), checked on rx io_uring: text and
# a test of the row's medians by library.
def target(name):
    if name == "loop_count":
        return ">=5x ev", lambda v: rel(v["rx io_uring"], v["libev"]) >= 5
    if name.startswith(("timer_start/", "timer_stop_start/")) or \
            name == "million_timers":
        return "<=0.5x ev", \
            lambda v: rel(v["rx io_uring"], v["libev"]) <= 0.5
    if name == "async_send_pending":
        return "<=uv", lambda v: v["rx io_uring"] <= v["libuv"]
    if name == "post_throughput/1":
        return ">=20M/s", lambda v: v["rx io_uring"] >= 20.0
    if name == "loop_pingpong":
        return ">=2xuv,>=ev", lambda v: (v["rx io_uring"] >= 2 * v["libuv"]
                                         and v["rx io_uring"] >= v["libev"])
    return "-", None


data, bad, have, host = {}, [], [], {}
for label, stem in RUNS:
    ctx, res, errors = load(stem)
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


def runs_of(label, name):
    if label in PEERS:
        name = PEER_NAME.get(name, name)
    return data.get(label, {}).get(name, [])


def cell(v, spec):
    return "-" if v is None else spec % v


AGG = {"median": statistics.median, "max": max, "min": min}


def counter_row(title, name, agg, fn, spec="%.0f"):
    cells = []
    for label, _ in RUNS:
        vals = [v for v in map(fn, runs_of(label, name)) if v is not None]
        cells.append(cell(AGG[agg](vals) if vals else None, spec))
    print("  %-26s %-9s %11s %11s %11s %11s" % (title, "(%s)" % agg, *cells))


hdr = "%-28s %-9s %11s %11s %11s %11s %8s %8s %12s %s" % (
    "workload", "unit", "rx io_uring", "rx epoll", "libev", "libuv",
    "uring/pr", "epoll/pr", "target", "")
print(hdr)
print("-" * len(hdr))
misses = 0
for name in order:
    vals, unit, higher = {}, "", False
    for label, _ in RUNS:
        runs = runs_of(label, name)
        if runs:
            lookup = PEER_NAME.get(name, name) if label in PEERS else name
            ms = [metric(lookup, e) for e in runs]
            vals[label] = statistics.median(m[0] for m in ms)
            unit, higher = ms[0][1], ms[0][2]
    peers = [vals[p] for p in PEERS if p in vals]
    best = (max(peers) if higher else min(peers)) if peers else None
    tgt, ok = target(name)
    verdict = ""
    if ok is not None and "rx io_uring" in vals:
        try:
            good = ok(vals)
        except (KeyError, TypeError):
            good = None  # a peer the target names is missing
        if name == "million_timers":
            for label in have:
                if any(e.get("early", 0) != 0 for e in data[label].get(name, [])):
                    good = False
                    verdict = "(early timers!)"
        if good is None:
            verdict = "n/a"
        else:
            verdict = ("ok" if good else "MISS") + (
                " " + verdict if verdict else "")
            misses += not good
    print("%-28s %-9s %11s %11s %11s %11s %8s %8s %12s %s" % (
        name, unit,
        *(cell(vals.get(label), "%.2f") for label, _ in RUNS),
        cell(rel(vals.get("rx io_uring"), best), "%.2fx"),
        cell(rel(vals.get("rx epoll"), best), "%.2fx"),
        tgt, verdict))
    if name == "million_timers":
        for counter, agg, spec in (("early", "max", "%.0f"),
                                   ("max_late_us", "median", "%.0f"),
                                   ("wakeups", "median", "%.0f"),
                                   ("start_ns", "median", "%.1f")):
            counter_row(counter, name, agg,
                        lambda e, c=counter: e.get(c), spec)
    if name in ITEMS:
        items = ITEMS[name]
        counter_row("cpu ns/item, all threads", name, "median",
                    lambda e: cpu_ns(e) / e[items] if e.get(items) else None,
                    "%.1f")
    if name == "async_pummel":
        counter_row("callbacks", name, "median", lambda e: e.get("callbacks"))
        counter_row("after_last (1 = a callback", name, "min",
                    lambda e: e.get("after_last"))
        print("  %-26s" % " ran after the last send)")
        for label in have:
            if any(e.get("after_last") != 1 for e in data[label].get(name, [])):
                bad.append("%s async_pummel: no callback after the last send"
                           % label)

print()
print("uring/pr, epoll/pr: rx over the best peer (libev or libuv) of the"
      " median; M iter/s, M sends/s,\n  M tasks/s, k trips/s: higher is"
      " better; ns: CPU time, lower is better. loop_pingpong_eventfd\n  (rx"
      " with plain rx_loop_post) is compared with the peers'"
      " loop_pingpong.")
print("Cross-thread rows (async_pummel, post_throughput, loop_pingpong) are"
      " wall-time rates of one\n  whole run per pass, threads not pinned;"
      " libev and libuv post_throughput is a mutex queue\n  woken by an async"
      " send (the label in the JSON says so).")
print("JSON and console output: %s" % out)

# Syscalls per loop_pingpong round trip.
STRACE = [("rx io_uring", "rx-io_uring"),
          ("rx io_uring, post (eventfd)", "rx-io_uring-eventfd"),
          ("rx epoll", "rx-epoll"),
          ("rx epoll, post (eventfd)", "rx-epoll-eventfd"),
          ("libev", "libev"), ("libuv", "libuv")]


def strace_calls(stem):
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


def perf_calls(stem):
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


for title, how in (
        ("syscalls per loop_pingpong round trip, strace -c -f (whole process,"
         " %d round trips):", strace_calls),
        ("the same at full speed, perf stat on the syscall tracepoints (whole"
         " process, %d round trips;\n  the total counts every syscall, the"
         " breakdown only those named):", perf_calls)):
    rows = [(label, r) for label, r in
            ((label, how(stem)) for label, stem in STRACE) if r is not None]
    if rows:
        print()
        print(title % rows[0][1][1])
        for label, (calls, n) in rows:
            print("  %-28s %s" % (label, per_trip(calls, n)))

if bad:
    print("\nFAILED: " + "; ".join(bad))
    sys.exit(1)
if misses and os.environ.get("RX_BENCH_STRICT") == "1":
    sys.exit(1)
EOF
