/*
 * test-io_uring.c - tests backends/io_uring.c: idle iterations that make no
 * syscall, no ready event missed by them, a tiny ring (SQ full, CQ overflow)
 * and stale completions for a reused fd.
 *
 * The liburing functions that can enter the kernel are wrapped with
 * -Wl,--wrap (see meson.build) so that the test counts how often the
 * backend calls them. They are the only ways rx's io_uring backend enters
 * the kernel after setup, so a count of zero means no syscall.
 *
 * The io_uring backend is forced through the loop options. When the kernel
 * refuses io_uring (ENOSYS, EPERM, EACCES, e.g. a seccomp profile), the
 * whole test exits 77, which meson shows as SKIP, and says why.
 */
#include "helpers.h"

#include <liburing.h>
#include <sys/resource.h>

/* ---------------------------------------------------------------------------
 * Wrapped liburing entry points.
 */
static long enters;

int __real_io_uring_submit(struct io_uring *ring);
int __real_io_uring_submit_and_wait_timeout(struct io_uring *ring,
                                            struct io_uring_cqe **cqe_ptr,
                                            unsigned wait_nr,
                                            struct __kernel_timespec *ts,
                                            sigset_t *sigmask);
int __real_io_uring_submit_and_get_events(struct io_uring *ring);
int __real_io_uring_get_events(struct io_uring *ring);

int __wrap_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit_and_wait_timeout(struct io_uring *ring,
                                            struct io_uring_cqe **cqe_ptr,
                                            unsigned wait_nr,
                                            struct __kernel_timespec *ts,
                                            sigset_t *sigmask);
int __wrap_io_uring_submit_and_get_events(struct io_uring *ring);
int __wrap_io_uring_get_events(struct io_uring *ring);

int __wrap_io_uring_submit(struct io_uring *ring) {
  enters++;
  return __real_io_uring_submit(ring);
}

int __wrap_io_uring_submit_and_wait_timeout(struct io_uring *ring,
                                            struct io_uring_cqe **cqe_ptr,
                                            unsigned wait_nr,
                                            struct __kernel_timespec *ts,
                                            sigset_t *sigmask) {
  enters++;
  return __real_io_uring_submit_and_wait_timeout(ring, cqe_ptr, wait_nr, ts,
                                                 sigmask);
}

int __wrap_io_uring_submit_and_get_events(struct io_uring *ring) {
  enters++;
  return __real_io_uring_submit_and_get_events(ring);
}

int __wrap_io_uring_get_events(struct io_uring *ring) {
  enters++;
  return __real_io_uring_get_events(ring);
}

/* ---------------------------------------------------------------------------
 * Fixture: an io_uring loop, forced.
 */
static int setup_uring_entries(void **state, unsigned entries) {
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.backend = "io_uring";
  o.ring_entries = entries;
  if (rxt_setup_opts(state, &o) != 0)
    return -1;
  if (!rxt_is_uring(rxt.loop))
    return -1;
  return 0;
}

static int setup_uring(void **state) {
  return setup_uring_entries(state, 0);
}

static int setup_tiny_ring(void **state) {
  return setup_uring_entries(state, 8);
}

struct idler {
  rx_idle w;
  long calls;
};

static void idler_cb(rx_loop *loop, rx_idle *w, int revents) {
  (void)loop;
  (void)revents;
  ((struct idler *)w)->calls++;
}

struct rd {
  rx_io w;
  int calls;
  int bytes;
  int last;
  char got;
};

static void rd_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct rd *r = (struct rd *)w;
  r->calls++;
  r->last = revents;
  char buf[64];
  ssize_t n;
  while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
    r->bytes += (int)n;
    r->got = buf[n - 1];
  }
}

static void noop_timer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
}

/* (1) With an idle watcher active every iteration is non-blocking; with
 * nothing to submit and nothing completed, such an iteration must not enter
 * the kernel (io_uring.c note f). */
static void test_idle_iterations_no_syscall(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct idler i;
  memset(&i, 0, sizeof(i));
  rx_idle_init(&i.w, idler_cb);
  rx_idle_start(rxt.loop, &i.w);
  struct rd r;
  memset(&r, 0, sizeof(r));
  rx_io_init(&r.w, rd_cb, sv[0], RX_READ); /* armed, never ready */
  rx_io_start(rxt.loop, &r.w);
  rx_timer far;
  rx_timer_init(&far, noop_timer_cb, RX_SEC(60), 0);
  rx_timer_start(rxt.loop, &far);

  rxt_run_nowait(rxt.loop, 10);
  enters = 0;
  rxt_run_nowait(rxt.loop, 10000);
  assert_int_equal(i.calls, 10010);
  if (enters != 0)
    fail_msg("%ld kernel entries in 10000 idle non-blocking iterations",
             enters);
  /* the same with RX_RUN_ONCE: the idle watcher keeps it from blocking */
  for (int k = 0; k < 1000; k++)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  assert_int_equal(enters, 0);
  assert_int_equal(r.calls, 0);
  rx_timer_stop(rxt.loop, &far);
  rx_io_stop(rxt.loop, &r.w);
  rx_idle_stop(rxt.loop, &i.w);
  rxt_close_pair(sv);
}

/* (2) ... and yet no ready event is missed: with the idle watcher active,
 * each of 1000 writes is reported within a few non-blocking iterations. */
static void test_no_ready_event_missed(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct idler i;
  memset(&i, 0, sizeof(i));
  rx_idle_init(&i.w, idler_cb);
  rx_idle_start(rxt.loop, &i.w);
  struct rd r;
  memset(&r, 0, sizeof(r));
  rx_io_init(&r.w, rd_cb, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rxt_run_nowait(rxt.loop, 3);

  int worst = 0;
  for (int k = 0; k < 1000; k++) {
    int before = r.calls;
    rxt_send(sv[1], (char)('a' + k % 26));
    int iters = 0;
    while (r.calls == before && iters < 1000) {
      rx_run(rxt.loop, RX_RUN_NOWAIT);
      iters++;
    }
    if (r.calls == before)
      fail_msg("write %d not reported after 1000 non-blocking iterations", k);
    if (iters > worst)
      worst = iters;
    assert_int_equal(r.got, 'a' + k % 26);
  }
  assert_int_equal(r.bytes, 1000);
  rxt_assert_le(worst, 3);
  rx_io_stop(rxt.loop, &r.w);
  rx_idle_stop(rxt.loop, &i.w);
  rxt_close_pair(sv);
}

/* The same without the idle watcher: a blocking ONCE is woken by each. */
static void test_blocking_wait_wakes(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct rd r;
  memset(&r, 0, sizeof(r));
  rx_io_init(&r.w, rd_cb, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  for (int k = 0; k < 100; k++) {
    rxt_send(sv[1], 'x');
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
    assert_int_equal(r.calls, k + 1);
  }
  /* a blocking wait with a timer is one kernel entry per iteration */
  rx_timer t;
  rx_timer_init(&t, noop_timer_cb, RX_MSEC(5), 0);
  rx_timer_start(rxt.loop, &t);
  rxt_run_nowait(rxt.loop, 1);
  enters = 0;
  int runs = 0;
  while (rx_is_active(&t)) {
    rx_run(rxt.loop, RX_RUN_ONCE);
    runs++;
  }
  rxt_assert_le(enters, runs);
  rx_io_stop(rxt.loop, &r.w);
  rxt_close_pair(sv);
}

/* Opens n socket pairs, each with a byte waiting, and starts a read
 * watcher on each: n fds ready at once. Skips the test when the hard
 * RLIMIT_NOFILE cannot hold them. */
static void start_ready_pairs(int n, int (**svp)[2], struct rd **rp) {
  struct rlimit rl;
  rlim_t need = (rlim_t)(2 * n + 64);
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < need) {
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
      skip();
  }
  int(*sv)[2] = calloc((size_t)n, sizeof(*sv));
  struct rd *r = calloc((size_t)n, sizeof(*r));
  assert_non_null(sv);
  assert_non_null(r);
  for (int k = 0; k < n; k++) {
    rxt_pair(sv[k]);
    rxt_send(sv[k][1], 'x');
    rx_io_init(&r[k].w, rd_cb, sv[k][0], RX_READ);
    assert_int_equal(rx_io_start(rxt.loop, &r[k].w), 0);
  }
  *svp = sv;
  *rp = r;
}

/* (3) A tiny ring (8 SQ entries, CQ 32) and 1000 fds ready at once: the SQ
 * fills while the polls are queued and the CQ overflows as they complete;
 * every watcher must still be called exactly once. */
static void test_tiny_ring_many_fds(void **state) {
  (void)state;
  enum { N = 1000 };
  int(*sv)[2];
  struct rd *r;
  start_ready_pairs(N, &sv, &r);
  int done = 0, iters = 0;
  while (done < N && iters < 100) {
    assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
    iters++;
    done = 0;
    for (int k = 0; k < N; k++)
      done += r[k].calls > 0;
  }
  assert_int_equal(done, N);
  rxt_run_nowait(rxt.loop, 3);
  for (int k = 0; k < N; k++) {
    if (r[k].calls != 1)
      fail_msg("watcher %d called %d times", k, r[k].calls);
    assert_int_equal(r[k].last, RX_READ);
  }
  print_message("%d fds on an 8-entry ring reported in %d iterations\n", N,
                iters);
  /* and it goes on working: a second round, and stops of 1000 watchers
   * (1000 POLL_REMOVEs through the 8-entry SQ) */
  for (int k = 0; k < N; k++)
    rxt_send(sv[k][1], 'y');
  for (int it = 0; it < 100; it++) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    done = 0;
    for (int k = 0; k < N; k++)
      done += r[k].calls == 2;
    if (done == N)
      break;
  }
  assert_int_equal(done, N);
  for (int k = 0; k < N; k++)
    rx_io_stop(rxt.loop, &r[k].w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  for (int k = 0; k < N; k++)
    rxt_close_pair(sv[k]);
  free(sv);
  free(r);
}

/* (3b) The default ring's CQ holds 8192 completions (backends/io_uring.c,
 * DEFAULT_CQ_ENTRIES: sized for the kernel's poll hash, which it also
 * sizes). 3000 fds ready at once complete as their polls are submitted
 * and must all fit: no overflow flush, every watcher called in the first
 * iteration. With a CQ of 4 x 256 they overflow it (2 flushes here). */
static void test_default_ring_cq_holds_3000(void **state) {
  (void)state;
  enum { N = 3000 };
  int(*sv)[2];
  struct rd *r;
  start_ready_pairs(N, &sv, &r);
  struct rx_metrics m0, m1;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m0), 0);
  assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(rx_loop_metrics(rxt.loop, &m1), 0);
  for (int k = 0; k < N; k++)
    if (r[k].calls != 1)
      fail_msg("watcher %d called %d times in the first iteration", k,
               r[k].calls);
  assert_int_equal(m1.overflows - m0.overflows, 0);
  for (int k = 0; k < N; k++) {
    rx_io_stop(rxt.loop, &r[k].w);
    rxt_close_pair(sv[k]);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  free(sv);
  free(r);
}

/* (4) Stale completions: a watcher is stopped while its poll is armed, the
 * fd closed and its number given to a new file, a new watcher started. The
 * old file becomes ready before the removal reaches the kernel: its
 * completion carries the old generation and must be dropped; the new file's
 * events must arrive. */
static void stale(int events) {
  int a[2], b[2];
  rxt_pair(a);
  int fd = a[0];
  struct rd old, neu;
  memset(&old, 0, sizeof(old));
  memset(&neu, 0, sizeof(neu));
  rx_io_init(&old.w, rd_cb, fd, events);
  rx_io_start(rxt.loop, &old.w);
  rxt_run_nowait(rxt.loop, 2); /* the poll is armed on the old file */

  rx_io_stop(rxt.loop, &old.w);
  close(fd);
  rxt_pair_at(fd, b);
  rx_io_init(&neu.w, rd_cb, fd, events);
  rx_io_start(rxt.loop, &neu.w);
  rxt_send(a[1], 'A'); /* completes the old, still armed poll */

  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(old.calls, 0);
  assert_int_equal(neu.calls, 0);

  rxt_send(b[1], 'B');
  for (int k = 0; k < 100 && neu.calls == 0; k++)
    rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(neu.calls, 1);
  assert_int_equal(neu.got, 'B');
  assert_int_equal(neu.last, RX_READ);
  assert_int_equal(old.calls, 0);

  /* The old file was released by the removal: its peer sees the end of the
   * connection (a reset, since the 'A' was never read). A multishot poll
   * whose removal raced with its wake-up must be removed again. */
  char buf[4];
  ssize_t n = -1;
  errno = EAGAIN;
  for (int k = 0; k < 50 && n == -1 && errno == EAGAIN; k++) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    errno = 0;
    n = read(a[1], buf, sizeof(buf));
    if (n == -1 && errno == EAGAIN)
      rxt_sleep_ns(RX_MSEC(1));
  }
  if (!(n == 0 || (n == -1 && errno == ECONNRESET)))
    fail_msg("the old file is still open: read %zd (%s)", n, strerror(errno));
  rx_io_stop(rxt.loop, &neu.w);
  close(a[1]);
  rxt_close_pair(b);
}

static void test_stale_completion(void **state) {
  (void)state;
  stale(RX_READ);
}

static void test_stale_completion_multishot(void **state) {
  (void)state;
  stale(RX_READ | RX_ET);
}

int main(void) {
  /* Skip (77) only when the kernel refuses io_uring. */
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.backend = "io_uring";
  rx_loop *probe;
  int rc = rx_loop_new(&probe, &o);
  if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -ENOMEM) {
    printf("SKIP: the kernel refuses io_uring: %s\n", rx_strerror(rc));
    return 77;
  }
  if (rc != 0) {
    printf("rx_loop_new(io_uring): %s\n", rx_strerror(rc));
    return 1;
  }
  printf("io_uring backend: %s\n", rx_backend_reason(probe));
  rx_loop_free(probe);

  const struct CMUnitTest tests[] = {
      RXT_TEST_WITH(test_idle_iterations_no_syscall, setup_uring),
      RXT_TEST_WITH(test_no_ready_event_missed, setup_uring),
      RXT_TEST_WITH(test_blocking_wait_wakes, setup_uring),
      RXT_TEST_WITH(test_tiny_ring_many_fds, setup_tiny_ring),
      RXT_TEST_WITH(test_default_ring_cq_holds_3000, setup_uring),
      RXT_TEST_WITH(test_stale_completion, setup_uring),
      RXT_TEST_WITH(test_stale_completion_multishot, setup_uring),
  };
  return cmocka_run_group_tests_name("test-io_uring", tests, NULL, NULL);
}
