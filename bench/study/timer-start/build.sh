#!/bin/sh
# Builds the timer-start study against the -O2 library of `make bench`
# (build-bench/librx.a): the prototypes as a shared object, as libev is.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/build-bench/study}
mkdir -p "$out"
gcc -O2 -fPIC -std=c11 -Wall -Wextra -shared -o "$out/libproto.so" "$here/proto.c"
gcc -O2 -std=c11 -Wall -Wextra -g -I"$root/reactor" -I"$here" \
    -I"$root/build-bench/reactor" \
    -o "$out/timer-start" "$here/bench.c" \
    -L"$out" -lproto -Wl,-rpath,"$out" \
    "$root/build-bench/librx.a" -luring -lpthread -lev
echo "$out/timer-start"
