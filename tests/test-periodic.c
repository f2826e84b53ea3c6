/*
 * test-periodic.c - reactor/periodic.c: wall-clock timers on the backend
 * $RX_BACKEND names: absolute, interval with offset, reschedule, never
 * early on the wall clock, the manual clock, and a change of the wall clock
 * (clock_settime: needs CAP_SYS_TIME; without it that test exits 77, the
 * only skip here, and says why).
 */
#include "helpers.h"

#include <sys/file.h>
#include <time.h>

/* The clock-jump test (one process per backend, run in parallel by meson)
 * sets the wall clock; every test that reads it holds this lock shared,
 * the jump holds it exclusive. */
static int clock_lock = -1;

static void lock_clock(int how) {
  if (clock_lock < 0)
    clock_lock = open("/tmp/rx-test-clock-jump.lock",
                      O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  assert_true(clock_lock >= 0);
  assert_int_equal(flock(clock_lock, how), 0);
}

static int setup_wall(void **state) {
  lock_clock(LOCK_SH);
  return rxt_setup(state);
}

static int teardown_wall(void **state) {
  int rc = rxt_teardown(state);
  flock(clock_lock, LOCK_UN);
  return rc;
}

#define WALL_TEST(f) \
  cmocka_unit_test_setup_teardown(f, setup_wall, teardown_wall)

static int64_t wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct pw {
  rx_periodic w;
  int calls;
  int64_t fired[16]; /* CLOCK_REALTIME in the callback */
  int64_t at[16];    /* w.at when it fired */
  int stop_after;
};

static void pw_cb(rx_loop *loop, rx_periodic *w, int revents) {
  struct pw *x = (struct pw *)w;
  assert_int_equal(revents, RX_PERIODIC);
  if (x->calls < 16) {
    x->fired[x->calls] = rx_wallclock(loop);
    x->at[x->calls] = w->at;
  }
  x->calls++;
  if (x->stop_after && x->calls >= x->stop_after)
    rx_periodic_stop(loop, w);
}

static void test_absolute(void **state) {
  (void)state;
  struct pw x;
  memset(&x, 0, sizeof(x));
  int64_t when = wall() + RX_MSEC(40);
  rx_periodic_init(&x.w, pw_cb, when, 0, NULL);
  assert_int_equal(rx_periodic_start(rxt.loop, &x.w), 0);
  assert_true(rx_is_active(&x.w));
  rxt_assert_eq(x.w.at, when);
  /* Absolute periodics stop after firing: the run returns by itself. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  rxt_assert_ge(x.fired[0], when); /* never early on the wall clock */
  rxt_assert_lt(x.fired[0] - when, RX_SEC(1));
  assert_false(rx_is_active(&x.w));
}

static void test_interval_keeps_phase(void **state) {
  (void)state;
  struct pw x;
  memset(&x, 0, sizeof(x));
  const int64_t iv = RX_MSEC(20), off = RX_MSEC(7);
  rx_periodic_init(&x.w, pw_cb, off, iv, NULL);
  x.stop_after = 5;
  assert_int_equal(rx_periodic_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 5);
  /* In the callback `at` is already the next time, as in libev: the time
   * that fired is one interval earlier. */
  for (int i = 0; i < 5; i++) {
    rxt_assert_eq((x.at[i] - off) % iv, 0);  /* on the grid */
    rxt_assert_ge(x.fired[i], x.at[i] - iv); /* never early */
    rxt_assert_lt(x.fired[i], x.at[i]);
    if (i > 0)
      rxt_assert_gt(x.at[i], x.at[i - 1]);
  }
}

static int64_t every_15ms(rx_periodic *w, int64_t now) {
  (void)w;
  return now + RX_MSEC(15);
}

static void test_reschedule(void **state) {
  (void)state;
  struct pw x;
  memset(&x, 0, sizeof(x));
  rx_periodic_init(&x.w, pw_cb, 0, 0, every_15ms);
  x.stop_after = 3;
  int64_t t0 = wall();
  assert_int_equal(rx_periodic_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 3);
  rxt_assert_ge(x.fired[2] - t0, RX_MSEC(45));
}

static void test_bad_input_and_again(void **state) {
  (void)state;
  struct pw x;
  memset(&x, 0, sizeof(x));
  rx_periodic_init(&x.w, pw_cb, 0, -1, NULL);
  assert_int_equal(rx_periodic_start(rxt.loop, &x.w), -EINVAL);
  rx_periodic_init(&x.w, pw_cb, RX_SEC(2), RX_SEC(1), NULL);
  assert_int_equal(rx_periodic_start(rxt.loop, &x.w), -EINVAL);
  assert_int_equal(rx_periodic_start(NULL, &x.w), -EINVAL);
  /* again recomputes from a new interval; starts a stopped one. */
  rx_periodic_init(&x.w, pw_cb, 0, RX_SEC(3600), NULL);
  assert_int_equal(rx_periodic_again(rxt.loop, &x.w), 0);
  assert_true(rx_is_active(&x.w));
  int64_t hour = x.w.at;
  rxt_assert_eq(hour % RX_SEC(3600), 0);
  x.w.interval = RX_SEC(60);
  assert_int_equal(rx_periodic_again(rxt.loop, &x.w), 0);
  rxt_assert_eq(x.w.at % RX_SEC(60), 0);
  rxt_assert_le(x.w.at, hour);
  /* -EBUSY on another loop. */
  rx_loop *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  assert_int_equal(rx_periodic_start(other, &x.w), -EBUSY);
  assert_int_equal(rx_periodic_stop(other, &x.w), -EBUSY);
  rx_loop_free(other);
  assert_int_equal(rx_periodic_stop(rxt.loop, &x.w), 0);
  assert_int_equal(rx_periodic_set_priority(&x.w, 9), -EINVAL);
}

/* Under the manual clock the wall clock is the manual clock. */
static void test_manual_clock(void **state) {
  (void)state;
  rx_loop *loop;
  struct rx_loop_options o = {.flags = RX_LOOP_MANUAL_CLOCK};
  assert_int_equal(rx_loop_new(&loop, &o), 0);
  struct pw x;
  memset(&x, 0, sizeof(x));
  rx_periodic_init(&x.w, pw_cb, RX_MSEC(5), RX_MSEC(10), NULL);
  assert_int_equal(rx_periodic_start(loop, &x.w), 0);
  rxt_assert_eq(x.w.at, RX_MSEC(5));
  rx_run(loop, RX_RUN_NOWAIT);
  assert_int_equal(x.calls, 0);
  rx_clock_advance(loop, RX_MSEC(5));
  rx_run(loop, RX_RUN_NOWAIT);
  assert_int_equal(x.calls, 1);
  rxt_assert_eq(x.fired[0], RX_MSEC(5));
  rx_clock_advance(loop, RX_MSEC(9));
  rx_run(loop, RX_RUN_NOWAIT);
  assert_int_equal(x.calls, 1);
  rx_clock_advance(loop, RX_MSEC(1));
  rx_run(loop, RX_RUN_NOWAIT);
  assert_int_equal(x.calls, 2);
  rx_periodic_stop(loop, &x.w);
  rx_loop_free(loop);
}

/* A wall clock set forward by an hour while a periodic waits for the next
 * whole minute: the periodic follows the new time at once (the timerfd
 * wakes the loop), instead of sleeping out the old wait. Then the clock is
 * put back. */
static void test_clock_jump(void **state) {
  (void)state;
  /* Two runs of this test (one per backend) must not jump at once: each
   * puts back the time it read before its jump. */
  lock_clock(LOCK_EX);
  struct timespec before;
  clock_gettime(CLOCK_REALTIME, &before);
  if (clock_settime(CLOCK_REALTIME, &before) != 0) {
    printf("skip: clock_settime(CLOCK_REALTIME): %s (needs CAP_SYS_TIME)\n",
           strerror(errno));
    exit(77);
  }
  struct pw x;
  memset(&x, 0, sizeof(x));
  /* Due far away on the current wall clock: an hour from now. */
  rx_periodic_init(&x.w, pw_cb, wall() + RX_SEC(3600), 0, NULL);
  assert_int_equal(rx_periodic_start(rxt.loop, &x.w), 0);
  int64_t mono0 = rxt_clock();
  struct timespec jump = before;
  jump.tv_sec += 3601;
  assert_int_equal(clock_settime(CLOCK_REALTIME, &jump), 0);
  int done = 0;
  x.stop_after = 1;
  int ok = rxt_run_until(rxt.loop, &x.calls, RX_SEC(5));
  /* Put the clock back, counting the time the test took. */
  struct timespec back;
  int64_t spent = rxt_clock() - mono0;
  back.tv_sec = before.tv_sec + (time_t)(spent / 1000000000);
  back.tv_nsec = before.tv_nsec + (long)(spent % 1000000000);
  if (back.tv_nsec >= 1000000000) {
    back.tv_sec++;
    back.tv_nsec -= 1000000000;
  }
  clock_settime(CLOCK_REALTIME, &back);
  flock(clock_lock, LOCK_UN);
  (void)done;
  assert_true(ok);
  assert_int_equal(x.calls, 1);
  rxt_assert_lt(rxt_clock() - mono0, RX_SEC(2)); /* woken by the jump */
}

/* ---------------------------------------------------------------------------
 * Several periodics due in one iteration run in deadline order, ties in
 * start order, as timers do (and as libev runs them). On the manual clock:
 * no wall-clock timing involved.
 */

static int order_log[16], order_n;

static void order_cb(rx_loop *loop, rx_periodic *w, int revents) {
  (void)loop;
  assert_int_equal(revents, RX_PERIODIC);
  if (order_n < 16)
    order_log[order_n] = (int)(intptr_t)w->data;
  order_n++;
}

static int setup_manual(void **state) {
  struct rx_loop_options o = {.flags = RX_LOOP_MANUAL_CLOCK};
  return rxt_setup_opts(state, &o);
}

static void test_due_together_in_deadline_order(void **state) {
  (void)state;
  /* Started in this order; due at these times (ms); 0 interval: absolute. */
  static const struct {
    int64_t offset, interval;
  } spec[] = {{30, 0}, {10, 0}, {20, 0}, {10, 0}, {5, 100}, {20, 50}};
  enum { N = sizeof(spec) / sizeof(spec[0]) };
  static const int want[N] = {4, 1, 3, 2, 5, 0};
  rx_periodic w[N];
  order_n = 0;
  for (int i = 0; i < N; i++) {
    rx_periodic_init(&w[i], order_cb, RX_MSEC(spec[i].offset),
                     RX_MSEC(spec[i].interval), NULL);
    w[i].data = (void *)(intptr_t)i;
    assert_int_equal(rx_periodic_start(rxt.loop, &w[i]), 0);
  }
  assert_int_equal(rx_clock_advance(rxt.loop, RX_MSEC(30)), 0);
  assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(order_n, N);
  for (int i = 0; i < N; i++)
    assert_int_equal(order_log[i], want[i]);
  /* The repeating ones go on from their next times: 4 at 105, 5 at 70. */
  order_n = 0;
  assert_int_equal(rx_clock_advance(rxt.loop, RX_MSEC(80)), 0);
  assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(order_n, 2);
  assert_int_equal(order_log[0], 5);
  assert_int_equal(order_log[1], 4);
  rx_periodic_stop(rxt.loop, &w[4]);
  rx_periodic_stop(rxt.loop, &w[5]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      WALL_TEST(test_absolute),
      WALL_TEST(test_interval_keeps_phase),
      WALL_TEST(test_reschedule),
      WALL_TEST(test_bad_input_and_again),
      RXT_TEST(test_manual_clock),
      RXT_TEST(test_clock_jump),
      RXT_TEST_WITH(test_due_together_in_deadline_order, setup_manual),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-periodic [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
