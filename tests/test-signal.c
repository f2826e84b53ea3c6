/*
 * test-signal.c - reactor/signal.c: signal watchers on the backend
 * $RX_BACKEND names: delivery with kill(), from another thread, to a
 * sleeping loop; one loop per signal; dispositions put back; feeding.
 */
#include "helpers.h"

#include <pthread.h>
#include <signal.h>

struct sw {
  rx_signal w;
  int calls;
  int last;
  int stop; /* stop in the callback */
};

static void sw_cb(rx_loop *loop, rx_signal *w, int revents) {
  struct sw *x = (struct sw *)w;
  x->calls++;
  x->last = revents;
  if (x->stop)
    assert_int_equal(rx_signal_stop(loop, w), 0);
}

static void sw_init(struct sw *x, int signum) {
  memset(x, 0, sizeof(*x));
  rx_signal_init(&x->w, sw_cb, signum);
}

static void test_kill_wakes_sleeping_loop(void **state) {
  (void)state;
  struct sw x;
  sw_init(&x, SIGUSR1);
  x.stop = 1;
  assert_int_equal(rx_signal_start(rxt.loop, &x.w), 0);
  assert_true(rx_is_active(&x.w));
  assert_int_equal(kill(getpid(), SIGUSR1), 0);
  /* Only the signal watcher: the run returns once it has stopped itself. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.last, RX_SIGNAL);
}

static void *kill_later(void *arg) {
  (void)arg;
  rxt_sleep_ns(RX_MSEC(30)); /* the loop is asleep by then */
  kill(getpid(), SIGUSR2);
  return NULL;
}

static void test_signal_from_another_thread(void **state) {
  (void)state;
  struct sw x;
  sw_init(&x, SIGUSR2);
  x.stop = 1;
  assert_int_equal(rx_signal_start(rxt.loop, &x.w), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, kill_later, NULL), 0);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  pthread_join(th, NULL);
  assert_int_equal(x.calls, 1);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(10));
}

static void test_two_watchers_one_signal(void **state) {
  (void)state;
  struct sw a, b;
  sw_init(&a, SIGUSR1);
  sw_init(&b, SIGUSR1);
  rx_signal_start(rxt.loop, &a.w);
  rx_signal_start(rxt.loop, &b.w);
  kill(getpid(), SIGUSR1);
  assert_true(rxt_run_until(rxt.loop, &a.calls, RX_SEC(5)));
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  /* Stopping one keeps the handler for the other. */
  rx_signal_stop(rxt.loop, &a.w);
  b.calls = 0;
  kill(getpid(), SIGUSR1);
  assert_true(rxt_run_until(rxt.loop, &b.calls, RX_SEC(5)));
  rxt_assert_eq(b.calls, 1);
  assert_int_equal(a.calls, 1);
  rx_signal_stop(rxt.loop, &b.w);
}

static void test_one_loop_per_signal(void **state) {
  (void)state;
  rx_loop *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  struct sw a, b;
  sw_init(&a, SIGUSR1);
  sw_init(&b, SIGUSR1);
  assert_int_equal(rx_signal_start(rxt.loop, &a.w), 0);
  assert_int_equal(rx_signal_start(other, &b.w), -EBUSY);
  assert_false(rx_is_active(&b.w));
  /* The same watcher on another loop. */
  assert_int_equal(rx_signal_start(other, &a.w), -EBUSY);
  assert_int_equal(rx_signal_stop(other, &a.w), -EBUSY);
  assert_int_equal(rx_signal_stop(rxt.loop, &a.w), 0);
  assert_int_equal(rx_signal_start(other, &b.w), 0);
  assert_int_equal(rx_signal_stop(other, &b.w), 0);
  rx_loop_free(other);
}

static int custom_calls;
static void custom_handler(int sig) {
  (void)sig;
  custom_calls++;
}

/* The disposition that was there before the first start comes back after
 * the last stop, and after rx_loop_free() of a loop that still watched. */
static void test_disposition_restored(void **state) {
  (void)state;
  struct sigaction mine, old, now;
  memset(&mine, 0, sizeof(mine));
  mine.sa_handler = custom_handler;
  sigemptyset(&mine.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &mine, &old), 0);

  struct sw x;
  sw_init(&x, SIGUSR1);
  rx_signal_start(rxt.loop, &x.w);
  sigaction(SIGUSR1, NULL, &now);
  assert_true(now.sa_handler != custom_handler); /* rx's while watched */
  kill(getpid(), SIGUSR1);
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  assert_int_equal(custom_calls, 0);
  rx_signal_stop(rxt.loop, &x.w);
  sigaction(SIGUSR1, NULL, &now);
  assert_true(now.sa_handler == custom_handler);
  kill(getpid(), SIGUSR1);
  assert_int_equal(custom_calls, 1);

  rx_loop *other;
  assert_int_equal(rx_loop_new(&other, NULL), 0);
  rx_signal_start(other, &x.w);
  rx_loop_free(other); /* leaves it stopped, and the handler restored */
  assert_false(rx_is_active(&x.w));
  sigaction(SIGUSR1, NULL, &now);
  assert_true(now.sa_handler == custom_handler);

  sigaction(SIGUSR1, &old, NULL);
}

static void test_feed_and_bad_input(void **state) {
  (void)state;
  struct sw x;
  sw_init(&x, SIGKILL);
  assert_int_equal(rx_signal_start(rxt.loop, &x.w), -EINVAL);
  sw_init(&x, SIGSTOP);
  assert_int_equal(rx_signal_start(rxt.loop, &x.w), -EINVAL);
  sw_init(&x, 0);
  assert_int_equal(rx_signal_start(rxt.loop, &x.w), -EINVAL);
  sw_init(&x, 65);
  assert_int_equal(rx_signal_start(rxt.loop, &x.w), -EINVAL);
  assert_int_equal(rx_signal_start(NULL, &x.w), -EINVAL);
  assert_int_equal(rx_feed_signal_event(rxt.loop, 0), -EINVAL);
  assert_int_equal(rx_feed_signal_event(rxt.loop, 65), -EINVAL);
  assert_int_equal(rx_feed_signal_event(NULL, SIGUSR1), -EINVAL);

  sw_init(&x, SIGUSR2);
  rx_signal_start(rxt.loop, &x.w);
  /* Fed twice before the loop runs: one pending callback. */
  assert_int_equal(rx_feed_signal_event(rxt.loop, SIGUSR2), 0);
  assert_int_equal(rx_feed_signal_event(rxt.loop, SIGUSR2), 0);
  assert_true(rx_is_pending(&x.w));
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.last, RX_SIGNAL);
  /* A pending signal is cleared by stop. */
  rx_feed_signal_event(rxt.loop, SIGUSR2);
  rx_signal_stop(rxt.loop, &x.w);
  assert_false(rx_is_pending(&x.w));
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(x.calls, 1);
  /* A signal nobody watches: nothing to feed, no error. */
  assert_int_equal(rx_feed_signal_event(rxt.loop, SIGUSR2), 0);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(x.calls, 1);
}

/* Signals raised while the loop is busy are not lost: after a burst, at
 * least one callback runs (the kernel itself may merge a burst of one
 * standard signal into one delivery). */
static void test_burst(void **state) {
  (void)state;
  struct sw x;
  sw_init(&x, SIGUSR1);
  rx_signal_start(rxt.loop, &x.w);
  for (int i = 0; i < 50; i++)
    kill(getpid(), SIGUSR1);
  assert_true(rxt_run_until(rxt.loop, &x.calls, RX_SEC(5)));
  rxt_assert_ge(x.calls, 1);
  rxt_assert_le(x.calls, 50);
  rx_signal_stop(rxt.loop, &x.w);
}

static void test_feed_signal(void **state) {
  (void)state;
  rx_signal s;
  struct rxt_rec rec = {0};
  rx_signal_init(&s, rxt_rec_signal_cb, SIGURG);
  s.data = &rec;
  assert_int_equal(rx_feed_signal(0), -EINVAL);
  assert_int_equal(rx_feed_signal(65), -EINVAL);
  assert_int_equal(rx_feed_signal(SIGURG), 0); /* nobody watches: nothing */
  assert_int_equal(rx_signal_start(rxt.loop, &s), 0);
  assert_int_equal(rx_feed_signal(SIGURG), 0);
  assert_true(rxt_run_until(rxt.loop, &rec.calls, RX_SEC(5)));
  assert_int_equal(rec.calls, 1);
  assert_int_equal(rec.all_revents, RX_SIGNAL); /* every call's */
  rx_signal_stop(rxt.loop, &s);
}

/* ---------------------------------------------------------------------------
 * Loops freed under a storm of their own signal: the handler, running on
 * another thread, must never reach a loop that rx_loop_free() has freed or
 * is freeing (under ASan, a use after free shows at once).
 */

#define STORM_SIGNAL SIGUSR2
#define STORM_LOOPS 300
#define STORM_THREADS 4

static int storm_stop;

static void storm_ignore(int signum) {
  (void)signum;
}

/* Sends the signal to its own thread, so that the handler runs here, in
 * parallel with the loop's thread, as it does for a process-directed
 * signal that the kernel hands to whichever thread is running; and feeds
 * it with rx_feed_signal(), the same handler called outside a signal,
 * where the scheduler may preempt it at any instruction, which makes the
 * window between its look at the owner and its use of the loop wide. */
static void *storm(void *arg) {
  (void)arg;
  /* Relaxed: a flag that only ends the loop; nothing is published by it. */
  while (!__atomic_load_n(&storm_stop, __ATOMIC_RELAXED)) {
    pthread_kill(pthread_self(), STORM_SIGNAL);
    for (int i = 0; i < 1024; i++)
      rx_feed_signal(STORM_SIGNAL);
  }
  return NULL;
}

static void test_loops_freed_under_signal_storm(void **state) {
  (void)state;
  /* Between the loops the disposition is this one (rx restores it), not
   * the default, which would end the process. */
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = storm_ignore;
  sa.sa_flags = SA_RESTART;
  assert_int_equal(sigaction(STORM_SIGNAL, &sa, &old), 0);
  __atomic_store_n(&storm_stop, 0, __ATOMIC_RELAXED);
  /* More senders than CPUs: a handler is then often preempted. */
  pthread_t th[STORM_THREADS];
  for (int i = 0; i < STORM_THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, storm, NULL), 0);
  for (int i = 0; i < STORM_LOOPS; i++) {
    rx_loop *loop;
    assert_int_equal(rx_loop_new(&loop, NULL), 0);
    struct sw x;
    sw_init(&x, STORM_SIGNAL);
    assert_int_equal(rx_signal_start(loop, &x.w), 0);
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    /* Freed with the watcher active: rx_loop_free() gives the signal up. */
    rx_loop_free(loop);
  }
  __atomic_store_n(&storm_stop, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < STORM_THREADS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  assert_int_equal(sigaction(STORM_SIGNAL, &old, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_kill_wakes_sleeping_loop),
      RXT_TEST(test_signal_from_another_thread),
      RXT_TEST(test_two_watchers_one_signal),
      RXT_TEST(test_one_loop_per_signal),
      RXT_TEST(test_disposition_restored),
      RXT_TEST(test_feed_and_bad_input),
      RXT_TEST(test_burst),
      RXT_TEST(test_feed_signal),
      RXT_TEST_NOLOOP(test_loops_freed_under_signal_storm),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-signal [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
