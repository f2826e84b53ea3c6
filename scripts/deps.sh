#!/bin/sh
# deps.sh - installs the Debian packages rx builds with, if any is missing.
#
# Run by `make` before every build. It only asks dpkg when nothing is
# missing, so it costs a few milliseconds. As root it installs what is
# missing; otherwise it prints the command to run and fails.
set -eu

PKGS="meson ninja-build pkg-config gcc g++ liburing-dev libev-dev \
libjemalloc-dev libcmocka-dev libbenchmark-dev libuv1-dev"
# `deps.sh fuzz` (make fuzz) also needs clang and its libFuzzer runtime;
# nothing else does: the fuzz replay tests build with gcc.
if [ "${1:-}" = fuzz ]; then
  PKGS="$PKGS clang libclang-rt-14-dev"
fi
# `deps.sh coverage` (make coverage) also needs gcovr.
if [ "${1:-}" = coverage ]; then
  PKGS="$PKGS gcovr"
fi
# `deps.sh bench` (make bench) also needs the other peer library, libevent
# (libev and libuv are in the list above), and gnuplot for the plots.
if [ "${1:-}" = bench ]; then
  PKGS="$PKGS libevent-dev gnuplot-nox"
fi
# `deps.sh valgrind` (scripts/valgrind.sh) also needs valgrind.
if [ "${1:-}" = valgrind ]; then
  PKGS="$PKGS valgrind"
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: not a Debian system; install the equivalents of:" >&2
  echo "deps:   $PKGS" >&2
  echo "deps: continuing; meson will say what it cannot find." >&2
  exit 0
fi

missing=""
for p in $PKGS; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing="$missing $p"
  fi
done
missing=${missing# }

if [ -z "$missing" ]; then
  exit 0
fi

echo "deps: missing Debian packages: $missing"
if [ "$(id -u)" -eq 0 ]; then
  apt-get update
  # $missing is a list of package names: split it into words on purpose.
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    $missing
else
  echo "deps: run this as root, then make again:" >&2
  echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive" \
    "apt-get install -y --no-install-recommends $missing" >&2
  exit 1
fi
