/*
 * test-verify.c - tests reactor/verify.c: rx_verify() finds a busy loop
 * (io watchers, timers on several wheel levels, every list-kept kind,
 * pending events of the backend's and fed ones) sound, and names each
 * corruption made on purpose. Runs once per backend (RX_BACKEND, see
 * meson.build).
 */
#include "helpers.h"

#include "internal.h"

/* An invoke override that runs nothing: events stay pending. */
static void deferring_invoke(rx_loop *loop) {
  (void)loop;
}

static void expect_broken(rx_loop *loop, const char *name) {
  const char *what = NULL;
  int rc = rx_verify(loop, &what);
  if (rc != -EFAULT || what == NULL || strcmp(what, name) != 0)
    fail_msg("rx_verify: %d (%s), expected -EFAULT (%s)", rc,
             what != NULL ? what : "NULL", name);
  assert_int_equal(rx_verify(loop, NULL), -EFAULT);
}

static void test_verify(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  assert_int_equal(rx_verify(NULL, NULL), -EINVAL);

  /* A busy loop: io watchers, one with data waiting; timers on several
   * wheel levels and beyond; idle, prepare, check, async and cleanup
   * watchers; then pending events of the backend's and fed ones. */
  enum { NPAIR = 3 };
  int sv[NPAIR][2];
  struct rxt_rec hio[NPAIR] = {{0}}, ht = {0}, hh = {0};
  rx_io io[NPAIR];
  for (int i = 0; i < NPAIR; i++) {
    rxt_pair(sv[i]);
    rx_io_init(&io[i], rxt_rec_io_cb, sv[i][0], i == 1 ? RX_WRITE : RX_READ);
    io[i].data = &hio[i];
    assert_int_equal(rx_io_start(loop, &io[i]), 0);
  }
  static const int64_t afters[] = {
      RX_USEC(100), RX_MSEC(1),  RX_MSEC(30), RX_MSEC(100), RX_SEC(10),
      RX_SEC(100),  RX_SEC(3600), RX_SEC(86400) * 30, RX_SEC(86400) * 1000,
      RX_SEC(86400) * 365 * 5};
  enum { NTIM = sizeof(afters) / sizeof(afters[0]) };
  rx_timer t[NTIM];
  for (int i = 0; i < NTIM; i++) {
    rx_timer_init(&t[i], rxt_rec_timer_cb, afters[i], i == 0 ? RX_MSEC(1) : 0);
    t[i].data = &ht;
    assert_int_equal(rx_timer_start(loop, &t[i]), 0);
  }
  rx_idle idle;
  rx_prepare prep;
  rx_check chk;
  rx_async as;
  rx_cleanup cl;
  rx_idle_init(&idle, rxt_rec_idle_cb);
  rx_prepare_init(&prep, rxt_rec_prepare_cb);
  rx_check_init(&chk, rxt_rec_check_cb);
  rx_async_init(&as, rxt_rec_async_cb);
  rx_cleanup_init(&cl, rxt_rec_cleanup_cb);
  idle.data = prep.data = chk.data = as.data = cl.data = &hh;
  assert_int_equal(rx_idle_set_priority(&idle, 1), 0);
  assert_int_equal(rx_idle_start(loop, &idle), 0);
  assert_int_equal(rx_prepare_start(loop, &prep), 0);
  assert_int_equal(rx_check_start(loop, &chk), 0);
  assert_int_equal(rx_async_start(loop, &as), 0);
  assert_int_equal(rx_cleanup_start(loop, &cl), 0);
  rxt_assert_verified(loop);
  rxt_run_nowait(loop, 3);
  rxt_assert_verified(loop);

  /* Events left pending by a deferring invoke, plus fed ones. */
  rxt_send(sv[0][1], 'x');
  rx_set_invoke_pending(loop, deferring_invoke);
  for (int i = 0; i < 200 && !rx_is_pending(&io[0]); i++) {
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    if (!rx_is_pending(&io[0]))
      rxt_sleep_ns(RX_MSEC(1));
  }
  assert_true(rx_is_pending(&io[0]));
  assert_int_equal(rx_feed_event(loop, &io[2], RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &t[NTIM - 1], 0), 0);
  assert_int_equal(rx_async_send(loop, &as), 0);
  rxt_run_nowait(loop, 1);
  assert_true(rx_pending_count(loop) >= 5);
  const char *what = "unset";
  assert_int_equal(rx_verify(loop, &what), 0);
  assert_null(what);
  assert_int_equal(rx_verify(loop, NULL), 0);

  /* Each corruption alone, then restored. */
  loop->pendingcnt++;
  expect_broken(loop, "pending count");
  loop->pendingcnt -= 2;
  expect_broken(loop, "pending count");
  loop->pendingcnt++;
  rxt_assert_verified(loop);

  loop->fds[sv[2][0]].want ^= RX_WRITE;
  expect_broken(loop, "fd interest");
  loop->fds[sv[2][0]].want ^= RX_WRITE;
  rxt_assert_verified(loop);

  for (int level = 0; level < RX__TW_LEVELS; level += 2) {
    loop->wheel.occupied[level] ^= UINT64_C(1) << 37;
    expect_broken(loop, "timer wheel");
    loop->wheel.occupied[level] ^= UINT64_C(1) << 37;
    rxt_assert_verified(loop);
  }
  int occupied_levels = 0;
  for (int level = 0; level < RX__TW_LEVELS; level++)
    occupied_levels += loop->wheel.occupied[level] != 0;
  assert_true(occupied_levels >= 3);
  /* An occupied slot's bit too. */
  for (int level = 0; level < RX__TW_LEVELS; level++) {
    uint64_t occ = loop->wheel.occupied[level];
    if (occ == 0)
      continue;
    uint64_t bit = occ & (~occ + 1);
    loop->wheel.occupied[level] ^= bit;
    expect_broken(loop, "timer wheel");
    loop->wheel.occupied[level] ^= bit;
    rxt_assert_verified(loop);
  }

  loop->idlecnt++;
  expect_broken(loop, "idle count");
  loop->idlecnt--;
  rxt_assert_verified(loop);

  assert_true(rx_is_pending(&io[2]));
  io[2]._flags &= ~RX__F_PENDING;
  expect_broken(loop, "pending queue");
  io[2]._flags |= RX__F_PENDING;
  rxt_assert_verified(loop);

  /* And a timer's. */
  assert_true(rx_is_pending(&t[NTIM - 1]));
  t[NTIM - 1]._ent.word &= ~((uint64_t)RX__T_PENDING << RX__TW_AT_BITS);
  expect_broken(loop, "timer pending queue");
  t[NTIM - 1]._ent.word |= (uint64_t)RX__T_PENDING << RX__TW_AT_BITS;
  rxt_assert_verified(loop);

  /* Everything runs and the loop frees cleanly. */
  rx_set_invoke_pending(loop, NULL);
  rx_invoke_pending(loop);
  assert_int_equal(rx_pending_count(loop), 0);
  assert_true(hio[0].calls >= 1);
  rxt_assert_verified(loop);
  rx_loop_free(loop);
  rxt.loop = NULL;
  for (int i = 0; i < NPAIR; i++)
    rxt_close_pair(sv[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_verify),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-verify [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
