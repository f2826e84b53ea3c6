#!/bin/sh
# Builds the readiness study into <out> (default build-bench/study).
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(cd "$here/../../.." && pwd)/build-bench/study}
mkdir -p "$out"
gcc -O2 -Wall -std=gnu11 -o "$out/epw" "$here/epw.c" -luring
gcc -O2 -Wall -std=gnu11 -o "$out/epw-semantics" "$here/semantics.c" -luring -lpthread
echo "$out/epw"
