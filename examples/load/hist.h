/*
 * hist.h - rx-load's latency histogram: constant memory, log-linear, in the
 * layout of HdrHistogram (Gil Tene's), written for rx-load.
 *
 * Values are nanoseconds from 0 to HIST_MAX (2^40 - 1 ns, about 18 min 19
 * s); a larger value is recorded as HIST_MAX and counted in `saturated`.
 * The range is cut into buckets that each double the one before, and each
 * bucket into 1024 equal sub-buckets (2048 in the first, which covers 0 to
 * 2047 ns one ns apart). A value v >= 1024 ns therefore shares its
 * sub-bucket with values at most v / 1024 away: every figure read back is
 * within 0.1% of the value recorded (three significant digits), and the
 * value reported for a sub-bucket is its highest, so a latency is never
 * understated. Below 1024 ns the error is under 1 ns.
 *
 * The whole histogram is one struct of fixed size (under 256 KiB: the
 * counts of 31 buckets of 1024 sub-buckets, 8 bytes each); recording is an
 * index computation and an increment, with no allocation. Everything but
 * min, max and the sum is derived from the counts, and merging adds counts
 * and sums and takes the smaller min and the larger max, so a merged
 * histogram is exactly the one that would have recorded every sample
 * itself (hist_equal() compares two).
 *
 * Not thread-safe: one histogram per thread, merged once they are done.
 */
#ifndef RX_LOAD_HIST_H
#define RX_LOAD_HIST_H

#include <stdbool.h>
#include <stdint.h>

#define HIST_SUB_BITS 11 /* 2048 sub-buckets: 3 significant digits */
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_SUB_HALF (HIST_SUB_COUNT / 2)
#define HIST_MAX_BITS 40
#define HIST_MAX ((INT64_C(1) << HIST_MAX_BITS) - 1)
/* Buckets: the first covers [0, 2048), bucket b >= 1 [1024 << b,
 * 2048 << b); the last must reach HIST_MAX. */
#define HIST_BUCKETS (HIST_MAX_BITS - HIST_SUB_BITS + 1)
#define HIST_LEN ((HIST_BUCKETS + 1) * HIST_SUB_HALF)

struct hist {
  uint64_t total;     /* samples recorded */
  uint64_t saturated; /* of which above HIST_MAX, recorded as HIST_MAX */
  uint64_t sum;       /* of the values recorded, exact (ns) */
  int64_t min, max;   /* exact; min INT64_MAX while empty */
  uint64_t counts[HIST_LEN];
};

/* Empties h. */
void hist_init(struct hist *h);
/* Records one value in ns (negative: 0). */
void hist_record(struct hist *h, int64_t ns);
/* Records `n` samples of one value. */
void hist_record_n(struct hist *h, int64_t ns, uint64_t n);
/* Adds every sample of `from` to `to`. */
void hist_merge(struct hist *to, const struct hist *from);
/* Whether a and b hold the same samples. */
bool hist_equal(const struct hist *a, const struct hist *b);
/* The value at percentile p (0..100): the smallest recorded value (as its
 * sub-bucket's highest, capped at max) that at least p% of the samples do
 * not exceed; p 0 gives min, p 100 max. 0 for an empty histogram. */
int64_t hist_percentile(const struct hist *h, double p);
/* How many samples are at most `ns` (at sub-bucket grain). */
uint64_t hist_count_upto(const struct hist *h, int64_t ns);
/* Mean (exact) and standard deviation (from the sub-buckets' middles). */
double hist_mean(const struct hist *h);
double hist_stdev(const struct hist *h);
/* The share (0..100) of samples within [lo, hi]; at sub-bucket grain. */
double hist_within(const struct hist *h, double lo, double hi);

/* The index of a value's sub-bucket, and back to its lowest and highest
 * value: exposed for the tests. */
unsigned hist_index(int64_t ns);
int64_t hist_lowest(unsigned index);
int64_t hist_highest(unsigned index);

#endif /* RX_LOAD_HIST_H */
