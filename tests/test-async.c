/*
 * test-async.c - reactor/async.c and reactor/mpsc.h: rx_async, rx_loop_post,
 * rx_loop_post_from and the sleep handshake, on the backend $RX_BACKEND
 * names. Built twice by meson: as is, and under ThreadSanitizer.
 *
 * The lost-wake-up tests give the loop nothing else to wake it: no timer,
 * no idle watcher. A missed doorbell then stalls the loop for good, which the
 * producer's own watchdog turns into a failure instead of a hang.
 */
#include "helpers.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "internal.h"
#include "seccomp.h"

#define WATCHDOG RX_SEC(10)

static int atomic_get(const int *p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void atomic_set(int *p, int v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------------------
 * The queue alone, single-threaded: FIFO, the stub's re-insertion, empty.
 */

static void test_mpsc_fifo(void **state) {
  (void)state;
  struct rx__mpsc q;
  struct rx__mpsc_node n[5];
  rx__mpsc_init(&q);
  assert_true(rx__mpsc_empty(&q));
  assert_null(rx__mpsc_pop(&q));
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 5; i++)
      rx__mpsc_push(&q, &n[i]);
    assert_false(rx__mpsc_empty(&q));
    for (int i = 0; i < 5; i++) {
      assert_false(rx__mpsc_empty(&q));
      assert_ptr_equal(rx__mpsc_pop(&q), &n[i]);
    }
    assert_true(rx__mpsc_empty(&q));
    assert_null(rx__mpsc_pop(&q));
  }
  /* One at a time: the last node is handed out through the stub. */
  for (int i = 0; i < 5; i++) {
    rx__mpsc_push(&q, &n[i]);
    assert_ptr_equal(rx__mpsc_pop(&q), &n[i]);
    assert_true(rx__mpsc_empty(&q));
  }
}

/* A push caught between its exchange and its link: busy, not empty. */
static void test_mpsc_busy(void **state) {
  (void)state;
  struct rx__mpsc q;
  struct rx__mpsc_node a, b;
  rx__mpsc_init(&q);
  rx__mpsc_push(&q, &a);
  /* Half of a push of b: the exchange without the link store. */
  b.next = NULL;
  struct rx__mpsc_node *prev =
      __atomic_exchange_n(&q.head, &b, __ATOMIC_SEQ_CST);
  assert_ptr_equal(rx__mpsc_pop(&q), NULL); /* a is last linked, head is b */
  assert_false(rx__mpsc_empty(&q));
  __atomic_store_n(&prev->next, &b, __ATOMIC_RELEASE);
  assert_ptr_equal(rx__mpsc_pop(&q), &a);
  assert_ptr_equal(rx__mpsc_pop(&q), &b);
  assert_true(rx__mpsc_empty(&q));
}

/* ---------------------------------------------------------------------------
 * rx_loop_post: 4 producers x 1M posts, exactly once, FIFO per producer.
 */

#define PRODUCERS 4
#define POSTS 1000000

struct item {
  rx_task task;
  int producer;
  int seq;
};

struct stress {
  rx_loop *loop;
  struct item *items[PRODUCERS];
  int last[PRODUCERS];
  long ran;
  long out_of_order;
  long twice;
  unsigned char *seen[PRODUCERS];
};

static void stress_fn(rx_loop *loop, rx_task *task) {
  struct item *it = (struct item *)task;
  struct stress *s = task->data;
  if (s->seen[it->producer][it->seq]++)
    s->twice++;
  if (it->seq != s->last[it->producer] + 1)
    s->out_of_order++;
  s->last[it->producer] = it->seq;
  if (++s->ran == (long)PRODUCERS * POSTS)
    rx_unref(loop);
}

struct producer_arg {
  struct stress *s;
  int id;
};

static void *producer(void *p) {
  struct producer_arg *a = p;
  struct item *items = a->s->items[a->id];
  for (int i = 0; i < POSTS; i++) {
    items[i].task.fn = stress_fn;
    items[i].task.data = a->s;
    items[i].producer = a->id;
    items[i].seq = i + 1;
    int rc = rx_loop_post(a->s->loop, &items[i].task);
    if (rc != 0)
      return (void *)(intptr_t)rc;
  }
  return NULL;
}

static void test_post_stress(void **state) {
  (void)state;
  static struct stress s;
  memset(&s, 0, sizeof(s));
  s.loop = rxt.loop;
  struct producer_arg args[PRODUCERS];
  pthread_t th[PRODUCERS];
  for (int p = 0; p < PRODUCERS; p++) {
    s.items[p] = calloc(POSTS, sizeof(struct item));
    s.seen[p] = calloc(POSTS + 1, 1);
    assert_non_null(s.items[p]);
    args[p] = (struct producer_arg){&s, p};
  }
  rx_ref(rxt.loop); /* tasks do not keep the loop alive by themselves */
  for (int p = 0; p < PRODUCERS; p++)
    assert_int_equal(pthread_create(&th[p], NULL, producer, &args[p]), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  for (int p = 0; p < PRODUCERS; p++) {
    void *rc;
    pthread_join(th[p], &rc);
    assert_null(rc);
  }
  rxt_assert_eq(s.ran, (long)PRODUCERS * POSTS);
  rxt_assert_eq(s.twice, 0);
  rxt_assert_eq(s.out_of_order, 0);
  for (int p = 0; p < PRODUCERS; p++) {
    rxt_assert_eq(s.last[p], POSTS);
    free(s.items[p]);
    free(s.seen[p]);
  }
}

/* ---------------------------------------------------------------------------
 * Lost wake-ups: a producer posts just as the loop goes to sleep.
 */

#define ROUNDS 100000
/* On a loaded machine each round waits for the scheduler twice: the
 * producer stops after this long (and at least 1,000 rounds), so that the
 * test ends in bounded time; a lost wake-up still shows as a stall. */
#define ROUNDS_BUDGET RX_SEC(20)

struct pingpong {
  rx_loop *loop;
  rx_task task;
  int rounds;  /* the rounds the producer will post: ROUNDS, or fewer */
  int done;    /* rounds the loop has run */
  int stalled; /* the watchdog fired */
  int use_async;
  rx_async async;
};

static void pp_fn(rx_loop *loop, rx_task *task) {
  struct pingpong *pp = task->data;
  int n = pp->done + 1;
  atomic_set(&pp->done, n);
  if (n == ROUNDS)
    rx_unref(loop);
}

static void pp_async_cb(rx_loop *loop, rx_async *w, int revents) {
  (void)w;
  assert_int_equal(revents, RX_ASYNC);
  pp_fn(loop, &((struct pingpong *)w->data)->task);
}

/* Waits for the loop to finish round `n`: spinning first, so that the next
 * post often lands while the loop is between its last check and its sleep. */
static int await_round(struct pingpong *pp, int n) {
  int64_t deadline = rxt_clock() + WATCHDOG;
  for (int spin = 0; atomic_get(&pp->done) < n; spin++) {
    if (spin > 1000)
      sched_yield();
    if ((spin & 1023) == 0 && rxt_clock() > deadline)
      return -1;
  }
  return 0;
}

static void *pp_producer(void *p) {
  struct pingpong *pp = p;
  int64_t until = rxt_clock() + ROUNDS_BUDGET;
  for (int i = 0; i < ROUNDS; i++) {
    if (i >= 1000 && rxt_clock() > until) {
      /* The last round, posted after the count is set: the loop may be
       * asleep already, waiting for it. */
      atomic_set(&pp->rounds, i + 1);
      if (pp->use_async)
        rx_async_send(pp->loop, &pp->async);
      else
        rx_loop_post(pp->loop, &pp->task);
      return NULL;
    }
    if (pp->use_async)
      rx_async_send(pp->loop, &pp->async);
    else
      rx_loop_post(pp->loop, &pp->task);
    if (await_round(pp, i + 1) != 0) {
      atomic_set(&pp->stalled, 1);
      /* Unstick the loop so the test can report instead of hanging: a
       * write to the eventfd the loop should have been woken through. */
      uint64_t one = 1;
      (void)!write(pp->loop->wakefd, &one, sizeof(one));
      return NULL;
    }
  }
  return NULL;
}

static void stalled_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)w;
  (void)revents;
  rx_break(loop, RX_BREAK_ALL);
}

static void run_pingpong(int use_async) {
  static struct pingpong pp;
  memset(&pp, 0, sizeof(pp));
  pp.loop = rxt.loop;
  pp.task.fn = pp_fn;
  pp.task.data = &pp;
  pp.use_async = use_async;
  pp.rounds = ROUNDS;
  rx_async_init(&pp.async, pp_async_cb);
  pp.async.data = &pp;
  if (use_async) {
    assert_int_equal(rx_async_start(rxt.loop, &pp.async), 0);
    rx_unref(rxt.loop); /* the watcher alone must not keep the loop */
  }
  rx_ref(rxt.loop);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, pp_producer, &pp), 0);
  while (atomic_get(&pp.done) < atomic_get(&pp.rounds) &&
         !atomic_get(&pp.stalled))
    rx_run(rxt.loop, RX_RUN_ONCE);
  pthread_join(th, NULL);
  if (pp.rounds < ROUNDS) { /* pp_fn() did not drop the reference */
    rx_unref(rxt.loop);
    printf("%d rounds in %d s\n", pp.rounds, (int)(ROUNDS_BUDGET / RX_SEC(1)));
  }
  if (use_async) {
    rx_ref(rxt.loop);
    rx_async_stop(rxt.loop, &pp.async);
  }
  if (atomic_get(&pp.stalled))
    fail_msg("loop stalled after %d of %d rounds: a wake-up was lost",
             atomic_get(&pp.done), ROUNDS);
  rxt_assert_eq(pp.done, pp.rounds);
  (void)stalled_cb;
}

static void test_post_no_lost_wakeup(void **state) {
  (void)state;
  run_pingpong(0);
}

static void test_async_no_lost_wakeup(void **state) {
  (void)state;
  run_pingpong(1);
}

/* ---------------------------------------------------------------------------
 * rx_async: coalescing, at least one callback after the last send.
 */

#define SENDS 1000000

struct pummel {
  rx_loop *loop;
  rx_async w;
  int sent;     /* the producer's counter, written before each send */
  int finished; /* the producer is done */
  int seen;     /* the counter value the last callback read */
  long calls;
};

static void pummel_cb(rx_loop *loop, rx_async *w, int revents) {
  struct pummel *p = w->data;
  assert_int_equal(revents, RX_ASYNC);
  p->calls++;
  p->seen = atomic_get(&p->sent);
  if (p->seen == SENDS && atomic_get(&p->finished)) {
    rx_async_stop(loop, w);
  }
}

static void *pummel_producer(void *arg) {
  struct pummel *p = arg;
  for (int i = 1; i <= SENDS; i++) {
    atomic_set(&p->sent, i);
    rx_async_send(p->loop, &p->w);
  }
  atomic_set(&p->finished, 1);
  rx_async_send(p->loop, &p->w);
  return NULL;
}

static void test_async_pummel(void **state) {
  (void)state;
  static struct pummel p;
  memset(&p, 0, sizeof(p));
  p.loop = rxt.loop;
  rx_async_init(&p.w, pummel_cb);
  p.w.data = &p;
  assert_int_equal(rx_async_start(rxt.loop, &p.w), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, pummel_producer, &p), 0);
  /* Returns once the callback has seen the final counter and stopped. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  pthread_join(th, NULL);
  rxt_assert_eq(p.seen, SENDS);
  rxt_assert_ge(p.calls, 1);
  rxt_assert_le(p.calls, SENDS + 1); /* coalesced, never more than sends */
}

/* ---------------------------------------------------------------------------
 * Light sends (async.c): after enough sends since the loop last looked, a
 * send only loads, and the loop issues one membarrier() for all of them
 * before the callback runs.
 */

/* More sends than any watcher needs before it turns light (2^20). */
#define LIGHT_SENDS (1 << 21)

/* Whether rx can use light sends here: membarrier with its private
 * expedited command (Linux 4.14), not refused by a filter (the
 * seccomp-nomembarrier tests), and not a ThreadSanitizer build, which
 * cannot see the barrier and so has rx always take the atomic. */
static int light_possible(void) {
#ifdef RX__HAS_TSAN
  return 0;
#else
  long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  return cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
#endif
}

static uint64_t fences(rx_loop *loop) {
  struct rx_metrics m;
  assert_int_equal(rx_loop_metrics(loop, &m), 0);
  return m.async_fences;
}

struct light {
  rx_loop *loop;
  rx_async w;
  int value[2]; /* written by each sender before each of its sends */
  int seen[2];  /* what the last callback read */
  int calls;
};

/* Sender k of a struct light. */
struct light_sender {
  struct light *l;
  int k;
};

static void light_cb(rx_loop *loop, rx_async *w, int revents) {
  (void)loop;
  assert_int_equal(revents, RX_ASYNC);
  struct light *l = w->data;
  l->calls++;
  for (int k = 0; k < 2; k++)
    l->seen[k] = atomic_get(&l->value[k]);
}

/* Starts l->w with `cb` on the test's loop. */
static struct light *light_start(struct light *l, rx_async_cb cb) {
  memset(l, 0, sizeof(*l));
  l->loop = rxt.loop;
  rx_async_init(&l->w, cb);
  l->w.data = l;
  assert_int_equal(rx_async_start(rxt.loop, &l->w), 0);
  return l;
}

static void *light_sender(void *arg) {
  struct light_sender *s = arg;
  struct light *l = s->l;
  for (int i = 1; i <= LIGHT_SENDS; i++) {
    __atomic_store_n(&l->value[s->k], i, __ATOMIC_RELAXED);
    rx_async_send(l->loop, &l->w);
  }
  return NULL;
}

/* Sends from another thread while the loop does not run: the watcher turns
 * light, one callback sees the last value, and the loop paid one barrier.
 * The next lone send is not light: no barrier. */
static void test_async_light_sends(void **state) {
  (void)state;
  static struct light l;
  light_start(&l, light_cb);
  uint64_t before = fences(rxt.loop);
  pthread_t th;
  struct light_sender s = {&l, 0};
  assert_int_equal(pthread_create(&th, NULL, light_sender, &s), 0);
  pthread_join(th, NULL);
  assert_true(rx_async_pending(&l.w));
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(l.calls, 1);
  assert_int_equal(l.seen[0], LIGHT_SENDS);
  assert_false(rx_async_pending(&l.w));
  rxt_assert_eq(fences(rxt.loop) - before, light_possible() ? 1 : 0);

  atomic_set(&l.value[0], -1);
  assert_int_equal(rx_async_send(rxt.loop, &l.w), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(l.calls, 2);
  assert_int_equal(l.seen[0], -1);
  rxt_assert_eq(fences(rxt.loop) - before, light_possible() ? 1 : 0);
  rx_async_stop(rxt.loop, &l.w);
}

/* The same from two threads at once while the loop runs, slowly (no busy
 * polling, a callback that takes 100 us), so that sends pile up between
 * its looks and the watcher goes light and back many times: a callback
 * still sees each sender's last value. */
static void light_slow_cb(rx_loop *loop, rx_async *w, int revents) {
  light_cb(loop, w, revents);
  struct light *l = w->data;
  if (l->seen[0] == LIGHT_SENDS && l->seen[1] == LIGHT_SENDS)
    rx_async_stop(loop, w);
  else
    rxt_sleep_ns(RX_USEC(100));
}

static void test_async_light_sends_running(void **state) {
  (void)state;
  static struct light l;
  assert_int_equal(rx_set_busy_poll(rxt.loop, 0), 0);
  light_start(&l, light_slow_cb);
  pthread_t th[2];
  struct light_sender s[2] = {{&l, 0}, {&l, 1}};
  for (int k = 0; k < 2; k++)
    assert_int_equal(pthread_create(&th[k], NULL, light_sender, &s[k]), 0);
  /* Returns once a callback has seen both last values (a lost one hangs
   * here, and meson's timeout fails the test). */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  for (int k = 0; k < 2; k++)
    pthread_join(th[k], NULL);
  assert_int_equal(l.seen[0], LIGHT_SENDS);
  assert_int_equal(l.seen[1], LIGHT_SENDS);
  print_message("%d callbacks, %llu barriers for 2 x %d sends\n", l.calls,
                (unsigned long long)fences(rxt.loop), LIGHT_SENDS);
}

/* A filter that refuses membarrier after the watcher went light (a sandbox
 * applied after start-up): the loop cannot issue the barrier, so the
 * callback runs again in the next iteration, and from then on every send
 * takes its atomic. In a child, since a filter cannot be removed. */
static int light_refused_child(void) {
  rx_loop *loop;
  struct rx_loop_options opts = {.backend = rxt_env_backend()};
  if (rx_loop_new(&loop, &opts) != 0)
    return 10;
  static struct light l;
  l.loop = loop;
  rx_async_init(&l.w, light_cb);
  l.w.data = &l;
  if (rx_async_start(loop, &l.w) != 0)
    return 11;
  for (int i = 0; i < LIGHT_SENDS; i++)
    rx_async_send(loop, &l.w);
  unsigned nr[3] = {__NR_membarrier, __NR_membarrier, __NR_membarrier};
  if (rxt_seccomp_refuse(nr, SECCOMP_RET_ERRNO | EPERM) != 0)
    return 12;
  if (rx_run(loop, RX_RUN_NOWAIT) < 0 || l.calls != 1)
    return 13;
  if (rx_run(loop, RX_RUN_NOWAIT) < 0 || l.calls != 2) /* the repeat */
    return 14;
  if (rx_run(loop, RX_RUN_NOWAIT) < 0 || l.calls != 2)
    return 15;
  for (int i = 0; i < LIGHT_SENDS; i++)
    rx_async_send(loop, &l.w);
  if (rx_run(loop, RX_RUN_NOWAIT) < 0 || l.calls != 3 ||
      rx_run(loop, RX_RUN_NOWAIT) < 0 || l.calls != 3)
    return 16;
  struct rx_metrics m;
  if (rx_loop_metrics(loop, &m) != 0 || m.async_fences != 0)
    return 17;
  rx_async_stop(loop, &l.w);
  rx_loop_free(loop);
  return 0;
}

static void test_async_light_refused_later(void **state) {
  (void)state;
  if (!light_possible()) {
    print_message("no light sends here: nothing to refuse\n");
    return;
  }
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(light_refused_child());
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_async_basics(void **state) {
  (void)state;
  struct rxt_rec calls = {0};
  rx_async w;
  rx_async_init(&w, rxt_rec_async_cb);
  w.data = &calls;
  assert_int_equal(rx_async_send(NULL, &w), -EINVAL);
  assert_int_equal(rx_async_send(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_async_start(NULL, &w), -EINVAL);
  /* A send to a stopped watcher is dropped at start. */
  assert_int_equal(rx_async_send(rxt.loop, &w), 0);
  assert_true(rx_async_pending(&w));
  assert_int_equal(rx_async_start(rxt.loop, &w), 0);
  assert_false(rx_async_pending(&w));
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(calls.calls, 0);
  /* Three sends, one callback. */
  for (int i = 0; i < 3; i++)
    assert_int_equal(rx_async_send(rxt.loop, &w), 0);
  assert_true(rx_async_pending(&w));
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(calls.calls, 1);
  assert_false(rx_async_pending(&w));
  /* Stop clears a pending callback. */
  assert_int_equal(rx_async_set_priority(&w, 1), -EBUSY);
  rx_async_send(rxt.loop, &w);
  rx_async_stop(rxt.loop, &w);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(calls.calls, 1);
  assert_int_equal(rx_async_set_priority(&w, 3), -EINVAL);
  assert_int_equal(rx_async_set_priority(&w, 1), 0);
  /* Active on another loop. */
  rx_loop *other;
  assert_int_equal(rxt_loop_new(&other), 0);
  assert_int_equal(rx_async_start(rxt.loop, &w), 0);
  assert_int_equal(rx_async_start(rxt.loop, &w), 0);
  assert_int_equal(rx_async_start(other, &w), -EBUSY);
  rx_async_stop(rxt.loop, &w);
  rx_loop_free(other);
}

/* ---------------------------------------------------------------------------
 * A send from a signal handler wakes a sleeping loop.
 */

static rx_loop *sig_loop;
static rx_async sig_async;

static void on_usr1(int sig) {
  (void)sig;
  int saved = errno;
  rx_async_send(sig_loop, &sig_async);
  errno = saved;
}

static void *signaller(void *arg) {
  pthread_t target = *(pthread_t *)arg;
  rxt_sleep_ns(RX_MSEC(50)); /* let the loop fall asleep */
  pthread_kill(target, SIGUSR1);
  return NULL;
}

static void sig_cb(rx_loop *loop, rx_async *w, int revents) {
  (void)revents;
  (*(int *)w->data)++;
  rx_async_stop(loop, w);
}

static void tick_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
}

static void test_async_from_signal_handler(void **state) {
  (void)state;
  int calls = 0;
  /* Under ThreadSanitizer (RX_TSAN set by meson), a signal handler runs only
   * when its thread enters an intercepted libc call, and liburing's wait is
   * a raw syscall: a 10 ms tick gives the handler its chance. The plain
   * build runs without it and so proves the send itself wakes the loop. */
  rx_timer tick;
  rx_timer_init(&tick, tick_cb, RX_MSEC(10), RX_MSEC(10));
  if (getenv("RX_TSAN") != NULL) {
    assert_int_equal(rx_timer_start(rxt.loop, &tick), 0);
    rx_unref(rxt.loop);
  }
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
  sig_loop = rxt.loop;
  rx_async_init(&sig_async, sig_cb);
  sig_async.data = &calls;
  assert_int_equal(rx_async_start(rxt.loop, &sig_async), 0);
  pthread_t self = pthread_self(), th;
  assert_int_equal(pthread_create(&th, NULL, signaller, &self), 0);
  int64_t t0 = rxt_clock();
  /* Nothing but the async watcher: only the send can end this run. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  pthread_join(th, NULL);
  sigaction(SIGUSR1, &old, NULL);
  if (rx_is_active(&tick)) {
    rx_ref(rxt.loop);
    rx_timer_stop(rxt.loop, &tick);
  }
  assert_int_equal(calls, 1);
  rxt_assert_lt(rxt_clock() - t0, WATCHDOG);
}

/* ---------------------------------------------------------------------------
 * rx_loop_post: argument checks, a task posted from the loop's own thread,
 * and closing.
 */

static void mark(rx_loop *loop, rx_task *task) {
  (void)loop;
  (*(int *)task->data)++;
}

static void test_post_basics(void **state) {
  (void)state;
  int ran = 0;
  rx_task t = {.fn = mark, .data = &ran};
  rx_task nofn = {.fn = NULL};
  assert_int_equal(rx_loop_post(NULL, &t), -EINVAL);
  assert_int_equal(rx_loop_post(rxt.loop, NULL), -EINVAL);
  assert_int_equal(rx_loop_post(rxt.loop, &nofn), -EINVAL);
  assert_int_equal(rx_loop_post_from(NULL, rxt.loop, &t), -EINVAL);
  assert_int_equal(rx_loop_post(rxt.loop, &t), 0);
  assert_int_equal(ran, 0); /* never run inside the call */
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(ran, 1);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(ran, 1); /* exactly once */
  /* A pending post keeps ONCE from blocking. */
  rx_ref(rxt.loop);
  assert_int_equal(rx_loop_post(rxt.loop, &t), 0);
  int64_t t0 = rxt_clock();
  rx_run(rxt.loop, RX_RUN_ONCE);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(1));
  assert_int_equal(ran, 2);
  rx_unref(rxt.loop);
}

/* Tasks posted before rx_loop_free() run in it; later ones are refused. */
static void test_post_at_free(void **state) {
  (void)state;
  rx_loop *loop;
  assert_int_equal(rxt_loop_new(&loop), 0);
  int ran = 0;
  rx_task t[3];
  for (int i = 0; i < 3; i++) {
    t[i] = (rx_task){.fn = mark, .data = &ran};
    assert_int_equal(rx_loop_post(loop, &t[i]), 0);
  }
  rx_loop_free(loop);
  assert_int_equal(ran, 3);
}

/* A loop being freed while a producer posts: every accepted task runs once,
 * then posts fail with -ESHUTDOWN. The allocator here keeps freed blocks
 * until the test ends, so the producer's last calls read valid memory. */
struct closing {
  rx_loop *loop;
  rx_task tasks[200000];
  long accepted;
  long ran;
  int refused;
};

static void closing_fn(rx_loop *loop, rx_task *task) {
  (void)loop;
  ((struct closing *)task->data)->ran++;
}

static void *closing_producer(void *arg) {
  struct closing *c = arg;
  for (long i = 0; i < 200000; i++) {
    c->tasks[i] = (rx_task){.fn = closing_fn, .data = c};
    int rc = rx_loop_post(c->loop, &c->tasks[i]);
    if (rc == -ESHUTDOWN) {
      c->refused = 1;
      break;
    }
    assert_int_equal(rc, 0);
    c->accepted++;
  }
  return NULL;
}

static void *quarantine[64];
static int nquarantine;
static void *q_alloc(void *ctx, size_t size) {
  (void)ctx;
  return malloc(size);
}
static void *q_realloc(void *ctx, void *p, size_t o, size_t n) {
  (void)ctx;
  (void)o;
  return realloc(p, n);
}
static void q_free(void *ctx, void *p, size_t size) {
  (void)ctx;
  (void)size;
  if (nquarantine < 64)
    quarantine[nquarantine++] = p;
  else
    free(p);
}

static void test_post_while_freeing(void **state) {
  (void)state;
  static struct closing c;
  memset(&c, 0, sizeof(c));
  /* The fixture installed a tracking allocator; swap in the quarantine. */
  assert_int_equal(rx_set_allocator(NULL), 0);
  struct rx_allocator q = {q_alloc, q_realloc, q_free, NULL};
  assert_int_equal(rx_set_allocator(&q), 0);
  assert_int_equal(rxt_loop_new(&c.loop), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, closing_producer, &c), 0);
  rx_run(c.loop, RX_RUN_NOWAIT);
  rxt_sleep_ns(RX_MSEC(2));
  rx_loop_free(c.loop);
  pthread_join(th, NULL);
  rxt_assert_eq(c.ran, c.accepted);
  assert_true(c.refused || c.accepted == 200000);
  for (int i = 0; i < nquarantine; i++)
    free(quarantine[i]);
  nquarantine = 0;
  assert_int_equal(rx_set_allocator(NULL), 0);
  rxt_heap_install(); /* for the fixture's check */
}

/* ---------------------------------------------------------------------------
 * Loop to loop: two loops on two threads bounce a task with
 * rx_loop_post_from (MSG_RING between io_uring loops where the kernel has
 * it).
 */

#define BOUNCES 20000

struct side {
  rx_loop *loop;
  struct side *peer;
  rx_task task;
  int count;
};

static void bounce(rx_loop *loop, rx_task *task) {
  struct side *s = task->data;
  s->count++;
  if (s->count >= BOUNCES) {
    rx_unref(loop);
    if (s->count > BOUNCES)
      return;
  }
  /* Hand the ball to the other side's task. */
  assert_int_equal(rx_loop_post_from(loop, s->peer->loop, &s->peer->task), 0);
}

static void *side_thread(void *arg) {
  struct side *s = arg;
  rx_run(s->loop, RX_RUN_DEFAULT);
  return NULL;
}

/* Bounces BOUNCES times each way between rxt.loop and a second loop whose
 * busy-poll limit is `poll_max` (rxt.loop's is set to it too); fills `ma`
 * and `mb` with the two loops' metrics. */
static void bounce_with(int64_t poll_max, struct rx_metrics *ma,
                        struct rx_metrics *mb) {
  static struct side a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  assert_int_equal(rxt_loop_new(&b.loop), 0);
  assert_int_equal(rx_set_busy_poll(b.loop, poll_max), 0);
  assert_int_equal(rx_set_busy_poll(rxt.loop, poll_max), 0);
  a.loop = rxt.loop;
  a.peer = &b;
  b.peer = &a;
  a.task = (rx_task){.fn = bounce, .data = &a};
  b.task = (rx_task){.fn = bounce, .data = &b};
  rx_ref(a.loop);
  rx_ref(b.loop);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, side_thread, &b), 0);
  assert_int_equal(rx_loop_post(a.loop, &a.task), 0);
  rx_run(a.loop, RX_RUN_DEFAULT);
  pthread_join(th, NULL);
  rxt_assert_ge(a.count, BOUNCES);
  rxt_assert_ge(b.count, BOUNCES);
  assert_int_equal(rx_loop_metrics(a.loop, ma), 0);
  assert_int_equal(rx_loop_metrics(b.loop, mb), 0);
  rx_loop_free(b.loop);
}

static void test_loop_to_loop(void **state) {
  (void)state;
  struct rx_metrics ma, mb;
  bounce_with(RX_BUSY_POLL_DEFAULT, &ma, &mb);
}

/* Busy polling: two loops that hand work to each other back and forth
 * stop sleeping between hand-offs once the window has grown, so most
 * hand-offs are caught by a poll and need no doorbell. The bound is loose
 * (a loaded machine deschedules a poller now and then); without polling
 * there are no poll hits at all and a doorbell per hand-off. */
static void test_busy_poll_catches_hand_offs(void **state) {
  (void)state;
  struct rx_metrics ma, mb;
  bounce_with(RX_MSEC(1), &ma, &mb);
  uint64_t hits = ma.poll_hits + mb.poll_hits;
  uint64_t wakeups = ma.wakeups + mb.wakeups;
  rxt_assert_ge(hits, BOUNCES / 4);
  rxt_assert_lt(wakeups, BOUNCES);
  rxt_assert_ge(ma.poll_ns + mb.poll_ns, 1);
}

/* A loop that announced its sleep before its first wait: on io_uring its
 * ring is still disabled then (made with R_DISABLED, enabled by the first
 * wait) and refuses a MSG_RING. rx_loop_post_from() must ring it some way
 * that it hears, or `doorbell_rung` stays set and no later post wakes it
 * (two bouncing loops hung that way now and then, when one side's first
 * post reached the other between its announcement and its first wait). */
struct early {
  rx_loop *to;
  rx_task post;  /* on the sender: posts `ball` to `to` */
  rx_task ball;  /* on `to` */
  rx_task later; /* on `to`, from a thread once `to` sleeps */
  int balls, laters, later_rc;
};

static void early_ball(rx_loop *loop, rx_task *task) {
  (void)loop;
  ((struct early *)task->data)->balls++;
}

static void early_later(rx_loop *loop, rx_task *task) {
  (void)loop;
  ((struct early *)task->data)->laters++;
}

static void early_post(rx_loop *loop, rx_task *task) {
  struct early *e = task->data;
  assert_int_equal(rx_loop_post_from(loop, e->to, &e->ball), 0);
}

static void *post_when_asleep(void *arg) {
  struct early *e = arg;
  while (!__atomic_load_n(&e->to->sleeping, __ATOMIC_SEQ_CST))
    sched_yield();
  e->later_rc = rx_loop_post(e->to, &e->later);
  return NULL;
}

static void test_post_from_before_first_wait(void **state) {
  (void)state;
  static struct early e;
  memset(&e, 0, sizeof(e));
  assert_int_equal(rxt_loop_new(&e.to), 0);
  assert_int_equal(rx_set_busy_poll(e.to, 0), 0);
  e.post = (rx_task){.fn = early_post, .data = &e};
  e.ball = (rx_task){.fn = early_ball, .data = &e};
  e.later = (rx_task){.fn = early_later, .data = &e};
  /* `to` as between rx__cross_may_sleep() and its first wait. */
  __atomic_store_n(&e.to->sleeping, 1, __ATOMIC_SEQ_CST);
  assert_int_equal(rx_loop_post(rxt.loop, &e.post), 0);
  rx_run(rxt.loop, RX_RUN_NOWAIT); /* sent, flushed */
  rx_run(rxt.loop, RX_RUN_NOWAIT); /* its completion */
  __atomic_store_n(&e.to->sleeping, 0, __ATOMIC_SEQ_CST);
  /* `to` runs: the ball, and it hears what rang (within a few looks, on a
   * loaded machine); a doorbell never heard stays rung for good. */
  for (int i = 0; i < 2000 && (e.balls == 0 || e.to->doorbell_rung); i++) {
    rx_run(e.to, RX_RUN_NOWAIT);
    if (e.to->doorbell_rung)
      rxt_sleep_ns(RX_MSEC(1));
  }
  assert_int_equal(e.balls, 1);
  assert_int_equal(__atomic_load_n(&e.to->doorbell_rung, __ATOMIC_SEQ_CST), 0);
  /* Now `to` sleeps with a 10 s guard, and a post from a thread wakes it
   * with the doorbell (counted), not the end of a wait. */
  struct rx_metrics before, after;
  assert_int_equal(rx_loop_metrics(e.to, &before), 0);
  rx_timer guard;
  int guard_fired = 0;
  rx_timer_init(&guard, rxt_count_fires, RX_SEC(10), 0);
  guard.data = &guard_fired;
  assert_int_equal(rx_timer_start(e.to, &guard), 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, post_when_asleep, &e), 0);
  while (e.laters == 0 && guard_fired == 0)
    rx_run(e.to, RX_RUN_ONCE);
  pthread_join(th, NULL);
  assert_int_equal(rx_loop_metrics(e.to, &after), 0);
  assert_int_equal(e.later_rc, 0);
  assert_int_equal(e.laters, 1);
  assert_int_equal(guard_fired, 0);
  rxt_assert_ge(after.wakeups, before.wakeups + 1);
  rx_timer_stop(e.to, &guard);
  rx_loop_free(e.to);
}

/* rx_set_busy_poll(loop, 0): never a poll, a doorbell per hand-off (each
 * side sleeps while the other works). */
static void test_busy_poll_off(void **state) {
  (void)state;
  struct rx_metrics ma, mb;
  bounce_with(0, &ma, &mb);
  assert_int_equal(ma.poll_hits + mb.poll_hits, 0);
  assert_int_equal(ma.poll_ns + mb.poll_ns, 0);
  rxt_assert_ge(ma.wakeups + mb.wakeups, BOUNCES / 2);
}

/* A loop woken by timers, or by doorbells that come slower than its limit,
 * never polls: the window only grows after a doorbell that ended a sleep
 * shorter than the limit. */
static int ticks;
static void tick(rx_loop *loop, rx_timer *w, int revents) {
  (void)w;
  (void)revents;
  if (++ticks == 20)
    rx_break(loop, RX_BREAK_ONE);
}

static int slow_posts_run; /* atomic: read by the posting thread */
static void slow_post(rx_loop *loop, rx_task *task) {
  (void)task;
  if (__atomic_add_fetch(&slow_posts_run, 1, __ATOMIC_RELEASE) == 10)
    rx_unref(loop);
}

/* Whether thread `tid` of this process is blocked (state S). */
static int thread_blocked(pid_t tid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the name may hold spaces */
  return p != NULL && p[1] == ' ' && p[2] == 'S';
}

struct slow {
  rx_loop *loop;
  pid_t tid; /* the loop's thread */
};

/* Ten posts, each 5 ms after the loop went to sleep for the one before.
 * Timed from the post before, a post could land just after the loop went
 * to sleep whenever its thread was held up (descheduled) on the way: a
 * doorbell that ends a sleep shorter than the limit, which rightly grows
 * the window. So each post waits until the loop has run the previous one
 * and is blocked in its wait: `sleeping` is set before the loop reads the
 * clock for the sleep, and the wait is the only place where it blocks. */
static void *post_slowly(void *arg) {
  struct slow *s = arg;
  static rx_task t[10];
  for (int i = 0; i < 10; i++) {
    int64_t end = rxt_clock() + RX_SEC(5);
    while (!(__atomic_load_n(&slow_posts_run, __ATOMIC_ACQUIRE) == i &&
             __atomic_load_n(&s->loop->sleeping, __ATOMIC_SEQ_CST) &&
             thread_blocked(s->tid)) &&
           rxt_clock() < end)
      rxt_sleep_ns(RX_USEC(100));
    rxt_sleep_ns(RX_MSEC(5));
    t[i] = (rx_task){.fn = slow_post};
    assert_int_equal(rx_loop_post(s->loop, &t[i]), 0);
  }
  return NULL;
}

static void test_busy_poll_only_for_fast_hand_offs(void **state) {
  (void)state;
  struct rx_metrics m;
  assert_int_equal(rx_set_busy_poll(rxt.loop, RX_USEC(200)), 0);
  rx_timer t;
  rx_timer_init(&t, tick, RX_MSEC(1), RX_MSEC(1));
  ticks = 0;
  assert_int_equal(rx_timer_start(rxt.loop, &t), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 1);
  rx_timer_stop(rxt.loop, &t);
  assert_int_equal(ticks, 20);
  assert_int_equal(rx_loop_metrics(rxt.loop, &m), 0);
  assert_int_equal(m.poll_ns, 0);

  slow_posts_run = 0;
  rx_ref(rxt.loop);
  struct slow s = {rxt.loop, gettid()};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, post_slowly, &s), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  pthread_join(th, NULL);
  assert_int_equal(slow_posts_run, 10);
  assert_int_equal(rx_loop_metrics(rxt.loop, &m), 0);
  /* Slept and was rung for them, never polled. */
  rxt_assert_ge(m.wakeups, 1);
  assert_int_equal(m.poll_ns, 0);
  assert_int_equal(m.poll_hits, 0);
}

static void test_busy_poll_bad_input(void **state) {
  (void)state;
  assert_int_equal(rx_set_busy_poll(NULL, 0), -EINVAL);
  assert_int_equal(rx_set_busy_poll(rxt.loop, -1), -EINVAL);
  assert_int_equal(rx_set_busy_poll(rxt.loop, 0), 0);
  assert_int_equal(rx_set_busy_poll(rxt.loop, RX_BUSY_POLL_DEFAULT), 0);
}

/* rx_loop_post_from() outside rx_run() of `from`: nothing of `from`'s will
 * be submitted soon, so the sleeping target must be woken another way (its
 * eventfd). Without that it sleeps until the watchdog. */
static void *run_once_thread(void *arg) {
  rx_run((rx_loop *)arg, RX_RUN_ONCE);
  return NULL;
}

static void test_post_from_outside_run(void **state) {
  (void)state;
  rx_loop *to;
  assert_int_equal(rxt_loop_new(&to), 0);
  int ran = 0;
  rx_task t = {.fn = mark, .data = &ran};
  rx_ref(to);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, run_once_thread, to), 0);
  rxt_sleep_ns(RX_MSEC(50)); /* `to` is asleep in its wait by now */
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_loop_post_from(rxt.loop, to, &t), 0);
  pthread_join(th, NULL); /* returns once woken and the task has run */
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal(ran, 1);
  rx_unref(to);
  rx_loop_free(to);
}

/* A send naming another loop than the watcher's: -EBUSY, and the watcher
 * is not silenced (the send used to leave its word set where no loop looks,
 * so that every later send coalesced into it and no callback ran again). */
static void test_async_send_other_loop(void **state) {
  (void)state;
  rx_loop *a = rxt.loop, *b;
  assert_int_equal(rxt_loop_new(&b), 0);
  struct rxt_rec calls = {0};
  rx_async w;
  rx_async_init(&w, rxt_rec_async_cb);
  w.data = &calls;
  assert_int_equal(rx_async_start(a, &w), 0);
  assert_int_equal(rx_async_send(b, &w), -EBUSY);
  assert_false(rx_async_pending(&w));
  assert_int_equal(rx_async_send(a, &w), 0);
  for (int i = 0; i < 5 && calls.calls == 0; i++)
    assert_true(rx_run(a, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(calls.calls, 1);
  assert_int_equal(rx_async_send(a, &w), 0);
  for (int i = 0; i < 5 && calls.calls == 1; i++)
    assert_true(rx_run(a, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(calls.calls, 2);
  const char *what = NULL;
  assert_int_equal(rx_verify(a, &what), 0);
  assert_int_equal(rx_verify(b, &what), 0);
  assert_int_equal(rx_async_stop(b, &w), -EBUSY);
  assert_int_equal(rx_async_stop(a, &w), 0);
  /* stopped, it may start on B and is then B's */
  assert_int_equal(rx_async_start(b, &w), 0);
  assert_int_equal(rx_async_send(a, &w), -EBUSY);
  assert_int_equal(rx_async_send(b, &w), 0);
  for (int i = 0; i < 5 && calls.calls == 2; i++)
    assert_true(rx_run(b, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(calls.calls, 3);
  assert_int_equal(rx_async_stop(b, &w), 0);
  rx_loop_free(b);
  assert_int_equal(calls.all_revents, RX_ASYNC); /* every call's */
}

/* ---------------------------------------------------------------------------
 * A task posted again before it ran is refused: pushed twice, its node
 * would close the queue into a cycle and rx_loop_free() would run it
 * forever. Once `fn` has started, it may be posted again. An alarm turns a
 * hang of rx_loop_free() into a failure.
 */
static void double_post_hung(int sig) {
  (void)sig;
  static const char msg[] = "rx_loop_free() hung on a task posted twice\n";
  (void)!write(2, msg, sizeof(msg) - 1);
  _exit(1);
}

static void repost(rx_loop *loop, rx_task *task) {
  int *ran = task->data;
  if (++*ran == 1) /* from its own fn: allowed */
    assert_int_equal(rx_loop_post(loop, task), 0);
}

static void test_post_twice_refused(void **state) {
  (void)state;
  rx_loop *loop;
  assert_int_equal(rxt_loop_new(&loop), 0);
  struct sigaction sa = {.sa_handler = double_post_hung}, old;
  assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
  alarm(30);
  int ran = 0;
  rx_task t;
  memset(&t, 0xa5, sizeof(t)); /* never zeroed: still accepted */
  t.fn = mark;
  t.data = &ran;
  assert_int_equal(rx_loop_post(loop, &t), 0);
  int second = rx_loop_post(loop, &t);
  int third = rx_loop_post_from(loop, loop, &t);
  rx_loop_free(loop); /* runs it once, does not hang */
  assert_int_equal(ran, 1);
  assert_int_equal(second, -EBUSY);
  assert_int_equal(third, -EBUSY);
  /* once run, it may go again, also from its own fn */
  assert_int_equal(rxt_loop_new(&loop), 0);
  t.fn = repost;
  ran = 0;
  assert_int_equal(rx_loop_post(loop, &t), 0);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  rxt_assert_ge(ran, 1);
  rx_loop_free(loop);
  assert_int_equal(ran, 2);
  alarm(0);
  sigaction(SIGALRM, &old, NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mpsc_fifo),
      cmocka_unit_test(test_mpsc_busy),
      RXT_TEST(test_async_basics),
      RXT_TEST(test_post_basics),
      RXT_TEST_NOLOOP(test_post_at_free),
      RXT_TEST_NOLOOP(test_post_while_freeing),
      RXT_TEST(test_post_stress),
      RXT_TEST(test_post_no_lost_wakeup),
      RXT_TEST(test_async_no_lost_wakeup),
      RXT_TEST(test_async_pummel),
      RXT_TEST(test_async_light_sends),
      RXT_TEST(test_async_light_sends_running),
      RXT_TEST(test_async_light_refused_later),
      RXT_TEST(test_async_from_signal_handler),
      RXT_TEST(test_loop_to_loop),
      RXT_TEST(test_busy_poll_catches_hand_offs),
      RXT_TEST(test_busy_poll_off),
      RXT_TEST(test_post_from_before_first_wait),
      RXT_TEST(test_busy_poll_only_for_fast_hand_offs),
      RXT_TEST(test_busy_poll_bad_input),
      RXT_TEST(test_post_from_outside_run),
      RXT_TEST(test_async_send_other_loop),
      RXT_TEST_NOLOOP(test_post_twice_refused),
  };
  /* RXT_TEST_FILTER=name (cmocka's * and ? wildcards) runs only the tests
   * it matches, e.g. one test many times under load. */
  const char *filter = getenv("RXT_TEST_FILTER");
  if (filter != NULL && *filter != '\0')
    cmocka_set_test_filter(filter);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
