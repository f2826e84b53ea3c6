#!/bin/sh
# Builds the study against a tree's -O2 library (build-bench/librx.a, from
# `make bench` or the bench target's meson setup), its wheel compiled in for
# `work`: bench/study/wheel-spread/build.sh [tree] [out]
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(cd "$here/../../.." && pwd)}
out=${2:-$root/build-bench/study}
mkdir -p "$out"
gcc -O2 -std=c11 -Wall -Wextra -g -I"$root/reactor" -I"$root/build-bench" \
    -o "$out/wheel-spread" "$here/study.c" \
    "$root/build-bench/librx.a" -luring -lpthread
echo "$out/wheel-spread"
