/*
 * test-verify.c - tests reactor/verify.c: rx_verify() finds a busy loop
 * (io watchers, timers on several wheel levels, every list-kept kind,
 * pending events of the backend's and fed ones) sound, and names each
 * corruption made on purpose; every watcher list too (fork, embed, stat,
 * periodic and child watchers, the owner of async ones, the counts). Runs
 * once per backend (RX_BACKEND, see meson.build).
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
      RX_USEC(100),           RX_MSEC(1),         RX_MSEC(30),
      RX_MSEC(100),           RX_SEC(10),         RX_SEC(100),
      RX_SEC(3600),           RX_SEC(86400) * 30, RX_SEC(86400) * 1000,
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

/* Clears, then sets again, the active bit of a watcher's head. */
static void expect_inactive_broken(rx_loop *loop, struct rx__watcher *h,
                                   const char *name) {
  h->flags &= ~RX__F_ACTIVE;
  expect_broken(loop, name);
  h->flags |= RX__F_ACTIVE;
  rxt_assert_verified(loop);
}

/* Gives a watcher's head another kind for a moment. */
static void expect_kind_broken(rx_loop *loop, struct rx__watcher *h,
                               const char *name) {
  uint32_t was = h->flags;
  h->flags = (was & ~RX__F_KIND) |
             ((uint32_t)RX__KIND_IDLE << RX__F_KIND_SHIFT);
  expect_broken(loop, name);
  h->flags = was;
  rxt_assert_verified(loop);
}

/* Points the `prev` of a watcher's list link at itself for a moment. */
static void expect_link_broken(rx_loop *loop, struct rx__link *active,
                               const char *name) {
  struct rx__link *prev = active->prev;
  active->prev = active;
  expect_broken(loop, name);
  active->prev = prev;
  rxt_assert_verified(loop);
}

/* Callbacks that only count. */
static int calls;
static void fork_cb(rx_loop *l, rx_fork *w, int r) {
  (void)l, (void)w, (void)r, calls++;
}
static void stat_cb(rx_loop *l, rx_stat *w, int r) {
  (void)l, (void)w, (void)r, calls++;
}
static void periodic_cb(rx_loop *l, rx_periodic *w, int r) {
  (void)l, (void)w, (void)r, calls++;
}
static void child_cb(rx_loop *l, rx_child *w, int r) {
  (void)l, (void)w, (void)r, calls++;
}
static void async_cb(rx_loop *l, rx_async *w, int r) {
  (void)l, (void)w, (void)r, calls++;
}
static void idle_cb(rx_loop *l, rx_idle *w, int r) {
  (void)l, (void)w, (void)r, calls++;
}

static void test_verify_every_list(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rx_loop *other = NULL;
  assert_int_equal(rx_loop_new(&other, NULL), 0);

  rx_fork fk;
  rx_embed em;
  rx_stat st;
  rx_periodic pe;
  rx_child ch;
  rx_async as;
  rx_idle id;
  rx_fork_init(&fk, fork_cb);
  rx_embed_init(&em, NULL, other);
  rx_stat_init(&st, stat_cb, "/", RX_SEC(60));
  rx_periodic_init(&pe, periodic_cb, 0, RX_SEC(3600), NULL);
  rx_child_init(&ch, child_cb, 0, 0); /* any child: SIGCHLD */
  rx_async_init(&as, async_cb);
  rx_idle_init(&id, idle_cb);
  assert_int_equal(rx_idle_set_priority(&id, 1), 0);
  assert_int_equal(rx_fork_start(loop, &fk), 0);
  assert_int_equal(rx_embed_start(loop, &em), 0);
  assert_int_equal(rx_stat_start(loop, &st), 0);
  assert_int_equal(rx_periodic_start(loop, &pe), 0);
  assert_int_equal(rx_child_start(loop, &ch), 0);
  assert_int_equal(rx_async_start(loop, &as), 0);
  assert_int_equal(rx_idle_start(loop, &id), 0);
  rxt_assert_verified(loop);
  rxt_assert_verified(other);

  /* Each list: a watcher on it that is not active, or of another kind. */
  expect_inactive_broken(loop, &fk._w, "fork watchers");
  expect_kind_broken(loop, &fk._w, "fork watchers");
  expect_inactive_broken(loop, &em._w, "embed watchers");
  expect_kind_broken(loop, &em._w, "embed watchers");
  expect_inactive_broken(loop, &st._w, "stat watchers");
  expect_kind_broken(loop, &st._w, "stat watchers");
  expect_inactive_broken(loop, &pe._w, "periodic watchers");
  expect_kind_broken(loop, &pe._w, "periodic watchers");
  expect_inactive_broken(loop, &ch._w, "child watchers");
  expect_kind_broken(loop, &ch._w, "child watchers");

  /* Each list's links. */
  expect_link_broken(loop, &fk._active, "fork watchers");
  expect_link_broken(loop, &em._active, "embed watchers");
  expect_link_broken(loop, &st._active, "stat watchers");
  expect_link_broken(loop, &pe._active, "periodic watchers");
  expect_link_broken(loop, &ch._active, "child watchers");

  /* Counts. */
  loop->nperiodics++;
  expect_broken(loop, "periodic count");
  loop->nperiodics -= 2;
  expect_broken(loop, "periodic count");
  loop->nperiodics++;
  rxt_assert_verified(loop);
  loop->sigchld_users++;
  expect_broken(loop, "child count");
  loop->sigchld_users--;
  rxt_assert_verified(loop);

  /* Owners: an async watcher names its loop; an embed watcher embeds
   * another one. */
  as._loop = other;
  expect_broken(loop, "async watchers");
  as._loop = loop;
  rxt_assert_verified(loop);
  rx_loop *embedded = em.other;
  em.other = loop;
  expect_broken(loop, "embed watchers");
  em.other = embedded;
  rxt_assert_verified(loop);

  /* An idle watcher on the list of another priority than its own. */
  uint32_t was = id._w.flags;
  id._w.flags = (was & ~RX__F_PRIO) | ((uint32_t)0 << RX__F_PRIO_SHIFT);
  expect_broken(loop, "idle watchers");
  id._w.flags = was;
  rxt_assert_verified(loop);

  /* The same watchers through a few iterations, then stopped. */
  rxt_run_nowait(loop, 3);
  rxt_assert_verified(loop);
  assert_true(calls >= 3); /* the idle watcher's */
  assert_int_equal(rx_idle_stop(loop, &id), 0);
  assert_int_equal(rx_async_stop(loop, &as), 0);
  assert_int_equal(rx_child_stop(loop, &ch), 0);
  assert_int_equal(rx_periodic_stop(loop, &pe), 0);
  assert_int_equal(rx_stat_stop(loop, &st), 0);
  assert_int_equal(rx_embed_stop(loop, &em), 0);
  assert_int_equal(rx_fork_stop(loop, &fk), 0);
  rxt_assert_verified(loop);
  assert_int_equal(loop->nperiodics, 0);
  assert_int_equal(loop->sigchld_users, 0);
  assert_int_equal(rx_loop_free(other), 0);
}

/* A child watcher on a pidfd watches it with its own io watcher. */
static void test_verify_child_pidfd(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rx_child ch;
  rx_child_init(&ch, child_cb, getpid(), 0);
  assert_int_equal(rx_child_start(loop, &ch), 0);
  rxt_assert_verified(loop);
  if (ch._pidfd >= 0) { /* else pidfd_open is refused: SIGCHLD */
    assert_int_equal(loop->sigchld_users, 0);
    int fd = ch._io.fd;
    ch._io.fd = -1;
    expect_broken(loop, "fd watcher list");
    ch._io.fd = fd;
    rxt_assert_verified(loop);
    ch._pidfd = fd + 1;
    expect_broken(loop, "child watchers");
    ch._pidfd = fd;
  } else {
    assert_int_equal(loop->sigchld_users, 1);
  }
  rxt_assert_verified(loop);
  assert_int_equal(rx_child_stop(loop, &ch), 0);
  rxt_assert_verified(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_verify),
      RXT_TEST(test_verify_every_list),
      RXT_TEST(test_verify_child_pidfd),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-verify [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
