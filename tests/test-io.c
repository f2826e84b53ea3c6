/*
 * test-io.c - tests reactor/io.c (fd watchers and the fd table) through the
 * backend chosen by RX_BACKEND: readiness, level and edge triggering, the
 * start/stop/set rules, dead fds, fd reuse, callbacks that stop, restart or
 * free watchers, and many fds at once.
 */
#include "helpers.h"

#include <linux/io_uring.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "internal.h"

/* A watcher and what its callback saw. The rx_io comes first, so the
 * callback finds the rest with a cast. */
struct iow {
  rx_io w;
  int calls;
  int last;           /* revents of the last call */
  int all;            /* union of every call's revents */
  int drain;          /* read what there is in the callback */
  int stop;           /* stop in the callback */
  uint64_t iteration; /* rx_iteration() of the last call */
  void (*hook)(rx_loop *loop, struct iow *x, int revents);
  void *ctx;
};

static void iow_cb(rx_loop *loop, rx_io *w, int revents) {
  struct iow *x = (struct iow *)w;
  x->calls++;
  x->last = revents;
  x->all |= revents;
  x->iteration = rx_iteration(loop);
  if (x->drain)
    rxt_drain(w->fd);
  if (x->stop)
    assert_int_equal(rx_io_stop(loop, w), 0);
  if (x->hook != NULL)
    x->hook(loop, x, revents);
}

static void iow_init(struct iow *x, int fd, int events) {
  memset(x, 0, sizeof(*x));
  rx_io_init(&x->w, iow_cb, fd, events);
}

/* ---------------------------------------------------------------------------
 * Readiness.
 */

static void test_readable(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r;
  iow_init(&r, sv[0], RX_READ);
  r.drain = 1;
  assert_int_equal(rx_io_start(rxt.loop, &r.w), 0);
  assert_true(rx_is_active(&r.w));
  assert_int_equal(rx_io_events(&r.w), RX_READ);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 0); /* nothing to read yet */
  rxt_send(sv[1], 'x');
  assert_true(rxt_run_until(rxt.loop, &r.calls, RX_SEC(5)));
  assert_int_equal(r.last, RX_READ);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 1); /* drained: quiet again */
  rx_io_stop(rxt.loop, &r.w);
  assert_false(rx_is_active(&r.w));
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  rxt_close_pair(sv);
}

static void test_writable(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow w;
  iow_init(&w, sv[0], RX_WRITE);
  w.stop = 1;
  assert_int_equal(rx_io_start(rxt.loop, &w.w), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.last, RX_WRITE);
  rxt_close_pair(sv);
}

/* Level-triggered: unread data fires again in every iteration. */
static void test_level_triggered(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r;
  iow_init(&r, sv[0], RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &r.w), 0);
  rxt_send(sv[1], 'x');
  assert_true(rxt_run_until(rxt.loop, &r.calls, RX_SEC(5)));
  for (int i = 0; i < 5; i++) {
    int before = r.calls;
    assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
    assert_int_equal(r.calls, before + 1);
    assert_int_equal(r.last, RX_READ);
    assert_int_equal(r.iteration, rx_iteration(rxt.loop));
  }
  /* Drained: the level drops and so do the calls. One more call may be in
   * flight from the last iteration's re-arm. */
  rxt_drain(sv[0]);
  rxt_run_nowait(rxt.loop, 1);
  int settled = r.calls;
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(r.calls, settled);
  rx_io_stop(rxt.loop, &r.w);
  rxt_close_pair(sv);
}

/* RX_ET: one call per new arrival, not per iteration. */
static void test_edge_triggered(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r;
  iow_init(&r, sv[0], RX_READ | RX_ET);
  assert_int_equal(rx_io_start(rxt.loop, &r.w), 0);
  assert_int_equal(rx_io_events(&r.w), RX_READ | RX_ET);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(r.calls, 0);
  for (int round = 0; round < 3; round++) {
    rxt_send(sv[1], 'x'); /* never drained */
    r.calls = 0;
    assert_true(rxt_run_until(rxt.loop, &r.calls, RX_SEC(5)));
    rxt_run_nowait(rxt.loop, 5);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.last, RX_READ);
  }
  rx_io_stop(rxt.loop, &r.w);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * rx_io_set, rx_io_start and priority rules.
 */

static void test_set_rules(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow x;
  iow_init(&x, sv[0], RX_READ);

  assert_int_equal(rx_io_set(NULL, sv[0], RX_READ), -EINVAL);
  assert_int_equal(rx_io_set(&x.w, -1, RX_READ), -EBADF);
  assert_int_equal(rx_io_set(&x.w, sv[0], 0), -EINVAL);
  assert_int_equal(rx_io_set(&x.w, sv[0], RX_ET), -EINVAL);
  assert_int_equal(rx_io_set(&x.w, sv[0], RX_READ | 0x100), -EINVAL);
  assert_int_equal(rx_io_set(&x.w, sv[0], RX_READ | RX_ERROR), -EINVAL);
  assert_int_equal(rx_io_set(&x.w, sv[0], RX_WRITE | RX_TIMER), -EINVAL);
  /* failures left the watcher as it was */
  assert_int_equal(x.w.fd, sv[0]);
  assert_int_equal(rx_io_events(&x.w), RX_READ);

  assert_int_equal(rx_io_set(&x.w, sv[1], RX_WRITE | RX_ET), 0);
  assert_int_equal(x.w.fd, sv[1]);
  assert_int_equal(rx_io_events(&x.w), RX_WRITE | RX_ET);
  assert_int_equal(rx_io_set(&x.w, sv[0], RX_READ | RX_WRITE), 0);
  assert_int_equal(rx_io_events(&x.w), RX_READ | RX_WRITE);

  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_io_set(&x.w, sv[1], RX_READ), -EBUSY);
  assert_int_equal(rx_io_set_priority(&x.w, 1), -EBUSY);
  assert_int_equal(x.w.fd, sv[0]);
  rx_io_stop(rxt.loop, &x.w);

  assert_int_equal(rx_io_set_priority(NULL, 0), -EINVAL);
  assert_int_equal(rx_io_set_priority(&x.w, RX_MAXPRI + 1), -EINVAL);
  assert_int_equal(rx_io_set_priority(&x.w, RX_MINPRI - 1), -EINVAL);
  assert_int_equal(rx_io_set_priority(&x.w, RX_MAXPRI), 0);
  assert_int_equal(rx_io_set_priority(&x.w, RX_MINPRI), 0);

  /* start checks what init could not */
  rx_io_init(&x.w, iow_cb, -1, RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), -EBADF);
  rx_io_init(&x.w, iow_cb, sv[0], 0);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), -EINVAL);
  rx_io_init(&x.w, iow_cb, sv[0], RX_ET);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), -EINVAL);
  assert_int_equal(rx_io_start(NULL, &x.w), -EINVAL);
  assert_int_equal(rx_io_start(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_io_stop(NULL, &x.w), -EINVAL);
  assert_int_equal(rx_io_stop(rxt.loop, NULL), -EINVAL);
  assert_false(rx_is_active(&x.w));

  /* An fd beyond RLIMIT_NOFILE cannot be open: -EBADF, and no table is
   * grown for it. */
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < (rlim_t)INT32_MAX) {
    long long calls = rxt_heap.calls;
    rx_io_init(&x.w, iow_cb, (int)rl.rlim_cur, RX_READ);
    assert_int_equal(rx_io_start(rxt.loop, &x.w), -EBADF);
    rxt_assert_eq(rxt_heap.calls, calls);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Invalid and dead fds.
 */

static void test_start_on_closed_fd(void **state) {
  (void)state;
  int p[2], sv[2];
  rxt_pair(sv); /* first: a later socketpair would take the dead number */
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  int dead = p[0];
  close(p[0]);
  close(p[1]);

  struct iow bad, good;
  iow_init(&bad, dead, RX_READ);
  iow_init(&good, sv[0], RX_WRITE);
  assert_int_equal(rx_io_start(rxt.loop, &bad.w), 0);
  assert_int_equal(rx_io_start(rxt.loop, &good.w), 0);
  rxt_run_nowait(rxt.loop, 6);
  assert_int_equal(bad.calls, 1);
  assert_true(bad.last & RX_ERROR);
  assert_true(bad.last & RX_READ); /* the interest rides along */
  assert_false(rx_is_active(&bad.w));
  assert_false(rx_is_pending(&bad.w));
  /* the other fd is unaffected: level-triggered writable every time */
  rxt_assert_ge(good.calls, 5);
  assert_int_equal(good.all, RX_WRITE);
  assert_true(rx_is_active(&good.w));
  /* the dead watcher no longer holds the loop */
  rx_io_stop(rxt.loop, &good.w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(bad.calls, 1);
  /* and it can be reused */
  assert_int_equal(rx_io_set(&bad.w, sv[0], RX_WRITE), 0);
  assert_int_equal(rx_io_start(rxt.loop, &bad.w), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(bad.last, RX_WRITE);
  rx_io_stop(rxt.loop, &bad.w);
  rxt_close_pair(sv);
}

static void on_alarm(int sig) {
  (void)sig;
}

/* Two watchers of one dead fd are each told once, in an iteration that does
 * not block. */
static void test_closed_fd_two_watchers(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  int dead = p[1];
  close(p[0]);
  close(p[1]);
  struct iow a, b;
  iow_init(&a, dead, RX_READ);
  iow_init(&b, dead, RX_WRITE);
  rx_io_start(rxt.loop, &a.w);
  rx_io_start(rxt.loop, &b.w);
  /* A blocking iteration reports them without waiting for anything else.
   * An alarm interrupts the wait if it does block, so that the bug shows as
   * a failure and not as a hang. */
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_alarm; /* no SA_RESTART: the wait returns EINTR */
  sigaction(SIGALRM, &sa, &old);
  alarm(3);
  int64_t t0 = rxt_clock();
  int rc = rx_run(rxt.loop, RX_RUN_DEFAULT);
  int64_t took = rxt_clock() - t0;
  alarm(0);
  sigaction(SIGALRM, &old, NULL);
  assert_int_equal(rc, 0);
  rxt_assert_lt(took, RX_SEC(2));
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  assert_int_equal(a.last, RX_ERROR | RX_READ);
  assert_int_equal(b.last, RX_ERROR | RX_WRITE);
}

/* epoll refuses regular files (EPERM): the watcher gets RX_ERROR once and is
 * stopped. io_uring polls them like poll(2) does, always ready. */
static void test_regular_file(void **state) {
  (void)state;
  char path[] = "/tmp/rx-test-io-XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);
  assert_true(fd >= 0);
  unlink(path);
  struct iow x;
  iow_init(&x, fd, RX_READ);
  /* Always ready on both backends, as for poll(2): epoll refuses regular
   * files (EPERM) and rx emulates their readiness there, like libev. */
  x.stop = 1;
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.last, RX_READ);
  assert_false(rx_is_active(&x.w));
  /* Level-triggered: it stays ready, iteration after iteration. */
  x.stop = 0;
  x.calls = 0;
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(x.calls, 3);
  rx_io_stop(rxt.loop, &x.w);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(x.calls, 3);
  /* A file has no edges: edge-triggered watchers hear of it every
   * iteration too, on both backends. */
  rx_io_init(&x.w, iow_cb, fd, RX_READ | RX_ET);
  x.calls = 0;
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(x.calls, 3);
  rx_io_stop(rxt.loop, &x.w);
  close(fd);
}

/* ---------------------------------------------------------------------------
 * Several watchers of one fd.
 */

static void test_two_watchers_one_fd(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r, w;
  iow_init(&r, sv[0], RX_READ);
  iow_init(&w, sv[0], RX_WRITE);
  r.drain = 1;
  rx_io_start(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &w.w);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 0);
  rxt_assert_ge(w.calls, 1);
  assert_int_equal(w.all, RX_WRITE);
  rxt_send(sv[1], 'x');
  assert_true(rxt_run_until(rxt.loop, &r.calls, RX_SEC(5)));
  assert_int_equal(r.all, RX_READ);
  assert_int_equal(w.all, RX_WRITE);
  /* Stopping one leaves the other working. */
  rx_io_stop(rxt.loop, &w.w);
  int wcalls = w.calls;
  r.calls = 0;
  rxt_send(sv[1], 'y');
  assert_true(rxt_run_until(rxt.loop, &r.calls, RX_SEC(5)));
  assert_int_equal(w.calls, wcalls);
  rx_io_stop(rxt.loop, &r.w);
  rxt_close_pair(sv);
}

/* Edge and level triggering are per fd in the kernel: mixing is refused. */
static void test_mixed_et_level(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow a, b;
  iow_init(&a, sv[0], RX_READ | RX_ET);
  iow_init(&b, sv[0], RX_WRITE);
  assert_int_equal(rx_io_start(rxt.loop, &a.w), 0);
  assert_int_equal(rx_io_start(rxt.loop, &b.w), -EINVAL);
  assert_false(rx_is_active(&b.w));
  assert_int_equal(rx_io_set(&b.w, sv[0], RX_WRITE | RX_ET), 0);
  assert_int_equal(rx_io_start(rxt.loop, &b.w), 0);
  rx_io_stop(rxt.loop, &a.w);
  rx_io_stop(rxt.loop, &b.w);
  /* once the fd has no watchers, either kind may start */
  assert_int_equal(rx_io_set(&b.w, sv[0], RX_WRITE), 0);
  assert_int_equal(rx_io_start(rxt.loop, &b.w), 0);
  assert_int_equal(rx_io_start(rxt.loop, &a.w), -EINVAL);
  b.stop = 1;
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.last, RX_WRITE);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Callbacks that stop, free or restart watchers.
 */

static void test_stop_in_own_callback(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r;
  iow_init(&r, sv[0], RX_READ | RX_WRITE);
  r.stop = 1;
  rxt_send(sv[1], 'x');
  rx_io_start(rxt.loop, &r.w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.last, RX_READ | RX_WRITE);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 1);
  rxt_close_pair(sv);
}

/* Whichever of two pending watchers runs first stops the other, whose
 * callback must then not run. */
struct pair_stop {
  struct iow x[2];
  int pending_seen;
  unsigned count_before, count_after;
};

static void stop_other_hook(rx_loop *loop, struct iow *x, int revents) {
  (void)revents;
  struct pair_stop *p = x->ctx;
  struct iow *other = x == &p->x[0] ? &p->x[1] : &p->x[0];
  p->pending_seen = rx_is_pending(&other->w);
  p->count_before = rx_pending_count(loop);
  assert_int_equal(rx_io_stop(loop, &other->w), 0);
  assert_false(rx_is_pending(&other->w));
  assert_false(rx_is_active(&other->w));
  p->count_after = rx_pending_count(loop);
  rx_io_stop(loop, &x->w);
}

static void test_stop_other_pending(void **state) {
  (void)state;
  int a[2], b[2];
  rxt_pair(a);
  rxt_pair(b);
  struct pair_stop p;
  memset(&p, 0, sizeof(p));
  iow_init(&p.x[0], a[0], RX_WRITE);
  iow_init(&p.x[1], b[0], RX_WRITE);
  for (int i = 0; i < 2; i++) {
    p.x[i].hook = stop_other_hook;
    p.x[i].ctx = &p;
    rx_io_start(rxt.loop, &p.x[i].w);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(p.x[0].calls + p.x[1].calls, 1);
  assert_int_equal(p.pending_seen, 1);
  assert_int_equal(p.count_after, p.count_before - 1);
  assert_int_equal(rx_pending_count(rxt.loop), 0);
  rxt_close_pair(a);
  rxt_close_pair(b);
}

/* A higher-priority callback stops a pending lower-priority watcher. */
struct stopper {
  rx_check c;
  struct iow *victim;
  int was_pending;
};

static void stopper_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)revents;
  struct stopper *s = (struct stopper *)w;
  s->was_pending = rx_is_pending(&s->victim->w);
  unsigned before = rx_pending_count(loop);
  assert_int_equal(rx_io_stop(loop, &s->victim->w), 0);
  assert_false(rx_is_pending(&s->victim->w));
  assert_int_equal(rx_pending_count(loop), before - 1);
  /* stop on a stopped watcher is a no-op that succeeds */
  assert_int_equal(rx_io_stop(loop, &s->victim->w), 0);
  rx_check_stop(loop, w);
}

static void test_stop_clears_pending(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow v;
  iow_init(&v, sv[0], RX_WRITE);
  assert_int_equal(rx_io_set_priority(&v.w, RX_MINPRI), 0);
  struct stopper s;
  rx_check_init(&s.c, stopper_cb);
  rx_check_set_priority(&s.c, RX_MAXPRI);
  s.victim = &v;
  s.was_pending = 0;
  rx_io_start(rxt.loop, &v.w);
  rx_check_start(rxt.loop, &s.c);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(s.was_pending, 1);
  assert_int_equal(v.calls, 0);
  rxt_close_pair(sv);
}

/* A callback stops and frees both watchers of an fd, one of them pending:
 * nothing may touch them afterwards (ASan catches it if something does). */
struct heap_pair {
  struct iow *x[2];
  int calls;
};

static void free_both_hook(rx_loop *loop, struct iow *x, int revents) {
  (void)x;
  (void)revents;
  struct heap_pair *h = x->ctx;
  h->calls++;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(rx_io_stop(loop, &h->x[i]->w), 0);
    memset(h->x[i], 0xa5, sizeof(*h->x[i]));
    free(h->x[i]);
    h->x[i] = NULL;
  }
}

static void test_free_in_callback(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct heap_pair h = {{NULL, NULL}, 0};
  for (int i = 0; i < 2; i++) {
    h.x[i] = malloc(sizeof(struct iow));
    assert_non_null(h.x[i]);
    iow_init(h.x[i], sv[0], RX_WRITE);
    h.x[i]->hook = free_both_hook;
    h.x[i]->ctx = &h;
    rx_io_start(rxt.loop, &h.x[i]->w);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(h.calls, 1);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(h.calls, 1);
  /* The fd can get a new watcher afterwards. */
  struct iow w;
  iow_init(&w, sv[0], RX_WRITE);
  w.stop = 1;
  rx_io_start(rxt.loop, &w.w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(w.calls, 1);
  rxt_close_pair(sv);
}

/* A callback restarts its watcher, on the same fd and then on another. */
struct mover {
  int a, b; /* the two read ends */
  int on_b;
};

static void restart_hook(rx_loop *loop, struct iow *x, int revents) {
  assert_int_equal(revents, RX_READ);
  struct mover *m = x->ctx;
  if (m->on_b)
    assert_int_equal(x->w.fd, m->b);
  assert_int_equal(rx_io_stop(loop, &x->w), 0);
  if (x->calls == 3) {
    assert_int_equal(rx_io_set(&x->w, m->b, RX_READ), 0);
    m->on_b = 1;
  }
  if (x->calls < 6)
    assert_int_equal(rx_io_start(loop, &x->w), 0);
}

static void test_restart_in_callback(void **state) {
  (void)state;
  int a[2], b[2];
  rxt_pair(a);
  rxt_pair(b);
  rxt_send(a[1], 'a'); /* never drained: level-triggered fires again */
  rxt_send(b[1], 'b');
  struct mover m = {a[0], b[0], 0};
  struct iow x;
  iow_init(&x, a[0], RX_READ);
  x.hook = restart_hook;
  x.ctx = &m;
  rx_io_start(rxt.loop, &x.w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 6);
  assert_false(rx_is_active(&x.w));
  rxt_close_pair(a);
  rxt_close_pair(b);
}

/* Start twice is a no-op: one stop is enough for the loop to exit. */
static void test_start_twice(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow x;
  iow_init(&x, sv[0], RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  assert_int_equal(rxt.loop->activecnt, 1);
  assert_ptr_equal(rxt.loop->fds[sv[0]].head, &x.w);
  assert_null(x.w._next);
  assert_int_equal(rx_io_stop(rxt.loop, &x.w), 0);
  assert_int_equal(rx_io_stop(rxt.loop, &x.w), 0);
  assert_int_equal(rxt.loop->activecnt, 0);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  rxt_close_pair(sv);
}

/* A watcher active on loop A cannot be started or stopped on loop B. */
static void test_other_loop(void **state) {
  (void)state;
  rx_loop *b;
  assert_int_equal(rxt_loop_new(&b), 0);
  int sv[2];
  rxt_pair(sv);
  struct iow x, y;
  iow_init(&x, sv[0], RX_WRITE);
  iow_init(&y, sv[0], RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  /* B has no table yet */
  assert_int_equal(rx_io_start(b, &x.w), -EBUSY);
  assert_int_equal(rx_io_stop(b, &x.w), -EBUSY);
  /* B watches the same fd with another watcher */
  assert_int_equal(rx_io_start(b, &y.w), 0);
  assert_int_equal(rx_io_start(b, &x.w), -EBUSY);
  assert_int_equal(rx_io_stop(b, &x.w), -EBUSY);
  assert_true(rx_is_active(&x.w));
  assert_int_equal(rxt.loop->activecnt, 1);
  assert_int_equal(b->activecnt, 1);
  /* x still works on A, and only there */
  rxt_run_nowait(b, 2);
  assert_int_equal(x.calls, 0);
  x.stop = 1;
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  rx_io_stop(b, &y.w);
  rx_loop_free(b);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * fd reuse: in one callback, stop the watcher, close its fd, open a new file
 * under the same number, set the watcher again (the contract: a number
 * closed and reused is given to rx_io_set() or rx_io_init()) and start it.
 * The new file's events must arrive, the old file's must not (io.c's
 * RX__FD_RENEW).
 */
struct reuse {
  int fd;        /* the number that is reused */
  int old_peer;  /* the old file's peer, kept open */
  int old_alive; /* a dup of the old file, or -1 */
  int new_peer;
  int keep_old; /* keep the old file alive with a dup */
  int phase;    /* 0: old file, 1: new file */
  char got;
};

static void reuse_hook(rx_loop *loop, struct iow *x, int revents) {
  struct reuse *r = x->ctx;
  if (r->phase == 0) {
    assert_int_equal(revents, RX_READ);
    char c;
    assert_int_equal(read(r->fd, &c, 1), 1);
    assert_int_equal(c, 'o');
    assert_int_equal(rx_io_stop(loop, &x->w), 0);
    if (r->keep_old)
      r->old_alive = fcntl(r->fd, F_DUPFD_CLOEXEC, 0);
    close(r->fd);
    int n[2];
    rxt_pair_at(r->fd, n);
    r->new_peer = n[1];
    assert_int_equal(rx_io_set(&x->w, r->fd, rx_io_events(&x->w)), 0);
    assert_int_equal(rx_io_start(loop, &x->w), 0);
    r->phase = 1;
    return;
  }
  /* Only the new file may be reported. */
  char c = 0;
  ssize_t n = read(r->fd, &c, 1);
  if (n != 1)
    fail_msg("the new fd was reported (%#x) with nothing to read", revents);
  r->got = c;
}

static void fd_reuse(int events, int keep_old) {
  int sv[2];
  rxt_pair(sv);
  struct reuse r = {sv[0], sv[1], -1, -1, keep_old, 0, 0};
  struct iow x;
  iow_init(&x, sv[0], events);
  x.hook = reuse_hook;
  x.ctx = &r;
  rx_io_start(rxt.loop, &x.w);
  rxt_run_nowait(rxt.loop, 2); /* armed on the old file */
  rxt_send(r.old_peer, 'o');
  assert_true(rxt_run_until(rxt.loop, &r.phase, RX_SEC(5)));
  int calls = x.calls;

  /* The old file (if alive) gets data: not reported to the new watcher. */
  if (keep_old)
    rxt_send(r.old_peer, 'O');
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(x.calls, calls);

  /* The new file's data is. */
  rxt_send(r.new_peer, 'n');
  int got = 0;
  for (int i = 0; i < 500 && !r.got; i++) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    if (!r.got)
      rxt_sleep_ns(RX_MSEC(1));
  }
  got = r.got;
  assert_int_equal(got, 'n');
  rx_io_stop(rxt.loop, &x.w);
  if (r.old_alive >= 0)
    close(r.old_alive);
  close(r.old_peer);
  close(r.new_peer);
  close(r.fd);
}

static void test_fd_reuse_level(void **state) {
  (void)state;
  fd_reuse(RX_READ, 0);
}

static void test_fd_reuse_edge(void **state) {
  (void)state;
  fd_reuse(RX_READ | RX_ET, 0);
}

static void test_fd_reuse_old_file_alive(void **state) {
  (void)state;
  fd_reuse(RX_READ, 1);
}

static void test_fd_reuse_old_file_alive_edge(void **state) {
  (void)state;
  fd_reuse(RX_READ | RX_ET, 1);
}

/* Same without a callback in between: stop, close, reopen, set, start, all
 * between two iterations. */
static void test_fd_reuse_between_runs(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  int fd = sv[0];
  struct iow x;
  iow_init(&x, fd, RX_READ);
  x.drain = 1;
  rx_io_start(rxt.loop, &x.w);
  rxt_run_nowait(rxt.loop, 2);
  rx_io_stop(rxt.loop, &x.w);
  rxt_close_pair(sv);
  int n[2];
  rxt_pair_at(fd, n);
  assert_int_equal(rx_io_set(&x.w, fd, RX_READ), 0);
  rx_io_start(rxt.loop, &x.w);
  rxt_send(n[1], 'n');
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_int_equal(x.last, RX_READ);
  rx_io_stop(rxt.loop, &x.w);
  rxt_close_pair(n);
}

/* ---------------------------------------------------------------------------
 * An fd closed while watched, then the watcher stopped: nothing crashes, no
 * kernel reference to the file is left behind (its peer sees EOF once the
 * stop has reached the kernel), and if the callback is told anything about
 * the dead fd it is RX_ERROR with the watcher stopped.
 */
static void closed_while_watched(int ready) {
  int sv[2];
  rxt_pair(sv);
  struct iow x;
  iow_init(&x, sv[0], RX_READ);
  rx_io_start(rxt.loop, &x.w);
  if (ready)
    rxt_send(sv[1], 'x');
  rxt_run_nowait(rxt.loop, 2);
  if (ready)
    rxt_assert_ge(x.calls, 1);
  int calls = x.calls;
  close(sv[0]);
  rxt_run_nowait(rxt.loop, 5);
  if (x.calls > calls) {
    assert_int_equal(x.calls, calls + 1);
    assert_true(x.last & RX_ERROR);
    assert_false(rx_is_active(&x.w));
  }
  assert_int_equal(rx_io_stop(rxt.loop, &x.w), 0);
  /* The stop reaches the kernel with the next wait; then the peer sees EOF
   * because nothing holds the file any more. */
  int eof = 0;
  for (int i = 0; i < 50 && !eof; i++) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    char buf[8];
    ssize_t n;
    while ((n = read(sv[1], buf, sizeof(buf))) > 0)
      ;
    eof = n == 0;
    if (!eof)
      rxt_sleep_ns(RX_MSEC(1));
  }
  assert_true(eof);
  close(sv[1]);
}

static void test_closed_while_watched_idle(void **state) {
  (void)state;
  closed_while_watched(0);
}

static void test_closed_while_watched_ready(void **state) {
  (void)state;
  closed_while_watched(1);
}

/* ---------------------------------------------------------------------------
 * Many fds ready at once: none is lost. Made ready before their polls are
 * armed, or after (`armed`): then on io_uring each is a completion the
 * kernel queues for the loop's thread, and with RX_LOOP_DEFER (meson's
 * *-defer runs) it runs at most 20 of them per enter (backends/io_uring.c,
 * note e); a NOWAIT run still reports at least as many as epoll's one wait
 * does (256).
 */
static void many_fds(int armed) {
  int n = rxt_pairs_allowed(2000);
  assert_true(n >= 100);
  int(*sv)[2] = calloc((size_t)n, sizeof(*sv));
  struct iow *x = calloc((size_t)n, sizeof(*x));
  assert_non_null(sv);
  assert_non_null(x);
  for (int i = 0; i < n; i++) {
    rxt_pair(sv[i]);
    iow_init(&x[i], sv[i][0], RX_READ);
    x[i].drain = 1;
    assert_int_equal(rx_io_start(rxt.loop, &x[i].w), 0);
  }
  if (armed)
    rxt_run_nowait(rxt.loop, 2);
  for (int i = 0; i < n; i++)
    rxt_send(sv[i][1], 'x');
  int iterations = 0, done = 0;
  while (done < n && iterations < 200) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    iterations++;
    done = 0;
    for (int i = 0; i < n; i++)
      done += x[i].calls > 0;
  }
  assert_int_equal(done, n);
  rxt_run_nowait(rxt.loop, 3);
  for (int i = 0; i < n; i++) {
    if (x[i].calls != 1)
      fail_msg("watcher %d called %d times", i, x[i].calls);
    assert_int_equal(x[i].last, RX_READ);
  }
  print_message("%d ready fds reported in %d iterations\n", n, iterations);
  if (armed)
    rxt_assert_le(iterations, n / 256 + 2);
  for (int i = 0; i < n; i++) {
    rx_io_stop(rxt.loop, &x[i].w);
    rxt_close_pair(sv[i]);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  free(sv);
  free(x);
}

/* ---------------------------------------------------------------------------
 * With RX_LOOP_DEFER (meson's *-defer runs) a completion queued for the
 * loop's thread does not cut short that thread's sleeps (a callback's
 * nanosleep, the collect interval's nap): the kernel runs it at the loop's
 * next enter (backends/io_uring.c, note e); epoll wakes only a thread
 * waiting in epoll_wait(), flag or not. Counted in the loop thread's
 * voluntary context switches over a 200 ms nap in a callback, while
 * another thread makes 32 armed fds ready one by one: each wake-up that cut
 * the nap short is one more (about 34 on io_uring without the flag). A
 * kernel without DEFER_TASKRUN (before 6.1) is not held to it.
 */
struct nap {
  int (*sv)[2];
  int n;
  int napping; /* set by the loop's thread just before its nap */
  long switches;
};

static long voluntary_switches(void) {
  FILE *f = fopen("/proc/thread-self/status", "r");
  assert_non_null(f);
  char line[256];
  long v = -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
      break;
  fclose(f);
  assert_true(v >= 0);
  return v;
}

static void *make_ready(void *arg) {
  struct nap *nap = arg;
  while (!__atomic_load_n(&nap->napping, __ATOMIC_ACQUIRE))
    rxt_sleep_ns(RX_MSEC(1));
  for (int i = 0; i < nap->n; i++) {
    rxt_send(nap->sv[i][1], 'x');
    rxt_sleep_ns(RX_MSEC(2));
  }
  return NULL;
}

static void nap_cb(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  struct nap *nap = t->data;
  long before = voluntary_switches();
  __atomic_store_n(&nap->napping, 1, __ATOMIC_RELEASE);
  rxt_sleep_ns(RX_MSEC(200));
  nap->switches = voluntary_switches() - before;
}

static bool kernel_defers_task_work(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int fd = (int)syscall(__NR_io_uring_setup, 1, &p);
  if (fd < 0)
    return false;
  close(fd);
  return true;
}

static void test_ready_does_not_cut_nap(void **state) {
  (void)state;
  struct nap nap = {.n = 32};
  int sv[32][2];
  struct iow x[32];
  nap.sv = sv;
  for (int i = 0; i < nap.n; i++) {
    rxt_pair(sv[i]);
    iow_init(&x[i], sv[i][0], RX_READ);
    x[i].drain = 1;
    assert_int_equal(rx_io_start(rxt.loop, &x[i].w), 0);
  }
  rxt_run_nowait(rxt.loop, 2); /* every poll armed */
  rx_timer t;
  rx_timer_init(&t, nap_cb, 0, 0);
  t.data = &nap;
  assert_int_equal(rx_timer_start(rxt.loop, &t), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, make_ready, &nap), 0);
  rx_run(rxt.loop, RX_RUN_ONCE); /* the nap */
  pthread_join(th, NULL);
  print_message("%ld voluntary switches in the nap\n", nap.switches);
  if (!rxt_is_uring(rxt.loop) ||
      ((rxt_loop_flags() & RX_LOOP_DEFER) && kernel_defers_task_work()))
    rxt_assert_le(nap.switches, 4); /* the nap itself, and a margin */
  int heard = 0;
  for (int i = 0; i < 20 && heard < nap.n; i++) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    heard = 0;
    for (int k = 0; k < nap.n; k++)
      heard += x[k].calls;
  }
  assert_int_equal(heard, nap.n);
  for (int i = 0; i < nap.n; i++) {
    rx_io_stop(rxt.loop, &x[i].w);
    rxt_close_pair(sv[i]);
  }
}

static void test_many_fds(void **state) {
  (void)state;
  many_fds(0);
}

static void test_many_fds_armed(void **state) {
  (void)state;
  many_fds(1);
}

/* ---------------------------------------------------------------------------
 * Closed and reused fds under the contract (rx.h, rx_io_start): an fd is not
 * closed while a watcher of it is active (stop first, or rx_io_close()), and
 * a number closed and reused is given to rx_io_set() or rx_io_init() again.
 * A freshly set watcher's start renews the registration, so no sequence
 * loses the new file's events; a plain stop and start costs no kernel call.
 */

/* A new watcher of a reused number gets the new file's events even when the
 * old watcher was left active (the contract broken): the cached interest
 * must not keep the new registration from the kernel. `had_event`: the old
 * watcher was just called (io_uring: its one-shot poll is to be re-armed). */
static void reuse_fresh_watcher(int events, int had_event) {
  int sv[2];
  rxt_pair(sv);
  int fd = sv[0];
  struct iow old, x;
  iow_init(&old, fd, RX_READ);
  rx_io_start(rxt.loop, &old.w);
  rxt_run_nowait(rxt.loop, 2); /* armed on the old file */
  if (had_event) {
    rxt_send(sv[1], 'o');
    assert_true(rxt_run_until(rxt.loop, &old.calls, RX_SEC(5)));
  }
  close(fd); /* the old peer stays open: no hang-up wakes the old poll */
  int n[2];
  rxt_pair_at(fd, n);
  iow_init(&x, fd, events);
  x.drain = 1;
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  rxt_send(n[1], 'n');
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_true(x.all & events);
  rx_io_stop(rxt.loop, &old.w);
  rx_io_stop(rxt.loop, &x.w);
  rxt_close_pair(n);
  close(sv[1]);
}

static void test_reuse_fresh_same_interest(void **state) {
  (void)state;
  reuse_fresh_watcher(RX_READ, 0);
}

static void test_reuse_fresh_after_event(void **state) {
  (void)state;
  reuse_fresh_watcher(RX_READ, 1);
}

static void test_reuse_fresh_write(void **state) {
  (void)state;
  reuse_fresh_watcher(RX_WRITE, 1);
}

/* The old watcher, stopped (or closed with rx_io_close) before the number
 * is reused, never hears of the new file, which a new watcher with another
 * interest does. */
static void reuse_old_silent(int use_close) {
  int sv[2];
  rxt_pair(sv);
  int fd = sv[0];
  struct iow old, x;
  iow_init(&old, fd, RX_READ);
  rx_io_start(rxt.loop, &old.w);
  rxt_send(sv[1], 'o');
  assert_true(rxt_run_until(rxt.loop, &old.calls, RX_SEC(5)));
  if (use_close) {
    assert_int_equal(rx_io_close(rxt.loop, fd), 0);
    close(sv[1]);
  } else {
    rx_io_stop(rxt.loop, &old.w);
    rxt_close_pair(sv);
  }
  assert_false(rx_is_active(&old.w));
  int n[2];
  rxt_pair_at(fd, n);
  iow_init(&x, fd, RX_WRITE);
  x.stop = 1;
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  rxt_send(n[1], 'n'); /* the new file is readable: not old's business */
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_int_equal(x.last, RX_WRITE);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(old.calls, 1);
  char c;
  assert_int_equal(read(fd, &c, 1), 1); /* nobody took the new data */
  assert_int_equal(c, 'n');
  rxt_close_pair(n);
}

static void test_reuse_stopped_old_silent(void **state) {
  (void)state;
  reuse_old_silent(0);
}

static void test_reuse_closed_old_silent(void **state) {
  (void)state;
  reuse_old_silent(1);
}

/* rx_io_close(): the peer sees EOF right after the call, before the loop
 * runs again, on a file whose poll was armed; every watcher is stopped
 * without a callback. */
static void test_io_close_eof_at_once(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r, w;
  iow_init(&r, sv[0], RX_READ);
  iow_init(&w, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &w.w);
  rxt_run_nowait(rxt.loop, 2); /* armed, nothing to read */
  int calls = r.calls + w.calls;
  assert_int_equal(rx_io_close(rxt.loop, sv[0]), 0);
  assert_false(rx_is_active(&r.w));
  assert_false(rx_is_active(&w.w));
  char c;
  assert_int_equal(read(sv[1], &c, 1), 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls + w.calls, calls);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0); /* nothing holds */
  close(sv[1]);
}

/* Pending events of the closed fd's watchers are dropped: no callback. */
static void test_io_close_drops_pending(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r;
  iow_init(&r, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rxt_send(sv[1], 'x');
  rx_feed_event(rxt.loop, &r.w, RX_READ);
  assert_true(rx_is_pending(&r.w));
  assert_int_equal(rx_io_close(rxt.loop, sv[0]), 0);
  assert_false(rx_is_pending(&r.w));
  assert_int_equal(rx_pending_count(rxt.loop), 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 0);
  close(sv[1]);
}

/* A callback closes the fd of a watcher whose event is pending in the same
 * iteration: that watcher is not called. */
struct closer {
  struct iow a, b;
};

static void close_other(rx_loop *loop, struct iow *x, int revents) {
  (void)revents;
  struct closer *c = x->ctx;
  assert_int_equal(rx_io_close(loop, c->b.w.fd), 0);
  rx_io_stop(loop, &x->w);
}

static void test_io_close_from_callback(void **state) {
  (void)state;
  int p[2], q[2];
  rxt_pair(p);
  rxt_pair(q);
  struct closer c;
  iow_init(&c.a, p[0], RX_READ);
  iow_init(&c.b, q[0], RX_READ);
  c.a.hook = close_other;
  c.a.ctx = &c;
  rx_io_set_priority(&c.a.w, RX_MAXPRI);
  rx_io_start(rxt.loop, &c.a.w);
  rx_io_start(rxt.loop, &c.b.w);
  rxt_send(q[1], 'q');
  rxt_send(p[1], 'p');
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(c.a.calls, 1);
  assert_int_equal(c.b.calls, 0);
  /* Closed with unread data: the peer's read says ECONNRESET. */
  char ch;
  assert_int_equal(read(q[1], &ch, 1), -1);
  assert_int_equal(errno, ECONNRESET);
  close(q[1]);
  rxt_close_pair(p);
}

static void test_io_close_bad_input(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  close(p[0]);
  close(p[1]);
  assert_int_equal(rx_io_close(NULL, 0), -EINVAL);
  assert_int_equal(rx_io_close(rxt.loop, -1), -EBADF);
  assert_int_equal(rx_io_close(rxt.loop, p[0]), -EBADF); /* not open */
  assert_int_equal(rx_io_close(rxt.loop, 1 << 30), -EBADF);
  /* An unwatched fd is simply closed. */
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  assert_int_equal(rx_io_close(rxt.loop, p[0]), 0);
  char c;
  assert_int_equal(write(p[1], &c, 0), 0);
  assert_int_equal(fcntl(p[0], F_GETFD), -1);
  close(p[1]);
  rxt_run_nowait(rxt.loop, 2);
}

/* A stop and start with no init or set in between is the same file: once
 * the loop has waited, nothing reaches the kernel. With rx_io_set() in
 * between, the registration is renewed (libev's rule). */
static void test_stop_start_no_kernel_call(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r;
  iow_init(&r, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rxt_run_nowait(rxt.loop, 2);
  struct rx_metrics m0, m1;
  rx_loop_metrics(rxt.loop, &m0);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(rx_io_stop(rxt.loop, &r.w), 0);
    assert_int_equal(rx_io_start(rxt.loop, &r.w), 0);
    rx_run(rxt.loop, RX_RUN_NOWAIT);
  }
  rx_loop_metrics(rxt.loop, &m1);
  assert_int_equal(m1.rearms, m0.rearms);
  /* epoll: the ten waits, no epoll_ctl; io_uring: nothing to submit. */
  if (!rxt_is_uring(rxt.loop))
    assert_int_equal(m1.enters - m0.enters, 10);
  assert_int_equal(r.calls, 0);
  rx_io_stop(rxt.loop, &r.w);
  assert_int_equal(rx_io_set(&r.w, sv[0], RX_READ), 0);
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  rx_loop_metrics(rxt.loop, &m0);
  assert_int_equal(m0.rearms, m1.rearms + 1);
  rxt_send(sv[1], 'x');
  assert_true(rxt_run_until(rxt.loop, &r.calls, RX_SEC(5)));
  rx_io_stop(rxt.loop, &r.w);
  rxt_close_pair(sv);
}

/* A watcher stopped by another's callback, its fd closed: the file is
 * released when rx_run() returns, without another wait, so the peer sees
 * EOF (io_uring: the armed poll is removed by then). */
static void stop_and_close(rx_loop *loop, struct iow *x, int revents) {
  (void)revents;
  struct iow *other = x->ctx;
  rxt_drain(x->w.fd);
  assert_int_equal(rx_io_stop(loop, &x->w), 0);
  assert_int_equal(rx_io_stop(loop, &other->w), 0);
  close(other->w.fd);
}

static void test_stop_close_released_on_return(void **state) {
  (void)state;
  int p[2], q[2];
  rxt_pair(p);
  rxt_pair(q);
  struct iow a, b;
  iow_init(&a, p[0], RX_READ);
  iow_init(&b, q[0], RX_READ);
  a.hook = stop_and_close;
  a.ctx = &b;
  rx_io_start(rxt.loop, &a.w);
  rx_io_start(rxt.loop, &b.w);
  rxt_run_nowait(rxt.loop, 2); /* both armed */
  rxt_send(p[1], 'x');
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 0);
  char c;
  assert_int_equal(read(q[1], &c, 1), 0);
  close(q[1]);
  rxt_close_pair(p);
}

/* An fd closed after the start but before the loop told the kernel, and a
 * number rx_io_close() closed, each give RX_ERROR once. */
static void test_closed_before_flush_error_once(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct iow r, s;
  iow_init(&r, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rxt_close_pair(sv);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(r.calls, 1);
  assert_true(r.last & RX_ERROR);
  assert_false(rx_is_active(&r.w));

  int q[2];
  rxt_pair(q);
  assert_int_equal(rx_io_close(rxt.loop, q[0]), 0);
  iow_init(&s, q[0], RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &s.w), 0);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(s.calls, 1);
  assert_true(s.last & RX_ERROR);
  assert_false(rx_is_active(&s.w));
  assert_int_equal(r.calls, 1);
  close(q[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_readable),
      RXT_TEST(test_writable),
      RXT_TEST(test_level_triggered),
      RXT_TEST(test_edge_triggered),
      RXT_TEST(test_set_rules),
      RXT_TEST(test_start_on_closed_fd),
      RXT_TEST(test_closed_fd_two_watchers),
      RXT_TEST(test_regular_file),
      RXT_TEST(test_two_watchers_one_fd),
      RXT_TEST(test_mixed_et_level),
      RXT_TEST(test_stop_in_own_callback),
      RXT_TEST(test_stop_other_pending),
      RXT_TEST(test_stop_clears_pending),
      RXT_TEST(test_free_in_callback),
      RXT_TEST(test_restart_in_callback),
      RXT_TEST(test_start_twice),
      RXT_TEST(test_other_loop),
      RXT_TEST(test_fd_reuse_level),
      RXT_TEST(test_fd_reuse_edge),
      RXT_TEST(test_fd_reuse_old_file_alive),
      RXT_TEST(test_fd_reuse_old_file_alive_edge),
      RXT_TEST(test_fd_reuse_between_runs),
      RXT_TEST(test_closed_while_watched_idle),
      RXT_TEST(test_closed_while_watched_ready),
      RXT_TEST(test_many_fds),
      RXT_TEST(test_many_fds_armed),
      RXT_TEST(test_ready_does_not_cut_nap),
      RXT_TEST(test_reuse_fresh_same_interest),
      RXT_TEST(test_reuse_fresh_after_event),
      RXT_TEST(test_reuse_fresh_write),
      RXT_TEST(test_reuse_stopped_old_silent),
      RXT_TEST(test_reuse_closed_old_silent),
      RXT_TEST(test_io_close_eof_at_once),
      RXT_TEST(test_io_close_drops_pending),
      RXT_TEST(test_io_close_from_callback),
      RXT_TEST(test_io_close_bad_input),
      RXT_TEST(test_stop_start_no_kernel_call),
      RXT_TEST(test_stop_close_released_on_return),
      RXT_TEST(test_closed_before_flush_error_once),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-io [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
