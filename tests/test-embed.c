/*
 * test-embed.c - reactor/embed.c and rx_loop_fd/rx_loop_timeout (loop.c):
 * a loop driven from inside another loop, and from a foreign host loop
 * (plain poll(2) here), on the backend $RX_BACKEND names.
 */
#include "helpers.h"

#include <poll.h>
#include <pthread.h>

struct inner {
  rx_loop *loop;
  rx_io io;
  rx_timer timer;
  int io_calls;
  int timer_calls;
  int64_t timer_start;
  int64_t timer_fired;
};

static void inner_io(rx_loop *loop, rx_io *w, int revents) {
  struct inner *in = w->data;
  assert_true(revents & RX_READ);
  rxt_drain(w->fd);
  in->io_calls++;
  rx_io_stop(loop, w);
}

static void inner_timer(rx_loop *loop, rx_timer *w, int revents) {
  struct inner *in = w->data;
  (void)revents;
  rx_now_update(loop);
  in->timer_fired = rxt_clock();
  in->timer_calls++;
}

static void inner_setup(struct inner *in, int fd, int64_t after) {
  memset(in, 0, sizeof(*in));
  assert_int_equal(rxt_loop_new(&in->loop), 0);
  rx_io_init(&in->io, inner_io, fd, RX_READ);
  in->io.data = in;
  rx_timer_init(&in->timer, inner_timer, after, 0);
  in->timer.data = in;
  assert_int_equal(rx_io_start(in->loop, &in->io), 0);
  /* A timer counts from the loop's cached time: refresh it, and measure
   * from it. */
  rx_now_update(in->loop);
  in->timer_start = rx_now(in->loop);
  assert_int_equal(rx_timer_start(in->loop, &in->timer), 0);
}

/* With a NULL callback the embedded loop is swept automatically: its io
 * and its timer both run while only the outer loop is run. */
static void test_embed_sweeps(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct inner in;
  inner_setup(&in, sv[0], RX_MSEC(30));
  rx_embed e;
  rx_embed_init(&e, NULL, in.loop);
  assert_int_equal(rx_embed_start(rxt.loop, &e), 0);
  assert_true(rx_is_active(&e));
  rxt_send(sv[1], 'x');
  assert_true(rxt_run_until(rxt.loop, &in.io_calls, RX_SEC(5)));
  assert_int_equal(in.io_calls, 1);
  assert_true(rxt_run_until(rxt.loop, &in.timer_calls, RX_SEC(5)));
  assert_int_equal(in.timer_calls, 1);
  rxt_assert_ge(in.timer_fired - in.timer_start, RX_MSEC(30));
  assert_int_equal(rx_embed_stop(rxt.loop, &e), 0);
  assert_false(rx_is_active(&e));
  /* Stopped: the outer loop has nothing left and returns at once. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  rx_loop_free(in.loop);
  rxt_close_pair(sv);
}

struct outer_cb {
  int calls;
  int last;
};

static void embed_cb(rx_loop *loop, rx_embed *w, int revents) {
  struct outer_cb *c = w->data;
  c->calls++;
  c->last = revents;
  rx_embed_sweep(loop, w);
}

static void test_embed_callback(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct inner in;
  inner_setup(&in, sv[0], RX_SEC(60));
  struct outer_cb c = {0, 0};
  rx_embed e;
  rx_embed_init(&e, embed_cb, in.loop);
  e.data = &c;
  assert_int_equal(rx_embed_start(rxt.loop, &e), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(in.io_calls, 0);
  rxt_send(sv[1], 'y');
  assert_true(rxt_run_until(rxt.loop, &in.io_calls, RX_SEC(5)));
  rxt_assert_ge(c.calls, 1);
  assert_int_equal(c.last, RX_EMBED);
  rx_embed_stop(rxt.loop, &e);
  rx_timer_stop(in.loop, &in.timer);
  rx_loop_free(in.loop);
  rxt_close_pair(sv);
}

/* The embedded loop's timer firing again and again does not wear down the
 * embedding loop's active count: the embed watcher counts once, always. */
static void test_embed_active_count(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct inner in;
  inner_setup(&in, sv[0], RX_MSEC(5));
  in.timer.repeat = RX_MSEC(5);
  rx_timer_again(in.loop, &in.timer);
  rx_embed e;
  rx_embed_init(&e, NULL, in.loop);
  assert_int_equal(rx_embed_start(rxt.loop, &e), 0);
  int64_t end = rxt_clock() + RX_SEC(5);
  while (in.timer_calls < 5 && rxt_clock() < end)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  rxt_assert_ge(in.timer_calls, 5);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  rx_embed_stop(rxt.loop, &e);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  rx_timer_stop(in.loop, &in.timer);
  rx_io_stop(in.loop, &in.io);
  rx_loop_free(in.loop);
  rxt_close_pair(sv);
}

static void test_embed_bad_input(void **state) {
  (void)state;
  rx_embed e;
  rx_embed_init(&e, NULL, rxt.loop);
  assert_int_equal(rx_embed_start(rxt.loop, &e), -EINVAL); /* itself */
  rx_embed_init(&e, NULL, NULL);
  assert_int_equal(rx_embed_start(rxt.loop, &e), -EINVAL);
  assert_int_equal(rx_embed_start(NULL, &e), -EINVAL);
  assert_int_equal(rx_loop_fd(NULL), -EINVAL);
  /* Active on another loop. */
  rx_loop *a, *b;
  assert_int_equal(rxt_loop_new(&a), 0);
  assert_int_equal(rxt_loop_new(&b), 0);
  rx_embed_init(&e, NULL, a);
  assert_int_equal(rx_embed_start(rxt.loop, &e), 0);
  assert_int_equal(rx_embed_start(rxt.loop, &e), 0);
  assert_int_equal(rx_embed_start(b, &e), -EBUSY);
  assert_int_equal(rx_embed_stop(b, &e), -EBUSY);
  assert_int_equal(rx_embed_stop(rxt.loop, &e), 0);
  rx_loop_free(a);
  rx_loop_free(b);
}

/* A foreign host loop: poll(2) on rx_loop_fd() with rx_loop_timeout(). */
static int host_until(rx_loop *loop, const int *done, int64_t limit) {
  int64_t end = rxt_clock() + limit;
  rx_run(loop, RX_RUN_NOWAIT);
  while (!*done && rxt_clock() < end) {
    int64_t t = 0;
    assert_int_equal(rx_loop_timeout(loop, &t), 0);
    int ms = t < 0 ? 1000 : (int)((t + 999999) / 1000000);
    struct pollfd p = {rx_loop_fd(loop), POLLIN, 0};
    poll(&p, 1, ms);
    rx_run(loop, RX_RUN_NOWAIT);
  }
  return *done;
}

static void mark(rx_loop *loop, rx_task *task) {
  (void)loop;
  __atomic_store_n((int *)task->data, 1, __ATOMIC_RELEASE);
}

struct post_arg {
  rx_loop *loop;
  rx_task *task;
};

static void *post_later(void *arg) {
  struct post_arg *a = arg;
  rxt_sleep_ns(RX_MSEC(50)); /* the host is asleep in poll(2) by then */
  rx_loop_post(a->loop, a->task);
  return NULL;
}

/* rx_loop_timeout()'s "no limit" (-1, written to the out parameter) and its
 * error (-EINVAL, returned) cannot be taken for each other: -1 is also
 * -EPERM, so the two travel apart. */
static void test_timeout_none_is_no_error(void **state) {
  (void)state;
  rx_loop *loop = NULL;
  assert_int_equal(rxt_loop_new(&loop), 0);
  rx_run(loop, RX_RUN_NOWAIT);
  int64_t t = 12345;
  /* Nothing to wait for: success, no limit. */
  assert_int_equal(rx_loop_timeout(loop, &t), 0);
  rxt_assert_eq(t, -1);
  rx_run(loop, RX_RUN_NOWAIT); /* clears the wait it announced */
  /* Errors are returned, and leave the timeout alone. */
  t = 12345;
  assert_int_equal(rx_loop_timeout(NULL, &t), -EINVAL);
  rxt_assert_eq(t, 12345);
  assert_int_equal(rx_loop_timeout(loop, NULL), -EINVAL);
  /* A timer bounds it: success, a positive timeout. */
  rx_timer tm;
  rx_timer_init(&tm, NULL, RX_SEC(1), 0);
  assert_int_equal(rx_timer_start(loop, &tm), 0);
  assert_int_equal(rx_loop_timeout(loop, &t), 0);
  rxt_assert_gt(t, 0);
  rxt_assert_le(t, RX_SEC(1));
  rx_run(loop, RX_RUN_NOWAIT);
  assert_int_equal(rx_timer_stop(loop, &tm), 0);
  assert_int_equal(rx_loop_free(loop), 0);
}

static void test_host_loop(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct inner in;
  inner_setup(&in, sv[0], RX_MSEC(40));
  /* Nothing due: the timeout is the timer's, within a tick. */
  rx_run(in.loop, RX_RUN_NOWAIT);
  int64_t t = 0;
  assert_int_equal(rx_loop_timeout(in.loop, &t), 0);
  rxt_assert_gt(t, RX_MSEC(20));
  rxt_assert_le(t, RX_MSEC(41));
  assert_true(rx_loop_fd(in.loop) >= 0);
  rx_run(in.loop, RX_RUN_NOWAIT); /* clears the wait it announced */
  /* io makes the fd readable. */
  rxt_send(sv[1], 'z');
  assert_true(host_until(in.loop, &in.io_calls, RX_SEC(5)));
  /* The timer comes through the timeout. */
  assert_true(host_until(in.loop, &in.timer_calls, RX_SEC(5)));
  rxt_assert_ge(in.timer_fired - in.timer_start, RX_MSEC(40));
  /* A post from another thread while the host sleeps in poll(2). */
  int ran = 0;
  rx_task task = {.fn = mark, .data = &ran};
  struct post_arg arg = {in.loop, &task};
  rx_ref(in.loop);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, post_later, &arg), 0);
  int64_t t0 = rxt_clock();
  assert_true(host_until(in.loop, &ran, RX_SEC(5)));
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(1)); /* woken, not timed out */
  pthread_join(th, NULL);
  rx_unref(in.loop);
  rx_loop_free(in.loop);
  rxt_close_pair(sv);
}

static void embed_timer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  ++*(int *)w->data;
}

/* A host loop hears every fd of a burst that became ready after its poll
 * was armed. On io_uring each is a completion queued for the loop's
 * thread, and with RX_LOOP_DEFER (meson's *-defer runs) the kernel runs at
 * most 20 per enter; one NOWAIT run takes a few hundred, and rx_loop_fd()
 * must stay readable for the rest (backends/io_uring.c, note e). Every poll(2)
 * is given 10 s: none may run out. */
static void stop_counting(rx_loop *loop, rx_io *w, int revents) {
  assert_true(revents & RX_READ);
  rxt_drain(w->fd);
  (*(int *)w->data)++;
  rx_io_stop(loop, w);
}

static void test_host_burst(void **state) {
  (void)state;
  int n = rxt_pairs_allowed(1000);
  assert_true(n >= 400);
  rx_loop *loop = NULL;
  struct rx_loop_options opts = {.flags = rxt_loop_flags()};
  assert_int_equal(rx_loop_new(&loop, &opts), 0);
  int fd = rx_loop_fd(loop);
  assert_true(fd >= 0);
  int(*sv)[2] = calloc((size_t)n, sizeof(*sv));
  rx_io *w = calloc((size_t)n, sizeof(*w));
  assert_non_null(sv);
  assert_non_null(w);
  int heard = 0;
  for (int i = 0; i < n; i++) {
    rxt_pair(sv[i]);
    rx_io_init(&w[i], stop_counting, sv[i][0], RX_READ);
    w[i].data = &heard;
    assert_int_equal(rx_io_start(loop, &w[i]), 0);
  }
  rx_run(loop, RX_RUN_NOWAIT); /* every poll armed */
  assert_int_equal(heard, 0);
  for (int i = 0; i < n; i++)
    rxt_send(sv[i][1], 'x');
  int polls = 0;
  while (heard < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1)
      fail_msg("rx_loop_fd() not readable with %d of %d fds heard", heard, n);
    rx_run(loop, RX_RUN_NOWAIT);
    polls++;
  }
  print_message("%d fds heard after %d polls\n", n, polls);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  for (int i = 0; i < n; i++)
    rxt_close_pair(sv[i]);
  free(sv);
  free(w);
  assert_int_equal(rx_loop_free(loop), 0);
}

/* An embedding that closes a cycle, A in B in A (or longer), would sweep
 * without end: -ELOOP, both loops intact, and the first embedding still
 * works. */
static void test_embed_cycle(void **state) {
  (void)state;
  rx_loop *a = rxt.loop, *b, *c;
  assert_int_equal(rxt_loop_new(&b), 0);
  assert_int_equal(rxt_loop_new(&c), 0);
  rx_embed ab, ba, bc, ca;
  rx_embed_init(&ab, NULL, b);
  rx_embed_init(&ba, NULL, a);
  rx_embed_init(&bc, NULL, c);
  rx_embed_init(&ca, NULL, a);
  assert_int_equal(rx_embed_start(a, &ab), 0);
  assert_int_equal(rx_embed_start(b, &ba), -ELOOP);
  assert_false(rx_is_active(&ba));
  assert_int_equal(rx_embed_start(b, &bc), 0);
  assert_int_equal(rx_embed_start(c, &ca), -ELOOP);
  assert_false(rx_is_active(&ca));
  const char *what = NULL;
  assert_int_equal(rx_verify(a, &what), 0);
  assert_int_equal(rx_verify(b, &what), 0);
  assert_int_equal(rx_verify(c, &what), 0);
  /* The embedding A <- B still carries work: a timer of B runs from A. */
  int fired = 0;
  rx_timer t;
  rx_timer_init(&t, embed_timer_cb, 0, 0);
  t.data = &fired;
  assert_int_equal(rx_timer_start(b, &t), 0);
  for (int i = 0; i < 10 && !fired; i++)
    assert_true(rx_run(a, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(fired, 1);
  assert_int_equal(rx_embed_stop(b, &bc), 0);
  assert_int_equal(rx_embed_stop(a, &ab), 0);
  /* Once the chain is gone, the other way round is no cycle. */
  assert_int_equal(rx_embed_start(b, &ba), 0);
  assert_int_equal(rx_embed_stop(b, &ba), 0);
  rx_loop_free(c);
  rx_loop_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_embed_sweeps),
      RXT_TEST(test_embed_callback),
      RXT_TEST(test_embed_active_count),
      RXT_TEST(test_embed_bad_input),
      RXT_TEST(test_host_loop),
      RXT_TEST(test_host_burst),
      RXT_TEST(test_timeout_none_is_no_error),
      RXT_TEST(test_embed_cycle),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-embed [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
