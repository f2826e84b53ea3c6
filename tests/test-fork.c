/*
 * test-fork.c - rx_loop_fork(), RX_LOOP_FORKCHECK and fork watchers
 * (reactor/loop.c, each backend's fork op), on the backend $RX_BACKEND
 * names: a forked child keeps serving an io watcher and a timer of the loop
 * it inherited, and the parent's loop is unharmed.
 */
#include "helpers.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

struct state {
  rx_io io;
  rx_timer timer;
  rx_fork fork;
  int served;
  int ticks;
  int forks;
};

static void on_io(rx_loop *loop, rx_io *w, int revents) {
  struct state *st = w->data;
  (void)loop;
  (void)revents;
  char c;
  if (read(w->fd, &c, 1) == 1) {
    char reply = (char)(c + 1);
    if (write(w->fd, &reply, 1) == 1)
      st->served++;
  }
}

static void on_tick(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  ((struct state *)w->data)->ticks++;
}

static void on_fork(rx_loop *loop, rx_fork *w, int revents) {
  (void)loop;
  assert_int_equal(revents, RX_FORK);
  ((struct state *)w->data)->forks++;
}

/* The child's part: serve one request and a few ticks, then report by exit
 * status (no cmocka in the child: it must not print a second report). */
static void child(rx_loop *loop, struct state *st, int explicit_fork) {
  alarm(10); /* a hang in the child fails the test, not the suite */
  if (explicit_fork)
    rx_loop_fork(loop);
  st->served = st->ticks = st->forks = 0;
  int64_t end = rxt_clock() + RX_SEC(5);
  while ((st->served < 1 || st->ticks < 3) && rxt_clock() < end)
    if (rx_run(loop, RX_RUN_ONCE) < 0)
      _exit(3);
  if (st->served != 1 || st->ticks < 3)
    _exit(1);
  if (st->forks != 1)
    _exit(2);
  _exit(0);
}

static void run_fork(struct rx_loop_options *opts, int explicit_fork) {
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, opts), 0);
  int sv[2];
  rxt_pair(sv);
  static struct state st;
  memset(&st, 0, sizeof(st));
  rx_io_init(&st.io, on_io, sv[0], RX_READ);
  st.io.data = &st;
  rx_timer_init(&st.timer, on_tick, RX_MSEC(10), RX_MSEC(10));
  st.timer.data = &st;
  rx_fork_init(&st.fork, on_fork);
  st.fork.data = &st;
  rx_io_start(loop, &st.io);
  rx_timer_start(loop, &st.timer);
  rx_fork_start(loop, &st.fork);
  /* The parent runs first: polls armed, the ring enabled. */
  while (st.ticks < 2)
    rx_run(loop, RX_RUN_ONCE);
  assert_int_equal(st.forks, 0);

  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    child(loop, &st, explicit_fork);

  /* The parent lets the child serve sv[0] and keeps its timer. */
  rx_io_stop(loop, &st.io);
  char c = 'a', reply = 0;
  assert_int_equal(write(sv[1], &c, 1), 1);
  struct pollfd p = {sv[1], POLLIN, 0};
  assert_int_equal(poll(&p, 1, 5000), 1);
  assert_int_equal(read(sv[1], &reply, 1), 1);
  assert_int_equal(reply, 'b');
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* The parent's loop is unharmed: its timer still ticks, no fork seen. */
  int before = st.ticks;
  while (st.ticks < before + 2)
    rx_run(loop, RX_RUN_ONCE);
  assert_int_equal(st.forks, 0);
  rx_timer_stop(loop, &st.timer);
  rx_fork_stop(loop, &st.fork);
  rx_loop_free(loop);
  rxt_close_pair(sv);
}

static void test_fork_explicit(void **state) {
  (void)state;
  run_fork(NULL, 1);
}

static void test_forkcheck(void **state) {
  (void)state;
  struct rx_loop_options o = {.flags = RX_LOOP_FORKCHECK};
  run_fork(&o, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST_NOLOOP(test_fork_explicit),
      RXT_TEST_NOLOOP(test_forkcheck),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-fork [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
