/*
 * test-timerwheel.c - tests of reactor/timerwheel.c.
 *
 * Unit cases pin down each point of the wheel's contract (never early, at
 * most one tick late, ties in insertion order across levels, cascades and
 * the overflow, re-adding from the output, rx__tw_next() never spinning),
 * then a model test runs a few million random operations against a plain
 * array of (deadline, seq) and checks every advance exactly. A fixed seed
 * and a xorshift generator make every run the same.
 */
/* cmocka.h needs these four before it, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx.h" /* RX_SEC, RX_MSEC */
#include "timerwheel.h"

/* The entry word's two parts: the user's 6 bits and the relative deadline. */
static unsigned ent_flags(const struct rx__tw_entry *e) {
  return (unsigned)(e->word >> RX__TW_AT_BITS);
}
static void ent_set_flags(struct rx__tw_entry *e, unsigned flags) {
  e->word = (e->word & RX__TW_AT_MASK) | ((uint64_t)flags << RX__TW_AT_BITS);
}
static uint64_t ent_rel(const struct rx__tw_entry *e) {
  return e->word & RX__TW_AT_MASK;
}
static void ent_set_rel(struct rx__tw_entry *e, uint64_t rel) {
  e->word = (e->word & ~RX__TW_AT_MASK) | rel;
}

#define MAX_REL ((UINT64_C(1) << 58) - 1)
#define US 1000

struct item {
  struct rx__tw_entry ent;
  int64_t deadline; /* as the wheel must see it: clamped to its range */
  uint64_t seq;     /* add order, for the tie rule */
  unsigned flags;   /* what ent.flags must still hold */
  int live;         /* in the wheel, per the model */
  int out;          /* handed out by the advance being checked */
  size_t pos;       /* index in the model's live array */
  uint64_t tick;    /* the model's own idea of the deadline's tick, */
  int64_t boundary; /* and of the tick boundary at or after the deadline */
};

static uint64_t rng_state;

/* xorshift64*: small, fast and good enough to pick operations. */
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}

/* Uniform enough in [0, n); n == 0 gives 0. */
static uint64_t rnd_below(uint64_t n) {
  return n == 0 ? 0 : rnd() % n;
}

/* a << b, capped at 2^58 (the wheel's whole range) instead of overflowing. */
static uint64_t shl(uint64_t a, uint64_t b) {
  const uint64_t cap = UINT64_C(1) << 58;
  if (b >= 58 || a > (cap >> b))
    return cap;
  return a << b;
}

static struct item *item_of(struct rx__link *link) {
  return rx__container_of(link, struct item, ent.link);
}

/* The deadline the wheel keeps for `at`: at least origin, at most 2^58 - 1
 * ns after it. Computed unsigned, as the sum may not fit an int64_t. */
static int64_t clamp_at(int64_t origin, int64_t at) {
  uint64_t rel;
  if (at <= origin)
    return origin;
  rel = (uint64_t)at - (uint64_t)origin;
  if (rel > MAX_REL)
    rel = MAX_REL;
  return origin + (int64_t)rel;
}

static uint64_t tick_of(const struct rx__tw *tw, int64_t d) {
  uint64_t rel = (uint64_t)d - (uint64_t)tw->origin;
  return (rel + (UINT64_C(1) << tw->shift) - 1) >> tw->shift;
}

/* The tick boundary at or after deadline `d`. */
static int64_t ceil_to_tick(const struct rx__tw *tw, int64_t d) {
  return tw->origin + (int64_t)(tick_of(tw, d) << tw->shift);
}

static void add(struct rx__tw *tw, struct item *it, int64_t at, uint64_t *seq) {
  it->deadline = clamp_at(tw->origin, at);
  it->seq = (*seq)++;
  it->live = 1;
  rx__tw_add(tw, &it->ent, at);
}

/* Advances and moves what came out into `got`, unlinked; returns how many. */
static size_t advance(struct rx__tw *tw, int64_t now, struct item **got,
                      size_t max) {
  struct rx__link out, *link;
  size_t n = 0;

  rx__list_init(&out);
  rx__tw_advance(tw, now, &out);
  while ((link = rx__list_shift(&out)) != NULL) {
    struct item *it = item_of(link);
    assert_true(n < max);
    assert_true(it->deadline <= now);
    it->live = 0;
    got[n++] = it;
  }
  return n;
}

static void init_items(struct item *items, size_t n) {
  memset(items, 0, n * sizeof(*items));
}

/* ------------------------------------------------------------------------
 * Unit cases.
 */

static void test_add_del(void **state) {
  struct rx__tw tw;
  struct item it[4], *got[4];
  uint64_t seq = 0;
  int64_t now = RX_SEC(5);
  (void)state;

  init_items(it, 4);
  rx__tw_init(&tw, now, 10);
  assert_int_equal(rx__tw_next(&tw), INT64_MAX);
  /* Deleting an entry that was never added, or twice, changes nothing. */
  rx__tw_del(&tw, &it[0].ent);
  assert_int_equal(rx__tw_count(&tw), 0);
  add(&tw, &it[0], now + RX_MSEC(3), &seq);     /* level 1 */
  add(&tw, &it[1], now + RX_SEC(100), &seq);    /* level 4 */
  add(&tw, &it[2], now + RX_SEC(200000), &seq); /* overflow */
  add(&tw, &it[3], now, &seq);                  /* expired */
  assert_int_equal(rx__tw_count(&tw), 4);
  assert_int_equal(rx__tw_validate(&tw), 0);
  assert_true(!rx__list_empty(&tw.overflow));
  assert_true(!rx__list_empty(&tw.expired));
  for (int i = 0; i < 4; i++) {
    rx__tw_del(&tw, &it[i].ent);
    rx__tw_del(&tw, &it[i].ent);
    assert_false(rx__list_linked(&it[i].ent.link));
    assert_int_equal(rx__tw_count(&tw), (size_t)(3 - i));
    assert_int_equal(rx__tw_validate(&tw), 0);
  }
  for (int level = 0; level < RX__TW_LEVELS; level++)
    assert_int_equal(tw.occupied[level], 0);
  assert_int_equal(rx__tw_next(&tw), INT64_MAX);
  assert_int_equal(advance(&tw, now + RX_SEC(300000), got, 4), 0);
  /* A deleted entry can be added again. */
  add(&tw, &it[0], now + RX_MSEC(1), &seq);
  assert_int_equal(advance(&tw, now + RX_MSEC(2), got, 4), 1);
  assert_ptr_equal(got[0], &it[0]);
  assert_int_equal(rx__tw_count(&tw), 0);
}

/* The wheel keeps deadlines relative to origin in 58 bits and never touches
 * the user's 6 flag bits. */
static void test_clamp_and_flags(void **state) {
  static const int64_t origins[] = {0, -RX_SEC(1000), 123456789, INT64_MAX / 2,
                                    INT64_MIN / 2};
  struct rx__tw tw;
  struct item it[3];
  uint64_t seq = 0;
  (void)state;

  for (size_t o = 0; o < sizeof(origins) / sizeof(origins[0]); o++) {
    int64_t origin = origins[o];
    init_items(it, 3);
    rx__tw_init(&tw, origin, 10);
    ent_set_flags(&it[0].ent, 0x3f);
    ent_set_flags(&it[1].ent, 0x2a);
    ent_set_flags(&it[2].ent, 0x15);
    add(&tw, &it[0], INT64_MAX, &seq);
    add(&tw, &it[1], INT64_MIN, &seq);
    add(&tw, &it[2], origin + 77777, &seq);
    assert_int_equal(rx__tw_at(&tw, &it[0].ent), origin + (int64_t)MAX_REL);
    assert_int_equal(rx__tw_at(&tw, &it[1].ent), origin);
    assert_int_equal(rx__tw_at(&tw, &it[2].ent), origin + 77777);
    assert_int_equal(ent_flags(&it[0].ent), 0x3f);
    assert_int_equal(ent_flags(&it[1].ent), 0x2a);
    assert_int_equal(ent_flags(&it[2].ent), 0x15);
    assert_int_equal(rx__tw_validate(&tw), 0);
  }
}

/* An entry already due when added goes out on the very next advance, even
 * when that advance is at the same, unaligned, time. */
static void test_due_now(void **state) {
  struct rx__tw tw;
  struct item it[6], *got[6];
  uint64_t seq = 0;
  int64_t origin = RX_SEC(1), now = origin + 12345678 + 17;
  (void)state;

  init_items(it, 6);
  rx__tw_init(&tw, origin, 10);
  add(&tw, &it[0], origin, &seq); /* due at init */
  assert_true(rx__tw_next(&tw) <= origin);
  assert_int_equal(advance(&tw, origin, got, 6), 1);
  assert_int_equal(advance(&tw, now, got, 6), 0);
  add(&tw, &it[1], now, &seq);
  add(&tw, &it[2], now - 1, &seq);
  add(&tw, &it[3], origin - 100, &seq); /* before origin: counts as origin */
  add(&tw, &it[4], INT64_MIN, &seq);    /* ties with the one above */
  add(&tw, &it[5], now + 1, &seq);      /* not due */
  assert_true(rx__tw_next(&tw) <= now);
  assert_int_equal(advance(&tw, now, got, 6), 4);
  assert_ptr_equal(got[0], &it[3]);
  assert_ptr_equal(got[1], &it[4]);
  assert_ptr_equal(got[2], &it[2]);
  assert_ptr_equal(got[3], &it[1]);
  assert_int_equal(rx__tw_count(&tw), 1);
  assert_int_equal(rx__tw_validate(&tw), 0);
  /* The one left is due in the partial tick: it must be asked for at the
   * tick boundary, not before, and not spin. */
  assert_int_equal(rx__tw_next(&tw), ceil_to_tick(&tw, now + 1));
  assert_int_equal(advance(&tw, now, got, 6), 0);
  assert_int_equal(advance(&tw, now + 1, got, 6), 1);
  assert_int_equal(rx__tw_next(&tw), INT64_MAX);
}

/* Deadlines on both sides of tick boundaries, at several levels: nothing
 * comes out early, and everything by the boundary at or after it. */
static void test_tick_boundaries(void **state) {
  static const int64_t origins[] = {0, -5, 123456789, RX_SEC(1) << 20};
  static const uint64_t ks[] = {1,      2,      63,      64,
                                65,     4095,   4096,    4097,
                                262143, 262144, 1 << 24, (1u << 30) + 1};
  struct rx__tw tw;
  struct item it[3], *got[3];
  uint64_t seq = 0;
  (void)state;

  for (size_t o = 0; o < sizeof(origins) / sizeof(origins[0]); o++) {
    for (size_t k = 0; k < sizeof(ks) / sizeof(ks[0]); k++) {
      int64_t b = origins[o] + (int64_t)(ks[k] << 10);
      init_items(it, 3);
      rx__tw_init(&tw, origins[o], 10);
      add(&tw, &it[0], b - 1, &seq);
      add(&tw, &it[1], b, &seq);
      add(&tw, &it[2], b + 1, &seq);
      assert_int_equal(rx__tw_next(&tw) <= b, 1);
      /* One ns before the boundary the wheel has not reached its tick. */
      assert_int_equal(advance(&tw, b - 2, got, 3), 0);
      assert_int_equal(advance(&tw, b - 1, got, 3), 0);
      assert_int_equal(advance(&tw, b, got, 3), 2);
      assert_ptr_equal(got[0], &it[0]);
      assert_ptr_equal(got[1], &it[1]);
      assert_int_equal(advance(&tw, b + 1, got, 3), 0);
      assert_int_equal(rx__tw_next(&tw), b + 1024);
      assert_int_equal(advance(&tw, b + 1023, got, 3), 0);
      assert_int_equal(advance(&tw, b + 1024, got, 3), 1);
      assert_ptr_equal(got[0], &it[2]);
      assert_int_equal(rx__tw_validate(&tw), 0);
    }
  }
}

static int cmp_time(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Every entry comes out at its tick boundary exactly when the wheel is
 * advanced to each boundary in turn: at most one tick late, never early. */
static void test_one_tick_late(void **state) {
  enum { N = 3000 };
  static struct item it[N];
  static struct item *got[N];
  static int64_t times[N];
  struct rx__tw tw;
  uint64_t seq = 0;
  int64_t origin = RX_SEC(3);
  size_t outs = 0;
  (void)state;

  rng_state = 0x1234567;
  for (unsigned shift = 10; shift <= 30; shift += 10) {
    init_items(it, N);
    rx__tw_init(&tw, origin, shift);
    for (size_t i = 0; i < N; i++) {
      uint64_t bits = 1 + rnd_below(57);
      add(&tw, &it[i], origin + 1 + (int64_t)rnd_below(UINT64_C(1) << bits),
          &seq);
      times[i] = ceil_to_tick(&tw, it[i].deadline);
    }
    qsort(times, N, sizeof(times[0]), cmp_time);
    outs = 0;
    for (size_t i = 0; i < N; i++) {
      size_t n;
      if (i > 0 && times[i] == times[i - 1])
        continue;
      assert_int_equal(advance(&tw, times[i] - 1, got, N), 0);
      n = advance(&tw, times[i], got, N);
      for (size_t j = 0; j < n; j++)
        assert_int_equal(ceil_to_tick(&tw, got[j]->deadline), times[i]);
      outs += n;
    }
    assert_int_equal(outs, N);
    assert_int_equal(rx__tw_count(&tw), 0);
  }
}

/* Ties come out in the order they were added, whatever level or list each
 * was on when the other was added. */
static void test_ties(void **state) {
  struct rx__tw tw;
  struct item it[8], *got[8];
  uint64_t seq = 0;
  int64_t origin = 1000, d;
  (void)state;

  /* Same deadline, added at a far level, then after cascades brought the
   * first ones lower, then after the overflow moved them in. */
  init_items(it, 8);
  rx__tw_init(&tw, origin, 10);
  /* 2^47 + 2^45 ns is in the wheel's third top-level rotation of 2^46. */
  d = origin + (INT64_C(1) << 47) + (INT64_C(1) << 45) + 12345;
  add(&tw, &it[0], d, &seq);
  assert_true(!rx__list_empty(&tw.overflow));
  assert_int_equal(advance(&tw, origin + (INT64_C(1) << 46), got, 8), 0);
  assert_true(!rx__list_empty(&tw.overflow));
  assert_int_equal(advance(&tw, origin + (INT64_C(1) << 47), got, 8), 0);
  assert_true(rx__list_empty(&tw.overflow)); /* moved in, now at level 5 */
  assert_int_not_equal(tw.occupied[5], 0);
  add(&tw, &it[1], d, &seq);
  assert_int_equal(advance(&tw, d - RX_SEC(100), got, 8), 0);
  add(&tw, &it[2], d, &seq);
  add(&tw, &it[3], d - 1, &seq); /* earlier deadline, added later */
  assert_int_equal(advance(&tw, d - RX_MSEC(2), got, 8), 0);
  add(&tw, &it[4], d, &seq);
  assert_int_equal(advance(&tw, d - 2000, got, 8), 0);
  add(&tw, &it[5], d, &seq);
  add(&tw, &it[6], d + 1, &seq);
  assert_int_equal(rx__tw_validate(&tw), 0);
  assert_int_equal(advance(&tw, ceil_to_tick(&tw, d + 1), got, 8), 7);
  assert_ptr_equal(got[0], &it[3]);
  for (int i = 1; i < 6; i++)
    assert_ptr_equal(got[i], &it[i - 1 + (i > 3)]);
  assert_ptr_equal(got[6], &it[6]);

  /* The brief's case: A started far, time passes, B started with the same
   * deadline from closer by. */
  init_items(it, 8);
  rx__tw_init(&tw, origin, 19);
  d = origin + RX_SEC(3600);
  add(&tw, &it[0], d, &seq);
  assert_int_equal(advance(&tw, d - RX_SEC(1), got, 8), 0);
  add(&tw, &it[1], d, &seq);
  assert_int_equal(advance(&tw, ceil_to_tick(&tw, d), got, 8), 2);
  assert_ptr_equal(got[0], &it[0]);
  assert_ptr_equal(got[1], &it[1]);

  /* A tie where the first entry waits in the partial tick and the second is
   * added already due: the second makes the wheel take the partial tick,
   * and the first still comes out first. */
  init_items(it, 8);
  rx__tw_init(&tw, origin, 10);
  assert_int_equal(advance(&tw, origin + 5000, got, 8), 0);
  d = origin + 5010;
  add(&tw, &it[0], d, &seq);
  /* Due, but its tick (5120 ns) is not reached: allowed to wait. */
  assert_int_equal(advance(&tw, origin + 5020, got, 8), 0);
  add(&tw, &it[1], d, &seq);
  assert_int_equal(advance(&tw, origin + 5020, got, 8), 2);
  assert_ptr_equal(got[0], &it[0]);
  assert_ptr_equal(got[1], &it[1]);

  /* Many ties in one slot, plus unsorted deadlines in one tick. */
  init_items(it, 8);
  rx__tw_init(&tw, origin, 12);
  for (int i = 0; i < 8; i++)
    add(&tw, &it[i], origin + 100000 + (i % 2 == 0 ? 7 : 3), &seq);
  assert_int_equal(advance(&tw, origin + 200000, got, 8), 8);
  for (int i = 0; i < 4; i++) {
    assert_ptr_equal(got[i], &it[2 * i + 1]);
    assert_ptr_equal(got[4 + i], &it[2 * i]);
  }
}

/* Large ticks, which take the paths small cases never do: the cascade's
 * walk from both ends (its back half rebuilt behind the front half), a
 * tick sorted in one array (up to 1024 entries) or in chunks whose runs
 * are merged (more), entries whose deadlines sit on both sides of a
 * chunk boundary, and deadlines spread too wide for the radix sort. Order
 * must be (deadline, seq) throughout. */
static int by_deadline_seq(const void *a, const void *b) {
  const struct item *x = *(const struct item *const *)a;
  const struct item *y = *(const struct item *const *)b;
  if (x->deadline != y->deadline)
    return x->deadline < y->deadline ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void test_big_ticks(void **state) {
  enum { N = 5000 };
  static const size_t sizes[] = {2, 3, 511, 1024, 1025, 2049, N};
  struct item *it = calloc(N, sizeof(*it));
  struct item **got = calloc(N, sizeof(*got));
  struct item **want = calloc(N, sizeof(*want));
  struct rx__tw tw;
  uint64_t seq = 0;
  int64_t origin = 777;
  (void)state;

  assert_non_null(it);
  assert_non_null(got);
  assert_non_null(want);
  rng_state = UINT64_C(0x9e3779b97f4a7c15);
  for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
    size_t n = sizes[k];
    /* One tick of 2^19 ns, 100 ticks ahead: at level 1, so it cascades.
     * Deadlines are drawn from a few values (many ties) or from the whole
     * tick, and half the time rise with the insertion order. */
    int64_t tick0 = origin + (INT64_C(100) << 19);
    int few = k % 2 == 0;
    init_items(it, n);
    rx__tw_init(&tw, origin, 19);
    for (size_t i = 0; i < n; i++) {
      int64_t off = few ? (int64_t)rnd_below(5) * 1000
                        : (int64_t)rnd_below(UINT64_C(1) << 19);
      if (k == 3)
        off = (int64_t)(i * 37); /* in order: no sort at all */
      add(&tw, &it[i], tick0 - (INT64_C(1) << 19) + 1 + off, &seq);
      want[i] = &it[i];
    }
    assert_int_equal(rx__tw_validate(&tw), 0);
    qsort(want, n, sizeof(*want), by_deadline_seq);
    assert_int_equal(advance(&tw, tick0, got, n), n);
    for (size_t i = 0; i < n; i++)
      assert_ptr_equal(got[i], want[i]);
    assert_int_equal(rx__tw_count(&tw), 0);
    assert_int_equal(rx__tw_validate(&tw), 0);
  }

  /* Already due when added, out of order, 2^56 ns apart: one sort of the
   * handed-out list whose deadlines span more than the radix sort takes. */
  init_items(it, 6);
  rx__tw_init(&tw, origin, 10);
  assert_int_equal(advance(&tw, origin + (INT64_C(1) << 57), got, 6), 0);
  for (int i = 0; i < 6; i++)
    add(&tw, &it[i], origin + (i % 2 == 0 ? (INT64_C(1) << 56) : 5) + i / 2,
        &seq);
  assert_int_equal(advance(&tw, origin + (INT64_C(1) << 57), got, 6), 6);
  for (int i = 0; i < 3; i++) {
    assert_ptr_equal(got[i], &it[2 * i + 1]);
    assert_ptr_equal(got[3 + i], &it[2 * i]);
  }
  free(it);
  free(got);
  free(want);
}

/* Repeating timers re-added from the output of the advance that handed
 * them out, with no drift, including re-adds that are already due. */
static void test_readd_from_output(void **state) {
  enum { N = 64 };
  struct item it[N], *got[N];
  int64_t start[N], period[N];
  uint64_t fires[N], seq = 0;
  struct rx__tw tw;
  int64_t origin = RX_SEC(7), now = origin;
  (void)state;

  rng_state = 42;
  init_items(it, N);
  rx__tw_init(&tw, origin, 10);
  for (int i = 0; i < N; i++) {
    period[i] = 1000 + (int64_t)rnd_below(i < 8 ? 3000 : RX_MSEC(20));
    start[i] = now;
    fires[i] = 0;
    add(&tw, &it[i], now + period[i], &seq);
  }
  for (int step = 0; step < 10000; step++) {
    size_t n;
    now += (int64_t)rnd_below(step % 50 == 0 ? RX_MSEC(5) : 5000);
    /* Re-adds due by now go out on the next advance at the same now. */
    while ((n = advance(&tw, now, got, N)) != 0) {
      for (size_t j = 0; j < n; j++) {
        int i = (int)(got[j] - it);
        fires[i]++;
        assert_int_equal(got[j]->deadline,
                         start[i] + (int64_t)fires[i] * period[i]);
        add(&tw, got[j], got[j]->deadline + period[i], &seq);
      }
    }
    for (int i = 0; i < N; i++)
      assert_true(ceil_to_tick(&tw, it[i].deadline) > now);
    assert_true(rx__tw_next(&tw) > now);
  }
  assert_int_equal(rx__tw_validate(&tw), 0);
}

/* Deadlines beyond the top level wait in the overflow and come out on
 * time, neither early nor late, also when driven by rx__tw_next(). */
static void test_overflow(void **state) {
  enum { N = 8 };
  struct rx__tw tw;
  struct item it[N], *got[N];
  uint64_t seq = 0;
  int64_t origin = RX_SEC(11), span = INT64_C(1) << 46, t, prev;
  int steps = 0;
  size_t outs = 0;
  (void)state;

  init_items(it, N);
  rx__tw_init(&tw, origin, 10);
  add(&tw, &it[0], origin + span + 5, &seq);
  add(&tw, &it[1], origin + 3 * span + RX_SEC(1), &seq);
  add(&tw, &it[2], origin + (INT64_C(1) << 50), &seq);
  add(&tw, &it[3], origin + (INT64_C(1) << 57) + 3, &seq);
  add(&tw, &it[4], INT64_MAX, &seq); /* clamped to 2^58 - 1 after origin */
  add(&tw, &it[5], origin + (INT64_C(1) << 57) + 3, &seq);
  add(&tw, &it[6], origin + span - 1024, &seq); /* level 5's last tick */
  add(&tw, &it[7], origin + RX_SEC(1), &seq);
  assert_int_equal(rx__tw_validate(&tw), 0);
  assert_int_equal(advance(&tw, origin + span - 1025, got, N), 1);
  assert_ptr_equal(got[0], &it[7]);
  assert_int_equal(advance(&tw, origin + span - 1024, got, N), 1);
  assert_ptr_equal(got[0], &it[6]);
  assert_int_equal(advance(&tw, origin + span + 4, got, N), 0);
  assert_true(rx__list_empty(&tw.overflow) == 0); /* the others are far */
  assert_int_equal(advance(&tw, origin + span + 1023, got, N), 0);
  assert_int_equal(advance(&tw, origin + span + 1024, got, N), 1);
  assert_ptr_equal(got[0], &it[0]);
  outs = 3;
  /* Driven by next(): each entry exactly at its tick boundary, and the
   * empty stretches between far entries cost a handful of steps. */
  prev = origin;
  while ((t = rx__tw_next(&tw)) != INT64_MAX) {
    size_t n;
    assert_true(t > prev);
    n = advance(&tw, t, got, N);
    for (size_t j = 0; j < n; j++)
      assert_int_equal(ceil_to_tick(&tw, got[j]->deadline), t);
    if (n == 2)
      assert_true(got[0] == &it[3] && got[1] == &it[5]);
    outs += n;
    prev = t;
    assert_true(++steps < 200);
  }
  assert_int_equal(outs, N);
}

/* Driving the wheel by rx__tw_next() alone: every call makes progress, the
 * value is a lower bound on the earliest tick boundary, and each entry
 * comes out exactly at its tick boundary. */
static void test_next_progress(void **state) {
  enum { N = 500 };
  static struct item it[N];
  static struct item *got[N];
  struct rx__tw tw;
  uint64_t seq = 0;
  (void)state;

  rng_state = 99;
  for (int round = 0; round < 8; round++) {
    unsigned shift = 10 + (unsigned)rnd_below(21);
    int64_t origin = (int64_t)rnd_below(UINT64_C(1) << 60) - RX_SEC(100);
    int64_t prev = origin, t;
    size_t outs = 0, live = N;

    init_items(it, N);
    rx__tw_init(&tw, origin, shift);
    for (int i = 0; i < N; i++) {
      uint64_t bits = rnd_below(58);
      add(&tw, &it[i], origin + (int64_t)rnd_below(UINT64_C(1) << bits), &seq);
    }
    while ((t = rx__tw_next(&tw)) != INT64_MAX) {
      int64_t least = INT64_MAX;
      size_t n;
      for (int i = 0; i < N; i++)
        if (it[i].live && ceil_to_tick(&tw, it[i].deadline) < least)
          least = ceil_to_tick(&tw, it[i].deadline);
      assert_true(t <= least);
      assert_true(t >= prev);
      n = advance(&tw, t, got, N);
      for (size_t j = 0; j < n; j++)
        assert_int_equal(ceil_to_tick(&tw, got[j]->deadline), t);
      outs += n;
      /* Progress: something came out, or the next time is later. */
      assert_true(n > 0 || rx__tw_next(&tw) > t);
      assert_true(rx__tw_next(&tw) > t);
      /* Re-add a few, always in the future, to keep the wheel busy. */
      for (size_t j = 0; j < n && j < 2 && live < 3 * N; j++) {
        add(&tw, got[j], t + 1 + (int64_t)rnd_below(UINT64_C(1) << 30), &seq);
        live++;
      }
      prev = t;
    }
    assert_int_equal(outs, live);
    assert_int_equal(rx__tw_validate(&tw), 0);
  }
}

/* A clock that goes backwards makes nothing come out early. */
static void test_clock_backwards(void **state) {
  struct rx__tw tw;
  struct item it[2], *got[2];
  uint64_t seq = 0;
  int64_t origin = RX_SEC(2), now = origin + RX_MSEC(10) + 333;
  (void)state;

  init_items(it, 2);
  rx__tw_init(&tw, origin, 10);
  assert_int_equal(advance(&tw, now, got, 2), 0);
  add(&tw, &it[0], now, &seq);
  add(&tw, &it[1], now + 100, &seq);
  assert_int_equal(advance(&tw, now - 5000, got, 2), 0);
  assert_int_equal(advance(&tw, origin - 1, got, 2), 0);
  assert_true(rx__tw_next(&tw) <= now);
  assert_int_equal(rx__tw_validate(&tw), 0);
  assert_int_equal(advance(&tw, now, got, 2), 1);
  assert_ptr_equal(got[0], &it[0]);
  assert_int_equal(advance(&tw, now + 99, got, 2), 0);
  assert_int_equal(advance(&tw, ceil_to_tick(&tw, now + 100), got, 2), 1);
}

/* rx__tw_validate() notices each kind of corruption. */
static void test_validate_detects(void **state) {
  struct rx__tw tw;
  struct item it[5];
  uint64_t seq = 0, saved;
  int64_t origin = 0;
  struct rx__link *link, *saved_link;
  (void)state;

  init_items(it, 5);
  rx__tw_init(&tw, origin, 10);
  add(&tw, &it[0], origin + 5 * 1024, &seq);      /* level 0 */
  add(&tw, &it[1], origin + RX_MSEC(50), &seq);   /* level 1 or 2 */
  add(&tw, &it[2], origin + RX_SEC(90000), &seq); /* overflow */
  add(&tw, &it[3], origin, &seq);                 /* expired */
  add(&tw, &it[4], origin + 5 * 1024 - 3, &seq);  /* level 0, same slot */
  assert_int_equal(rx__tw_validate(&tw), 0);

  /* An occupancy bit for an empty slot, and a missing one. */
  tw.occupied[3] ^= UINT64_C(1) << 17;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  tw.occupied[3] ^= UINT64_C(1) << 17;
  tw.occupied[0] ^= UINT64_C(1) << 5;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  tw.occupied[0] ^= UINT64_C(1) << 5;
  assert_int_equal(rx__tw_validate(&tw), 0);

  /* An entry in the slot next to its own. */
  rx__list_unlink(&it[4].ent.link);
  rx__list_push(&tw.slots[0][6], &it[4].ent.link);
  tw.occupied[0] |= UINT64_C(1) << 6;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  rx__list_unlink(&it[4].ent.link);
  rx__list_push(&tw.slots[0][5], &it[4].ent.link);
  tw.occupied[0] &= ~(UINT64_C(1) << 6);
  assert_int_equal(rx__tw_validate(&tw), 0);

  /* A wrong count. */
  tw.count++;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  tw.count -= 2;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  tw.count++;

  /* A broken back link. */
  link = &it[4].ent.link;
  saved_link = link->prev;
  link->prev = link;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  link->prev = saved_link;
  assert_int_equal(rx__tw_validate(&tw), 0);

  /* An expired entry whose deadline is in the future. */
  saved = ent_rel(&it[3].ent);
  ent_set_rel(&it[3].ent, 1 << 20);
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  ent_set_rel(&it[3].ent, saved);

  /* A deadline changed behind the wheel's back moves its entry's slot. */
  saved = ent_rel(&it[1].ent);
  ent_set_rel(&it[1].ent, saved + RX_MSEC(20));
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  ent_set_rel(&it[1].ent, saved);

  /* An overflow entry below the overflow's lower bound. */
  saved = tw.overflow_tick;
  tw.overflow_tick = tick_of(&tw, it[2].deadline) + 1;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  tw.overflow_tick = saved;

  /* Elapsed beyond what any advance asked for. */
  saved = tw.elapsed;
  tw.elapsed = 1000;
  assert_int_equal(rx__tw_validate(&tw), -EFAULT);
  tw.elapsed = saved;
  assert_int_equal(rx__tw_validate(&tw), 0);
}

/* ------------------------------------------------------------------------
 * The model test: random adds, dels and advances checked against an array
 * of (deadline, seq).
 */

enum { POOL = 768 };

struct model {
  struct rx__tw tw;
  struct item items[POOL];
  struct item *live[POOL]; /* the entries the model says are in the wheel */
  size_t nlive;
  uint64_t seq;
  int64_t now;
  /* The model's copy of the two facts that decide the partial tick. */
  uint64_t elapsed;
  int64_t reached;
  int due_added;
  uint64_t ops, advances, outs;
};

static struct model m;

static void model_add(struct item *it, int64_t at) {
  assert_false(it->live);
  it->flags = (unsigned)rnd_below(64);
  ent_set_flags(&it->ent, it->flags & 0x3f);
  add(&m.tw, it, at, &m.seq);
  it->tick = tick_of(&m.tw, it->deadline);
  it->boundary = ceil_to_tick(&m.tw, it->deadline);
  if (it->deadline <= m.reached)
    m.due_added = 1;
  it->pos = m.nlive;
  m.live[m.nlive++] = it;
}

static void model_forget(struct item *it) {
  struct item *last = m.live[--m.nlive];
  last->pos = it->pos;
  m.live[it->pos] = last;
  it->live = 0;
}

/* A deadline around `now` from one of several ranges, so that every level,
 * the overflow, the clamp and exact ties are all reached. */
static int64_t random_deadline(void) {
  const struct rx__tw *tw = &m.tw;
  int64_t tick = INT64_C(1) << tw->shift, now = m.now;
  int64_t boundary = ceil_to_tick(tw, now);

  switch (rnd_below(12)) {
  case 0: /* already due, perhaps before origin */
    return now - (int64_t)rnd_below(UINT64_C(1) << rnd_below(30));
  case 1: /* in the current tick */
    return now + (int64_t)rnd_below((uint64_t)tick);
  case 2: /* on or next to a tick boundary */
    return boundary + (int64_t)rnd_below(3) * tick + (int64_t)rnd_below(3) - 1;
  case 3: /* level 0 */
    return now + (int64_t)rnd_below((uint64_t)tick * 64);
  case 4: /* level 1 */
    return now + (int64_t)rnd_below((uint64_t)tick * 4096);
  case 5:
  case 6: /* any level */
    return now + (int64_t)rnd_below(shl((uint64_t)tick, rnd_below(37)));
  case 7: /* overflow, or just short of it */
    return now + (int64_t)shl((uint64_t)tick, 36) -
           (int64_t)shl((uint64_t)tick, 20) +
           (int64_t)rnd_below(shl((uint64_t)tick, rnd_below(42)));
  case 8: /* far: clamped now and then */
    return rnd_below(16) == 0 ? INT64_MAX
                              : now + (int64_t)rnd_below(UINT64_C(1) << 58);
  default: /* the deadline of another entry: a tie */
    if (m.nlive > 0)
      return m.live[rnd_below(m.nlive)]->deadline;
    return now + (int64_t)rnd_below((uint64_t)tick * 100);
  }
}

/* How far the next advance moves the clock. */
static int64_t random_jump(void) {
  const struct rx__tw *tw = &m.tw;
  int64_t tick = INT64_C(1) << tw->shift, next;

  switch (rnd_below(16)) {
  case 0:
    return 0;
  case 1:
  case 2:
    return (int64_t)rnd_below((uint64_t)tick);
  case 3: /* to a tick boundary, or one ns short of it */
    return ceil_to_tick(tw, m.now + 1) - m.now - (int64_t)rnd_below(2);
  case 4:
  case 5:
    return (int64_t)rnd_below((uint64_t)tick * 64);
  case 6:
    return (int64_t)rnd_below((uint64_t)tick * 8192);
  case 7:
    return (int64_t)rnd_below(shl((uint64_t)tick, rnd_below(37)));
  case 8:
  case 9:
  case 10: /* where the wheel says to */
    next = rx__tw_next(&m.tw);
    if (next == INT64_MAX || next <= m.now)
      return 0;
    return (uint64_t)(next - m.now) > shl((uint64_t)tick, 38) ? 0
                                                              : next - m.now;
  default:
    return (int64_t)rnd_below((uint64_t)tick * 4);
  }
}

static void model_advance(int64_t now) {
  struct rx__tw *tw = &m.tw;
  struct rx__link out, *link;
  struct item *prev = NULL;
  uint64_t rel = (uint64_t)(now - tw->origin), target, e_new;
  int64_t least = INT64_MAX, next;
  size_t n = 0;

  /* Which ticks the wheel processes: whole ones, or the partial one too
   * when an entry was added already due. */
  target = rel >> tw->shift;
  if (m.due_added)
    target = (rel + (UINT64_C(1) << tw->shift) - 1) >> tw->shift;
  e_new = target > m.elapsed ? target : m.elapsed;

  rx__list_init(&out);
  rx__tw_advance(tw, now, &out);
  m.advances++;
  for (link = out.next; link != &out; link = link->next) {
    struct item *it = item_of(link);
    if (!it->live || it->out)
      fail_msg("entry %zu handed out twice or not in the wheel",
               (size_t)(it - m.items));
    if (it->deadline > now)
      fail_msg("early: deadline %lld, now %lld", (long long)it->deadline,
               (long long)now);
    if (prev != NULL &&
        (it->deadline < prev->deadline ||
         (it->deadline == prev->deadline && it->seq < prev->seq)))
      fail_msg("out of order: (%lld, %llu) after (%lld, %llu)",
               (long long)it->deadline, (unsigned long long)it->seq,
               (long long)prev->deadline, (unsigned long long)prev->seq);
    if (ent_flags(&it->ent) != it->flags)
      fail_msg("flags changed");
    it->out = 1;
    prev = it;
    n++;
  }
  /* Exactly the entries due by now whose tick was processed came out; in
   * particular every entry due by its tick boundary, and every entry added
   * already due. */
  for (size_t i = 0; i < m.nlive; i++) {
    struct item *it = m.live[i];
    int want = it->deadline <= now && it->tick <= e_new;
    if (it->boundary <= now && !want)
      fail_msg("model bug");
    if (want != it->out)
      fail_msg("entry (%lld, %llu) %s at now %lld (shift %u)",
               (long long)it->deadline, (unsigned long long)it->seq,
               want ? "missing" : "extra", (long long)now, tw->shift);
    if (!it->out && it->boundary < least)
      least = it->boundary;
  }
  m.elapsed = e_new;
  if (now >= m.reached) {
    m.reached = now;
    m.due_added = 0;
  }
  m.now = now;
  m.outs += n;
  /* Take the output, re-adding some entries the way a repeating timer is
   * re-armed from its callback, some already due again. */
  while ((link = rx__list_shift(&out)) != NULL) {
    struct item *it = item_of(link);
    it->out = 0;
    model_forget(it);
    if (rnd_below(4) == 0) {
      uint64_t period = UINT64_C(1) << (tw->shift + rnd_below(12));
      model_add(it, it->deadline + (int64_t)rnd_below(period));
      if (it->boundary < least)
        least = it->boundary;
    }
  }
  if (rx__tw_count(tw) != m.nlive)
    fail_msg("count %zu, model %zu", rx__tw_count(tw), m.nlive);
  /* The loop sleeps until next(): it must be in the future (no spinning)
   * unless an entry was added already due, then now (no waiting), and never
   * after an entry's tick boundary. */
  next = rx__tw_next(tw);
  if (next > least && !m.due_added)
    fail_msg("next %lld after a boundary at %lld", (long long)next,
             (long long)least);
  if ((next <= now) != m.due_added)
    fail_msg("next %lld, now %lld, an entry added due: %d", (long long)next,
             (long long)now, m.due_added);
}

/* One run of random operations on a fresh wheel. */
static void model_phase(unsigned shift, int64_t origin, uint64_t ops,
                        size_t stage_min) {
  struct rx__tw *tw = &m.tw;

  init_items(m.items, POOL);
  m.nlive = 0;
  m.now = origin;
  m.elapsed = 0;
  m.reached = origin;
  m.due_added = 0;
  rx__tw_init(tw, origin, shift);
  /* A few entries per advance: the pool is far below the default rate, and
   * promotions should find the next rotation half staged. */
  if (stage_min != 0)
    tw->stage_min = tw->stage_rate = stage_min;
  for (uint64_t op = 0; op < ops; op++) {
    uint64_t r = rnd_below(100);
    if (r < 40) {
      struct item *it = &m.items[rnd_below(POOL)];
      if (!it->live)
        model_add(it, random_deadline());
    } else if (r < 60) {
      struct item *it = &m.items[rnd_below(POOL)];
      if (it->live)
        model_forget(it);
      rx__tw_del(tw, &it->ent);
      assert_false(rx__list_linked(&it->ent.link));
    } else if (r < 62) {
      /* A burst of adds, so that slots hold many entries. */
      for (int k = 0; k < 40; k++) {
        struct item *it = &m.items[rnd_below(POOL)];
        if (!it->live)
          model_add(it, random_deadline());
      }
    } else {
      /* Stay well inside the 2^58 ns the wheel can express. */
      int64_t jump = random_jump();
      if ((uint64_t)(m.now - origin) + (uint64_t)jump > (UINT64_C(1) << 57))
        jump = 0;
      model_advance(m.now + jump);
    }
    if (op % 61 == 0 && rx__tw_validate(tw) != 0)
      fail_msg("validate failed after op %llu", (unsigned long long)op);
    m.ops++;
  }
  assert_int_equal(rx__tw_validate(tw), 0);
  /* Past the last deadline the wheel can hold, everything comes out. */
  model_advance(origin + (int64_t)MAX_REL + (INT64_C(1) << shift));
  assert_int_equal(rx__tw_validate(tw), 0);
}

static void test_model(void **state) {
  static const unsigned shifts[] = {10, 10, 13, 19, 19, 24, 30};
  static const int64_t origins[] = {0, RX_SEC(12345), -RX_SEC(5),
                                    INT64_C(1) << 61};
  (void)state;

  rng_state = UINT64_C(0x9e3779b97f4a7c15);
  memset(&m, 0, sizeof(m));
  for (int phase = 0; phase < 28; phase++) {
    unsigned shift = shifts[phase % 7];
    int64_t origin = origins[phase % 4] + (int64_t)rnd_below(1 << 20);
    model_phase(shift, origin, 90000, (size_t)(phase % 4));
  }
  printf("model: %llu ops, %llu advances, %llu entries out\n",
         (unsigned long long)m.ops, (unsigned long long)m.advances,
         (unsigned long long)m.outs);
}

/* ------------------------------------------------------------------------
 * The next rotation is staged into level 0 over the advances of the one
 * before it, not cascaded whole at its first tick.
 */

static size_t list_length(const struct rx__link *head) {
  size_t n = 0;
  for (const struct rx__link *l = head->next; l != head; l = l->next)
    n++;
  return n;
}

/* Entries not yet moved down to level 0 (or its stage): the levels above
 * it, the overflow and the part of a level 1 slot still pending. */
static size_t upper_entries(const struct rx__tw *tw) {
  size_t n = list_length(&tw->overflow) + list_length(&tw->pending);
  for (unsigned level = 1; level < RX__TW_LEVELS; level++)
    for (unsigned s = 0; s < RX__TW_SLOTS; s++)
      n += list_length(&tw->slots[level][s]);
  return n;
}

/* 37,768 entries in the second rotation of level 0 (one level 1 slot), 5,000
 * of them in one tick (more than a warm-up walks, so that its count is made
 * exact by a walk of its own), and one entry per tick before, so that the
 * wheel is advanced at every tick as the loop would. No advance may move
 * more than an eighth of the slot down (the whole slot was moved by one);
 * every entry still comes out at its tick boundary, in (deadline, add)
 * order, also after deletions of staged and pending entries. */
static void test_cascade_spread(void **state) {
  enum { DRIVE = 63, BIG = 32768, TIE = 5000, N = DRIVE + BIG + TIE };
  static struct item it[N];
  static struct item *got[N];
  const unsigned shift = 19;
  const int64_t tick = INT64_C(1) << shift, origin = RX_SEC(7);
  struct rx__tw tw;
  struct item *prev = NULL;
  uint64_t seq = 0;
  size_t outs = 0, dels = 0, most = 0;
  (void)state;

  rng_state = 0xfeedbeef;
  init_items(it, N);
  rx__tw_init(&tw, origin, shift);
  for (size_t i = 0; i < DRIVE; i++)
    add(&tw, &it[i], origin + (int64_t)(i + 1) * tick, &seq);
  for (size_t i = DRIVE; i < DRIVE + BIG; i++)
    add(&tw, &it[i],
        origin + 63 * tick + 1 + (int64_t)rnd_below((uint64_t)tick * 64), &seq);
  for (size_t i = DRIVE + BIG; i < N; i++)
    add(&tw, &it[i], origin + 100 * tick - 5, &seq);
  assert_int_equal(rx__tw_validate(&tw), 0);

  for (int64_t t = 1; t <= 130; t++) {
    int64_t now = origin + t * tick;
    size_t before, n;

    /* Half way through the staging (some entries staged, some pending),
     * then after it: stop some of the next rotation's entries. */
    if (t == 10 || t == 50) {
      for (size_t i = DRIVE + (size_t)t; i < N; i += 7) {
        if (it[i].live) {
          rx__tw_del(&tw, &it[i].ent);
          it[i].live = 0;
          dels++;
        }
      }
      assert_int_equal(rx__tw_validate(&tw), 0);
    }
    before = upper_entries(&tw);
    n = advance(&tw, now, got, N);
    if (before - upper_entries(&tw) > most)
      most = before - upper_entries(&tw);
    for (size_t j = 0; j < n; j++) {
      assert_int_equal(ceil_to_tick(&tw, got[j]->deadline), now);
      if (prev != NULL)
        assert_true(
            got[j]->deadline > prev->deadline ||
            (got[j]->deadline == prev->deadline && got[j]->seq > prev->seq));
      prev = got[j];
    }
    outs += n;
    assert_int_equal(rx__tw_validate(&tw), 0);
  }
  assert_int_equal(outs + dels, N);
  assert_int_equal(rx__tw_count(&tw), 0);
  printf("spread: at most %zu entries moved down by one advance\n", most);
  assert_true(most <= (BIG + TIE) / 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_del),
      cmocka_unit_test(test_clamp_and_flags),
      cmocka_unit_test(test_due_now),
      cmocka_unit_test(test_tick_boundaries),
      cmocka_unit_test(test_one_tick_late),
      cmocka_unit_test(test_ties),
      cmocka_unit_test(test_big_ticks),
      cmocka_unit_test(test_readd_from_output),
      cmocka_unit_test(test_overflow),
      cmocka_unit_test(test_next_progress),
      cmocka_unit_test(test_clock_backwards),
      cmocka_unit_test(test_validate_detects),
      cmocka_unit_test(test_model),
      cmocka_unit_test(test_cascade_spread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
