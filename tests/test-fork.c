/*
 * test-fork.c - rx_loop_fork(), RX_LOOP_FORKCHECK and fork watchers
 * (reactor/loop.c, each backend's fork op), on the backend $RX_BACKEND
 * names: a forked child keeps serving an io watcher and a timer of the loop
 * it inherited, and the parent's loop is unharmed.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
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

/* ---------------------------------------------------------------------------
 * A child with no fd to spare. The rebuild after a fork needs new fds (the
 * doorbell's eventfd, the ring or the epoll set); it closes the inherited
 * ones first, so a child whose table is full still gets their numbers
 * back, but a child whose RLIMIT_NOFILE is below them gets none. Then every
 * rx_run() and rx_loop_fd() tries again and returns the error, nothing runs
 * and nothing of the parent's is touched (the ring is not even mapped in
 * the child), watchers and posts are queued; once an fd is free, the next
 * iteration rebuilds and everything works. Each round forks one child and
 * takes the fds away in one of three ways, so that each step of the
 * rebuild fails in some round.
 */

/* In a child: a crash kills it, for the parent to see, instead of landing
 * in cmocka's handler, which would go on with the next test there. */
static void die_on_crash(void) {
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
    signal(fatal[i], SIG_DFL);
}

enum scarcity {
  TABLE_FULL, /* every number below the limit taken, the loop's fds too */
  NONE_SPARE, /* the limit below the loop's fds, every number under it taken */
  ONE_SPARE,  /* the same with one number free: the doorbell gets it, the
                 backend fails */
};

#define SCARCE_ROUNDS 60

struct scarce {
  rx_io in;  /* a pipe's read end, armed in the parent before the fork */
  rx_io out; /* its write end, started in the child while the rebuild fails */
  rx_timer timer;
  rx_fork fork;
  rx_task task;
  int reads, writes, ticks, forks, tasks;
};

static void scarce_read(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  (void)revents;
  struct scarce *s = w->data;
  char c;
  if (read(w->fd, &c, 1) == 1)
    s->reads++;
}

static void scarce_write(rx_loop *loop, rx_io *w, int revents) {
  struct scarce *s = w->data;
  if (revents & RX_WRITE)
    s->writes++;
  rx_io_stop(loop, w);
}

static void scarce_tick(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  ((struct scarce *)w->data)->ticks++;
}

static void scarce_forked(rx_loop *loop, rx_fork *w, int revents) {
  (void)loop;
  if (revents == RX_FORK)
    ((struct scarce *)w->data)->forks++;
}

static void scarce_task(rx_loop *loop, rx_task *task) {
  (void)loop;
  ((struct scarce *)task->data)->tasks++;
}

/* The child of round `round`: no fd left, runs that fail, fds back, runs
 * that work. Reports by exit status: 0, or the number of the check that
 * failed. `hole` is the lowest fd number that was free when the loop was
 * made: the loop's own fds are above it. */
static void scarce_child(rx_loop *loop, struct scarce *s, int explicit_fork,
                         enum scarcity how, int round, int hole,
                         const int pipefd[2]) {
  alarm(10); /* a hang fails the round, not the suite */
  die_on_crash();
  struct rlimit saved, low;
  if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
    _exit(10);
  low = saved;
  if (how == TABLE_FULL)
    low.rlim_cur = saved.rlim_cur < 256 ? saved.rlim_cur : 256;
  else
    low.rlim_cur = (rlim_t)hole + 1;
  if (setrlimit(RLIMIT_NOFILE, &low) != 0)
    _exit(11);
  int taken[256], ntaken = 0, fd;
  while (ntaken < 256 && (fd = dup(2)) >= 0)
    taken[ntaken++] = fd;
  if (ntaken == 256 || errno != EMFILE)
    _exit(12);
  if (how == ONE_SPARE)
    close(hole);

  s->reads = s->writes = s->ticks = s->forks = s->tasks = 0;
  if (explicit_fork)
    rx_loop_fork(loop);
  if (how == TABLE_FULL && rx_io_start(loop, &s->out) != 0)
    _exit(13);
  /* Due, but nothing may fire before the rebuild. */
  rx_clock_advance(loop, RX_MSEC(2));
  if (write(pipefd[1], "x", 1) != 1)
    _exit(13);
  if (how == TABLE_FULL) {
    /* The rebuild reuses the numbers it frees. */
    if (rx_run(loop, RX_RUN_NOWAIT) < 0)
      _exit(14);
    if (s->forks != 1)
      _exit(15);
  } else {
    for (int i = 0; i <= round % 3; i++)
      if (rx_run(loop, RX_RUN_NOWAIT) != -EMFILE)
        _exit(16);
    if (rx_run(loop, RX_RUN_DEFAULT) != -EMFILE ||
        rx_run(loop, RX_RUN_ONCE) != -EMFILE)
      _exit(17);
    if (rx_loop_fd(loop) != -EMFILE)
      _exit(18);
    /* Queued meanwhile: a new watcher, a restart, a post. */
    if (rx_io_start(loop, &s->out) != 0 || rx_io_stop(loop, &s->in) != 0 ||
        rx_io_start(loop, &s->in) != 0 || rx_loop_post(loop, &s->task) != 0)
      _exit(19);
    if (s->forks != 0 || s->reads != 0 || s->ticks != 0 || s->tasks != 0)
      _exit(20);
    if (round % 5 == 4) {
      /* Given up on: freed without ever being rebuilt. */
      rx_loop_free(loop);
      _exit(0);
    }
  }

  /* Fds again. */
  if (setrlimit(RLIMIT_NOFILE, &saved) != 0)
    _exit(21);
  while (ntaken > 0)
    close(taken[--ntaken]);
  for (int i = 0; i < 5 && (s->reads < 1 || s->writes < 1 || s->ticks < 1 ||
                            (how != TABLE_FULL && s->tasks < 1));
       i++)
    if (rx_run(loop, RX_RUN_NOWAIT) < 0)
      _exit(23);
  if (s->forks != 1)
    _exit(24);
  if (s->reads != 1 || s->writes != 1 || s->ticks != 1)
    _exit(25);
  if (how != TABLE_FULL && s->tasks != 1)
    _exit(26);
  if (rx_loop_fd(loop) < 0)
    _exit(27);
  rx_loop_free(loop);
  _exit(0);
}

static void run_scarce(unsigned flags, int explicit_fork) {
  /* The lowest free number: the loop's fds and the pipes come after it. */
  int hole = dup(2);
  assert_true(hole >= 0);
  struct rx_loop_options o = {.flags = RX_LOOP_MANUAL_CLOCK | flags};
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, &o), 0);
  /* On io_uring, the ring's eventfd too. */
  assert_true(rx_loop_fd(loop) > hole);
  static struct scarce s;
  memset(&s, 0, sizeof(s));
  rx_timer_init(&s.timer, scarce_tick, RX_MSEC(1), 0);
  s.timer.data = &s;
  rx_fork_init(&s.fork, scarce_forked);
  s.fork.data = &s;
  s.task.fn = scarce_task;
  s.task.data = &s;
  rx_fork_start(loop, &s.fork);

  for (int round = 0; round < SCARCE_ROUNDS; round++) {
    enum scarcity how = (enum scarcity)(round % 3);
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    rx_io_init(&s.in, scarce_read, pipefd[0], RX_READ);
    s.in.data = &s;
    rx_io_init(&s.out, scarce_write, pipefd[1], RX_WRITE);
    s.out.data = &s;
    assert_int_equal(rx_io_start(loop, &s.in), 0);
    assert_int_equal(rx_timer_start(loop, &s.timer), 0);
    /* Armed in the kernel: the child inherits a registered watcher. */
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
      scarce_child(loop, &s, explicit_fork, how, round, hole, pipefd);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fail_msg("round %d (%s): the child %s %d", round,
               how == TABLE_FULL   ? "table full"
               : how == NONE_SPARE ? "no fd spare"
                                   : "one fd spare",
               WIFEXITED(status) ? "exited with" : "was killed by signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    rx_io_stop(loop, &s.in);
    rx_io_stop(loop, &s.out);
    close(pipefd[0]);
    close(pipefd[1]);
  }

  /* The parent's loop is unharmed: no fork seen, io and timers work. */
  int sv[2];
  rxt_pair(sv);
  rx_io_init(&s.in, scarce_read, sv[0], RX_READ);
  s.in.data = &s;
  rx_io_start(loop, &s.in);
  assert_int_equal(write(sv[1], "y", 1), 1);
  rx_clock_advance(loop, RX_MSEC(2));
  for (int i = 0; i < 100 && (s.reads < 1 || s.ticks < 1); i++)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(s.reads, 1);
  assert_int_equal(s.ticks, 1);
  assert_int_equal(s.forks, 0);
  rx_io_stop(loop, &s.in);
  rx_fork_stop(loop, &s.fork);
  rx_loop_free(loop);
  rxt_close_pair(sv);
  close(hole);
}

static void test_fork_no_fd(void **state) {
  (void)state;
  run_scarce(0, 1);
}

static void test_forkcheck_no_fd(void **state) {
  (void)state;
  run_scarce(RX_LOOP_FORKCHECK, 0);
}

/* A fork inside a callback of a RX_LOOP_FORKCHECK loop: the child goes on
 * from the callback and returns from rx_run() before any iteration has
 * noticed the fork. That return must not flush the parent's ring, which is
 * not mapped in the child; the next rx_run() rebuilds. */
struct cbfork {
  rx_idle idle;
  rx_fork fork;
  rx_timer timer;
  pid_t pid;
  int forks, ticks;
};

static void cbfork_idle(rx_loop *loop, rx_idle *w, int revents) {
  (void)revents;
  struct cbfork *c = w->data;
  rx_idle_stop(loop, w);
  c->pid = fork();
  if (c->pid == 0) {
    alarm(10);
    die_on_crash();
  }
}

static void cbfork_forked(rx_loop *loop, rx_fork *w, int revents) {
  (void)loop;
  if (revents == RX_FORK)
    ((struct cbfork *)w->data)->forks++;
}

static void cbfork_tick(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  ((struct cbfork *)w->data)->ticks++;
}

static void test_forkcheck_in_callback(void **state) {
  (void)state;
  struct rx_loop_options o = {.flags = RX_LOOP_FORKCHECK |
                                       RX_LOOP_MANUAL_CLOCK};
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, &o), 0);
  static struct cbfork c;
  memset(&c, 0, sizeof(c));
  c.pid = -2;
  rx_idle_init(&c.idle, cbfork_idle);
  c.idle.data = &c;
  rx_fork_init(&c.fork, cbfork_forked);
  c.fork.data = &c;
  rx_timer_init(&c.timer, cbfork_tick, RX_MSEC(1), 0);
  c.timer.data = &c;
  rx_fork_start(loop, &c.fork);
  rx_timer_start(loop, &c.timer);
  /* One iteration first, so that the ring is in use. */
  assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  rx_idle_start(loop, &c.idle);
  int rc = rx_run(loop, RX_RUN_NOWAIT);
  if (c.pid == 0) {
    if (rc < 0 || c.forks != 0)
      _exit(1);
    rx_clock_advance(loop, RX_MSEC(2));
    if (rx_run(loop, RX_RUN_NOWAIT) < 0 || c.forks != 1 || c.ticks != 1)
      _exit(2);
    _exit(0);
  }
  assert_true(rc >= 0);
  assert_true(c.pid > 0);
  int status;
  assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the child %s %d",
             WIFEXITED(status) ? "exited with" : "was killed by signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  assert_int_equal(c.forks, 0);
  rx_timer_stop(loop, &c.timer);
  rx_fork_stop(loop, &c.fork);
  rx_loop_free(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST_NOLOOP(test_fork_explicit),
      RXT_TEST_NOLOOP(test_forkcheck),
      RXT_TEST_NOLOOP(test_fork_no_fd),
      RXT_TEST_NOLOOP(test_forkcheck_no_fd),
      RXT_TEST_NOLOOP(test_forkcheck_in_callback),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-fork [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
