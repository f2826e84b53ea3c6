/*
 * test-idle.c - tests reactor/idle.c: idle, prepare and check watchers. The
 * idle rule (libev's: idle watchers of the highest priority that has any run
 * only while nothing of that priority or higher is pending), the place of
 * prepare and check around the wait, stopping inside callbacks, the
 * cross-loop and priority rules.
 */
#include "helpers.h"

#include "internal.h"

struct cnt {
  union {
    rx_idle idle;
    rx_prepare prepare;
    rx_check check;
  } u;
  int calls;
  int stop_after;
  char tag;
  char *log; /* shared log of tags */
  int *nlog;
  uint64_t iter[16]; /* rx_iteration() of each call */
  int64_t clock[16];
};

static void note(rx_loop *loop, struct cnt *c) {
  if (c->calls < 16) {
    c->iter[c->calls] = rx_iteration(loop);
    c->clock[c->calls] = rxt_clock();
  }
  c->calls++;
  if (c->log != NULL)
    c->log[(*c->nlog)++] = c->tag;
}

static void idle_cb(rx_loop *loop, rx_idle *w, int revents) {
  assert_int_equal(revents, RX_IDLE);
  struct cnt *c = (struct cnt *)w;
  note(loop, c);
  if (c->stop_after && c->calls >= c->stop_after)
    assert_int_equal(rx_idle_stop(loop, w), 0);
}

static void prepare_cb(rx_loop *loop, rx_prepare *w, int revents) {
  assert_int_equal(revents, RX_PREPARE);
  struct cnt *c = (struct cnt *)w;
  note(loop, c);
  if (c->stop_after && c->calls >= c->stop_after)
    assert_int_equal(rx_prepare_stop(loop, w), 0);
}

static void check_cb(rx_loop *loop, rx_check *w, int revents) {
  assert_int_equal(revents, RX_CHECK);
  struct cnt *c = (struct cnt *)w;
  note(loop, c);
  if (c->stop_after && c->calls >= c->stop_after)
    assert_int_equal(rx_check_stop(loop, w), 0);
}

static void idle_new(struct cnt *c, int pri) {
  memset(c, 0, sizeof(*c));
  rx_idle_init(&c->u.idle, idle_cb);
  assert_int_equal(rx_idle_set_priority(&c->u.idle, pri), 0);
}

/* An always-writable fd watcher: an event pending in every iteration. */
struct busy {
  rx_io w;
  int calls;
};

static void busy_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  assert_int_equal(revents, RX_WRITE);
  ((struct busy *)w)->calls++;
}

static void busy_start(struct busy *b, int fd, int pri) {
  memset(b, 0, sizeof(*b));
  rx_io_init(&b->w, busy_cb, fd, RX_WRITE);
  assert_int_equal(rx_io_set_priority(&b->w, pri), 0);
  assert_int_equal(rx_io_start(rxt.loop, &b->w), 0);
  rxt_run_nowait(rxt.loop, 2); /* armed and firing */
}

/* ---------------------------------------------------------------------------
 * The idle rule.
 */

static void idle_vs_busy(int idle_pri, int busy_pri, int idle_runs, int fd) {
  struct cnt i;
  struct busy b;
  idle_new(&i, idle_pri);
  busy_start(&b, fd, busy_pri);
  rx_idle_start(rxt.loop, &i.u.idle);
  int bc = b.calls;
  rxt_run_nowait(rxt.loop, 10);
  assert_int_equal(b.calls - bc, 10);
  assert_int_equal(i.calls, idle_runs ? 10 : 0);
  rx_io_stop(rxt.loop, &b.w);
  rx_idle_stop(rxt.loop, &i.u.idle);
}

static void test_idle_rule(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  idle_vs_busy(0, 0, 0, sv[0]);  /* same priority pending: no idle */
  idle_vs_busy(0, 1, 0, sv[0]);  /* higher priority pending: no idle */
  idle_vs_busy(0, -1, 1, sv[0]); /* only lower priority pending: idle */
  idle_vs_busy(2, 1, 1, sv[0]);
  idle_vs_busy(-2, 2, 0, sv[0]);
  idle_vs_busy(-2, -2, 0, sv[0]);

  /* Only the highest priority that has idle watchers runs. */
  struct cnt hi, lo, hi2;
  idle_new(&hi, 1);
  idle_new(&hi2, 1);
  idle_new(&lo, -1);
  rx_idle_start(rxt.loop, &lo.u.idle);
  rx_idle_start(rxt.loop, &hi.u.idle);
  rx_idle_start(rxt.loop, &hi2.u.idle);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(hi.calls, 5);
  assert_int_equal(hi2.calls, 5);
  assert_int_equal(lo.calls, 0);
  rx_idle_stop(rxt.loop, &hi.u.idle);
  rx_idle_stop(rxt.loop, &hi2.u.idle);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(lo.calls, 5);
  rx_idle_stop(rxt.loop, &lo.u.idle);

  /* Once the pending source stops, the idle runs. */
  struct cnt i;
  struct busy b;
  idle_new(&i, 0);
  busy_start(&b, sv[0], 0);
  rx_idle_start(rxt.loop, &i.u.idle);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(i.calls, 0);
  rx_io_stop(rxt.loop, &b.w);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(i.calls, 3);
  rx_idle_stop(rxt.loop, &i.u.idle);
  assert_int_equal(rxt.loop->idlecnt, 0);
  rxt_close_pair(sv);
}

/* An expired timer of the idle's priority counts as pending too. */
static void test_idle_rule_timers(void **state) {
  (void)state;
  struct cnt i;
  idle_new(&i, 0);
  struct rxt_rec ticks = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, 0, 0);
  t.data = &ticks;
  rx_idle_start(rxt.loop, &i.u.idle);
  rx_timer_start(rxt.loop, &t);
  rx_run(rxt.loop, RX_RUN_NOWAIT); /* the timer expires: no idle */
  assert_int_equal(ticks.calls, 1);
  assert_int_equal(i.calls, 0);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(i.calls, 1);
  rx_idle_stop(rxt.loop, &i.u.idle);
}

/* An active idle watcher keeps the loop from blocking. */
static void test_idle_does_not_block(void **state) {
  (void)state;
  struct rxt_rec ticks = {0};
  rx_timer far;
  rx_timer_init(&far, rxt_rec_timer_cb, RX_SEC(10), 0);
  far.data = &ticks;
  rx_timer_start(rxt.loop, &far);
  struct cnt i;
  idle_new(&i, 0);
  rx_idle_start(rxt.loop, &i.u.idle);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  assert_int_equal(i.calls, 1);
  for (int k = 0; k < 100; k++)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  assert_int_equal(i.calls, 101);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal(ticks.calls, 0);
  /* Stopped, it no longer does: ONCE now waits for the next event. */
  rx_idle_stop(rxt.loop, &i.u.idle);
  rx_timer_stop(rxt.loop, &far);
  rx_timer_set(&far, RX_MSEC(20), 0);
  rx_now_update(rxt.loop);
  int64_t t1 = rx_now(rxt.loop);
  rx_timer_start(rxt.loop, &far);
  while (ticks.calls == 0)
    rx_run(rxt.loop, RX_RUN_ONCE);
  rxt_assert_ge(rxt_clock(), t1 + RX_MSEC(20));
}

/* ---------------------------------------------------------------------------
 * prepare and check around the wait.
 */

struct poker {
  struct cnt c; /* a prepare watcher */
  int fd;       /* written to in the prepare callback */
};

static void poke_prepare_cb(rx_loop *loop, rx_prepare *w, int revents) {
  prepare_cb(loop, w, revents);
  rxt_send(((struct poker *)w)->fd, 'p');
}

struct logio {
  rx_io w;
  char *log;
  int *nlog;
  uint64_t iter[16];
  int calls;
};

static void logio_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)revents;
  struct logio *l = (struct logio *)w;
  rxt_drain(w->fd);
  if (l->calls < 16)
    l->iter[l->calls] = rx_iteration(loop);
  l->calls++;
  l->log[(*l->nlog)++] = 'I';
}

static void test_prepare_check_order(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  char log[64];
  int nlog = 0;
  struct poker p;
  memset(&p, 0, sizeof(p));
  rx_prepare_init(&p.c.u.prepare, poke_prepare_cb);
  p.c.tag = 'P';
  p.c.log = log;
  p.c.nlog = &nlog;
  p.fd = sv[1];
  struct cnt c;
  memset(&c, 0, sizeof(c));
  rx_check_init(&c.u.check, check_cb);
  c.tag = 'C';
  c.log = log;
  c.nlog = &nlog;
  struct logio io;
  memset(&io, 0, sizeof(io));
  rx_io_init(&io.w, logio_cb, sv[0], RX_READ);
  io.log = log;
  io.nlog = &nlog;
  rx_io_start(rxt.loop, &io.w);
  rx_prepare_start(rxt.loop, &p.c.u.prepare);
  rx_check_start(rxt.loop, &c.u.check);
  uint64_t it0 = rx_iteration(rxt.loop);
  /* The prepare callback writes before the wait, so the wait of the same
   * iteration sees the fd readable, and the check comes after it. */
  for (int k = 0; k < 5; k++)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  log[nlog] = '\0';
  assert_string_equal(log, "PICPICPICPICPIC");
  for (int k = 0; k < 5; k++) {
    rxt_assert_eq(p.c.iter[k], it0 + 1 + k);
    rxt_assert_eq(io.iter[k], it0 + 1 + k);
    rxt_assert_eq(c.iter[k], it0 + 1 + k);
  }
  rx_io_stop(rxt.loop, &io.w);
  rx_prepare_stop(rxt.loop, &p.c.u.prepare);
  rx_check_stop(rxt.loop, &c.u.check);
  rxt_close_pair(sv);
}

/* prepare runs before a blocking wait and check after it. */
static void test_prepare_check_around_wait(void **state) {
  (void)state;
  struct cnt p, c;
  memset(&p, 0, sizeof(p));
  memset(&c, 0, sizeof(c));
  rx_prepare_init(&p.u.prepare, prepare_cb);
  rx_check_init(&c.u.check, check_cb);
  struct rxt_rec ticks = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, RX_MSEC(20), 0);
  t.data = &ticks;
  rx_now_update(rxt.loop);
  int64_t due = rx_now(rxt.loop) + RX_MSEC(20);
  rx_timer_start(rxt.loop, &t);
  rx_prepare_start(rxt.loop, &p.u.prepare);
  rx_check_start(rxt.loop, &c.u.check);
  int runs = 0;
  while (ticks.calls == 0) {
    rx_run(rxt.loop, RX_RUN_ONCE);
    runs++;
  }
  /* once per iteration each */
  assert_true(runs <= 16);
  assert_int_equal(p.calls, runs);
  assert_int_equal(c.calls, runs);
  /* the first prepare ran before the deadline, the last check after it */
  rxt_assert_lt(p.clock[0], due);
  rxt_assert_ge(c.clock[runs - 1], due);
  rxt_assert_le(p.clock[runs - 1], c.clock[runs - 1]);
  rx_prepare_stop(rxt.loop, &p.u.prepare);
  rx_check_stop(rxt.loop, &c.u.check);
}

/* ---------------------------------------------------------------------------
 * Stopping and freeing inside callbacks.
 */

static void test_stop_inside_callbacks(void **state) {
  (void)state;
  struct cnt i, p, c;
  idle_new(&i, 0);
  memset(&p, 0, sizeof(p));
  memset(&c, 0, sizeof(c));
  rx_prepare_init(&p.u.prepare, prepare_cb);
  rx_check_init(&c.u.check, check_cb);
  i.stop_after = 3;
  p.stop_after = 4;
  c.stop_after = 5;
  rx_idle_start(rxt.loop, &i.u.idle);
  rx_prepare_start(rxt.loop, &p.u.prepare);
  rx_check_start(rxt.loop, &c.u.check);
  /* NOWAIT: once the idle is gone, prepare and check alone would let the
   * loop block (as in libev, they do not keep it awake). */
  int runs = 0;
  while (rx_run(rxt.loop, RX_RUN_NOWAIT) == 1 && runs < 100)
    runs++;
  assert_int_equal(runs, 4);
  assert_int_equal(i.calls, 3);
  assert_int_equal(p.calls, 4);
  assert_int_equal(c.calls, 5);
  assert_false(rx_is_active(&i.u.idle));
  assert_false(rx_is_active(&p.u.prepare));
  assert_false(rx_is_active(&c.u.check));
  assert_int_equal(rxt.loop->idlecnt, 0);
}

/* The first of several fed watchers stops and frees the others: their
 * callbacks must not run, nothing touches their memory. */
struct group {
  struct cnt *w[3];
  int kind; /* 0 idle, 1 prepare, 2 check */
  int calls;
};

static struct group *the_group;

static void kill_all(rx_loop *loop) {
  struct group *g = the_group;
  g->calls++;
  for (int k = 0; k < 3; k++) {
    struct cnt *c = g->w[k];
    if (g->kind == 0)
      assert_int_equal(rx_idle_stop(loop, &c->u.idle), 0);
    else if (g->kind == 1)
      assert_int_equal(rx_prepare_stop(loop, &c->u.prepare), 0);
    else
      assert_int_equal(rx_check_stop(loop, &c->u.check), 0);
    memset(c, 0xee, sizeof(*c));
    free(c);
    g->w[k] = NULL;
  }
}

static void kill_idle_cb(rx_loop *loop, rx_idle *w, int revents) {
  (void)w;
  (void)revents;
  kill_all(loop);
}
static void kill_prepare_cb(rx_loop *loop, rx_prepare *w, int revents) {
  (void)w;
  (void)revents;
  kill_all(loop);
}
static void kill_check_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)w;
  (void)revents;
  kill_all(loop);
}

static void test_free_inside_callbacks(void **state) {
  (void)state;
  for (int kind = 0; kind < 3; kind++) {
    struct group g;
    memset(&g, 0, sizeof(g));
    g.kind = kind;
    the_group = &g;
    for (int k = 0; k < 3; k++) {
      g.w[k] = calloc(1, sizeof(struct cnt));
      assert_non_null(g.w[k]);
      if (kind == 0) {
        rx_idle_init(&g.w[k]->u.idle, kill_idle_cb);
        rx_idle_start(rxt.loop, &g.w[k]->u.idle);
      } else if (kind == 1) {
        rx_prepare_init(&g.w[k]->u.prepare, kill_prepare_cb);
        rx_prepare_start(rxt.loop, &g.w[k]->u.prepare);
      } else {
        rx_check_init(&g.w[k]->u.check, kill_check_cb);
        rx_check_start(rxt.loop, &g.w[k]->u.check);
      }
    }
    assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
    assert_int_equal(g.calls, 1);
    assert_int_equal(rx_pending_count(rxt.loop), 0);
  }
}

/* ---------------------------------------------------------------------------
 * Rules.
 */

static void test_start_twice(void **state) {
  (void)state;
  struct cnt i, p, c;
  idle_new(&i, 0);
  memset(&p, 0, sizeof(p));
  memset(&c, 0, sizeof(c));
  rx_prepare_init(&p.u.prepare, prepare_cb);
  rx_check_init(&c.u.check, check_cb);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(rx_idle_start(rxt.loop, &i.u.idle), 0);
    assert_int_equal(rx_prepare_start(rxt.loop, &p.u.prepare), 0);
    assert_int_equal(rx_check_start(rxt.loop, &c.u.check), 0);
  }
  assert_int_equal(rxt.loop->activecnt, 3);
  assert_int_equal(rxt.loop->idlecnt, 1);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(i.calls, 1);
  assert_int_equal(p.calls, 1);
  assert_int_equal(c.calls, 1);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(rx_idle_stop(rxt.loop, &i.u.idle), 0);
    assert_int_equal(rx_prepare_stop(rxt.loop, &p.u.prepare), 0);
    assert_int_equal(rx_check_stop(rxt.loop, &c.u.check), 0);
  }
  assert_int_equal(rxt.loop->activecnt, 0);
  assert_int_equal(rxt.loop->idlecnt, 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
}

/* Active on loop A: start and stop on loop B are refused with -EBUSY and
 * leave A alone (rx.h: "Start and stop cannot fail except on a NULL argument
 * (-EINVAL) or a watcher active on another loop (-EBUSY)"). */
static void test_other_loop(void **state) {
  (void)state;
  rx_loop *b;
  assert_int_equal(rx_loop_new(&b, NULL), 0);
  struct cnt i, p, c, bi;
  idle_new(&i, 0);
  idle_new(&bi, 0);
  memset(&p, 0, sizeof(p));
  memset(&c, 0, sizeof(c));
  rx_prepare_init(&p.u.prepare, prepare_cb);
  rx_check_init(&c.u.check, check_cb);
  rx_idle_start(rxt.loop, &i.u.idle);
  rx_prepare_start(rxt.loop, &p.u.prepare);
  rx_check_start(rxt.loop, &c.u.check);
  rx_idle_start(b, &bi.u.idle); /* B's idle list is not empty */

  assert_int_equal(rx_idle_start(b, &i.u.idle), -EBUSY);
  assert_int_equal(rx_prepare_start(b, &p.u.prepare), -EBUSY);
  assert_int_equal(rx_check_start(b, &c.u.check), -EBUSY);
  assert_int_equal(rx_idle_stop(b, &i.u.idle), -EBUSY);
  assert_int_equal(rx_prepare_stop(b, &p.u.prepare), -EBUSY);
  assert_int_equal(rx_check_stop(b, &c.u.check), -EBUSY);
  assert_true(rx_is_active(&i.u.idle));
  assert_true(rx_is_active(&p.u.prepare));
  assert_true(rx_is_active(&c.u.check));
  assert_int_equal(rxt.loop->activecnt, 3);
  assert_int_equal(rxt.loop->idlecnt, 1);
  assert_int_equal(b->activecnt, 1);
  assert_int_equal(b->idlecnt, 1);

  rxt_run_nowait(b, 2);
  assert_int_equal(bi.calls, 2);
  assert_int_equal(i.calls + p.calls + c.calls, 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(i.calls, 2);
  assert_int_equal(p.calls, 2);
  assert_int_equal(c.calls, 2);
  assert_int_equal(bi.calls, 2);

  rx_idle_stop(rxt.loop, &i.u.idle);
  rx_prepare_stop(rxt.loop, &p.u.prepare);
  rx_check_stop(rxt.loop, &c.u.check);
  rx_idle_stop(b, &bi.u.idle);
  assert_int_equal(rx_run(b, RX_RUN_NOWAIT), 0);
  rx_loop_free(b);
}

static void test_priority_setters(void **state) {
  (void)state;
  struct cnt i, p, c;
  idle_new(&i, 0);
  memset(&p, 0, sizeof(p));
  memset(&c, 0, sizeof(c));
  rx_prepare_init(&p.u.prepare, prepare_cb);
  rx_check_init(&c.u.check, check_cb);
  for (int pri = RX_MINPRI; pri <= RX_MAXPRI; pri++) {
    assert_int_equal(rx_idle_set_priority(&i.u.idle, pri), 0);
    assert_int_equal(rx_prepare_set_priority(&p.u.prepare, pri), 0);
    assert_int_equal(rx_check_set_priority(&c.u.check, pri), 0);
  }
  static const int bad[] = {RX_MINPRI - 1, RX_MAXPRI + 1, 100, -100};
  for (size_t k = 0; k < 4; k++) {
    assert_int_equal(rx_idle_set_priority(&i.u.idle, bad[k]), -EINVAL);
    assert_int_equal(rx_prepare_set_priority(&p.u.prepare, bad[k]), -EINVAL);
    assert_int_equal(rx_check_set_priority(&c.u.check, bad[k]), -EINVAL);
  }
  assert_int_equal(rx_idle_set_priority(NULL, 0), -EINVAL);
  assert_int_equal(rx_prepare_set_priority(NULL, 0), -EINVAL);
  assert_int_equal(rx_check_set_priority(NULL, 0), -EINVAL);

  rx_idle_start(rxt.loop, &i.u.idle);
  rx_prepare_start(rxt.loop, &p.u.prepare);
  rx_check_start(rxt.loop, &c.u.check);
  assert_int_equal(rx_idle_set_priority(&i.u.idle, 0), -EBUSY);
  assert_int_equal(rx_prepare_set_priority(&p.u.prepare, 0), -EBUSY);
  assert_int_equal(rx_check_set_priority(&c.u.check, 0), -EBUSY);
  /* the idle is still found under its old priority */
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(i.calls, 1);
  rx_idle_stop(rxt.loop, &i.u.idle);
  rx_prepare_stop(rxt.loop, &p.u.prepare);
  rx_check_stop(rxt.loop, &c.u.check);
  assert_int_equal(rx_idle_set_priority(&i.u.idle, 0), 0);

  /* NULL arguments */
  assert_int_equal(rx_idle_start(NULL, &i.u.idle), -EINVAL);
  assert_int_equal(rx_idle_start(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_idle_stop(NULL, &i.u.idle), -EINVAL);
  assert_int_equal(rx_idle_stop(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_prepare_start(NULL, &p.u.prepare), -EINVAL);
  assert_int_equal(rx_prepare_start(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_prepare_stop(NULL, &p.u.prepare), -EINVAL);
  assert_int_equal(rx_prepare_stop(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_check_start(NULL, &c.u.check), -EINVAL);
  assert_int_equal(rx_check_start(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_check_stop(NULL, &c.u.check), -EINVAL);
  assert_int_equal(rx_check_stop(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rxt.loop->activecnt, 0);
}

/* ---------------------------------------------------------------------------
 * 6. Cleanup watchers.
 */

struct cleanup_ctx {
  rx_cleanup w;
  rx_io *io;
  rx_timer *t;
  int calls;
  int revents;
  int io_active, t_active; /* at the call */
  int stop_io, stop_t;     /* what the stops returned */
  int verify;
  const char *what;
  int pending_before;
  int tag;
};

static void cleanup_cb(rx_loop *loop, rx_cleanup *w, int revents) {
  struct cleanup_ctx *c = (struct cleanup_ctx *)w;
  c->calls++;
  c->revents = revents;
  if (c->tag != 0 && rxt_norder < 64)
    rxt_order[rxt_norder++] = c->tag;
  if (c->io != NULL) {
    c->io_active = rx_is_active(c->io);
    c->stop_io = rx_io_stop(loop, c->io);
  }
  if (c->t != NULL) {
    c->t_active = rx_is_active(c->t);
    c->stop_t = rx_timer_stop(loop, c->t);
  }
  c->what = "unset";
  c->verify = rx_verify(loop, &c->what);
}

/* Called once by rx_loop_free(), with RX_CLEANUP, before anything is torn
 * down: watchers can still be stopped and the loop verifies. */
static void test_cleanup_runs_at_free(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2];
  rxt_pair(sv);
  struct rxt_rec hio = {0}, ht = {0};
  rx_io io;
  rx_timer t;
  rx_io_init(&io, rxt_rec_io_cb, sv[0], RX_READ);
  rx_timer_init(&t, rxt_rec_timer_cb, RX_SEC(60), 0);
  io.data = &hio;
  t.data = &ht;
  assert_int_equal(rx_io_start(loop, &io), 0);
  assert_int_equal(rx_timer_start(loop, &t), 0);
  rxt_run_nowait(loop, 2);

  struct cleanup_ctx a, b, gone;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  memset(&gone, 0, sizeof(gone));
  rx_cleanup_init(&a.w, cleanup_cb);
  rx_cleanup_init(&b.w, cleanup_cb);
  rx_cleanup_init(&gone.w, cleanup_cb);
  a.io = &io;
  a.t = &t;
  a.tag = 1;
  b.tag = 2;
  assert_int_equal(rx_cleanup_set_priority(&b.w, 1), 0);
  assert_int_equal(rx_cleanup_start(loop, &a.w), 0);
  assert_int_equal(rx_cleanup_start(loop, &b.w), 0);
  assert_int_equal(rx_cleanup_start(loop, &gone.w), 0);
  assert_int_equal(rx_cleanup_set_priority(&b.w, 0), -EBUSY);
  /* Stopped before the free: never called. */
  assert_int_equal(rx_cleanup_stop(loop, &gone.w), 0);
  assert_int_equal(rx_cleanup_stop(loop, &gone.w), 0);
  rxt_run_nowait(loop, 2);
  assert_int_equal(a.calls + b.calls + gone.calls, 0);
  rxt_assert_verified(loop);

  rxt_norder = 0;
  rx_loop_free(loop);
  rxt.loop = NULL;

  assert_int_equal(a.calls, 1);
  assert_int_equal(a.revents, RX_CLEANUP);
  assert_true(a.io_active);
  assert_true(a.t_active);
  assert_int_equal(a.stop_io, 0);
  assert_int_equal(a.stop_t, 0);
  assert_int_equal(a.verify, 0);
  assert_null(a.what);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.revents, RX_CLEANUP);
  assert_int_equal(b.verify, 0);
  assert_int_equal(gone.calls, 0);
  /* Higher priority first. */
  assert_int_equal(rxt_norder, 2);
  assert_int_equal(rxt_order[0], 2);
  assert_int_equal(rxt_order[1], 1);
  assert_false(rx_is_active(&a.w));
  assert_false(rx_is_active(&b.w));
  assert_false(rx_is_active(&io));
  assert_false(rx_is_active(&t));
  assert_int_equal(hio.calls + ht.calls, 0);
  rxt_close_pair(sv);
}

/* An active cleanup watcher alone does not keep rx_run() going. */
static void test_cleanup_does_not_keep_loop_alive(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct cleanup_ctx c;
  memset(&c, 0, sizeof(c));
  rx_cleanup_init(&c.w, cleanup_cb);
  int before = loop->activecnt;
  assert_int_equal(rx_cleanup_start(loop, &c.w), 0);
  assert_int_equal(rx_cleanup_start(loop, &c.w), 0); /* again: no-op */
  assert_true(rx_is_active(&c.w));
  assert_int_equal(loop->activecnt, before);

  rxt_wd_start(loop, RX_SEC(3));
  int64_t t0 = rxt_clock();
  int rc = rx_run(loop, RX_RUN_DEFAULT);
  int64_t took = rxt_clock() - t0;
  assert_false(rxt_wd_stop());
  assert_int_equal(rc, 0);
  rxt_assert_lt(took, RX_SEC(1));
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(rx_run(loop, RX_RUN_ONCE), 0);
  assert_int_equal(c.calls, 0);

  assert_int_equal(rx_cleanup_stop(loop, &c.w), 0);
  assert_int_equal(loop->activecnt, before);
  assert_int_equal(rx_cleanup_stop(loop, &c.w), 0);
  assert_int_equal(loop->activecnt, before);
  assert_false(rx_is_active(&c.w));

  /* Started again, it is called at the free (the fixture's). */
  assert_int_equal(rx_cleanup_start(loop, &c.w), 0);
  rx_loop_free(loop);
  rxt.loop = NULL;
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.revents, RX_CLEANUP);
}

/* A cleanup watcher active on one loop is -EBUSY on another; bad args. */
static void test_cleanup_other_loop(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop, *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  struct cleanup_ctx c;
  memset(&c, 0, sizeof(c));
  rx_cleanup_init(&c.w, cleanup_cb);
  assert_int_equal(rx_cleanup_start(NULL, &c.w), -EINVAL);
  assert_int_equal(rx_cleanup_start(loop, NULL), -EINVAL);
  assert_int_equal(rx_cleanup_stop(NULL, &c.w), -EINVAL);
  assert_int_equal(rx_cleanup_set_priority(&c.w, RX_MAXPRI + 1), -EINVAL);

  int a0 = loop->activecnt, o0 = other->activecnt;
  assert_int_equal(rx_cleanup_start(loop, &c.w), 0);
  assert_int_equal(rx_cleanup_start(other, &c.w), -EBUSY);
  assert_int_equal(rx_cleanup_stop(other, &c.w), -EBUSY);
  assert_true(rx_is_active(&c.w));
  assert_int_equal(loop->activecnt, a0);
  assert_int_equal(other->activecnt, o0);
  const char *what;
  assert_int_equal(rx_verify(other, &what), 0);
  assert_int_equal(rx_verify(loop, &what), 0);

  rx_loop_free(other); /* not its watcher: not called */
  assert_int_equal(c.calls, 0);
  assert_true(rx_is_active(&c.w));
  rx_loop_free(loop);
  rxt.loop = NULL;
  assert_int_equal(c.calls, 1);
  assert_false(rx_is_active(&c.w));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_idle_rule),
      RXT_TEST(test_idle_rule_timers),
      RXT_TEST(test_idle_does_not_block),
      RXT_TEST(test_prepare_check_order),
      RXT_TEST(test_prepare_check_around_wait),
      RXT_TEST(test_stop_inside_callbacks),
      RXT_TEST(test_free_inside_callbacks),
      RXT_TEST(test_start_twice),
      RXT_TEST(test_other_loop),
      RXT_TEST(test_priority_setters),
      RXT_TEST(test_cleanup_runs_at_free),
      RXT_TEST(test_cleanup_does_not_keep_loop_alive),
      RXT_TEST(test_cleanup_other_loop),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-idle [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
