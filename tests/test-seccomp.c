/*
 * test-seccomp.c - backend selection when seccomp refuses io_uring. Run by
 * meson under seccomp-launcher (see seccomp-launcher.c), with RXT_SECCOMP
 * naming the launcher's mode:
 *
 *   eperm   io_uring calls fail with EPERM: a loop made without a forced
 *           backend runs on epoll and says why; a forced io_uring loop is
 *           -EPERM, not a crash; the epoll loop works;
 *   kill    io_uring calls kill the process; run with RX_BACKEND=epoll,
 *           which must make no io_uring call at all;
 *   probe   (kill mode, expected to die) a forced io_uring loop: proves
 *           that the filter is really there, so that the kill-mode runs of
 *           the loop tests prove something.
 *
 * Each mode first checks that a seccomp filter is installed (Seccomp: 2 in
 * /proc/self/status), so that a run outside the launcher fails instead of
 * passing for the wrong reason.
 */
#include "helpers.h"

static const char *mode;

static int seccomp_filtered(void) {
  FILE *f = fopen("/proc/self/status", "re");
  if (f == NULL)
    return 0;
  char line[256];
  int v = 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "Seccomp: %d", &v) == 1)
      break;
  fclose(f);
  return v == 2;
}

struct iow {
  rx_io w;
  int calls;
};

static void iow_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)revents;
  char c;
  while (read(w->fd, &c, 1) > 0)
    ;
  ((struct iow *)w)->calls++;
  rx_io_stop(loop, w);
}

/* The loop works: an fd event and a timer. */
static void exercise(rx_loop *loop) {
  int sv[2];
  rxt_pair(sv);
  struct iow x;
  memset(&x, 0, sizeof(x));
  rx_io_init(&x.w, iow_cb, sv[0], RX_READ);
  assert_int_equal(rx_io_start(loop, &x.w), 0);
  rxt_send(sv[1], 'x');
  int done = 0;
  rx_timer t;
  rx_timer_init(&t, rxt_guard_cb, RX_MSEC(5), 0);
  t.data = &done;
  assert_int_equal(rx_timer_start(loop, &t), 0);
  assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  assert_int_equal(done, 1);
  rxt_close_pair(sv);
}

static void test_default_falls_back(void **state) {
  (void)state;
  unsetenv("RX_BACKEND");
  assert_int_equal(rx_loop_new(&rxt.loop, NULL), 0);
  const char *reason = rx_backend_reason(rxt.loop);
  print_message("backend %s: %s\n", rx_backend_name(rxt.loop), reason);
  assert_string_equal(rx_backend_name(rxt.loop), "epoll");
  if (strstr(reason, "io_uring_setup") == NULL ||
      strstr(reason, "not permitted") == NULL)
    fail_msg("reason \"%s\" does not say io_uring_setup was not permitted",
             reason);
  struct rx_metrics m;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m), 0);
  assert_string_equal(m.reason, reason);
  exercise(rxt.loop);
}

static void test_forced_uring_eperm(void **state) {
  (void)state;
  rx_loop *loop = (rx_loop *)&loop;
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.backend = "io_uring";
  assert_int_equal(rx_loop_new(&loop, &o), -EPERM);
  assert_null(loop);
  /* the same through the environment */
  setenv("RX_BACKEND", "io_uring", 1);
  loop = (rx_loop *)&loop;
  int rc = rx_loop_new(&loop, NULL);
  unsetenv("RX_BACKEND");
  assert_int_equal(rc, -EPERM);
  assert_null(loop);
  /* and a tiny ring, which retries smaller on -ENOMEM only */
  o.ring_entries = 8;
  assert_int_equal(rx_loop_new(&loop, &o), -EPERM);
}

static void test_forced_epoll(void **state) {
  (void)state;
  assert_int_equal(rx_loop_new(&rxt.loop, NULL), 0);
  assert_string_equal(rx_backend_name(rxt.loop), "epoll");
  exercise(rxt.loop);
  /* the loop fd for embedding, and a second loop */
  assert_true(rx_loop_fd(rxt.loop) >= 0);
  rx_loop *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  exercise(other);
  rx_loop_free(other);
}

int main(void) {
  mode = getenv("RXT_SECCOMP");
  if (mode == NULL) {
    printf("RXT_SECCOMP is not set: run under seccomp-launcher\n");
    return 1;
  }
  if (!seccomp_filtered()) {
    printf("no seccomp filter installed: run under seccomp-launcher\n");
    return 1;
  }
  if (strcmp(mode, "probe") == 0) {
    struct rx_loop_options o;
    memset(&o, 0, sizeof(o));
    o.backend = "io_uring";
    rx_loop *loop;
    int rc = rx_loop_new(&loop, &o);
    printf("still alive after io_uring_setup: %s\n", rx_strerror(rc));
    return 0; /* meson expects this run to fail */
  }
  if (strcmp(mode, "eperm") == 0) {
    const struct CMUnitTest tests[] = {
        RXT_TEST_NOLOOP(test_default_falls_back),
        RXT_TEST_NOLOOP(test_forced_uring_eperm),
    };
    return cmocka_run_group_tests_name("test-seccomp [eperm]", tests, NULL,
                                       NULL);
  }
  if (strcmp(mode, "kill") == 0) {
    const char *b = rxt_env_backend();
    if (b == NULL || strcmp(b, "epoll") != 0) {
      printf("kill mode needs RX_BACKEND=epoll\n");
      return 1;
    }
    const struct CMUnitTest tests[] = {
        RXT_TEST_NOLOOP(test_forced_epoll),
    };
    return cmocka_run_group_tests_name("test-seccomp [kill]", tests, NULL,
                                       NULL);
  }
  printf("unknown RXT_SECCOMP mode %s\n", mode);
  return 1;
}
