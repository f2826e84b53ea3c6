/*
 * test-queue.c - tests services/queue.c (include/rx/queue.h): strict
 * priority, equal priorities taking turns, room waiters called exactly once,
 * block and unblock, wait-until-empty, per-key lanes, the total limit
 * against a sub-queue's, the per-iteration budget (other watchers run every
 * iteration beside an endless producer), bad input, and allocation failures
 * swept one by one. The queue's memory goes through the fixture's tracking
 * allocator, so the teardown also catches what the queue leaks.
 */
#include "helpers.h"

#include <sched.h>

#include "rx/queue.h"

#define MAXREC 4096

/* What the consumer saw. */
struct rec {
  rx_queue *q;
  int n;
  uintptr_t item[MAXREC];
  rx_subqueue *sq[MAXREC];
  /* Optional behaviour. */
  rx_subqueue *echo;   /* push each item back here: an endless producer */
  rx_subqueue *inject; /* push item 999 here after the first item */
  int dropped;
  uintptr_t drop_item[MAXREC];
};

static struct rec rec;

#define ITEM(x) ((void *)(uintptr_t)(x))

static void consume(rx_queue *q, rx_subqueue *sq, void *item) {
  struct rec *r = rx_queue_data(q);
  if (r->n < MAXREC) {
    r->item[r->n] = (uintptr_t)item;
    r->sq[r->n] = sq;
  }
  r->n++;
  if (r->echo != NULL)
    assert_int_equal(rx_queue_push(r->echo, item, NULL), 0);
  if (r->inject != NULL && r->n == 1)
    assert_int_equal(rx_queue_push(r->inject, ITEM(999), NULL), 0);
}

static void drop(rx_queue *q, rx_subqueue *sq, void *item) {
  (void)sq;
  struct rec *r = rx_queue_data(q);
  if (r->dropped < MAXREC)
    r->drop_item[r->dropped] = (uintptr_t)item;
  r->dropped++;
}

/* A queue on the fixture's loop, its memory on the tracking allocator;
 * `pull`: no consumer. */
static rx_queue *make_queue(size_t limit, unsigned budget, int pull) {
  memset(&rec, 0, sizeof(rec));
  struct rx_queue_options o = {0};
  o.limit = limit;
  o.budget = budget;
  o.consume = pull ? NULL : consume;
  o.drop = drop;
  o.data = &rec;
  o.allocator = &rxt_allocator;
  assert_int_equal(rx_queue_new(&rec.q, rxt.loop, &o), 0);
  return rec.q;
}

static rx_subqueue *make_sub(rx_queue *q, int priority, size_t limit,
                             unsigned flags) {
  rx_subqueue *sq = NULL;
  struct rx_subqueue_options o = {priority, limit, flags};
  assert_int_equal(rx_subqueue_new(q, &sq, &o), 0);
  return sq;
}

/* Runs the loop until it has nothing left to do (the queue's watchers stop
 * once nothing is deliverable and no waiter is due). */
static void drain(void) {
  for (int i = 0; i < 100000; i++)
    if (rx_run(rxt.loop, RX_RUN_NOWAIT) == 0)
      return;
  fail_msg("the loop still has work after 100000 iterations");
}

/* ---------------------------------------------------------------------------
 * Order.
 */

static void test_strict_priority(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 0, 0);
  rx_subqueue *lo = make_sub(q, -7, 0, 0);
  rx_subqueue *mid = make_sub(q, 0, 0, 0);
  rx_subqueue *hi = make_sub(q, 100, 0, 0);
  /* Pushed lowest first, interleaved. */
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rx_queue_push(lo, ITEM(100 + i), NULL), 0);
    assert_int_equal(rx_queue_push(mid, ITEM(200 + i), NULL), 0);
    assert_int_equal(rx_queue_push(hi, ITEM(300 + i), NULL), 0);
  }
  drain();
  assert_int_equal(rec.n, 15);
  for (int i = 0; i < 5; i++) {
    rxt_assert_eq(rec.item[i], 300 + i);
    rxt_assert_eq(rec.item[5 + i], 200 + i);
    rxt_assert_eq(rec.item[10 + i], 100 + i);
  }
  assert_ptr_equal(rec.sq[0], hi);
  assert_ptr_equal(rec.sq[14], lo);
  /* A higher item pushed by the consumer of a lower one goes next, in the
   * same iteration. */
  rec.n = 0;
  rec.inject = hi;
  for (int i = 0; i < 3; i++)
    assert_int_equal(rx_queue_push(lo, ITEM(100 + i), NULL), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(rec.n, 4);
  rxt_assert_eq(rec.item[0], 100);
  rxt_assert_eq(rec.item[1], 999);
  rxt_assert_eq(rec.item[2], 101);
  assert_int_equal(rx_queue_free(q), 0);
}

static void test_equal_priorities_alternate(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 7, 0);
  rx_subqueue *a = make_sub(q, 3, 0, 0);
  rx_subqueue *b = make_sub(q, 3, 0, 0);
  rx_subqueue *c = make_sub(q, 3, 0, 0);
  rx_subqueue *low = make_sub(q, 2, 0, 0);
  /* All of a's first, then b's, then c's: arrival order must not matter. */
  for (int i = 0; i < 300; i++)
    assert_int_equal(rx_queue_push(a, ITEM(1000 + i), NULL), 0);
  for (int i = 0; i < 200; i++)
    assert_int_equal(rx_queue_push(b, ITEM(2000 + i), NULL), 0);
  assert_int_equal(rx_queue_push(low, ITEM(9), NULL), 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(rx_queue_push(c, ITEM(3000 + i), NULL), 0);
  drain();
  assert_int_equal(rec.n, 601);
  int na = 0, nb = 0, nc = 0;
  for (int i = 0; i < 600; i++) {
    rx_subqueue *s = rec.sq[i];
    assert_ptr_not_equal(s, low);
    na += s == a;
    nb += s == b;
    nc += s == c;
    /* FIFO within each. */
    if (s == a)
      rxt_assert_eq(rec.item[i], 1000 + na - 1);
    if (s == b)
      rxt_assert_eq(rec.item[i], 2000 + nb - 1);
    if (s == c)
      rxt_assert_eq(rec.item[i], 3000 + nc - 1);
    /* While each still has items, none is more than one turn ahead. */
    int m = na > nb ? na : nb;
    m = m > nc ? m : nc;
    if (nc < 100)
      rxt_assert_le(m - nc, 1);
    if (nb < 200) {
      rxt_assert_le(na - nb, 1);
      rxt_assert_le(nb - na, 1);
    }
  }
  assert_ptr_equal(rec.sq[600], low);
  assert_int_equal(rx_queue_free(q), 0);
}

/* ---------------------------------------------------------------------------
 * Room waiters.
 */

struct waiter {
  rx_queue_waiter w;
  int calls;
  rx_subqueue *got;
  int push; /* push this item from the callback (0: none) */
  int rc;
};

static void waiter_cb(rx_queue *q, rx_subqueue *sq, rx_queue_waiter *w) {
  (void)q;
  struct waiter *x = (struct waiter *)w;
  x->calls++;
  x->got = sq;
  assert_false(rx_queue_waiter_active(w));
  if (x->push != 0)
    x->rc = rx_queue_push(sq, ITEM(x->push), w);
}

static void waiter_init(struct waiter *x, int push) {
  memset(x, 0, sizeof(*x));
  rx_queue_waiter_init(&x->w, waiter_cb);
  x->push = push;
}

static void test_room_waiter_once(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 1, 0);
  rx_subqueue *sq = make_sub(q, 0, 2, 0);
  struct waiter w1, w2, w3;
  waiter_init(&w1, 51);
  waiter_init(&w2, 52);
  waiter_init(&w3, 53);
  assert_int_equal(rx_queue_push(sq, ITEM(1), NULL), 0);
  assert_int_equal(rx_queue_push(sq, ITEM(2), NULL), 0);
  assert_int_equal(rx_queue_push(sq, ITEM(3), &w1.w), -EAGAIN);
  /* Refused again with the same waiter: still registered once. */
  assert_int_equal(rx_queue_push(sq, ITEM(3), &w1.w), -EAGAIN);
  assert_int_equal(rx_queue_push(sq, ITEM(4), &w2.w), -EAGAIN);
  assert_int_equal(rx_queue_push(sq, ITEM(5), &w3.w), -EAGAIN);
  assert_true(rx_queue_waiter_active(&w1.w));
  assert_int_equal(rx_queue_waiter_cancel(&w3.w), 0);
  assert_false(rx_queue_waiter_active(&w3.w));
  struct rx_queue_stats st;
  assert_int_equal(rx_subqueue_stats(sq, &st), 0);
  rxt_assert_eq(st.waiting, 2);
  rxt_assert_eq(st.refused, 4);
  rxt_assert_eq(st.depth, 2);
  assert_int_equal(rx_queue_stats(q, &st), 0);
  rxt_assert_eq(st.waiting, 2);
  /* Nothing is called from inside a push. */
  assert_int_equal(w1.calls + w2.calls, 0);
  drain();
  /* Each waiter once, in order, each push from its callback accepted. */
  assert_int_equal(w1.calls, 1);
  assert_int_equal(w2.calls, 1);
  assert_int_equal(w3.calls, 0);
  assert_ptr_equal(w1.got, sq);
  assert_int_equal(w1.rc, 0);
  assert_int_equal(w2.rc, 0);
  assert_int_equal(rec.n, 4);
  rxt_assert_eq(rec.item[0], 1);
  rxt_assert_eq(rec.item[1], 2);
  rxt_assert_eq(rec.item[2], 51);
  rxt_assert_eq(rec.item[3], 52);
  assert_int_equal(rx_subqueue_stats(sq, &st), 0);
  rxt_assert_eq(st.waiting, 0);
  rxt_assert_eq(st.high_water, 2);
  assert_int_equal(rx_queue_free(q), 0);
}

/* Waiters that do not push: one slot freed, yet every waiter is called
 * once (none is lost while there is room), and a blocked sub-queue frees
 * no room. */
static void test_room_waiter_blocked(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 1, 0);
  rx_subqueue *sq = make_sub(q, 0, 1, 0);
  struct waiter w[4];
  assert_int_equal(rx_queue_push(sq, ITEM(1), NULL), 0);
  for (int i = 0; i < 4; i++) {
    waiter_init(&w[i], 0);
    assert_int_equal(rx_queue_push(sq, ITEM(2), &w[i].w), -EAGAIN);
  }
  assert_int_equal(rx_subqueue_block(sq), 0);
  assert_int_equal(rx_subqueue_blocked(sq), 1);
  drain(); /* returns: nothing deliverable, no waiter due */
  assert_int_equal(rec.n, 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(w[i].calls, 0);
  assert_int_equal(rx_subqueue_unblock(sq), 0);
  drain();
  assert_int_equal(rec.n, 1);
  for (int i = 0; i < 4; i++)
    assert_int_equal(w[i].calls, 1);
  /* -EBUSY: a waiter registered for something else, when refused. */
  struct waiter e;
  waiter_init(&e, 0);
  assert_int_equal(rx_queue_push(sq, ITEM(1), NULL), 0);
  assert_int_equal(rx_queue_wait_empty(q, NULL, &e.w), 0);
  assert_int_equal(rx_queue_push(sq, ITEM(2), &e.w), -EBUSY);
  drain();
  assert_int_equal(e.calls, 1);
  assert_int_equal(rx_queue_free(q), 0);
}

/* ---------------------------------------------------------------------------
 * Block, empty, keys, limits.
 */

static void test_block_unblock(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 0, 0);
  rx_subqueue *hi = make_sub(q, 1, 0, 0);
  rx_subqueue *lo = make_sub(q, 0, 0, 0);
  assert_int_equal(rx_subqueue_block(hi), 0);
  assert_int_equal(rx_subqueue_block(hi), 0); /* twice is once */
  assert_int_equal(rx_queue_push(hi, ITEM(1), NULL), 0);
  assert_int_equal(rx_queue_push(hi, ITEM(2), NULL), 0);
  assert_int_equal(rx_queue_push(lo, ITEM(3), NULL), 0);
  /* rx_run() returns: blocked items keep nothing active. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(rec.n, 1);
  rxt_assert_eq(rec.item[0], 3);
  void *item;
  assert_int_equal(rx_queue_pop(q, &item, NULL), -EAGAIN);
  struct rx_queue_stats st;
  assert_int_equal(rx_subqueue_stats(hi, &st), 0);
  rxt_assert_eq(st.depth, 2);
  assert_int_equal(rx_queue_push(lo, ITEM(4), NULL), 0);
  assert_int_equal(rx_subqueue_unblock(hi), 0);
  assert_int_equal(rx_subqueue_blocked(hi), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(rec.n, 4);
  rxt_assert_eq(rec.item[1], 1);
  rxt_assert_eq(rec.item[2], 2);
  rxt_assert_eq(rec.item[3], 4);
  assert_int_equal(rx_queue_free(q), 0);
}

static void test_wait_empty(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 2, 0);
  rx_subqueue *a = make_sub(q, 1, 0, 0);
  rx_subqueue *b = make_sub(q, 0, 0, 0);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(rx_queue_push(a, ITEM(i + 1), NULL), 0);
    assert_int_equal(rx_queue_push(b, ITEM(i + 11), NULL), 0);
  }
  struct waiter all, wa, wb;
  waiter_init(&all, 0);
  waiter_init(&wa, 0);
  waiter_init(&wb, 0);
  assert_int_equal(rx_queue_wait_empty(q, NULL, &all.w), 0);
  assert_int_equal(rx_queue_wait_empty(q, a, &wa.w), 0);
  assert_int_equal(rx_queue_wait_empty(q, b, &wb.w), 0);
  assert_int_equal(rx_queue_wait_empty(q, b, &wb.w), -EBUSY);
  /* Budget 2: a (priority 1) is empty after 3 iterations, the queue after
   * 6. Each waiter is called once, and not before its time. */
  int seen_a = -1, seen_all = -1;
  for (int it = 0; it < 10; it++) {
    assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
    if (wa.calls && seen_a < 0)
      seen_a = rec.n;
    if (all.calls && seen_all < 0)
      seen_all = rec.n;
  }
  assert_int_equal(wa.calls, 1);
  assert_int_equal(wb.calls, 1);
  assert_int_equal(all.calls, 1);
  assert_int_equal(seen_a, 6);
  assert_int_equal(seen_all, 12);
  assert_ptr_equal(wa.got, a);
  assert_null(all.got);
  /* Already empty: called at the next iteration, not inside the call. */
  assert_int_equal(rx_queue_wait_empty(q, NULL, &all.w), 0);
  assert_int_equal(all.calls, 1);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(all.calls, 2);
  /* A blocked item is still an item. */
  assert_int_equal(rx_subqueue_block(b), 0);
  assert_int_equal(rx_queue_push(b, ITEM(99), NULL), 0);
  assert_int_equal(rx_queue_wait_empty(q, b, &wb.w), 0);
  drain();
  assert_int_equal(wb.calls, 1);
  assert_int_equal(rx_subqueue_unblock(b), 0);
  drain();
  assert_int_equal(wb.calls, 2);
  assert_int_equal(rx_queue_free(q), 0);
}

static void test_keyed_fairness(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 0, 0);
  rx_subqueue *k = make_sub(q, 0, 0, RX_SUBQUEUE_KEYED);
  /* Key 7 floods first; keys 8 and 9 arrive after. */
  for (int i = 0; i < 20; i++)
    assert_int_equal(rx_queue_push_key(k, 7, ITEM(700 + i), NULL), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(rx_queue_push_key(k, 8, ITEM(800 + i), NULL), 0);
    assert_int_equal(rx_queue_push_key(k, 9, ITEM(900 + i), NULL), 0);
  }
  drain();
  assert_int_equal(rec.n, 26);
  static const int want[] = {700, 800, 900, 701, 801, 901, 702, 802, 902};
  for (int i = 0; i < 9; i++)
    rxt_assert_eq(rec.item[i], want[i]);
  for (int i = 9; i < 26; i++)
    rxt_assert_eq(rec.item[i], 703 + (i - 9));
  /* Many keys at once, a few items each: every key's lane takes a turn
   * before any key's second item, and the lanes are freed when empty. */
  long blocks = rxt_heap.blocks;
  rec.n = 0;
  for (int r = 0; r < 3; r++)
    for (uint64_t key = 0; key < 500; key++)
      assert_int_equal(
          rx_queue_push_key(k, key * 0x10001, ITEM(r * 1000 + key), NULL), 0);
  drain();
  assert_int_equal(rec.n, 1500);
  for (int i = 0; i < 1500; i++)
    rxt_assert_eq(rec.item[i], (i / 500) * 1000 + (i % 500));
  /* The hash table stays; every lane went. */
  rxt_assert_le(rxt_heap.blocks, blocks + 1);
  /* A keyed push into a plain sub-queue. */
  rx_subqueue *plain = make_sub(q, 0, 0, 0);
  assert_int_equal(rx_queue_push_key(plain, 1, ITEM(1), NULL), -EINVAL);
  assert_int_equal(rx_queue_free(q), 0);
}

static void test_total_vs_sub_limit(void **state) {
  (void)state;
  rx_queue *q = make_queue(5, 0, 1); /* pull */
  rx_subqueue *small = make_sub(q, 0, 3, 0);
  rx_subqueue *open = make_sub(q, 0, 0, 0);
  struct waiter ws, wo;
  waiter_init(&ws, 0);
  waiter_init(&wo, 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rx_queue_push(small, ITEM(i + 1), NULL), 0);
  /* Refused by its own limit while the total has room. */
  assert_int_equal(rx_queue_push(small, ITEM(4), &ws.w), -EAGAIN);
  assert_int_equal(rx_queue_push(open, ITEM(10), NULL), 0);
  assert_int_equal(rx_queue_push(open, ITEM(11), NULL), 0);
  /* Refused by the total while its own limit is none. */
  assert_int_equal(rx_queue_push(open, ITEM(12), &wo.w), -EAGAIN);
  struct rx_queue_stats st;
  assert_int_equal(rx_subqueue_stats(small, &st), 0);
  rxt_assert_eq(st.refused, 1);
  assert_int_equal(rx_subqueue_stats(open, &st), 0);
  rxt_assert_eq(st.refused, 1);
  assert_int_equal(rx_queue_stats(q, &st), 0);
  rxt_assert_eq(st.refused, 2);
  rxt_assert_eq(st.depth, 5);
  rxt_assert_eq(st.waiting, 2);
  /* Raising the total frees room for `open` only: `small` is still full. */
  assert_int_equal(rx_queue_set_limit(q, 6), 0);
  drain();
  assert_int_equal(wo.calls, 1);
  assert_int_equal(ws.calls, 0);
  /* Popping from `open` frees room in the total, not in `small`. */
  void *item;
  rx_subqueue *from;
  assert_int_equal(rx_queue_push(open, ITEM(12), NULL), 0);
  assert_int_equal(rx_queue_set_limit(q, 5), 0); /* 6 held: over, no drop */
  assert_int_equal(rx_queue_stats(q, &st), 0);
  rxt_assert_eq(st.depth, 6);
  /* `small`'s waiter is due once both `small` and the total have room,
   * and not before. */
  for (;;) {
    assert_int_equal(rx_queue_pop(q, &item, &from), 0);
    drain();
    struct rx_queue_stats ss;
    assert_int_equal(rx_subqueue_stats(small, &ss), 0);
    assert_int_equal(rx_queue_stats(q, &st), 0);
    int due = ss.depth < 3 && st.depth < 5;
    assert_int_equal(ws.calls, due);
    if (due)
      break;
  }
  assert_int_equal(rx_subqueue_set_limit(small, 0), 0);
  assert_int_equal(rx_queue_free(q), 0);
}

/* ---------------------------------------------------------------------------
 * The budget: no starvation.
 */

static void count_idle(rx_loop *loop, rx_idle *w, int revents) {
  (void)loop;
  (void)revents;
  (*(int *)w->data)++;
}

static void count_timer(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  (*(int *)w->data)++;
}

static void test_no_starvation(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 4, 0);
  rx_subqueue *sq = make_sub(q, 0, 100, 0);
  rec.echo = sq; /* every item consumed is pushed again: never empty */
  for (int i = 0; i < 10; i++)
    assert_int_equal(rx_queue_push(sq, ITEM(i), NULL), 0);
  int idles = 0;
  rx_idle idle;
  rx_idle_init(&idle, count_idle);
  idle.data = &idles;
  assert_int_equal(rx_idle_start(rxt.loop, &idle), 0);
  for (int i = 0; i < 200; i++)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  /* The application's idle watcher ran in every iteration, and the queue
   * took exactly its budget in each. */
  assert_int_equal(idles, 200);
  assert_int_equal(rec.n, 800);
  assert_int_equal(rx_idle_stop(rxt.loop, &idle), 0);
  /* A timer fires on time beside it, and the loop never blocks. */
  int fired = 0;
  rx_timer t;
  rx_timer_init(&t, count_timer, RX_MSEC(1), RX_MSEC(1));
  t.data = &fired;
  rx_now_update(rxt.loop);
  assert_int_equal(rx_timer_start(rxt.loop, &t), 0);
  int64_t t0 = rxt_clock();
  while (fired < 5 && rxt_clock() - t0 < RX_SEC(20))
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  assert_int_equal(fired >= 5, 1);
  assert_int_equal(rx_timer_stop(rxt.loop, &t), 0);
  struct rx_queue_stats st;
  assert_int_equal(rx_queue_stats(q, &st), 0);
  rxt_assert_eq(st.depth, 10);
  rxt_assert_eq(st.high_water, 10);
  rxt_assert_eq(st.delivered, (uint64_t)rec.n);
  /* Freeing drops what is held. */
  rec.echo = NULL;
  assert_int_equal(rx_queue_free(q), 0);
  assert_int_equal(rec.dropped, 10);
}

/* ---------------------------------------------------------------------------
 * Re-entrancy and bad input.
 */

static int free_rc;
static void consume_and_free(rx_queue *q, rx_subqueue *sq, void *item) {
  consume(q, sq, item);
  free_rc = rx_queue_free(q);
  /* Freeing the sub-queue it came from is allowed. */
  assert_int_equal(rx_subqueue_free(sq), 0);
}

static void test_reentrancy(void **state) {
  (void)state;
  rx_queue *q = make_queue(0, 0, 0);
  struct rx_queue_options o = {0};
  o.consume = consume_and_free;
  o.drop = drop;
  o.data = &rec;
  o.allocator = &rxt_allocator;
  assert_int_equal(rx_queue_free(q), 0);
  assert_int_equal(rx_queue_new(&q, rxt.loop, &o), 0);
  rx_subqueue *a = make_sub(q, 0, 0, 0);
  rx_subqueue *b = make_sub(q, 0, 0, 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(rx_queue_push(a, ITEM(i), NULL), 0);
    assert_int_equal(rx_queue_push(b, ITEM(i + 10), NULL), 0);
  }
  drain();
  /* The first item's sub-queue went with its two other items, then b's
   * first item freed b. */
  assert_int_equal(free_rc, -EBUSY);
  assert_int_equal(rec.n, 2);
  assert_int_equal(rec.dropped, 4);
  struct rx_queue_stats st;
  assert_int_equal(rx_queue_stats(q, &st), 0);
  rxt_assert_eq(st.depth, 0);
  rxt_assert_eq(st.dropped, 4);
  /* Clear hands each item to drop and counts it. */
  rx_subqueue *c = make_sub(q, 0, 0, 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(rx_queue_push(c, ITEM(i), NULL), 0);
  rec.dropped = 0;
  assert_int_equal(rx_subqueue_clear(c), 5);
  assert_int_equal(rec.dropped, 5);
  rxt_assert_eq(rec.drop_item[4], 4);
  assert_int_equal(rx_queue_free(q), 0);
}

static void test_bad_input(void **state) {
  (void)state;
  rx_queue *q = NULL;
  struct rx_queue_options o = {0};
  assert_int_equal(rx_queue_new(NULL, rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_queue_new(&q, NULL, NULL), -EINVAL);
  o.priority = RX_MAXPRI + 1;
  assert_int_equal(rx_queue_new(&q, rxt.loop, &o), -EINVAL);
  o.priority = 0;
  struct rx_allocator half = {rxt_alloc, NULL, rxt_free, NULL};
  o.allocator = &half;
  assert_int_equal(rx_queue_new(&q, rxt.loop, &o), -EINVAL);
  assert_null(q);
  assert_int_equal(rx_queue_free(NULL), -EINVAL);
  assert_null(rx_queue_data(NULL));
  assert_int_equal(rx_queue_set_limit(NULL, 1), -EINVAL);
  assert_int_equal(rx_queue_set_budget(NULL, 1), -EINVAL);
  assert_int_equal(rx_subqueue_new(NULL, NULL, NULL), -EINVAL);
  assert_int_equal(rx_subqueue_free(NULL), -EINVAL);
  assert_int_equal(rx_subqueue_set_limit(NULL, 1), -EINVAL);
  assert_int_equal(rx_subqueue_block(NULL), -EINVAL);
  assert_int_equal(rx_subqueue_unblock(NULL), -EINVAL);
  assert_int_equal(rx_subqueue_blocked(NULL), 0);
  assert_int_equal(rx_subqueue_clear(NULL), -EINVAL);
  assert_int_equal(rx_queue_push(NULL, NULL, NULL), -EINVAL);
  assert_int_equal(rx_queue_push_key(NULL, 1, NULL, NULL), -EINVAL);
  assert_int_equal(rx_queue_pop(NULL, NULL, NULL), -EINVAL);
  assert_int_equal(rx_queue_waiter_cancel(NULL), -EINVAL);
  assert_int_equal(rx_queue_waiter_active(NULL), 0);
  rx_queue_waiter_init(NULL, NULL);
  assert_int_equal(rx_queue_wait_empty(NULL, NULL, NULL), -EINVAL);
  struct rx_queue_stats st;
  assert_int_equal(rx_queue_stats(NULL, &st), -EINVAL);
  assert_int_equal(rx_subqueue_stats(NULL, &st), -EINVAL);

  q = make_queue(0, 0, 0);
  rx_subqueue *sq = NULL;
  struct rx_subqueue_options so = {0, 0, 0x80};
  assert_int_equal(rx_subqueue_new(q, &sq, &so), -EINVAL);
  assert_int_equal(rx_subqueue_new(q, NULL, NULL), -EINVAL);
  assert_int_equal(rx_queue_stats(q, NULL), -EINVAL);
  void *item;
  assert_int_equal(rx_queue_pop(q, NULL, NULL), -EINVAL);
  assert_int_equal(rx_queue_pop(q, &item, NULL), -EAGAIN);
  /* A sub-queue of another queue. */
  rx_queue *other = NULL;
  struct rx_queue_options oo = {0};
  oo.allocator = &rxt_allocator;
  assert_int_equal(rx_queue_new(&other, rxt.loop, &oo), 0);
  rx_subqueue *osq = make_sub(other, 0, 0, 0);
  struct waiter w;
  waiter_init(&w, 0);
  assert_int_equal(rx_queue_wait_empty(q, osq, &w.w), -EINVAL);
  assert_int_equal(rx_queue_free(other), 0);
  assert_int_equal(rx_queue_free(q), 0);
}

/* ---------------------------------------------------------------------------
 * Allocation failure: each allocation the scenario makes is refused in
 * turn; the call that needed it returns -ENOMEM and changes nothing, the
 * same call then succeeds, and the queue ends consistent and leak-free.
 */

#define RETRY(call)                                                    \
  do {                                                                 \
    long f0_ = rxt_heap.failed;                                        \
    int rc_ = (call);                                                  \
    if (rc_ == -ENOMEM) {                                              \
      assert_true(rxt_heap.failed > f0_);                              \
      enomem++;                                                        \
      rc_ = (call);                                                    \
    }                                                                  \
    if (rc_ != 0)                                                      \
      fail_msg("%s: %d, failing allocation %ld", #call, rc_, fail_at); \
  } while (0)

static long scenario(long fail_at) {
  long calls0 = rxt_heap.calls;
  int enomem = 0;
  rxt_heap.fail_at = fail_at > 0 ? calls0 + fail_at : 0;
  struct rx_queue_options o = {0};
  o.consume = consume;
  o.drop = drop;
  o.data = &rec;
  o.allocator = &rxt_allocator;
  o.budget = 1000;
  rx_queue *q = NULL;
  RETRY(rx_queue_new(&q, rxt.loop, &o));
  rx_subqueue *plain = NULL, *keyed = NULL;
  struct rx_subqueue_options po = {1, 0, 0}, ko = {0, 0, RX_SUBQUEUE_KEYED};
  RETRY(rx_subqueue_new(q, &plain, &po));
  RETRY(rx_subqueue_new(q, &keyed, &ko));
  for (int i = 0; i < 40; i++) {
    RETRY(rx_queue_push(plain, ITEM(i), NULL));
    RETRY(rx_queue_push_key(keyed, (uint64_t)(i % 20), ITEM(100 + i), NULL));
  }
  struct rx_queue_stats st;
  assert_int_equal(rx_queue_stats(q, &st), 0);
  rxt_assert_eq(st.depth, 80);
  rxt_assert_eq(st.pushed, 80);
  rxt_heap.fail_at = 0;
  rec.n = 0;
  drain();
  assert_int_equal(rec.n, 80);
  for (int i = 0; i < 40; i++)
    rxt_assert_eq(rec.item[i], i);
  assert_int_equal(rx_queue_free(q), 0);
  rxt_heap.fail_at = 0;
  assert_true(enomem <= 1);
  return rxt_heap.calls - calls0;
}

static void test_alloc_failure(void **state) {
  (void)state;
  memset(&rec, 0, sizeof(rec));
  long base = rxt_heap.blocks;
  long total = scenario(0);
  assert_true(total > 10);
  for (long n = 1; n <= total; n++) {
    scenario(n);
    rxt_assert_eq(rxt_heap.blocks, base);
  }
}

/* ---------------------------------------------------------------------------
 * Pushing from other threads: four producers post through a sub-queue
 * whose limit is far below what they send, each post waiting for room.
 * Every item arrives once, in post order per producer, and each post's
 * `done` runs once per post. Also built under ThreadSanitizer.
 */

#define PRODUCERS 4
#define PER_PRODUCER 20000
#define POSTS 8 /* posts each producer cycles through */

struct producer {
  pthread_t thread;
  rx_subqueue *sq;
  int id;
  rx_queue_task post[POSTS];
};

static void *produce(void *arg) {
  struct producer *pr = arg;
  for (int i = 0; i < PER_PRODUCER; i++) {
    rx_queue_task *p = &pr->post[i % POSTS];
    while (rx_queue_task_pending(p))
      sched_yield();
    p->sq = pr->sq;
    p->item = ITEM(((uintptr_t)pr->id << 24) | (uintptr_t)i);
    p->flags = RX_QUEUE_TASK_WAIT | RX_QUEUE_TASK_KEY;
    p->key = (uint64_t)pr->id;
    int rc = rx_queue_post(p);
    if (rc != 0) {
      fprintf(stderr, "rx_queue_post: %d\n", rc);
      abort();
    }
  }
  return NULL;
}

static int posts_done, posts_failed, last_rc;
static int next_seq[PRODUCERS];
static long got;

static void post_done(rx_queue *q, rx_queue_task *p, int rc) {
  (void)q;
  (void)p;
  posts_done++;
  posts_failed += rc != 0;
  last_rc = rc;
}

static void consume_posted(rx_queue *q, rx_subqueue *sq, void *item) {
  (void)q;
  (void)sq;
  uintptr_t v = (uintptr_t)item;
  int id = (int)(v >> 24), seq = (int)(v & 0xffffff);
  if (id >= PRODUCERS || seq != next_seq[id])
    fail_msg("producer %d: item %d, expected %d", id, seq,
             id < PRODUCERS ? next_seq[id] : -1);
  next_seq[id]++;
  got++;
}

static void test_post_threads(void **state) {
  (void)state;
  static struct producer pr[PRODUCERS];
  memset(pr, 0, sizeof(pr));
  memset(next_seq, 0, sizeof(next_seq));
  posts_done = posts_failed = 0;
  got = 0;
  rx_queue *q = NULL;
  struct rx_queue_options o = {0};
  o.consume = consume_posted;
  o.budget = 16;
  o.allocator = &rxt_allocator;
  assert_int_equal(rx_queue_new(&q, rxt.loop, &o), 0);
  rx_subqueue *sq = NULL;
  struct rx_subqueue_options so = {0, 32, RX_SUBQUEUE_KEYED};
  assert_int_equal(rx_subqueue_new(q, &sq, &so), 0);
  /* Bad input, and a post that is still out. */
  rx_queue_task bad = {0};
  assert_int_equal(rx_queue_post(NULL), -EINVAL);
  assert_int_equal(rx_queue_post(&bad), -EINVAL);
  bad.sq = sq;
  bad.flags = 0x80;
  assert_int_equal(rx_queue_post(&bad), -EINVAL);
  bad.flags = 0;
  bad.done = post_done;
  assert_int_equal(rx_queue_post(&bad), 0);
  assert_true(rx_queue_task_pending(&bad));
  assert_int_equal(rx_queue_post(&bad), -EBUSY);
  assert_int_equal(rx_queue_task_pending(NULL), 0);
  drain();
  assert_false(rx_queue_task_pending(&bad));
  assert_int_equal(posts_done, 1);
  assert_int_equal(got, 1);
  got = 0; /* the item was NULL: producer 0, seq 0 */
  /* Into a full sub-queue: refused at once, or, waiting, pushed once there
   * is room; a key for a plain sub-queue is refused. */
  rx_subqueue *one = NULL;
  struct rx_subqueue_options oneo = {5, 1, 0};
  assert_int_equal(rx_subqueue_new(q, &one, &oneo), 0);
  assert_int_equal(rx_subqueue_block(one), 0);
  assert_int_equal(rx_queue_push(one, ITEM(1), NULL), 0);
  bad.sq = one;
  bad.item = ITEM(2);
  assert_int_equal(rx_queue_post(&bad), 0);
  drain();
  assert_int_equal(posts_done, 2);
  assert_int_equal(last_rc, -EAGAIN);
  bad.flags = RX_QUEUE_TASK_KEY;
  assert_int_equal(rx_queue_post(&bad), 0);
  drain();
  assert_int_equal(posts_done, 3);
  assert_int_equal(last_rc, -EINVAL);
  bad.flags = RX_QUEUE_TASK_WAIT;
  assert_int_equal(rx_queue_post(&bad), 0);
  drain();
  assert_true(rx_queue_task_pending(&bad));
  assert_int_equal(posts_done, 3);
  struct rx_queue_stats ost;
  assert_int_equal(rx_subqueue_stats(one, &ost), 0);
  rxt_assert_eq(ost.waiting, 1);
  assert_int_equal(rx_subqueue_unblock(one), 0);
  drain();
  assert_false(rx_queue_task_pending(&bad));
  assert_int_equal(posts_done, 4);
  assert_int_equal(last_rc, 0);
  assert_int_equal(got, 2); /* the first item and the waiting task's */
  assert_int_equal(rx_subqueue_free(one), 0);
  memset(next_seq, 0, sizeof(next_seq));
  got = 0;
  posts_done = posts_failed = 0;

  for (int i = 0; i < PRODUCERS; i++) {
    pr[i].sq = sq;
    pr[i].id = i;
    for (int j = 0; j < POSTS; j++)
      pr[i].post[j].done = post_done;
    assert_int_equal(pthread_create(&pr[i].thread, NULL, produce, &pr[i]), 0);
  }
  rx_ref(rxt.loop); /* posted tasks alone do not keep the loop waiting */
  int64_t t0 = rxt_clock();
  while (got < (long)PRODUCERS * PER_PRODUCER && rxt_clock() - t0 < RX_SEC(60))
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  rx_unref(rxt.loop);
  for (int i = 0; i < PRODUCERS; i++)
    assert_int_equal(pthread_join(pr[i].thread, NULL), 0);
  drain();
  rxt_assert_eq(got, (long)PRODUCERS * PER_PRODUCER);
  rxt_assert_eq(posts_done, PRODUCERS * PER_PRODUCER);
  assert_int_equal(posts_failed, 0);
  struct rx_queue_stats st;
  assert_int_equal(rx_subqueue_stats(sq, &st), 0);
  rxt_assert_le(st.high_water, 32);
  rxt_assert_eq(st.depth, 0);
  rxt_assert_eq(st.waiting, 0);
  assert_int_equal(rx_queue_free(q), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_strict_priority),
      RXT_TEST(test_equal_priorities_alternate),
      RXT_TEST(test_room_waiter_once),
      RXT_TEST(test_room_waiter_blocked),
      RXT_TEST(test_block_unblock),
      RXT_TEST(test_wait_empty),
      RXT_TEST(test_keyed_fairness),
      RXT_TEST(test_total_vs_sub_limit),
      RXT_TEST(test_no_starvation),
      RXT_TEST(test_reentrancy),
      RXT_TEST(test_bad_input),
      RXT_TEST(test_alloc_failure),
      RXT_TEST(test_post_threads),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-queue [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
