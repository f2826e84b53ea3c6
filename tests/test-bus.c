/*
 * test-bus.c - services/bus.c and services/dispatcher.c (include/rx/bus.h),
 * on the backend $RX_BACKEND names. Built twice by meson: as is, and under
 * ThreadSanitizer (RXT_TSAN), where the threaded tests run fewer events.
 */
#include "helpers.h"

#include <pthread.h>

#include "rx/bus.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define __SANITIZE_ADDRESS__ 1
#endif
#endif

#if defined(RXT_TSAN) || defined(__SANITIZE_ADDRESS__)
/* Sanitizers make each event 5 to 20 times dearer: fewer of them keep each
 * test within seconds; the counts stay exact. */
#define BIG_N 1000000
#define PRODUCER_N 50000
#else
#define BIG_N 10000000
#define PRODUCER_N 2500000
#endif

static rx_event *mkev(const char *name, void *payload) {
  rx_event *ev = NULL;
  assert_int_equal(rx_event_new(&ev, name, 0, payload, NULL), 0);
  return ev;
}

/* Publishes a new event named `name` and drops the caller's reference. */
static int pub(rx_bus *bus, const char *name, void *payload) {
  rx_event *ev = mkev(name, payload);
  int rc = rx_bus_publish(bus, ev);
  rx_event_unref(ev);
  return rc;
}

static rx_listener *mklistener(const char *const *names, size_t n, size_t cap,
                               int policy, size_t history) {
  struct rx_listener_options o = {0};
  o.names = names;
  o.n_names = n;
  o.capacity = cap;
  o.policy = policy;
  o.history = history;
  rx_listener *l = NULL;
  assert_int_equal(rx_listener_new(&l, &o), 0);
  return l;
}

static size_t depth(const rx_listener *l) {
  struct rx_listener_metrics m;
  assert_int_equal(rx_listener_metrics(l, &m), 0);
  return m.depth;
}

static int frees;
static void count_free(void *p) {
  (void)p;
  frees++;
}

/* ---------------------------------------------------------------------------
 * Events.
 */

static void test_event_refs(void **state) {
  (void)state;
  rx_event *ev = NULL;
  frees = 0;
  assert_int_equal(rx_event_new(&ev, "", 0, NULL, NULL), -EINVAL);
  assert_int_equal(rx_event_new(&ev, NULL, 0, NULL, NULL), -EINVAL);
  assert_int_equal(rx_event_new(NULL, "x", 0, NULL, NULL), -EINVAL);
  char long_name[300];
  memset(long_name, 'a', sizeof(long_name) - 1);
  long_name[sizeof(long_name) - 1] = '\0';
  assert_int_equal(rx_event_new(&ev, long_name, 0, NULL, NULL), -EINVAL);
  char name[] = "job.done";
  int64_t before = rxt_clock();
  assert_int_equal(rx_event_new(&ev, name, 0, &frees, count_free), 0);
  name[0] = 'X'; /* the name was copied */
  assert_string_equal(rx_event_name(ev), "job.done");
  assert_true(rx_event_time(ev) >= before && rx_event_time(ev) <= rxt_clock());
  assert_ptr_equal(rx_event_payload(ev), &frees);
  assert_ptr_equal(rx_event_ref(ev), ev);
  assert_int_equal(rx_event_refs(ev), 2);
  rx_event_unref(ev);
  assert_int_equal(frees, 0);
  rx_event_unref(ev);
  assert_int_equal(frees, 1);
  assert_int_equal(rx_event_new(&ev, "t", 42, NULL, NULL), 0);
  assert_int_equal(rx_event_time(ev), 42);
  rx_event_unref(ev);
  assert_null(rx_event_name(NULL));
  rx_event_unref(NULL);
}

/* One event to three listeners: three references, no copy. */
static void test_event_not_copied(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  rx_listener *a = mklistener(NULL, 0, 4, RX_BUS_DROP_OLDEST, 0);
  rx_listener *b = mklistener(NULL, 0, 4, RX_BUS_DROP_OLDEST, 0);
  assert_int_equal(rx_bus_add(bus, a), 0);
  assert_int_equal(rx_bus_add(bus, b), 0);
  frees = 0;
  rx_event *ev = NULL;
  assert_int_equal(rx_event_new(&ev, "e", 0, &frees, count_free), 0);
  assert_int_equal(rx_bus_publish(bus, ev), 0);
  assert_int_equal(rx_event_refs(ev), 4); /* ours, a, b, the default */
  rx_event *got = NULL;
  assert_int_equal(rx_listener_try_get(a, &got), 0);
  assert_ptr_equal(got, ev);
  rx_event_unref(got);
  rx_event_unref(ev);
  rx_listener_free(a);
  rx_listener_free(b);
  assert_int_equal(frees, 0); /* the default listener still holds it */
  assert_int_equal(rx_bus_free(bus), 0);
  assert_int_equal(frees, 1);
}

/* ---------------------------------------------------------------------------
 * Listener rules.
 */

static int filter_calls;
static int filter_odd(const rx_event *ev, void *data) {
  (void)data;
  filter_calls++;
  return ((uintptr_t)rx_event_payload(ev) & 1) != 0;
}

static void test_names_before_filter(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  const char *names[] = {"a", "b"};
  struct rx_listener_options o = {0};
  o.names = names;
  o.n_names = 2;
  o.filter = filter_odd;
  rx_listener *l;
  assert_int_equal(rx_listener_new(&l, &o), 0);
  assert_int_equal(rx_bus_add(bus, l), 0);
  filter_calls = 0;
  assert_int_equal(pub(bus, "c", (void *)1), 0); /* name refused: no filter */
  assert_int_equal(filter_calls, 0);
  assert_int_equal(depth(l), 0);
  assert_int_equal(pub(bus, "a", (void *)2), 0); /* filter refuses */
  assert_int_equal(filter_calls, 1);
  assert_int_equal(depth(l), 0);
  assert_int_equal(pub(bus, "b", (void *)3), 0);
  assert_int_equal(filter_calls, 2);
  assert_int_equal(depth(l), 1);
  rx_event *ev;
  assert_int_equal(rx_listener_try_get(l, &ev), 0);
  assert_string_equal(rx_event_name(ev), "b");
  rx_event_unref(ev);
  assert_int_equal(rx_listener_try_get(l, &ev), -EAGAIN);
  /* The default listener took all three. */
  assert_int_equal(depth(rx_bus_default(bus)), 3);
  /* Bad options. */
  o.policy = 7;
  assert_int_equal(rx_listener_new(&l, &o), -EINVAL);
  o.policy = 0;
  const char *bad[] = {""};
  o.names = bad;
  o.n_names = 1;
  assert_int_equal(rx_listener_new(&l, &o), -EINVAL);
  assert_int_equal(rx_bus_free(bus), 0);
  /* rx_bus_free removed it; freeing it is still ours. */
  assert_null(rx_listener_bus(l));
  rx_listener_free(l);
}

static rx_event *drained[16];
static int n_drained;
static void keep_drained(rx_event *ev, void *arg) {
  (void)arg;
  drained[n_drained++] = ev;
}

static void test_history_and_clear(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  rx_listener *l = mklistener(NULL, 0, 4, RX_BUS_DROP_NEW, 3);
  assert_int_equal(rx_bus_add(bus, l), 0);
  static const char *names[] = {"e0", "e1", "e2", "e3", "e4", "e5"};
  for (int i = 0; i < 6; i++)
    assert_int_equal(pub(bus, names[i], NULL), 0);
  /* e4 and e5 found it full: not accepted, not in the history. */
  struct rx_listener_metrics m;
  rx_listener_metrics(l, &m);
  assert_int_equal(m.dropped_new, 2);
  assert_int_equal(m.accepted, 4);
  assert_int_equal(rx_listener_history_count(l), 3);
  assert_string_equal(rx_event_name(rx_listener_history(l, 0)), "e1");
  assert_string_equal(rx_event_name(rx_listener_history(l, 2)), "e3");
  assert_null(rx_listener_history(l, 3));
  /* clear hands back what it drained, oldest first. */
  n_drained = 0;
  assert_int_equal(rx_listener_clear(l, keep_drained, NULL), 4);
  assert_int_equal(n_drained, 4);
  for (int i = 0; i < 4; i++) {
    assert_string_equal(rx_event_name(drained[i]), names[i]);
    rx_event_unref(drained[i]);
  }
  assert_int_equal(depth(l), 0);
  /* The history survives the clear, and records at accept time. */
  assert_int_equal(rx_listener_history_count(l), 3);
  assert_string_equal(rx_event_name(rx_listener_history(l, 0)), "e1");
  assert_int_equal(pub(bus, "e6", NULL), 0);
  assert_string_equal(rx_event_name(rx_listener_history(l, 2)), "e6");
  assert_string_equal(rx_event_name(rx_listener_history(l, 0)), "e2");
  /* Removing clears; the history stays. */
  assert_int_equal(rx_bus_remove(bus, l), 0);
  rx_listener_metrics(l, &m);
  assert_int_equal(m.depth, 0);
  assert_int_equal(m.cleared, 5);
  assert_int_equal(rx_listener_history_count(l), 3);
  assert_int_equal(rx_listener_clear(l, NULL, NULL), 0);
  rx_listener_free(l);
  assert_int_equal(rx_bus_free(bus), 0);
}

static void test_register_remove_default(void **state) {
  struct rxt *t = *state;
  rx_bus *bus, *bus2;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  assert_int_equal(rx_bus_new(&bus2, t->loop, NULL), 0);
  rx_listener *l = mklistener(NULL, 0, 8, RX_BUS_DROP_OLDEST, 0);
  assert_int_equal(rx_bus_add(bus, l), 0);
  assert_int_equal(rx_bus_add(bus, l), -EALREADY);
  assert_int_equal(rx_bus_add(bus2, l), -EBUSY);
  assert_int_equal(rx_bus_remove(bus2, l), -ENOENT);
  frees = 0;
  rx_event *ev = NULL;
  assert_int_equal(rx_event_new(&ev, "x", 0, NULL, count_free), 0);
  assert_int_equal(rx_bus_publish(bus, ev), 0);
  assert_int_equal(rx_bus_publish(bus, ev), 0); /* twice: two entries */
  assert_int_equal(depth(l), 2);
  assert_int_equal(rx_event_refs(ev), 5);
  assert_int_equal(rx_bus_remove(bus, l), 0);
  assert_int_equal(depth(l), 0);
  assert_int_equal(rx_event_refs(ev), 3);
  assert_int_equal(rx_bus_remove(bus, l), -ENOENT);
  /* After removal it sees nothing; added again, it sees what follows. */
  assert_int_equal(rx_bus_publish(bus, ev), 0);
  assert_int_equal(depth(l), 0);
  assert_int_equal(rx_bus_add(bus2, l), 0);
  assert_int_equal(rx_bus_publish(bus2, ev), 0);
  assert_int_equal(depth(l), 1);
  /* The default listener: every event, not removable, can be turned off. */
  rx_listener *def = rx_bus_default(bus);
  assert_non_null(def);
  assert_int_equal(rx_bus_remove(bus, def), -EPERM);
  assert_int_equal(depth(def), 3);
  rx_listener_free(def); /* not the caller's: ignored */
  assert_int_equal(rx_bus_set_default(bus, 0), 0);
  assert_int_equal(rx_bus_publish(bus, ev), 0);
  assert_int_equal(depth(def), 3);
  assert_int_equal(rx_bus_set_default(bus, 1), 0);
  assert_int_equal(rx_bus_publish(bus, ev), 0);
  assert_int_equal(depth(def), 4);
  /* Bounded: it drops the oldest. */
  struct rx_bus_options bo = {.default_capacity = 2};
  rx_bus *small;
  assert_int_equal(rx_bus_new(&small, t->loop, &bo), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(rx_bus_publish(small, ev), 0);
  struct rx_listener_metrics m;
  rx_listener_metrics(rx_bus_default(small), &m);
  assert_int_equal(m.depth, 2);
  assert_int_equal(m.dropped_oldest, 3);
  assert_int_equal(m.high_water, 2);
  assert_int_equal(rx_bus_free(small), 0);
  rx_listener_free(l);
  assert_int_equal(rx_bus_free(bus), 0);
  assert_int_equal(rx_bus_free(bus2), 0);
  assert_int_equal(frees, 0);
  rx_event_unref(ev);
  assert_int_equal(frees, 1);
}

/* ---------------------------------------------------------------------------
 * Consumption: callbacks, get with a deadline, scoped listening.
 */

struct seen {
  int n;
  char names[16][8];
};

static void note_cb(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  struct seen *s = data;
  if (s->n < 16)
    snprintf(s->names[s->n], 8, "%s", rx_event_name(ev));
  s->n++;
}

static rx_event *got_ev;
static int got_status, got_calls;
static void on_got(rx_listener *l, rx_event *ev, int status, void *data) {
  (void)l;
  (void)data;
  got_ev = ev;
  got_status = status;
  got_calls++;
}

static void test_callback_and_get(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  struct seen s = {0};
  struct rx_listener_options o = {0};
  o.cb = note_cb;
  o.data = &s;
  rx_listener *cbl;
  assert_int_equal(rx_listener_new(&cbl, &o), 0);
  assert_int_equal(rx_bus_add(bus, cbl), 0);
  assert_int_equal(pub(bus, "one", NULL), 0);
  assert_int_equal(pub(bus, "two", NULL), 0);
  assert_int_equal(s.n, 0); /* not from inside the publish */
  rxt_run_nowait(t->loop, 1);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.names[0], "one");
  assert_string_equal(s.names[1], "two");
  assert_int_equal(rx_listener_get(cbl, on_got, NULL, 0), -EINVAL);

  rx_listener *pl = mklistener(NULL, 0, 4, RX_BUS_DROP_OLDEST, 0);
  assert_int_equal(rx_listener_get(pl, on_got, NULL, 0), -ENOENT);
  assert_int_equal(rx_bus_add(bus, pl), 0);
  /* A deadline on the wheel: nothing comes, -ETIMEDOUT. */
  got_calls = 0;
  assert_int_equal(rx_listener_get(pl, on_got, NULL, RX_MSEC(5)), 0);
  assert_int_equal(rx_listener_get(pl, on_got, NULL, 0), -EBUSY);
  int64_t t0 = rxt_clock();
  while (got_calls == 0)
    assert_true(rx_run(t->loop, RX_RUN_ONCE) >= 0);
  assert_true(rxt_clock() - t0 >= RX_MSEC(5));
  assert_int_equal(got_status, -ETIMEDOUT);
  assert_null(got_ev);
  /* An event before the deadline. */
  got_calls = 0;
  assert_int_equal(rx_listener_get(pl, on_got, NULL, RX_SEC(5)), 0);
  assert_int_equal(pub(bus, "three", NULL), 0);
  while (got_calls == 0)
    assert_true(rx_run(t->loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(got_status, 0);
  assert_string_equal(rx_event_name(got_ev), "three");
  rx_event_unref(got_ev);
  /* One already queued: answered from the next pending callbacks. */
  assert_int_equal(pub(bus, "four", NULL), 0);
  got_calls = 0;
  assert_int_equal(rx_listener_get(pl, on_got, NULL, 0), 0);
  rxt_run_nowait(t->loop, 1);
  assert_int_equal(got_calls, 1);
  assert_string_equal(rx_event_name(got_ev), "four");
  rx_event_unref(got_ev);
  /* Cancel, and removal answers -ECANCELED. */
  assert_int_equal(rx_listener_get(pl, on_got, NULL, RX_SEC(5)), 0);
  assert_int_equal(rx_listener_cancel_get(pl), 0);
  assert_int_equal(rx_listener_cancel_get(pl), -ENOENT);
  got_calls = 0;
  assert_int_equal(rx_listener_get(pl, on_got, NULL, RX_SEC(5)), 0);
  assert_int_equal(rx_bus_remove(bus, pl), 0);
  assert_int_equal(got_calls, 1);
  assert_int_equal(got_status, -ECANCELED);
  rx_listener_free(pl);
  rx_listener_free(cbl);
  assert_int_equal(rx_bus_free(bus), 0);
}

struct scope_arg {
  rx_bus *bus;
  rx_listener *l;
  size_t depth;
};

static int scoped_op(void *arg) {
  struct scope_arg *a = arg;
  assert_ptr_equal(rx_listener_bus(a->l), a->bus);
  pub(a->bus, "during", NULL);
  a->depth = depth(a->l);
  return 7;
}

static void test_scoped(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  rx_listener *l = mklistener(NULL, 0, 4, RX_BUS_DROP_OLDEST, 4);
  rx_listener *other = mklistener(NULL, 0, 4, RX_BUS_DROP_OLDEST, 0);
  assert_int_equal(pub(bus, "before", NULL), 0);
  struct scope_arg a = {bus, l, 0};
  assert_int_equal(rx_bus_listen(bus, &l, 1, scoped_op, &a), 7);
  assert_int_equal(a.depth, 1);
  assert_null(rx_listener_bus(l)); /* removed after */
  assert_int_equal(depth(l), 0);   /* and cleared */
  assert_int_equal(rx_listener_history_count(l), 1);
  assert_int_equal(pub(bus, "after", NULL), 0);
  assert_int_equal(rx_listener_history_count(l), 1);
  /* One that cannot be added: the others are taken back, fn not run. */
  assert_int_equal(rx_bus_add(bus, other), 0);
  rx_listener *both[] = {l, other};
  a.depth = 99;
  assert_int_equal(rx_bus_listen(bus, both, 2, scoped_op, &a), -EALREADY);
  assert_int_equal(a.depth, 99);
  assert_null(rx_listener_bus(l));
  rx_listener_free(l);
  rx_listener_free(other);
  assert_int_equal(rx_bus_free(bus), 0);
}

/* ---------------------------------------------------------------------------
 * Re-entrancy: a callback that publishes, adds and removes listeners.
 */

struct reent {
  rx_bus *bus;
  rx_listener *victim, *added, *self;
  struct seen victim_seen, added_seen, self_seen;
  int done;
};
static struct reent re;

static void reent_cb(rx_listener *l, rx_event *ev, void *data) {
  (void)data;
  note_cb(l, ev, &re.self_seen);
  if (strcmp(rx_event_name(ev), "x") == 0 && !re.done) {
    re.done = 1;
    /* The victim comes after us in the list and has "x" queued. */
    assert_int_equal(rx_bus_remove(re.bus, re.victim), 0);
    assert_int_equal(rx_bus_add(re.bus, re.added), 0);
    assert_int_equal(pub(re.bus, "y", NULL), 0);
  } else if (strcmp(rx_event_name(ev), "y") == 0) {
    /* Removing and freeing itself from its own callback. */
    assert_int_equal(rx_bus_remove(re.bus, l), 0);
    rx_listener_free(l);
    re.self = NULL;
  }
}

static void test_reentrancy(void **state) {
  struct rxt *t = *state;
  memset(&re, 0, sizeof(re));
  assert_int_equal(rx_bus_new(&re.bus, t->loop, NULL), 0);
  struct rx_listener_options o = {0};
  o.cb = reent_cb;
  assert_int_equal(rx_listener_new(&re.self, &o), 0);
  o.cb = note_cb;
  o.data = &re.victim_seen;
  assert_int_equal(rx_listener_new(&re.victim, &o), 0);
  o.data = &re.added_seen;
  assert_int_equal(rx_listener_new(&re.added, &o), 0);
  assert_int_equal(rx_bus_add(re.bus, re.self), 0);
  assert_int_equal(rx_bus_add(re.bus, re.victim), 0);
  assert_int_equal(pub(re.bus, "x", NULL), 0);
  assert_int_equal(pub(re.bus, "x2", NULL), 0);
  rxt_run_nowait(t->loop, 3);
  /* self: x, x2, y (then it removed itself) */
  assert_int_equal(re.self_seen.n, 3);
  assert_string_equal(re.self_seen.names[2], "y");
  assert_null(re.self);
  /* The victim, removed before its turn: nothing. */
  assert_int_equal(re.victim_seen.n, 0);
  /* The one added during dispatch: only the later event. */
  assert_int_equal(re.added_seen.n, 1);
  assert_string_equal(re.added_seen.names[0], "y");
  assert_int_equal(pub(re.bus, "z", NULL), 0);
  rxt_run_nowait(t->loop, 1);
  assert_int_equal(re.added_seen.n, 2);
  assert_int_equal(re.victim_seen.n, 0);
  rx_listener_free(re.victim);
  rx_listener_free(re.added);
  assert_int_equal(rx_bus_free(re.bus), 0);
}

/* ---------------------------------------------------------------------------
 * 10 million events into a listener that never reads, per policy.
 */

static long rss_pages(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, rss = 0;
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld %ld", &size, &rss), 2);
  fclose(f);
  return rss;
}

static int woken[200];
static void on_woken(rx_bus *bus, rx_bus_waiter *w) {
  (void)bus;
  woken[(rx_bus_waiter *)w - (rx_bus_waiter *)w->data]++;
}

static void flood(struct rxt *t, int policy) {
  const size_t cap = 1024;
  rx_bus *bus;
  struct rx_bus_options bo = {.default_capacity = 64};
  assert_int_equal(rx_bus_new(&bus, t->loop, &bo), 0);
  rx_listener *l = mklistener(NULL, 0, cap, policy, 16);
  assert_int_equal(rx_bus_add(bus, l), 0);
  long refused = 0, rss0 = 0;
  for (long i = 0; i < BIG_N; i++) {
    if (i == BIG_N / 10)
      rss0 = rss_pages();
    int rc = pub(bus, "flood", NULL);
    if (rc != 0) {
      assert_int_equal(rc, policy == RX_BUS_FAIL ? -ENOBUFS : -EAGAIN);
      refused++;
    }
  }
  long rss1 = rss_pages();
  /* Flat: the listener holds `cap` events whatever comes; allow 8 MiB of
   * allocator noise. Not under ASan, whose quarantine keeps freed blocks
   * (256 MiB of them) resident; LeakSanitizer checks there instead that
   * every event was freed. */
#ifndef __SANITIZE_ADDRESS__
  rxt_assert_le((rss1 - rss0) * sysconf(_SC_PAGESIZE), 8 << 20);
#else
  (void)rss0;
  (void)rss1;
#endif
  struct rx_listener_metrics m;
  rx_listener_metrics(l, &m);
  long over = BIG_N - (long)cap;
  assert_int_equal(m.depth, cap);
  assert_int_equal(m.high_water, cap);
  switch (policy) {
  case RX_BUS_DROP_OLDEST:
    rxt_assert_eq(m.dropped_oldest, over);
    rxt_assert_eq(m.accepted, BIG_N);
    rxt_assert_eq(refused, 0);
    break;
  case RX_BUS_DROP_NEW:
    rxt_assert_eq(m.dropped_new, over);
    rxt_assert_eq(m.accepted, cap);
    rxt_assert_eq(refused, 0);
    break;
  case RX_BUS_FAIL:
    rxt_assert_eq(m.failed, over);
    rxt_assert_eq(refused, over);
    break;
  case RX_BUS_BLOCK:
    rxt_assert_eq(m.blocked, over);
    rxt_assert_eq(refused, over);
    break;
  }
  if (policy == RX_BUS_BLOCK) {
    /* 200 publishers wait; each freed slot wakes exactly one, in order. */
    static rx_bus_waiter w[200];
    memset(woken, 0, sizeof(woken));
    rx_event *ev = mkev("late", NULL);
    for (int i = 0; i < 200; i++) {
      w[i] = (rx_bus_waiter){.cb = on_woken, .data = w};
      assert_int_equal(rx_bus_publish_wait(bus, ev, &w[i]), -EAGAIN);
    }
    assert_int_equal(rx_bus_publish_wait(bus, ev, &w[0]), -EBUSY);
    rx_listener_metrics(l, &m);
    assert_int_equal(m.waiting, 200);
    rx_event *got;
    for (int i = 0; i < 60; i++) {
      assert_int_equal(rx_listener_try_get(l, &got), 0);
      rx_event_unref(got);
    }
    rxt_run_nowait(t->loop, 2);
    for (int i = 0; i < 200; i++)
      assert_int_equal(woken[i], i < 60 ? 1 : 0);
    rx_listener_metrics(l, &m);
    assert_int_equal(m.wakeups, 60);
    assert_int_equal(m.waiting, 140);
    assert_int_equal(rx_bus_waiter_cancel(&w[199]), 0);
    assert_int_equal(rx_bus_waiter_cancel(&w[199]), -ENOENT);
    /* Clearing frees cap slots: the 139 left are woken, once each. */
    rx_listener_clear(l, NULL, NULL);
    rxt_run_nowait(t->loop, 2);
    for (int i = 0; i < 200; i++)
      assert_int_equal(woken[i], i < 199 ? 1 : 0);
    rx_listener_metrics(l, &m);
    assert_int_equal(m.wakeups, 199);
    assert_int_equal(m.waiting, 0);
    rx_event_unref(ev);
  }
  rx_listener_free(l);
  assert_int_equal(rx_bus_free(bus), 0);
}

static void test_flood_drop_oldest(void **state) {
  flood(*state, RX_BUS_DROP_OLDEST);
}
static void test_flood_drop_new(void **state) {
  flood(*state, RX_BUS_DROP_NEW);
}
static void test_flood_fail(void **state) {
  flood(*state, RX_BUS_FAIL);
}
static void test_flood_block(void **state) {
  flood(*state, RX_BUS_BLOCK);
}

/* ---------------------------------------------------------------------------
 * Posting from other threads.
 */

static void tick_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
}

/* Runs the loop until cond(arg), a repeating timer bounding each wait. */
static void run_until(rx_loop *loop, int (*cond)(void *), void *arg,
                      int64_t limit) {
  rx_timer tick;
  rx_timer_init(&tick, tick_cb, RX_MSEC(1), RX_MSEC(1));
  int64_t end = rxt_clock() + limit;
  rx_now_update(loop);
  assert_int_equal(rx_timer_start(loop, &tick), 0);
  while (!cond(arg)) {
    assert_true(rx_run(loop, RX_RUN_ONCE) >= 0);
    if (rxt_clock() > end) {
      rx_timer_stop(loop, &tick);
      fail_msg("run_until: not reached in time");
    }
  }
  rx_timer_stop(loop, &tick);
}

struct poster {
  rx_bus *bus;
  int stop;   /* atomic */
  long posts; /* atomic */
  int exited; /* atomic */
};

static void *poster_main(void *arg) {
  struct poster *p = arg;
  while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
    rx_event *ev = mkev("p", NULL);
    int rc = rx_bus_post_wait(p->bus, ev);
    rx_event_unref(ev);
    if (rc != 0)
      break;
    __atomic_fetch_add(&p->posts, 1, __ATOMIC_RELEASE);
  }
  __atomic_store_n(&p->exited, 1, __ATOMIC_RELEASE);
  return NULL;
}

static int poster_exited(void *arg) {
  struct poster *p = arg;
  return __atomic_load_n(&p->exited, __ATOMIC_ACQUIRE);
}

/* The poster asleep for the `sleeps`th time, with `backlog` posts held. */
struct asleep_at {
  rx_bus *bus;
  uint64_t sleeps;
  size_t backlog;
};
static int asleep(void *arg) {
  struct asleep_at *a = arg;
  struct rx_bus_metrics m;
  rx_bus_metrics(a->bus, &m);
  return m.post_sleeping == 1 && m.post_sleeps >= a->sleeps &&
         m.backlog == a->backlog;
}

/* A poster blocked by a full RX_BUS_BLOCK listener is woken exactly once
 * per slot the listener frees. */
static void test_post_blocked_woken_per_slot(void **state) {
  struct rxt *t = *state;
  const size_t cap = 64, limit = 32;
  const int k = 200;
  rx_bus *bus;
  struct rx_bus_options bo = {.post_limit = limit};
  assert_int_equal(rx_bus_new(&bus, t->loop, &bo), 0);
  rx_listener *l = mklistener(NULL, 0, cap, RX_BUS_BLOCK, 0);
  assert_int_equal(rx_bus_add(bus, l), 0);
  rx_event *mine = mkev("own", NULL);
  assert_int_equal(rx_bus_post_wait(bus, mine), -EDEADLK);
  rx_event_unref(mine);
  struct poster p = {bus, 0, 0, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, poster_main, &p), 0);
  struct asleep_at a = {bus, 1, limit};
  run_until(t->loop, asleep, &a, RX_SEC(20));
  struct rx_bus_metrics bm;
  rx_bus_metrics(bus, &bm);
  assert_int_equal(bm.inflight, limit);
  assert_int_equal(depth(l), cap);
  /* The poster may have slept and been woken while the listener filled. */
  const uint64_t w0 = bm.post_wakeups, s0 = bm.post_sleeps;
  for (int i = 1; i <= k; i++) {
    rx_event *ev;
    assert_int_equal(rx_listener_try_get(l, &ev), 0);
    rx_event_unref(ev);
    /* The freed slot went to the oldest waiting post, which owes the
     * poster a wake-up, made in the loop's next pass: exactly one. */
    assert_int_equal(depth(l), cap);
    rxt_run_nowait(t->loop, 1);
    rx_bus_metrics(bus, &bm);
    rxt_assert_eq(bm.post_wakeups, w0 + i);
    a.sleeps = s0 + (uint64_t)i;
    run_until(t->loop, asleep, &a, RX_SEC(20));
  }
  rx_bus_metrics(bus, &bm);
  rxt_assert_eq(bm.post_wakeups, w0 + k);
  rxt_assert_eq(bm.post_sleeps, s0 + k);
  struct rx_listener_metrics lm;
  rx_listener_metrics(l, &lm);
  rxt_assert_eq(lm.accepted, (long)cap + k); /* one post per wake-up */
  rxt_assert_eq(lm.waiting, limit);
  /* Stop: removing the listener lets everything through. */
  __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
  assert_int_equal(rx_bus_remove(bus, l), 0);
  /* The wake-up it is owed is made by the loop. */
  run_until(t->loop, poster_exited, &p, RX_SEC(20));
  pthread_join(th, NULL);
  rxt_run_nowait(t->loop, 3);
  rx_bus_metrics(bus, &bm);
  assert_int_equal(bm.inflight, 0);
  rxt_assert_eq(bm.posted, __atomic_load_n(&p.posts, __ATOMIC_ACQUIRE));
  rx_listener_free(l);
  assert_int_equal(rx_bus_free(bus), 0);
}

/* rx_bus_post() from the loop's own thread: one trip at a time per event,
 * the limit, and a full FAIL listener that makes a post go nowhere. */
static void test_post_rules(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  struct rx_bus_options bo = {.post_limit = 2};
  assert_int_equal(rx_bus_new(&bus, t->loop, &bo), 0);
  rx_listener *l = mklistener(NULL, 0, 1, RX_BUS_FAIL, 0);
  rx_listener *other = mklistener(NULL, 0, 8, RX_BUS_DROP_NEW, 0);
  assert_int_equal(rx_bus_add(bus, l), 0);
  assert_int_equal(rx_bus_add(bus, other), 0);
  rx_event *a = mkev("a", NULL), *b = mkev("b", NULL), *c = mkev("c", NULL);
  assert_int_equal(rx_bus_post(bus, a), 0);
  assert_int_equal(rx_bus_post(bus, a), -EBUSY); /* still on its way */
  assert_int_equal(rx_bus_post(bus, b), 0);
  assert_int_equal(rx_bus_post(bus, c), -EAGAIN); /* the limit */
  assert_int_equal(depth(l), 0); /* nothing before the loop runs */
  rx_event_unref(a);             /* the bus holds its own reference */
  rxt_run_nowait(t->loop, 2);
  /* a went to both; b found the FAIL listener full: it went nowhere. */
  assert_int_equal(depth(l), 1);
  assert_int_equal(depth(other), 1);
  struct rx_bus_metrics bm;
  rx_bus_metrics(bus, &bm);
  assert_int_equal(bm.posted, 2);
  assert_int_equal(bm.post_refused, 1);
  assert_int_equal(bm.post_failed, 1);
  assert_int_equal(bm.inflight, 0);
  struct rx_listener_metrics lm;
  rx_listener_metrics(l, &lm);
  assert_int_equal(lm.failed, 1);
  assert_int_equal(rx_event_refs(b), 1);
  /* Delivered: it may travel again. */
  assert_int_equal(rx_bus_post(bus, b), 0);
  rxt_run_nowait(t->loop, 2);
  assert_int_equal(rx_bus_post(NULL, c), -EINVAL);
  rx_event_unref(b);
  rx_event_unref(c);
  rx_listener_free(l);
  rx_listener_free(other);
  assert_int_equal(rx_bus_free(bus), 0);
}

/* 4 producers x PRODUCER_N events to 3 filtered listeners. */
#define PRODUCERS 4

struct check {
  long count;
  long last[PRODUCERS];
  int bad;
};

static uintptr_t pack(int producer, long seq) {
  return ((uintptr_t)seq << 3) | (uintptr_t)producer;
}

static void check_cb(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  struct check *c = data;
  uintptr_t v = (uintptr_t)rx_event_payload(ev);
  int p = (int)(v & 7);
  long seq = (long)(v >> 3);
  if (seq <= c->last[p])
    c->bad++; /* not FIFO per producer, or twice */
  c->last[p] = seq;
  c->count++;
}

static int low_producers(const rx_event *ev, void *data) {
  (void)data;
  return ((uintptr_t)rx_event_payload(ev) & 7) < 2;
}
static int every_third(const rx_event *ev, void *data) {
  (void)data;
  return (((uintptr_t)rx_event_payload(ev) >> 3) % 3) == 0;
}

struct producer {
  rx_bus *bus;
  int id;
  int rc;
};

static void *producer_main(void *arg) {
  struct producer *p = arg;
  for (long seq = 0; seq < PRODUCER_N; seq++) {
    rx_event *ev;
    p->rc = rx_event_new(&ev, seq % 2 == 0 ? "tick" : "tock", 1,
                         (void *)pack(p->id, seq), NULL);
    if (p->rc != 0)
      return NULL;
    p->rc = rx_bus_post_wait(p->bus, ev);
    rx_event_unref(ev);
    if (p->rc != 0)
      return NULL;
  }
  return NULL;
}

struct all_in {
  rx_bus *bus;
  struct check *c;
  long want[3];
};
static int all_in(void *arg) {
  struct all_in *a = arg;
  for (int i = 0; i < 3; i++)
    if (a->c[i].count < a->want[i])
      return 0;
  return 1;
}

static void test_producers(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  struct rx_bus_options bo = {.default_capacity = 16};
  assert_int_equal(rx_bus_new(&bus, t->loop, &bo), 0);
  assert_int_equal(rx_bus_set_default(bus, 0), 0);
  static struct check c[3];
  memset(c, 0, sizeof(c));
  for (int i = 0; i < 3; i++)
    for (int p = 0; p < PRODUCERS; p++)
      c[i].last[p] = -1;
  const char *tick[] = {"tick"}, *tock[] = {"tock"};
  struct rx_listener_options o[3] = {{0}};
  o[0].names = tick; /* every producer's ticks */
  o[0].n_names = 1;
  o[1].filter = low_producers; /* producers 0 and 1, both names */
  o[2].names = tock;           /* tocks whose sequence is a multiple of 3 */
  o[2].n_names = 1;
  o[2].filter = every_third;
  rx_listener *l[3];
  for (int i = 0; i < 3; i++) {
    o[i].capacity = 8192;
    o[i].policy = RX_BUS_BLOCK; /* nothing lost: producers wait */
    o[i].cb = check_cb;
    o[i].data = &c[i];
    assert_int_equal(rx_listener_new(&l[i], &o[i]), 0);
    assert_int_equal(rx_bus_add(bus, l[i]), 0);
  }
  struct producer pr[PRODUCERS];
  pthread_t th[PRODUCERS];
  for (int p = 0; p < PRODUCERS; p++) {
    pr[p] = (struct producer){bus, p, 0};
    assert_int_equal(pthread_create(&th[p], NULL, producer_main, &pr[p]), 0);
  }
  long ticks = (PRODUCER_N + 1) / 2, tocks = PRODUCER_N / 2;
  long third_tocks = 0;
  for (long s = 1; s < PRODUCER_N; s += 2)
    third_tocks += s % 3 == 0;
  struct all_in a = {
      bus, c, {PRODUCERS * ticks, 2L * PRODUCER_N, PRODUCERS * third_tocks}};
  (void)tocks;
  run_until(t->loop, all_in, &a, RX_SEC(120));
  for (int p = 0; p < PRODUCERS; p++) {
    pthread_join(th[p], NULL);
    assert_int_equal(pr[p].rc, 0);
  }
  rxt_run_nowait(t->loop, 2);
  for (int i = 0; i < 3; i++) {
    rxt_assert_eq(c[i].count, a.want[i]);
    assert_int_equal(c[i].bad, 0);
    struct rx_listener_metrics m;
    rx_listener_metrics(l[i], &m);
    rxt_assert_eq(m.accepted, a.want[i]);
    rxt_assert_eq(m.dropped_new + m.dropped_oldest + m.failed, 0);
  }
  struct rx_bus_metrics bm;
  rx_bus_metrics(bus, &bm);
  rxt_assert_eq(bm.posted, (long)PRODUCERS * PRODUCER_N);
  assert_int_equal(bm.inflight, 0);
  for (int i = 0; i < 3; i++)
    rx_listener_free(l[i]);
  assert_int_equal(rx_bus_free(bus), 0);
}

/* ---------------------------------------------------------------------------
 * The dispatcher.
 */

static int calls[4];
static int h_go(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)ev;
  calls[(intptr_t)data]++;
  return 1;
}
static int h_stop(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)ev;
  calls[(intptr_t)data]++;
  return 0;
}
static int h_fail(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)ev;
  calls[(intptr_t)data]++;
  return -EIO;
}

static void test_chain_stops_at_false(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  rx_dispatcher *d;
  assert_int_equal(rx_dispatcher_new(&d, bus, NULL), 0);
  memset(calls, 0, sizeof(calls));
  assert_int_equal(rx_dispatcher_on(d, "job", h_go, (void *)0), 0);
  assert_int_equal(rx_dispatcher_on(d, "job", h_stop, (void *)1), 0);
  assert_int_equal(rx_dispatcher_on(d, "job", h_go, (void *)2), 0);
  assert_int_equal(rx_dispatcher_on(d, "other", h_go, (void *)3), 0);
  assert_int_equal(rx_dispatcher_start(d), 0);
  assert_int_equal(rx_dispatcher_on(d, "late", h_go, NULL), -EBUSY);
  assert_int_equal(rx_bus_free(bus), -EBUSY); /* a dispatcher is attached */
  assert_int_equal(pub(bus, "job", NULL), 0);
  assert_int_equal(pub(bus, "job", NULL), 0);
  assert_int_equal(pub(bus, "other", NULL), 0);
  assert_int_equal(pub(bus, "nobody", NULL), 0);
  rxt_run_nowait(t->loop, 1);
  assert_int_equal(calls[0], 2);
  assert_int_equal(calls[1], 2);
  assert_int_equal(calls[2], 0); /* after the false: never */
  assert_int_equal(calls[3], 1);
  struct rx_dispatcher_metrics m;
  rx_dispatcher_metrics(d, &m);
  assert_int_equal(m.handled, 3);
  assert_int_equal(m.stopped, 2);
  assert_int_equal(m.failures, 0);
  /* Stop with events queued: drained first. */
  assert_int_equal(pub(bus, "other", NULL), 0);
  assert_int_equal(rx_dispatcher_free(d), -EBUSY);
  assert_int_equal(rx_dispatcher_stop(d, 0, NULL, NULL), 0);
  assert_int_equal(calls[3], 2);
  assert_int_equal(pub(bus, "other", NULL), 0);
  rxt_run_nowait(t->loop, 1);
  assert_int_equal(calls[3], 2);
  assert_int_equal(rx_dispatcher_free(d), 0);
  assert_int_equal(rx_bus_free(bus), 0);
}

static int err_calls, err_code, err_ret;
static char err_orig[16];
static int on_error(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)data;
  const struct rx_bus_error *e = rx_event_payload(ev);
  assert_string_equal(rx_event_name(ev), "rx.bus.error");
  err_calls++;
  err_code = e->error;
  snprintf(err_orig, sizeof(err_orig), "%s", rx_event_name(e->original));
  return err_ret;
}

static void test_failing_handlers(void **state) {
  struct rxt *t = *state;
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  rx_dispatcher *d;
  assert_int_equal(rx_dispatcher_new(&d, bus, NULL), 0);
  memset(calls, 0, sizeof(calls));
  assert_int_equal(rx_dispatcher_on(d, "job", h_fail, (void *)0), 0);
  assert_int_equal(rx_dispatcher_on(d, "job", h_go, (void *)1), 0);
  assert_int_equal(rx_dispatcher_on(d, NULL, h_go, (void *)2), 0);
  assert_int_equal(rx_dispatcher_on_error(d, on_error, NULL), 0);
  assert_int_equal(rx_dispatcher_start(d), 0);
  err_calls = 0;
  err_ret = 0;
  /* A failing handler: the error handler gets the error and the original;
   * the chain stops. */
  assert_int_equal(pub(bus, "job", NULL), 0);
  rxt_run_nowait(t->loop, 1);
  assert_int_equal(calls[0], 1);
  assert_int_equal(calls[1], 0);
  assert_int_equal(err_calls, 1);
  assert_int_equal(err_code, -EIO);
  assert_string_equal(err_orig, "job");
  /* A failing error handler: counted, the error event kept on the bus
   * (the default listener), and the loop goes on. */
  err_ret = -EINVAL;
  rx_listener *def = rx_bus_default(bus);
  rx_listener_clear(def, NULL, NULL);
  assert_int_equal(pub(bus, "job", NULL), 0);
  assert_int_equal(pub(bus, "fine", NULL), 0);
  rxt_run_nowait(t->loop, 3);
  assert_int_equal(err_calls, 2);
  assert_int_equal(calls[2], 1); /* "fine" ran through the catch-all */
  struct rx_dispatcher_metrics m;
  rx_dispatcher_metrics(d, &m);
  assert_int_equal(m.failures, 2);
  assert_int_equal(m.error_failures, 1);
  assert_int_equal(m.handled, 3); /* the error event did not come back */
  int found = 0;
  rx_event *ev;
  while (rx_listener_try_get(def, &ev) == 0) {
    if (strcmp(rx_event_name(ev), "rx.bus.error") == 0) {
      const struct rx_bus_error *e = rx_event_payload(ev);
      assert_int_equal(e->error, -EIO);
      assert_string_equal(rx_event_name(e->original), "job");
      found++;
    }
    rx_event_unref(ev);
  }
  assert_int_equal(found, 1);
  /* Without an error handler: counted as unhandled, put on the bus. */
  assert_int_equal(rx_dispatcher_on_error(d, NULL, NULL), 0);
  assert_int_equal(pub(bus, "job", NULL), 0);
  rxt_run_nowait(t->loop, 3);
  rx_dispatcher_metrics(d, &m);
  assert_int_equal(m.unhandled, 1);
  assert_int_equal(rx_dispatcher_stop(d, 1, NULL, NULL), 0);
  assert_int_equal(rx_dispatcher_free(d), 0);
  assert_int_equal(rx_bus_free(bus), 0);
}

/* A processor on another thread's loop, a bounded queue between. */
struct proc_thread {
  rx_loop *loop;
  rx_task quit;
};

static void quit_task(rx_loop *loop, rx_task *t) {
  (void)t;
  rx_unref(loop);
}

static void *proc_main(void *arg) {
  struct proc_thread *p = arg;
  rx_run(p->loop, RX_RUN_DEFAULT);
  return NULL;
}

static long proc_seen, proc_bad;
static int h_order(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)data;
  long v = (long)(uintptr_t)rx_event_payload(ev);
  if (v != proc_seen)
    proc_bad++;
  proc_seen++;
  return 1;
}

static int stopped_flag;
static void on_stopped(rx_dispatcher *d, void *arg) {
  (void)d;
  (void)arg;
  stopped_flag = 1;
}

static int flag_set(void *arg) {
  return *(int *)arg;
}

static void processor_run(struct rxt *t, int drop) {
  rx_bus *bus;
  assert_int_equal(rx_bus_new(&bus, t->loop, NULL), 0);
  struct proc_thread p = {0};
  assert_int_equal(rx_loop_new(&p.loop, NULL), 0);
  rx_ref(p.loop); /* posted tasks alone do not keep a loop running */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, proc_main, &p), 0);
  struct rx_dispatcher_options o = {
      .capacity = 64, .processor = p.loop, .queue = 8};
  rx_dispatcher *d;
  assert_int_equal(rx_dispatcher_new(&d, bus, &o), 0);
  proc_seen = proc_bad = 0;
  assert_int_equal(rx_dispatcher_on(d, "n", h_order, NULL), 0);
  assert_int_equal(rx_dispatcher_start(d), 0);
  const long n = 20000;
  for (long i = 0; i < n; i++) {
    rx_event *ev = mkev("n", (void *)(uintptr_t)i);
    int rc;
    /* The listener blocks when the processor falls behind: run the loop
     * until it has room. */
    while ((rc = rx_bus_publish(bus, ev)) == -EAGAIN)
      assert_true(rx_run(t->loop, RX_RUN_ONCE) >= 0);
    assert_int_equal(rc, 0);
    rx_event_unref(ev);
  }
  stopped_flag = 0;
  assert_int_equal(rx_dispatcher_stop(d, drop, on_stopped, NULL), 0);
  run_until(t->loop, flag_set, &stopped_flag, RX_SEC(30));
  p.quit.fn = quit_task;
  assert_int_equal(rx_loop_post(p.loop, &p.quit), 0);
  pthread_join(th, NULL);
  struct rx_dispatcher_metrics m;
  rx_dispatcher_metrics(d, &m);
  assert_int_equal(proc_bad, 0);
  if (!drop) {
    rxt_assert_eq(m.handled, n);
    assert_int_equal(m.dropped, 0);
  } else {
    rxt_assert_eq(m.handled + m.dropped, n);
  }
  assert_int_equal(rx_dispatcher_free(d), 0);
  assert_int_equal(rx_bus_free(bus), 0);
  assert_int_equal(rx_loop_free(p.loop), 0);
}

static void test_processor_drain(void **state) {
  processor_run(*state, 0);
}
static void test_processor_drop(void **state) {
  processor_run(*state, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST_NOLOOP(test_event_refs),
      RXT_TEST(test_event_not_copied),
      RXT_TEST(test_names_before_filter),
      RXT_TEST(test_history_and_clear),
      RXT_TEST(test_register_remove_default),
      RXT_TEST(test_callback_and_get),
      RXT_TEST(test_scoped),
      RXT_TEST(test_reentrancy),
      RXT_TEST(test_flood_drop_oldest),
      RXT_TEST(test_flood_drop_new),
      RXT_TEST(test_flood_fail),
      RXT_TEST(test_flood_block),
      RXT_TEST(test_post_rules),
      RXT_TEST(test_post_blocked_woken_per_slot),
      RXT_TEST(test_producers),
      RXT_TEST(test_chain_stops_at_false),
      RXT_TEST(test_failing_handlers),
      RXT_TEST(test_processor_drain),
      RXT_TEST(test_processor_drop),
  };
  /* RXT_FILTER=pattern runs the matching tests alone. */
  if (getenv("RXT_FILTER") != NULL)
    cmocka_set_test_filter(getenv("RXT_FILTER"));
  const char *b = rxt_env_backend();
  char name[128];
  snprintf(name, sizeof(name), "%s [%s]", __FILE__, b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
