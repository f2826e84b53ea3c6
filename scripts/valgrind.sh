#!/bin/sh
# valgrind.sh BUILDDIR - every test of a meson build directory under
# valgrind's memcheck, on both backends (each loop test already runs once
# with RX_BACKEND=io_uring and once with RX_BACKEND=epoll).
#
# A test fails on any memcheck error (invalid read or write, use of an
# uninitialised value, a bad free), on a block definitely lost at exit, and
# as it fails without valgrind. --track-fds=yes lists the fds still open at
# exit in each test's log; in valgrind 3.19 that list is information, not an
# error, and the tests' own fd-leak checks (helpers.h counts /proc/self/fd)
# still pass under it: valgrind's own fds sit far above the test's and do
# not change while a test runs.
#
# BUILDDIR must be a build without sanitizers (ASan's and TSan's runtimes
# and valgrind each want the address space to themselves). The tests run
# from meson with valgrind as the wrapper, ten times the usual timeouts, and
# their logs go to BUILDDIR/meson-logs/memcheck-valgrind.txt.
#
# What is left out, and why (valgrind 3.19, Debian 12):
#   async-tsan-*,    built with -fsanitize=thread: TSan's runtime cannot run
#   queue-tsan-*     under valgrind.
#   seccomp-*        the launcher installs a seccomp filter and execs the
#                    test: valgrind would check only the launcher, under a
#                    filter that also applies to valgrind's own syscalls, and
#                    the kill runs are meant to die of SIGSYS.
#   faults-*         the EMFILE tests lower RLIMIT_NOFILE: valgrind keeps the
#                    kernel's limit and emulates its own, closing an fd that
#                    accept() returned above it, so the accepted connection
#                    is lost and the test stalls; the limit it leaves low
#                    then fails the tests after it.
#   install          tests/install.sh: a shell script that configures,
#                    builds and installs a second build of the library;
#                    nothing in it is rx code run under memcheck.
#   public-include, exports, exports-services
#                    tests/public-include.sh and tests/exports.sh: shell
#                    scripts that run the compiler and nm on the build; no
#                    rx code runs in them.
#   echo-servers-*   tests/echo-servers.sh: memcheck would check bash (and
#                    finds bash's own leaks), not the servers it starts.
#   the io_uring runs of tests with a second thread or a signal that must
#   wake a loop blocked in io_uring_enter (async, loop, signal, child,
#   queue and faults): valgrind 3.19 runs io_uring_enter as a syscall that
#   does not block, so the thread blocked in it keeps valgrind's lock (no
#   other thread runs) with signals held back: they hang. Their epoll runs
#   are kept (but for faults, above).
#   fork-io_uring    valgrind asserts (m_syswrap/syswrap-generic.c:2450, in
#                    its mmap wrapper) when the forked child maps its new
#                    ring: its address-space map still holds the parent's
#                    ring, which the child did not inherit (MADV_DONTFORK,
#                    backends/io_uring.c).
# Valgrind 3.19 does not know epoll_pwait2 (syscall 441) either: it warns
# once per loop and returns ENOSYS, and the epoll backend then waits with
# epoll_pwait, which is therefore what the epoll runs check here.
# Everything else runs: on both backends io, timer, idle, api, embed,
# periodic, stat, verify and header; on epoll only loop, fork, async,
# signal and queue; the examples' load runs on both (memcheck checks
# echo-client, one thread; the servers it starts run as they are); the
# io_uring and epoll backend tests; timerwheel; the fuzz corpora replays
# (timerwheel, mpsc, and loop and queue on both backends). Their timing
# bounds are generous enough for valgrind's slowdown (a timer may be 750 ms
# late in test-timer).
set -eu

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILDDIR" >&2
  exit 2
fi
build=$1
if [ ! -f "$build/build.ninja" ]; then
  echo "valgrind.sh: $build is not a configured meson build directory" >&2
  exit 2
fi

sh "$(dirname "$0")/deps.sh" valgrind

sanitize=$(meson introspect "$build" --buildoptions | python3 -c '
import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
if [ "$sanitize" != none ]; then
  echo "valgrind.sh: $build is built with -Db_sanitize=$sanitize;" \
    "valgrind needs a build without sanitizers" >&2
  exit 2
fi

# JOBS=N (the Makefile's) caps ninja's and meson test's parallelism.
# shellcheck disable=SC2086
ninja ${JOBS:+-j$JOBS} -C "$build"

# Every test name, less those valgrind cannot run (see above).
tests=$(meson test -C "$build" --no-rebuild --list 2>/dev/null |
  sed 's|.* / ||' | while read -r t; do
    case $t in
    *-tsan-* | seccomp-* | faults-* | install) ;;
    public-include | exports | exports-* | echo-servers-*) ;;
    async-io_uring | loop-io_uring | signal-io_uring | child-io_uring) ;;
    queue-io_uring | fork-io_uring) ;;
    *) echo "$t" ;;
    esac
  done)
if [ -z "$tests" ]; then
  echo "valgrind.sh: no tests in $build" >&2
  exit 1
fi

echo "valgrind.sh: $(valgrind --version), $(echo "$tests" | wc -l) tests"
# $tests is a list of test names: split it into words on purpose.
# shellcheck disable=SC2086
meson test -C "$build" --no-rebuild --print-errorlogs --logbase memcheck \
  ${JOBS:+--num-processes $JOBS} \
  --timeout-multiplier 10 \
  --wrapper 'valgrind --error-exitcode=1 --leak-check=full
             --errors-for-leak-kinds=definite --track-fds=yes --quiet' \
  $tests
