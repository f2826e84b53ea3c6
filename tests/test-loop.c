/*
 * test-loop.c - tests reactor/loop.c: a loop's life, backend selection, run
 * modes, breaks, references, counters, priorities, the clock, errors and
 * the allocator hook. Runs once per backend (RX_BACKEND, see meson.build).
 */
#include "helpers.h"

#include <sys/wait.h>

#include "internal.h"

/* ---------------------------------------------------------------------------
 * rx_loop_new / rx_loop_free and backend selection.
 */

static void test_new_bad_arguments(void **state) {
  (void)state;
  rx_loop *loop = (rx_loop *)(uintptr_t)1;
  struct rx_loop_options o;

  assert_int_equal(rx_loop_new(NULL, NULL), -EINVAL);

  memset(&o, 0, sizeof(o));
  o.flags = 0x80000000u; /* not an RX_LOOP_* flag */
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
  assert_null(loop); /* cleared on failure */

  memset(&o, 0, sizeof(o));
  o.timer_tick = 1000; /* below the 1024 ns minimum */
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
  o.timer_tick = -1;
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
  o.timer_tick = (int64_t)1 << 31; /* beyond a second */
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);

  memset(&o, 0, sizeof(o));
  o.backend = "kqueue";
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
  o.backend = "";
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
  assert_null(loop);

  memset(&o, 0, sizeof(o));
  o.backend = "io_uring";
  o.ring_entries = 1u << 20; /* more than the kernel's maximum */
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);

  rx_loop_free(NULL); /* a no-op */
}

/* An unknown RX_BACKEND is refused, not silently replaced. */
static void test_new_unknown_env_backend(void **state) {
  (void)state;
  char *saved = rxt.backend != NULL ? strdup(rxt.backend) : NULL;
  rx_loop *loop = NULL;
  setenv("RX_BACKEND", "select", 1);
  int rc = rx_loop_new(&loop, NULL);
  if (saved != NULL)
    setenv("RX_BACKEND", saved, 1);
  else
    unsetenv("RX_BACKEND");
  free(saved);
  assert_int_equal(rc, -EINVAL);
  assert_null(loop);
}

static void fire_once_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  assert_int_equal(revents, RX_TIMER);
  (*(int *)w->data)++;
}

/* opts.backend forces each backend, whatever $RX_BACKEND says. */
static void test_new_forced_backends(void **state) {
  (void)state;
  static const char *names[] = {"io_uring", "epoll"};
  for (size_t i = 0; i < 2; i++) {
    struct rx_loop_options o;
    memset(&o, 0, sizeof(o));
    o.backend = names[i];
    /* Under tests/seccomp-launcher's kill filter, any io_uring syscall ends
     * the process: forcing io_uring is exactly what must not happen there. */
    const char *sc = getenv("RXT_SECCOMP");
    if (i == 0 && sc != NULL && strcmp(sc, "kill") == 0)
      continue;
    rx_loop *loop = NULL;
    int rc = rx_loop_new(&loop, &o);
    if (i == 0 && (rc == -ENOSYS || rc == -EPERM || rc == -EACCES)) {
      print_message("io_uring refused by the kernel (%s): not tested\n",
                    rx_strerror(rc));
      continue;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(rx_backend_name(loop), names[i]);
    assert_non_null(rx_backend_reason(loop));
    assert_true(strlen(rx_backend_reason(loop)) > 0);

    int fired = 0;
    rx_timer t;
    rx_timer_init(&t, fire_once_cb, 0, 0);
    t.data = &fired;
    assert_int_equal(rx_timer_start(loop, &t), 0);
    assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0);
    assert_int_equal(fired, 1);
    rx_loop_free(loop);
  }
}

static void test_backend_name_matches_env(void **state) {
  (void)state;
  const char *name = rx_backend_name(rxt.loop);
  assert_non_null(name);
  assert_true(strcmp(name, "io_uring") == 0 || strcmp(name, "epoll") == 0);
  if (rxt.backend != NULL)
    assert_string_equal(name, rxt.backend);
  const char *why = rx_backend_reason(rxt.loop);
  assert_non_null(why);
  assert_true(strlen(why) > 0);
  if (rxt.backend != NULL)
    assert_non_null(strstr(why, "RX_BACKEND"));
}

/* Many loops at once are independent values. */
static void test_many_loops(void **state) {
  (void)state;
  rx_loop *loops[8];
  int fired[8] = {0};
  rx_timer t[8];
  for (int i = 0; i < 8; i++) {
    assert_int_equal(rx_loop_new(&loops[i], NULL), 0);
    rx_timer_init(&t[i], fire_once_cb, RX_MSEC(1), 0);
    t[i].data = &fired[i];
    assert_int_equal(rx_timer_start(loops[i], &t[i]), 0);
  }
  for (int i = 0; i < 8; i++) {
    assert_int_equal(rx_run(loops[i], RX_RUN_DEFAULT), 0);
    for (int j = 0; j < 8; j++)
      assert_int_equal(fired[j], j <= i);
  }
  for (int i = 0; i < 8; i++)
    rx_loop_free(loops[i]);
}

/* The default loop is process-wide and never freed, so it is made in a child
 * process: the parent's allocator and fd checks stay meaningful. */
static void test_default_loop(void **state) {
  (void)state;
  assert_int_equal(rx_set_allocator(NULL), 0); /* the child must use libc */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rx_loop *a = rx_default_loop();
    rx_loop *b = rx_default_loop();
    int ok = a != NULL && a == b;
    if (ok) {
      int fired = 0;
      rx_timer t;
      rx_timer_init(&t, fire_once_cb, 0, 0);
      t.data = &fired;
      ok = rx_timer_start(a, &t) == 0 && rx_run(a, RX_RUN_DEFAULT) == 0 &&
           fired == 1;
      /* A loop exists now: the allocator cannot be swapped under it. */
      ok = ok && rx_set_allocator(&rxt_allocator) == -EBUSY;
    }
    _exit(ok ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  rxt_heap_install();
}

/* ---------------------------------------------------------------------------
 * Run modes.
 */

static void test_run_default_without_watchers(void **state) {
  (void)state;
  uint64_t it = rx_iteration(rxt.loop);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(2)); /* nothing blocked */
  rxt_assert_le(rx_iteration(rxt.loop) - it, 3);
}

static void test_run_bad_mode(void **state) {
  (void)state;
  assert_int_equal(rx_run(NULL, RX_RUN_DEFAULT), -EINVAL);
  assert_int_equal(rx_run(rxt.loop, 4), -EINVAL);
  assert_int_equal(rx_run(rxt.loop, -1), -EINVAL);
  assert_int_equal(rx_depth(rxt.loop), 0);
}

static void count_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  (*(int *)w->data)++;
}

/* NOWAIT never blocks, even with only a far timer; it returns 1 while the
 * timer is active. */
static void test_run_nowait_never_blocks(void **state) {
  (void)state;
  int fired = 0;
  rx_timer t;
  rx_timer_init(&t, count_cb, RX_SEC(10), 0);
  t.data = &fired;
  assert_int_equal(rx_timer_start(rxt.loop, &t), 0);
  int64_t t0 = rxt_clock();
  for (int i = 0; i < 100; i++)
    assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal(fired, 0);
  assert_int_equal(rx_timer_stop(rxt.loop, &t), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
}

/* ONCE blocks: it waits for the timer instead of spinning. The wheel may
 * wake the loop to cascade a slot (libev too allows ONCE to return for an
 * internal event), so allow a few ONCE calls, but not a spin. */
static void test_run_once_blocks_until_timer(void **state) {
  (void)state;
  int fired = 0;
  rx_timer t;
  rx_now_update(rxt.loop);
  int64_t start = rx_now(rxt.loop);
  rx_timer_init(&t, count_cb, RX_MSEC(30), 0);
  t.data = &fired;
  assert_int_equal(rx_timer_start(rxt.loop, &t), 0);
  int calls = 0;
  while (!fired && calls < 20) {
    int rc = rx_run(rxt.loop, RX_RUN_ONCE);
    calls++;
    assert_int_equal(rc, fired ? 0 : 1);
  }
  assert_int_equal(fired, 1);
  rxt_assert_le(calls, RX__TW_LEVELS + 1);
  rxt_assert_ge(rxt_clock(), start + RX_MSEC(30));
}

/* rx_run returns 1 while active watchers remain. */
static void test_run_returns_active(void **state) {
  (void)state;
  int a = 0, b = 0;
  rx_timer ta, tb;
  rx_timer_init(&ta, count_cb, 0, 0);
  rx_timer_init(&tb, count_cb, RX_SEC(60), 0);
  ta.data = &a;
  tb.data = &b;
  rx_timer_start(rxt.loop, &ta);
  rx_timer_start(rxt.loop, &tb);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 1);
  assert_int_equal(a, 1);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  rx_timer_stop(rxt.loop, &tb);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(b, 0);
}

/* ---------------------------------------------------------------------------
 * Breaks and nesting.
 */

struct nest {
  int depth_seen[4];
  int ticks;
  int inner_returned;
  int inner_rc;
  int how;       /* break mode used by the inner ticker */
  rx_timer inner;
};

static void inner_tick_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  struct nest *n = w->data;
  n->ticks++;
  n->depth_seen[1] = rx_depth(loop);
  if (n->ticks == 3)
    rx_break(loop, n->how);
}

static void outer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  struct nest *n = w->data;
  n->depth_seen[0] = rx_depth(loop);
  rx_timer_init(&n->inner, inner_tick_cb, RX_MSEC(1), RX_MSEC(1));
  n->inner.data = n;
  rx_timer_start(loop, &n->inner);
  n->inner_rc = rx_run(loop, RX_RUN_DEFAULT);
  n->inner_returned = 1;
  n->depth_seen[2] = rx_depth(loop);
  rx_timer_stop(loop, &n->inner);
}

static void run_nested(int how, struct nest *n, int *outer_after) {
  rx_timer outer, later;
  memset(n, 0, sizeof(*n));
  n->how = how;
  rx_timer_init(&outer, outer_cb, 0, 0);
  outer.data = n;
  rx_timer_init(&later, count_cb, RX_MSEC(200), 0);
  later.data = outer_after;
  rx_timer_start(rxt.loop, &outer);
  rx_timer_start(rxt.loop, &later);
  assert_int_equal(rx_depth(rxt.loop), 0);
  int rc = rx_run(rxt.loop, RX_RUN_DEFAULT);
  assert_int_equal(rx_depth(rxt.loop), 0);
  assert_int_equal(n->inner_returned, 1);
  assert_int_equal(n->ticks, 3);
  assert_int_equal(n->depth_seen[0], 1);
  assert_int_equal(n->depth_seen[1], 2);
  assert_int_equal(n->depth_seen[2], 1);
  if (how == RX_BREAK_ALL) {
    /* every run left: `later` still active */
    assert_int_equal(rc, 1);
    assert_int_equal(*outer_after, 0);
    assert_true(rx_is_active(&later));
    rx_timer_stop(rxt.loop, &later);
  } else {
    /* only the inner run left: the outer one went on until `later` fired */
    assert_int_equal(rc, 0);
    assert_int_equal(*outer_after, 1);
  }
}

static void test_break_one_nested(void **state) {
  (void)state;
  struct nest n;
  int after = 0;
  run_nested(RX_BREAK_ONE, &n, &after);
  assert_int_equal(n.inner_rc, 1); /* `later` was active then */
}

static void test_break_all_nested(void **state) {
  (void)state;
  struct nest n;
  int after = 0;
  run_nested(RX_BREAK_ALL, &n, &after);
}

static void break_then_cancel_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  (*(int *)w->data)++;
  rx_break(loop, RX_BREAK_ALL);
  rx_break(loop, RX_BREAK_CANCEL);
}

static void test_break_cancel(void **state) {
  (void)state;
  int a = 0, b = 0;
  rx_timer ta, tb;
  rx_timer_init(&ta, break_then_cancel_cb, 0, 0);
  rx_timer_init(&tb, count_cb, RX_MSEC(5), 0);
  ta.data = &a;
  tb.data = &b;
  rx_timer_start(rxt.loop, &ta);
  rx_timer_start(rxt.loop, &tb);
  /* The cancelled break does not stop the run: it goes on until tb fired. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(a, 1);
  assert_int_equal(b, 1);
}

static void break_one_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  (*(int *)w->data)++;
  rx_break(loop, RX_BREAK_ONE);
}

/* A break ends the run, and the next rx_run starts afresh. Invalid break
 * modes are ignored. */
static void test_break_one_and_resume(void **state) {
  (void)state;
  int a = 0, b = 0;
  rx_timer ta, tb;
  rx_timer_init(&ta, break_one_cb, 0, RX_MSEC(1));
  rx_timer_init(&tb, count_cb, RX_SEC(60), 0);
  ta.data = &a;
  tb.data = &b;
  rx_timer_start(rxt.loop, &ta);
  rx_timer_start(rxt.loop, &tb);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 1);
  assert_int_equal(a, 1);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 1);
  assert_int_equal(a, 2);
  rx_break(rxt.loop, 7); /* ignored */
  assert_int_equal(rxt.loop->break_how, RX_BREAK_CANCEL);
  rx_timer_stop(rxt.loop, &ta);
  rx_timer_stop(rxt.loop, &tb);
  assert_int_equal(b, 0);
}

/* ---------------------------------------------------------------------------
 * References, counters, data.
 */

static void test_ref_unref(void **state) {
  (void)state;
  int fired = 0;
  rx_timer t;
  rx_timer_init(&t, count_cb, RX_SEC(10), 0);
  t.data = &fired;
  rx_timer_start(rxt.loop, &t);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  rx_unref(rxt.loop);
  /* The unref'd timer does not keep rx_run alive, nor make it block. */
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_ONCE), 0);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(5));
  assert_int_equal(fired, 0);
  assert_true(rx_is_active(&t));
  /* An extra reference keeps a loop without watchers alive. */
  rx_ref(rxt.loop);
  rx_ref(rxt.loop);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 1);
  rx_unref(rxt.loop);
  rx_ref(rxt.loop); /* libev's idiom: ref before stopping an unref'd one */
  rx_timer_stop(rxt.loop, &t);
  rx_unref(rxt.loop);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_NOWAIT), 0);
}

static void test_iteration_counts(void **state) {
  (void)state;
  uint64_t i0 = rx_iteration(rxt.loop);
  rxt_run_nowait(rxt.loop, 5);
  rxt_assert_eq(rx_iteration(rxt.loop), i0 + 5);

  /* A default run with a repeating timer counts one per iteration. */
  int fired = 0;
  rx_timer t;
  rx_timer_init(&t, break_one_cb, RX_MSEC(1), 0);
  t.data = &fired;
  rx_timer_start(rxt.loop, &t);
  uint64_t i1 = rx_iteration(rxt.loop);
  rx_run(rxt.loop, RX_RUN_DEFAULT);
  assert_int_equal(fired, 1);
  rxt_assert_gt(rx_iteration(rxt.loop), i1);
}

struct pend {
  unsigned seen[3];
  int n;
};

static void pend_check_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)revents;
  struct pend *p = w->data;
  p->seen[p->n++] = rx_pending_count(loop);
}

static void test_pending_count(void **state) {
  (void)state;
  struct pend p = {{0}, 0};
  rx_check c[3];
  for (int i = 0; i < 3; i++) {
    rx_check_init(&c[i], pend_check_cb);
    c[i].data = &p;
    rx_check_start(rxt.loop, &c[i]);
  }
  assert_int_equal(rx_pending_count(rxt.loop), 0);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(p.n, 3);
  assert_int_equal(p.seen[0], 2);
  assert_int_equal(p.seen[1], 1);
  assert_int_equal(p.seen[2], 0);
  assert_int_equal(rx_pending_count(rxt.loop), 0);
  for (int i = 0; i < 3; i++)
    rx_check_stop(rxt.loop, &c[i]);
}

static void test_loop_data(void **state) {
  (void)state;
  int x;
  assert_null(rx_loop_data(rxt.loop));
  rx_loop_set_data(rxt.loop, &x);
  assert_ptr_equal(rx_loop_data(rxt.loop), &x);
  rx_loop_set_data(rxt.loop, NULL);
  assert_null(rx_loop_data(rxt.loop));
}

/* ---------------------------------------------------------------------------
 * Priorities: events of every priority fed in one iteration run highest
 * first, FIFO within a priority, whatever the watcher kind.
 */

struct order {
  int log[64];
  int n;
};

struct prio_check {
  rx_check w;
  struct order *o;
  int id;
};

static void prio_check_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)loop;
  assert_int_equal(revents, RX_CHECK);
  struct prio_check *p = (struct prio_check *)w;
  p->o->log[p->o->n++] = p->id;
}

static void test_priorities(void **state) {
  (void)state;
  /* Started in this order; ids encode (priority, start rank). */
  static const int prios[] = {0, -2, 2, 1, -1, 2, 0, -2, 1, -1, 2, 0};
  enum { N = sizeof(prios) / sizeof(prios[0]) };
  struct prio_check c[N];
  struct order o = {{0}, 0};
  for (int i = 0; i < N; i++) {
    rx_check_init(&c[i].w, prio_check_cb);
    assert_int_equal(rx_check_set_priority(&c[i].w, prios[i]), 0);
    c[i].o = &o;
    c[i].id = i;
    rx_check_start(rxt.loop, &c[i].w);
  }
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(o.n, N);
  /* Expected: by priority descending, then by start order. */
  int k = 0;
  for (int pri = RX_MAXPRI; pri >= RX_MINPRI; pri--)
    for (int i = 0; i < N; i++)
      if (prios[i] == pri)
        assert_int_equal(o.log[k++], i);
  for (int i = 0; i < N; i++)
    rx_check_stop(rxt.loop, &c[i].w);
}

/* A callback that makes a higher-priority event pending has it run next,
 * before the remaining lower-priority ones. */
struct feeder {
  rx_check w;
  struct order *o;
  rx_timer *hi;
};

static void hi_timer_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct order *o = w->data;
  o->log[o->n++] = 100;
}

static void feeder_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)revents;
  struct feeder *f = (struct feeder *)w;
  f->o->log[f->o->n++] = 1;
  /* A 0 ms timer started now expires in the next iteration, not this one:
   * only the wait's expiry pass makes a timer pending. */
  rx_timer_start(loop, f->hi);
}

static void lo_check_cb(rx_loop *loop, rx_check *w, int revents) {
  (void)loop;
  (void)revents;
  struct order *o = w->data;
  o->log[o->n++] = 2;
}

static void test_priority_timers_first_in_band(void **state) {
  (void)state;
  struct order o = {{0}, 0};
  rx_timer t0, t1;
  rx_check c;
  /* Same priority: expired timers run before other events of it. */
  rx_check_init(&c, lo_check_cb);
  c.data = &o;
  rx_timer_init(&t0, hi_timer_cb, 0, 0);
  t0.data = &o;
  rx_check_start(rxt.loop, &c);
  rx_timer_start(rxt.loop, &t0);
  rx_run(rxt.loop, RX_RUN_NOWAIT);
  assert_int_equal(o.n, 2);
  assert_int_equal(o.log[0], 100);
  assert_int_equal(o.log[1], 2);
  rx_check_stop(rxt.loop, &c);

  /* A lower-priority timer waits for higher-priority checks. */
  o.n = 0;
  struct feeder f;
  rx_check_init(&f.w, feeder_cb);
  rx_check_set_priority(&f.w, 2);
  f.o = &o;
  rx_timer_init(&t1, hi_timer_cb, 0, 0);
  t1.data = &o;
  rx_timer_set_priority(&t1, -1);
  f.hi = &t1;
  rx_check_start(rxt.loop, &f.w);
  rx_timer_start(rxt.loop, &t0);
  rx_run(rxt.loop, RX_RUN_NOWAIT); /* check(2) feeds t1, t0(0) fires */
  assert_int_equal(o.n, 2);
  assert_int_equal(o.log[0], 1);
  assert_int_equal(o.log[1], 100);
  rx_check_stop(rxt.loop, &f.w);
  rx_run(rxt.loop, RX_RUN_NOWAIT); /* t1 expires */
  assert_int_equal(o.n, 3);
  assert_int_equal(o.log[2], 100);
}

/* ---------------------------------------------------------------------------
 * Time.
 */

static void test_now(void **state) {
  (void)state;
  int64_t before = rxt_clock();
  rx_now_update(rxt.loop);
  int64_t n0 = rx_now(rxt.loop);
  int64_t after = rxt_clock();
  rxt_assert_ge(n0, before);
  rxt_assert_le(n0, after);
  /* Cached: unchanged until updated or an iteration. */
  rxt_sleep_ns(RX_MSEC(2));
  rxt_assert_eq(rx_now(rxt.loop), n0);
  rx_now_update(rxt.loop);
  rxt_assert_ge(rx_now(rxt.loop), n0 + RX_MSEC(2));
  int64_t prev = rx_now(rxt.loop);
  for (int i = 0; i < 100; i++) {
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    rxt_assert_ge(rx_now(rxt.loop), prev);
    prev = rx_now(rxt.loop);
  }
  rxt_assert_le(prev, rxt_clock());
}

/* ---------------------------------------------------------------------------
 * rx_strerror.
 */

static void test_strerror(void **state) {
  (void)state;
  assert_string_equal(rx_strerror(-EINVAL), strerror(EINVAL));
  assert_string_equal(rx_strerror(-ENOMEM), strerror(ENOMEM));
  assert_string_equal(rx_strerror(-EBUSY), strerror(EBUSY));
  assert_string_equal(rx_strerror(-EBADF), strerror(EBADF));
  assert_non_null(rx_strerror(0));
  assert_non_null(rx_strerror(5));
  assert_non_null(rx_strerror(-100000));
  assert_non_null(rx_strerror(INT32_MIN));
  assert_true(strlen(rx_strerror(-100000)) > 0);
}

/* ---------------------------------------------------------------------------
 * The allocator hook. These tests make their own loops (RXT_TEST_NOLOOP);
 * the fixture has installed the tracking allocator.
 */

static void test_allocator_counts_and_frees(void **state) {
  (void)state;
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  rxt_assert_gt(rxt_heap.blocks, 0); /* the loop went through the hook */
  /* A loop exists: the allocator cannot change. */
  assert_int_equal(rx_set_allocator(NULL), -EBUSY);
  assert_int_equal(rx_set_allocator(&rxt_allocator), -EBUSY);

  /* fd table growth goes through the hook, with sizes that match. */
  int sv[2];
  rxt_pair(sv);
  int big = fcntl(sv[0], F_DUPFD_CLOEXEC, 700);
  assert_true(big >= 700);
  rx_io w1, w2;
  rx_io_init(&w1, NULL, sv[0], RX_READ);
  rx_io_init(&w2, NULL, big, RX_READ);
  assert_int_equal(rx_io_start(loop, &w1), 0);
  long blocks = rxt_heap.blocks;
  assert_int_equal(rx_io_start(loop, &w2), 0);
  rxt_assert_ge(rxt_heap.blocks, blocks);
  rx_run(loop, RX_RUN_NOWAIT);
  rx_loop_free(loop);
  assert_false(rx_is_active(&w1));
  assert_false(rx_is_active(&w2));
  rxt_assert_eq(rxt_heap.blocks, 0);
  rxt_assert_eq(rxt_heap.bytes, 0);
  rxt_assert_eq(rxt_heap.size_mismatch, 0);
  close(big);
  rxt_close_pair(sv);

  /* No loop: the hook can be swapped again. */
  assert_int_equal(rx_set_allocator(NULL), 0);
  assert_int_equal(rx_set_allocator(&rxt_allocator), 0);
}

static void test_allocator_missing_functions(void **state) {
  (void)state;
  struct rx_allocator a = rxt_allocator;
  a.alloc = NULL;
  assert_int_equal(rx_set_allocator(&a), -EINVAL);
  a = rxt_allocator;
  a.realloc = NULL;
  assert_int_equal(rx_set_allocator(&a), -EINVAL);
  a = rxt_allocator;
  a.free = NULL;
  assert_int_equal(rx_set_allocator(&a), -EINVAL);
  /* the tracking allocator is still installed */
  rx_loop *loop;
  long calls = rxt_heap.calls;
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  rxt_assert_gt(rxt_heap.calls, calls);
  rx_loop_free(loop);
}

static void test_allocator_failing_new(void **state) {
  (void)state;
  rx_loop *loop = (rx_loop *)(uintptr_t)1;
  rxt_heap.fail_all = 1;
  assert_int_equal(rx_loop_new(&loop, NULL), -ENOMEM);
  assert_null(loop);
  rxt_heap.fail_all = 0;
  /* A failed rx_loop_new leaves no loop behind: the allocator may change. */
  assert_int_equal(rx_set_allocator(&rxt_allocator), 0);
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  rx_loop_free(loop);
}

static void io_count_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  assert_true(revents & RX_WRITE);
  (*(int *)w->data)++;
}

/* An fd table that cannot grow: -ENOMEM, the watcher stays inactive and the
 * loop keeps working. `fail_second` refuses only the second of the two
 * tables a growth allocates, so that the first one succeeds. */
static void failing_growth(int fail_second) {
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  int sv[2];
  rxt_pair(sv);
  int big = fcntl(sv[1], F_DUPFD_CLOEXEC, 3000);
  assert_true(big >= 3000);

  int small_n = 0, big_n = 0;
  rx_io small, w;
  rx_io_init(&small, io_count_cb, sv[0], RX_WRITE);
  small.data = &small_n;
  assert_int_equal(rx_io_start(loop, &small), 0);

  rx_io_init(&w, io_count_cb, big, RX_WRITE);
  w.data = &big_n;
  if (fail_second)
    rxt_heap.fail_at = rxt_heap.calls + 2;
  else
    rxt_heap.fail_all = 1;
  assert_int_equal(rx_io_start(loop, &w), -ENOMEM);
  rxt_heap.fail_all = 0;
  rxt_heap.fail_at = 0;
  rxt_assert_gt(rxt_heap.failed, 0);
  assert_false(rx_is_active(&w));

  /* The loop still works, and the big fd can be watched once memory is
   * back. */
  rxt_run_nowait(loop, 2);
  rxt_assert_ge(small_n, 1);
  assert_int_equal(big_n, 0);
  assert_int_equal(rx_io_start(loop, &w), 0);
  rxt_run_nowait(loop, 2);
  rxt_assert_ge(big_n, 1);
  assert_int_equal(rx_io_stop(loop, &w), 0);
  assert_int_equal(rx_io_stop(loop, &small), 0);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  rx_loop_free(loop);
  close(big);
  rxt_close_pair(sv);
}

static void test_allocator_failing_io_start(void **state) {
  (void)state;
  failing_growth(0);
}

static void test_allocator_failing_second_table(void **state) {
  (void)state;
  failing_growth(1);
}

/* DESIGN.md, "Memory": no allocation on start, stop or dispatch (once the
 * fd table covers the fd). */
static void alloc_free_io_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)revents;
  rx_io_stop(loop, w);
  rx_io_start(loop, w);
}

static void test_no_allocation_in_steady_state(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  rx_io io;
  rx_timer t[8];
  int fired = 0;
  rx_io_init(&io, alloc_free_io_cb, sv[0], RX_WRITE);
  assert_int_equal(rx_io_start(rxt.loop, &io), 0); /* grows the fd table */
  rxt_run_nowait(rxt.loop, 2);
  long calls = rxt_heap.calls;
  for (int round = 0; round < 50; round++) {
    for (int i = 0; i < 8; i++) {
      rx_timer_init(&t[i], count_cb, i * RX_USEC(100), 0);
      t[i].data = &fired;
      rx_timer_start(rxt.loop, &t[i]);
    }
    rx_io_stop(rxt.loop, &io);
    rx_io_start(rxt.loop, &io);
    rx_run(rxt.loop, RX_RUN_NOWAIT);
    for (int i = 0; i < 8; i++)
      rx_timer_stop(rxt.loop, &t[i]);
  }
  rxt_assert_gt(fired, 0);
  rxt_assert_eq(rxt_heap.calls, calls);
  rx_io_stop(rxt.loop, &io);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * rx_loop_free from one of the loop's own callbacks: -EBUSY, the loop
 * untouched and usable afterwards.
 */
struct self_free {
  int idle_rc, task_rc, cleanup_rc, calls;
  rx_idle idle;
  rx_task task;
  rx_cleanup cleanup;
};
static struct self_free sf;

static void sf_idle(rx_loop *loop, rx_idle *w, int revents) {
  (void)revents;
  sf.idle_rc = rx_loop_free(loop);
  sf.calls++;
  rx_idle_stop(loop, w);
}
static void sf_task(rx_loop *loop, rx_task *task) {
  (void)task;
  sf.task_rc = rx_loop_free(loop);
  sf.calls++;
}
static void sf_cleanup(rx_loop *loop, rx_cleanup *w, int revents) {
  (void)w;
  (void)revents;
  sf.cleanup_rc = rx_loop_free(loop);
  sf.calls++;
}

static void test_free_from_own_callback(void **state) {
  (void)state;
  rx_loop *loop;
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  memset(&sf, 0, sizeof(sf));
  rx_idle_init(&sf.idle, sf_idle);
  assert_int_equal(rx_idle_start(loop, &sf.idle), 0);
  sf.task.fn = sf_task;
  assert_int_equal(rx_loop_post(loop, &sf.task), 0);
  assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(sf.calls, 2);
  assert_int_equal(sf.idle_rc, -EBUSY);
  assert_int_equal(sf.task_rc, -EBUSY);
  /* still a working loop */
  assert_int_equal(rx_verify(loop, NULL), 0);
  assert_int_equal(rx_idle_start(loop, &sf.idle), 0);
  assert_int_equal(rx_run(loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(sf.calls, 3);
  rx_cleanup_init(&sf.cleanup, sf_cleanup);
  assert_int_equal(rx_cleanup_start(loop, &sf.cleanup), 0);
  assert_int_equal(rx_loop_free(loop), 0);
  assert_int_equal(sf.calls, 4);
  assert_int_equal(sf.cleanup_rc, -EBUSY);
}

/* ring_entries: both backends take exactly 0..32768 (the guide's range) and
 * refuse anything above with -EINVAL. */
static void test_ring_entries_range(void **state) {
  (void)state;
  static const unsigned ok[] = {0, 1, 16, 16384, 16385, 32767, 32768};
  static const unsigned bad[] = {32769, 65536, 1u << 20, UINT32_MAX};
  struct rx_loop_options o = {0};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    rx_loop *loop = NULL;
    o.ring_entries = ok[i];
    int rc = rx_loop_new(&loop, &o);
    if (rc != 0)
      fail_msg("ring_entries %u: %s", ok[i], rx_strerror(rc));
    if (rxt.backend != NULL)
      assert_string_equal(rx_backend_name(loop), rxt.backend);
    assert_int_equal(rx_loop_free(loop), 0);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rx_loop *loop = (rx_loop *)(uintptr_t)1;
    o.ring_entries = bad[i];
    assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
    assert_null(loop);
  }
}

/* A misspelt RX_BACKEND is -EINVAL, as the README says, on every path:
 * default options, and options that name no backend; a named backend
 * wins over it. */
static void test_env_backend_typo(void **state) {
  (void)state;
  char *saved = rxt.backend != NULL ? strdup(rxt.backend) : NULL;
  rx_loop *a = NULL, *b = NULL, *c = NULL;
  setenv("RX_BACKEND", "epol", 1);
  int ra = rx_loop_new(&a, NULL);
  int rb = rx_loop_new(&b, &(struct rx_loop_options){.ring_entries = 8});
  int rc = rx_loop_new(&c, &(struct rx_loop_options){.backend = "epoll"});
  if (saved != NULL)
    setenv("RX_BACKEND", saved, 1);
  else
    unsetenv("RX_BACKEND");
  free(saved);
  assert_int_equal(ra, -EINVAL);
  assert_int_equal(rb, -EINVAL);
  assert_int_equal(rc, 0);
  assert_string_equal(rx_backend_reason(c), "requested in rx_loop_options");
  assert_int_equal(rx_loop_free(c), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST_NOLOOP(test_new_bad_arguments),
      RXT_TEST_NOLOOP(test_new_unknown_env_backend),
      RXT_TEST_NOLOOP(test_new_forced_backends),
      RXT_TEST(test_backend_name_matches_env),
      RXT_TEST_NOLOOP(test_many_loops),
      RXT_TEST_NOLOOP(test_default_loop),
      RXT_TEST(test_run_default_without_watchers),
      RXT_TEST(test_run_bad_mode),
      RXT_TEST(test_run_nowait_never_blocks),
      RXT_TEST(test_run_once_blocks_until_timer),
      RXT_TEST(test_run_returns_active),
      RXT_TEST(test_break_one_nested),
      RXT_TEST(test_break_all_nested),
      RXT_TEST(test_break_cancel),
      RXT_TEST(test_break_one_and_resume),
      RXT_TEST(test_ref_unref),
      RXT_TEST(test_iteration_counts),
      RXT_TEST(test_pending_count),
      RXT_TEST(test_loop_data),
      RXT_TEST(test_priorities),
      RXT_TEST(test_priority_timers_first_in_band),
      RXT_TEST(test_now),
      RXT_TEST_NOLOOP(test_strerror),
      RXT_TEST_NOLOOP(test_allocator_counts_and_frees),
      RXT_TEST_NOLOOP(test_allocator_missing_functions),
      RXT_TEST_NOLOOP(test_allocator_failing_new),
      RXT_TEST_NOLOOP(test_allocator_failing_io_start),
      RXT_TEST_NOLOOP(test_allocator_failing_second_table),
      RXT_TEST(test_no_allocation_in_steady_state),
      RXT_TEST_NOLOOP(test_free_from_own_callback),
      RXT_TEST_NOLOOP(test_ring_entries_range),
      RXT_TEST_NOLOOP(test_env_backend_typo),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-loop [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
