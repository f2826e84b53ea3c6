/* study.c - the work of one timer wheel advance at 1,000,000 timers, and
 * instruction counts of timer start, stop and fire for callgrind.
 *
 *   wheel-spread work [N]        the wheel alone (reactor/timerwheel.c, built
 *                                in), N entries due in 1..1000 ms at the
 *                                default tick, advanced where rx__tw_next()
 *                                says, as the loop does; prints the most
 *                                entries one advance moved down or handed out
 *   wheel-spread cg start|stop|fire N
 *                                the library on a manual clock: N timers of
 *                                1..1000 ms started; then stopped, or run
 *                                until all fired (1 ms steps); for callgrind
 *
 * Entries moved down by an advance are counted as the growth of level 0,
 * its stage and `expired`, plus what was handed out, from the wheel's own
 * counts (exact here: nothing is deleted). Built against either wheel, with
 * or without the stage (RX__TW_STAGE). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rx.h"
#include "timerwheel.h"

static uint64_t sm_state;
static uint64_t splitmix(void) {
  uint64_t z = (sm_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int64_t delay_ms(void) {
  return 1 + (int64_t)(splitmix() % 1000);
}

static uint64_t nsnow(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Entries in level 0, on its stage and on `expired`. */
static size_t lower(const struct rx__tw *tw) {
  size_t n = tw->nexpired;
  for (unsigned s = 0; s < RX__TW_SLOTS; s++) {
    n += tw->count0[s];
#ifdef RX__TW_STAGE
    n += tw->count_stage[s];
#endif
  }
  return n;
}

static int work(size_t n) {
  struct rx__tw_entry *e = calloc(n, sizeof *e);
  struct rx__tw tw;
  size_t most = 0, most_fired = 0, advances = 0, fired = 0;
  uint64_t worst_ns = 0, *ns = calloc(n + 1, sizeof *ns);
  size_t *did = calloc(n + 1, sizeof *did);

  if (!e || !ns || !did)
    return 1;
  sm_state = 42;
  rx__tw_init(&tw, 0, 19);
  for (size_t i = 0; i < n; i++)
    rx__tw_add(&tw, &e[i], delay_ms() * 1000000);
  while (rx__tw_count(&tw) > 0) {
    int64_t now = rx__tw_next(&tw);
    struct rx__link out, *link;
    size_t before = lower(&tw), k = 0, done;
    uint64_t t0 = nsnow(), dt;

    rx__list_init(&out);
    rx__tw_advance(&tw, now, &out);
    dt = nsnow() - t0;
    while ((link = rx__list_shift(&out)) != NULL)
      k++;
    done = lower(&tw) + k - before + k;
    most = done > most ? done : most;
    most_fired = k > most_fired ? k : most_fired;
    worst_ns = dt > worst_ns ? dt : worst_ns;
    ns[advances] = dt;
    did[advances] = done;
    fired += k;
    advances++;
  }
  printf("entries %zu advances %zu fired %zu\n", n, advances, fired);
  printf("most work in one advance (moved down + handed out): %zu\n", most);
  printf("most handed out by one advance: %zu\n", most_fired);
  printf("longest advance: %.0f us (thread CPU time)\n", worst_ns / 1e3);
  /* The five longest, with their work: noise, or work? */
  for (int k = 0; k < 5; k++) {
    size_t at = 0;
    for (size_t i = 1; i < advances; i++)
      at = ns[i] > ns[at] ? i : at;
    printf("  advance %zu: %.0f us, work %zu\n", at, ns[at] / 1e3, did[at]);
    ns[at] = 0;
  }
  free(ns);
  free(did);
  free(e);
  return 0;
}

static size_t cg_fired;
static void cg_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop, (void)w, (void)revents;
  cg_fired++;
}

static int cg(const char *what, size_t n) {
  struct rx_loop_options opts;
  rx_loop *loop;
  rx_timer *t = calloc(n, sizeof *t);

  memset(&opts, 0, sizeof opts);
  opts.flags = RX_LOOP_MANUAL_CLOCK;
  if (!t || rx_loop_new(&loop, &opts) != 0)
    return 1;
  sm_state = 42;
  for (size_t i = 0; i < n; i++) {
    rx_timer_init(&t[i], cg_cb, RX_MSEC(delay_ms()), 0);
    rx_timer_start(loop, &t[i]);
  }
  if (strcmp(what, "stop") == 0) {
    for (size_t i = 0; i < n; i++)
      rx_timer_stop(loop, &t[i]);
  } else if (strcmp(what, "fire") == 0) {
    while (cg_fired < n) {
      rx_clock_advance(loop, RX_MSEC(1));
      rx_run(loop, RX_RUN_NOWAIT);
    }
  }
  printf("%s %zu fired %zu\n", what, n, cg_fired);
  rx_loop_free(loop);
  free(t);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "work") == 0)
    return work(argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000);
  if (argc >= 4 && strcmp(argv[1], "cg") == 0)
    return cg(argv[2], strtoul(argv[3], NULL, 10));
  fprintf(stderr, "usage: wheel-spread work [N] | cg start|stop|fire N\n");
  return 2;
}
