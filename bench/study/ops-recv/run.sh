#!/bin/sh
# bench/study/ops-recv/run.sh <build-bench dir> [passes]: builds
# peer_liburing.c with recv-modes.patch applied (MODE=0 plain RECV, 1 RECV
# with IORING_RECVSEND_POLL_FIRST, 2 multishot RECV on a provided buffer
# ring), then runs pipe_chain at 1,000 and 9,000 pairs under each mode, rx's
# --ops and libev, interleaved, and prints the median run_us of each.
set -eu
build=${1:?usage: $0 <build-bench dir> [passes]}
passes=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
top=$here/../../..
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$top/bench/peers/peer_liburing.c" "$work/exp.c"
(cd "$work" && patch -s exp.c <"$here/recv-modes.patch")
cc -O2 -D_GNU_SOURCE -I"$top/bench/peers" -o "$work/exp" \
  "$top/bench/peers/peer_main.c" "$work/exp.c" -luring -lpthread
peers=$build/bench/peers
for n in 1000 9000; do
  for p in $(seq "$passes"); do
    for m in 0 1 2; do
      MODE=$m "$work/exp" pipe_chain --pipes "$n" | sed -n "s/.*run_us,\([0-9.]*\),.*/$n liburing-mode$m \1/p"
    done
    "$peers/peer_libev" pipe_chain --pipes "$n" | sed -n "s/.*run_us,\([0-9.]*\),.*/$n libev \1/p"
    RX_BACKEND=io_uring "$peers/peer_rx" pipe_chain --pipes "$n" --ops |
      sed -n "s/.*run_us,\([0-9.]*\),.*/$n rx-ops \1/p"
  done
done | sort -k1,1n -k2,2 | awk '
  { k = $1 " " $2; v[k] = v[k] " " $3; c[k]++ }
  END { for (k in v) { n = split(substr(v[k], 2), a, " ");
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
          printf "%-22s median run_us %8.0f  (%d runs)\n", k, a[int((n + 1) / 2)], n } }' | sort
