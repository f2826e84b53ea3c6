/*
 * test-loop.c - tests reactor/loop.c: a loop's life, backend selection, run
 * modes, breaks, references, counters, priorities, the clock, errors and
 * the allocator hook; and the loop controls (see below). Runs once per
 * backend (RX_BACKEND, see meson.build).
 */
#include "helpers.h"

#include <pthread.h>
#include <signal.h>
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
  assert_null(loop);            /* cleared on failure */
  o.flags = RX_LOOP_DEFER << 1; /* the next bit: not one either */
  assert_int_equal(rx_loop_new(&loop, &o), -EINVAL);
  assert_null(loop);
  /* RX_LOOP_DEFER is taken on either backend (epoll ignores it). */
  o.flags = RX_LOOP_DEFER;
  assert_int_equal(rx_loop_new(&loop, &o), 0);
  assert_int_equal(rx_loop_free(loop), 0);
  loop = (rx_loop *)(uintptr_t)1;

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
  int how; /* break mode used by the inner ticker */
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

/* ===========================================================================
 * The loop controls modelled on libev's: the manual clock
 * (RX_LOOP_MANUAL_CLOCK, rx_clock_advance), rx_suspend/rx_resume, the io
 * and timeout collect intervals, the invoke override, rx_feed_event and
 * rx_feed_fd_event, rx_loop_metrics, priorities and clearing, and feeding
 * with the wrong loop.
 *
 * Timing is asserted only as correctness bounds: never early, never lost,
 * and "did not sleep" bounds that are orders of magnitude above the real
 * cost. A test that could block forever if the code under test were wrong
 * runs under the watchdog (helpers.h), which breaks the loop instead.
 */

/* A loop on the manual clock, backend from $RX_BACKEND. */
static int setup_manual(void **state) {
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.flags = RX_LOOP_MANUAL_CLOCK;
  return rxt_setup_opts(state, &o);
}
#define RXT_TEST_MANUAL(f) RXT_TEST_WITH(f, setup_manual)

/* splitmix64: a fixed seed gives the same timers on every run. */
static uint64_t rng_state;
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* An io watcher that drains what it reads and counts the bytes. */
struct reader {
  rx_io w;
  int bytes;
  int calls;
  int done_at; /* *done is set once bytes reaches this */
  int done;
};

static void reader_cb(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct reader *r = (struct reader *)w;
  r->calls++;
  if (revents & RX_READ) {
    int n = rxt_drain(w->fd);
    if (n > 0)
      r->bytes += n;
  }
  if (r->bytes >= r->done_at)
    r->done = 1;
}

/* ---------------------------------------------------------------------------
 * 1. The manual clock.
 */

static void test_manual_clock_basics(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;

  assert_int_equal(rx_now(loop), 0);
  assert_int_equal(rx_clock_advance(loop, -1), -EINVAL);
  assert_int_equal(rx_clock_advance(loop, INT64_MIN), -EINVAL);
  assert_int_equal(rx_clock_advance(NULL, 1), -EINVAL);
  assert_int_equal(rx_now(loop), 0);
  assert_int_equal(rx_clock_advance(loop, 0), 0);
  assert_int_equal(rx_now(loop), 0);

  /* Only rx_clock_advance() moves it: not rx_now_update(), not a run. */
  rx_now_update(loop);
  assert_int_equal(rx_now(loop), 0);
  assert_int_equal(rx_clock_advance(loop, 5), 0);
  assert_int_equal(rx_now(loop), 5);
  rx_now_update(loop);
  assert_int_equal(rx_now(loop), 5);
  rxt_run_nowait(loop, 3);
  assert_int_equal(rx_run(loop, RX_RUN_ONCE), 0);
  assert_int_equal(rx_now(loop), 5);

  /* A real-clock loop refuses to be advanced. */
  rx_loop *real;
  assert_int_equal(rx_loop_new(&real, NULL), 0);
  int64_t before = rx_now(real);
  assert_true(before > 0);
  assert_int_equal(rx_clock_advance(real, 1), -EINVAL);
  assert_int_equal(rx_clock_advance(real, 0), -EINVAL);
  assert_int_equal(rx_now(real), before);
  rx_loop_free(real);

  /* The clock saturates instead of overflowing. */
  struct rx_loop_options o;
  memset(&o, 0, sizeof(o));
  o.flags = RX_LOOP_MANUAL_CLOCK;
  rx_loop *m;
  assert_int_equal(rx_loop_new(&m, &o), 0);
  assert_int_equal(rx_now(m), 0);
  assert_int_equal(rx_clock_advance(m, INT64_MAX - 10), 0);
  assert_int_equal(rx_clock_advance(m, 100), 0);
  assert_true(rx_now(m) == INT64_MAX);
  rx_loop_free(m);
}

#define NT 100000
#define SPAN RX_SEC(10)

struct mt {
  rx_timer w;
  int64_t at;
  int idx;
};

static struct {
  struct mt *t;
  int *fired; /* indices in firing order */
  int nfired;
  int early; /* fired with rx_now() before the deadline */
  int bad_revents;
} many;

static void many_cb(rx_loop *loop, rx_timer *w, int revents) {
  struct mt *x = (struct mt *)w;
  if (rx_now(loop) < x->at)
    many.early++;
  if (revents != RX_TIMER)
    many.bad_revents++;
  if (many.nfired < NT)
    many.fired[many.nfired] = x->idx;
  many.nfired++;
}

static int by_deadline_then_start(const void *a, const void *b) {
  const struct mt *x = &many.t[*(const int *)a], *y = &many.t[*(const int *)b];
  if (x->at != y->at)
    return x->at < y->at ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* How many of the sorted deadlines are <= now. */
static int due_by(const int *sorted, int64_t now) {
  int lo = 0, hi = NT;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (many.t[sorted[mid]].at <= now)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* 100,000 one-shot timers over [1 ns, 10 s], about a tenth sharing a
 * deadline with another: the clock is moved in uneven steps, and after each
 * step's NOWAIT iteration exactly the timers due by then have fired, none
 * early, in deadline order with ties in start order; after 10 s all have.
 * Nothing sleeps: the whole test takes a fraction of the 10 s simulated. */
static void test_manual_clock_many_timers(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int64_t wall0 = rxt_clock();

  memset(&many, 0, sizeof(many));
  many.t = calloc(NT, sizeof(*many.t));
  many.fired = calloc(NT, sizeof(*many.fired));
  int *sorted = calloc(NT, sizeof(*sorted));
  assert_non_null(many.t);
  assert_non_null(many.fired);
  assert_non_null(sorted);

  rng_state = 20240601;
  for (int i = 0; i < NT; i++) {
    int64_t at;
    if (i == 0)
      at = 1;
    else if (i == 1)
      at = SPAN;
    else if (i > 10 && rng_next() % 10 == 0)
      at = many.t[rng_next() % (uint64_t)i].at; /* a tie */
    else
      at = 1 + (int64_t)(rng_next() % (uint64_t)SPAN);
    many.t[i].at = at;
    many.t[i].idx = i;
    sorted[i] = i;
    rx_timer_init(&many.t[i].w, many_cb, at, 0);
  }
  qsort(sorted, NT, sizeof(*sorted), by_deadline_then_start);
  int ties = 0;
  for (int i = 1; i < NT; i++)
    ties += many.t[sorted[i]].at == many.t[sorted[i - 1]].at;
  assert_true(ties > NT / 20);

  for (int i = 0; i < NT; i++)
    assert_int_equal(rx_timer_start(loop, &many.t[i].w), 0);
  assert_int_equal(rx_now(loop), 0);

  /* Uneven steps over the first 5 s, each followed by one NOWAIT
   * iteration: "the timers that become due fire in the next iteration". */
  int64_t now = 0;
  int steps = 0;
  while (now < SPAN / 2) {
    int64_t step = 1 + (int64_t)(rng_next() % (uint64_t)RX_MSEC(50));
    if (steps % 17 == 0)
      step = 1; /* a nanosecond at a time, now and then */
    assert_int_equal(rx_clock_advance(loop, step), 0);
    now += step;
    steps++;
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    assert_int_equal(rx_now(loop), now);
    int due = due_by(sorted, now);
    if (many.nfired != due)
      fail_msg("at %lld ns (step %d): %d timers fired, %d are due",
               (long long)now, steps, many.nfired, due);
  }

  /* The rest in one jump, then NOWAIT runs. */
  assert_int_equal(rx_clock_advance(loop, SPAN - now), 0);
  rxt_run_nowait(loop, 3);
  assert_int_equal(rx_now(loop), SPAN);
  rxt_assert_eq(many.nfired, NT);
  rxt_assert_eq(many.early, 0);
  rxt_assert_eq(many.bad_revents, 0);
  for (int i = 0; i < NT; i++)
    if (many.fired[i] != sorted[i])
      fail_msg("firing %d: timer %d (at %lld) instead of %d (at %lld)", i,
               many.fired[i], (long long)many.t[many.fired[i]].at, sorted[i],
               (long long)many.t[sorted[i]].at);
  for (int i = 0; i < NT; i += 997)
    assert_false(rx_is_active(&many.t[i].w));
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  rxt_assert_verified(loop);

  /* 10 s of timers without sleeping through them. */
  rxt_assert_lt(rxt_clock() - wall0, RX_SEC(5));

  free(sorted);
  free(many.fired);
  free(many.t);
  memset(&many, 0, sizeof(many));
}

/* A repeating timer fires once per advance of `repeat`, keeps its phase
 * and, after a jump over several periods, fires once and stays in phase. */
static void test_manual_clock_repeat(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  const int64_t r = RX_MSEC(100);
  struct rxt_rec h = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, r, r);
  t.data = &h;
  assert_int_equal(rx_timer_start(loop, &t), 0);

  for (int k = 1; k <= 5; k++) {
    assert_int_equal(rx_clock_advance(loop, r / 2), 0);
    rxt_run_nowait(loop, 3);
    assert_int_equal(h.calls, k - 1);
    assert_int_equal(rx_clock_advance(loop, r - r / 2), 0);
    rxt_run_nowait(loop, 3);
    assert_int_equal(h.calls, k);
    assert_int_equal(h.now, k * r);
    assert_int_equal(h.revents, RX_TIMER);
    assert_true(rx_is_active(&t));
    rxt_assert_eq(rx_timer_remaining(loop, &t), r);
  }

  /* Three periods at once: one callback, next deadline still on the grid. */
  assert_int_equal(rx_clock_advance(loop, 3 * r), 0);
  rxt_run_nowait(loop, 3);
  assert_int_equal(h.calls, 6);
  rxt_assert_eq(rx_timer_remaining(loop, &t), r);
  assert_int_equal(rx_clock_advance(loop, r), 0);
  rxt_run_nowait(loop, 3);
  assert_int_equal(h.calls, 7);
  assert_int_equal(h.now, 9 * r);

  assert_int_equal(rx_timer_stop(loop, &t), 0);
  rxt_assert_verified(loop);
}

/* Only future timers: RX_RUN_ONCE on the manual clock does not block (the
 * clock would never move while it did). */
static void test_manual_clock_once_does_not_block(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec h = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, RX_SEC(1), 0);
  t.data = &h;
  assert_int_equal(rx_timer_start(loop, &t), 0);

  rxt_wd_start(loop, RX_SEC(3));
  int64_t t0 = rxt_clock();
  int rc1 = rx_run(loop, RX_RUN_ONCE);
  int rc2 = rx_run(loop, RX_RUN_ONCE);
  int64_t took = rxt_clock() - t0;
  int fired = rxt_wd_stop();
  assert_false(fired);
  assert_int_equal(rc1, 1);
  assert_int_equal(rc2, 1);
  rxt_assert_lt(took, RX_SEC(1));
  assert_int_equal(h.calls, 0);
  assert_int_equal(rx_now(loop), 0);

  /* Advanced to the deadline, ONCE fires it, still without blocking. */
  assert_int_equal(rx_clock_advance(loop, RX_SEC(1)), 0);
  assert_int_equal(rx_run(loop, RX_RUN_ONCE), 0);
  assert_int_equal(h.calls, 1);
}

/* ---------------------------------------------------------------------------
 * 2. rx_suspend / rx_resume.
 */

/* Real clock: a 100 ms timer, suspended for 300 ms, still has its 100 ms
 * after the resume and fires 100 ms after it, not at once. */
static void test_suspend_resume_real_clock(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec h = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, RX_MSEC(100), 0);
  t.data = &h;

  rx_now_update(loop);
  int64_t start = rx_now(loop);
  assert_int_equal(rx_timer_start(loop, &t), 0);
  rx_suspend(loop);
  int64_t suspended = loop->suspended_at;
  rxt_assert_ge(suspended, start);
  rxt_sleep_ns(RX_MSEC(300));
  rx_resume(loop);
  int64_t resumed = rx_now(loop);
  rxt_assert_ge(resumed - suspended, RX_MSEC(300));
  rxt_assert_eq(loop->suspended_at, -1);

  int64_t left = rx_timer_remaining(loop, &t);
  rxt_assert_ge(left, RX_MSEC(90));
  rxt_assert_le(left, RX_MSEC(100));
  /* Exactly: the suspension did not count. */
  rxt_assert_eq(left, RX_MSEC(100) - (suspended - start));

  assert_true(rxt_run_until(loop, &h.calls, RX_SEC(3)));
  assert_int_equal(h.calls, 1);
  rxt_assert_ge(h.now - resumed, RX_MSEC(100) - (suspended - start));
  rxt_assert_ge(h.wall - resumed, RX_MSEC(95));
  rxt_assert_verified(loop);
}

/* Manual clock: rx_suspend() and rx_resume() read rx_now(), so on this
 * clock the suspension is whatever rx_clock_advance() added between them,
 * and timers are shifted by exactly that: time advanced while suspended does
 * not count, as real time passing would not. Without an advance between
 * them, nothing moves. A second rx_suspend() keeps the first one's time;
 * rx_resume() without rx_suspend() does nothing. */
static void test_suspend_resume_manual_clock(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec h = {0}, hr = {0};
  rx_timer t, rep;
  rx_timer_init(&t, rxt_rec_timer_cb, RX_MSEC(100), 0);
  t.data = &h;
  rx_timer_init(&rep, rxt_rec_timer_cb, RX_MSEC(64), RX_MSEC(64));
  rep.data = &hr;
  assert_int_equal(rx_timer_start(loop, &t), 0);
  assert_int_equal(rx_timer_start(loop, &rep), 0);

  /* No advance while suspended: nothing moves. */
  rx_resume(loop); /* not suspended: a no-op */
  rx_suspend(loop);
  rxt_assert_eq(loop->suspended_at, 0);
  rx_resume(loop);
  rxt_assert_eq(rx_timer_remaining(loop, &t), RX_MSEC(100));

  /* 300 ms advanced while suspended, in two parts, a second suspend in
   * between: all of it is taken out. */
  assert_int_equal(rx_clock_advance(loop, RX_MSEC(10)), 0);
  rx_suspend(loop);
  assert_int_equal(rx_clock_advance(loop, RX_MSEC(100)), 0);
  rx_suspend(loop);
  assert_int_equal(rx_clock_advance(loop, RX_MSEC(200)), 0);
  rx_resume(loop);
  assert_int_equal(rx_now(loop), RX_MSEC(310));
  rxt_assert_eq(rx_timer_remaining(loop, &t), RX_MSEC(90));
  rxt_assert_eq(rx_timer_remaining(loop, &rep), RX_MSEC(54));
  rxt_run_nowait(loop, 3);
  assert_int_equal(h.calls, 0);
  assert_int_equal(hr.calls, 0);

  /* They fire at their shifted deadlines, not before. */
  assert_int_equal(rx_clock_advance(loop, RX_MSEC(54) - 1), 0);
  rxt_run_nowait(loop, 2);
  assert_int_equal(hr.calls, 0);
  assert_int_equal(rx_clock_advance(loop, 1), 0);
  rxt_run_nowait(loop, 2);
  assert_int_equal(hr.calls, 1);
  assert_int_equal(hr.now, RX_MSEC(364));
  rxt_assert_eq(rx_timer_remaining(loop, &rep), RX_MSEC(64));

  assert_int_equal(rx_clock_advance(loop, RX_MSEC(36) - 1), 0);
  rxt_run_nowait(loop, 2);
  assert_int_equal(h.calls, 0);
  assert_int_equal(rx_clock_advance(loop, 1), 0);
  rxt_run_nowait(loop, 2);
  assert_int_equal(h.calls, 1);
  assert_int_equal(h.now, RX_MSEC(400));

  assert_int_equal(rx_timer_stop(loop, &rep), 0);
  rxt_assert_verified(loop);
}

/* ---------------------------------------------------------------------------
 * 3. Collect intervals.
 */

static void test_collect_interval_arguments(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  assert_int_equal(rx_set_io_collect_interval(loop, -1), -EINVAL);
  assert_int_equal(rx_set_timeout_collect_interval(loop, -1), -EINVAL);
  assert_int_equal(rx_set_io_collect_interval(loop, INT64_MIN), -EINVAL);
  assert_int_equal(rx_set_timeout_collect_interval(loop, INT64_MIN), -EINVAL);
  assert_int_equal(rx_set_io_collect_interval(NULL, 0), -EINVAL);
  assert_int_equal(rx_set_timeout_collect_interval(NULL, 0), -EINVAL);
  rxt_assert_eq(loop->io_collect, 0);
  rxt_assert_eq(loop->timeout_collect, 0);
  assert_int_equal(rx_set_io_collect_interval(loop, RX_MSEC(1)), 0);
  assert_int_equal(rx_set_timeout_collect_interval(loop, RX_MSEC(2)), 0);
  rxt_assert_eq(loop->io_collect, RX_MSEC(1));
  rxt_assert_eq(loop->timeout_collect, RX_MSEC(2));
  assert_int_equal(rx_set_io_collect_interval(loop, 0), 0);
  assert_int_equal(rx_set_timeout_collect_interval(loop, 0), 0);
}

/* With a 50 ms timeout collect interval, timers 1 ms and 20 ms away expire
 * in the same iteration, and neither early. */
static void test_timeout_collect_groups_timers(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  assert_int_equal(rx_set_timeout_collect_interval(loop, RX_MSEC(50)), 0);
  struct rxt_rec h1 = {0}, h2 = {0};
  rx_timer t1, t2;
  rx_timer_init(&t1, rxt_rec_timer_cb, RX_MSEC(1), 0);
  rx_timer_init(&t2, rxt_rec_timer_cb, RX_MSEC(20), 0);
  t1.data = &h1;
  t2.data = &h2;
  rx_now_update(loop);
  int64_t start = rx_now(loop);
  assert_int_equal(rx_timer_start(loop, &t1), 0);
  assert_int_equal(rx_timer_start(loop, &t2), 0);

  rxt_wd_start(loop, RX_SEC(3));
  int runs = 0;
  while (h1.calls + h2.calls < 2 && runs < 100 && !rxt_wd_fired()) {
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
    runs++;
  }
  assert_false(rxt_wd_stop());
  assert_int_equal(h1.calls, 1);
  assert_int_equal(h2.calls, 1);
  assert_true(h1.iteration == h2.iteration);
  rxt_assert_ge(h1.now, start + RX_MSEC(1));
  rxt_assert_ge(h2.now, start + RX_MSEC(20));
  rxt_assert_ge(h2.wall, start + RX_MSEC(20));
}

static void *two_writes(void *arg) {
  int fd = *(int *)arg;
  rxt_sleep_ns(RX_MSEC(20));
  char c = 'a';
  (void)!write(fd, &c, 1);
  rxt_sleep_ns(RX_MSEC(5));
  c = 'b';
  (void)!write(fd, &c, 1);
  return NULL;
}

/* With a 20 ms io collect interval: a write made before the wait is still
 * reported, two writes from another thread 5 ms apart are both delivered
 * (usually in one iteration, which is not asserted), a NOWAIT iteration does
 * not nap, and a timer still bounds a blocking wait. */
static void test_io_collect(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2];
  rxt_pair(sv);
  struct reader r;
  memset(&r, 0, sizeof(r));
  r.done_at = 1;
  rx_io_init(&r.w, reader_cb, sv[0], RX_READ);
  assert_int_equal(rx_io_start(loop, &r.w), 0);
  rxt_run_nowait(loop, 2); /* registered */
  assert_int_equal(rx_set_io_collect_interval(loop, RX_MSEC(20)), 0);

  /* Written before the wait. */
  rxt_send(sv[1], 'x');
  assert_true(rxt_run_until(loop, &r.done, RX_SEC(3)));
  assert_int_equal(r.bytes, 1);

  /* Two writes from another thread. */
  r.done = 0;
  r.done_at = 3;
  uint64_t it0 = rx_iteration(loop);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, two_writes, &sv[1]), 0);
  int got = rxt_run_until(loop, &r.done, RX_SEC(3));
  pthread_join(th, NULL);
  assert_true(got);
  assert_int_equal(r.bytes, 3);
  print_message("[          ] two writes 5 ms apart: %llu iteration(s)\n",
                (unsigned long long)(rx_iteration(loop) - it0));

  /* NOWAIT never naps, however long the interval. */
  assert_int_equal(rx_set_io_collect_interval(loop, RX_SEC(2)), 0);
  int64_t t0 = rxt_clock();
  rxt_run_nowait(loop, 10);
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(1));

  /* A 5 ms timer bounds the nap. */
  struct rxt_rec h = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, RX_MSEC(5), 0);
  t.data = &h;
  rx_now_update(loop);
  assert_int_equal(rx_timer_start(loop, &t), 0);
  t0 = rxt_clock();
  rxt_wd_start(loop, RX_SEC(5));
  while (h.calls == 0 && !rxt_wd_fired())
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  assert_false(rxt_wd_stop());
  rxt_assert_lt(rxt_clock() - t0, RX_SEC(1));

  assert_int_equal(rx_io_stop(loop, &r.w), 0);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * 4. The invoke override.
 */

static int invoke_calls;

static void counting_invoke(rx_loop *loop) {
  invoke_calls++;
  rx_invoke_pending(loop);
}

static void deferring_invoke(rx_loop *loop) {
  (void)loop;
  invoke_calls++;
}

static void test_invoke_override(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec hi = {0};
  rx_idle idle;
  rx_idle_init(&idle, rxt_rec_idle_cb);
  idle.data = &hi;
  assert_int_equal(rx_idle_start(loop, &idle), 0);

  invoke_calls = 0;
  rx_set_invoke_pending(loop, counting_invoke);
  assert_true(loop->invoke == counting_invoke);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  assert_true(invoke_calls >= 1);
  assert_int_equal(hi.calls, 1);
  assert_int_equal(hi.revents, RX_IDLE);
  assert_int_equal(rx_pending_count(loop), 0);
  int calls = invoke_calls;
  rxt_run_nowait(loop, 4);
  assert_int_equal(hi.calls, 5);
  assert_true(invoke_calls >= calls + 4);

  /* NULL restores the default. */
  rx_set_invoke_pending(loop, NULL);
  assert_true(loop->invoke == rx_invoke_pending);
  calls = invoke_calls;
  rxt_run_nowait(loop, 3);
  assert_int_equal(invoke_calls, calls);
  assert_int_equal(hi.calls, 8);

  assert_int_equal(rx_idle_stop(loop, &idle), 0);
}

/* An override that does not invoke leaves the events pending until
 * rx_invoke_pending() is called by hand; they then run once each. */
static void test_invoke_override_defers(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec hi = {0}, ht = {0};
  rx_idle idle;
  rx_idle_init(&idle, rxt_rec_idle_cb);
  idle.data = &hi;
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, 0, 0);
  t.data = &ht;
  /* Above the timer's priority: idle watchers are fed only while nothing
   * of their priority is pending (libev's rule). */
  assert_int_equal(rx_idle_set_priority(&idle, 1), 0);
  assert_int_equal(rx_idle_start(loop, &idle), 0);
  assert_int_equal(rx_timer_start(loop, &t), 0);

  invoke_calls = 0;
  rx_set_invoke_pending(loop, deferring_invoke);
  /* The timer is due at once; the idle watcher is fed every iteration. */
  for (int i = 0; i < 3 && !rx_is_pending(&t); i++)
    assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  rxt_run_nowait(loop, 2);
  assert_true(invoke_calls >= 2);
  assert_int_equal(hi.calls, 0);
  assert_int_equal(ht.calls, 0);
  assert_true(rx_is_pending(&t));
  assert_true(rx_is_pending(&idle));
  assert_int_equal(rx_pending_count(loop), 2);
  rxt_assert_verified(loop);

  rx_invoke_pending(loop);
  assert_int_equal(rx_pending_count(loop), 0);
  assert_int_equal(hi.calls, 1);
  assert_int_equal(hi.revents, RX_IDLE);
  assert_int_equal(ht.calls, 1);
  assert_int_equal(ht.revents, RX_TIMER);
  assert_false(rx_is_active(&t));

  rx_set_invoke_pending(loop, NULL);
  assert_int_equal(rx_idle_stop(loop, &idle), 0);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(hi.calls, 1);
}

/* ---------------------------------------------------------------------------
 * 5. Feeding events.
 */

static void test_feed_io(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2];
  rxt_pair(sv);
  struct rxt_rec hs = {0}, ha = {0};
  rx_io stopped, active;
  rx_io_init(&stopped, rxt_rec_io_cb, sv[0], RX_READ);
  rx_io_init(&active, rxt_rec_io_cb, sv[0], RX_READ);
  stopped.data = &hs;
  active.data = &ha;

  /* A stopped watcher: the callback gets exactly what was fed (even bits
   * outside its interest); it stays stopped. */
  assert_int_equal(rx_feed_event(loop, &stopped, RX_WRITE | RX_CUSTOM), 0);
  assert_true(rx_is_pending(&stopped));
  assert_int_equal(rx_pending_count(loop), 1);
  rxt_assert_verified(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(hs.calls, 1);
  assert_int_equal(hs.revents, RX_WRITE | RX_CUSTOM);
  assert_false(hs.was_active);
  assert_false(rx_is_active(&stopped));
  assert_false(rx_is_pending(&stopped));

  /* An active watcher with nothing to read: called with the fed event,
   * stays active, and is not called again for nothing. */
  assert_int_equal(rx_io_start(loop, &active), 0);
  rxt_run_nowait(loop, 2);
  assert_int_equal(ha.calls, 0);
  assert_int_equal(rx_feed_event(loop, &active, RX_READ), 0);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(ha.calls, 1);
  assert_int_equal(ha.revents, RX_READ);
  assert_true(ha.was_active);
  assert_true(rx_is_active(&active));
  rxt_run_nowait(loop, 3);
  assert_int_equal(ha.calls, 1);

  /* It still hears real events afterwards. */
  rxt_send(sv[1], 'x');
  for (int i = 0; i < 200 && ha.calls < 2; i++) {
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    if (ha.calls < 2)
      rxt_sleep_ns(RX_MSEC(1));
  }
  assert_int_equal(ha.calls, 2);
  assert_int_equal(ha.revents, RX_READ);

  /* Fed, then stopped before the callback: never called. */
  assert_int_equal(rx_feed_event(loop, &active, RX_READ), 0);
  assert_int_equal(rx_io_stop(loop, &active), 0);
  assert_int_equal(rx_pending_count(loop), 0);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(ha.calls, 2);
  rxt_assert_verified(loop);
  rxt_close_pair(sv);
}

static void test_feed_other_kinds(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec hi = {0}, hp = {0}, hc = {0}, ha = {0}, ha2 = {0}, hcl = {0};
  rx_idle idle;
  rx_prepare prep;
  rx_check chk;
  rx_async as, as2;
  rx_cleanup cl;
  rx_idle_init(&idle, rxt_rec_idle_cb);
  rx_prepare_init(&prep, rxt_rec_prepare_cb);
  rx_check_init(&chk, rxt_rec_check_cb);
  rx_async_init(&as, rxt_rec_async_cb);
  rx_async_init(&as2, rxt_rec_async_cb);
  rx_cleanup_init(&cl, rxt_rec_cleanup_cb);
  idle.data = &hi;
  prep.data = &hp;
  chk.data = &hc;
  as.data = &ha;
  as2.data = &ha2;
  cl.data = &hcl;
  /* One async watcher active (never sent), the others stopped. */
  assert_int_equal(rx_async_start(loop, &as2), 0);

  assert_int_equal(rx_feed_event(loop, &idle, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &prep, RX_CUSTOM | 1), 0);
  assert_int_equal(rx_feed_event(loop, &chk, RX_CUSTOM | 2), 0);
  assert_int_equal(rx_feed_event(loop, &as, RX_ASYNC), 0);
  assert_int_equal(rx_feed_event(loop, &as2, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &cl, RX_CUSTOM), 0);
  assert_int_equal(rx_pending_count(loop), 6);
  rxt_assert_verified(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(rx_pending_count(loop), 0);

  assert_int_equal(hi.calls, 1);
  assert_int_equal(hi.revents, RX_CUSTOM);
  assert_int_equal(hp.calls, 1);
  assert_int_equal(hp.revents, RX_CUSTOM | 1);
  assert_int_equal(hc.calls, 1);
  assert_int_equal(hc.revents, RX_CUSTOM | 2);
  assert_int_equal(ha.calls, 1);
  assert_int_equal(ha.revents, RX_ASYNC);
  assert_int_equal(ha2.calls, 1);
  assert_int_equal(ha2.revents, RX_CUSTOM);
  assert_true(ha2.was_active);
  assert_int_equal(hcl.calls, 1);
  assert_int_equal(hcl.revents, RX_CUSTOM);
  assert_false(rx_is_active(&idle));
  assert_false(rx_is_active(&prep));
  assert_false(rx_is_active(&chk));
  assert_false(rx_is_active(&as));
  assert_false(rx_is_active(&cl));
  assert_true(rx_is_active(&as2));

  /* Only the fed bits: revents wider than the 20 event bits are cut, not
   * spilled into the watcher's state. */
  assert_int_equal(rx_feed_event(loop, &idle, 0x100000 | RX_IDLE), 0);
  rx_invoke_pending(loop);
  assert_int_equal(hi.revents, RX_IDLE);
  assert_int_equal(rx_async_stop(loop, &as2), 0);
  rxt_assert_verified(loop);
}

static void test_feed_timers(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec hs = {0}, h1 = {0}, hr = {0};
  rx_timer stopped, once, rep;
  rx_timer_init(&stopped, rxt_rec_timer_cb, RX_SEC(5), 0);
  stopped.data = &hs;

  /* Stopped: the callback gets RX_TIMER whatever was fed; stays stopped,
   * and keeps the delay it will start with. */
  assert_int_equal(rx_feed_event(loop, &stopped, RX_CUSTOM), 0);
  assert_true(rx_is_pending(&stopped));
  rxt_assert_verified(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(hs.calls, 1);
  assert_int_equal(hs.revents, RX_TIMER);
  assert_false(rx_is_active(&stopped));
  rxt_assert_eq(rx_timer_remaining(loop, &stopped), RX_SEC(5));

  /* An active one-shot timer not yet due: called now, stays active with
   * its deadline, and fires at it, once. */
  rx_timer_init(&once, rxt_rec_timer_cb, RX_MSEC(30), 0);
  once.data = &h1;
  rx_now_update(loop);
  int64_t deadline = rx_now(loop) + RX_MSEC(30);
  assert_int_equal(rx_timer_start(loop, &once), 0);
  assert_int_equal(rx_feed_event(loop, &once, RX_TIMER), 0);
  assert_true(rx_is_pending(&once));
  assert_true(rx_is_active(&once));
  rxt_assert_verified(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(h1.calls, 1);
  assert_int_equal(h1.revents, RX_TIMER);
  assert_true(h1.was_active);
  assert_true(rx_is_active(&once));
  rxt_assert_eq(rx_now(loop) + rx_timer_remaining(loop, &once), deadline);
  rxt_assert_verified(loop);
  int two = 0;
  for (int i = 0; i < 1000 && h1.calls < 2; i++)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  two = h1.calls;
  assert_int_equal(two, 2);
  rxt_assert_ge(h1.now, deadline);
  rxt_assert_ge(h1.wall, deadline);
  assert_false(rx_is_active(&once));
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  rxt_sleep_ns(RX_MSEC(40));
  rxt_run_nowait(loop, 3);
  assert_int_equal(h1.calls, 2);

  /* An active repeating timer: the fed call does not move its phase. */
  rx_timer_init(&rep, rxt_rec_timer_cb, RX_MSEC(30), RX_MSEC(30));
  rep.data = &hr;
  rx_now_update(loop);
  int64_t first = rx_now(loop) + RX_MSEC(30);
  assert_int_equal(rx_timer_start(loop, &rep), 0);
  assert_int_equal(rx_feed_event(loop, &rep, 0), 0);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 1);
  assert_int_equal(hr.calls, 1);
  assert_int_equal(hr.revents, RX_TIMER);
  assert_true(rx_is_active(&rep));
  rxt_assert_eq(rx_now(loop) + rx_timer_remaining(loop, &rep), first);
  for (int i = 0; i < 1000 && hr.calls < 2; i++)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(hr.calls, 2);
  rxt_assert_ge(hr.now, first);
  for (int i = 0; i < 1000 && hr.calls < 3; i++)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(hr.calls, 3);
  rxt_assert_ge(hr.now, first + RX_MSEC(30));
  assert_true(rx_is_active(&rep));

  /* Fed, then stopped before the callback: not called, and no longer in
   * the wheel either. */
  assert_int_equal(rx_feed_event(loop, &rep, 0), 0);
  assert_int_equal(rx_timer_stop(loop, &rep), 0);
  assert_false(rx_is_active(&rep));
  assert_false(rx_is_pending(&rep));
  assert_int_equal(rx_pending_count(loop), 0);
  rxt_assert_verified(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(hr.calls, 3);
}

/* Two feeds before the callback: one call, revents OR'ed (one call for a
 * timer too). */
static void test_feed_twice_coalesces(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rxt_rec hio = {0}, hi = {0}, ht = {0};
  rx_io io;
  rx_idle idle;
  rx_timer t;
  rx_io_init(&io, rxt_rec_io_cb, 0, RX_READ);
  rx_idle_init(&idle, rxt_rec_idle_cb);
  rx_timer_init(&t, rxt_rec_timer_cb, RX_SEC(1), 0);
  io.data = &hio;
  idle.data = &hi;
  t.data = &ht;

  assert_int_equal(rx_feed_event(loop, &io, RX_READ), 0);
  assert_int_equal(rx_feed_event(loop, &io, RX_WRITE), 0);
  assert_int_equal(rx_feed_event(loop, &idle, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &idle, RX_IDLE), 0);
  assert_int_equal(rx_feed_event(loop, &t, 0), 0);
  assert_int_equal(rx_feed_event(loop, &t, 0), 0);
  assert_int_equal(rx_pending_count(loop), 3);
  rxt_assert_verified(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  assert_int_equal(hio.calls, 1);
  assert_int_equal(hio.revents, RX_READ | RX_WRITE);
  assert_int_equal(hi.calls, 1);
  assert_int_equal(hi.revents, RX_CUSTOM | RX_IDLE);
  assert_int_equal(ht.calls, 1);
  assert_int_equal(ht.revents, RX_TIMER);

  /* A fed event and a real one of the same iteration also make one call. */
  int sv[2];
  rxt_pair(sv);
  rx_io_init(&io, rxt_rec_io_cb, sv[0], RX_READ);
  io.data = &hio;
  hio.calls = 0;
  assert_int_equal(rx_io_start(loop, &io), 0);
  rxt_send(sv[1], 'x');
  rx_set_invoke_pending(loop, deferring_invoke);
  for (int i = 0; i < 200 && !rx_is_pending(&io); i++) {
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    if (!rx_is_pending(&io))
      rxt_sleep_ns(RX_MSEC(1));
  }
  rx_set_invoke_pending(loop, NULL);
  assert_true(rx_is_pending(&io));
  assert_int_equal(rx_feed_event(loop, &io, RX_CUSTOM), 0);
  rx_invoke_pending(loop);
  assert_int_equal(hio.calls, 1);
  assert_int_equal(hio.revents, RX_READ | RX_CUSTOM);
  assert_int_equal(rx_io_stop(loop, &io), 0);
  rxt_close_pair(sv);
}

static void test_feed_bad_arguments(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rx_io zero;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(rx_feed_event(loop, &zero, RX_READ), -EINVAL);
  rx_idle zidle;
  memset(&zidle, 0, sizeof(zidle));
  assert_int_equal(rx_feed_event(loop, &zidle, RX_IDLE), -EINVAL);
  rx_io junk;
  memset(&junk, 0, sizeof(junk));
  junk._flags = RX__F_KIND; /* kind 15: no such watcher */
  assert_int_equal(rx_feed_event(loop, &junk, RX_READ), -EINVAL);
  assert_int_equal(rx_feed_event(loop, (rx_io *)NULL, RX_READ), -EINVAL);
  assert_int_equal(rx_feed_event(loop, (rx_timer *)NULL, 0), -EINVAL);
  rx_io io;
  rx_io_init(&io, rxt_rec_io_cb, 0, RX_READ);
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, 1, 0);
  assert_int_equal(rx_feed_event(NULL, &io, RX_READ), -EINVAL);
  assert_int_equal(rx_feed_event(NULL, &t, 0), -EINVAL);
  assert_int_equal(rx_pending_count(loop), 0);

  assert_int_equal(rx_feed_fd_event(loop, -1, RX_READ), -EBADF);
  assert_int_equal(rx_feed_fd_event(loop, INT32_MIN, RX_READ), -EBADF);
  assert_int_equal(rx_feed_fd_event(NULL, 0, RX_READ), -EINVAL);
  /* An fd nobody watches, inside and beyond the table: nothing happens. */
  assert_int_equal(rx_feed_fd_event(loop, 0, RX_READ), 0);
  assert_int_equal(rx_feed_fd_event(loop, 1 << 20, RX_READ | RX_WRITE), 0);
  assert_int_equal(rx_pending_count(loop), 0);
  rxt_assert_verified(loop);
}

/* rx_feed_fd_event feeds each watcher of the fd what it asked for. */
static void test_feed_fd_event(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2], other[2];
  rxt_pair(sv);
  rxt_pair(other);
  struct rxt_rec hr = {0}, hw = {0}, hrw = {0}, ho = {0};
  rx_io r, w, rw, o;
  rx_io_init(&r, rxt_rec_io_cb, sv[0], RX_READ);
  rx_io_init(&w, rxt_rec_io_cb, sv[0], RX_WRITE);
  rx_io_init(&rw, rxt_rec_io_cb, sv[0], RX_READ | RX_WRITE);
  rx_io_init(&o, rxt_rec_io_cb, other[0], RX_READ | RX_WRITE);
  r.data = &hr;
  w.data = &hw;
  rw.data = &hrw;
  o.data = &ho;
  assert_int_equal(rx_io_start(loop, &r), 0);
  assert_int_equal(rx_io_start(loop, &w), 0);
  assert_int_equal(rx_io_start(loop, &rw), 0);
  assert_int_equal(rx_io_start(loop, &o), 0);

  /* Invoked by hand, without a wait: only fed events are seen. */
  assert_int_equal(rx_feed_fd_event(loop, sv[0], RX_READ), 0);
  assert_int_equal(rx_pending_count(loop), 2);
  assert_true(rx_is_pending(&r));
  assert_false(rx_is_pending(&w));
  assert_true(rx_is_pending(&rw));
  rxt_assert_verified(loop);
  rx_invoke_pending(loop);
  assert_int_equal(hr.calls, 1);
  assert_int_equal(hr.revents, RX_READ);
  assert_int_equal(hw.calls, 0);
  assert_int_equal(hrw.calls, 1);
  assert_int_equal(hrw.revents, RX_READ);

  assert_int_equal(rx_feed_fd_event(loop, sv[0], RX_WRITE), 0);
  rx_invoke_pending(loop);
  assert_int_equal(hr.calls, 1);
  assert_int_equal(hw.calls, 1);
  assert_int_equal(hw.revents, RX_WRITE);
  assert_int_equal(hrw.calls, 2);
  assert_int_equal(hrw.revents, RX_WRITE);

  /* Both, plus bits that are not readiness: those are dropped. */
  assert_int_equal(
      rx_feed_fd_event(loop, sv[0], RX_READ | RX_WRITE | RX_TIMER | RX_CUSTOM),
      0);
  assert_int_equal(rx_pending_count(loop), 3);
  rx_invoke_pending(loop);
  assert_int_equal(hr.revents, RX_READ);
  assert_int_equal(hw.revents, RX_WRITE);
  assert_int_equal(hrw.revents, RX_READ | RX_WRITE);
  assert_int_equal(hr.calls + hw.calls + hrw.calls, 2 + 2 + 3);
  assert_int_equal(ho.calls, 0);

  /* Nothing that is only not readiness. */
  assert_int_equal(rx_feed_fd_event(loop, sv[0], RX_TIMER | RX_ET), 0);
  assert_int_equal(rx_pending_count(loop), 0);

  /* A stopped watcher of the fd is not fed. */
  assert_int_equal(rx_io_stop(loop, &rw), 0);
  assert_int_equal(rx_feed_fd_event(loop, sv[0], RX_READ | RX_WRITE), 0);
  assert_int_equal(rx_pending_count(loop), 2);
  rx_invoke_pending(loop);
  assert_int_equal(hrw.calls, 3);
  assert_int_equal(ho.calls, 0);

  assert_int_equal(rx_io_stop(loop, &r), 0);
  assert_int_equal(rx_io_stop(loop, &w), 0);
  assert_int_equal(rx_io_stop(loop, &o), 0);
  rxt_assert_verified(loop);
  rxt_close_pair(sv);
  rxt_close_pair(other);
}

/* Fed events run highest priority first, timers first within a band, FIFO
 * otherwise, whatever the order they were fed in. */
static void test_feed_priorities(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2];
  rxt_pair(sv);
  struct rxt_rec hio = {.tag = 1}, hp = {.tag = 2}, hc = {.tag = 3},
                 ht = {.tag = 4}, hi = {.tag = 5}, hi2 = {.tag = 6},
                 hc2 = {.tag = 7};
  rx_io io;
  rx_prepare prep;
  rx_check chk, chk2;
  rx_timer t;
  rx_idle idle, idle2;
  rx_io_init(&io, rxt_rec_io_cb, sv[0], RX_READ);
  rx_prepare_init(&prep, rxt_rec_prepare_cb);
  rx_check_init(&chk, rxt_rec_check_cb);
  rx_check_init(&chk2, rxt_rec_check_cb);
  rx_timer_init(&t, rxt_rec_timer_cb, RX_SEC(1), 0);
  rx_idle_init(&idle, rxt_rec_idle_cb);
  rx_idle_init(&idle2, rxt_rec_idle_cb);
  io.data = &hio;
  prep.data = &hp;
  chk.data = &hc;
  chk2.data = &hc2;
  t.data = &ht;
  idle.data = &hi;
  idle2.data = &hi2;
  assert_int_equal(rx_io_set_priority(&io, -1), 0);
  assert_int_equal(rx_prepare_set_priority(&prep, -2), 0);
  assert_int_equal(rx_check_set_priority(&chk, 1), 0);
  assert_int_equal(rx_check_set_priority(&chk2, 0), 0);
  assert_int_equal(rx_timer_set_priority(&t, 1), 0);
  assert_int_equal(rx_idle_set_priority(&idle, 2), 0);
  assert_int_equal(rx_idle_set_priority(&idle2, 0), 0);
  assert_int_equal(rx_io_start(loop, &io), 0);

  /* Lowest first. */
  rxt_norder = 0;
  assert_int_equal(rx_feed_event(loop, &prep, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_fd_event(loop, sv[0], RX_READ), 0);
  assert_int_equal(rx_feed_event(loop, &idle2, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &chk2, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &chk, RX_CUSTOM), 0);
  assert_int_equal(rx_feed_event(loop, &t, 0), 0);
  assert_int_equal(rx_feed_event(loop, &idle, RX_CUSTOM), 0);
  assert_int_equal(rx_pending_count(loop), 7);
  rxt_assert_verified(loop);
  rx_invoke_pending(loop);
  assert_int_equal(rxt_norder, 7);
  /* idle(2), timer(1), check(1), idle2(0), check2(0), io(-1), prep(-2) */
  static const int want[] = {5, 4, 3, 6, 7, 1, 2};
  for (int i = 0; i < 7; i++)
    if (rxt_order[i] != want[i])
      fail_msg("position %d: tag %d, expected %d", i, rxt_order[i], want[i]);

  assert_int_equal(rx_io_stop(loop, &io), 0);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * 8. Metrics.
 */

static struct rx_metrics metrics(rx_loop *loop) {
  struct rx_metrics m;
  memset(&m, 0xa5, sizeof(m));
  assert_int_equal(rx_loop_metrics(loop, &m), 0);
  return m;
}

static void test_metrics_basics(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  struct rx_metrics m;
  assert_int_equal(rx_loop_metrics(NULL, &m), -EINVAL);
  assert_int_equal(rx_loop_metrics(loop, NULL), -EINVAL);

  m = metrics(loop);
  assert_true(m.backend == rx_backend_name(loop));
  assert_string_equal(m.backend, rx_backend_name(loop));
  assert_true(m.reason == rx_backend_reason(loop));
  if (rxt.backend != NULL)
    assert_string_equal(m.backend, rxt.backend);
  assert_int_equal(m.iterations, rx_iteration(loop));
  assert_int_equal(m.dispatched, 0);
  assert_int_equal(m.wakeups, 0);
  rxt_assert_eq(m.idle_ns, 0);

  rxt_run_nowait(loop, 7);
  m = metrics(loop);
  assert_int_equal(m.iterations, rx_iteration(loop));
  assert_int_equal(m.iterations, 7);
  assert_int_equal(m.dispatched, 0);
  /* NOWAIT never blocks: no idle time. */
  rxt_assert_eq(m.idle_ns, 0);

  /* 10 fed events (a timer among them) are 10 callbacks; a second feed of
   * a pending watcher is not another. */
  struct rxt_rec h = {0};
  rx_idle w[9];
  for (int i = 0; i < 9; i++) {
    rx_idle_init(&w[i], rxt_rec_idle_cb);
    w[i].data = &h;
    assert_int_equal(rx_feed_event(loop, &w[i], RX_CUSTOM), 0);
  }
  assert_int_equal(rx_feed_event(loop, &w[0], RX_IDLE), 0);
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, 0, 0);
  t.data = &h;
  assert_int_equal(rx_feed_event(loop, &t, 0), 0);
  struct rx_metrics m0 = metrics(loop);
  assert_int_equal(rx_run(loop, RX_RUN_NOWAIT), 0);
  m = metrics(loop);
  assert_int_equal(h.calls, 10);
  assert_int_equal(m.dispatched - m0.dispatched, 10);
  assert_int_equal(m.iterations - m0.iterations, 1);

  /* Every callback counts: 5 idle iterations of one idle watcher. */
  rx_idle_init(&w[0], rxt_rec_idle_cb);
  w[0].data = &h;
  assert_int_equal(rx_idle_start(loop, &w[0]), 0);
  m0 = metrics(loop);
  rxt_run_nowait(loop, 5);
  m = metrics(loop);
  assert_int_equal(m.dispatched - m0.dispatched, 5);
  assert_int_equal(rx_idle_stop(loop, &w[0]), 0);
  assert_int_equal(m.overflows, 0);
}

/* io_uring reads its completion ring without a syscall when idle; epoll
 * makes one epoll_wait per iteration. */
static void test_metrics_enters(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2];
  rxt_pair(sv);
  struct rxt_rec h = {0};
  rx_io io;
  rx_io_init(&io, rxt_rec_io_cb, sv[0], RX_READ);
  io.data = &h;
  assert_int_equal(rx_io_start(loop, &io), 0);
  rxt_run_nowait(loop, 3); /* the poll and the doorbell are submitted */
  struct rx_metrics m0 = metrics(loop);
  assert_true(m0.enters >= 1);
  assert_true(m0.rearms >= 1);
  rxt_run_nowait(loop, 1000);
  struct rx_metrics m = metrics(loop);
  assert_int_equal(m.iterations - m0.iterations, 1000);
  uint64_t enters = m.enters - m0.enters;
  print_message("[          ] %s: %llu enters in 1000 idle iterations\n",
                rx_backend_name(loop), (unsigned long long)enters);
  if (rxt_is_uring(loop))
    assert_true(enters <= 2);
  else
    assert_true(enters >= 1000);
  assert_int_equal(h.calls, 0);
  assert_int_equal(rx_io_stop(loop, &io), 0);
  rxt_close_pair(sv);
}

static void test_metrics_completions(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  int sv[2];
  rxt_pair(sv);
  struct reader r;
  memset(&r, 0, sizeof(r));
  r.done_at = 1;
  rx_io_init(&r.w, reader_cb, sv[0], RX_READ);
  assert_int_equal(rx_io_start(loop, &r.w), 0);
  rxt_run_nowait(loop, 2);
  struct rx_metrics m0 = metrics(loop);
  uint64_t total = m0.completions;
  for (int round = 0; round < 5; round++) {
    r.done = 0;
    r.done_at = round + 1;
    rxt_send(sv[1], 'x');
    assert_true(rxt_run_until(loop, &r.done, RX_SEC(3)));
    struct rx_metrics m = metrics(loop);
    assert_true(m.completions > total);
    total = m.completions;
  }
  struct rx_metrics m = metrics(loop);
  assert_true(m.completions - m0.completions >= 5);
  assert_true(m.rearms > m0.rearms || !rxt_is_uring(loop));
  assert_int_equal(rx_io_stop(loop, &r.w), 0);
  rxt_close_pair(sv);
}

struct poster {
  rx_loop *loop;
  rx_task task;
  int ran;
};

static void poster_task(rx_loop *loop, rx_task *task) {
  (void)loop;
  struct poster *p = task->data;
  p->ran = 1;
}

/* Posts once the loop has announced that it is going to sleep, so that
 * the post must ring the doorbell (or, at worst, after 2 s). */
static void *poster_main(void *arg) {
  struct poster *p = arg;
  int64_t end = rxt_clock() + RX_SEC(2);
  while (!__atomic_load_n(&p->loop->sleeping, __ATOMIC_SEQ_CST) &&
         rxt_clock() < end)
    rxt_sleep_ns(RX_USEC(200));
  rxt_sleep_ns(RX_MSEC(5));
  rx_loop_post(p->loop, &p->task);
  return NULL;
}

static void test_metrics_wakeups(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rxt_run_nowait(loop, 2);
  struct rx_metrics m0 = metrics(loop);
  static struct poster p;
  memset(&p, 0, sizeof(p));
  p.loop = loop;
  p.task.fn = poster_task;
  p.task.data = &p;
  rx_ref(loop); /* a blocking wait without a timer */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, poster_main, &p), 0);
  while (!p.ran)
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
  pthread_join(th, NULL);
  /* The doorbell's completion may come one iteration after the task. */
  int64_t end = rxt_clock() + RX_SEC(1);
  while (metrics(loop).wakeups == m0.wakeups && rxt_clock() < end)
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  rx_unref(loop);
  struct rx_metrics m = metrics(loop);
  assert_true(m.wakeups >= m0.wakeups + 1);
  assert_true(m.idle_ns > m0.idle_ns);
  assert_int_equal(m.coalesced, m0.coalesced); /* the task needed its ring */
}

/* A blocking wait for a 20 ms timer is counted as idle time. */
static void test_metrics_idle_ns(void **state) {
  (void)state;
  rx_loop *loop = rxt.loop;
  rxt_run_nowait(loop, 2);
  struct rxt_rec h = {0};
  rx_timer t;
  rx_timer_init(&t, rxt_rec_timer_cb, RX_MSEC(20), 0);
  t.data = &h;
  struct rx_metrics m0 = metrics(loop);
  rx_now_update(loop);
  int64_t t0 = rxt_clock();
  assert_int_equal(rx_timer_start(loop, &t), 0);
  /* The wait is computed from the cached time, which is not refreshed
   * before it: the one blocking wait lasts at least the 20 ms. */
  int runs = 0;
  while (h.calls == 0 && runs < 100) {
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
    runs++;
  }
  int64_t wall = rxt_clock() - t0;
  struct rx_metrics m = metrics(loop);
  assert_int_equal(h.calls, 1);
  int64_t idle = m.idle_ns - m0.idle_ns;
  print_message("[          ] %d run(s), idle %lld ns of %lld ns\n", runs,
                (long long)idle, (long long)wall);
  if (runs == 1)
    rxt_assert_ge(idle, RX_MSEC(20));
  else
    rxt_assert_ge(idle, RX_MSEC(15));
  rxt_assert_le(idle, wall);
}

/* ---------------------------------------------------------------------------
 * libev's ev_priority and ev_clear_pending, and what
 * rx_loop_free() leaves behind.
 */

static void test_priority_and_clear_pending(void **state) {
  (void)state;
  rx_idle i;
  rx_timer t;
  struct rxt_rec rec = {0};
  rx_idle_init(&i, rxt_rec_idle_cb);
  rx_timer_init(&t, rxt_rec_timer_cb, RX_SEC(60), 0);
  i.data = t.data = &rec;
  assert_int_equal(rx_priority(&i), 0);
  assert_int_equal(rx_priority(&t), 0);
  rx_idle_set_priority(&i, -2);
  rx_timer_set_priority(&t, 2);
  assert_int_equal(rx_priority(&i), -2);
  assert_int_equal(rx_priority(&t), 2);

  /* A fed head watcher: cleared before it runs, its events returned. */
  rx_feed_event(rxt.loop, &i, RX_CUSTOM);
  assert_int_equal(rx_clear_pending(rxt.loop, &i), RX_CUSTOM);
  assert_false(rx_is_pending(&i));
  assert_int_equal(rx_clear_pending(rxt.loop, &i), 0);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(rec.calls, 0);

  /* An active timer, fed: cleared, it stays active at its deadline. */
  rx_now_update(rxt.loop);
  rx_timer_start(rxt.loop, &t);
  rx_feed_event(rxt.loop, &t, 0);
  assert_true(rx_is_pending(&t));
  assert_int_equal(rx_clear_pending(rxt.loop, &t), RX_TIMER);
  assert_false(rx_is_pending(&t));
  assert_true(rx_is_active(&t));
  rxt_assert_gt(rx_timer_remaining(rxt.loop, &t), RX_SEC(50));
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(rec.calls, 0);
  assert_int_equal(rx_verify(rxt.loop, NULL), 0);
  rx_timer_stop(rxt.loop, &t);
  /* A stopped timer, fed then cleared. */
  rx_feed_event(rxt.loop, &t, 0);
  assert_int_equal(rx_clear_pending(rxt.loop, &t), RX_TIMER);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(rec.calls, 0);
  assert_int_equal(rx_clear_pending(NULL, &t), -EINVAL);
}

static void test_free_stops_everything(void **state) {
  (void)state;
  rx_loop *loop, *inner;
  assert_int_equal(rx_loop_new(&loop, NULL), 0);
  assert_int_equal(rx_loop_new(&inner, NULL), 0);
  rx_fork f;
  rx_embed e;
  rx_fork_init(&f, NULL);
  rx_embed_init(&e, NULL, inner);
  assert_int_equal(rx_fork_start(loop, &f), 0);
  assert_int_equal(rx_embed_start(loop, &e), 0);
  rx_loop_free(loop);
  assert_false(rx_is_active(&f));
  assert_false(rx_is_active(&e));
  rx_loop_free(inner);
}

static void test_default_loop_again(void **state) {
  (void)state;
  rx_loop *d = rx_default_loop();
  assert_non_null(d);
  assert_ptr_equal(rx_default_loop(), d);
  rx_loop_free(d);
  rx_loop *again = rx_default_loop(); /* a new one, not the freed pointer */
  assert_non_null(again);
  assert_int_equal(rx_run(again, RX_RUN_NOWAIT), 0);
  rx_loop_free(again);
}

/* ---------------------------------------------------------------------------
 * Feeding, clearing and stopping with the wrong loop: a watcher active or
 * pending on A handed to B is refused with -EBUSY, both loops stay intact,
 * and the watcher still works on A.
 */

static void assert_intact(rx_loop *a, rx_loop *b) {
  const char *what = NULL;
  assert_int_equal(rx_verify(a, &what), 0);
  assert_int_equal(rx_verify(b, &what), 0);
}

/* An io watcher fed on A while stopped, then stopped, cleared, fed and
 * started on B. */
static void test_other_loop_pending_io(void **state) {
  (void)state;
  rx_loop *a = rxt.loop, *b;
  assert_int_equal(rx_loop_new(&b, NULL), 0);
  int sv[2];
  rxt_pair(sv);
  struct rxt_rec c = {0};
  rx_io w;
  rx_io_init(&w, rxt_rec_io_cb, sv[0], RX_READ);
  w.data = &c;
  assert_int_equal(rx_feed_event(a, &w, RX_CUSTOM), 0);
  assert_int_equal(rx_io_stop(b, &w), -EBUSY);
  assert_int_equal(rx_clear_pending(b, &w), -EBUSY);
  assert_int_equal(rx_feed_event(b, &w, RX_CUSTOM), -EBUSY);
  assert_int_equal(rx_io_start(b, &w), -EBUSY);
  assert_false(rx_is_active(&w));
  assert_true(rx_is_pending(&w));
  assert_int_equal(rx_pending_count(a), 1);
  assert_int_equal(rx_pending_count(b), 0);
  assert_intact(a, b);
  rxt_run_nowait(b, 1);
  assert_int_equal(c.calls, 0);
  rxt_run_nowait(a, 1);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.revents, RX_CUSTOM);
  /* active on A, and pending there: the same refusals, then a clean stop */
  assert_int_equal(rx_io_start(a, &w), 0);
  assert_int_equal(rx_feed_event(a, &w, RX_CUSTOM), 0);
  assert_int_equal(rx_io_stop(b, &w), -EBUSY);
  assert_int_equal(rx_clear_pending(b, &w), -EBUSY);
  assert_int_equal(rx_feed_event(b, &w, RX_CUSTOM), -EBUSY);
  assert_intact(a, b);
  assert_int_equal(rx_clear_pending(a, &w), RX_CUSTOM);
  assert_int_equal(rx_io_stop(a, &w), 0);
  assert_intact(a, b);
  rx_loop_free(b);
  rxt_close_pair(sv);
}

/* A watcher active on A but not pending, fed on B: refused, since A would
 * later unlink it from B's queue; stopping it on A and running stays
 * sound. */
static void test_feed_other_loop(void **state) {
  (void)state;
  rx_loop *a = rxt.loop, *b;
  assert_int_equal(rx_loop_new(&b, NULL), 0);
  int sv[2];
  rxt_pair(sv);
  struct rxt_rec c = {0}, ci = {0}, cs = {0};
  rx_io w;
  rx_io_init(&w, rxt_rec_io_cb, sv[0], RX_READ);
  w.data = &c;
  rx_idle idle;
  rx_idle_init(&idle, rxt_rec_idle_cb);
  idle.data = &ci;
  rx_signal sg;
  rx_signal_init(&sg, rxt_rec_signal_cb, SIGUSR2);
  sg.data = &cs;
  assert_int_equal(rx_io_start(a, &w), 0);
  assert_int_equal(rx_idle_start(a, &idle), 0);
  assert_int_equal(rx_signal_start(a, &sg), 0);
  assert_int_equal(rx_feed_event(b, &w, RX_CUSTOM), -EBUSY);
  assert_int_equal(rx_feed_event(b, &idle, RX_CUSTOM), -EBUSY);
  assert_int_equal(rx_feed_event(b, &sg, RX_CUSTOM), -EBUSY);
  assert_int_equal(rx_pending_count(b), 0);
  assert_intact(a, b);
  assert_int_equal(rx_io_stop(a, &w), 0);
  assert_int_equal(rx_signal_stop(a, &sg), 0);
  rxt_run_nowait(b, 1);
  rxt_run_nowait(a, 1);
  assert_int_equal(c.calls, 0);
  assert_int_equal(ci.calls, 1);
  assert_int_equal(cs.calls, 0);
  /* fed on its own loop it runs */
  assert_int_equal(rx_io_start(a, &w), 0);
  assert_int_equal(rx_feed_event(a, &w, RX_CUSTOM), 0);
  rxt_run_nowait(a, 1);
  assert_int_equal(c.calls, 1);
  assert_int_equal(rx_io_stop(a, &w), 0);
  assert_int_equal(rx_idle_stop(a, &idle), 0);
  assert_intact(a, b);
  rx_loop_free(b);
  rxt_close_pair(sv);
}

/* An idle watcher fed on A while stopped: stop, clear and start on B
 * refuse it (the list-kept kinds share this path). */
static void test_other_loop_pending_idle(void **state) {
  (void)state;
  rx_loop *a = rxt.loop, *b;
  assert_int_equal(rx_loop_new(&b, NULL), 0);
  struct rxt_rec c = {0};
  rx_idle w;
  rx_idle_init(&w, rxt_rec_idle_cb);
  w.data = &c;
  assert_int_equal(rx_feed_event(a, &w, RX_CUSTOM), 0);
  assert_int_equal(rx_idle_stop(b, &w), -EBUSY);
  assert_int_equal(rx_clear_pending(b, &w), -EBUSY);
  assert_int_equal(rx_idle_start(b, &w), -EBUSY);
  assert_int_equal(rx_idle_set_priority(&w, 1), -EBUSY);
  assert_false(rx_is_active(&w));
  assert_intact(a, b);
  rxt_run_nowait(a, 1);
  assert_int_equal(c.calls, 1);
  assert_intact(a, b);
  rx_loop_free(b);
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
      RXT_TEST_MANUAL(test_manual_clock_basics),
      RXT_TEST_MANUAL(test_manual_clock_many_timers),
      RXT_TEST_MANUAL(test_manual_clock_repeat),
      RXT_TEST_MANUAL(test_manual_clock_once_does_not_block),
      RXT_TEST(test_suspend_resume_real_clock),
      RXT_TEST_MANUAL(test_suspend_resume_manual_clock),
      RXT_TEST(test_collect_interval_arguments),
      RXT_TEST(test_timeout_collect_groups_timers),
      RXT_TEST(test_io_collect),
      RXT_TEST(test_invoke_override),
      RXT_TEST(test_invoke_override_defers),
      RXT_TEST(test_feed_io),
      RXT_TEST(test_feed_other_kinds),
      RXT_TEST(test_feed_timers),
      RXT_TEST(test_feed_twice_coalesces),
      RXT_TEST(test_feed_bad_arguments),
      RXT_TEST(test_feed_fd_event),
      RXT_TEST(test_feed_priorities),
      RXT_TEST(test_metrics_basics),
      RXT_TEST(test_metrics_enters),
      RXT_TEST(test_metrics_completions),
      RXT_TEST(test_metrics_wakeups),
      RXT_TEST(test_metrics_idle_ns),
      RXT_TEST(test_priority_and_clear_pending),
      RXT_TEST_NOLOOP(test_free_stops_everything),
      RXT_TEST_NOLOOP(test_default_loop_again),
      RXT_TEST(test_other_loop_pending_io),
      RXT_TEST(test_feed_other_loop),
      RXT_TEST(test_other_loop_pending_idle),
  };
  const char *b = rxt_env_backend();
  char name[64];
  snprintf(name, sizeof(name), "test-loop [%s]", b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
