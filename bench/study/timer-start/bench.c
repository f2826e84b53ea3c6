/* bench.c - timer_start/N: libev vs rx vs prototypes, interleaved, one process.
 * usage: timer-start [reps] [seconds]   -> table
 *        timer-start cg IMPL N BATCHES  -> only IMPL, for callgrind      */
#define _GNU_SOURCE
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "rx.h"
#include "proto.h"

#define BATCH 4096
#define NOINL __attribute__((noinline))

static uint64_t sm_state;
static uint64_t splitmix(void) {
  uint64_t z = (sm_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int64_t *delays(size_t n, uint64_t seed) {
  int64_t *d = malloc(n * sizeof *d);
  sm_state = seed;
  const int64_t lo = 1000000000LL, hi = 60000000000LL;
  for (size_t i = 0; i < n; i++)
    d[i] = lo + (int64_t)(splitmix() % (uint64_t)(hi - lo + 1));
  return d;
}
static inline uint64_t nsnow(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t *dact, *dfresh;
static size_t N;
static double target_ns = 0.3e9;

/* ---- libev */
static struct ev_loop *evl;
static ev_timer *ev_act, *ev_fresh;
static void evt_cb(struct ev_loop *l, ev_timer *w, int r) { (void)l; (void)w; (void)r; }
static void ev_setup(void) {
  evl = ev_loop_new(EVFLAG_AUTO);
  ev_act = calloc(N, sizeof *ev_act);
  ev_fresh = calloc(BATCH, sizeof *ev_fresh);
  for (size_t i = 0; i < N; i++) {
    ev_timer_init(&ev_act[i], evt_cb, dact[i] / 1e9, 0.);
    ev_timer_start(evl, &ev_act[i]);
  }
  for (size_t i = 0; i < BATCH; i++)
    ev_timer_init(&ev_fresh[i], evt_cb, dfresh[i] / 1e9, 0.);
}
static NOINL void ev_batch(void) {
  for (size_t i = 0; i < BATCH; i++)
    ev_timer_start(evl, &ev_fresh[i]);
}
static void ev_reset(void) {
  for (size_t i = 0; i < BATCH; i++) {
    if (!ev_is_active(&ev_fresh[i])) { fprintf(stderr, "ev not active\n"); exit(1); }
    ev_timer_stop(evl, &ev_fresh[i]);
    ev_timer_set(&ev_fresh[i], dfresh[i] / 1e9, 0.);
  }
}
static void ev_teardown(void) {
  for (size_t i = 0; i < N; i++) ev_timer_stop(evl, &ev_act[i]);
  ev_loop_destroy(evl); free(ev_act); free(ev_fresh);
}

/* ---- rx (two instances: default tick 2^19 as built, and tick 2^20) */
struct rxctx { rx_loop *loop; rx_timer *act, *fresh; int64_t tick; };
static struct rxctx rx19 = {.tick = 0}, rx20 = {.tick = 1 << 20};
static void rx_cb(rx_loop *l, rx_timer *w, int r) { (void)l; (void)w; (void)r; }
static void rx_setup(struct rxctx *c) {
  struct rx_loop_options o; memset(&o, 0, sizeof o); o.timer_tick = c->tick;
  int rc = rx_loop_new(&c->loop, &o);
  if (rc) { fprintf(stderr, "rx_loop_new %d\n", rc); exit(1); }
  c->act = calloc(N, sizeof(rx_timer)); c->fresh = calloc(BATCH, sizeof(rx_timer));
  for (size_t i = 0; i < N; i++) {
    rx_timer_init(&c->act[i], rx_cb, dact[i], 0);
    if (rx_timer_start(c->loop, &c->act[i])) exit(2);
  }
  for (size_t i = 0; i < BATCH; i++) rx_timer_init(&c->fresh[i], rx_cb, dfresh[i], 0);
}
static NOINL void rx_batch(struct rxctx *c) {
  rx_loop *l = c->loop; rx_timer *f = c->fresh;
  for (size_t i = 0; i < BATCH; i++)
    rx_timer_start(l, &f[i]);
}
static void rx_reset(struct rxctx *c) {
  for (size_t i = 0; i < BATCH; i++) {
    if (!rx_is_active(&c->fresh[i])) { fprintf(stderr, "rx not active\n"); exit(1); }
    rx_timer_stop(c->loop, &c->fresh[i]);
    rx_timer_set(&c->fresh[i], dfresh[i], 0);
  }
}
static void rx_teardown(struct rxctx *c) {
  for (size_t i = 0; i < N; i++) rx_timer_stop(c->loop, &c->act[i]);
  rx_loop_free(c->loop); free(c->act); free(c->fresh);
}

/* ---- prototypes */
typedef int (*pt_fn)(pt_loop *, pt_timer *);
struct ptctx {
  const char *name; pt_fn start, stop; int flush; /* 1: defer, 2: defer+flush timed */
  pt_loop *L; pt_timer *act, *fresh;
};
static void pt_setup(struct ptctx *c) {
  c->L = aligned_alloc(64, (sizeof(pt_loop) + 63) / 64 * 64);
  pt_loop_init(c->L, 20);
  c->L->now_rel = 12345; /* some arbitrary loop time since origin */
  c->act = aligned_alloc(64, N * sizeof(pt_timer));
  c->fresh = aligned_alloc(64, BATCH * sizeof(pt_timer));
  for (size_t i = 0; i < N; i++) {
    pt_timer_init(&c->act[i], NULL, dact[i], 0);
    c->start(c->L, &c->act[i]);
  }
  if (c->flush) pt_defer_flush(c->L);
  for (size_t i = 0; i < BATCH; i++) pt_timer_init(&c->fresh[i], NULL, dfresh[i], 0);
}
/* One function per variant so that each start is a direct (PLT) call. */
#define PT_BATCH(name, fn) \
  static NOINL void name(struct ptctx *c) { \
    pt_loop *L = c->L; pt_timer *f = c->fresh; \
    for (size_t i = 0; i < BATCH; i++) fn(L, &f[i]); }
PT_BATCH(floor_batch, pt_floor_start)
PT_BATCH(arr_batch, pt_arr_start)
PT_BATCH(list_batch, pt_list_start)
PT_BATCH(hlist_batch, pt_hlist_start)
PT_BATCH(defer_batch, pt_defer_start)
PT_BATCH(arrL_batch, pt_arrL_start)
PT_BATCH(listL_batch, pt_listL_start)
PT_BATCH(hlistL_batch, pt_hlistL_start)
PT_BATCH(arrM_batch, pt_arrM_start)
PT_BATCH(listM_batch, pt_listM_start)
PT_BATCH(hlistM_batch, pt_hlistM_start)
static NOINL void deferflush_batch(struct ptctx *c) { defer_batch(c); pt_defer_flush(c->L); }

static void pt_reset(struct ptctx *c) {
  for (size_t i = 0; i < BATCH; i++) {
    if (!(c->fresh[i].word >> PT_AT_BITS & PT_ACTIVE)) { fprintf(stderr, "%s not active\n", c->name); exit(1); }
    c->stop(c->L, &c->fresh[i]);
    pt_timer_set(&c->fresh[i], dfresh[i], 0);
  }
}

enum { I_EV, I_RX19, I_RX20, I_FLOOR, I_ARR, I_LIST, I_HLIST, I_DEFER, I_DEFERFLUSH, I_ARRL, I_LISTL, I_HLISTL, I_ARRM, I_LISTM, I_HLISTM, NIMPL };
static const char *names[NIMPL] = {"libev", "rx(2^19)", "rx(2^20)", "floor", "arr(3)",
                                   "list(5a)", "hlist(5b)", "defer(5c)", "defer+flush", "arr-lean", "list-lean", "hlist-lean", "arr-min", "list-min", "hlist-min"};
static struct ptctx pts[NIMPL] = {
  [I_FLOOR] = {"floor", pt_floor_start, pt_floor_stop, 0},
  [I_ARR] = {"arr", pt_arr_start, pt_arr_stop, 0},
  [I_LIST] = {"list", pt_list_start, pt_list_stop, 0},
  [I_HLIST] = {"hlist", pt_hlist_start, pt_hlist_stop, 0},
  [I_DEFER] = {"defer", pt_defer_start, pt_defer_stop, 1},
  [I_DEFERFLUSH] = {"defer+flush", pt_defer_start, pt_defer_stop, 1},
  [I_ARRL] = {"arr-lean", pt_arrL_start, pt_arr_stop, 0},
  [I_LISTL] = {"list-lean", pt_listL_start, pt_list_stop, 0},
  [I_HLISTL] = {"hlist-lean", pt_hlistL_start, pt_hlist_stop, 0},
  [I_ARRM] = {"arr-min", pt_arrM_start, pt_arr_stop, 0},
  [I_LISTM] = {"list-min", pt_listM_start, pt_list_stop, 0},
  [I_HLISTM] = {"hlist-min", pt_hlistM_start, pt_hlist_stop, 0},
};

static void batch(int k) {
  switch (k) {
  case I_EV: ev_batch(); break;
  case I_RX19: rx_batch(&rx19); break;
  case I_RX20: rx_batch(&rx20); break;
  case I_FLOOR: floor_batch(&pts[k]); break;
  case I_ARR: arr_batch(&pts[k]); break;
  case I_LIST: list_batch(&pts[k]); break;
  case I_HLIST: hlist_batch(&pts[k]); break;
  case I_DEFER: defer_batch(&pts[k]); break;
  case I_DEFERFLUSH: deferflush_batch(&pts[k]); break;
  case I_ARRL: arrL_batch(&pts[k]); break;
  case I_LISTL: listL_batch(&pts[k]); break;
  case I_HLISTL: hlistL_batch(&pts[k]); break;
  case I_ARRM: arrM_batch(&pts[k]); break;
  case I_LISTM: listM_batch(&pts[k]); break;
  case I_HLISTM: hlistM_batch(&pts[k]); break;
  }
}
static void reset(int k) {
  switch (k) {
  case I_EV: ev_reset(); break;
  case I_RX19: rx_reset(&rx19); break;
  case I_RX20: rx_reset(&rx20); break;
  default: pt_reset(&pts[k]);
  }
}
static void setup(int k) {
  switch (k) {
  case I_EV: ev_setup(); break;
  case I_RX19: rx_setup(&rx19); break;
  case I_RX20: rx_setup(&rx20); break;
  default: pt_setup(&pts[k]);
  }
}
static void teardown(int k) {
  switch (k) {
  case I_EV: ev_teardown(); break;
  case I_RX19: rx_teardown(&rx19); break;
  case I_RX20: rx_teardown(&rx20); break;
  default: {
    struct ptctx *c = &pts[k];
    if ((k == I_ARR || k == I_ARRL || k == I_ARRM) && pt_arr_validate(c->L)) { fprintf(stderr, "arr invalid\n"); exit(3); }
    for (size_t i = 0; i < N; i++) c->stop(c->L, &c->act[i]);
    if (c->L->activecnt || (k < I_ARRL && c->L->count)) { fprintf(stderr, "%s count %zu\n", c->name, c->L->count); exit(3); }
    for (int s = 0; s < PT_NLISTS; s++) free(c->L->slots[s].v);
    free(c->L); free(c->act); free(c->fresh);
  }
  }
}

static double measure(int k) {
  uint64_t total = 0, starts = 0;
  while (total < target_ns) {
    uint64_t t0 = nsnow();
    batch(k);
    uint64_t t1 = nsnow();
    total += t1 - t0; starts += BATCH;
    reset(k);
  }
  return (double)total / (double)starts;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "cg")) {
    int k = atoi(argv[2]); N = (size_t)atol(argv[3]); int nb = atoi(argv[4]);
    dact = delays(N, 0xAC71FEu); dfresh = delays(BATCH, 0xF5E5Bu);
    setup(k);
    for (int b = 0; b < nb; b++) { batch(k); reset(k); }
    teardown(k);
    printf("%s N=%zu starts timed=%d\n", names[k], N, nb * BATCH);
    return 0;
  }
  int reps = argc > 1 ? atoi(argv[1]) : 9;
  if (argc > 2) target_ns = atof(argv[2]) * 1e9;
  size_t ns[] = {10000, 100000};
  printf("timer_start/N, batch %d, ~%.2f s per measurement, %d interleaved reps\n",
         BATCH, target_ns / 1e9, reps);
  for (int ni = 0; ni < 2; ni++) {
    N = ns[ni];
    dact = delays(N, 0xAC71FEu); dfresh = delays(BATCH, 0xF5E5Bu);
    for (int k = 0; k < NIMPL; k++) setup(k);
    for (int k = 0; k < NIMPL; k++) measure(k); /* warm up: capacities, caches */
    double r[NIMPL][64];
    for (int rep = 0; rep < reps; rep++)
      for (int k = 0; k < NIMPL; k++) r[k][rep] = measure(k);
    double med[NIMPL];
    for (int k = 0; k < NIMPL; k++) { qsort(r[k], reps, sizeof(double), cmpd); med[k] = r[k][reps / 2]; }
    printf("\nN=%zu\n%-12s %8s %8s %8s %8s\n", N, "impl", "median", "min", "max", "x libev");
    for (int k = 0; k < NIMPL; k++)
      printf("%-12s %8.3f %8.3f %8.3f %8.3f\n", names[k], med[k], r[k][0], r[k][reps - 1], med[k] / med[I_EV]);
    for (int k = 0; k < NIMPL; k++) teardown(k);
    free(dact); free(dfresh);
  }
  return 0;
}
