#!/bin/bash
# Steady-state instructions per start of each implementation: the inclusive
# instruction count of its start function in a 100-batch run minus that of a
# 50-batch run, divided by 50 * 4096 starts.
#   bench/study/timer-start/cg.sh [N] [builddir]
set -e
N=${1:-10000}
here=$(cd "$(dirname "$0")" && pwd)
out=${2:-$(cd "$here/../../.." && pwd)/build-bench/study}
cd "$out"
names=(libev "rx(2^19)" "rx(2^20)" floor "arr(3)" "list(5a)" "hlist(5b)" "defer(5c)" "defer+flush" arr-lean list-lean hlist-lean arr-min list-min hlist-min)
fns=(ev_timer_start rx_timer_start rx_timer_start pt_floor_start pt_arr_start pt_list_start pt_hlist_start pt_defer_start pt_defer_flush pt_arrL_start pt_listL_start pt_hlistL_start pt_arrM_start pt_listM_start pt_hlistM_start)
for k in 0 1 2 3 4 5 6 7 9 10 11 12 13 14 8; do
  for nb in 50 100; do
    valgrind --tool=callgrind --callgrind-out-file=cg.$k.$nb.out \
      ./timer-start cg $k "$N" $nb >/dev/null 2>&1
    v[$nb]=$(callgrind_annotate --inclusive=yes cg.$k.$nb.out 2>/dev/null |
      grep -E "^ *[0-9,]+ .*:${fns[$k]} " | head -1 |
      awk '{gsub(",","",$1); print $1}')
  done
  echo "${names[$k]} ${fns[$k]} $(echo "scale=2; (${v[100]}-${v[50]})/(50*4096)" | bc)"
done
