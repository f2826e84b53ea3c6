/*
 * test-timer.c - tests reactor/timer.c on the loop: timers never fire early,
 * expire in deadline order with ties in start order, repeat without drift;
 * rx_timer_again, rx_timer_remaining and stop/resume; the start/stop/set
 * rules; callbacks that stop, restart or free timers; fine ticks and long
 * timers. Timing is asserted only as correctness bounds (never early), with
 * generous upper bounds for a noisy machine.
 */
#include "helpers.h"

#include "internal.h"

/* Generous: a timer may be this late on a loaded VM without failing. */
#define LATE_OK RX_MSEC(750)

struct tmr {
  rx_timer t;
  int calls;
  int id;
  int64_t fired_at[32]; /* CLOCK_MONOTONIC in the callback */
  int64_t now_at[32];   /* rx_now() in the callback */
  uint64_t iteration;
  int stop_after; /* stop in the callback once calls reaches it */
  int *log;       /* shared firing order */
  int *nlog;
  void (*hook)(rx_loop *loop, struct tmr *x);
  void *ctx;
};

static void tmr_cb(rx_loop *loop, rx_timer *w, int revents) {
  struct tmr *x = (struct tmr *)w;
  assert_int_equal(revents, RX_TIMER);
  if (x->calls < 32) {
    x->fired_at[x->calls] = rxt_clock();
    x->now_at[x->calls] = rx_now(loop);
  }
  x->calls++;
  x->iteration = rx_iteration(loop);
  if (x->log != NULL)
    x->log[(*x->nlog)++] = x->id;
  if (x->stop_after && x->calls >= x->stop_after)
    assert_int_equal(rx_timer_stop(loop, w), 0);
  if (x->hook != NULL)
    x->hook(loop, x);
}

static void tmr_init(struct tmr *x, int64_t after, int64_t repeat) {
  memset(x, 0, sizeof(*x));
  rx_timer_init(&x->t, tmr_cb, after, repeat);
}

static void check_wheel(rx_loop *loop) {
  assert_int_equal(rx__tw_validate(&loop->wheel), 0);
}

/* ---------------------------------------------------------------------------
 * Never early.
 */

static void never_early(rx_loop *loop) {
  static const int64_t delays[] = {
      0,          1,          RX_USEC(100), RX_USEC(600), RX_MSEC(1),
      RX_MSEC(3), RX_MSEC(7), RX_MSEC(13),  RX_MSEC(50)};
  enum { N = sizeof(delays) / sizeof(delays[0]) };
  struct tmr x[N];
  rx_now_update(loop);
  int64_t start = rx_now(loop);
  for (int i = 0; i < N; i++) {
    tmr_init(&x[i], delays[i], 0);
    assert_int_equal(rx_timer_start(loop, &x[i].t), 0);
  }
  check_wheel(loop);
  assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(x[i].calls, 1);
    rxt_assert_ge(x[i].fired_at[0], start + delays[i]);
    rxt_assert_ge(x[i].now_at[0], start + delays[i]);
    rxt_assert_lt(x[i].fired_at[0], start + delays[i] + LATE_OK);
    assert_false(rx_is_active(&x[i].t));
  }
  check_wheel(loop);
}

static void test_never_early(void **state) {
  (void)state;
  never_early(rxt.loop);
}

/* Many timers at pseudo-random delays, started at different times. */
static void test_never_early_many(void **state) {
  (void)state;
  enum { N = 300 };
  struct tmr *x = calloc(N, sizeof(*x));
  int64_t *due = calloc(N, sizeof(*due));
  assert_non_null(x);
  assert_non_null(due);
  uint32_t seed = 12345;
  for (int i = 0; i < N; i++) {
    seed = seed * 1103515245u + 12345u;
    int64_t d = (int64_t)(seed >> 8) % RX_MSEC(20);
    tmr_init(&x[i], d, 0);
    if (i % 50 == 0)
      rx_now_update(rxt.loop);
    due[i] = rx_now(rxt.loop) + d;
    assert_int_equal(rx_timer_start(rxt.loop, &x[i].t), 0);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(x[i].calls, 1);
    rxt_assert_ge(x[i].now_at[0], due[i]);
    rxt_assert_ge(x[i].fired_at[0], due[i]);
  }
  free(x);
  free(due);
}

/* ---------------------------------------------------------------------------
 * Order.
 */

static void order_by_deadline(int block_first) {
  /* Distinct deadlines 37 us apart, several per tick, started shuffled. */
  static const int perm[] = {7, 2,  12, 0, 15, 9, 4,  11,
                             1, 14, 6,  3, 13, 8, 10, 5};
  enum { N = 16 };
  struct tmr x[N];
  int log[N], nlog = 0;
  rx_now_update(rxt.loop);
  for (int i = 0; i < N; i++) {
    int k = perm[i];
    tmr_init(&x[k], RX_MSEC(2) + k * RX_USEC(37), 0);
    x[k].id = k;
    x[k].log = log;
    x[k].nlog = &nlog;
    assert_int_equal(rx_timer_start(rxt.loop, &x[k].t), 0);
  }
  if (block_first) {
    /* All expire in one iteration: the expiry pass must sort them. */
    rxt_sleep_ns(RX_MSEC(10));
    assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
    for (int i = 1; i < N; i++)
      assert_true(x[i].iteration == x[0].iteration);
  } else {
    assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  }
  assert_int_equal(nlog, N);
  for (int i = 0; i < N; i++)
    assert_int_equal(log[i], i);
}

static void test_deadline_order(void **state) {
  (void)state;
  order_by_deadline(0);
}

static void test_deadline_order_one_iteration(void **state) {
  (void)state;
  order_by_deadline(1);
}

/* Equal deadlines fire in start order, also among other deadlines. */
static void test_ties_in_start_order(void **state) {
  (void)state;
  enum { N = 20 };
  struct tmr x[N];
  int log[N], nlog = 0;
  rx_now_update(rxt.loop);
  /* even ids at 3 ms, odd ids at 1 ms, started in id order */
  for (int i = 0; i < N; i++) {
    tmr_init(&x[i], i % 2 ? RX_MSEC(1) : RX_MSEC(3), 0);
    x[i].id = i;
    x[i].log = log;
    x[i].nlog = &nlog;
    rx_timer_start(rxt.loop, &x[i].t);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(nlog, N);
  int k = 0;
  for (int i = 1; i < N; i += 2)
    assert_int_equal(log[k++], i);
  for (int i = 0; i < N; i += 2)
    assert_int_equal(log[k++], i);

  /* the same when they all expire in one iteration, started permuted */
  nlog = 0;
  rx_now_update(rxt.loop);
  for (int i = 0; i < N; i++) {
    int k = (i * 7) % N;
    assert_int_equal(rx_timer_set(&x[k].t, RX_MSEC(1), 0), 0);
    assert_int_equal(rx_timer_start(rxt.loop, &x[k].t), 0);
  }
  rxt_sleep_ns(RX_MSEC(5));
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(nlog, N);
  for (int i = 0; i < N; i++)
    assert_int_equal(log[i], (i * 7) % N);
}

/* ---------------------------------------------------------------------------
 * Repeat without drift: each deadline is the previous one plus `repeat`,
 * whatever the lateness of the callbacks.
 */

struct drift {
  int64_t first; /* first deadline */
  int64_t repeat;
  int bad_phase;
  int n;
  int sleep_at; /* block the loop in this call */
};

static void drift_hook(rx_loop *loop, struct tmr *x) {
  struct drift *d = x->ctx;
  d->n++;
  if (x->calls >= x->stop_after)
    return; /* tmr_cb has stopped it */
  /* The timer is back in the wheel already: its next deadline. */
  assert_true(rx_is_active(&x->t));
  int64_t next = rx_now(loop) + rx_timer_remaining(loop, &x->t);
  if ((next - d->first) % d->repeat != 0 || next <= rx_now(loop) ||
      next - rx_now(loop) > d->repeat)
    d->bad_phase++;
  if (x->calls == d->sleep_at)
    rxt_sleep_ns(d->repeat * 4 + d->repeat / 2);
}

static void test_repeat_no_drift(void **state) {
  (void)state;
  const int64_t rep = RX_MSEC(5);
  struct tmr x;
  struct drift d = {0, rep, 0, 0, 0};
  tmr_init(&x, rep, rep);
  x.stop_after = 20;
  x.hook = drift_hook;
  x.ctx = &d;
  rx_now_update(rxt.loop);
  int64_t start = rx_now(rxt.loop);
  d.first = start + rep;
  rx_timer_start(rxt.loop, &x.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 20);
  assert_int_equal(d.bad_phase, 0);
  for (int i = 0; i < 20; i++) {
    rxt_assert_ge(x.now_at[i], start + (i + 1) * rep);
    rxt_assert_ge(x.fired_at[i], start + (i + 1) * rep);
  }
  rxt_assert_ge(x.fired_at[19] - start, 20 * rep);
  rxt_assert_le(x.fired_at[19] - start, 20 * rep + LATE_OK);
}

/* A loop blocked for several periods does not get a burst of calls: missed
 * periods are skipped, and the phase is kept. */
static void test_repeat_skips_missed_periods(void **state) {
  (void)state;
  const int64_t rep = RX_MSEC(5);
  struct tmr x;
  struct drift d = {0, rep, 0, 0, 2};
  tmr_init(&x, rep, rep);
  x.stop_after = 6;
  x.hook = drift_hook;
  x.ctx = &d;
  rx_now_update(rxt.loop);
  d.first = rx_now(rxt.loop) + rep;
  rx_timer_start(rxt.loop, &x.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 6);
  assert_int_equal(d.bad_phase, 0);
  /* the call after the 4.5-period sleep is not followed at once by others */
  rxt_assert_ge(x.now_at[2] - x.now_at[1], 4 * rep);
  rxt_assert_gt(x.now_at[3], x.now_at[2]);
}

/* ---------------------------------------------------------------------------
 * rx_timer_again, rx_timer_remaining, stop and resume.
 */

static void test_again(void **state) {
  (void)state;
  struct tmr x;
  tmr_init(&x, RX_SEC(1), 0);
  /* inactive, repeat 0: nothing */
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), 0);
  assert_false(rx_is_active(&x.t));
  /* inactive, repeat set: starts `repeat` from now */
  x.t.repeat = RX_MSEC(50);
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), 0);
  assert_true(rx_is_active(&x.t));
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), RX_MSEC(50));
  /* active: restarts from the new now */
  rxt_sleep_ns(RX_MSEC(5));
  rx_now_update(rxt.loop);
  rxt_assert_lt(rx_timer_remaining(rxt.loop, &x.t), RX_MSEC(46));
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), 0);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), RX_MSEC(50));
  assert_int_equal(rxt.loop->activecnt, 1);
  /* repeat 0: stops it */
  x.t.repeat = 0;
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), 0);
  assert_false(rx_is_active(&x.t));
  assert_int_equal(rxt.loop->activecnt, 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  /* negative repeat */
  x.t.repeat = -1;
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), -EINVAL);
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), -EINVAL);
  assert_false(rx_is_active(&x.t));
  assert_int_equal(rx_timer_again(NULL, &x.t), -EINVAL);
  assert_int_equal(rx_timer_again(rxt.loop, NULL), -EINVAL);
  /* once it fires with repeat > 0 it goes on repeating */
  x.t.repeat = RX_MSEC(2);
  x.stop_after = 3;
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 3);
  check_wheel(rxt.loop);
}

/* libev's idle-timeout idiom: rx_timer_again on every activity pushes the
 * timeout back; it fires `repeat` after the last push. */
struct watchdog {
  struct tmr *timeout;
  int64_t last_push;
  int pushes;
};

static void push_hook(rx_loop *loop, struct tmr *x) {
  struct watchdog *wd = x->ctx;
  wd->pushes++;
  wd->last_push = rx_now(loop);
  assert_int_equal(rx_timer_again(loop, &wd->timeout->t), 0);
  if (wd->pushes == 15)
    rx_timer_stop(loop, &x->t);
}

static void test_again_watchdog(void **state) {
  (void)state;
  struct tmr timeout, pusher;
  struct watchdog wd = {&timeout, 0, 0};
  tmr_init(&timeout, 0, RX_MSEC(30));
  timeout.stop_after = 1;
  tmr_init(&pusher, RX_MSEC(4), RX_MSEC(4));
  pusher.hook = push_hook;
  pusher.ctx = &wd;
  rx_timer_again(rxt.loop, &timeout.t);
  rx_timer_start(rxt.loop, &pusher.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(wd.pushes, 15);
  assert_int_equal(timeout.calls, 1);
  rxt_assert_ge(timeout.now_at[0], wd.last_push + RX_MSEC(30));
}

/* rx_timer_again on a pending timer drops the pending expiry. */
struct again_hi {
  rx_check c;
  struct tmr *victim;
  int was_pending;
};

static void again_hi_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)revents;
  struct again_hi *a = (struct again_hi *)w;
  a->was_pending = rx_is_pending(&a->victim->t);
  assert_int_equal(rx_timer_again(loop, &a->victim->t), 0);
  assert_false(rx_is_pending(&a->victim->t));
  assert_true(rx_is_active(&a->victim->t));
  rxt_assert_eq(rx_timer_remaining(loop, &a->victim->t), RX_SEC(10));
  rx_check_stop(loop, w);
}

static void test_again_pending(void **state) {
  (void)state;
  struct tmr v;
  tmr_init(&v, 0, RX_SEC(10));
  struct again_hi a;
  rx_check_init(&a.c, again_hi_cb);
  rx_check_set_priority(&a.c, RX_MAXPRI);
  a.victim = &v;
  a.was_pending = 0;
  rx_timer_start(rxt.loop, &v.t);
  rx_check_start(rxt.loop, &a.c);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(a.was_pending, 1);
  assert_int_equal(v.calls, 0);
  rx_timer_stop(rxt.loop, &v.t);
}

static void test_remaining_stop_resume(void **state) {
  (void)state;
  struct tmr x;
  tmr_init(&x, RX_MSEC(100), 0);
  /* stopped: the delay it would start with */
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), RX_MSEC(100));
  rx_now_update(rxt.loop);
  int64_t t0 = rx_now(rxt.loop);
  rx_timer_start(rxt.loop, &x.t);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), RX_MSEC(100));
  rxt_sleep_ns(RX_MSEC(20));
  rx_now_update(rxt.loop);
  int64_t left = RX_MSEC(100) - (rx_now(rxt.loop) - t0);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), left);
  /* stop keeps what was left */
  assert_int_equal(rx_timer_stop(rxt.loop, &x.t), 0);
  assert_false(rx_is_active(&x.t));
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), left);
  assert_int_equal(rx_timer_stop(rxt.loop, &x.t), 0); /* idempotent */
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), left);
  /* start resumes with it, from the new now */
  rxt_sleep_ns(RX_MSEC(20));
  rx_now_update(rxt.loop);
  int64_t t1 = rx_now(rxt.loop);
  rx_timer_start(rxt.loop, &x.t);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), left);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  rxt_assert_ge(x.now_at[0], t1 + left);
  /* an expired one-shot has nothing left: start fires it at once */
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), 0);
  rx_timer_start(rxt.loop, &x.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(x.calls, 2);
  /* set gives a fresh delay */
  assert_int_equal(rx_timer_set(&x.t, RX_MSEC(200), 0), 0);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), RX_MSEC(200));
  /* a due timer reports <= 0 */
  rx_timer_set(&x.t, RX_MSEC(1), 0);
  rx_timer_start(rxt.loop, &x.t);
  rxt_sleep_ns(RX_MSEC(3));
  rx_now_update(rxt.loop);
  rxt_assert_le(rx_timer_remaining(rxt.loop, &x.t), 0);
  rx_timer_stop(rxt.loop, &x.t);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), 0);
  check_wheel(rxt.loop);
}

/* ---------------------------------------------------------------------------
 * Rules.
 */

struct set_hi {
  rx_check c;
  struct tmr *victim;
  int rc_set, rc_prio;
};

static void set_hi_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)revents;
  struct set_hi *s = (struct set_hi *)w;
  /* the one-shot victim is inactive but pending */
  assert_false(rx_is_active(&s->victim->t));
  assert_true(rx_is_pending(&s->victim->t));
  s->rc_set = rx_timer_set(&s->victim->t, RX_MSEC(1), 0);
  s->rc_prio = rx_timer_set_priority(&s->victim->t, 1);
  rx_check_stop(loop, w);
}

static void test_rules(void **state) {
  (void)state;
  struct tmr x;
  tmr_init(&x, -1, 0);
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), -EINVAL);
  tmr_init(&x, 0, -1);
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), -EINVAL);
  assert_int_equal(rx_timer_again(rxt.loop, &x.t), -EINVAL);
  assert_false(rx_is_active(&x.t));
  assert_int_equal(rx_timer_set(&x.t, -1, 0), -EINVAL);
  assert_int_equal(rx_timer_set(&x.t, 0, -1), -EINVAL);
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), -EINVAL); /* still */
  assert_int_equal(rx_timer_set(&x.t, RX_SEC(5), 0), 0);     /* valid now */
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), 0);
  assert_int_equal(rx_timer_set(&x.t, 1, 0), -EBUSY);
  assert_int_equal(rx_timer_set_priority(&x.t, 1), -EBUSY);
  rxt_assert_eq(rx_timer_remaining(rxt.loop, &x.t), RX_SEC(5));
  rx_timer_stop(rxt.loop, &x.t);

  assert_int_equal(rx_timer_set_priority(&x.t, RX_MAXPRI + 1), -EINVAL);
  assert_int_equal(rx_timer_set_priority(&x.t, RX_MINPRI - 1), -EINVAL);
  assert_int_equal(rx_timer_set_priority(&x.t, RX_MINPRI), 0);
  assert_int_equal(rx_timer_set_priority(NULL, 0), -EINVAL);
  assert_int_equal(rx_timer_set(NULL, 0, 0), -EINVAL);
  assert_int_equal(rx_timer_start(NULL, &x.t), -EINVAL);
  assert_int_equal(rx_timer_start(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_timer_stop(NULL, &x.t), -EINVAL);
  assert_int_equal(rx_timer_stop(rxt.loop, NULL), -EINVAL);

  /* set and set_priority are refused while an expiry is pending */
  struct tmr v;
  tmr_init(&v, 0, 0);
  struct set_hi s;
  rx_check_init(&s.c, set_hi_cb);
  rx_check_set_priority(&s.c, RX_MAXPRI);
  s.victim = &v;
  rx_timer_start(rxt.loop, &v.t);
  rx_check_start(rxt.loop, &s.c);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(s.rc_set, -EBUSY);
  assert_int_equal(s.rc_prio, -EBUSY);
  assert_int_equal(v.calls, 1);
}

/* ---------------------------------------------------------------------------
 * Callbacks that stop, restart or free their timer.
 */

static void test_stop_in_own_callback(void **state) {
  (void)state;
  struct tmr x;
  tmr_init(&x, RX_MSEC(1), RX_MSEC(1));
  x.stop_after = 3;
  rx_timer_start(rxt.loop, &x.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 3);
  assert_false(rx_is_active(&x.t));
  assert_false(rx_is_pending(&x.t));
}

static void restart_hook(rx_loop *loop, struct tmr *x) {
  assert_false(rx_is_active(&x->t)); /* a one-shot stops before its call */
  if (x->calls < 4) {
    assert_int_equal(rx_timer_set(&x->t, RX_MSEC(1), 0), 0);
    assert_int_equal(rx_timer_start(loop, &x->t), 0);
  }
}

static void test_restart_in_own_callback(void **state) {
  (void)state;
  struct tmr x;
  tmr_init(&x, RX_MSEC(1), 0);
  x.hook = restart_hook;
  rx_timer_start(rxt.loop, &x.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 4);
  for (int i = 1; i < 4; i++)
    rxt_assert_ge(x.now_at[i], x.now_at[i - 1] + RX_MSEC(1));
}

/* A repeating timer stops and starts itself: it resumes with what was left
 * of its period. */
static void stop_start_hook(rx_loop *loop, struct tmr *x) {
  assert_true(rx_is_active(&x->t));
  int64_t before = rx_timer_remaining(loop, &x->t);
  assert_int_equal(rx_timer_stop(loop, &x->t), 0);
  assert_false(rx_is_active(&x->t));
  assert_int_equal(rx_timer_start(loop, &x->t), 0);
  rxt_assert_eq(rx_timer_remaining(loop, &x->t), before);
}

static void test_stop_start_in_own_callback(void **state) {
  (void)state;
  struct tmr x;
  tmr_init(&x, RX_MSEC(2), RX_MSEC(2));
  x.hook = stop_start_hook;
  x.stop_after = 0;
  rx_timer_start(rxt.loop, &x.t);
  while (x.calls < 3)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  rx_timer_stop(rxt.loop, &x.t);
  check_wheel(rxt.loop);
}

static void free_hook(rx_loop *loop, struct tmr *x) {
  int *calls = x->ctx;
  (*calls)++;
  assert_int_equal(rx_timer_stop(loop, &x->t), 0);
  memset(x, 0x5a, sizeof(*x));
  free(x);
}

static void test_free_in_own_callback(void **state) {
  (void)state;
  int calls = 0;
  for (int repeat = 0; repeat < 2; repeat++) {
    struct tmr *x = malloc(sizeof(*x));
    assert_non_null(x);
    tmr_init(x, RX_MSEC(1), repeat ? RX_MSEC(1) : 0);
    x->hook = free_hook;
    x->ctx = &calls;
    rx_timer_start(rxt.loop, &x->t);
    assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
    assert_int_equal(calls, repeat + 1);
  }
  check_wheel(rxt.loop);
}

/* A higher-priority callback stops (and frees) a pending timer: its
 * callback must not run. Priority beats deadline within an iteration. */
struct killer {
  rx_timer t;
  struct tmr *victim;
  int was_pending;
  int ran_first;
  int *log, *nlog;
};

static void killer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  struct killer *k = (struct killer *)w;
  k->ran_first = *k->nlog == 0;
  k->was_pending = rx_is_pending(&k->victim->t);
  unsigned before = rx_pending_count(loop);
  assert_int_equal(rx_timer_stop(loop, &k->victim->t), 0);
  assert_false(rx_is_pending(&k->victim->t));
  assert_int_equal(rx_pending_count(loop), before - 1);
  memset(k->victim, 0x77, sizeof(*k->victim));
  free(k->victim);
  k->victim = NULL;
  k->log[(*k->nlog)++] = 99;
}

static void test_stop_pending_from_higher_priority(void **state) {
  (void)state;
  int log[8], nlog = 0;
  struct tmr *victim = malloc(sizeof(*victim));
  struct tmr early;
  struct killer k;
  assert_non_null(victim);
  rx_now_update(rxt.loop);
  /* early (prio -2) is due first, victim (0) and killer (2) later */
  tmr_init(&early, RX_MSEC(1), 0);
  rx_timer_set_priority(&early.t, RX_MINPRI);
  early.id = 1;
  early.log = log;
  early.nlog = &nlog;
  tmr_init(victim, RX_MSEC(2), RX_MSEC(1));
  victim->log = log;
  victim->nlog = &nlog;
  rx_timer_init(&k.t, killer_cb, RX_MSEC(2), 0);
  rx_timer_set_priority(&k.t, RX_MAXPRI);
  k.victim = victim;
  k.log = log;
  k.nlog = &nlog;
  rx_timer_start(rxt.loop, &early.t);
  rx_timer_start(rxt.loop, &victim->t);
  rx_timer_start(rxt.loop, &k.t);
  rxt_sleep_ns(RX_MSEC(5)); /* all three expire in one iteration */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(k.ran_first, 1);
  assert_int_equal(k.was_pending, 1);
  assert_int_equal(nlog, 2);
  assert_int_equal(log[0], 99);
  assert_int_equal(log[1], 1);
  check_wheel(rxt.loop);
}

/* A timer active on loop A cannot be started on loop B. */
static void test_other_loop(void **state) {
  (void)state;
  rx_loop *b;
  assert_int_equal(rx_loop_new(&b, NULL), 0);
  struct tmr x, y;
  tmr_init(&x, RX_MSEC(1), RX_MSEC(1));
  tmr_init(&y, RX_SEC(5), 0);
  x.stop_after = 2;
  rx_timer_start(b, &y.t); /* B's wheel is not empty */
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), 0);
  assert_int_equal(rx_timer_start(b, &x.t), -EBUSY);
  assert_int_equal(rxt.loop->activecnt, 1);
  assert_int_equal(b->activecnt, 1);
  /* start on its own loop is a no-op */
  assert_int_equal(rx_timer_start(rxt.loop, &x.t), 0);
  assert_int_equal(rxt.loop->activecnt, 1);
  rxt_run_nowait(b, 1);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 2);
  rx_timer_stop(b, &y.t);
  rx_loop_free(b);
}

/* ---------------------------------------------------------------------------
 * Zero delay, fine ticks, long timers.
 */

static void start_zero_hook(rx_loop *loop, struct tmr *x) {
  struct tmr *z = x->ctx;
  assert_int_equal(rx_timer_start(loop, &z->t), 0);
}

static void test_zero_delay(void **state) {
  (void)state;
  struct tmr z, far;
  tmr_init(&z, 0, 0);
  tmr_init(&far, RX_SEC(10), 0);
  rx_timer_start(rxt.loop, &far.t);
  rx_timer_start(rxt.loop, &z.t);
  /* fires in the next iteration, even a non-blocking one */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(z.calls, 1);

  /* started from a callback: next iteration, and ONCE does not block for
   * the far timer meanwhile */
  struct tmr s;
  tmr_init(&s, 0, 0);
  s.hook = start_zero_hook;
  s.ctx = &z;
  rx_timer_start(rxt.loop, &s.t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(s.calls, 1);
  assert_int_equal(z.calls, 1);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal(z.calls, 2);
  assert_int_equal(z.iteration, s.iteration + 1);
  rx_timer_stop(rxt.loop, &far.t);
}

static int setup_fine_tick(void **state) {
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.timer_tick = 1024;
  return rxt_setup_opts(state, &o);
}

static void test_fine_tick(void **state) {
  (void)state;
  assert_int_equal(rxt.loop->wheel.shift, 10);
  never_early(rxt.loop);
  /* sub-tick-of-the-default deadlines, in order */
  static const int64_t d[] = {RX_USEC(250), RX_USEC(50), RX_USEC(150),
                              RX_USEC(100), RX_USEC(200)};
  struct tmr x[5];
  int log[5], nlog = 0;
  rx_now_update(rxt.loop);
  int64_t start = rx_now(rxt.loop);
  for (int i = 0; i < 5; i++) {
    tmr_init(&x[i], d[i], 0);
    x[i].id = (int)(d[i] / RX_USEC(50));
    x[i].log = log;
    x[i].nlog = &nlog;
    rx_timer_start(rxt.loop, &x[i].t);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(nlog, 5);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(log[i], i + 1);
    rxt_assert_ge(x[i].fired_at[0], start + d[i]);
  }
}

/* The tick option is rounded down to a power of two. */
static void test_tick_option(void **state) {
  (void)state;
  static const struct {
    int64_t tick;
    unsigned shift;
  } cases[] = {{0, 19},
               {1024, 10},
               {3000, 11},
               {(int64_t)1 << 20, 20},
               {((int64_t)1 << 30), 30}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct rx_loop_options o;
    memset(&o, 0, sizeof(o));
    o.timer_tick = cases[i].tick;
    rx_loop *loop;
    assert_int_equal(rx_loop_new(&loop, &o), 0);
    assert_int_equal(loop->wheel.shift, cases[i].shift);
    rx_loop_free(loop);
  }
}

static void long_timer(rx_loop *loop, int64_t after, int64_t min_left) {
  struct tmr x;
  tmr_init(&x, after, 0);
  rx_now_update(loop);
  assert_int_equal(rx_timer_start(loop, &x.t), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(x.calls, 0);
  int64_t left = rx_timer_remaining(loop, &x.t);
  rxt_assert_le(left, after);
  rxt_assert_gt(left, min_left);
  check_wheel(loop);
  assert_int_equal(rx_timer_stop(loop, &x.t), 0);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal(x.calls, 0);
}

static void test_long_timer(void **state) {
  (void)state;
  long_timer(rxt.loop, RX_SEC(3600), RX_SEC(3590));
  /* beyond the wheel's top level at a 1 us tick (19.5 h): overflow list */
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.timer_tick = 1024;
  rx_loop *fine;
  assert_int_equal(rx_loop_new(&fine, &o), 0);
  long_timer(fine, RX_SEC(3600) * 24, RX_SEC(3600) * 24 - RX_SEC(10));
  /* the largest delay there is */
  long_timer(fine, INT64_MAX, RX_SEC(3600) * 24 * 365 * 9);
  rx_loop_free(fine);
}

/* ---------------------------------------------------------------------------
 * A timer of one loop handed to another, and deadlines at the end of time.
 */

static rx_loop *manual_loop(void) {
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.flags = RX_LOOP_MANUAL_CLOCK;
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, &o), 0);
  return loop;
}

static void assert_intact(rx_loop *a, rx_loop *b) {
  const char *what = NULL;
  assert_int_equal(rx_verify(a, &what), 0);
  assert_int_equal(rx_verify(b, &what), 0);
}

/* Stop and again on B of a timer active on A: -EBUSY, both wheels intact,
 * and the timer still fires on A. B has timers of its own, alone on their
 * list and in a crowd, so that its wheel has something to corrupt. */
static void test_other_loop_stop_again(void **state) {
  (void)state;
  rx_loop *a = rxt.loop = manual_loop(), *b = manual_loop();
  struct tmr x, y[3];
  tmr_init(&x, RX_MSEC(10), 0);
  for (int i = 0; i < 3; i++) {
    tmr_init(&y[i], RX_SEC(5), 0);
    assert_int_equal(rx_timer_start(b, &y[i].t), 0);
  }
  assert_int_equal(rx_timer_start(a, &x.t), 0);
  assert_int_equal(rx_timer_stop(b, &x.t), -EBUSY);
  x.t.repeat = RX_MSEC(20);
  assert_int_equal(rx_timer_again(b, &x.t), -EBUSY);
  x.t.repeat = 0;
  assert_int_equal(rx_timer_again(b, &x.t), -EBUSY);
  assert_int_equal(rx_feed_event(b, &x.t, RX_TIMER), -EBUSY);
  assert_int_equal(rx_clear_pending(b, &x.t), 0); /* not pending anywhere */
  assert_intact(a, b);
  assert_true(rx_is_active(&x.t));
  /* a timer of B sharing its list with others: the same from A */
  assert_int_equal(rx_timer_stop(a, &y[1].t), -EBUSY);
  assert_intact(a, b);
  assert_int_equal(rx_clock_advance(a, RX_MSEC(10)), 0);
  rxt_run_nowait(a, 1);
  assert_int_equal(x.calls, 1);
  assert_intact(a, b);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rx_timer_stop(b, &y[i].t), 0);
  assert_int_equal(rx__tw_count(&b->wheel), 0);
  rx_loop_free(b);
}

/* The same deep inside a crowd: 64 timers of one deadline share a list of
 * B's wheel, and the one in the middle is named to A; A's own crowd, the
 * same for B. A walk of a few links from the timer cannot tell whose list
 * it is; the answer must still be -EBUSY. */
static void test_other_loop_crowd(void **state) {
  (void)state;
  enum { N = 64 };
  rx_loop *a = rxt.loop = manual_loop(), *b = manual_loop();
  static struct tmr ca[N], cb[N];
  for (int i = 0; i < N; i++) {
    tmr_init(&ca[i], RX_MSEC(50), 0);
    tmr_init(&cb[i], RX_MSEC(50), 0);
    assert_int_equal(rx_timer_start(a, &ca[i].t), 0);
    assert_int_equal(rx_timer_start(b, &cb[i].t), 0);
  }
  for (int i = N / 4; i < 3 * N / 4; i++) {
    assert_int_equal(rx_timer_stop(a, &cb[i].t), -EBUSY);
    assert_int_equal(rx_timer_again(a, &cb[i].t), -EBUSY);
    assert_int_equal(rx_feed_event(a, &cb[i].t, RX_TIMER), -EBUSY);
    assert_int_equal(rx_timer_stop(b, &ca[i].t), -EBUSY);
  }
  assert_intact(a, b);
  assert_int_equal(rx__tw_count(&a->wheel), N);
  assert_int_equal(rx__tw_count(&b->wheel), N);
  assert_int_equal(rx_clock_advance(a, RX_MSEC(50)), 0);
  assert_int_equal(rx_clock_advance(b, RX_MSEC(50)), 0);
  rxt_run_nowait(a, 1);
  rxt_run_nowait(b, 1);
  for (int i = 0; i < N; i++) {
    assert_int_equal(ca[i].calls, 1);
    assert_int_equal(cb[i].calls, 1);
  }
  assert_intact(a, b);
  rx_loop_free(b);
}

/* A timer pending on A (expired, or fed): stop, again, clear_pending, feed
 * and start on B refuse it; A then runs its callback once. */
static void test_other_loop_pending(void **state) {
  (void)state;
  rx_loop *a = rxt.loop = manual_loop(), *b = manual_loop();
  struct tmr x, y;
  tmr_init(&x, RX_MSEC(10), RX_MSEC(10));
  tmr_init(&y, RX_SEC(5), 0);
  assert_int_equal(rx_timer_start(b, &y.t), 0);
  assert_int_equal(rx_timer_start(a, &x.t), 0);
  assert_int_equal(rx_feed_event(a, &x.t, RX_TIMER), 0);
  assert_true(rx_is_pending(&x.t));
  assert_int_equal(rx_timer_stop(b, &x.t), -EBUSY);
  assert_int_equal(rx_timer_again(b, &x.t), -EBUSY);
  assert_int_equal(rx_clear_pending(b, &x.t), -EBUSY);
  assert_int_equal(rx_feed_event(b, &x.t, RX_TIMER), -EBUSY);
  assert_intact(a, b);
  assert_int_equal(rx_pending_count(a), 1);
  assert_int_equal(rx_pending_count(b), 0);
  rxt_run_nowait(a, 1);
  assert_int_equal(x.calls, 1);
  /* a one-shot that expired, inactive but pending on A */
  struct tmr z;
  tmr_init(&z, 0, 0);
  assert_int_equal(rx_timer_start(a, &z.t), 0);
  assert_int_equal(rx_feed_event(a, &z.t, RX_TIMER), 0);
  assert_int_equal(rx_timer_stop(a, &z.t), 0);
  assert_int_equal(rx_feed_event(a, &z.t, RX_TIMER), 0);
  assert_false(rx_is_active(&z.t));
  assert_int_equal(rx_timer_start(b, &z.t), -EBUSY);
  assert_int_equal(rx_timer_stop(b, &z.t), -EBUSY);
  assert_int_equal(rx_clear_pending(b, &z.t), -EBUSY);
  assert_intact(a, b);
  rxt_run_nowait(a, 1);
  assert_int_equal(z.calls, 1);
  assert_int_equal(rx_timer_stop(a, &x.t), 0);
  assert_int_equal(rx_timer_stop(b, &y.t), 0);
  assert_intact(a, b);
  rx_loop_free(b);
}

/* repeat = INT64_MAX: the next deadline saturates (at + repeat overflowed
 * into the past, and the timer fired at every iteration). */
static void test_repeat_int64_max(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop = manual_loop();
  struct tmr x;
  tmr_init(&x, RX_MSEC(1), INT64_MAX);
  assert_int_equal(rx_timer_start(loop, &x.t), 0);
  assert_int_equal(rx_clock_advance(loop, RX_MSEC(1)), 0);
  rxt_run_nowait(loop, 1);
  assert_int_equal(x.calls, 1);
  assert_true(rx_is_active(&x.t));
  assert_int_equal(rx_clock_advance(loop, RX_SEC(3600) * 24 * 365), 0);
  rxt_run_nowait(loop, 10);
  assert_int_equal(x.calls, 1);
  assert_true(rx_is_active(&x.t));
  assert_int_equal(rx_verify(loop, NULL), 0);
  assert_int_equal(rx_timer_stop(loop, &x.t), 0);
}

static void no_invoke(rx_loop *loop) {
  (void)loop;
}

/* The same through rx_clear_pending() of an expired repeating timer, which
 * puts it back at its next deadline. */
static void test_clear_pending_repeat_int64_max(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop = manual_loop();
  struct tmr x;
  tmr_init(&x, RX_MSEC(1), INT64_MAX);
  assert_int_equal(rx_timer_start(loop, &x.t), 0);
  assert_int_equal(rx_clock_advance(loop, RX_MSEC(1)), 0);
  rx_set_invoke_pending(loop, no_invoke);
  rxt_run_nowait(loop, 1);
  assert_true(rx_is_pending(&x.t));
  assert_int_equal(rx_clear_pending(loop, &x.t), RX_TIMER);
  rx_set_invoke_pending(loop, NULL);
  assert_true(rx_is_active(&x.t));
  assert_int_equal(rx_clock_advance(loop, RX_SEC(3600) * 24 * 365), 0);
  rxt_run_nowait(loop, 10);
  assert_int_equal(x.calls, 0);
  assert_int_equal(rx_verify(loop, NULL), 0);
  assert_int_equal(rx_timer_stop(loop, &x.t), 0);
}

/* The manual clock moved by INT64_MAX: a repeating timer fires once for
 * all the periods it missed, and then, with no deadline left after now,
 * ends rather than firing at every iteration. */
static void test_clock_advance_int64_max(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop = manual_loop();
  struct tmr x;
  tmr_init(&x, RX_SEC(1), RX_SEC(1) + 7);
  assert_int_equal(rx_timer_start(loop, &x.t), 0);
  assert_int_equal(rx_clock_advance(loop, INT64_MAX), 0);
  rxt_run_nowait(loop, 1);
  assert_int_equal(x.calls, 1);
  rxt_run_nowait(loop, 10);
  assert_int_equal(x.calls, 1);
  assert_false(rx_is_active(&x.t));
  assert_int_equal(rx_verify(loop, NULL), 0);
  assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0); /* nothing keeps it */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_never_early),
      RXT_TEST(test_never_early_many),
      RXT_TEST(test_deadline_order),
      RXT_TEST(test_deadline_order_one_iteration),
      RXT_TEST(test_ties_in_start_order),
      RXT_TEST(test_repeat_no_drift),
      RXT_TEST(test_repeat_skips_missed_periods),
      RXT_TEST(test_again),
      RXT_TEST(test_again_watchdog),
      RXT_TEST(test_again_pending),
      RXT_TEST(test_remaining_stop_resume),
      RXT_TEST(test_rules),
      RXT_TEST(test_stop_in_own_callback),
      RXT_TEST(test_restart_in_own_callback),
      RXT_TEST(test_stop_start_in_own_callback),
      RXT_TEST(test_free_in_own_callback),
      RXT_TEST(test_stop_pending_from_higher_priority),
      RXT_TEST(test_other_loop),
      RXT_TEST(test_zero_delay),
      RXT_TEST_WITH(test_fine_tick, setup_fine_tick),
      RXT_TEST_NOLOOP(test_tick_option),
      RXT_TEST(test_long_timer),
      RXT_TEST_NOLOOP(test_other_loop_stop_again),
      RXT_TEST_NOLOOP(test_other_loop_crowd),
      RXT_TEST_NOLOOP(test_other_loop_pending),
      RXT_TEST_NOLOOP(test_repeat_int64_max),
      RXT_TEST_NOLOOP(test_clear_pending_repeat_int64_max),
      RXT_TEST_NOLOOP(test_clock_advance_int64_max),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-timer [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
