/*
 * test-api.c - tests the public header rx.h as a user sees it: watcher
 * sizes, the generic rx_is_active / rx_is_pending on every watcher type,
 * the constants, -EINVAL for the NULL arguments the header documents, and
 * integer times through the macros that check time arguments.
 * Uses only rx.h (no internal.h).
 */
#include "helpers.h"

#include <limits.h>
#include <signal.h>
#include <sys/wait.h>

/* ---------------------------------------------------------------------------
 * Sizes: no larger than libev's (ev_io and ev_timer are 48 bytes on x86_64).
 */
static void test_sizes(void **state) {
  (void)state;
#if defined(__x86_64__)
  assert_true(sizeof(rx_io) <= 48);
  assert_true(sizeof(rx_timer) <= 56);
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

#define RECORD(selfp, otherp)                     \
  do {                                            \
    if (seen.calls++ == 0) {                      \
      seen.self = (void *)(selfp);                \
      seen.self_active = rx_is_active(selfp);     \
      seen.self_pending = rx_is_pending(selfp);   \
      seen.other_pending = rx_is_pending(otherp); \
    }                                             \
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
  snprintf(parts, sizeof(parts), "%d.%d.%d", RX_VERSION_MAJOR, RX_VERSION_MINOR,
           RX_VERSION_PATCH);
  assert_string_equal(parts, RXT_PROJECT_VERSION);
}

/* ---------------------------------------------------------------------------
 * NULL for every pointer argument of every function of rx.h: never a crash.
 * A void function does nothing, a getter returns the value its doc line
 * gives, everything else -EINVAL. Each call runs in a child process with a
 * loop of its own, so that one crash does not hide the next: the test lists
 * every call that crashed or returned something else.
 */
static rx_loop *L; /* the child's loop */
static rx_io n_io;
static rx_timer n_timer;
static rx_idle n_idle;
static rx_prepare n_prepare;
static rx_check n_check;
static rx_signal n_signal;
static rx_periodic n_periodic;
static rx_embed n_embed;
static rx_child n_child;
static rx_stat n_stat;
static rx_fork n_fork;
static rx_cleanup n_cleanup;
static rx_async n_async;
static rx_task n_task;

static void n_task_fn(rx_loop *loop, rx_task *task) {
  (void)loop;
  (void)task;
}
static void n_invoke(rx_loop *loop) {
  (void)loop;
}

/* Any return value is fine for a void function. */
#define ANY LLONG_MIN
#define V(call) ((call), 0)
#define P(call) ((intptr_t)(call))

/* The start, stop and priority functions of a watcher type. */
#define WATCHER_NULLS(X, t)                             \
  X(t##_start_l, rx_##t##_start(NULL, &n_##t), -EINVAL) \
  X(t##_start_w, rx_##t##_start(L, NULL), -EINVAL)      \
  X(t##_stop_l, rx_##t##_stop(NULL, &n_##t), -EINVAL)   \
  X(t##_stop_w, rx_##t##_stop(L, NULL), -EINVAL)        \
  X(t##_prio, rx_##t##_set_priority(NULL, 0), -EINVAL)

#define NULL_CALLS(X)                                                   \
  X(loop_new, rx_loop_new(NULL, NULL), -EINVAL)                         \
  X(loop_free, rx_loop_free(NULL), -EINVAL)                             \
  X(run, rx_run(NULL, RX_RUN_NOWAIT), -EINVAL)                          \
  X(break_, V(rx_break(NULL, RX_BREAK_ALL)), ANY)                       \
  X(now, rx_now(NULL), 0)                                               \
  X(now_update, V(rx_now_update(NULL)), ANY)                            \
  X(ref, V(rx_ref(NULL)), ANY)                                          \
  X(unref, V(rx_unref(NULL)), ANY)                                      \
  X(iteration, rx_iteration(NULL), 0)                                   \
  X(depth, rx_depth(NULL), 0)                                           \
  X(pending_count, rx_pending_count(NULL), 0)                           \
  X(set_data, V(rx_loop_set_data(NULL, &n_io)), ANY)                    \
  X(data, P(rx_loop_data(NULL)), 0)                                     \
  X(backend_name, P(rx_backend_name(NULL)), 0)                          \
  X(backend_reason, P(rx_backend_reason(NULL)), 0)                      \
  X(loop_fork, V(rx_loop_fork(NULL)), ANY)                              \
  X(clock_advance, rx_clock_advance(NULL, 1), -EINVAL)                  \
  X(suspend, V(rx_suspend(NULL)), ANY)                                  \
  X(resume, V(rx_resume(NULL)), ANY)                                    \
  X(io_collect, rx_set_io_collect_interval(NULL, 0), -EINVAL)           \
  X(timeout_collect, rx_set_timeout_collect_interval(NULL, 0), -EINVAL) \
  X(busy_poll, rx_set_busy_poll(NULL, 0), -EINVAL)                      \
  X(set_invoke, V(rx_set_invoke_pending(NULL, n_invoke)), ANY)          \
  X(invoke, V(rx_invoke_pending(NULL)), ANY)                            \
  X(feed_fd, rx_feed_fd_event(NULL, 0, RX_READ), -EINVAL)               \
  X(verify_l, rx_verify(NULL, NULL), -EINVAL)                           \
  X(verify_what, rx_verify(L, NULL), 0)                                 \
  X(metrics_l, rx_loop_metrics(NULL, &(struct rx_metrics){0}), -EINVAL) \
  X(metrics_m, rx_loop_metrics(L, NULL), -EINVAL)                       \
  X(loop_fd, rx_loop_fd(NULL), -EINVAL)                                 \
  X(loop_timeout, rx_loop_timeout(NULL, &(int64_t){0}), -EINVAL)        \
  X(loop_timeout_t, rx_loop_timeout(L, NULL), -EINVAL)                  \
  X(io_init, V(rx_io_init(NULL, NULL, 0, RX_READ)), ANY)                \
  X(io_set, rx_io_set(NULL, 0, RX_READ), -EINVAL)                       \
  X(io_close, rx_io_close(NULL, -1), -EINVAL)                           \
  X(io_events, rx_io_events(NULL), 0)                                   \
  WATCHER_NULLS(X, io)                                                  \
  X(timer_init, V(rx_timer_init(NULL, NULL, 0, 0)), ANY)                \
  X(timer_set, rx_timer_set(NULL, 0, 0), -EINVAL)                       \
  WATCHER_NULLS(X, timer)                                               \
  X(timer_again_l, rx_timer_again(NULL, &n_timer), -EINVAL)             \
  X(timer_again_w, rx_timer_again(L, NULL), -EINVAL)                    \
  X(timer_remaining_l, rx_timer_remaining(NULL, &n_timer), 0)           \
  X(timer_remaining_w, rx_timer_remaining(L, NULL), 0)                  \
  X(idle_init, V(rx_idle_init(NULL, NULL)), ANY)                        \
  WATCHER_NULLS(X, idle)                                                \
  X(prepare_init, V(rx_prepare_init(NULL, NULL)), ANY)                  \
  WATCHER_NULLS(X, prepare)                                             \
  X(check_init, V(rx_check_init(NULL, NULL)), ANY)                      \
  WATCHER_NULLS(X, check)                                               \
  X(signal_init, V(rx_signal_init(NULL, NULL, SIGUSR1)), ANY)           \
  WATCHER_NULLS(X, signal)                                              \
  X(feed_signal_event, rx_feed_signal_event(NULL, SIGUSR1), -EINVAL)    \
  X(periodic_init, V(rx_periodic_init(NULL, NULL, 0, 0, NULL)), ANY)    \
  WATCHER_NULLS(X, periodic)                                            \
  X(periodic_again_l, rx_periodic_again(NULL, &n_periodic), -EINVAL)    \
  X(periodic_again_w, rx_periodic_again(L, NULL), -EINVAL)              \
  X(wallclock, rx_wallclock(NULL), 0)                                   \
  X(embed_init, V(rx_embed_init(NULL, NULL, NULL)), ANY)                \
  WATCHER_NULLS(X, embed)                                               \
  X(embed_sweep_l, V(rx_embed_sweep(NULL, &n_embed)), ANY)              \
  X(embed_sweep_w, V(rx_embed_sweep(L, NULL)), ANY)                     \
  X(child_init, V(rx_child_init(NULL, NULL, 0, 0)), ANY)                \
  WATCHER_NULLS(X, child)                                               \
  X(stat_init, V(rx_stat_init(NULL, NULL, "/", 0)), ANY)                \
  WATCHER_NULLS(X, stat)                                                \
  X(stat_stat_l, rx_stat_stat(NULL, &n_stat), -EINVAL)                  \
  X(stat_stat_w, rx_stat_stat(L, NULL), -EINVAL)                        \
  X(fork_init, V(rx_fork_init(NULL, NULL)), ANY)                        \
  WATCHER_NULLS(X, fork)                                                \
  X(cleanup_init, V(rx_cleanup_init(NULL, NULL)), ANY)                  \
  WATCHER_NULLS(X, cleanup)                                             \
  X(feed_head_l, rx_feed_event_head(NULL, &n_idle, RX_CUSTOM), -EINVAL) \
  X(feed_head_w, rx_feed_event_head(L, NULL, RX_CUSTOM), -EINVAL)       \
  X(feed_timer_l, rx_feed_event_timer(NULL, &n_timer, 0), -EINVAL)      \
  X(feed_timer_w, rx_feed_event_timer(L, NULL, 0), -EINVAL)             \
  X(clear_head_l, rx_clear_pending_head(NULL, &n_idle), -EINVAL)        \
  X(clear_head_w, rx_clear_pending_head(L, NULL), -EINVAL)              \
  X(clear_timer_l, rx_clear_pending_timer(NULL, &n_timer), -EINVAL)     \
  X(clear_timer_w, rx_clear_pending_timer(L, NULL), -EINVAL)            \
  X(async_init, V(rx_async_init(NULL, NULL)), ANY)                      \
  WATCHER_NULLS(X, async)                                               \
  X(async_send_l, rx_async_send(NULL, &n_async), -EINVAL)               \
  X(async_send_w, rx_async_send(L, NULL), -EINVAL)                      \
  X(async_pending, rx_async_pending(NULL), 0)                           \
  X(post_l, rx_loop_post(NULL, &n_task), -EINVAL)                       \
  X(post_t, rx_loop_post(L, NULL), -EINVAL)                             \
  X(post_from_f, rx_loop_post_from(NULL, L, &n_task), -EINVAL)          \
  X(post_from_l, rx_loop_post_from(L, NULL, &n_task), -EINVAL)          \
  X(post_from_t, rx_loop_post_from(L, L, NULL), -EINVAL)                \
  X(is_active_io, rx_is_active((rx_io *)NULL), 0)                       \
  X(is_active_timer, rx_is_active((rx_timer *)NULL), 0)                 \
  X(is_pending_io, rx_is_pending((rx_io *)NULL), 0)                     \
  X(is_pending_timer, rx_is_pending((rx_timer *)NULL), 0)               \
  X(priority_io, rx_priority((rx_io *)NULL), 0)                         \
  X(priority_timer, rx_priority((rx_timer *)NULL), 0)

#define NULL_CALL_FN(id, call, want) \
  static long long null_##id(void) { \
    return (long long)(call);        \
  }
NULL_CALLS(NULL_CALL_FN)

static const struct null_call {
  const char *text;
  long long (*fn)(void);
  long long want;
} null_calls[] = {
#define NULL_CALL_ROW(id, call, want) {#call, null_##id, (long long)(want)},
    NULL_CALLS(NULL_CALL_ROW)};

static void null_child(const struct null_call *c) {
  /* cmocka's handlers would carry on with the test in the child. */
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
    signal(fatal[i], SIG_DFL);
  if (rx_loop_new(&L, NULL) != 0)
    _exit(3);
  rx_io_init(&n_io, NULL, 0, RX_READ);
  rx_timer_init(&n_timer, NULL, 0, 0);
  rx_idle_init(&n_idle, NULL);
  rx_prepare_init(&n_prepare, NULL);
  rx_check_init(&n_check, NULL);
  rx_signal_init(&n_signal, NULL, SIGUSR1);
  rx_periodic_init(&n_periodic, NULL, 0, 0, NULL);
  rx_embed_init(&n_embed, NULL, NULL);
  rx_child_init(&n_child, NULL, 0, 0);
  rx_stat_init(&n_stat, NULL, "/", 0);
  rx_fork_init(&n_fork, NULL);
  rx_cleanup_init(&n_cleanup, NULL);
  rx_async_init(&n_async, NULL);
  n_task.fn = n_task_fn;
  long long got = c->fn();
  if (c->want != ANY && got != c->want) {
    fprintf(stderr, "%s returned %lld, not %lld\n", c->text, got, c->want);
    _exit(1);
  }
  rx_loop_free(L);
  _exit(0);
}

static void test_null_every_function(void **state) {
  (void)state;
  size_t n = sizeof(null_calls) / sizeof(null_calls[0]), bad = 0;
  for (size_t i = 0; i < n; i++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
      null_child(&null_calls[i]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      print_error("%s: killed by signal %d\n", null_calls[i].text,
                  WTERMSIG(status));
      bad++;
    } else if (WEXITSTATUS(status) != 0) {
      bad++;
    }
  }
  print_message("%zu calls with NULL arguments, %zu wrong\n", n, bad);
  assert_int_equal(bad, 0);
}

/* rx_io_init with bits rx_io_set refuses: no part of the interest is kept,
 * and rx_io_start refuses the watcher, as rx_io_set would. */
static void test_io_init_unknown_bits(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  static const int bad[] = {RX_READ | RX_TIMER, RX_WRITE | 0x40000000,
                            RX_READ | RX_WRITE | RX_ERROR, -1};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rx_io io;
    rx_io_init(&io, io_cb, sv[0], bad[i]);
    assert_int_equal(rx_io_events(&io), 0);
    assert_int_equal(rx_io_start(rxt.loop, &io), -EINVAL);
    assert_false(rx_is_active(&io));
    assert_int_equal(rx_io_set(&io, sv[0], bad[i]), -EINVAL);
  }
  rx_io io;
  rx_io_init(&io, io_cb, sv[0], RX_READ | RX_ET);
  assert_int_equal(rx_io_events(&io), RX_READ | RX_ET);
  assert_int_equal(rx_io_start(rxt.loop, &io), 0);
  assert_int_equal(rx_io_stop(rxt.loop, &io), 0);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Time arguments through rx.h's checking macros: each reaches its function
 * with its value, whatever its integer type, is evaluated once, and the
 * functions can still be called through pointers. (That a floating-point
 * time does not compile is tests/time-guard.sh's test.)
 */
static int manual_clock_setup(void **state) {
  struct rx_loop_options o = {.flags = RX_LOOP_MANUAL_CLOCK};
  return rxt_setup_opts(state, &o);
}

static int evaluated;
/* `v`, counting the calls. */
static int64_t counted(int64_t v) {
  evaluated++;
  return v;
}

static void test_time_arguments_unchanged(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rx_timer t;
  evaluated = 0;
  rx_timer_init(&t, NULL, counted(RX_SEC(3)), counted(RX_MSEC(7)));
  assert_int_equal(evaluated, 2);
  rxt_assert_eq(rx_timer_remaining(loop, &t), RX_SEC(3));
  rxt_assert_eq(t.repeat, RX_MSEC(7));

  uint32_t u32 = UINT32_MAX;
  unsigned short us = 7;
  assert_int_equal(rx_timer_set(&t, u32, us), 0);
  rxt_assert_eq(rx_timer_remaining(loop, &t), UINT32_MAX);
  rxt_assert_eq(t.repeat, 7);
  struct {
    unsigned u : 5;
    int s : 4;
  } bf = {31, -1};
  assert_int_equal(rx_timer_set(&t, bf.u, bf.s), -EINVAL); /* -1 kept */
  assert_int_equal(rx_timer_set(&t, bf.u, 0), 0);
  rxt_assert_eq(rx_timer_remaining(loop, &t), 31);
  /* RX_SEC() converts its count first: 5.5 is 5 s, as rx.h says. */
  assert_int_equal(rx_timer_set(&t, RX_SEC(5.5), 0), 0);
  rxt_assert_eq(rx_timer_remaining(loop, &t), RX_SEC(5));

  rx_periodic p;
  evaluated = 0;
  rx_periodic_init(&p, NULL, counted(RX_SEC(60)), counted(RX_SEC(3600)), NULL);
  assert_int_equal(evaluated, 2);
  rxt_assert_eq(p.offset, RX_SEC(60));
  rxt_assert_eq(p.interval, RX_SEC(3600));

  rx_stat st;
  evaluated = 0;
  rx_stat_init(&st, NULL, "/", counted(u32));
  assert_int_equal(evaluated, 1);
  rxt_assert_eq(st.interval, UINT32_MAX);

  int64_t before = rx_now(loop);
  evaluated = 0;
  assert_int_equal(rx_clock_advance(loop, counted(RX_SEC(2))), 0);
  assert_int_equal(evaluated, 1);
  rxt_assert_eq(rx_now(loop) - before, RX_SEC(2));
  short minus_one = -1;
  assert_int_equal(rx_set_io_collect_interval(loop, counted(-1)), -EINVAL);
  assert_int_equal(rx_set_timeout_collect_interval(loop, minus_one), -EINVAL);
  assert_int_equal(rx_set_busy_poll(loop, counted(-1)), -EINVAL);
  assert_int_equal(evaluated, 3);
  assert_int_equal(rx_set_io_collect_interval(loop, 0), 0);
  assert_int_equal(rx_set_timeout_collect_interval(loop, 0), 0);
  assert_int_equal(rx_set_busy_poll(loop, RX_BUSY_POLL_DEFAULT), 0);

  void (*timer_init)(rx_timer *, rx_timer_cb, int64_t, int64_t) = rx_timer_init;
  int (*timer_set)(rx_timer *, int64_t, int64_t) = &rx_timer_set;
  int (*advance)(rx_loop *, int64_t) = rx_clock_advance;
  timer_init(&t, NULL, 11, 0);
  rxt_assert_eq(rx_timer_remaining(loop, &t), 11);
  assert_int_equal(timer_set(&t, 12, 1), 0);
  rxt_assert_eq(rx_timer_remaining(loop, &t), 12);
  before = rx_now(loop);
  assert_int_equal(advance(loop, RX_MSEC(1)), 0);
  rxt_assert_eq(rx_now(loop) - before, RX_MSEC(1));
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
      RXT_TEST_NOLOOP(test_null_every_function),
      RXT_TEST(test_io_init_unknown_bits),
      RXT_TEST_WITH(test_time_arguments_unchanged, manual_clock_setup),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-api [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
