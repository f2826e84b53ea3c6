/*
 * test-verify.c - reactor/verify.c: rx_verify() on every watcher list of a
 * loop (fork, embed, stat, periodic and child watchers, and the owner of
 * async ones), each corruption alone, then restored, on the backend
 * $RX_BACKEND names. Reaches into the loop (internal.h) to break it.
 */
#include "helpers.h"

#include "internal.h"

static void expect_broken(rx_loop *loop, const char *name) {
  const char *what = NULL;
  int rc = rx_verify(loop, &what);
  if (rc != -EFAULT || what == NULL || strcmp(what, name) != 0)
    fail_msg("rx_verify: %d (%s), expected -EFAULT (%s)", rc,
             what != NULL ? what : "NULL", name);
  assert_int_equal(rx_verify(loop, NULL), -EFAULT);
}

static void assert_verified(rx_loop *loop) {
  const char *what = "unset";
  int rc = rx_verify(loop, &what);
  if (rc != 0)
    fail_msg("rx_verify: %d (%s)", rc, what != NULL ? what : "NULL");
  assert_null(what);
}

/* Clears, then sets again, the active bit of a watcher's head. */
static void expect_inactive_broken(rx_loop *loop, struct rx__watcher *h,
                                   const char *name) {
  h->flags &= ~RX__F_ACTIVE;
  expect_broken(loop, name);
  h->flags |= RX__F_ACTIVE;
  assert_verified(loop);
}

/* Gives a watcher's head another kind for a moment. */
static void expect_kind_broken(rx_loop *loop, struct rx__watcher *h,
                               const char *name) {
  uint32_t was = h->flags;
  h->flags = (was & ~RX__F_KIND) |
             ((uint32_t)RX__KIND_IDLE << RX__F_KIND_SHIFT);
  expect_broken(loop, name);
  h->flags = was;
  assert_verified(loop);
}

/* Points the `prev` of a watcher's list link at itself for a moment. */
static void expect_link_broken(rx_loop *loop, struct rx__link *active,
                               const char *name) {
  struct rx__link *prev = active->prev;
  active->prev = active;
  expect_broken(loop, name);
  active->prev = prev;
  assert_verified(loop);
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
  assert_verified(loop);
  assert_verified(other);

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
  assert_verified(loop);
  loop->sigchld_users++;
  expect_broken(loop, "child count");
  loop->sigchld_users--;
  assert_verified(loop);

  /* Owners: an async watcher names its loop; an embed watcher embeds
   * another one. */
  as._loop = other;
  expect_broken(loop, "async watchers");
  as._loop = loop;
  assert_verified(loop);
  rx_loop *embedded = em.other;
  em.other = loop;
  expect_broken(loop, "embed watchers");
  em.other = embedded;
  assert_verified(loop);

  /* An idle watcher on the list of another priority than its own. */
  uint32_t was = id._w.flags;
  id._w.flags = (was & ~RX__F_PRIO) | ((uint32_t)0 << RX__F_PRIO_SHIFT);
  expect_broken(loop, "idle watchers");
  id._w.flags = was;
  assert_verified(loop);

  /* The same watchers through a few iterations, then stopped. */
  rxt_run_nowait(loop, 3);
  assert_verified(loop);
  assert_true(calls >= 3); /* the idle watcher's */
  assert_int_equal(rx_idle_stop(loop, &id), 0);
  assert_int_equal(rx_async_stop(loop, &as), 0);
  assert_int_equal(rx_child_stop(loop, &ch), 0);
  assert_int_equal(rx_periodic_stop(loop, &pe), 0);
  assert_int_equal(rx_stat_stop(loop, &st), 0);
  assert_int_equal(rx_embed_stop(loop, &em), 0);
  assert_int_equal(rx_fork_stop(loop, &fk), 0);
  assert_verified(loop);
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
  assert_verified(loop);
  if (ch._pidfd >= 0) { /* else pidfd_open is refused: SIGCHLD */
    assert_int_equal(loop->sigchld_users, 0);
    int fd = ch._io.fd;
    ch._io.fd = -1;
    expect_broken(loop, "fd watcher list");
    ch._io.fd = fd;
    assert_verified(loop);
    ch._pidfd = fd + 1;
    expect_broken(loop, "child watchers");
    ch._pidfd = fd;
  } else {
    assert_int_equal(loop->sigchld_users, 1);
  }
  assert_verified(loop);
  assert_int_equal(rx_child_stop(loop, &ch), 0);
  assert_verified(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_verify_every_list),
      RXT_TEST(test_verify_child_pidfd),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-verify [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
