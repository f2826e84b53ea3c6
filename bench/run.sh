#!/bin/sh
# bench/run.sh - the peer comparison: rx (io_uring, then epoll) and libev on
# the same micro benchmarks, 5 repetitions each, then one table of medians
# with the ratio rx/libev per workload and the project's targets.
#
#   bench/run.sh <builddir> [extra google-benchmark flags...]
#
# e.g. bench/run.sh build --benchmark_filter='timer_'  (a subset), or
#      bench/run.sh build --benchmark_min_time=0.1    (quicker, noisier).
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

common="--benchmark_repetitions=5 --benchmark_report_aggregates_only=true"
common="$common --benchmark_out_format=json"

# run <name> <env> <exe> [flags...]: JSON to $out/<name>.json, console to
# $out/<name>.txt.
run() {
  name=$1 envset=$2 exe=$3
  shift 3
  echo "running $name ..." >&2
  # shellcheck disable=SC2086 # $common is a word list on purpose
  if ! env $envset "$bin/$exe" $common --benchmark_out="$out/$name.json" \
       "$@" >"$out/$name.txt" 2>&1; then
    echo "$0: $exe ($name) failed; see $out/$name.txt" >&2
    tail -n 20 "$out/$name.txt" >&2
    exit 1
  fi
}

run rx-io_uring RX_BACKEND=io_uring bench_rx "$@"
run rx-epoll RX_BACKEND=epoll bench_rx "$@"
run libev "-u LIBEV_FLAGS" bench_libev "$@"

exec python3 - "$out" <<'EOF'
import json, os, re, sys

out = sys.argv[1]
runs = [("rx io_uring", "rx-io_uring"), ("rx epoll", "rx-epoll"),
        ("libev", "libev")]
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def base_name(run_name):
    # million_timers/iterations:1/repeats:5 -> million_timers
    return re.sub(r"/(iterations|repeats|min_time|real_time|manual_time)"
                  r"(:[^/]*)?", "", run_name)


def load(stem):
    with open(os.path.join(out, stem + ".json")) as f:
        doc = json.load(f)
    res, errors = {}, []
    for b in doc.get("benchmarks", []):
        name = base_name(b.get("run_name", b["name"]))
        if b.get("error_occurred"):
            errors.append("%s: %s" % (name, b.get("error_message", "error")))
            continue
        if b.get("run_type") == "aggregate":
            res.setdefault(name, {})[b["aggregate_name"]] = b
        else:  # a single run (--benchmark_repetitions=1)
            res.setdefault(name, {}).setdefault("median", b)
            res[name].setdefault("max", b)
    return doc.get("context", {}), res, errors


def metric(name, agg):
    """(value, unit, higher_is_better) of a workload's median."""
    m = agg.get("median")
    if m is None:
        return None
    if name == "loop_count":
        return m["items_per_second"] / 1e6, "M iter/s", True
    cpu_ns = m["cpu_time"] * TO_NS[m.get("time_unit", "ns")]
    if name == "million_timers":
        return cpu_ns / m["fired"], "ns/timer", False
    return cpu_ns, "ns/op", False


# The project's targets, on rx io_uring against libev (DESIGN.md goals).
def target(name):
    if name == "loop_count":
        return ">=5x", lambda r: r >= 5.0
    if name.startswith(("timer_start/", "timer_stop_start/")):
        return "<=0.5x", lambda r: r <= 0.5
    if name == "million_timers":
        return "<=0.5x", lambda r: r <= 0.5
    return "-", None


data, bad = {}, []
for label, stem in runs:
    ctx, res, errors = load(stem)
    data[label] = res
    bad += ["%s %s" % (label, e) for e in errors]
    print("%-11s backend=%s (%s) allocator=%s" % (
        label, ctx.get("backend", "?"),
        ctx.get("backend_reason", ctx.get("library", "")),
        ctx.get("allocator", "?")))
print("host: %s CPUs @ %s MHz, %s; medians of the repetitions, CPU time" % (
    ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
    ctx.get("date", "")))
print()

order = []
for label, _ in runs:
    for name in data[label]:
        if name not in order:
            order.append(name)

hdr = "%-24s %-9s %11s %11s %11s %9s %9s %7s %s" % (
    "workload", "unit", "rx io_uring", "rx epoll", "libev",
    "uring/ev", "epoll/ev", "target", "")
print(hdr)
print("-" * len(hdr))
misses = 0
for name in order:
    vals, unit, higher = {}, "", False
    for label, _ in runs:
        mt = metric(name, data[label].get(name, {}))
        if mt is not None:
            vals[label], unit, higher = mt
    ev = vals.get("libev")

    def ratio(label):
        v = vals.get(label)
        return None if v is None or not ev else v / ev

    def fmt(v, spec):
        return "-" if v is None else spec % v

    r_uring, r_epoll = ratio("rx io_uring"), ratio("rx epoll")
    tgt, ok = target(name)
    verdict = ""
    if ok is not None and r_uring is not None:
        good = ok(r_uring)
        if name == "million_timers":
            for label, _ in runs:
                mx = data[label].get(name, {}).get("max")
                if mx is not None and mx.get("early", 0) != 0:
                    good = False
                    verdict = "(early timers!) "
        verdict = ("ok" if good else "MISS") + (" " + verdict if verdict else "")
        misses += not good
    print("%-24s %-9s %11s %11s %11s %9s %9s %7s %s" % (
        name, unit,
        fmt(vals.get("rx io_uring"), "%.2f"), fmt(vals.get("rx epoll"), "%.2f"),
        fmt(ev, "%.2f"), fmt(r_uring, "%.2fx"), fmt(r_epoll, "%.2fx"),
        tgt, verdict))
    if name == "million_timers":
        for counter, agg, spec in (("early", "max", "%.0f"),
                                   ("max_late_us", "median", "%.0f"),
                                   ("wakeups", "median", "%.0f"),
                                   ("start_ns", "median", "%.1f")):
            cells = []
            for label, _ in runs:
                a = data[label].get(name, {}).get(agg)
                cells.append("-" if a is None or counter not in a
                              else spec % a[counter])
            print("  %-22s %-9s %11s %11s %11s" % (
                counter, "(%s)" % agg, *cells))

print()
print("ratios are rx/libev of the median (loop_count: iterations/s, higher is"
      " better; the rest: CPU ns, lower is better).")
print("JSON and console output: %s" % out)
if bad:
    print("\nFAILED: " + "; ".join(bad))
    sys.exit(1)
if misses and os.environ.get("RX_BENCH_STRICT") == "1":
    sys.exit(1)
EOF
