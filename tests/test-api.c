/*
 * test-api.c - tests the public header rx.h as a user sees it: watcher
 * sizes, the generic rx_is_active / rx_is_pending on every watcher type,
 * the constants, and -EINVAL for the NULL arguments the header documents.
 * Uses only rx.h (no internal.h).
 */
#include "helpers.h"

/* ---------------------------------------------------------------------------
 * Sizes: no larger than libev's (ev_io and ev_timer are 48 bytes on x86_64).
 */
static void test_sizes(void **state) {
  (void)state;
#if defined(__x86_64__)
  assert_true(sizeof(rx_io) <= 48);
  assert_true(sizeof(rx_timer) <= 48);
  print_message("sizeof rx_io %zu, rx_timer %zu, rx_idle %zu, rx_prepare %zu, "
                "rx_check %zu\n",
                sizeof(rx_io), sizeof(rx_timer), sizeof(rx_idle),
                sizeof(rx_prepare), sizeof(rx_check));
#else
  skip();
#endif
}

static void test_constants(void **state) {
  (void)state;
  static const int bits[] = {RX_READ,  RX_WRITE, RX_ET,      RX_ERROR,
                             RX_TIMER, RX_IDLE,  RX_PREPARE, RX_CHECK};
  int all = 0;
  for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
    assert_int_equal(bits[i] & (bits[i] - 1), 0); /* one bit each */
    assert_int_equal(all & bits[i], 0);           /* distinct */
    all |= bits[i];
  }
  assert_true(RX_MINPRI < 0 && RX_MAXPRI > 0);
  assert_true(RX_MAXPRI - RX_MINPRI + 1 == 5);
  assert_true(RX_USEC(3) == 3000);
  assert_true(RX_MSEC(3) == 3000000);
  assert_true(RX_SEC(3) == INT64_C(3000000000));
  assert_true(RX_SEC(10) > INT32_MAX); /* 64-bit arithmetic */
  assert_int_equal(RX_RUN_DEFAULT, 0);
  assert_int_equal(RX_BREAK_CANCEL, 0);
}

/* ---------------------------------------------------------------------------
 * rx_is_active / rx_is_pending on every watcher type: two watchers of a
 * type fire in one iteration; the first to run sees the other pending and
 * itself not.
 */
struct seen {
  void *self, *other;
  int self_active, self_pending, other_pending, calls;
};

static struct seen seen;

#define RECORD(selfp, otherp)                               \
  do {                                                      \
    if (seen.calls++ == 0) {                                \
      seen.self = (void *)(selfp);                          \
      seen.self_active = rx_is_active(selfp);               \
      seen.self_pending = rx_is_pending(selfp);             \
      seen.other_pending = rx_is_pending(otherp);           \
    }                                                       \
  } while (0)

static rx_io ios[2];
static rx_timer timers[2];
static rx_idle idles[2];
static rx_prepare prepares[2];
static rx_check checks[2];

static void io_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)revents;
  RECORD(w, &ios[w == &ios[0]]);
  rx_io_stop(loop, w);
}
static void timer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  RECORD(w, &timers[w == &timers[0]]);
  rx_timer_stop(loop, w);
}
static void idle_cb(rx_loop *loop, rx_idle *w, int revents) {
  (void)revents;
  RECORD(w, &idles[w == &idles[0]]);
  rx_idle_stop(loop, w);
}
static void prepare_cb(rx_loop *loop, rx_prepare *w, int revents) {
  (void)revents;
  RECORD(w, &prepares[w == &prepares[0]]);
  rx_prepare_stop(loop, w);
}
static void check_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)revents;
  RECORD(w, &checks[w == &checks[0]]);
  rx_check_stop(loop, w);
}

static void expect_seen(int self_active) {
  assert_int_equal(seen.calls, 2);
  assert_int_equal(seen.self_active, self_active);
  assert_int_equal(seen.self_pending, 0);
  assert_int_equal(seen.other_pending, 1);
  memset(&seen, 0, sizeof(seen));
}

static void test_is_active_pending_io(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  for (int i = 0; i < 2; i++) {
    rx_io_init(&ios[i], io_cb, sv[0], RX_WRITE);
    assert_false(rx_is_active(&ios[i]));
    assert_false(rx_is_pending(&ios[i]));
    rx_io_start(rxt.loop, &ios[i]);
    assert_true(rx_is_active(&ios[i]));
    assert_false(rx_is_pending(&ios[i]));
  }
  const rx_io *c = &ios[0];
  assert_true(rx_is_active(c));
  assert_false(rx_is_pending(c));
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  expect_seen(1);
  assert_false(rx_is_active(c));
  rxt_close_pair(sv);
}

static void test_is_active_pending_timer(void **state) {
  (void)state;
  for (int repeat = 0; repeat < 2; repeat++) {
    for (int i = 0; i < 2; i++) {
      rx_timer_init(&timers[i], timer_cb, 0, repeat ? RX_MSEC(1) : 0);
      assert_false(rx_is_active(&timers[i]));
      assert_false(rx_is_pending(&timers[i]));
      rx_timer_start(rxt.loop, &timers[i]);
      assert_true(rx_is_active(&timers[i]));
    }
    const rx_timer *c = &timers[1];
    assert_true(rx_is_active(c));
    assert_false(rx_is_pending(c));
    assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
    /* a one-shot timer is stopped by the time its callback runs */
    expect_seen(repeat);
    assert_false(rx_is_active(c));
  }
}

static void test_is_active_pending_idle(void **state) {
  (void)state;
  for (int i = 0; i < 2; i++) {
    rx_idle_init(&idles[i], idle_cb);
    rx_idle_start(rxt.loop, &idles[i]);
  }
  const rx_idle *c = &idles[0];
  assert_true(rx_is_active(c));
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  expect_seen(1);
  assert_false(rx_is_active(c));
}

static void test_is_active_pending_prepare(void **state) {
  (void)state;
  for (int i = 0; i < 2; i++) {
    rx_prepare_init(&prepares[i], prepare_cb);
    rx_prepare_start(rxt.loop, &prepares[i]);
  }
  const rx_prepare *c = &prepares[0];
  assert_true(rx_is_active(c));
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  expect_seen(1);
  assert_false(rx_is_active(c));
  assert_false(rx_is_pending(c));
}

static void test_is_active_pending_check(void **state) {
  (void)state;
  for (int i = 0; i < 2; i++) {
    rx_check_init(&checks[i], check_cb);
    rx_check_start(rxt.loop, &checks[i]);
  }
  const rx_check *c = &checks[0];
  assert_true(rx_is_active(c));
  /* (not RX_RUN_DEFAULT: check watchers alone would block in the wait) */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  expect_seen(1);
  assert_false(rx_is_active(c));
}

/* rx_loop_free leaves every watcher stopped. */
static void test_free_stops_watchers(void **state) {
  (void)state;
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  int sv[2];
  rxt_pair(sv);
  rx_io io;
  rx_timer t, t2;
  rx_idle i;
  rx_prepare p;
  rx_check c;
  rx_io_init(&io, io_cb, sv[0], RX_READ);
  rx_timer_init(&t, timer_cb, RX_SEC(10), 0);
  rx_timer_init(&t2, timer_cb, 0, RX_SEC(1));
  rx_idle_init(&i, idle_cb);
  rx_prepare_init(&p, prepare_cb);
  rx_check_init(&c, check_cb);
  rx_io_start(loop, &io);
  rx_timer_start(loop, &t);
  rx_timer_start(loop, &t2);
  rx_idle_start(loop, &i);
  rx_prepare_start(loop, &p);
  rx_check_start(loop, &c);
  rx_loop_free(loop);
  assert_false(rx_is_active(&io));
  assert_false(rx_is_active(&t));
  assert_false(rx_is_active(&t2));
  assert_false(rx_is_active(&i));
  assert_false(rx_is_active(&p));
  assert_false(rx_is_active(&c));
  /* and reusable on a new loop */
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  assert_int_equal(rx_timer_start(loop, &t), 0);
  assert_int_equal(rx_io_start(loop, &io), 0);
  rx_loop_free(loop);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * NULL arguments: -EINVAL where rx.h says so, never a crash.
 */
static void test_null_arguments(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rx_io io;
  rx_timer t;
  rx_idle i;
  rx_prepare p;
  rx_check c;
  rx_io_init(&io, io_cb, 0, RX_READ);
  rx_timer_init(&t, timer_cb, 0, 0);
  rx_idle_init(&i, idle_cb);
  rx_prepare_init(&p, prepare_cb);
  rx_check_init(&c, check_cb);

  assert_int_equal(rx_loop_new(NULL, NULL), -EINVAL);
  assert_int_equal(rx_run(NULL, RX_RUN_NOWAIT), -EINVAL);
  assert_int_equal(rx_set_allocator(&(struct rx_allocator){0}), -EINVAL);

  assert_int_equal(rx_io_set(NULL, 0, RX_READ), -EINVAL);
  assert_int_equal(rx_io_start(NULL, &io), -EINVAL);
  assert_int_equal(rx_io_start(loop, NULL), -EINVAL);
  assert_int_equal(rx_io_stop(NULL, &io), -EINVAL);
  assert_int_equal(rx_io_stop(loop, NULL), -EINVAL);
  assert_int_equal(rx_io_set_priority(NULL, 0), -EINVAL);

  assert_int_equal(rx_timer_set(NULL, 0, 0), -EINVAL);
  assert_int_equal(rx_timer_start(NULL, &t), -EINVAL);
  assert_int_equal(rx_timer_start(loop, NULL), -EINVAL);
  assert_int_equal(rx_timer_stop(NULL, &t), -EINVAL);
  assert_int_equal(rx_timer_stop(loop, NULL), -EINVAL);
  assert_int_equal(rx_timer_again(NULL, &t), -EINVAL);
  assert_int_equal(rx_timer_again(loop, NULL), -EINVAL);
  assert_int_equal(rx_timer_set_priority(NULL, 0), -EINVAL);

  assert_int_equal(rx_idle_start(NULL, &i), -EINVAL);
  assert_int_equal(rx_idle_start(loop, NULL), -EINVAL);
  assert_int_equal(rx_idle_stop(NULL, &i), -EINVAL);
  assert_int_equal(rx_idle_stop(loop, NULL), -EINVAL);
  assert_int_equal(rx_idle_set_priority(NULL, 0), -EINVAL);
  assert_int_equal(rx_prepare_start(NULL, &p), -EINVAL);
  assert_int_equal(rx_prepare_start(loop, NULL), -EINVAL);
  assert_int_equal(rx_prepare_stop(NULL, &p), -EINVAL);
  assert_int_equal(rx_prepare_stop(loop, NULL), -EINVAL);
  assert_int_equal(rx_prepare_set_priority(NULL, 0), -EINVAL);
  assert_int_equal(rx_check_start(NULL, &c), -EINVAL);
  assert_int_equal(rx_check_start(loop, NULL), -EINVAL);
  assert_int_equal(rx_check_stop(NULL, &c), -EINVAL);
  assert_int_equal(rx_check_stop(loop, NULL), -EINVAL);
  assert_int_equal(rx_check_set_priority(NULL, 0), -EINVAL);

  rx_loop_free(NULL);
  /* nothing was started */
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_false(rx_is_active(&io));
  assert_false(rx_is_active(&t));
}

/* ---------------------------------------------------------------------------
 * The version: the library's, the header's and the project's (meson.build,
 * passed as RXT_PROJECT_VERSION) are one.
 */
static void test_version(void **state) {
  (void)state;
  assert_int_equal(rx_version(), RX_VERSION_HEX);
  assert_int_equal(RX_VERSION_HEX, (RX_VERSION_MAJOR << 16) |
                                       (RX_VERSION_MINOR << 8) |
                                       RX_VERSION_PATCH);
  assert_string_equal(rx_version_string(), RX_VERSION_STRING);
  assert_string_equal(rx_version_string(), RXT_PROJECT_VERSION);
  char parts[32];
  snprintf(parts, sizeof(parts), "%d.%d.%d", RX_VERSION_MAJOR,
           RX_VERSION_MINOR, RX_VERSION_PATCH);
  assert_string_equal(parts, RXT_PROJECT_VERSION);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_constants),
      RXT_TEST(test_is_active_pending_io),
      RXT_TEST(test_is_active_pending_timer),
      RXT_TEST(test_is_active_pending_idle),
      RXT_TEST(test_is_active_pending_prepare),
      RXT_TEST(test_is_active_pending_check),
      RXT_TEST_NOLOOP(test_free_stops_watchers),
      RXT_TEST(test_null_arguments),
      cmocka_unit_test(test_version),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-api [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
