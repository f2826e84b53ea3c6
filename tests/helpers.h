/*
 * helpers.h - what every rx test shares: the per-test fixture, a tracking
 * allocator, fd-leak checks, socketpairs, clocks, recording callbacks and
 * a watchdog.
 *
 * The fixture (rxt_setup / rxt_teardown) does what STYLE.md example 13 asks
 * of every loop test:
 *   - it counts the entries of /proc/self/fd before the test and after the
 *     loop is freed, and fails the test if they differ (an fd leaked);
 *   - it installs a tracking allocator with rx_set_allocator() before the
 *     loop is made, and after rx_loop_free() checks that every block rx
 *     allocated was freed, and that every free and realloc was given the size
 *     the block was allocated with (the sized-free contract in rx.h, which is
 *     what jemalloc's sdallocx relies on);
 *   - it makes the loop from $RX_BACKEND (meson runs each loop test once
 *     with RX_BACKEND=io_uring and once with RX_BACKEND=epoll), so a test
 *     body never names a backend unless it is about one.
 *
 * The tracking allocator can also fail on purpose (rxt_heap.fail_*), which
 * is how the tests reach rx's -ENOMEM paths (STYLE.md example 14).
 *
 * Everything here is static inline: each test is a single translation unit
 * and not every test uses every helper.
 */
#ifndef RX_TEST_HELPERS_H
#define RX_TEST_HELPERS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rx.h"

/* ---------------------------------------------------------------------------
 * Assertions on signed 64-bit values, printed as such (cmocka's integer
 * assertions print negative numbers as huge unsigned ones).
 */
#define rxt_assert_cmp(a, op, b)                                               \
  do {                                                                         \
    long long rxt_a_ = (long long)(a), rxt_b_ = (long long)(b);                \
    if (!(rxt_a_ op rxt_b_))                                                   \
      fail_msg("%s:%d: %s %s %s failed: %lld vs %lld", __FILE__, __LINE__, #a, \
               #op, #b, rxt_a_, rxt_b_);                                       \
  } while (0)
#define rxt_assert_eq(a, b) rxt_assert_cmp(a, ==, b)
#define rxt_assert_ge(a, b) rxt_assert_cmp(a, >=, b)
#define rxt_assert_le(a, b) rxt_assert_cmp(a, <=, b)
#define rxt_assert_gt(a, b) rxt_assert_cmp(a, >, b)
#define rxt_assert_lt(a, b) rxt_assert_cmp(a, <, b)

/* Line-buffered stdout, so that a test killed by meson's timeout still
 * shows how far it got. */
__attribute__((constructor)) static void rxt_line_buffered(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
}

/* ---------------------------------------------------------------------------
 * Time.
 */
static inline int64_t rxt_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void rxt_sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* ---------------------------------------------------------------------------
 * The tracking allocator. Each block carries a 16-byte header with the size
 * it was allocated with, so that the size rx passes to free and realloc can
 * be checked.
 */
struct rxt_heap {
  long blocks;        /* live blocks */
  long long bytes;    /* live bytes */
  long calls;         /* alloc + realloc calls so far */
  long size_mismatch; /* free/realloc given a size the block does not have */
  long failed;        /* calls refused on purpose */
  long fail_at;       /* refuse the call with this `calls` number (0: none) */
  int fail_all;       /* refuse every alloc and realloc */
  size_t fail_above;  /* refuse requests larger than this (0: none) */
  long base_blocks;   /* live at rxt_heap_install() (see rxt_abandoned) */
  long long base_bytes;
};
static struct rxt_heap rxt_heap;

/* Loops abandoned by tests that failed inside them (see rxt_teardown). They
 * keep the allocator installed (rx_set_allocator() is -EBUSY while a loop
 * exists), so later tests count their blocks from a baseline instead. */
static int rxt_abandoned;

#define RXT_HDR 16
#define RXT_MAGIC 0x7278746573746d6dULL

static inline int rxt_heap_refuse(size_t size) {
  rxt_heap.calls++;
  if (rxt_heap.fail_all ||
      (rxt_heap.fail_at != 0 && rxt_heap.calls == rxt_heap.fail_at) ||
      (rxt_heap.fail_above != 0 && size > rxt_heap.fail_above)) {
    rxt_heap.failed++;
    return 1;
  }
  return 0;
}

static inline void *rxt_alloc(void *ctx, size_t size) {
  (void)ctx;
  if (rxt_heap_refuse(size))
    return NULL;
  uint64_t *h = malloc(size + RXT_HDR);
  if (h == NULL)
    return NULL;
  h[0] = size;
  h[1] = RXT_MAGIC;
  rxt_heap.blocks++;
  rxt_heap.bytes += (long long)size;
  return (char *)h + RXT_HDR;
}

static inline uint64_t *rxt_header(void *ptr, size_t size) {
  uint64_t *h = (uint64_t *)(void *)((char *)ptr - RXT_HDR);
  if (h[1] != RXT_MAGIC)
    fail_msg("rx freed a block it did not allocate");
  if (h[0] != size) {
    rxt_heap.size_mismatch++;
    print_error("rx passed size %zu for a block of %zu bytes\n", size,
                (size_t)h[0]);
  }
  return h;
}

static inline void *rxt_realloc(void *ctx, void *ptr, size_t old_size,
                                size_t new_size) {
  (void)ctx;
  if (rxt_heap_refuse(new_size))
    return NULL;
  uint64_t *h = rxt_header(ptr, old_size);
  size_t real_old = (size_t)h[0];
  uint64_t *n = realloc(h, new_size + RXT_HDR);
  if (n == NULL)
    return NULL;
  n[0] = new_size;
  rxt_heap.bytes += (long long)new_size - (long long)real_old;
  return (char *)n + RXT_HDR;
}

static inline void rxt_free(void *ctx, void *ptr, size_t size) {
  (void)ctx;
  if (ptr == NULL)
    return;
  uint64_t *h = rxt_header(ptr, size);
  rxt_heap.blocks--;
  rxt_heap.bytes -= (long long)h[0];
  h[1] = 0;
  free(h);
}

static const struct rx_allocator rxt_allocator = {rxt_alloc, rxt_realloc,
                                                  rxt_free, NULL};

/* Installs the tracking allocator with clean counters. */
static inline void rxt_heap_install(void) {
  if (rxt_abandoned) {
    rxt_heap.fail_at = 0;
    rxt_heap.fail_all = 0;
    rxt_heap.fail_above = 0;
    rxt_heap.size_mismatch = 0;
    rxt_heap.base_blocks = rxt_heap.blocks;
    rxt_heap.base_bytes = rxt_heap.bytes;
    return;
  }
  memset(&rxt_heap, 0, sizeof(rxt_heap));
  assert_int_equal(rx_set_allocator(&rxt_allocator), 0);
}

/* Checks that everything rx allocated was freed with the right sizes, and
 * puts libc back. */
static inline void rxt_heap_check_and_remove(void) {
  long blocks = rxt_heap.blocks - rxt_heap.base_blocks;
  long mismatch = rxt_heap.size_mismatch;
  long long bytes = rxt_heap.bytes - rxt_heap.base_bytes;
  if (!rxt_abandoned)
    assert_int_equal(rx_set_allocator(NULL), 0);
  if (blocks != 0 || bytes != 0)
    fail_msg("rx leaked %ld blocks (%lld bytes)", blocks, bytes);
  if (mismatch != 0)
    fail_msg("rx gave free/realloc a wrong size %ld times", mismatch);
}

/* ---------------------------------------------------------------------------
 * Timers.
 */

/* A timer callback that counts its fires in the int `data` points at: a
 * guard that a test asserts never fired. */
static inline void rxt_count_fires(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  ++*(int *)w->data;
}

/* ---------------------------------------------------------------------------
 * File descriptors.
 */

/* Open fds of this process, not counting the one used to count them. */
static inline int rxt_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1;
}

/* A non-blocking AF_UNIX stream socketpair. */
static inline void rxt_pair(int sv[2]) {
  assert_int_equal(
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
      0);
}

/* A socketpair whose first end is the free fd number `fd`: how a test
 * hands an fd number to a new file. */
static inline void rxt_pair_at(int fd, int sv[2]) {
  rxt_pair(sv);
  if (sv[1] == fd) {
    sv[1] = sv[0];
    sv[0] = fd;
  } else if (sv[0] != fd) {
    assert_int_equal(dup3(sv[0], fd, O_CLOEXEC), fd);
    close(sv[0]);
    sv[0] = fd;
  }
}

/* How many of `want` socketpairs fit under RLIMIT_NOFILE, raised
 * towards its hard limit first (4 fds a pair: 2 for the pair, room for
 * the loop's own). */
static inline int rxt_pairs_allowed(int want) {
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rlim_t need = (rlim_t)(4 * want + 64);
  if (rl.rlim_cur >= need)
    return want;
  rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  int n = rl.rlim_cur < need ? ((int)rl.rlim_cur - 64) / 4 : want;
  print_message("RLIMIT_NOFILE %llu: %d socketpairs\n",
                (unsigned long long)rl.rlim_cur, n);
  return n;
}

static inline void rxt_close_pair(int sv[2]) {
  if (sv[0] >= 0)
    close(sv[0]);
  if (sv[1] >= 0)
    close(sv[1]);
  sv[0] = sv[1] = -1;
}

/* Writes one byte (`c`) to fd. */
static inline void rxt_send(int fd, char c) {
  assert_int_equal(write(fd, &c, 1), 1);
}

/* Reads everything there is; returns the byte count (0 when nothing was
 * there, -1 at EOF with nothing read). */
static inline int rxt_drain(int fd) {
  char buf[4096];
  int total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      total += (int)n;
      continue;
    }
    if (n == 0)
      return total > 0 ? total : -1;
    return total;
  }
}

/* ---------------------------------------------------------------------------
 * The fixture.
 */
struct rxt {
  rx_loop *loop;
  int fds_before;
  const char *backend;        /* $RX_BACKEND, or NULL */
  void (*body)(void **state); /* the test, when run by rxt_run_body */
  int completed;              /* the body returned (did not fail) */
};
static struct rxt rxt;

/* A test body, handed to the fixture as cmocka's initial state. */
struct rxt_case {
  void (*fn)(void **state);
};

static inline const char *rxt_env_backend(void) {
  const char *b = getenv("RX_BACKEND");
  return b != NULL && *b != '\0' ? b : NULL;
}

static inline int rxt_is_uring(const rx_loop *loop) {
  return strcmp(rx_backend_name(loop), "io_uring") == 0;
}

/* Runs the body and notes that it returned. A cmocka assertion that fails
 * longjmps out of the body, possibly from inside rx_run(), and leaves
 * watchers in dead stack frames linked into the loop; rxt_teardown then
 * abandons the loop instead of freeing it (freeing would walk those frames
 * and crash or hang, hiding the real failure). */
static inline void rxt_run_body(void **state) {
  rxt.completed = 0;
  rxt.body(state);
  rxt.completed = 1;
}

/* Checks for leaks without making a loop: for tests that make their own. */
static inline int rxt_setup_noloop(void **state) {
  const struct rxt_case *c = *state;
  memset(&rxt, 0, sizeof(rxt));
  rxt.body = c != NULL ? c->fn : NULL;
  rxt.completed = 1; /* unless rxt_run_body runs the test */
  rxt.backend = rxt_env_backend();
  rxt.fds_before = rxt_count_fds();
  rxt_heap_install();
  *state = &rxt;
  return 0;
}

static inline int rxt_teardown_noloop(void **state) {
  (void)state;
  if (!rxt.completed) {
    print_error("the test failed inside rx: its loops are abandoned, and "
                "the leak checks skipped\n");
    rxt_abandoned++;
    rxt.loop = NULL;
    return 0;
  }
  if (rxt.loop != NULL) {
    rx_loop_free(rxt.loop);
    rxt.loop = NULL;
  }
  rxt_heap_check_and_remove();
  int after = rxt_count_fds();
  if (after != rxt.fds_before)
    fail_msg("fd leak: %d open before the test, %d after", rxt.fds_before,
             after);
  return 0;
}

/* RX_LOOP_DEFER when $RXT_DEFER is set (meson runs the loop tests once
 * more on io_uring so), else 0: the flags every test loop gets. */
static inline unsigned rxt_loop_flags(void) {
  const char *d = getenv("RXT_DEFER");
  return d != NULL && *d != '\0' && strcmp(d, "0") != 0 ? RX_LOOP_DEFER : 0;
}

/* rx_loop_new() with the flags of rxt_loop_flags(), for a test's second
 * loop (the fixture makes the first). */
static inline int rxt_loop_new(rx_loop **loop) {
  struct rx_loop_options o = {.flags = rxt_loop_flags()};
  return rx_loop_new(loop, &o);
}

/* Makes a loop with `opts` (backend from $RX_BACKEND unless opts say; the
 * flags of rxt_loop_flags() added). */
static inline int rxt_setup_opts(void **state,
                                 const struct rx_loop_options *opts) {
  rxt_setup_noloop(state);
  struct rx_loop_options o = {0};
  if (opts != NULL)
    o = *opts;
  o.flags |= rxt_loop_flags();
  int rc = rx_loop_new(&rxt.loop, &o);
  if (rc != 0) {
    print_error("rx_loop_new: %s\n", rx_strerror(rc));
    return -1;
  }
  if (rxt.backend != NULL && (opts == NULL || opts->backend == NULL) &&
      strcmp(rx_backend_name(rxt.loop), rxt.backend) != 0) {
    print_error("RX_BACKEND=%s gave %s\n", rxt.backend,
                rx_backend_name(rxt.loop));
    return -1;
  }
  return 0;
}

static inline int rxt_setup(void **state) {
  return rxt_setup_opts(state, NULL);
}

static inline int rxt_teardown(void **state) {
  return rxt_teardown_noloop(state);
}

/* A test with the fixture `setup` (which must call rxt_setup_noloop or
 * rxt_setup_opts) and rxt_teardown. */
#define RXT_TEST_WITH(f, setup)                                          \
  {                                                                      \
    .name = #f, .test_func = rxt_run_body, .setup_func = setup,          \
    .teardown_func = rxt_teardown, .initial_state = &(struct rxt_case) { \
      f                                                                  \
    }                                                                    \
  }
#define RXT_TEST(f) RXT_TEST_WITH(f, rxt_setup)
#define RXT_TEST_NOLOOP(f) RXT_TEST_WITH(f, rxt_setup_noloop)

/* ---------------------------------------------------------------------------
 * Running.
 */

static inline void rxt_guard_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  *(int *)w->data = 1;
}

/* Runs RX_RUN_ONCE iterations until *done is non-zero or `limit` ns have
 * passed (a guard timer keeps ONCE from blocking longer); returns *done. */
static inline int rxt_run_until(rx_loop *loop, const int *done, int64_t limit) {
  /* Static, so that a test that fails inside rx_run() does not leave a
   * dead stack frame in the loop's timer wheel for the teardown. */
  static int expired;
  static rx_timer guard;
  expired = 0;
  rx_timer_init(&guard, rxt_guard_cb, limit, 0);
  guard.data = &expired;
  rx_now_update(loop);
  assert_int_equal(rx_timer_start(loop, &guard), 0);
  while (!*done && !expired)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  rx_timer_stop(loop, &guard);
  return *done;
}

/* Runs `n` RX_RUN_NOWAIT iterations. */
static inline void rxt_run_nowait(rx_loop *loop, int n) {
  for (int i = 0; i < n; i++)
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
}

/* ---------------------------------------------------------------------------
 * Recording callbacks: a watcher whose data points at a struct rxt_rec and
 * whose callback is rxt_rec_<kind>_cb notes there what each call saw, for
 * the test to assert afterwards.
 */
struct rxt_rec {
  int calls;
  int revents;        /* of the last call */
  int all_revents;    /* OR of every call */
  uint64_t iteration; /* rx_iteration() in the last call */
  int64_t now;        /* rx_now() in the last call */
  int64_t wall;       /* CLOCK_MONOTONIC in the last call */
  int tag;            /* appended to rxt_order, if non-zero */
  int was_active;     /* rx_is_active() of the watcher in the last call */
};

/* The order in which tagged recorders were called (rxt_norder entries);
 * a test that reads it sets rxt_norder to 0 first. */
static int rxt_order[64];
static int rxt_norder;

static inline void rxt_rec_note(rx_loop *loop, struct rxt_rec *r, int revents,
                                int active) {
  r->calls++;
  r->revents = revents;
  r->all_revents |= revents;
  r->iteration = rx_iteration(loop);
  r->now = rx_now(loop);
  r->wall = rxt_clock();
  r->was_active = active;
  if (r->tag != 0 && rxt_norder < 64)
    rxt_order[rxt_norder++] = r->tag;
}

#define RXT_REC_CB(kind)                                                     \
  static inline void rxt_rec_##kind##_cb(rx_loop *loop, rx_##kind *w,        \
                                         int revents) {                      \
    rxt_rec_note(loop, (struct rxt_rec *)w->data, revents, rx_is_active(w)); \
  }
RXT_REC_CB(io)
RXT_REC_CB(timer)
RXT_REC_CB(periodic)
RXT_REC_CB(signal)
RXT_REC_CB(child)
RXT_REC_CB(stat)
RXT_REC_CB(idle)
RXT_REC_CB(prepare)
RXT_REC_CB(check)
RXT_REC_CB(async)
RXT_REC_CB(cleanup)
RXT_REC_CB(embed)
RXT_REC_CB(fork)
#undef RXT_REC_CB

/* rx_verify() finds the loop sound and says nothing. */
static inline void rxt_assert_verified(rx_loop *loop) {
  const char *what = "unset";
  int rc = rx_verify(loop, &what);
  if (rc != 0)
    fail_msg("rx_verify: %d (%s)", rc, what != NULL ? what : "NULL");
  assert_null(what);
}

/* The watchdog: if not stopped within `ns`, posts a task to the loop that
 * breaks every rx_run() on it, so that a test of "does not block" fails
 * instead of hanging. Static: a task posted late is run by the next
 * rx_run() or by rx_loop_free(), after the test body has returned. */
static struct {
  pthread_t th;
  rx_loop *loop;
  int64_t ns;
  int stop;  /* atomic */
  int fired; /* atomic */
  rx_task task;
} rxt_wd;

static inline void rxt_wd_task(rx_loop *loop, rx_task *task) {
  (void)task;
  rx_break(loop, RX_BREAK_ALL);
}

static inline void *rxt_wd_main(void *arg) {
  (void)arg;
  int64_t end = rxt_clock() + rxt_wd.ns;
  while (!__atomic_load_n(&rxt_wd.stop, __ATOMIC_ACQUIRE)) {
    if (rxt_clock() >= end) {
      __atomic_store_n(&rxt_wd.fired, 1, __ATOMIC_RELEASE);
      rxt_wd.task.fn = rxt_wd_task;
      rx_loop_post(rxt_wd.loop, &rxt_wd.task);
      break;
    }
    rxt_sleep_ns(RX_MSEC(1));
  }
  return NULL;
}

static inline void rxt_wd_start(rx_loop *loop, int64_t ns) {
  rxt_wd.loop = loop;
  rxt_wd.ns = ns;
  rxt_wd.stop = 0;
  rxt_wd.fired = 0;
  assert_int_equal(pthread_create(&rxt_wd.th, NULL, rxt_wd_main, NULL), 0);
}

/* Whether the watchdog has fired (it keeps running). */
static inline int rxt_wd_fired(void) {
  return __atomic_load_n(&rxt_wd.fired, __ATOMIC_ACQUIRE);
}

/* Stops the watchdog; returns whether it fired. */
static inline int rxt_wd_stop(void) {
  __atomic_store_n(&rxt_wd.stop, 1, __ATOMIC_RELEASE);
  pthread_join(rxt_wd.th, NULL);
  return rxt_wd_fired();
}

/* Runs cmocka's group and names the backend in the output. */
#define RXT_MAIN(tests)                                                   \
  int main(void) {                                                        \
    const char *b = rxt_env_backend();                                    \
    char name[128];                                                       \
    snprintf(name, sizeof(name), "%s [%s]", __FILE__, b ? b : "default"); \
    return cmocka_run_group_tests_name(name, tests, NULL, NULL);          \
  }

#endif /* RX_TEST_HELPERS_H */
