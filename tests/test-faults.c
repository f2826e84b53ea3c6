/*
 * test-faults.c - error paths reached on purpose (STYLE.md example 14), on
 * the backend $RX_BACKEND names:
 *
 *   1. an allocation-failure sweep: one scenario that touches every kind of
 *      watcher and grows the fd table, run once per allocation it makes with
 *      exactly that allocation refused. The call that met the refusal must
 *      return -ENOMEM and leave the loop as it was, so that the same call,
 *      retried, succeeds; nothing may leak and rx_verify() must pass;
 *   2. 10,000 ready fds at once, on io_uring through an 8-entry ring (SQ
 *      full, CQ overflow): every watcher called exactly once per round;
 *   3. a storm of signals (no SA_RESTART) at the loop's thread while it
 *      waits: no error from rx_run(), no event lost, no early timer;
 *   4. accept4() failing with EMFILE: the connections already accepted are
 *      still served, and a new one is accepted once a slot is free;
 *   5. an fd closed and its number given to a new watcher's file while the
 *      old file's event is already in the same backend batch (test-io.c
 *      covers reuse by the same watcher and between runs, test-io_uring.c an
 *      armed poll whose removal races with a wake-up; this is the case of
 *      two watchers in one batch).
 *
 * The seccomp tests (io_uring refused with EPERM or by killing the process)
 * are test-seccomp.c run under seccomp-launcher.c: see meson.build.
 */
#include "helpers.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/un.h>

static void verify(rx_loop *loop) {
  const char *what = NULL;
  int rc = rx_verify(loop, &what);
  if (rc != 0)
    fail_msg("rx_verify: %d (%s)", rc, what != NULL ? what : "NULL");
}

/* Raises RLIMIT_NOFILE to at least `need` (root may raise the hard limit
 * too); returns 0, or -1 if the limit stays below. */
static int raise_nofile(rlim_t need) {
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur >= need)
    return 0;
  struct rlimit want = {need, rl.rlim_max > need ? rl.rlim_max : need};
  if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
    want.rlim_max = rl.rlim_max;
    want.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &want);
  }
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  return rl.rlim_cur >= need ? 0 : -1;
}

/* ===========================================================================
 * 1. The allocation-failure sweep.
 */
struct sc_io {
  rx_io w;
  int calls;
  int last;
};

static void sc_io_cb(rx_loop *loop, rx_io *w, int revents) {
  struct sc_io *x = (struct sc_io *)w;
  x->calls++;
  x->last = revents;
  if (revents & RX_ERROR)
    return; /* stopped by rx */
  char buf[64];
  if (revents & RX_READ)
    while (read(w->fd, buf, sizeof(buf)) > 0)
      ;
  (void)loop;
}

struct sc {
  int timer, idle, prepare, check, async, task, signal, periodic;
};
static struct sc sc;

static void sc_timer_cb(rx_loop *l, rx_timer *w, int r) {
  (void)l, (void)w, (void)r;
  sc.timer++;
}
static void sc_idle_cb(rx_loop *l, rx_idle *w, int r) {
  (void)l, (void)w, (void)r;
  sc.idle++;
}
static void sc_prepare_cb(rx_loop *l, rx_prepare *w, int r) {
  (void)l, (void)w, (void)r;
  sc.prepare++;
}
static void sc_check_cb(rx_loop *l, rx_check *w, int r) {
  (void)l, (void)w, (void)r;
  sc.check++;
}
static void sc_async_cb(rx_loop *l, rx_async *w, int r) {
  (void)l, (void)w, (void)r;
  sc.async++;
}
static void sc_task_fn(rx_loop *l, rx_task *t) {
  (void)l, (void)t;
  sc.task++;
}
static void sc_signal_cb(rx_loop *l, rx_signal *w, int r) {
  (void)l, (void)w, (void)r;
  sc.signal++;
}
static void sc_periodic_cb(rx_loop *l, rx_periodic *w, int r) {
  (void)l, (void)w, (void)r;
  sc.periodic++;
}

static long sc_enomem; /* -ENOMEM returns seen (and retried) */

/* Calls `call`; if it failed with -ENOMEM, that must be because the
 * allocator refused (and only then), and the same call, retried, must
 * succeed. A call that succeeds although an allocation was refused inside it
 * is a bug too (the refusal was swallowed or misreported). */
#define SC_TRY(loop, call)                                              \
  do {                                                                  \
    long f0_ = rxt_heap.failed;                                         \
    int rc_ = (call);                                                   \
    if (rc_ == -ENOMEM && rxt_heap.failed > f0_) {                      \
      sc_enomem++;                                                      \
      if ((loop) != NULL)                                               \
        verify(loop);                                                   \
      rc_ = (call);                                                     \
    } else if (rxt_heap.failed > f0_) {                                 \
      fail_msg("%s: allocation %ld refused, but it returned %d", #call, \
               rxt_heap.fail_at, rc_);                                  \
    }                                                                   \
    if (rc_ != 0)                                                       \
      fail_msg("%s: %d (%s), failing allocation %ld", #call, rc_,       \
               rx_strerror(rc_), rxt_heap.fail_at);                     \
  } while (0)

/* fd numbers that force the fd table to grow several times. */
static const int sc_high[] = {70, 200, 700, 1500, 3100};
enum { SC_NHIGH = sizeof(sc_high) / sizeof(sc_high[0]), SC_NLOW = 8 };

/* Runs ONCE iterations until `cond` or 2 s; a refused allocation inside
 * rx_run() may only show as RX_ERROR on the file watcher (epoll's
 * always-ready list), which then restarts it. */
static void sc_run(rx_loop *loop, struct sc_io *file, int (*cond)(void)) {
  int64_t end = rxt_clock() + RX_SEC(2);
  while (!cond() && rxt_clock() < end) {
    long f0 = rxt_heap.failed;
    int calls = file->calls;
    int rc = rx_run(loop, RX_RUN_ONCE);
    if (rc < 0)
      fail_msg("rx_run: %d (%s), failing allocation %ld", rc, rx_strerror(rc),
               rxt_heap.fail_at);
    if (rxt_heap.failed > f0) {
      /* the only allocation rx_run() makes is epoll's always-ready list */
      if (!(file->calls > calls && (file->last & RX_ERROR) &&
            !rx_is_active(&file->w)))
        fail_msg("allocation %ld refused inside rx_run(), and not reported",
                 rxt_heap.fail_at);
      sc_enomem++;
      verify(loop);
      SC_TRY(loop, rx_io_start(loop, &file->w));
    }
  }
  if (!cond())
    fail_msg("scenario stuck, failing allocation %ld: file %d/%#x, timer %d "
             "idle %d prepare %d check %d async %d task %d signal %d "
             "periodic %d",
             rxt_heap.fail_at, file->calls, file->last, sc.timer, sc.idle,
             sc.prepare, sc.check, sc.async, sc.task, sc.signal, sc.periodic);
}

static struct sc_io sc_low[SC_NLOW], sc_hi[SC_NHIGH], sc_file;
static int sc_lowfd[SC_NLOW][2], sc_hifd[SC_NHIGH][2];

static int sc_all_io(void) {
  for (int i = 0; i < SC_NLOW; i++)
    if (sc_low[i].calls == 0)
      return 0;
  for (int i = 0; i < SC_NHIGH; i++)
    if (sc_hi[i].calls == 0)
      return 0;
  return sc_file.calls > 0 && !(sc_file.last & RX_ERROR);
}

static int sc_all_rest(void) {
  return sc.timer >= 2 && sc.idle > 0 && sc.prepare > 0 && sc.check > 0 &&
         sc.async > 0 && sc.task > 0 && sc.signal > 0 && sc.periodic > 0;
}

/* The scenario, with allocation `fail_at` (counted from its start) refused;
 * 0: none. Returns the allocations it made. */
static long scenario(long fail_at) {
  memset(&sc, 0, sizeof(sc));
  rxt_heap.calls = 0;
  rxt_heap.failed = 0;
  rxt_heap.fail_at = fail_at;
  long base = rxt_heap.base_blocks;

  /* the loop */
  rx_loop *loop = NULL;
  SC_TRY(loop, rx_loop_new(&loop, NULL));
  if (rxt.backend != NULL)
    assert_string_equal(rx_backend_name(loop), rxt.backend);

  /* io watchers on low fds, then on high ones (each grows the table) */
  for (int i = 0; i < SC_NLOW; i++) {
    rxt_pair(sc_lowfd[i]);
    memset(&sc_low[i], 0, sizeof(sc_low[i]));
    rx_io_init(&sc_low[i].w, sc_io_cb, sc_lowfd[i][0],
               i % 2 ? RX_READ : RX_READ | RX_ET);
    SC_TRY(loop, rx_io_start(loop, &sc_low[i].w));
  }
  for (int i = 0; i < SC_NHIGH; i++) {
    rxt_pair_at(sc_high[i], sc_hifd[i]);
    memset(&sc_hi[i], 0, sizeof(sc_hi[i]));
    rx_io_init(&sc_hi[i].w, sc_io_cb, sc_hifd[i][0], RX_READ);
    SC_TRY(loop, rx_io_start(loop, &sc_hi[i].w));
    assert_true(rx_is_active(&sc_hi[i].w));
  }
  /* a regular file: always ready (epoll's always-ready list) */
  char path[] = "/tmp/rx-faults-XXXXXX";
  int ffd = mkostemp(path, O_CLOEXEC);
  assert_true(ffd >= 0);
  unlink(path);
  memset(&sc_file, 0, sizeof(sc_file));
  rx_io_init(&sc_file.w, sc_io_cb, ffd, RX_READ);
  SC_TRY(loop, rx_io_start(loop, &sc_file.w));

  /* every other kind of watcher */
  rx_timer t1, t2;
  rx_timer_init(&t1, sc_timer_cb, RX_MSEC(1), 0);
  rx_timer_init(&t2, sc_timer_cb, RX_MSEC(2), RX_MSEC(1));
  SC_TRY(loop, rx_timer_start(loop, &t1));
  SC_TRY(loop, rx_timer_start(loop, &t2));
  rx_idle idle;
  rx_idle_init(&idle, sc_idle_cb);
  SC_TRY(loop, rx_idle_start(loop, &idle));
  rx_prepare prep;
  rx_prepare_init(&prep, sc_prepare_cb);
  SC_TRY(loop, rx_prepare_start(loop, &prep));
  rx_check chk;
  rx_check_init(&chk, sc_check_cb);
  SC_TRY(loop, rx_check_start(loop, &chk));
  rx_async as;
  rx_async_init(&as, sc_async_cb);
  SC_TRY(loop, rx_async_start(loop, &as));
  SC_TRY(loop, rx_async_send(loop, &as));
  rx_task task = {.fn = sc_task_fn};
  SC_TRY(loop, rx_loop_post(loop, &task));
  rx_signal sig;
  rx_signal_init(&sig, sc_signal_cb, SIGUSR2);
  SC_TRY(loop, rx_signal_start(loop, &sig));
  rx_periodic per;
  rx_periodic_init(&per, sc_periodic_cb, 0, RX_MSEC(1), NULL);
  SC_TRY(loop, rx_periodic_start(loop, &per));
  verify(loop);

  /* run: everything is delivered */
  for (int i = 0; i < SC_NLOW; i++)
    rxt_send(sc_lowfd[i][1], 'l');
  for (int i = 0; i < SC_NHIGH; i++)
    rxt_send(sc_hifd[i][1], 'h');
  raise(SIGUSR2);
  sc_run(loop, &sc_file, sc_all_io);
  /* the file, always pending, keeps idle watchers from running */
  rx_io_stop(loop, &sc_file.w);
  sc_run(loop, &sc_file, sc_all_rest);
  rx_idle_stop(loop, &idle);
  verify(loop);

  /* a second round on a grown table, after a stop and restart of the high
   * watchers (the stops and restarts allocate nothing) */
  for (int i = 0; i < SC_NHIGH; i++) {
    assert_int_equal(rx_io_stop(loop, &sc_hi[i].w), 0);
    SC_TRY(loop, rx_io_start(loop, &sc_hi[i].w));
    sc_hi[i].calls = 0;
    rxt_send(sc_hifd[i][1], 'H');
  }
  for (int i = 0; i < SC_NLOW; i++)
    sc_low[i].calls = 1;
  sc_file.calls = 1;
  sc_file.last = 0;
  sc_run(loop, &sc_file, sc_all_io);

  /* stop all, verify, free */
  for (int i = 0; i < SC_NLOW; i++)
    assert_int_equal(rx_io_stop(loop, &sc_low[i].w), 0);
  for (int i = 0; i < SC_NHIGH; i++)
    assert_int_equal(rx_io_stop(loop, &sc_hi[i].w), 0);
  rx_timer_stop(loop, &t1);
  rx_timer_stop(loop, &t2);
  rx_prepare_stop(loop, &prep);
  rx_check_stop(loop, &chk);
  rx_async_stop(loop, &as);
  rx_signal_stop(loop, &sig);
  rx_periodic_stop(loop, &per);
  assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  verify(loop);
  rx_loop_free(loop);
  if (rxt_heap.blocks != base)
    fail_msg("%ld blocks leaked, failing allocation %ld",
             rxt_heap.blocks - base, fail_at);
  assert_int_equal(rxt_heap.size_mismatch, 0);
  for (int i = 0; i < SC_NLOW; i++)
    rxt_close_pair(sc_lowfd[i]);
  for (int i = 0; i < SC_NHIGH; i++)
    rxt_close_pair(sc_hifd[i]);
  close(ffd);
  long calls = rxt_heap.calls;
  rxt_heap.fail_at = 0;
  return calls;
}

static void test_alloc_failure_sweep(void **state) {
  (void)state;
  if (raise_nofile((rlim_t)sc_high[SC_NHIGH - 1] + 64) != 0) {
    print_message("SKIP: RLIMIT_NOFILE cannot be raised to %d\n",
                  sc_high[SC_NHIGH - 1] + 64);
    rxt.completed = 1;
    skip();
  }
  for (int i = 0; i < SC_NHIGH; i++)
    if (fcntl(sc_high[i], F_GETFD) != -1)
      fail_msg("fd %d is already open", sc_high[i]);
  long total = scenario(0);
  rxt_assert_gt(total, SC_NHIGH); /* the loop and the table's growths */
  assert_int_equal(sc_enomem, 0);
  for (long n = 1; n <= total; n++) {
    sc_enomem = 0;
    scenario(n);
    if (rxt_heap.failed != 1 || sc_enomem != 1)
      fail_msg("allocation %ld of %ld: %ld refused, %ld -ENOMEM seen", n, total,
               rxt_heap.failed, sc_enomem);
  }
  print_message("%ld allocations, each refused once\n", total);
}

/* rx_loop_new() without a backend forced: a refused allocation is -ENOMEM,
 * not a reason to fall back to epoll (the fallback is for a kernel that
 * refuses io_uring). */
static void test_alloc_failure_default_backend(void **state) {
  (void)state;
  char *saved = rxt.backend != NULL ? strdup(rxt.backend) : NULL;
  unsetenv("RX_BACKEND");
  rxt_heap.calls = 0;
  rxt_heap.failed = 0;
  rxt_heap.fail_at = 1;
  rx_loop *loop = NULL;
  int rc = rx_loop_new(&loop, NULL);
  rxt_heap.fail_at = 0;
  if (saved != NULL) {
    setenv("RX_BACKEND", saved, 1);
    free(saved);
  }
  if (rc == 0) {
    const char *name = rx_backend_name(loop);
    const char *reason = rx_backend_reason(loop);
    rx_loop_free(loop);
    if (strcmp(name, "epoll") == 0 && rxt_heap.failed == 1) {
      rx_loop *probe;
      struct rx_loop_options o = {.backend = "io_uring"};
      if (rx_loop_new(&probe, &o) == 0) {
        rx_loop_free(probe);
        rxt.completed = 1; /* nothing left in rx: keep the leak checks */
        fail_msg("the allocator refused once and rx_loop_new() fell back to "
                 "%s (\"%s\") instead of returning -ENOMEM",
                 name, reason);
      }
    }
    return;
  }
  assert_int_equal(rc, -ENOMEM);
  assert_null(loop);
}

/* ===========================================================================
 * 2. 10,000 ready fds; on io_uring through an 8-entry ring.
 */
struct rd {
  rx_io w;
  int calls;
  int last;
  char got;
};

static void rd_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct rd *r = (struct rd *)w;
  r->calls++;
  r->last = revents;
  char buf[64];
  ssize_t n;
  while ((n = read(w->fd, buf, sizeof(buf))) > 0)
    r->got = n == 8 ? buf[0] : buf[n - 1]; /* an eventfd's counter, or bytes */
}

static int setup_tiny(void **state) {
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  const char *b = rxt_env_backend();
  if (b != NULL && strcmp(b, "io_uring") == 0)
    o.ring_entries = 8;
  return rxt_setup_opts(state, &o);
}

static void test_10k_ready_fds(void **state) {
  (void)state;
  enum { N = 10000 };
  /* Socketpairs where RLIMIT_NOFILE can be raised to twice N; else
   * eventfds, one fd each (the hard limit is often 20000 in containers, and
   * raising it needs CAP_SYS_RESOURCE). */
  int pairs = raise_nofile(2 * N + 128) == 0;
  if (!pairs && raise_nofile(N + 128) != 0) {
    print_message("SKIP: RLIMIT_NOFILE cannot be raised to %d\n", N + 128);
    rxt.completed = 1; /* skip() leaves the body: the checks still apply */
    skip();
  }
  int(*sv)[2] = calloc(N, sizeof(*sv));
  struct rd *r = calloc(N, sizeof(*r));
  assert_non_null(sv);
  assert_non_null(r);
  for (int k = 0; k < N; k++) {
    if (pairs) {
      rxt_pair(sv[k]);
    } else {
      sv[k][0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      assert_true(sv[k][0] >= 0);
      sv[k][1] = -1;
    }
    rx_io_init(&r[k].w, rd_cb, sv[k][0],
               k % 3 == 0 ? RX_READ | RX_ET : RX_READ);
    assert_int_equal(rx_io_start(rxt.loop, &r[k].w), 0);
  }
  print_message("%d %s\n", N, pairs ? "socketpairs" : "eventfds");
  rxt_run_nowait(rxt.loop, 2); /* every poll armed */
  struct rx_metrics m0, m1;
  rx_loop_metrics(rxt.loop, &m0);
  for (int round = 1; round <= 2; round++) {
    char c = round == 1 ? 'x' : 'y';
    for (int k = 0; k < N; k++) {
      if (pairs) {
        rxt_send(sv[k][1], c);
      } else {
        uint64_t v = (uint64_t)c;
        assert_int_equal(write(sv[k][0], &v, 8), 8);
      }
    }
    int done = 0, iters = 0;
    int64_t end = rxt_clock() + RX_SEC(5);
    while (done < N && rxt_clock() < end) {
      assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
      iters++;
      done = 0;
      for (int k = 0; k < N; k++)
        done += r[k].calls >= round;
    }
    if (done != N)
      fail_msg("round %d: %d of %d watchers called after %d iterations", round,
               done, N, iters);
    rxt_run_nowait(rxt.loop, 3);
    for (int k = 0; k < N; k++) {
      if (r[k].calls != round || r[k].got != c || r[k].last != RX_READ)
        fail_msg("round %d: watcher %d: %d calls, got '%c', revents %#x", round,
                 k, r[k].calls, r[k].got, r[k].last);
    }
    print_message("round %d: %d ready fds reported in %d iterations\n", round,
                  N, iters);
  }
  rx_loop_metrics(rxt.loop, &m1);
  print_message("%s: overflows %llu, completions %llu, enters %llu\n",
                rx_backend_name(rxt.loop),
                (unsigned long long)(m1.overflows - m0.overflows),
                (unsigned long long)(m1.completions - m0.completions),
                (unsigned long long)(m1.enters - m0.enters));
  rxt_assert_ge(m1.completions - m0.completions, 2 * N);
  if (rxt_is_uring(rxt.loop))
    rxt_assert_gt(m1.overflows, m0.overflows);
  for (int k = 0; k < N; k++)
    rx_io_stop(rxt.loop, &r[k].w);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  for (int k = 0; k < N; k++)
    rxt_close_pair(sv[k]);
  free(sv);
  free(r);
}

/* ===========================================================================
 * 3. A storm of signals at the loop's thread while it waits.
 */
static volatile sig_atomic_t storm_handled;

static void storm_handler(int sig) {
  (void)sig;
  storm_handled++;
}

struct storm {
  pthread_t target;
  int pipe_w;
  int64_t write_at; /* ns after start */
  int64_t length;
  long sent;
  int stop;
};

static void *storm_thread(void *arg) {
  struct storm *s = arg;
  int64_t t0 = rxt_clock();
  int written = 0;
  while (rxt_clock() - t0 < s->length &&
         !__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
    for (int i = 0; i < 20; i++) {
      pthread_kill(s->target, SIGUSR1);
      s->sent++;
    }
    if (!written && rxt_clock() - t0 >= s->write_at) {
      char c = 'p';
      while (write(s->pipe_w, &c, 1) != 1)
        ;
      written = 1;
    }
    struct timespec ts = {0, 20000}; /* ~20 µs: tens of thousands a second */
    nanosleep(&ts, NULL);
  }
  return NULL;
}

struct storm_io {
  rx_io w;
  int calls;
  char got;
};

static void storm_io_cb(rx_loop *loop, rx_io *w, int revents) {
  struct storm_io *x = (struct storm_io *)w;
  (void)revents;
  x->calls++;
  char c;
  ssize_t n;
  while ((n = read(w->fd, &c, 1)) == -1 && errno == EINTR)
    ;
  if (n == 1)
    x->got = c;
  rx_io_stop(loop, w);
}

struct storm_timer {
  rx_timer w;
  int64_t fired_at;
};

static void storm_timer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  ((struct storm_timer *)w)->fired_at = rxt_clock();
}

static void test_signal_storm(void **state) {
  (void)state;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = storm_handler;
  sa.sa_flags = 0; /* no SA_RESTART: every wait is interrupted */
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
  storm_handled = 0;

  int p[2];
  assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  struct storm_io x;
  memset(&x, 0, sizeof(x));
  rx_io_init(&x.w, storm_io_cb, p[0], RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &x.w), 0);
  struct storm_timer t;
  memset(&t, 0, sizeof(t));
  rx_timer_init(&t.w, storm_timer_cb, RX_MSEC(700), 0);
  int64_t started = rxt_clock(); /* <= rx_now(): the deadline is after */
  rx_now_update(rxt.loop);
  assert_int_equal(rx_timer_start(rxt.loop, &t.w), 0);

  struct storm s = {pthread_self(), p[1], RX_MSEC(300), RX_MSEC(1000), 0, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, storm_thread, &s), 0);
  int runs = 0;
  int64_t pipe_seen = 0;
  while ((x.calls == 0 || t.fired_at == 0) &&
         rxt_clock() - started < RX_SEC(5)) {
    int rc = rx_run(rxt.loop, RX_RUN_ONCE);
    if (rc < 0)
      fail_msg("rx_run: %d (%s) during the storm", rc, rx_strerror(rc));
    runs++;
    if (x.calls > 0 && pipe_seen == 0)
      pipe_seen = rxt_clock();
  }
  /* keep waiting under the storm until it is over: still no errors */
  rx_timer t2;
  rx_timer_init(&t2, rxt_guard_cb, RX_MSEC(100), RX_MSEC(100));
  int expired = 0;
  t2.data = &expired;
  rx_timer_start(rxt.loop, &t2);
  while (rxt_clock() - started < RX_MSEC(1100)) {
    int rc = rx_run(rxt.loop, RX_RUN_ONCE);
    if (rc < 0)
      fail_msg("rx_run: %d (%s) during the storm", rc, rx_strerror(rc));
    runs++;
  }
  rx_timer_stop(rxt.loop, &t2);
  __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
  pthread_join(th, NULL);
  assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);

  print_message("%ld signals sent, %ld handled, %d iterations\n", s.sent,
                (long)storm_handled, runs);
  rxt_assert_gt(storm_handled, 100);
  assert_int_equal(x.calls, 1);
  assert_int_equal(x.got, 'p');
  if (t.fired_at == 0)
    fail_msg("the timer never fired");
  rxt_assert_ge(t.fired_at - started, RX_MSEC(700));
  rxt_assert_lt(t.fired_at - started, RX_MSEC(1500));
  rxt_assert_ge(pipe_seen - started, RX_MSEC(300));
  rxt_assert_lt(pipe_seen - started, RX_MSEC(1000));
  rxt_assert_ge(expired, 1);
  close(p[0]);
  close(p[1]);
}

/* ===========================================================================
 * 4. accept4() fails with EMFILE: existing connections go on being served,
 * and a connection is accepted again once one is closed. The server stops
 * its accept watcher on EMFILE and starts it again when a connection closes
 * (libuv's advice); in `keep` mode it leaves the watcher active, so that the
 * loop reports the listener every iteration, and the connections must still
 * be served.
 */
enum { SRV_MAX = 8 };

struct conn {
  rx_io w;
  struct srv *srv;
  int open;
};

struct srv {
  rx_io accept_w;
  rx_loop *loop;
  int keep;
  int emfile; /* accept4() EMFILE seen */
  int accepted;
  int closed;
  int echoed;
  struct conn conns[SRV_MAX];
};

static void conn_cb(rx_loop *loop, rx_io *w, int revents) {
  struct conn *c = (struct conn *)w;
  (void)revents;
  char buf[256];
  ssize_t n = read(w->fd, buf, sizeof(buf));
  if (n > 0) {
    assert_int_equal(write(w->fd, buf, (size_t)n), n);
    c->srv->echoed += (int)n;
    return;
  }
  if (n == -1 && errno == EAGAIN)
    return;
  rx_io_stop(loop, w);
  close(w->fd);
  c->open = 0;
  c->srv->closed++;
  if (!c->srv->keep)
    assert_int_equal(rx_io_start(loop, &c->srv->accept_w), 0);
}

static void accept_cb(rx_loop *loop, rx_io *w, int revents) {
  struct srv *s = (struct srv *)w;
  (void)revents;
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        s->emfile++;
        if (!s->keep)
          rx_io_stop(loop, w);
      } else {
        assert_int_equal(errno, EAGAIN);
      }
      return;
    }
    int slot = 0;
    while (slot < SRV_MAX && s->conns[slot].open)
      slot++;
    assert_true(slot < SRV_MAX);
    struct conn *c = &s->conns[slot];
    memset(c, 0, sizeof(*c));
    c->srv = s;
    c->open = 1;
    rx_io_init(&c->w, conn_cb, fd, RX_READ);
    assert_int_equal(rx_io_start(loop, &c->w), 0);
    s->accepted++;
  }
}

/* Runs until *v >= want, at most 3 s. */
static void srv_run(rx_loop *loop, const int *v, int want) {
  int64_t end = rxt_clock() + RX_SEC(3);
  while (*v < want && rxt_clock() < end)
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  if (*v < want)
    fail_msg("stuck: %d < %d", *v, want);
}

/* Writes `c` on a client and waits, running the loop, for its echo. */
static void echo(rx_loop *loop, int fd, char c) {
  rxt_send(fd, c);
  int64_t end = rxt_clock() + RX_SEC(3);
  for (;;) {
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    char r;
    ssize_t n = read(fd, &r, 1);
    if (n == 1) {
      assert_int_equal(r, c);
      return;
    }
    assert_true(n == -1 && errno == EAGAIN);
    if (rxt_clock() > end)
      fail_msg("no echo of '%c'", c);
  }
}

static void emfile(int keep) {
  enum { S = 3 };
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(lfd >= 0);
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  int len = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1,
                     "rx-faults-%d-%d", (int)getpid(), keep);
  socklen_t alen =
      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sun, alen), 0);
  assert_int_equal(listen(lfd, 16), 0);
  static struct srv s;
  memset(&s, 0, sizeof(s));
  s.keep = keep;
  s.loop = rxt.loop;
  rx_io_init(&s.accept_w, accept_cb, lfd, RX_READ);
  assert_int_equal(rx_io_start(rxt.loop, &s.accept_w), 0);

  /* clients made before the limit is lowered: they use no new slot */
  int cl[S + 2];
  for (int i = 0; i < S + 2; i++) {
    cl[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl[i] >= 0);
  }
  int maxfd = 0;
  for (int fd = 0; fd < 1024; fd++)
    if (fcntl(fd, F_GETFD) != -1)
      maxfd = fd;
  struct rlimit saved;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit low = {(rlim_t)maxfd + 1 + S, saved.rlim_max};
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  /* fill the holes below the limit, then free exactly S slots */
  int fillers[1024], nfill = 0;
  int fd;
  while ((fd = fcntl(lfd, F_DUPFD_CLOEXEC, 0)) >= 0)
    fillers[nfill++] = fd;
  assert_int_equal(errno, EMFILE);
  assert_true(nfill >= S);
  for (int i = 0; i < S; i++)
    close(fillers[--nfill]);

  for (int i = 0; i < S; i++) {
    assert_int_equal(connect(cl[i], (struct sockaddr *)&sun, alen), 0);
    fcntl(cl[i], F_SETFL, O_NONBLOCK);
  }
  srv_run(rxt.loop, &s.accepted, S);
  /* one more: accept4() fails with EMFILE */
  assert_int_equal(connect(cl[S], (struct sockaddr *)&sun, alen), 0);
  fcntl(cl[S], F_SETFL, O_NONBLOCK);
  srv_run(rxt.loop, &s.emfile, 1);
  assert_int_equal(s.accepted, S);
  /* the existing connections are still served, several times over */
  for (int round = 0; round < 20; round++)
    for (int i = 0; i < S; i++)
      echo(rxt.loop, cl[i], (char)('a' + (round + i) % 26));
  assert_int_equal(s.accepted, S);
  if (keep)
    rxt_assert_gt(s.emfile, 1); /* the listener was reported again */
  /* a connection closes: the pending one is accepted and served */
  close(cl[0]);
  srv_run(rxt.loop, &s.closed, 1);
  srv_run(rxt.loop, &s.accepted, S + 1);
  echo(rxt.loop, cl[S], 'z');
  for (int i = 1; i < S; i++)
    echo(rxt.loop, cl[i], 'w');
  print_message("%s: %d EMFILE, %d bytes echoed\n",
                keep ? "watcher kept" : "watcher stopped", s.emfile, s.echoed);

  /* clean up: everything below the restored limit */
  while (nfill > 0)
    close(fillers[--nfill]);
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
  for (int i = 0; i < SRV_MAX; i++)
    if (s.conns[i].open) {
      rx_io_stop(rxt.loop, &s.conns[i].w);
      close(s.conns[i].w.fd);
    }
  rx_io_stop(rxt.loop, &s.accept_w);
  for (int i = 1; i < S + 2; i++)
    close(cl[i]);
  close(lfd);
  assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
}

static void test_emfile_stop_accepting(void **state) {
  (void)state;
  emfile(0);
}

static void test_emfile_keep_accepting(void **state) {
  (void)state;
  emfile(1);
}

/* ===========================================================================
 * 5. Two watchers with events in one backend batch: the first callback to
 * run stops the other, closes its fd, opens a new file under the same
 * number and starts a new watcher on it. The old file's event, already
 * collected, must reach neither the old watcher nor the new one; the new
 * file's own events must arrive.
 */
struct swap {
  rx_io w;
  struct swap_ctx *ctx;
  int idx;
  int calls;
  int last;
  char got;
};

struct swap_ctx {
  struct swap a[2];
  struct swap neu;
  int sv[2][2];
  int nsv[2];
  int swapped; /* index of the watcher that was replaced + 1 */
  int events;
};

static void swap_cb(rx_loop *loop, rx_io *w, int revents) {
  struct swap *x = (struct swap *)w;
  struct swap_ctx *c = x->ctx;
  x->calls++;
  x->last = revents;
  char buf[16];
  ssize_t n;
  while ((n = read(w->fd, buf, sizeof(buf))) > 0)
    x->got = buf[n - 1];
  if (x == &c->neu) {
    if (x->got == 0)
      fail_msg("the new watcher was called (%#x) with nothing to read",
               revents);
    return;
  }
  if (c->swapped)
    return;
  /* replace the other one */
  struct swap *o = &c->a[1 - x->idx];
  int fd = o->w.fd;
  assert_int_equal(rx_io_stop(loop, &o->w), 0);
  close(fd);
  c->sv[o->idx][0] = -1;
  rxt_pair_at(fd, c->nsv);
  rx_io_init(&c->neu.w, swap_cb, fd, c->events);
  assert_int_equal(rx_io_start(loop, &c->neu.w), 0);
  c->swapped = o->idx + 1;
}

static void swap_in_batch(int events) {
  static struct swap_ctx c;
  memset(&c, 0, sizeof(c));
  c.events = events;
  c.neu.ctx = &c;
  c.neu.idx = 2;
  for (int i = 0; i < 2; i++) {
    rxt_pair(c.sv[i]);
    c.a[i].ctx = &c;
    c.a[i].idx = i;
    rx_io_init(&c.a[i].w, swap_cb, c.sv[i][0], events);
    assert_int_equal(rx_io_start(rxt.loop, &c.a[i].w), 0);
  }
  rxt_run_nowait(rxt.loop, 2); /* both armed */
  rxt_send(c.sv[0][1], 'A');
  rxt_send(c.sv[1][1], 'B');
  for (int i = 0; i < 100 && !c.swapped; i++)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_true(c.swapped);
  int gone = c.swapped - 1;
  rxt_run_nowait(rxt.loop, 5);
  /* the replaced watcher: not called after its stop (it may have been
   * called before, if its event came in an earlier batch) */
  assert_int_equal(c.neu.calls, 0);
  assert_int_equal(c.a[1 - gone].calls, 1);
  assert_int_equal(c.a[gone].calls, 0);
  /* the new file's events arrive */
  rxt_send(c.nsv[1], 'N');
  for (int i = 0; i < 200 && c.neu.calls == 0; i++) {
    assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
    if (c.neu.calls == 0)
      rxt_sleep_ns(RX_USEC(200));
  }
  assert_int_equal(c.neu.calls, 1);
  assert_int_equal(c.neu.got, 'N');
  assert_int_equal(c.neu.last, RX_READ);
  rx_io_stop(rxt.loop, &c.neu.w);
  rx_io_stop(rxt.loop, &c.a[1 - gone].w);
  rxt_close_pair(c.sv[0]);
  rxt_close_pair(c.sv[1]);
  rxt_close_pair(c.nsv);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
}

static void test_fd_swap_in_batch_level(void **state) {
  (void)state;
  for (int i = 0; i < 20; i++)
    swap_in_batch(RX_READ);
}

static void test_fd_swap_in_batch_edge(void **state) {
  (void)state;
  for (int i = 0; i < 20; i++)
    swap_in_batch(RX_READ | RX_ET);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST_NOLOOP(test_alloc_failure_sweep),
      RXT_TEST_NOLOOP(test_alloc_failure_default_backend),
      RXT_TEST_WITH(test_10k_ready_fds, setup_tiny),
      RXT_TEST(test_signal_storm),
      RXT_TEST(test_emfile_stop_accepting),
      RXT_TEST(test_emfile_keep_accepting),
      RXT_TEST(test_fd_swap_in_batch_level),
      RXT_TEST(test_fd_swap_in_batch_edge),
  };
  const char *b = rxt_env_backend();
  char name[128];
  snprintf(name, sizeof(name), "test-faults [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
