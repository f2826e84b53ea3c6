/*
 * hist.c - the log-linear latency histogram of hist.h.
 *
 * Index math, as HdrHistogram's with a unit of 1 ns: a value's bucket is
 * how far its highest set bit lies above the 11 bits of the first bucket
 * (b = bit length of (v | 2047) - 11), its sub-bucket v >> b, which is in
 * [1024, 2048) for every bucket but the first. Since the lower half of each
 * later bucket would repeat the upper half of the bucket below, only the
 * upper half gets counters: index = b * 1024 + (v >> b), one array of
 * (buckets + 1) * 1024 counters, in value order.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h) {
  memset(h, 0, sizeof(*h));
  h->min = INT64_MAX;
}

unsigned hist_index(int64_t ns) {
  uint64_t v = (uint64_t)ns;
  unsigned bucket =
      64 - (unsigned)__builtin_clzll(v | (HIST_SUB_COUNT - 1)) - HIST_SUB_BITS;
  return (bucket << (HIST_SUB_BITS - 1)) + (unsigned)(v >> bucket);
}

int64_t hist_lowest(unsigned index) {
  if (index < HIST_SUB_COUNT)
    return index;
  unsigned bucket = (index >> (HIST_SUB_BITS - 1)) - 1;
  uint64_t sub = (index & (HIST_SUB_HALF - 1)) + HIST_SUB_HALF;
  return (int64_t)(sub << bucket);
}

int64_t hist_highest(unsigned index) {
  if (index < HIST_SUB_COUNT)
    return index;
  unsigned bucket = (index >> (HIST_SUB_BITS - 1)) - 1;
  return hist_lowest(index) + (INT64_C(1) << bucket) - 1;
}

void hist_record_n(struct hist *h, int64_t ns, uint64_t n) {
  if (n == 0)
    return;
  if (ns < 0)
    ns = 0;
  if (ns > HIST_MAX) {
    ns = HIST_MAX;
    h->saturated += n;
  }
  h->counts[hist_index(ns)] += n;
  h->total += n;
  h->sum += (uint64_t)ns * n;
  if (ns < h->min)
    h->min = ns;
  if (ns > h->max)
    h->max = ns;
}

void hist_record(struct hist *h, int64_t ns) {
  hist_record_n(h, ns, 1);
}

void hist_merge(struct hist *to, const struct hist *from) {
  if (from->total == 0)
    return;
  for (unsigned i = 0; i < HIST_LEN; i++)
    to->counts[i] += from->counts[i];
  to->total += from->total;
  to->saturated += from->saturated;
  to->sum += from->sum;
  if (from->min < to->min)
    to->min = from->min;
  if (from->max > to->max)
    to->max = from->max;
}

bool hist_equal(const struct hist *a, const struct hist *b) {
  return a->total == b->total && a->saturated == b->saturated &&
         a->sum == b->sum && a->min == b->min && a->max == b->max &&
         memcmp(a->counts, b->counts, sizeof(a->counts)) == 0;
}

int64_t hist_percentile(const struct hist *h, double p) {
  if (h->total == 0)
    return 0;
  if (p <= 0)
    return h->min;
  if (p >= 100)
    return h->max;
  /* The rank of the sample sought, 1-based: ceil(p% of total). */
  uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
  if (rank < 1)
    rank = 1;
  if (rank > h->total)
    rank = h->total;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_LEN; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      int64_t v = hist_highest(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

uint64_t hist_count_upto(const struct hist *h, int64_t ns) {
  if (ns < 0)
    return 0;
  if (ns >= h->max)
    return h->total;
  uint64_t n = 0;
  for (unsigned i = 0, last = hist_index(ns); i <= last; i++)
    n += h->counts[i];
  return n;
}

double hist_mean(const struct hist *h) {
  return h->total != 0 ? (double)h->sum / (double)h->total : 0;
}

/* The middle of a sub-bucket, as the value its samples stand for. */
static double middle(unsigned i) {
  return ((double)hist_lowest(i) + (double)hist_highest(i)) / 2;
}

double hist_stdev(const struct hist *h) {
  if (h->total < 2)
    return 0;
  double mean = hist_mean(h), sq = 0;
  for (unsigned i = 0; i < HIST_LEN; i++) {
    if (h->counts[i] != 0) {
      double d = middle(i) - mean;
      sq += d * d * (double)h->counts[i];
    }
  }
  return sqrt(sq / (double)(h->total - 1));
}

double hist_within(const struct hist *h, double lo, double hi) {
  if (h->total == 0)
    return 0;
  uint64_t in = 0;
  for (unsigned i = 0; i < HIST_LEN; i++) {
    double m = middle(i);
    if (h->counts[i] != 0 && m >= lo && m <= hi)
      in += h->counts[i];
  }
  return 100.0 * (double)in / (double)h->total;
}
