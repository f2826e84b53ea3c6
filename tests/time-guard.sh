#!/bin/sh
# time-guard.sh SRCDIR BUILDDIR FLAGS... -- CC [CC ARGS...] - rx.h's check of
# time arguments ("Time arguments checked at compile time" in include/rx.h),
# with the C compiler meson uses, then with gcc and clang where installed
# and not that same compiler:
#   1. each time argument of each function that takes one, given a float, a
#      double, a long double or a floating expression, makes the compile
#      fail with rx.h's message; the same file compiles with
#      RX_NO_TIME_GUARD, so the failure is the check's and the opt-out works;
#   2. integers of every kind, RX_SEC(5.5), int64_t variables, unsigned
#      values, bit-fields, enums, nested calls and the functions taken as
#      pointers compile with -Werror under the project's FLAGS, and also
#      with -pedantic -Wconversion -Wsign-conversion (less the unsigned
#      64-bit values, which those flags refuse with or without the check);
#      each run also with RX_NO_TIME_GUARD, the baseline.
# FLAGS are the project's (its C standard and warning level); rx_version.h
# is in BUILDDIR/include. Prints "time-guard: OK" or what went wrong, with
# the compiler's output.
set -eu

if [ $# -lt 4 ]; then
  echo "usage: $0 SRCDIR BUILDDIR FLAGS... -- CC [CC ARGS...]" >&2
  exit 2
fi
inc="-I$1/include -I$2/include"
shift 2
flags=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  flags="$flags $1"
  shift
done
[ $# -gt 1 ] || { echo "time-guard: no compiler after --" >&2; exit 2; }
shift
strict="$flags -pedantic -Wconversion -Wsign-conversion"
msg='rx times are int64_t nanoseconds'
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rx-time-guard.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One floating-point time argument per case, each function and each of its
# time parameters, each floating type.
ncases=12
cat >"$tmp/bad.c" <<'EOF'
#include "rx.h"

void rxt_bad(rx_loop *loop, rx_timer *t, rx_periodic *p, rx_stat *st,
             float fl, double d, long double ld);
void rxt_bad(rx_loop *loop, rx_timer *t, rx_periodic *p, rx_stat *st,
             float fl, double d, long double ld) {
  (void)loop, (void)t, (void)p, (void)st, (void)fl, (void)d, (void)ld;
#if RXT_CASE == 1
  rx_timer_init(t, NULL, 5.5, 0); /* libev's ev_timer_init(&t, cb, 5.5, 0.) */
#elif RXT_CASE == 2
  rx_timer_init(t, NULL, 0, 0.);
#elif RXT_CASE == 3
  rx_timer_init(t, NULL, RX_SEC(1) * 1.5, 0);
#elif RXT_CASE == 4
  rx_timer_set(t, fl, 0);
#elif RXT_CASE == 5
  rx_timer_set(t, 0, ld);
#elif RXT_CASE == 6
  rx_periodic_init(p, NULL, d, 3600, NULL);
#elif RXT_CASE == 7
  rx_periodic_init(p, NULL, 0, 3600., NULL);
#elif RXT_CASE == 8
  rx_stat_init(st, NULL, "/", 2.f);
#elif RXT_CASE == 9
  rx_clock_advance(loop, d);
#elif RXT_CASE == 10
  rx_set_io_collect_interval(loop, 0.01);
#elif RXT_CASE == 11
  rx_set_timeout_collect_interval(loop, 1e-3L);
#elif RXT_CASE == 12
  rx_set_busy_poll(loop, 20e-6);
#endif
}
EOF

cat >"$tmp/good.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>

#include "rx.h"

struct rxt_bits {
  int s : 5;
  unsigned u : 7;
};
enum { RXT_TIMEOUT_MS = 250 };

int rxt_good(rx_loop *loop, rx_timer *t, rx_periodic *p, rx_stat *st,
             int64_t ns, const int64_t cns, volatile int64_t vns, int i,
             long l, long long ll, short sh, signed char sc, unsigned u,
             uint32_t u32, unsigned short us, unsigned char uc, _Bool b,
             struct rxt_bits bf, uint64_t u64, size_t sz, unsigned long ul);
int rxt_good(rx_loop *loop, rx_timer *t, rx_periodic *p, rx_stat *st,
             int64_t ns, const int64_t cns, volatile int64_t vns, int i,
             long l, long long ll, short sh, signed char sc, unsigned u,
             uint32_t u32, unsigned short us, unsigned char uc, _Bool b,
             struct rxt_bits bf, uint64_t u64, size_t sz, unsigned long ul) {
  int rc = 0;
  rx_timer_init(t, NULL, 0, 1);
  rx_timer_init(t, NULL, RX_SEC(5.5), RX_MSEC(1500));
  rx_timer_init(t, NULL, RX_USEC(u), RX_SEC(i));
  rx_timer_init(t, NULL, ns, cns);
  rx_timer_init(t, NULL, vns, ns * 2 + 1);
  rx_timer_init(t, NULL, i, l);
  rx_timer_init(t, NULL, ll, sh);
  rx_timer_init(t, NULL, sc, u);
  rx_timer_init(t, NULL, u32, us);
  rx_timer_init(t, NULL, uc, b);
  rx_timer_init(t, NULL, bf.s, bf.u);
  rx_timer_init(t, NULL, RXT_TIMEOUT_MS, RX_MSEC(RXT_TIMEOUT_MS));
  rx_timer_init(t, NULL, (int64_t)(1.5 * 1e9), -1);
  rx_timer_init(t, NULL, ns++, 5 * 1000000000LL);
  rc |= rx_timer_set(t, RX_SEC(2), 0);
  rc |= rx_timer_set(t, u, ns);
  rc |= rx_timer_set(t, rx_timer_remaining(loop, t), t->repeat);
  rx_periodic_init(p, NULL, 0, RX_SEC(3600), NULL);
  rx_periodic_init(p, NULL, rx_wallclock(loop) + RX_SEC(10), 0, NULL);
  rx_stat_init(st, NULL, "/", RX_SEC(2));
  rx_stat_init(st, NULL, "/", u32);
  rc |= rx_clock_advance(loop, RX_MSEC(1));
  int64_t wait = 0;
  rc |= rx_loop_timeout(loop, &wait);
  rc |= rx_clock_advance(loop, wait);
  rc |= rx_clock_advance(loop, rx_now(loop));
  rc |= rx_set_io_collect_interval(loop, RX_USEC(100));
  rc |= rx_set_timeout_collect_interval(loop, us);
  rc |= rx_set_busy_poll(loop, RX_BUSY_POLL_DEFAULT);
  rc |= rx_set_busy_poll(loop, rx_set_io_collect_interval(loop, 0));
#ifndef RXT_STRICT
  rc |= rx_timer_set(t, u64, sz);
  rc |= rx_clock_advance(loop, ul);
#else
  (void)u64, (void)sz, (void)ul;
#endif

  /* The functions themselves, which the macros do not hide. */
  void (*timer_init)(rx_timer *, rx_timer_cb, int64_t, int64_t) =
      rx_timer_init;
  int (*timer_set)(rx_timer *, int64_t, int64_t) = &rx_timer_set;
  void (*periodic_init)(rx_periodic *, rx_periodic_cb, int64_t, int64_t,
                        rx_reschedule_fn) = rx_periodic_init;
  void (*stat_init)(rx_stat *, rx_stat_cb, const char *, int64_t) =
      rx_stat_init;
  int (*loop_fns[])(rx_loop *, int64_t) = {
      rx_clock_advance, rx_set_io_collect_interval,
      rx_set_timeout_collect_interval, rx_set_busy_poll};
  timer_init(t, NULL, 1, 2);
  rc |= timer_set(t, 1, 2);
  periodic_init(p, NULL, 0, 1, NULL);
  stat_init(st, NULL, "/", 1);
  for (size_t k = 0; k < sizeof(loop_fns) / sizeof(loop_fns[0]); k++)
    rc |= loop_fns[k](loop, RX_MSEC(k));
  (rx_timer_init)(t, NULL, 3, 4);
  rc |= (rx_timer_set)(t, 3, 4);
  return rc;
}
EOF

fail() {
  echo "time-guard: FAIL: $*" >&2
  exit 1
}

# check NAME CC [CC ARGS...]: steps 1 and 2 with that compiler.
check() {
  name=$1
  shift
  n=1
  while [ $n -le $ncases ]; do
    # shellcheck disable=SC2086 # $inc and $flags are word lists
    if "$@" $inc $flags -DRXT_CASE=$n -c "$tmp/bad.c" -o "$tmp/bad.o" \
        >"$tmp/out" 2>&1; then
      cat "$tmp/out" >&2
      fail "$name: case $n of bad.c compiled: a floating-point time was taken"
    fi
    grep -qF "$msg" "$tmp/out" || {
      cat "$tmp/out" >&2
      fail "$name: case $n of bad.c failed without the message \"$msg\""
    }
    # shellcheck disable=SC2086
    "$@" $inc $flags -DRXT_CASE=$n -DRX_NO_TIME_GUARD -c "$tmp/bad.c" \
        -o "$tmp/bad.o" >"$tmp/out" 2>&1 || {
      cat "$tmp/out" >&2
      fail "$name: case $n of bad.c failed with RX_NO_TIME_GUARD"
    }
    n=$((n + 1))
  done
  for opt in "$flags" "$strict -DRXT_STRICT"; do
    for guard in "" -DRX_NO_TIME_GUARD; do
      # shellcheck disable=SC2086
      "$@" $inc $opt $guard -Werror -c "$tmp/good.c" -o "$tmp/good.o" \
          >"$tmp/out" 2>&1 || {
        cat "$tmp/out" >&2
        fail "$name: good.c with$opt $guard -Werror"
      }
    done
  done
  echo "time-guard: $name: $ncases floating-point times refused, integers taken"
}

# The compiler's __VERSION__ ("12.2.0", "Debian Clang 14.0.6"), to tell
# compilers apart whatever they are called.
version() {
  echo __VERSION__ | "$@" -E -P -x c - 2>/dev/null | grep -v '^$' || true
}

check "$*" "$@"
seen=$(version "$@")
for other in gcc clang; do
  command -v "$other" >/dev/null 2>&1 || continue
  v=$(version "$other")
  printf '%s\n' "$seen" | grep -qxF "$v" && continue
  check "$other" "$other"
  seen="$seen
$v"
done
echo "time-guard: OK"
