#!/bin/sh
# demo.sh RX_HTTP RX_LOAD SECONDS - make demo's HTTP table: rx-http on one
# thread, loaded by rx-load on one thread for SECONDS, once per backend
# (both programs on it: io_uring, then epoll), without and with a pipeline
# of 16; one row per run with the rate and the latency percentiles. Each
# server is started on a free port of 127.0.0.1 and stopped by its pid. A
# kernel that refuses io_uring makes those rows say so.
set -u
http=$1
load=$2
secs=$3
tmp=$(mktemp -d)
pid=
trap 'rm -rf "$tmp"; [ -n "$pid" ] && kill -KILL $pid 2>/dev/null' EXIT
status=0

# A number of rx-load's --json output: field KEY [LINE-PATTERN].
field() {
  grep "${2:-.}" "$tmp/out" | sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" | head -1
}
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }

echo
echo "rx-http (1 thread) loaded by rx-load (1 thread, 64 connections) for" \
  "$secs s, GET /plaintext"
printf '%-9s %8s %12s %9s %9s %9s %9s %7s %10s\n' backend pipeline \
  requests/s p50_ms p90_ms p99_ms p99.9_ms errors cpu_us/req
for be in io_uring epoll; do
  RX_BACKEND=$be "$http" --threads 1 --port 0 2>"$tmp/err" &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' \
      "$tmp/err")
    [ -n "$port" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    printf '%-9s %s\n' "$be" "rx-http did not start: $(cat "$tmp/err")"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    pid=
    [ $be = io_uring ] || status=1
    continue
  fi
  for depth in 1 16; do
    if ! RX_BACKEND=$be "$load" -t1 -c64 -d"${secs}s" --pipeline $depth \
      --json "http://127.0.0.1:$port/plaintext" >"$tmp/out"; then
      printf '%-9s %8s %s\n' "$be" $depth "rx-load failed"
      status=1
      continue
    fi
    errors=$(grep '"errors"' "$tmp/out" |
      sed 's/[^0-9 ]//g' | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }')
    printf '%-9s %8s %12.0f %9s %9s %9s %9s %7s %10s\n' "$be" $depth \
      "$(field requests_per_sec)" "$(ms "$(field 50 '"latency"')")" \
      "$(ms "$(field 90 '"latency"')")" "$(ms "$(field 99 '"latency"')")" \
      "$(ms "$(field 99.9 '"latency"')")" "$errors" \
      "$(field us_per_request)"
  done
  kill -TERM $pid
  wait $pid || status=1
  pid=
done
exit $status
