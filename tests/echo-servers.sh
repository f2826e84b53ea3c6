#!/bin/bash
# echo-servers.sh SERVER... - each echo server of examples/ as a user meets
# it, on $RX_BACKEND: --help and a bad option; started on a free port, an
# echo on two connections (bash's /dev/tcp), the first one's end of stream
# (the server closes its end: one fd fewer), SIGINT with the second one
# open (the server closes it: end of file here), exit status 0 and its
# totals line. echo-client (examples/meson.build) does the load, SIGTERM
# and every byte; this is the rest. Exit 77 (skip) when the forced backend
# is refused by the kernel.
set -u
tmp=$(mktemp -d)
pid=
trap 'rm -rf "$tmp"; [ -n "$pid" ] && kill -KILL $pid 2>/dev/null' EXIT

fail() {
  echo "echo-servers: $name on ${RX_BACKEND:-the default backend}: $*" >&2
  exit 1
}

# Up to 10 s for "$@" to hold.
within_10s() {
  for _ in $(seq 100); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

for server in "$@"; do
  name=$(basename "$server")
  "$server" --help | grep -q "^usage: $name " || fail "--help"
  "$server" --bogus 2>/dev/null
  [ $? = 2 ] || fail "an unknown option must exit with 2"
  "$server" --port 65536 2>"$tmp/err"
  [ $? = 2 ] && grep -q -- "--port" "$tmp/err" || fail "--port 65536"

  "$server" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  if ! within_10s grep -q "listening on" "$tmp/out"; then
    if ! kill -0 $pid 2>/dev/null && grep -q "rx_loop_new" "$tmp/err" &&
      [ "${RX_BACKEND:-}" = io_uring ]; then
      cat "$tmp/err"
      exit 77
    fi
    kill -KILL $pid 2>/dev/null
    fail "no 'listening on' line: $(cat "$tmp/err")"
  fi
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/out")
  [ -n "$port" ] || fail "no port in: $(cat "$tmp/out")"

  exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
  exec 4<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
  printf 'hello\n' >&3
  read -r -t 10 -u 3 line && [ "$line" = hello ] || fail "echo: '$line'"
  printf 'world\n' >&4
  read -r -t 10 -u 4 line && [ "$line" = world ] || fail "echo: '$line'"

  fds=$(ls /proc/$pid/fd | wc -l)
  exec 3>&-
  fewer() { [ "$(ls /proc/$pid/fd | wc -l)" -lt "$fds" ]; }
  within_10s fewer || fail "kept a connection open after its end of stream"

  kill -INT $pid
  read -r -t 10 -u 4 line
  [ $? = 1 ] || fail "no end of file on a connection after SIGINT"
  exec 4>&-
  wait $pid
  status=$?
  pid=
  [ $status = 0 ] || fail "exit status $status after SIGINT: $(cat "$tmp/err")"
  grep -qx "$name: 2 connections, 12 bytes echoed, [0-9]* loop enters" \
    "$tmp/out" || fail "totals: $(cat "$tmp/out")"
  [ -s "$tmp/err" ] && fail "wrote to stderr: $(cat "$tmp/err")"
  echo "$name: ok"
done
exit 0
