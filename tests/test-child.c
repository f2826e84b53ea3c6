/*
 * test-child.c - reactor/child.c: child watchers on the backend
 * $RX_BACKEND names: exit and kill through a pidfd, any child and stops
 * and continues through SIGCHLD, statuses as waitpid() reports them. meson
 * also runs it with pidfd_open refused (seccomp-launcher nopidfd), where
 * every watcher takes the SIGCHLD path and must behave the same.
 */
#include "helpers.h"

#include <signal.h>
#include <sys/wait.h>

struct cw {
  rx_child w;
  int calls;
  int rpid[8];
  int rstatus[8];
};

static void cw_cb(rx_loop *loop, rx_child *w, int revents) {
  struct cw *x = (struct cw *)w;
  (void)loop;
  assert_int_equal(revents, RX_CHILD);
  if (x->calls < 8) {
    x->rpid[x->calls] = w->rpid;
    x->rstatus[x->calls] = w->rstatus;
  }
  x->calls++;
}

static pid_t spawn_exit(int code, int64_t delay) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rxt_sleep_ns(delay);
    _exit(code);
  }
  return pid;
}

static void test_exit_status(void **state) {
  (void)state;
  pid_t pid = spawn_exit(42, RX_MSEC(20));
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, pid, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  /* The watcher stops by itself after the exit: the run returns. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.rpid[0], pid);
  assert_true(WIFEXITED(x.rstatus[0]));
  assert_int_equal(WEXITSTATUS(x.rstatus[0]), 42);
  assert_false(rx_is_active(&x.w));
  assert_int_equal(waitpid(pid, NULL, WNOHANG), -1); /* reaped by rx */
}

static void test_killed(void **state) {
  (void)state;
  pid_t pid = spawn_exit(0, RX_SEC(30));
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, pid, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  kill(pid, SIGKILL);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  assert_true(WIFSIGNALED(x.rstatus[0]));
  assert_int_equal(WTERMSIG(x.rstatus[0]), SIGKILL);
}

/* Stops and continues need SIGCHLD (a pidfd reports only the exit). */
static void test_trace_stop_continue(void **state) {
  (void)state;
  pid_t pid = spawn_exit(7, RX_SEC(30));
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, pid, 1);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  kill(pid, SIGSTOP);
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_true(WIFSTOPPED(x.rstatus[0]));
  assert_int_equal(WSTOPSIG(x.rstatus[0]), SIGSTOP);
  x.calls = 0;
  kill(pid, SIGCONT);
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_true(WIFCONTINUED(x.rstatus[0]));
  x.calls = 0;
  kill(pid, SIGTERM);
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_true(WIFSIGNALED(x.rstatus[0]));
  assert_int_equal(WTERMSIG(x.rstatus[0]), SIGTERM);
  /* Its child is gone (and reaped): the watcher has stopped, as an
   * untraced one does, so that the pid, free for reuse, is not watched. */
  assert_false(rx_is_active(&x.w));
  assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
  assert_int_equal(rx_child_stop(rxt.loop, &x.w), 0);
}

/* pid 0: any child, each reported once, all reaped. */
static void test_any_child(void **state) {
  (void)state;
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, 0, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  pid_t a = spawn_exit(1, RX_MSEC(10));
  pid_t b = spawn_exit(2, RX_MSEC(30));
  int64_t end = rxt_clock() + RX_SEC(5);
  while (x.calls < 2 && rxt_clock() < end) {
    int never = 0;
    rxt_run_until(rxt.loop, &never, RX_MSEC(20));
  }
  assert_int_equal(x.calls, 2);
  int seen_a = 0, seen_b = 0;
  for (int i = 0; i < 2; i++) {
    if (x.rpid[i] == a && WEXITSTATUS(x.rstatus[i]) == 1)
      seen_a++;
    if (x.rpid[i] == b && WEXITSTATUS(x.rstatus[i]) == 2)
      seen_b++;
  }
  assert_int_equal(seen_a, 1);
  assert_int_equal(seen_b, 1);
  assert_int_equal(rx_child_stop(rxt.loop, &x.w), 0);
}

/* A child that exited before its watcher started is still reported. */
static void test_exited_before_start(void **state) {
  (void)state;
  pid_t pid = spawn_exit(5, 0);
  rxt_sleep_ns(RX_MSEC(50)); /* a zombie by now */
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, pid, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  assert_int_equal(WEXITSTATUS(x.rstatus[0]), 5);
}

static void test_bad_input(void **state) {
  (void)state;
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, -1, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), -EINVAL);
  rx_child_init(&x.w, cw_cb, 1, 0);
  assert_int_equal(rx_child_start(NULL, &x.w), -EINVAL);
  /* Another loop holding SIGCHLD: a SIGCHLD watcher here gets -EBUSY. */
  rx_loop *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  struct cw y;
  memset(&y, 0, sizeof(y));
  rx_child_init(&y.w, cw_cb, 0, 0);
  assert_int_equal(rx_child_start(other, &y.w), 0);
  rx_child_init(&x.w, cw_cb, 0, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), -EBUSY);
  assert_false(rx_is_active(&x.w));
  assert_int_equal(rx_child_start(rxt.loop, &y.w), -EBUSY);
  rx_child_stop(other, &y.w);
  rx_loop_free(other);
}

/* ---------------------------------------------------------------------------
 * Several children reaped in one pass: each one a callback of its own.
 */

/* Forks children that exit at once with 10 + i, and returns when all are
 * zombies (waitid with WNOWAIT leaves them to be reaped), so that one
 * SIGCHLD pass finds them all. */
static void spawn_zombies(pid_t *pids, int n) {
  for (int i = 0; i < n; i++)
    pids[i] = spawn_exit(10 + i, 0);
  for (int i = 0; i < n; i++) {
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)pids[i], &si, WEXITED | WNOWAIT), 0);
  }
}

/* Runs the loop until `calls` of each watcher reach `want` (5 s at most),
 * then a few more iterations, so that a report too many would show. */
static void run_until_calls(struct cw **ws, int n, const int *want) {
  int64_t end = rxt_clock() + RX_SEC(5);
  for (;;) {
    int done = 1;
    for (int i = 0; i < n; i++)
      done &= ws[i]->calls >= want[i];
    if (done || rxt_clock() >= end)
      break;
    int never = 0;
    rxt_run_until(rxt.loop, &never, RX_MSEC(20));
  }
  rxt_run_nowait(rxt.loop, 3);
}

/* Each of `pids` (exit status 10 + index) is in x's reports exactly once. */
static void assert_reports(const struct cw *x, const pid_t *pids, int n) {
  assert_int_equal(x->calls, n);
  for (int i = 0; i < n; i++) {
    int seen = 0;
    for (int j = 0; j < n; j++)
      if (x->rpid[j] == pids[i] && WIFEXITED(x->rstatus[j]) &&
          WEXITSTATUS(x->rstatus[j]) == 10 + i)
        seen++;
    assert_int_equal(seen, 1);
  }
}

static void test_any_child_three_at_once(void **state) {
  (void)state;
  struct cw x;
  memset(&x, 0, sizeof(x));
  rx_child_init(&x.w, cw_cb, 0, 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  pid_t pids[3];
  spawn_zombies(pids, 3);
  struct cw *ws[] = {&x};
  run_until_calls(ws, 1, (int[]){3});
  assert_reports(&x, pids, 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(waitpid(pids[i], NULL, WNOHANG), -1); /* all reaped */
  assert_int_equal(rx_child_stop(rxt.loop, &x.w), 0);
}

/* Two pid 0 watchers, of different priorities: both hear of every child. */
static void test_two_any_watchers_three_at_once(void **state) {
  (void)state;
  struct cw x, y;
  memset(&x, 0, sizeof(x));
  memset(&y, 0, sizeof(y));
  rx_child_init(&x.w, cw_cb, 0, 0);
  rx_child_init(&y.w, cw_cb, 0, 0);
  assert_int_equal(rx_child_set_priority(&y.w, RX_MINPRI), 0);
  assert_int_equal(rx_child_start(rxt.loop, &x.w), 0);
  assert_int_equal(rx_child_start(rxt.loop, &y.w), 0);
  pid_t pids[3];
  spawn_zombies(pids, 3);
  struct cw *ws[] = {&x, &y};
  run_until_calls(ws, 2, (int[]){3, 3});
  assert_reports(&x, pids, 3);
  assert_reports(&y, pids, 3);
  assert_int_equal(rx_child_stop(rxt.loop, &x.w), 0);
  assert_int_equal(rx_child_stop(rxt.loop, &y.w), 0);
}

/* A pid 0 watcher and a watcher of each pid (pidfds, or SIGCHLD where
 * pidfd_open is refused): each of those hears of its child once, the pid 0
 * watcher of all three, whichever path reaped them. */
static void test_any_and_pid_watchers_three_at_once(void **state) {
  (void)state;
  struct cw any, one[3];
  memset(&any, 0, sizeof(any));
  memset(one, 0, sizeof(one));
  rx_child_init(&any.w, cw_cb, 0, 0);
  assert_int_equal(rx_child_set_priority(&any.w, RX_MINPRI), 0);
  assert_int_equal(rx_child_start(rxt.loop, &any.w), 0);
  pid_t pids[3];
  for (int i = 0; i < 3; i++) {
    /* Started before the exit, so that a pidfd is open for it. */
    pids[i] = spawn_exit(10 + i, RX_MSEC(30));
    rx_child_init(&one[i].w, cw_cb, pids[i], 0);
    assert_int_equal(rx_child_start(rxt.loop, &one[i].w), 0);
  }
  for (int i = 0; i < 3; i++) {
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)pids[i], &si, WEXITED | WNOWAIT), 0);
  }
  struct cw *ws[] = {&any, &one[0], &one[1], &one[2]};
  run_until_calls(ws, 4, (int[]){3, 1, 1, 1});
  assert_reports(&any, pids, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(one[i].calls, 1);
    assert_int_equal(one[i].rpid[0], pids[i]);
    assert_int_equal(WEXITSTATUS(one[i].rstatus[0]), 10 + i);
    assert_false(rx_is_active(&one[i].w));
  }
  assert_int_equal(rx_child_stop(rxt.loop, &any.w), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_exit_status),
      RXT_TEST(test_killed),
      RXT_TEST(test_trace_stop_continue),
      RXT_TEST(test_any_child),
      RXT_TEST(test_exited_before_start),
      RXT_TEST(test_bad_input),
      RXT_TEST(test_any_child_three_at_once),
      RXT_TEST(test_two_any_watchers_three_at_once),
      RXT_TEST(test_any_and_pid_watchers_three_at_once),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-child [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
