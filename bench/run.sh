#!/bin/sh
# bench/run.sh - rx's micro benchmarks: bench_rx (google-benchmark: the
# timer wheel, the MPSC queue, the loop's own paths) on io_uring and on
# epoll, then bench/micro.py's table of medians with the "micro" targets of
# bench/targets.py and the syscalls per loop_pingpong round trip. The
# comparison with libev, libuv and libevent is bench/peers' (make bench).
#
#   bench/run.sh <builddir> [extra google-benchmark flags...]
#
# e.g. bench/run.sh build --benchmark_filter='timer_'  (a subset), or
#      bench/run.sh build --benchmark_min_time=0.1    (quicker, noisier).
#
# The repetitions are interleaved: pass 1 runs both backends once, then
# pass 2, and so on (RX_BENCH_REPS passes, default 5), and the medians are
# taken over the passes. On a shared machine a burst of someone else's load
# then falls on both alike instead of on whichever ran at the time.
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
if [ ! -x "$bin/bench_rx" ]; then
  echo "$0: $bin/bench_rx is missing: configure with -Dbench=enabled (needs" \
       "google-benchmark) and build it" >&2
  exit 2
fi
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
fi

exec python3 "$(dirname "$0")/micro.py" "$out" "$reps" "$strace_n"
