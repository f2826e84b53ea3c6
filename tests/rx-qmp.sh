#!/bin/sh
# rx-qmp.sh RX_QMP - examples/rx-qmp.c against a real QEMU (-machine none),
# started in a temporary directory and stopped by pid: one command and its
# answer, QEMU's error class, bad arguments, the shell, the events until the
# QEMU goes away, a socket that is not there. Exits 77 (SKIP) without
# qemu-system-x86_64 (Debian: qemu-system-x86).
set -u
RXQ=$1
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  echo "SKIP: no qemu-system-x86_64: install qemu-system-x86" \
    "(scripts/deps.sh does as root)"
  exit 77
fi
dir=$(mktemp -d /tmp/rxt-rxqmp-XXXXXX)
sock=$dir/qmp.sock
evsock=$dir/events.sock
qemu_pid=
events_pid=
cleanup() {
  [ -n "$events_pid" ] && kill "$events_pid" 2>/dev/null
  [ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$dir"/*.out "$dir"/*.err; do
    [ -f "$f" ] && { echo "--- $f"; cat "$f"; }
  done
  exit 1
}

qemu-system-x86_64 -machine none -display none -nodefaults \
  -qmp "unix:$sock,server=on,wait=off" \
  -qmp "unix:$evsock,server=on,wait=off" </dev/null >/dev/null &
qemu_pid=$!

# One command (the socket may not be there yet: rx-qmp waits for it).
"$RXQ" "$sock" query-status >"$dir/1.out" 2>"$dir/1.err" ||
  fail "query-status failed"
grep -q '"running":true' "$dir/1.out" || fail "query-status: no running"

"$RXQ" "$sock" no-such-command >"$dir/2.out" 2>"$dir/2.err" &&
  fail "an unknown command exited 0"
grep -q 'no-such-command: CommandNotFound' "$dir/2.err" ||
  fail "no CommandNotFound"

"$RXQ" "$sock" qom-list '{"path": "/machine"}' >"$dir/3.out" 2>"$dir/3.err" ||
  fail "qom-list with arguments failed"
"$RXQ" "$sock" qom-list '[1]' >/dev/null 2>"$dir/4.err" &&
  fail "arguments that are not an object were taken"
grep -q 'not a JSON object' "$dir/4.err" || fail "bad arguments not named"

# The events: STOP and RESUME only, in order, as JSON lines. QEMU serves
# one client per socket: the events have a socket of their own.
"$RXQ" "$evsock" --events STOP RESUME >"$dir/ev.out" 2>"$dir/ev.err" &
events_pid=$!
i=0
while ! grep -q connected "$dir/ev.err" && [ $i -lt 200 ]; do
  sleep 0.02
  i=$((i + 1))
done
# The shell: stop, query-status, a failing command, cont.
printf 'stop\nquery-status\n\nno-such-command\ncont\n' |
  "$RXQ" "$sock" --shell >"$dir/sh.out" 2>"$dir/sh.err" &&
  fail "the shell exited 0 after a failing command"
[ "$(wc -l <"$dir/sh.out")" -eq 3 ] || fail "the shell: not 3 answers"
grep -q '"status":"paused"' "$dir/sh.out" || fail "the shell: not paused"
grep -q 'CommandNotFound' "$dir/sh.err" || fail "the shell: no error"

# The events listener hears STOP, RESUME, then QEMU going away (exit 1).
i=0
while [ "$(wc -l <"$dir/ev.out")" -lt 2 ] && [ $i -lt 100 ]; do
  sleep 0.05
  i=$((i + 1))
done
kill -KILL "$qemu_pid"
wait "$qemu_pid" 2>/dev/null
qemu_pid=
wait "$events_pid"
rc=$?
events_pid=
[ $rc -eq 1 ] || fail "--events exited $rc when QEMU went away"
grep -q 'peer closed' "$dir/ev.err" || fail "--events: no reason given"
[ "$(sed -n 1p "$dir/ev.out" | grep -c '"event":"STOP"')" -eq 1 ] ||
  fail "--events: STOP not first"
[ "$(sed -n 2p "$dir/ev.out" | grep -c '"event":"RESUME"')" -eq 1 ] ||
  fail "--events: RESUME not second"
[ "$(wc -l <"$dir/ev.out")" -eq 2 ] || fail "--events: more than 2 events"

# No socket: it says it cannot connect, after the connect timeout.
"$RXQ" --timeout 100 "$dir/none.sock" query-status >/dev/null 2>"$dir/5.err" &&
  fail "no socket exited 0"
grep -q 'cannot connect' "$dir/5.err" || fail "no socket: not named"
"$RXQ" --help | grep -q usage || fail "--help"
echo "rx-qmp: ok"
