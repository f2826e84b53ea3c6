import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1] if len(sys.argv)>1 else 'results.csv')))
groups = {}
for r in rows:
    k = (int(r['pipes']), int(r['active']), r['mode'])
    groups.setdefault(k, []).append(r)
order = ['epoll','epw','poll1','pollm']
print("P     active mode   n  run_us_med [min..max of per-proc medians]  us/hop  waits/hop  syscalls/hop  cpu_ns/hop(med) ev/wait  eagain zero iou-wrk setup_us")
for P in (1000,9000):
  for a in (100,1):
    for m in order:
        g = groups.get((P,a,m))
        if not g: continue
        med = [float(x['median_run_us']) for x in g]
        hops = float(g[0]['hops_per_run'])
        cpu = [float(x['cpu_ns_per_hop']) for x in g]
        print(f"{P:5d} {a:4d}  {m:6s} {len(g)} {st.median(med):10.1f} [{min(med):.1f}..{max(med):.1f}]  {st.median(med)*1000/hops:7.0f}ns {float(g[0]['waits_per_hop']):.4f} {float(g[0]['syscalls_per_hop']):.4f} {st.median(cpu):7.0f} [{min(cpu):.0f}..{max(cpu):.0f}] {float(g[0]['events_per_wait']):6.1f} {sum(int(x['eagain_res']) for x in g)} {sum(int(x['zero_res']) for x in g)} {max(int(x['iou_wrk']) for x in g)} {st.median(float(x['setup_us']) for x in g):.0f}")
