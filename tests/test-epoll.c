/*
 * test-epoll.c - tests backends/epoll.c: the cached interest that saves
 * epoll_ctl calls, the renewal of a reused fd's registration, and that a
 * forced epoll backend makes no io_uring call at all.
 *
 * epoll_ctl and liburing's setup functions are wrapped with -Wl,--wrap (see
 * meson.build): the wrappers count the calls rx makes and pass them on.
 */
#include "helpers.h"

#include <liburing.h>
#include <sys/epoll.h>

#include "internal.h"

/* ---------------------------------------------------------------------------
 * Wrapped functions.
 */
static long ctl_calls, ctl_add, ctl_mod, ctl_del;
static long uring_inits;

int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __real_io_uring_queue_init(unsigned entries, struct io_uring *ring,
                               unsigned flags);
int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring,
                               unsigned flags);
int __real_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                                      struct io_uring_params *p);
int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                                      struct io_uring_params *p);

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  ctl_calls++;
  ctl_add += op == EPOLL_CTL_ADD;
  ctl_mod += op == EPOLL_CTL_MOD;
  ctl_del += op == EPOLL_CTL_DEL;
  return __real_epoll_ctl(epfd, op, fd, ev);
}

int __wrap_io_uring_queue_init(unsigned entries, struct io_uring *ring,
                               unsigned flags) {
  uring_inits++;
  return __real_io_uring_queue_init(entries, ring, flags);
}

int __wrap_io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
                                      struct io_uring_params *p) {
  uring_inits++;
  return __real_io_uring_queue_init_params(entries, ring, p);
}

static void reset_counts(void) {
  ctl_calls = ctl_add = ctl_mod = ctl_del = 0;
}

/* ---------------------------------------------------------------------------
 * Fixture: an epoll loop, forced through the options.
 */
static int setup_epoll(void **state) {
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.backend = "epoll";
  uring_inits = 0;
  int rc = rxt_setup_opts(state, &o);
  if (rc == 0 && strcmp(rx_backend_name(rxt.loop), "epoll") != 0)
    return -1;
  reset_counts();
  return rc;
}

#define EPOLL_TEST(f) RXT_TEST_WITH(f, setup_epoll)

struct ew {
  rx_io w;
  int calls;
  int last;
  int restart; /* stop and start itself in the callback */
  int drain;
};

static void ew_cb(rx_loop *loop, rx_io *w, int revents) {
  struct ew *x = (struct ew *)w;
  x->calls++;
  x->last = revents;
  if (x->drain)
    rxt_drain(w->fd);
  if (x->restart) {
    assert_int_equal(rx_io_stop(loop, w), 0);
    assert_int_equal(rx_io_start(loop, w), 0);
  }
}

static void ew_init(struct ew *x, int fd, int events) {
  memset(x, 0, sizeof(*x));
  rx_io_init(&x->w, ew_cb, fd, events);
}

/* ---------------------------------------------------------------------------
 * Cached interest.
 */

/* Two watchers, READ and WRITE, on one fd: one ADD, at the next wait. */
static void test_two_watchers_one_call(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct ew r, w;
  ew_init(&r, sv[0], RX_READ);
  ew_init(&w, sv[0], RX_WRITE);
  rx_io_start(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &w.w);
  assert_int_equal(ctl_calls, 0); /* start only records the change */
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_calls, 1);
  assert_int_equal(ctl_add, 1);
  assert_int_equal(w.calls, 1);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(ctl_calls, 1);
  rx_io_stop(rxt.loop, &r.w);
  rx_io_stop(rxt.loop, &w.w);
  rxt_close_pair(sv);
}

/* Stop and start of one watcher within one iteration, while the other keeps
 * the fd, cost nothing: between runs and inside a callback. */
static void test_stop_start_same_iteration_free(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct ew r, w;
  ew_init(&r, sv[0], RX_READ);
  ew_init(&w, sv[0], RX_WRITE);
  rx_io_start(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &w.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  reset_counts();

  rx_io_stop(rxt.loop, &w.w);
  rx_io_start(rxt.loop, &w.w);
  rx_io_stop(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &r.w);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(ctl_calls, 0);

  w.restart = 1; /* writable: restarts itself in every iteration */
  int calls = w.calls;
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(w.calls, calls + 5);
  assert_int_equal(ctl_calls, 0);
  rx_io_stop(rxt.loop, &r.w);
  rx_io_stop(rxt.loop, &w.w);
  rxt_close_pair(sv);
}

/* Changing the interest costs one MOD. */
static void test_change_interest_one_mod(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct ew r, w;
  ew_init(&r, sv[0], RX_READ);
  ew_init(&w, sv[0], RX_WRITE);
  rx_io_start(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &w.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  reset_counts();

  rx_io_stop(rxt.loop, &w.w); /* READ|WRITE -> READ */
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_calls, 1);
  assert_int_equal(ctl_mod, 1);
  int wcalls = w.calls;
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(w.calls, wcalls); /* no longer asked for */

  rx_io_start(rxt.loop, &w.w); /* READ -> READ|WRITE */
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_calls, 2);
  assert_int_equal(ctl_mod, 2);
  assert_int_equal(w.calls, wcalls + 1);

  /* rx_io_set to other events on a stopped watcher, then start: one MOD */
  rx_io_stop(rxt.loop, &w.w);
  assert_int_equal(rx_io_set(&w.w, sv[0], RX_READ), 0);
  rx_io_start(rxt.loop, &w.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_calls, 3);
  assert_int_equal(ctl_mod, 3);
  rx_io_stop(rxt.loop, &r.w);
  rx_io_stop(rxt.loop, &w.w);
  rxt_close_pair(sv);
}

/* A stop and start between two waits is the same file: no call. The last
 * watcher's stop removes the registration at the next wait (one DEL), so a
 * closed file is not kept. A watcher set again (rx_io_set) renews it,
 * because the number may name a new file by then. */
static void test_last_stop_and_renewal(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct ew r;
  ew_init(&r, sv[0], RX_READ);
  r.drain = 1;
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  reset_counts();
  rx_io_stop(rxt.loop, &r.w);
  rx_io_start(rxt.loop, &r.w);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(ctl_calls, 0);

  /* the last stop: one DEL at the next wait */
  rx_io_stop(rxt.loop, &r.w);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(ctl_del, 1);
  assert_int_equal(ctl_calls, 1);

  /* started again: one ADD */
  reset_counts();
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_calls, 1);
  assert_int_equal(ctl_add, 1);
  rxt_send(sv[1], 'x');
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(r.calls, 1);

  /* the same file, set again: one ADD, refused with EEXIST, and the
   * registration stands, generation and all (libev's test) */
  uint32_t gen = rxt.loop->fds[sv[0]].gen;
  rx_io_stop(rxt.loop, &r.w);
  reset_counts();
  assert_int_equal(rx_io_set(&r.w, sv[0], RX_READ), 0);
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_add, 1);
  assert_int_equal(ctl_calls, 1);
  assert_int_equal(rxt.loop->fds[sv[0]].gen, gen);
  rxt_send(sv[1], 'z');
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(r.calls, 2);

  /* a new file under the number, set again: the ADD succeeds, with a new
   * generation */
  rx_io_stop(rxt.loop, &r.w);
  int fd = sv[0];
  close(sv[0]);
  int n[2];
  rxt_pair_at(fd, n);
  reset_counts();
  assert_int_equal(rx_io_set(&r.w, fd, RX_READ), 0);
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_add, 1);
  assert_int_equal(ctl_calls, 1);
  assert_int_not_equal(rxt.loop->fds[fd].gen, gen);
  rxt_send(n[1], 'y');
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(r.calls, 3);
  rx_io_stop(rxt.loop, &r.w);
  close(fd);
  close(sv[1]);
  close(n[1]);
}

/* An fd whose watchers are all gone loses its registration at the next
 * wait (one DEL); its events reach nobody. */
static void test_unwanted_event_deletes(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct ew r;
  ew_init(&r, sv[0], RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  rx_io_stop(rxt.loop, &r.w);
  reset_counts();
  rxt_send(sv[1], 'x'); /* readable, nobody wants it */
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(ctl_del, 1);
  assert_int_equal(ctl_calls, 1);
  assert_int_equal(r.calls, 0);
  /* a new watcher registers afresh: one ADD */
  r.drain = 1;
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_add, 1);
  assert_int_equal(ctl_calls, 2);
  assert_int_equal(r.calls, 1);
  rx_io_stop(rxt.loop, &r.w);
  rxt_close_pair(sv);
}

/* A registration epoll refuses as a regular file (EPERM) costs one call and
 * is emulated as always ready; a dead fd (EBADF) becomes RX_ERROR. */
static void test_refused_registration(void **state) {
  (void)state;
  char path[] = "/tmp/rx-test-epoll-XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);
  assert_true(fd >= 0);
  unlink(path);
  struct ew r;
  ew_init(&r, fd, RX_READ);
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(ctl_calls, 1);
  assert_int_equal(r.calls, 2);
  assert_int_equal(r.last, RX_READ);
  rx_io_stop(rxt.loop, &r.w);
  close(fd);
  /* The same number, now dead: EBADF, reported once. */
  ew_init(&r, fd, RX_READ);
  rx_io_start(rxt.loop, &r.w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.last, RX_ERROR | RX_READ);
}

/* A registration of an old file that outlives its fd number (a dup keeps it
 * open) and stays ready must not wake the loop forever: its events are
 * stale (note a) and dropped, but dropping them is not enough when the loop
 * should block. Counted here as iterations of a blocking run that waits
 * for a 50 ms timer. */
static void test_stale_registration_does_not_spin(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  int fd = sv[0];
  struct ew r;
  ew_init(&r, fd, RX_READ);
  r.drain = 1;
  rx_io_start(rxt.loop, &r.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT); /* registered: (old file, fd) */
  rx_io_stop(rxt.loop, &r.w);
  int keep = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* the old file lives on */
  close(fd);
  int n[2];
  rxt_pair_at(fd, n);
  assert_int_equal(rx_io_set(&r.w, fd, RX_READ), 0);
  rx_io_start(rxt.loop, &r.w); /* (new file, fd) */
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  rxt_send(sv[1], 'o'); /* the old file is readable, for good */

  int fired = 0;
  uint64_t it0 = rx_iteration(rxt.loop);
  rxt_run_until(rxt.loop, &fired, RX_MSEC(50));
  uint64_t iterations = rx_iteration(rxt.loop) - it0;
  assert_int_equal(r.calls, 0);
  if (iterations > 20)
    fail_msg("the loop spun %llu times in 50 ms on a stale registration",
             (unsigned long long)iterations);
  rx_io_stop(rxt.loop, &r.w);
  close(keep);
  close(sv[1]);
  close(fd);
  close(n[1]);
}

/* ---------------------------------------------------------------------------
 * Forcing epoll makes no io_uring call at all.
 */
static void test_no_io_uring_when_forced(void **state) {
  (void)state;
  /* the fixture's loop was forced through the options */
  assert_int_equal(uring_inits, 0);
  /* forced through the environment */
  rx_loop *loop;
  setenv("RX_BACKEND", "epoll", 1);
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  assert_string_equal(rx_backend_name(loop), "epoll");
  struct ew w;
  int sv[2];
  rxt_pair(sv);
  ew_init(&w, sv[0], RX_WRITE);
  rx_io_start(loop, &w.w);
  rxt_run_nowait(loop, 3);
  assert_true(w.calls >= 1);
  rx_io_stop(loop, &w.w);
  rx_loop_free(loop);
  rxt_close_pair(sv);
  assert_int_equal(uring_inits, 0);
  /* the wrapper does see io_uring when it is asked for */
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.backend = "io_uring";
  if (rx_loop_new(&loop, &o) == 0)
    rx_loop_free(loop);
  rxt_assert_gt(uring_inits, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      EPOLL_TEST(test_two_watchers_one_call),
      EPOLL_TEST(test_stop_start_same_iteration_free),
      EPOLL_TEST(test_change_interest_one_mod),
      EPOLL_TEST(test_last_stop_and_renewal),
      EPOLL_TEST(test_unwanted_event_deletes),
      EPOLL_TEST(test_refused_registration),
      EPOLL_TEST(test_stale_registration_does_not_spin),
      EPOLL_TEST(test_no_io_uring_when_forced),
  };
  return cmocka_run_group_tests_name("test-epoll", tests, NULL, NULL);
}
