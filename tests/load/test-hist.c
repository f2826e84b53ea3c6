/*
 * test-hist.c - examples/load/hist.c, rx-load's latency histogram.
 *
 * Ten million samples from a random mix of distributions (uniform,
 * exponential, log-normal, a Pareto tail, a few fixed spikes and values
 * beyond the range) go into one histogram and, split at random, into two
 * more: every percentile of the first must be within 0.1% of the sorted
 * array's (1 ns below 1024 ns), the mean exact, and the two halves merged
 * must equal the first in every counter. The index math is checked on its
 * own first, at every bucket edge.
 *
 *   test-hist [SAMPLES] [SEED]
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "hist.h"

/* xorshift64*: fast, seeded, the same sequence on every machine. */
static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}
/* Uniform in (0, 1). */
static double unit(void) {
  return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static int64_t sample(void) {
  double u = unit();
  switch (rnd() % 8) {
  case 0: /* uniform, 1 us .. 10 ms */
    return 1000 + (int64_t)(u * 1e7);
  case 1: /* exponential, mean 100 us */
    return (int64_t)(-log(u) * 1e5);
  case 2:
  case 3: { /* log-normal around 50 us, sigma 1 */
    double n = sqrt(-2 * log(u)) * cos(6.283185307179586 * unit());
    return (int64_t)(5e4 * exp(n));
  }
  case 4: /* Pareto tail from 1 ms, alpha 1.2 */
    return (int64_t)(1e6 / pow(u, 1 / 1.2));
  case 5: /* small values, one ns apart */
    return (int64_t)(u * 4096);
  case 6: /* fixed spikes */
    return (int64_t[]){
        0, 1023, 1024, 2047, 2048, 999999999, HIST_MAX}[rnd() % 7];
  default: /* anywhere up to beyond the range */
    return (int64_t)(pow(2, u * 42));
  }
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static void test_index(void) {
  for (int bit = 0; bit < HIST_MAX_BITS; bit++) {
    int64_t edge = INT64_C(1) << bit;
    for (int64_t d = -2; d <= 2; d++) {
      int64_t v = edge + d;
      if (v < 0 || v > HIST_MAX)
        continue;
      unsigned i = hist_index(v);
      CHECK(i < HIST_LEN, "v %" PRId64 " index %u", v, i);
      CHECK(hist_lowest(i) <= v && v <= hist_highest(i),
            "v %" PRId64 " in [%" PRId64 ", %" PRId64 "]", v, hist_lowest(i),
            hist_highest(i));
      if (v >= 1024)
        CHECK((hist_highest(i) - hist_lowest(i)) * 1024 <= v,
              "v %" PRId64 " width %" PRId64, v,
              hist_highest(i) - hist_lowest(i) + 1);
    }
  }
  /* The sub-buckets tile the range: each starts where the last ended. */
  for (unsigned i = 1; i < HIST_LEN; i++)
    CHECK(hist_lowest(i) == hist_highest(i - 1) + 1, "index %u", i);
  CHECK(hist_highest(HIST_LEN - 1) == HIST_MAX, "top %" PRId64,
        hist_highest(HIST_LEN - 1));
  CHECK(sizeof(struct hist) <= 256 * 1024, "size %zu", sizeof(struct hist));
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
  rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15u;
  if (rng_state == 0)
    rng_state = 1;
  test_index();

  int64_t *v = malloc(n * sizeof(*v));
  struct hist *all = malloc(sizeof(*all)), *a = malloc(sizeof(*a)),
              *b = malloc(sizeof(*b));
  if (v == NULL || all == NULL || a == NULL || b == NULL) {
    fprintf(stderr, "test-hist: out of memory\n");
    return 1;
  }
  hist_init(all);
  hist_init(a);
  hist_init(b);
  uint64_t sum = 0, over = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t x = sample();
    hist_record(all, x);
    hist_record(rnd() & 1 ? a : b, x);
    if (x > HIST_MAX) {
      over++;
      x = HIST_MAX; /* what the histogram keeps */
    }
    v[i] = x;
    sum += (uint64_t)x;
  }
  qsort(v, n, sizeof(*v), cmp64);

  CHECK(all->total == n, "total %" PRIu64, all->total);
  CHECK(all->saturated == over, "saturated %" PRIu64 " of %" PRIu64,
        all->saturated, over);
  CHECK(all->sum == sum, "sum");
  CHECK(all->min == v[0] && all->max == v[n - 1], "min/max");
  CHECK(fabs(hist_mean(all) - (double)sum / (double)n) < 1e-6 * hist_mean(all),
        "mean");

  static const double ps[] = {0,    0.001, 0.1,    1,       5,  10, 25,
                              33.3, 50,    66.6,   75,      90, 95, 99,
                              99.9, 99.99, 99.999, 99.9999, 100};
  for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
    double p = ps[k];
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    int64_t want = v[rank == 0 ? 0 : rank - 1];
    int64_t got = hist_percentile(all, p);
    double err = fabs((double)(got - want));
    CHECK(err <= (want >= 1024 ? 0.001 * (double)want : 1.0),
          "p%g: %" PRId64 " ns, sorted array %" PRId64 " ns", p, got, want);
  }
  /* Stdev within 0.1% of the exact one, computed from the array. */
  double mean = (double)sum / (double)n, sq = 0;
  for (size_t i = 0; i < n; i++)
    sq += ((double)v[i] - mean) * ((double)v[i] - mean);
  double sd = sqrt(sq / (double)(n - 1));
  CHECK(fabs(hist_stdev(all) - sd) <= 0.001 * sd, "stdev %g, exact %g",
        hist_stdev(all), sd);

  hist_merge(a, b);
  CHECK(hist_equal(a, all), "merged halves differ from the whole");
  struct hist *e = b;
  hist_init(e);
  hist_merge(e, all); /* into an empty one */
  CHECK(hist_equal(e, all), "merge into empty");
  hist_init(e);
  hist_merge(all, e); /* an empty one changes nothing */
  CHECK(hist_equal(a, all), "merge of empty");
  CHECK(hist_percentile(e, 50) == 0 && hist_mean(e) == 0, "empty");

  free(v);
  free(all);
  free(a);
  free(b);
  if (failures == 0)
    printf("test-hist: %zu samples, percentiles within 0.1%%, merge exact\n",
           n);
  return failures != 0;
}
