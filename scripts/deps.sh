#!/bin/sh
# deps.sh - installs the Debian packages rx builds with, if any is missing.
#
# Run by `make` before every build. It only asks dpkg when nothing is
# missing, so it costs a few milliseconds. As root it installs what is
# missing; otherwise it prints the command to run and fails.
set -eu

# What build/ needs, as `make build`, `make demo` and `make test` configure
# it: the library (liburing; meson, ninja, pkg-config, gcc), the tests
# (cmocka, g++ for the C++ header test; tests/install.sh uses pkg-config),
# and jemalloc for the examples. The library alone needs only the first
# group (README.md, "Installing"). The benchmarks in build/ are built only
# when their libraries are present: `deps.sh bench` installs those.
PKGS="meson ninja-build pkg-config gcc liburing-dev g++ libcmocka-dev \
libjemalloc-dev"
# Wanted but not required: libvirt's development files build the libvirt
# adapter (adapters/libvirt) and its tests, whose throw-away libvirtd comes
# with libvirt-daemon (virsh, in libvirt-clients, for looking at it by hand).
# jansson's development files build the QMP client (adapters/qmp), whose
# tests talk to a real QEMU (qemu-system-x86, started with -machine none).
# Installed with the rest when root; otherwise only named, and those tests
# skip.
OPTIONAL="libvirt-dev libvirt-daemon libvirt-clients libjansson-dev \
qemu-system-x86"
case "${1:-}" in
# `deps.sh fuzz` (make fuzz) also needs clang and its libFuzzer runtime;
# nothing else does: the fuzz replay tests build with gcc.
fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
# `deps.sh coverage` (make coverage) also needs gcovr.
coverage) PKGS="$PKGS gcovr" ;;
# `deps.sh bench` (make bench): google-benchmark for the micro benchmarks,
# the peer libraries (libev, libuv, libevent), ZeroMQ for the event bus's
# comparison (bench/bus), and gnuplot for the plots. bench/http's servers
# and clients (nginx-light, h2o, wrk, h2load of nghttp2-client) are
# optional: installed when root, otherwise named, and the HTTP section
# skips the rows of what is missing.
bench)
  PKGS="$PKGS libbenchmark-dev libev-dev libuv1-dev libevent-dev \
libzmq3-dev gnuplot-nox"
  OPTIONAL="$OPTIONAL nginx-light h2o wrk nghttp2-client"
  ;;
# `deps.sh valgrind` (scripts/valgrind.sh) also needs valgrind.
valgrind) PKGS="$PKGS valgrind" ;;
# `deps.sh format` (make format, make format-check, run by make test):
# clang-format, Debian 12's version 14, whose output .clang-format is tuned to.
format) PKGS="$PKGS clang-format" ;;
"") ;;
*)
  echo "usage: $0 [fuzz|coverage|bench|valgrind|format]" >&2
  exit 2
  ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: not a Debian system; install the equivalents of:" >&2
  echo "deps:   $PKGS" >&2
  echo "deps: continuing; meson will say what it cannot find." >&2
  exit 0
fi

# The packages of the list $1 that dpkg does not have installed.
not_installed() {
  out=""
  for p in $1; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
      out="$out $p"
    fi
  done
  echo "${out# }"
}
missing=$(not_installed "$PKGS")
optional=$(not_installed "$OPTIONAL")

if [ -n "$optional" ] && [ "$(id -u)" -ne 0 ]; then
  echo "deps: not installed (not root): $optional; the tests (and" \
    "benchmark rows) that need them will skip" >&2
  optional=""
fi
missing="$missing${missing:+${optional:+ }}$optional"
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
