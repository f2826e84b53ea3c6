#!/bin/bash
# Interleaved repetitions of the four loops, batched and serial chains, both
# sizes; one CSV line per process, then the summary table.
#   bench/study/readiness/run.sh [results.csv]
set -e
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$(cd "$here/../../.." && pwd)/build-bench/study}
out=${1:-results.csv}
echo "rep,mode,pipes,active,writes,runs,median_run_us,min_run_us,max_run_us,hops_per_run,waits_per_hop,syscalls_per_hop,cpu_ns_per_hop,events_per_wait,zero_res,eagain_res,iou_wrk,setup_us" > "$out"
for rep in $(seq 1 "${REPS:-7}"); do
  for P in 1000 9000; do
    for cfg in "-a 100 -w 1000 -r 25" "-a 1 -w 20000 -r 9"; do
      for m in epoll poll1 epw pollm; do
        line=$("$bin/epw" $m -p $P $cfg -f "${FLAGS:-d}" 2>/dev/null) || line="$m,FAILED"
        echo "$rep,$line" >> "$out"
      done
    done
  done
done
python3 "$here/summarize.py" "$out"
