/*
 * test-ids.c - services/ids.c: handles and timeouts by integer id
 * (include/rx/ids.h), with libvirt's semantics, on the backend $RX_BACKEND
 * names. Built twice by meson: as is, and under ThreadSanitizer.
 *
 * rx_io_start and rx_io_stop are wrapped (-Wl,--wrap) to count the calls
 * the service makes into the loop, so that a lazy interest flip can be
 * shown to cost none; the loop's metrics show it costs the kernel nothing.
 * calloc is wrapped to fail on purpose.
 */
#include "helpers.h"

#include <pthread.h>

#include "rx/ids.h"

#define WATCHDOG RX_SEC(10)

static int io_starts, io_stops;

int __real_rx_io_start(rx_loop *loop, rx_io *w);
int __real_rx_io_stop(rx_loop *loop, rx_io *w);
int __wrap_rx_io_start(rx_loop *loop, rx_io *w);
int __wrap_rx_io_stop(rx_loop *loop, rx_io *w);

int __wrap_rx_io_start(rx_loop *loop, rx_io *w) {
  io_starts++;
  return __real_rx_io_start(loop, w);
}

int __wrap_rx_io_stop(rx_loop *loop, rx_io *w) {
  io_stops++;
  return __real_rx_io_stop(loop, w);
}

/* calloc is wrapped too: the service allocates with it, and a test makes
 * the `calloc_fail_in`-th call from now fail (0: none). */
static int calloc_fail_in;

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

void *__wrap_calloc(size_t n, size_t size) {
  if (calloc_fail_in > 0 && --calloc_fail_in == 0)
    return NULL;
  return __real_calloc(n, size);
}

static int atomic_get(const int *p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void atomic_set(int *p, int v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void atomic_inc(int *p) {
  __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL);
}

/* Runs ONCE iterations until *done (read atomically) or the watchdog. */
static int run_until(rx_loop *loop, const int *done) {
  int64_t end = rxt_clock() + WATCHDOG;
  static rx_timer tick;
  static int ticked;
  rx_timer_init(&tick, rxt_guard_cb, RX_MSEC(20), RX_MSEC(20));
  tick.data = &ticked;
  rx_now_update(loop);
  assert_int_equal(rx_timer_start(loop, &tick), 0);
  while (!atomic_get(done) && rxt_clock() < end)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  rx_timer_stop(loop, &tick);
  return atomic_get(done);
}

/* ---------------------------------------------------------------------------
 * Recording: what each handle and timeout callback saw, and each free.
 */

struct rec {
  rx_ids *ids;
  int id;
  int calls;
  int fd;     /* of the last handle call */
  int events; /* OR of every handle call */
  int freed;  /* ff calls */
  pthread_t freed_on;
  int remove_in_cb; /* the callback removes its own entry */
  int remove_rc;    /* what that remove returned */
  int freed_in_cb;  /* ff had run when the remove returned (must not) */
};

static void rec_handle(int id, int fd, int events, void *opaque) {
  struct rec *r = opaque;
  assert_int_equal(id, r->id);
  r->calls++;
  r->fd = fd;
  r->events |= events;
  if (r->remove_in_cb) {
    r->remove_rc = rx_ids_remove_handle(r->ids, id);
    r->freed_in_cb = r->freed;
  }
}

static void rec_timeout(int id, void *opaque) {
  struct rec *r = opaque;
  assert_int_equal(id, r->id);
  r->calls++;
  if (r->remove_in_cb) {
    r->remove_rc = rx_ids_remove_timeout(r->ids, id);
    r->freed_in_cb = r->freed;
  }
}

static void rec_free(void *opaque) {
  struct rec *r = opaque;
  r->freed_on = pthread_self();
  atomic_inc(&r->freed);
}

static rx_ids *new_ids(rx_loop *loop) {
  rx_ids *ids = NULL;
  assert_int_equal(rx_ids_new(&ids, loop), 0);
  assert_non_null(ids);
  return ids;
}

/* ---------------------------------------------------------------------------
 * Arguments and errors.
 */

static void nop_handle(int id, int fd, int events, void *opaque) {
  (void)id, (void)fd, (void)events, (void)opaque;
}
static void nop_timeout(int id, void *opaque) {
  (void)id, (void)opaque;
}

static void test_bad_arguments(void **state) {
  (void)state;
  rx_ids *ids = NULL;
  assert_int_equal(rx_ids_new(NULL, rxt.loop), -EINVAL);
  assert_int_equal(rx_ids_new(&ids, NULL), -EINVAL);
  assert_int_equal(rx_ids_free(NULL), -EINVAL);
  ids = new_ids(rxt.loop);
  assert_int_equal(rx_ids_add_handle(NULL, 0, RX_IDS_READ, nop_handle, 0, 0),
                   -EINVAL);
  assert_int_equal(rx_ids_add_handle(ids, -1, RX_IDS_READ, nop_handle, 0, 0),
                   -EBADF);
  assert_int_equal(rx_ids_add_handle(ids, 0, RX_IDS_READ, NULL, 0, 0), -EINVAL);
  assert_int_equal(rx_ids_add_handle(ids, 0, 0x10, nop_handle, 0, 0), -EINVAL);
  assert_int_equal(rx_ids_add_timeout(ids, -2, nop_timeout, 0, 0), -EINVAL);
  assert_int_equal(rx_ids_add_timeout(ids, 1, NULL, 0, 0), -EINVAL);
  assert_int_equal(rx_ids_update_handle(ids, 0, RX_IDS_READ), -EINVAL);
  assert_int_equal(rx_ids_update_handle(ids, 1, RX_IDS_READ), -ENOENT);
  assert_int_equal(rx_ids_update_timeout(ids, 1, 5), -ENOENT);
  assert_int_equal(rx_ids_remove_handle(ids, 1), -ENOENT);
  assert_int_equal(rx_ids_remove_timeout(ids, -3), -EINVAL);
  assert_int_equal(rx_ids_remove_timeout(NULL, 1), -EINVAL);
  /* Ids are counted per kind, from 1, and never reused. */
  int sv[2];
  rxt_pair(sv);
  int h1 = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, nop_handle, 0, 0);
  int t1 = rx_ids_add_timeout(ids, -1, nop_timeout, 0, 0);
  assert_int_equal(h1, 1);
  assert_int_equal(t1, 1);
  assert_int_equal(rx_ids_update_timeout(ids, t1, -2), -EINVAL);
  assert_int_equal(rx_ids_update_handle(ids, h1, 0x20), -EINVAL);
  /* A handle id is not a timeout id. */
  assert_int_equal(rx_ids_remove_timeout(ids, 2), -ENOENT);
  assert_int_equal(rx_ids_remove_handle(ids, h1), 0);
  assert_int_equal(rx_ids_remove_timeout(ids, t1), 0);
  int h2 = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, nop_handle, 0, 0);
  assert_int_equal(h2, 2);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(rx_ids_free(ids), 0);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Handles.
 */

/* One fd, two handles of disjoint interest: both fire, each with its own
 * id and only its own events. */
static void test_same_fd_two_handles(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec rd = {.ids = ids}, wr = {.ids = ids};
  rd.id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &rd, rec_free);
  wr.id =
      rx_ids_add_handle(ids, sv[0], RX_IDS_WRITE, rec_handle, &wr, rec_free);
  assert_true(rd.id > 0);
  assert_true(wr.id > 0);
  assert_int_not_equal(rd.id, wr.id);
  rxt_run_nowait(rxt.loop, 2);
  assert_true(wr.calls > 0);
  assert_int_equal(wr.events, RX_IDS_WRITE);
  assert_int_equal(wr.fd, sv[0]);
  assert_int_equal(rd.calls, 0);
  rxt_send(sv[1], 'x');
  int64_t end = rxt_clock() + WATCHDOG;
  while (rd.calls == 0 && rxt_clock() < end)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_true(rd.calls > 0);
  assert_int_equal(rd.events, RX_IDS_READ);
  assert_int_equal(rd.fd, sv[0]);
  /* Dropping the write interest silences that handle alone. */
  assert_int_equal(rx_ids_update_handle(ids, wr.id, 0), 0);
  rxt_run_nowait(rxt.loop, 1);
  int wcalls = wr.calls, rcalls = rd.calls;
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(wr.calls, wcalls);
  assert_true(rd.calls > rcalls); /* still readable: level-triggered */
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(rd.freed, 1);
  assert_int_equal(wr.freed, 1);
  rxt_close_pair(sv);
}

/* A handle and a timeout remove themselves from their callbacks: the
 * remove succeeds, ff waits until the callback has returned, the callback
 * is never called again, and a second remove fails. */
static void test_remove_in_own_callback(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec h = {.ids = ids, .remove_in_cb = 1, .remove_rc = 1};
  struct rec t = {.ids = ids, .remove_in_cb = 1, .remove_rc = 1};
  h.id = rx_ids_add_handle(ids, sv[0], RX_IDS_WRITE, rec_handle, &h, rec_free);
  t.id = rx_ids_add_timeout(ids, 0, rec_timeout, &t, rec_free);
  assert_true(h.id > 0 && t.id > 0);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(h.calls, 1);
  assert_int_equal(t.calls, 1);
  assert_int_equal(h.remove_rc, 0);
  assert_int_equal(t.remove_rc, 0);
  assert_int_equal(h.freed_in_cb, 0);
  assert_int_equal(t.freed_in_cb, 0);
  assert_int_equal(h.freed, 1);
  assert_int_equal(t.freed, 1);
  assert_true(pthread_equal(h.freed_on, pthread_self()));
  assert_int_equal(rx_ids_remove_handle(ids, h.id), -ENOENT);
  assert_int_equal(rx_ids_remove_timeout(ids, t.id), -ENOENT);
  assert_int_equal(rx_ids_update_handle(ids, h.id, RX_IDS_READ), -ENOENT);
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(h.freed, 1);
  assert_int_equal(t.freed, 1);
  rxt_close_pair(sv);
}

/* Removing twice from the loop's thread: the second fails, ff runs once,
 * not inside the remove, and before the loop next waits. */
static void test_remove_twice(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec h = {.ids = ids}, t = {.ids = ids};
  h.id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &h, rec_free);
  t.id = rx_ids_add_timeout(ids, 1000, rec_timeout, &t, rec_free);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(rx_ids_remove_handle(ids, h.id), 0);
  assert_int_equal(rx_ids_remove_timeout(ids, t.id), 0);
  assert_int_equal(h.freed, 0); /* never inside remove */
  assert_int_equal(t.freed, 0);
  assert_int_equal(rx_ids_remove_handle(ids, h.id), -ENOENT);
  assert_int_equal(rx_ids_remove_timeout(ids, t.id), -ENOENT);
  rxt_send(sv[1], 'x'); /* readable: the removed handle must not hear it */
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(h.freed, 1);
  assert_int_equal(t.freed, 1);
  assert_int_equal(h.calls, 0);
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(h.freed, 1);
  assert_int_equal(t.freed, 1);
  rxt_close_pair(sv);
}

struct remover {
  rx_ids *ids;
  int handle, timeout;
  int rc_handle, rc_timeout, rc_again;
};

static void *remove_thread(void *arg) {
  struct remover *r = arg;
  rxt_sleep_ns(RX_MSEC(30)); /* let the loop fall asleep */
  r->rc_handle = rx_ids_remove_handle(r->ids, r->handle);
  r->rc_timeout = rx_ids_remove_timeout(r->ids, r->timeout);
  r->rc_again = rx_ids_remove_handle(r->ids, r->handle);
  return NULL;
}

/* Another thread removes while the loop sleeps with nothing else to wake
 * it: the loop wakes, runs each ff once on its own thread, and the handle's
 * callback never runs after its remove returned. */
static void test_remove_from_thread(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec h = {.ids = ids}, t = {.ids = ids};
  h.id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &h, rec_free);
  t.id = rx_ids_add_timeout(ids, 60000, rec_timeout, &t, rec_free);
  rxt_run_nowait(rxt.loop, 1);
  struct remover r = {.ids = ids, .handle = h.id, .timeout = t.id};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, remove_thread, &r), 0);
  /* The handle keeps the loop referenced: ONCE sleeps until the remove
   * wakes it (a missed wake-up is caught by the watchdog thread below). */
  int64_t start = rxt_clock();
  while (atomic_get(&h.freed) == 0 && rxt_clock() - start < WATCHDOG)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  pthread_join(th, NULL);
  assert_int_equal(r.rc_handle, 0);
  assert_int_equal(r.rc_timeout, 0);
  assert_int_equal(r.rc_again, -ENOENT);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(h.freed, 1);
  assert_int_equal(t.freed, 1);
  assert_true(pthread_equal(h.freed_on, pthread_self()));
  assert_true(pthread_equal(t.freed_on, pthread_self()));
  rxt_send(sv[1], 'x');
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(h.calls, 0);
  assert_int_equal(rx_ids_free(ids), 0);
  rxt_close_pair(sv);
}

/* An fd that is not open: the handle hears RX_IDS_ERROR once, then stays
 * silent until it is updated. */
static void test_handle_error(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  int fd = sv[0];
  rxt_close_pair(sv); /* the number is free now */
  struct rec h = {.ids = ids};
  h.id = rx_ids_add_handle(ids, fd, RX_IDS_READ, rec_handle, &h, rec_free);
  assert_true(h.id > 0);
  rxt_run_nowait(rxt.loop, 4);
  assert_int_equal(h.calls, 1);
  assert_int_equal(h.events, RX_IDS_ERROR);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(h.calls, 1);
  assert_int_equal(rx_ids_update_handle(ids, h.id, RX_IDS_READ), 0);
  rxt_run_nowait(rxt.loop, 4);
  assert_int_equal(h.calls, 2);
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(h.freed, 1);
}

/* A flip of the interest to 0 and back between two waits: no call into the
 * loop (rx_io_start/stop counted), and no more kernel calls or re-arms than
 * the same iterations without the flip. */
static void test_lazy_flip_costs_nothing(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec h = {.ids = ids};
  h.id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &h, rec_free);
  rxt_run_nowait(rxt.loop, 3);
  enum { N = 100 };
  struct rx_metrics m0, m1, m2;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m0), 0);
  rxt_run_nowait(rxt.loop, N);
  assert_int_equal(rx_loop_metrics(rxt.loop, &m1), 0);
  int starts = io_starts, stops = io_stops;
  for (int i = 0; i < N; i++) {
    assert_int_equal(rx_ids_update_handle(ids, h.id, 0), 0);
    assert_int_equal(rx_ids_update_handle(ids, h.id, RX_IDS_WRITE), 0);
    assert_int_equal(rx_ids_update_handle(ids, h.id, RX_IDS_READ), 0);
    rxt_run_nowait(rxt.loop, 1);
  }
  assert_int_equal(rx_loop_metrics(rxt.loop, &m2), 0);
  assert_int_equal(io_starts, starts);
  assert_int_equal(io_stops, stops);
  rxt_assert_eq(m2.enters - m1.enters, m1.enters - m0.enters);
  rxt_assert_eq(m2.rearms - m1.rearms, m1.rearms - m0.rearms);
  assert_int_equal(h.calls, 0);
  /* A change that lasts until the wait does reach the loop, once. */
  assert_int_equal(rx_ids_update_handle(ids, h.id, 0), 0);
  assert_int_equal(rx_ids_update_handle(ids, h.id, RX_IDS_WRITE), 0);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(io_stops, stops + 1);
  assert_int_equal(io_starts, starts + 1);
  assert_true(h.calls > 0);
  assert_int_equal(h.events, RX_IDS_WRITE);
  assert_int_equal(rx_ids_free(ids), 0);
  rxt_close_pair(sv);
}

/* Allocation failures: -ENOMEM, nothing registered, no id spent, and the
 * service as usable as before. */
static void test_out_of_memory(void **state) {
  (void)state;
  rx_ids *ids = NULL;
  calloc_fail_in = 1;
  assert_int_equal(rx_ids_new(&ids, rxt.loop), -ENOMEM);
  assert_null(ids);
  ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec r = {.ids = ids};
  calloc_fail_in = 1; /* the entry */
  assert_int_equal(
      rx_ids_add_handle(ids, sv[0], RX_IDS_WRITE, rec_handle, &r, rec_free),
      -ENOMEM);
  calloc_fail_in = 1;
  assert_int_equal(rx_ids_add_timeout(ids, 0, rec_timeout, &r, rec_free),
                   -ENOMEM);
  /* The table's first buckets, then its growth at the 17th handle. */
  calloc_fail_in = 2;
  assert_int_equal(
      rx_ids_add_handle(ids, sv[0], RX_IDS_WRITE, rec_handle, &r, rec_free),
      -ENOMEM);
  calloc_fail_in = 0;
  int first = rx_ids_add_handle(ids, sv[0], 0, rec_handle, &r, rec_free);
  assert_int_equal(first, 1);
  for (int i = 2; i <= 16; i++)
    assert_int_equal(rx_ids_add_handle(ids, sv[0], 0, rec_handle, &r, rec_free),
                     i);
  calloc_fail_in = 2;
  assert_int_equal(rx_ids_add_handle(ids, sv[0], 0, rec_handle, &r, rec_free),
                   -ENOMEM);
  calloc_fail_in = 0;
  r.id = rx_ids_add_handle(ids, sv[0], RX_IDS_WRITE, rec_handle, &r, rec_free);
  assert_int_equal(r.id, 17);
  for (int i = 1; i <= 16; i++)
    assert_int_equal(rx_ids_update_handle(ids, i, 0), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_true(r.calls > 0);
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(r.freed, 17); /* one per successful add */
  rxt_close_pair(sv);
}

struct caller {
  rx_ids *ids;
  int handle;
  int timeout; /* out: the id of the timeout added */
  int rc;
  struct rec *t;
};

static void *call_thread(void *arg) {
  struct caller *c = arg;
  rxt_sleep_ns(RX_MSEC(30)); /* let the loop fall asleep */
  c->rc = rx_ids_update_handle(c->ids, c->handle, RX_IDS_WRITE);
  c->t->id = c->timeout =
      rx_ids_add_timeout(c->ids, 5, rec_timeout, c->t, rec_free);
  return NULL;
}

/* Calls from another thread wake a loop asleep with nothing else to wake
 * it (no timer): an interest change and a new timeout both take effect. */
static void test_calls_from_thread_wake_the_loop(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int sv[2];
  rxt_pair(sv);
  struct rec h = {.ids = ids}, t = {.ids = ids};
  /* Writable, but only READ is wanted: the loop sleeps. */
  h.id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &h, rec_free);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(h.calls, 0);
  struct caller c = {.ids = ids, .handle = h.id, .t = &t};
  t.id = -1;
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, call_thread, &c), 0);
  int64_t end = rxt_clock() + WATCHDOG;
  while (h.calls == 0 && rxt_clock() < end)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  pthread_join(th, NULL);
  assert_int_equal(c.rc, 0);
  assert_int_equal(h.events, RX_IDS_WRITE);
  assert_true(c.timeout > 0);
  /* The handle stays writable, so the loop spins until the timeout. */
  while (t.calls == 0 && rxt_clock() < end)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_true(t.calls > 0);
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(h.freed, 1);
  assert_int_equal(t.freed, 1);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Timeouts.
 */

struct ticker {
  rx_ids *ids;
  int id;
  int ms;
  int calls;
  int early;        /* fires that came before their period was up */
  int64_t worst_ns; /* the shortest gap seen, minus the period */
  int64_t last;     /* when the period last (re)started, at the latest */
};

static void ticker_cb(int id, void *opaque) {
  struct ticker *t = opaque;
  int64_t now = rxt_clock();
  assert_int_equal(id, t->id);
  int64_t slack = now - t->last - RX_MSEC(t->ms);
  if (slack < 0)
    t->early++;
  if (t->calls == 0 || slack < t->worst_ns)
    t->worst_ns = slack;
  t->calls++;
  /* Read last: the service restarts the period after the callback. */
  t->last = rxt_clock();
}

/* Periods in [1, 1000] ms over about two seconds: none fires early, each
 * measured from its add (taken before the add) or from the end of its last
 * callback on CLOCK_MONOTONIC; the short ones fire many times. */
static void test_timeouts_never_early(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  static const int periods[] = {1,  1,  2,   3,   5,   7,   10,  13,  20,
                                33, 50, 100, 170, 250, 333, 500, 777, 1000};
  enum { N = sizeof(periods) / sizeof(periods[0]) };
  struct ticker t[N];
  for (int i = 0; i < N; i++) {
    t[i] = (struct ticker){.ids = ids, .ms = periods[i]};
    t[i].last = rxt_clock();
    t[i].id = rx_ids_add_timeout(ids, periods[i], ticker_cb, &t[i], NULL);
    assert_true(t[i].id > 0);
  }
  int64_t end = rxt_clock() + RX_MSEC(2100);
  while (rxt_clock() < end)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  for (int i = 0; i < N; i++) {
    if (t[i].early)
      fail_msg("%d ms: %d early fires, the worst %lld ns early", t[i].ms,
               t[i].early, (long long)-t[i].worst_ns);
    /* Generous: a busy machine may delay each fire a lot. */
    if (periods[i] <= 1000)
      assert_true(t[i].calls >= 1);
  }
  assert_true(t[0].calls >= 20);
  assert_int_equal(rx_ids_free(ids), 0);
}

static void count_timeout(int id, void *opaque) {
  (void)id;
  (*(int *)opaque)++;
}

/* 0 fires at every iteration; -1 disables; an update restarts the period,
 * also to the same value. */
static void test_timeout_zero_disable_restart(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int calls = 0;
  int id = rx_ids_add_timeout(ids, 0, count_timeout, &calls, NULL);
  assert_true(id > 0);
  rxt_run_nowait(rxt.loop, 10);
  assert_int_equal(calls, 10);
  assert_int_equal(rx_ids_update_timeout(ids, id, -1), 0);
  rxt_run_nowait(rxt.loop, 5);
  assert_int_equal(calls, 10);
  assert_int_equal(rx_ids_update_timeout(ids, id, 0), 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(calls, 13);
  /* Added disabled: never fires until updated. */
  int calls2 = 0;
  int id2 = rx_ids_add_timeout(ids, -1, count_timeout, &calls2, NULL);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(calls2, 0);
  assert_int_equal(rx_ids_remove_timeout(ids, id2), 0);

  /* Restart: 200 ms, updated to 200 ms after 120 ms: no fire before 320. */
  struct ticker t = {.ids = ids, .ms = 200};
  assert_int_equal(rx_ids_update_timeout(ids, id, -1), 0);
  int64_t start = rxt_clock();
  t.last = start;
  t.id = rx_ids_add_timeout(ids, 200, ticker_cb, &t, NULL);
  int64_t mid = start + RX_MSEC(120);
  while (rxt_clock() < mid)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  if (t.calls == 0) { /* not on a machine that slept 200 ms meanwhile */
    t.last = rxt_clock();
    assert_int_equal(rx_ids_update_timeout(ids, t.id, 200), 0);
    int64_t end = rxt_clock() + WATCHDOG;
    while (t.calls == 0 && rxt_clock() < end)
      assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.early, 0);
  }
  assert_int_equal(rx_ids_free(ids), 0);
}

/* ---------------------------------------------------------------------------
 * Free functions: once per add, on every path, with no lock held.
 */

static rx_ids *reentry_ids;
static int reentry_rc;

/* Calls back into the API: with a lock of the service held, this would
 * deadlock. */
static void reentrant_free(void *opaque) {
  rec_free(opaque);
  int id = rx_ids_add_timeout(reentry_ids, -1, nop_timeout, NULL, NULL);
  if (id > 0)
    reentry_rc = rx_ids_remove_timeout(reentry_ids, id);
  else
    reentry_rc = id;
}

static void test_ff_paths(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  reentry_ids = ids;
  int sv[2];
  rxt_pair(sv);
  struct rec r[4] = {{.ids = ids}, {.ids = ids}, {.ids = ids}, {.ids = ids}};
  r[0].id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &r[0],
                              reentrant_free);
  r[1].id = rx_ids_add_timeout(ids, 5, rec_timeout, &r[1], reentrant_free);
  r[2].id = rx_ids_add_handle(ids, sv[0], RX_IDS_WRITE, rec_handle, &r[2],
                              reentrant_free);
  r[3].id = rx_ids_add_timeout(ids, -1, rec_timeout, &r[3], reentrant_free);
  /* No ff: nothing to call. */
  int plain = rx_ids_add_timeout(ids, 1, nop_timeout, NULL, NULL);
  assert_true(plain > 0);
  rxt_run_nowait(rxt.loop, 1);
  /* Removed on the loop's thread: the ff runs in the next iteration and
   * may call the API. */
  reentry_rc = 1;
  assert_int_equal(rx_ids_remove_handle(ids, r[0].id), 0);
  assert_int_equal(rx_ids_remove_timeout(ids, plain), 0);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(r[0].freed, 1);
  assert_int_equal(reentry_rc, 0);
  /* Left registered: rx_ids_free runs the rest, and refuses to run from
   * a callback. */
  assert_int_equal(rx_ids_free(ids), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(r[i].freed, 1);
  /* The calls made by those ffs found the service closing. */
  assert_int_equal(reentry_rc, -ESHUTDOWN);
  rxt_close_pair(sv);
}

static void free_in_callback(int id, void *opaque) {
  (void)id;
  struct rec *r = opaque;
  r->remove_rc = rx_ids_free(r->ids);
  r->calls++;
}

/* The loop freed first: its cleanup removes every entry and runs the ffs;
 * calls then fail with -ESHUTDOWN, and rx_ids_free() only frees. */
static void test_ff_on_loop_free(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  reentry_ids = ids;
  int sv[2];
  rxt_pair(sv);
  struct rec r[3] = {{.ids = ids}, {.ids = ids}, {.ids = ids}};
  r[0].id = rx_ids_add_handle(ids, sv[0], RX_IDS_READ, rec_handle, &r[0],
                              reentrant_free);
  r[1].id = rx_ids_add_timeout(ids, 0, free_in_callback, &r[1], rec_free);
  r[2].id = rx_ids_add_timeout(ids, 100, rec_timeout, &r[2], rec_free);
  rxt_run_nowait(rxt.loop, 2);
  assert_true(r[1].calls > 0);
  assert_int_equal(r[1].remove_rc, -EBUSY);
  /* Removed, its ff not yet run. */
  assert_int_equal(rx_ids_remove_timeout(ids, r[2].id), 0);
  reentry_rc = 1;
  assert_int_equal(rx_loop_free(rxt.loop), 0);
  rxt.loop = NULL;
  for (int i = 0; i < 3; i++)
    assert_int_equal(r[i].freed, 1);
  assert_int_equal(reentry_rc, -ESHUTDOWN);
  assert_int_equal(rx_ids_add_timeout(ids, 1, nop_timeout, NULL, NULL),
                   -ESHUTDOWN);
  assert_int_equal(rx_ids_remove_handle(ids, r[0].id), -ESHUTDOWN);
  assert_int_equal(rx_ids_free(ids), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(r[i].freed, 1);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Four threads at random while the loop sleeps.
 */

enum { THREADS = 4, OPS = 3000, LIVE = 32 };

struct chaos {
  rx_ids *ids;
  int fd_read, fd_write; /* never readable; always writable */
  unsigned seed;
  int adds_h, adds_t; /* successful adds */
  int *freed;         /* shared ff counter */
  int ids_h[OPS], ids_t[OPS];
  int bad;   /* calls that returned what they must not */
  int fires; /* callbacks (loop thread) */
};

static void chaos_free(void *opaque) {
  atomic_inc(((struct chaos *)opaque)->freed);
}

static void chaos_handle(int id, int fd, int events, void *opaque) {
  (void)id, (void)fd, (void)events;
  atomic_inc(&((struct chaos *)opaque)->fires);
}

static void chaos_timeout(int id, void *opaque) {
  (void)id;
  atomic_inc(&((struct chaos *)opaque)->fires);
}

static void *chaos_thread(void *arg) {
  struct chaos *c = arg;
  int live_h[LIVE], live_t[LIVE], nh = 0, nt = 0;
  for (int i = 0; i < OPS; i++) {
    unsigned r = (unsigned)rand_r(&c->seed);
    int op = (int)(r % 6);
    r /= 6;
    if (op == 0 && nh < LIVE) {
      int ev = (int)(r % 4);
      int fd = ev & RX_IDS_WRITE ? c->fd_write : c->fd_read;
      int id = rx_ids_add_handle(c->ids, fd, ev, chaos_handle, c, chaos_free);
      if (id <= 0) {
        c->bad++;
        continue;
      }
      c->ids_h[c->adds_h++] = id;
      live_h[nh++] = id;
    } else if (op == 1 && nt < LIVE) {
      int ms = (int)(r % 52) - 1; /* -1 .. 50 */
      int id = rx_ids_add_timeout(c->ids, ms, chaos_timeout, c, chaos_free);
      if (id <= 0) {
        c->bad++;
        continue;
      }
      c->ids_t[c->adds_t++] = id;
      live_t[nt++] = id;
    } else if (op == 2 && nh > 0) {
      int k = (int)(r % (unsigned)nh);
      /* The fd's direction is fixed: READ on the read end, WRITE on the
       * write end (0 and back allowed either way). */
      int ev = (int)(r / 7 % 2);
      if (rx_ids_update_handle(c->ids, live_h[k], ev) != 0)
        c->bad++;
    } else if (op == 3 && nt > 0) {
      int k = (int)(r % (unsigned)nt);
      if (rx_ids_update_timeout(c->ids, live_t[k], (int)(r / 7 % 52) - 1) != 0)
        c->bad++;
    } else if (op == 4 && nh > 0) {
      int k = (int)(r % (unsigned)nh);
      if (rx_ids_remove_handle(c->ids, live_h[k]) != 0 ||
          rx_ids_remove_handle(c->ids, live_h[k]) != -ENOENT)
        c->bad++;
      live_h[k] = live_h[--nh];
    } else if (op == 5 && nt > 0) {
      int k = (int)(r % (unsigned)nt);
      if (rx_ids_remove_timeout(c->ids, live_t[k]) != 0 ||
          rx_ids_remove_timeout(c->ids, live_t[k]) != -ENOENT)
        c->bad++;
      live_t[k] = live_t[--nt];
    }
    if (i % 64 == 0)
      rxt_sleep_ns(RX_USEC(200)); /* let the loop fall asleep now and then */
  }
  /* Half of what is left is removed here, the rest by rx_ids_free(). */
  for (int k = 0; k < nh / 2; k++)
    if (rx_ids_remove_handle(c->ids, live_h[k]) != 0)
      c->bad++;
  for (int k = 0; k < nt / 2; k++)
    if (rx_ids_remove_timeout(c->ids, live_t[k]) != 0)
      c->bad++;
  return NULL;
}

static int cmp_int(const void *a, const void *b) {
  return (*(const int *)a > *(const int *)b) -
         (*(const int *)a < *(const int *)b);
}

/* Ids of one kind, across threads: all positive, none twice. */
static void check_unique(struct chaos *c, int handles) {
  static int all[THREADS * OPS];
  int n = 0;
  for (int t = 0; t < THREADS; t++) {
    int cnt = handles ? c[t].adds_h : c[t].adds_t;
    for (int i = 0; i < cnt; i++) {
      int id = handles ? c[t].ids_h[i] : c[t].ids_t[i];
      assert_true(id > 0);
      /* Per thread, increasing: never reused. */
      if (i > 0)
        assert_true(id > (handles ? c[t].ids_h[i - 1] : c[t].ids_t[i - 1]));
      all[n++] = id;
    }
  }
  qsort(all, (size_t)n, sizeof(all[0]), cmp_int);
  for (int i = 1; i < n; i++)
    assert_int_not_equal(all[i], all[i - 1]);
}

struct done_flag {
  int *done;
  pthread_t th[THREADS];
};

static void *joiner(void *arg) {
  struct done_flag *d = arg;
  for (int t = 0; t < THREADS; t++)
    pthread_join(d->th[t], NULL);
  atomic_set(d->done, 1);
  return NULL;
}

static void test_threads_at_random(void **state) {
  (void)state;
  rx_ids *ids = new_ids(rxt.loop);
  int p[2];
  assert_int_equal(pipe(p), 0);
  static struct chaos c[THREADS];
  int freed = 0, done = 0;
  struct done_flag d = {.done = &done};
  for (int t = 0; t < THREADS; t++) {
    memset(&c[t], 0, sizeof(c[t]));
    c[t] = (struct chaos){.ids = ids,
                          .fd_read = p[0],
                          .fd_write = p[1],
                          .seed = 1234u + (unsigned)t,
                          .freed = &freed};
    assert_int_equal(pthread_create(&d.th[t], NULL, chaos_thread, &c[t]), 0);
  }
  pthread_t j;
  assert_int_equal(pthread_create(&j, NULL, joiner, &d), 0);
  assert_true(run_until(rxt.loop, &done));
  pthread_join(j, NULL);
  rxt_run_nowait(rxt.loop, 2);
  int adds = 0;
  for (int t = 0; t < THREADS; t++) {
    assert_int_equal(c[t].bad, 0);
    adds += c[t].adds_h + c[t].adds_t;
  }
  check_unique(c, 1);
  check_unique(c, 0);
  assert_true(atomic_get(&freed) < adds || adds == 0);
  assert_int_equal(rx_ids_free(ids), 0);
  assert_int_equal(atomic_get(&freed), adds);
  close(p[0]);
  close(p[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_bad_arguments),
      RXT_TEST(test_same_fd_two_handles),
      RXT_TEST(test_remove_in_own_callback),
      RXT_TEST(test_remove_twice),
      RXT_TEST(test_remove_from_thread),
      RXT_TEST(test_handle_error),
      RXT_TEST(test_lazy_flip_costs_nothing),
      RXT_TEST(test_out_of_memory),
      RXT_TEST(test_calls_from_thread_wake_the_loop),
      RXT_TEST(test_timeouts_never_early),
      RXT_TEST(test_timeout_zero_disable_restart),
      RXT_TEST(test_ff_paths),
      RXT_TEST(test_ff_on_loop_free),
      RXT_TEST(test_threads_at_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
