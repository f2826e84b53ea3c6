/*
 * test-stat.c - reactor/stat.c: path attribute watchers on the backend
 * $RX_BACKEND names: a change heard through inotify at once, through
 * polling where inotify cannot see it (a path that did not exist), no
 * callback when nothing changed, prev/attr.
 */
#include "helpers.h"

#include <sys/stat.h>

struct sw {
  rx_stat w;
  int calls;
  off_t prev_size, size;
  nlink_t nlink;
};

static void sw_cb(rx_loop *loop, rx_stat *w, int revents) {
  struct sw *x = (struct sw *)w;
  (void)loop;
  assert_int_equal(revents, RX_STAT);
  x->calls++;
  x->prev_size = w->prev.st_size;
  x->size = w->attr.st_size;
  x->nlink = w->attr.st_nlink;
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* inotify: heard long before the 60 s poll. */
static void test_change_heard_at_once(void **state) {
  (void)state;
  char path[] = "/tmp/rx-test-stat-XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);
  assert_true(fd >= 0);
  close(fd);
  struct sw x;
  memset(&x, 0, sizeof(x));
  rx_stat_init(&x.w, sw_cb, path, RX_SEC(60));
  assert_int_equal(rx_stat_start(rxt.loop, &x.w), 0);
  assert_int_equal((int)x.w.attr.st_size, 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(x.calls, 0); /* nothing changed, no callback */
  write_file(path, "hello");
  int64_t t0 = rxt_clock();
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal((int)x.prev_size, 0);
  assert_int_equal((int)x.size, 5);
  /* Removed: attr.st_nlink == 0. */
  x.calls = 0;
  unlink(path);
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_int_equal((int)x.nlink, 0);
  assert_int_equal(rx_stat_stop(rxt.loop, &x.w), 0);
  assert_false(rx_is_active(&x.w));
}

/* A path that does not exist yet: only polling can see it appear. */
static void test_created_later_by_polling(void **state) {
  (void)state;
  char path[64];
  snprintf(path, sizeof(path), "/tmp/rx-test-stat-new-%d", (int)getpid());
  unlink(path);
  struct sw x;
  memset(&x, 0, sizeof(x));
  rx_stat_init(&x.w, sw_cb, path, RX_MSEC(20));
  assert_int_equal(rx_stat_start(rxt.loop, &x.w), 0);
  assert_int_equal((int)x.w.attr.st_nlink, 0);
  write_file(path, "abc");
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_int_equal((int)x.size, 3);
  assert_true(x.nlink >= 1);
  /* Now it exists and is watched: the next change comes too. */
  x.calls = 0;
  write_file(path, "abcdef");
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_int_equal((int)x.size, 6);
  rx_stat_stop(rxt.loop, &x.w);
  unlink(path);
}

static void test_bad_input_and_stat(void **state) {
  (void)state;
  struct sw x;
  memset(&x, 0, sizeof(x));
  rx_stat_init(&x.w, sw_cb, NULL, 0);
  assert_int_equal(rx_stat_start(rxt.loop, &x.w), -EINVAL);
  rx_stat_init(&x.w, sw_cb, "/", -1);
  assert_int_equal(rx_stat_start(rxt.loop, &x.w), -EINVAL);
  rx_stat_init(&x.w, sw_cb, "/", 0);
  assert_int_equal(rx_stat_stat(rxt.loop, &x.w), 0);
  assert_true(S_ISDIR(x.w.attr.st_mode));
  assert_int_equal(rx_stat_start(rxt.loop, &x.w), 0);
  rx_loop *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  assert_int_equal(rx_stat_start(other, &x.w), -EBUSY);
  assert_int_equal(rx_stat_stop(other, &x.w), -EBUSY);
  rx_loop_free(other);
  /* An active stat watcher keeps the loop running, its internals do not
   * count twice: one stop and the loop has nothing left. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  rx_stat_stop(rxt.loop, &x.w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_change_heard_at_once),
      RXT_TEST(test_created_later_by_polling),
      RXT_TEST(test_bad_input_and_stat),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-stat [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
