/*
 * bus.c - the event bus: events, listeners, publishing (include/rx/bus.h).
 *
 * Built on rx.h alone. Everything but the event's reference count and the
 * post path belongs to the loop's thread, so listeners, their FIFOs and the
 * history rings are plain fields without a lock.
 *
 * Delivery. A publish checks every listener first (names, then the filter),
 * remembering the match in the listener (`match_seq`), and refuses the whole
 * publish if a matching listener is full with RX_BUS_FAIL (-ENOBUFS) or
 * RX_BUS_BLOCK (-EAGAIN); only then does it put a reference in each matching
 * FIFO. Filters run once per listener and publish, and no user code runs
 * between the two passes, so the listener list cannot change under them.
 * Callback listeners are not called from inside the publish: the bus feeds
 * its own never-started rx_check (`kick`) and runs the callbacks from the
 * loop's pending callbacks. That is what makes re-entrancy simple: a
 * callback that publishes only queues, a listener added by a callback sees
 * only what is published after it, and one removed is cleared at once, so it
 * sees nothing more. Each listener's callbacks run for at most the events
 * that were queued when its turn came, so a callback that publishes to
 * itself cannot keep the loop in one pending callback.
 *
 * Posts from other threads. rx_bus_post() embeds the hop in the event: its
 * rx_task goes through the loop's MPSC queue (rx_loop_post()), which gives
 * exactly once and FIFO per producer without a lock or an allocation. An
 * event can be on its way to one bus at a time (`posted`). The number of
 * posts on their way is bounded by `post_limit` with a CAS loop on
 * `inflight`, so it never overshoots. On the loop, a post that a full
 * RX_BUS_BLOCK listener refuses waits in the bus's backlog, and so does
 * every post after it (FIFO per producer holds for every listener); the
 * backlog drains as soon as that listener frees a slot. Each post the loop
 * finishes decrements `inflight` and, if a poster sleeps in
 * rx_bus_post_wait(), owes it a wake-up: one per freed slot, all those of
 * one pass of the loop made by one futex call from the kick.
 *
 * The sleep handshake (rx_bus_post_wait() and finish_post()) is Dekker's:
 * the poster increments `sleepers` and then reads `inflight`; the loop
 * decrements `inflight` and then reads `sleepers`; all four are seq_cst, so
 * at least one of the two sees the other. A poster that saw the limit
 * sleeps on `wake_seq` with the value it read before; a wake-up that comes
 * between its read and its futex wait has changed the value, and the wait
 * returns at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bus-private.h"
#include "rx/bus.h"

#define DEFAULT_CAPACITY 1024
#define LISTENER_CAPACITY 256
#define POST_LIMIT 4096
#define NAME_MAX_LEN 255

struct rx_event {
  rx_task task;     /* first: rx_bus_post()'s hop through the queue */
  rx_bus *post_bus; /* while posted */
  rx_event *backlog_next;
  unsigned posted; /* atomic: 1 from rx_bus_post() until delivered */
  unsigned refs;   /* atomic */
  uint32_t hash;
  int64_t time;
  void *payload;
  rx_event_free_fn free_payload;
  char name[];
};

struct name_ent {
  uint32_t hash;
  const char *s;
};

struct rx_listener {
  rx_bus *bus;
  rx_listener *prev, *next; /* the bus's list */
  struct name_ent *names;
  size_t n_names;
  rx_listener_filter_fn filter;
  void *filter_data;
  rx_listener_cb cb;
  void *data;
  int policy;
  int is_default;
  int in_cb;     /* its callback is running: a free waits for the return */
  int free_late; /* freed inside its callback */
  uint64_t match_seq;
  rx_event **fifo;
  size_t cap, head, depth;
  rx_event **hist;
  size_t hist_cap, hist_head, hist_n;
  rx_bus_waiter *wait_head, *wait_tail;
  size_t n_waiting;
  rx_listener_get_cb get_cb;
  void *get_data;
  int get_pending;
  rx_timer get_timer;
  struct rx_listener_metrics m;
};

struct rx_bus {
  rx_loop *loop;
  pthread_t owner;
  rx_check kick; /* never started: fed to run callbacks and waiters */
  int kicked;
  int in_kick;
  int draining;
  int holds; /* dispatchers attached */
  int default_on;
  rx_listener *first, *last; /* the default listener is first */
  rx_listener *cursor;       /* the next listener the kick visits */
  size_t n_listeners;
  rx_bus_waiter *ready_head, *ready_tail; /* woken, callback not yet run */
  uint64_t seq;
  rx_event *backlog_head, *backlog_tail;
  size_t backlog_len;
  rx_listener *blocker; /* the full listener the backlog waits for */
  size_t post_limit;
  /* Shared with posting threads; atomic. */
  size_t inflight;
  unsigned sleepers;
  unsigned wake_seq; /* the futex word */
  uint64_t posted, post_refused, post_sleeps, post_wakeups;
  /* The loop's own. */
  uint64_t published, post_failed;
  uint64_t wakes_due; /* sleeping posters owed a wake-up (flush_wakes()) */
};

/* ---------------------------------------------------------------------------
 * Events.
 */

static uint32_t name_hash(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s != '\0'; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int rx_event_new(rx_event **ev, const char *name, int64_t time, void *payload,
                 rx_event_free_fn free_payload) {
  if (ev == NULL || name == NULL || time < 0)
    return -EINVAL;
  size_t len = strnlen(name, NAME_MAX_LEN + 1);
  if (len == 0 || len > NAME_MAX_LEN)
    return -EINVAL;
  rx_event *e = malloc(sizeof(*e) + len + 1);
  if (e == NULL)
    return -ENOMEM;
  memset(e, 0, sizeof(*e));
  memcpy(e->name, name, len + 1);
  e->hash = name_hash(e->name);
  e->time = time != 0 ? time : now_ns();
  e->payload = payload;
  e->free_payload = free_payload;
  e->refs = 1;
  *ev = e;
  return 0;
}

rx_event *rx_event_ref(rx_event *ev) {
  /* Relaxed: taking a reference needs one already held, which orders it. */
  if (ev != NULL)
    __atomic_fetch_add(&ev->refs, 1, __ATOMIC_RELAXED);
  return ev;
}

void rx_event_unref(rx_event *ev) {
  if (ev == NULL)
    return;
  /* Release so that every holder's use happens before the free, acquire on
   * the last so that the free sees them all. */
  if (__atomic_sub_fetch(&ev->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  if (ev->free_payload != NULL)
    ev->free_payload(ev->payload);
  free(ev);
}

const char *rx_event_name(const rx_event *ev) {
  return ev != NULL ? ev->name : NULL;
}

int64_t rx_event_time(const rx_event *ev) {
  return ev != NULL ? ev->time : 0;
}

void *rx_event_payload(const rx_event *ev) {
  return ev != NULL ? ev->payload : NULL;
}

unsigned rx_event_refs(const rx_event *ev) {
  return ev != NULL ? __atomic_load_n(&ev->refs, __ATOMIC_RELAXED) : 0;
}

/* ---------------------------------------------------------------------------
 * Listeners: the FIFO and the history.
 */

static void kick(rx_bus *bus) {
  if (!bus->kicked) {
    bus->kicked = 1;
    rx_feed_event(bus->loop, &bus->kick, RX_CUSTOM);
  }
}

static rx_event *fifo_pop(rx_listener *l) {
  rx_event *ev = l->fifo[l->head];
  l->fifo[l->head] = NULL;
  l->head = l->head + 1 == l->cap ? 0 : l->head + 1;
  l->depth--;
  return ev;
}

static void history_add(rx_listener *l, rx_event *ev) {
  if (l->hist_cap == 0)
    return;
  rx_event_ref(ev);
  if (l->hist_n == l->hist_cap) {
    rx_event_unref(l->hist[l->hist_head]);
    l->hist[l->hist_head] = ev;
    l->hist_head = l->hist_head + 1 == l->hist_cap ? 0 : l->hist_head + 1;
  } else {
    l->hist[(l->hist_head + l->hist_n) % l->hist_cap] = ev;
    l->hist_n++;
  }
}

static void accept(rx_listener *l, rx_event *ev) {
  if (l->depth == l->cap) {
    if (l->policy == RX_BUS_DROP_NEW) {
      l->m.dropped_new++;
      return;
    }
    /* RX_BUS_DROP_OLDEST: FAIL and BLOCK never get here (deliver()). */
    rx_event_unref(fifo_pop(l));
    l->m.dropped_oldest++;
  }
  l->fifo[(l->head + l->depth) % l->cap] = rx_event_ref(ev);
  l->depth++;
  if (l->depth > l->m.high_water)
    l->m.high_water = l->depth;
  l->m.accepted++;
  history_add(l, ev);
  if (l->cb != NULL || l->get_pending)
    kick(l->bus);
}

static int matches(const rx_listener *l, const rx_event *ev) {
  if (l->n_names != 0) {
    size_t i;
    for (i = 0; i < l->n_names; i++)
      if (l->names[i].hash == ev->hash && strcmp(l->names[i].s, ev->name) == 0)
        break;
    if (i == l->n_names)
      return 0;
  }
  return l->filter == NULL || l->filter(ev, l->filter_data) != 0;
}

/* The two passes (see the top of the file). On -EAGAIN, *blocker is the
 * first full RX_BUS_BLOCK listener that wants `ev`. */
static int deliver(rx_bus *bus, rx_event *ev, rx_listener **blocker) {
  uint64_t seq = ++bus->seq;
  rx_listener *fail = NULL, *block = NULL;
  for (rx_listener *l = bus->first; l != NULL; l = l->next) {
    if ((l->is_default && !bus->default_on) || !matches(l, ev))
      continue;
    l->match_seq = seq;
    if (l->depth == l->cap) {
      if (l->policy == RX_BUS_FAIL && fail == NULL)
        fail = l;
      else if (l->policy == RX_BUS_BLOCK && block == NULL)
        block = l;
    }
  }
  if (fail != NULL || block != NULL) {
    /* Each full listener that refuses counts it: FAIL ones when any is
     * there (the publish fails), else BLOCK ones (the publisher waits). */
    int policy = fail != NULL ? RX_BUS_FAIL : RX_BUS_BLOCK;
    for (rx_listener *l = bus->first; l != NULL; l = l->next) {
      if (l->match_seq != seq || l->depth != l->cap || l->policy != policy)
        continue;
      if (policy == RX_BUS_FAIL)
        l->m.failed++;
      else
        l->m.blocked++;
    }
    *blocker = block;
    return fail != NULL ? -ENOBUFS : -EAGAIN;
  }
  for (rx_listener *l = bus->first; l != NULL; l = l->next)
    if (l->match_seq == seq)
      accept(l, ev);
  bus->published++;
  return 0;
}

/* Wakes the sleeping posters the loop owes a wake-up, one per slot freed
 * while they slept, in one futex call: the loop does it once per pass (from
 * the kick), not once per event. */
static void flush_wakes(rx_bus *bus) {
  if (bus->wakes_due == 0)
    return;
  unsigned n = bus->wakes_due > INT_MAX ? INT_MAX : (unsigned)bus->wakes_due;
  __atomic_fetch_add(&bus->post_wakeups, bus->wakes_due, __ATOMIC_RELAXED);
  bus->wakes_due = 0;
  __atomic_fetch_add(&bus->wake_seq, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &bus->wake_seq, FUTEX_WAKE_PRIVATE, (int)n, NULL, NULL, 0);
}

/* A post is done with: delivered, or refused by a FAIL listener, or dropped.
 * Frees its slot of the post limit and owes a sleeping poster a wake-up.
 * `here`: on the loop's thread (else the wake-up is made at once). */
static void finish_post(rx_bus *bus, rx_event *ev, int here) {
  /* Release: what the loop did with the event happens before a new post
   * of it from another thread. */
  __atomic_store_n(&ev->posted, 0, __ATOMIC_RELEASE);
  __atomic_fetch_sub(&bus->inflight, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&bus->sleepers, __ATOMIC_SEQ_CST) != 0) {
    if (here) {
      bus->wakes_due++;
      kick(bus);
    } else {
      __atomic_fetch_add(&bus->wake_seq, 1, __ATOMIC_SEQ_CST);
      syscall(SYS_futex, &bus->wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
  }
  rx_event_unref(ev);
}

static void backlog_push(rx_bus *bus, rx_event *ev) {
  ev->backlog_next = NULL;
  if (bus->backlog_tail != NULL)
    bus->backlog_tail->backlog_next = ev;
  else
    bus->backlog_head = ev;
  bus->backlog_tail = ev;
  bus->backlog_len++;
}

/* Delivers the backlog in order until a full BLOCK listener holds its head
 * again, or it is empty. */
static void drain_backlog(rx_bus *bus) {
  if (bus->draining)
    return;
  bus->draining = 1;
  while (bus->backlog_head != NULL) {
    rx_event *ev = bus->backlog_head;
    rx_listener *blocker = NULL;
    int rc = deliver(bus, ev, &blocker);
    if (rc == -EAGAIN) {
      bus->blocker = blocker;
      break;
    }
    if (rc == -ENOBUFS)
      bus->post_failed++;
    bus->backlog_head = ev->backlog_next;
    if (bus->backlog_head == NULL)
      bus->backlog_tail = NULL;
    bus->backlog_len--;
    finish_post(bus, ev, 1);
  }
  if (bus->backlog_head == NULL)
    bus->blocker = NULL;
  bus->draining = 0;
}

static void wake_waiter(rx_bus *bus, rx_listener *l) {
  rx_bus_waiter *w = l->wait_head;
  l->wait_head = w->_next;
  if (l->wait_head == NULL)
    l->wait_tail = NULL;
  l->n_waiting--;
  l->m.wakeups++;
  w->_next = NULL;
  w->_on = NULL;
  w->_ready = 1;
  if (bus->ready_tail != NULL)
    bus->ready_tail->_next = w;
  else
    bus->ready_head = w;
  bus->ready_tail = w;
  kick(bus);
}

/* `n` slots of `l` were freed: the backlog first if it waits for `l`, then
 * one waiting publisher per slot still free. */
static void slots_freed(rx_listener *l, size_t n) {
  rx_bus *bus = l->bus;
  if (bus == NULL || n == 0)
    return;
  if (bus->blocker == l) {
    drain_backlog(bus);
    if (l->bus != bus)
      return;
  }
  size_t room = l->cap - l->depth;
  if (n > room)
    n = room;
  while (n-- > 0 && l->wait_head != NULL)
    wake_waiter(bus, l);
}

int rx_listener_new(rx_listener **lp, const struct rx_listener_options *o) {
  if (lp == NULL || o == NULL || o->policy < RX_BUS_DROP_OLDEST ||
      o->policy > RX_BUS_BLOCK || (o->n_names != 0 && o->names == NULL))
    return -EINVAL;
  size_t cap = o->capacity != 0 ? o->capacity : LISTENER_CAPACITY;
  if (cap > SIZE_MAX / sizeof(rx_event *) / 2 ||
      o->history > SIZE_MAX / sizeof(rx_event *) / 2 ||
      o->n_names > SIZE_MAX / sizeof(struct name_ent) / 2)
    return -EINVAL;
  size_t strbytes = 0;
  for (size_t i = 0; i < o->n_names; i++) {
    if (o->names[i] == NULL)
      return -EINVAL;
    size_t len = strnlen(o->names[i], NAME_MAX_LEN + 1);
    if (len == 0 || len > NAME_MAX_LEN)
      return -EINVAL;
    strbytes += len + 1;
  }
  rx_listener *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return -ENOMEM;
  l->fifo = calloc(cap, sizeof(rx_event *));
  l->hist = o->history != 0 ? calloc(o->history, sizeof(rx_event *)) : NULL;
  l->names = o->n_names != 0
                 ? malloc(o->n_names * sizeof(struct name_ent) + strbytes)
                 : NULL;
  if (l->fifo == NULL || (o->history != 0 && l->hist == NULL) ||
      (o->n_names != 0 && l->names == NULL)) {
    free(l->fifo);
    free(l->hist);
    free(l->names);
    free(l);
    return -ENOMEM;
  }
  /* The strings follow the table (no table: no names, and no pointer
   * arithmetic on NULL). */
  char *s = l->names != NULL ? (char *)(l->names + o->n_names) : NULL;
  for (size_t i = 0; i < o->n_names; i++) {
    size_t len = strlen(o->names[i]);
    memcpy(s, o->names[i], len + 1);
    l->names[i].s = s;
    l->names[i].hash = name_hash(s);
    s += len + 1;
  }
  l->n_names = o->n_names;
  l->filter = o->filter;
  l->filter_data = o->filter_data;
  l->cb = o->cb;
  l->data = o->data;
  l->policy = o->policy;
  l->cap = cap;
  l->hist_cap = o->history;
  l->m.capacity = cap;
  *lp = l;
  return 0;
}

static void listener_release(rx_listener *l) {
  for (size_t i = 0; i < l->hist_n; i++)
    rx_event_unref(l->hist[(l->hist_head + i) % l->hist_cap]);
  free(l->fifo);
  free(l->hist);
  free(l->names);
  free(l);
}

void rx_listener_free(rx_listener *l) {
  if (l == NULL || l->is_default)
    return;
  if (l->bus != NULL)
    rx_bus_remove(l->bus, l);
  if (l->in_cb) {
    l->free_late = 1;
    return;
  }
  listener_release(l);
}

int rx_bus_add(rx_bus *bus, rx_listener *l) {
  if (bus == NULL || l == NULL)
    return -EINVAL;
  if (l->bus == bus)
    return -EALREADY;
  if (l->bus != NULL || l->free_late)
    return -EBUSY;
  l->bus = bus;
  l->prev = bus->last;
  l->next = NULL;
  if (bus->last != NULL)
    bus->last->next = l;
  else
    bus->first = l;
  bus->last = l;
  bus->n_listeners++;
  /* A stamp of another bus, or of this one before a remove, must not match
   * a pass of this one (seqs start at 1). */
  l->match_seq = 0;
  return 0;
}

static long drain_fifo(rx_listener *l, void (*each)(rx_event *, void *),
                       void *arg) {
  long n = 0;
  while (l->depth > 0) {
    rx_event *ev = fifo_pop(l);
    n++;
    if (each != NULL)
      each(ev, arg);
    else
      rx_event_unref(ev);
  }
  l->m.cleared += (uint64_t)n;
  return n;
}

int rx_bus_remove(rx_bus *bus, rx_listener *l) {
  if (bus == NULL || l == NULL)
    return -EINVAL;
  if (l->is_default && l->bus == bus)
    return -EPERM;
  if (l->bus != bus)
    return -ENOENT;
  if (bus->cursor == l)
    bus->cursor = l->next;
  if (l->prev != NULL)
    l->prev->next = l->next;
  else
    bus->first = l->next;
  if (l->next != NULL)
    l->next->prev = l->prev;
  else
    bus->last = l->prev;
  l->prev = l->next = NULL;
  bus->n_listeners--;
  drain_fifo(l, NULL, NULL);
  /* Its waiters retry: the listener no longer holds them back. */
  while (l->wait_head != NULL)
    wake_waiter(bus, l);
  l->bus = NULL;
  if (bus->blocker == l) {
    bus->blocker = NULL;
    drain_backlog(bus);
  }
  if (l->get_pending) {
    rx_timer_stop(bus->loop, &l->get_timer);
    l->get_pending = 0;
    l->get_cb(l, NULL, -ECANCELED, l->get_data);
  }
  return 0;
}

rx_listener *rx_bus_default(rx_bus *bus) {
  return bus != NULL
             ? bus->first != NULL && bus->first->is_default ? bus->first : NULL
             : NULL;
}

int rx_bus_set_default(rx_bus *bus, int on) {
  if (bus == NULL)
    return -EINVAL;
  bus->default_on = on != 0;
  return 0;
}

int rx_bus_listen(rx_bus *bus, rx_listener *const *ls, size_t n,
                  int (*fn)(void *arg), void *arg) {
  if (bus == NULL || (n != 0 && ls == NULL) || fn == NULL)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    int rc = rx_bus_add(bus, ls[i]);
    if (rc != 0) {
      while (i-- > 0)
        rx_bus_remove(bus, ls[i]);
      return rc;
    }
  }
  int rc = fn(arg);
  for (size_t i = 0; i < n; i++)
    if (ls[i]->bus == bus)
      rx_bus_remove(bus, ls[i]);
  return rc;
}

int rx_listener_try_get(rx_listener *l, rx_event **ev) {
  if (l == NULL || ev == NULL)
    return -EINVAL;
  if (l->depth == 0)
    return -EAGAIN;
  *ev = fifo_pop(l);
  l->m.consumed++;
  slots_freed(l, 1);
  return 0;
}

static void get_timeout(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  rx_listener *l = t->data;
  if (!l->get_pending)
    return;
  l->get_pending = 0;
  l->get_cb(l, NULL, -ETIMEDOUT, l->get_data);
}

int rx_listener_get(rx_listener *l, rx_listener_get_cb cb, void *data,
                    int64_t timeout) {
  if (l == NULL || cb == NULL || timeout < 0 || l->cb != NULL)
    return -EINVAL;
  if (l->bus == NULL)
    return -ENOENT;
  if (l->get_pending)
    return -EBUSY;
  if (timeout > 0) {
    rx_timer_init(&l->get_timer, get_timeout, timeout, 0);
    l->get_timer.data = l;
    int rc = rx_timer_start(l->bus->loop, &l->get_timer);
    if (rc != 0)
      return rc;
  }
  l->get_cb = cb;
  l->get_data = data;
  l->get_pending = 1;
  if (l->depth > 0)
    kick(l->bus);
  return 0;
}

int rx_listener_cancel_get(rx_listener *l) {
  if (l == NULL)
    return -EINVAL;
  if (!l->get_pending)
    return -ENOENT;
  l->get_pending = 0;
  if (l->bus != NULL)
    rx_timer_stop(l->bus->loop, &l->get_timer);
  return 0;
}

long rx_listener_clear(rx_listener *l, void (*each)(rx_event *ev, void *arg),
                       void *arg) {
  if (l == NULL)
    return -EINVAL;
  long n = drain_fifo(l, each, arg);
  slots_freed(l, (size_t)n);
  return n;
}

size_t rx_listener_history_count(const rx_listener *l) {
  return l != NULL ? l->hist_n : 0;
}

rx_event *rx_listener_history(const rx_listener *l, size_t i) {
  if (l == NULL || i >= l->hist_n)
    return NULL;
  return l->hist[(l->hist_head + i) % l->hist_cap];
}

rx_bus *rx_listener_bus(const rx_listener *l) {
  return l != NULL ? l->bus : NULL;
}

int rx_listener_metrics(const rx_listener *l, struct rx_listener_metrics *m) {
  if (l == NULL || m == NULL)
    return -EINVAL;
  *m = l->m;
  m->depth = l->depth;
  m->waiting = l->n_waiting;
  if (l->bus != NULL && l->bus->blocker == l)
    m->waiting += l->bus->backlog_len;
  return 0;
}

/* ---------------------------------------------------------------------------
 * The kick: woken waiters, then each listener's callbacks and gets.
 */

static void serve(rx_bus *bus, rx_listener *l) {
  if (l->cb != NULL) {
    size_t n = l->depth; /* only what was there when its turn came */
    while (n-- > 0 && l->bus == bus && l->depth > 0) {
      rx_event *ev = fifo_pop(l);
      l->m.consumed++;
      slots_freed(l, 1);
      l->in_cb = 1;
      l->cb(l, ev, l->data);
      l->in_cb = 0;
      rx_event_unref(ev);
      if (l->free_late) {
        listener_release(l);
        return;
      }
    }
  } else if (l->get_pending && l->depth > 0) {
    rx_event *ev = fifo_pop(l);
    l->m.consumed++;
    l->get_pending = 0;
    rx_timer_stop(bus->loop, &l->get_timer);
    slots_freed(l, 1);
    l->in_cb = 1;
    l->get_cb(l, ev, 0, l->get_data);
    l->in_cb = 0;
    if (l->free_late)
      listener_release(l);
  }
}

static void on_kick(rx_loop *loop, rx_check *w, int revents) {
  (void)loop;
  (void)revents;
  rx_bus *bus = w->data;
  bus->kicked = 0;
  bus->in_kick++;
  flush_wakes(bus);
  /* The waiters woken so far; those woken by their callbacks go on a new
   * list, for the next kick. */
  rx_bus_waiter *wt = bus->ready_head;
  bus->ready_head = bus->ready_tail = NULL;
  while (wt != NULL) {
    rx_bus_waiter *next = wt->_next;
    wt->_next = NULL;
    wt->_ready = 0;
    wt->cb(bus, wt);
    wt = next;
  }
  for (rx_listener *l = bus->first; l != NULL; l = bus->cursor) {
    bus->cursor = l->next;
    serve(bus, l);
  }
  bus->cursor = NULL;
  bus->in_kick--;
}

/* ---------------------------------------------------------------------------
 * The bus and publishing.
 */

int rx_bus_new(rx_bus **busp, rx_loop *loop, const struct rx_bus_options *o) {
  if (busp == NULL || loop == NULL)
    return -EINVAL;
  rx_bus *bus = calloc(1, sizeof(*bus));
  if (bus == NULL)
    return -ENOMEM;
  struct rx_listener_options lo = {0};
  lo.capacity = o != NULL && o->default_capacity != 0 ? o->default_capacity
                                                      : DEFAULT_CAPACITY;
  lo.history = o != NULL ? o->default_history : 0;
  lo.policy = RX_BUS_DROP_OLDEST;
  rx_listener *def;
  int rc = rx_listener_new(&def, &lo);
  if (rc != 0) {
    free(bus);
    return rc;
  }
  bus->loop = loop;
  bus->owner = pthread_self();
  bus->post_limit = o != NULL && o->post_limit != 0 ? o->post_limit
                                                    : POST_LIMIT;
  rx_check_init(&bus->kick, on_kick);
  bus->kick.data = bus;
  rx_bus_add(bus, def);
  def->is_default = 1;
  bus->default_on = 1;
  *busp = bus;
  return 0;
}

int rx_bus_free(rx_bus *bus) {
  if (bus == NULL)
    return -EINVAL;
  if (bus->in_kick || bus->holds != 0 ||
      __atomic_load_n(&bus->inflight, __ATOMIC_ACQUIRE) != bus->backlog_len)
    return -EBUSY;
  rx_listener *def = rx_bus_default(bus);
  while (bus->last != NULL && bus->last != def)
    rx_bus_remove(bus, bus->last);
  /* With only the default listener (never full for a post: it drops the
   * oldest), the backlog has drained. */
  drain_fifo(def, NULL, NULL);
  def->bus = NULL;
  def->is_default = 0;
  listener_release(def);
  while (bus->ready_head != NULL) {
    rx_bus_waiter *w = bus->ready_head;
    bus->ready_head = w->_next;
    w->_next = NULL;
    w->_ready = 0;
  }
  flush_wakes(bus);
  rx_clear_pending(bus->loop, &bus->kick);
  free(bus);
  return 0;
}

rx_loop *rx_bus_loop(const rx_bus *bus) {
  return bus != NULL ? bus->loop : NULL;
}

int rx_bus_publish(rx_bus *bus, rx_event *ev) {
  if (bus == NULL || ev == NULL)
    return -EINVAL;
  rx_listener *blocker = NULL;
  return deliver(bus, ev, &blocker);
}

int rx_bus_publish_wait(rx_bus *bus, rx_event *ev, rx_bus_waiter *w) {
  if (bus == NULL || ev == NULL || w == NULL || w->cb == NULL)
    return -EINVAL;
  if (w->_on != NULL || w->_ready)
    return -EBUSY;
  rx_listener *blocker = NULL;
  int rc = deliver(bus, ev, &blocker);
  if (rc != -EAGAIN)
    return rc;
  w->_next = NULL;
  w->_on = blocker;
  if (blocker->wait_tail != NULL)
    blocker->wait_tail->_next = w;
  else
    blocker->wait_head = w;
  blocker->wait_tail = w;
  blocker->n_waiting++;
  return -EAGAIN;
}

int rx_bus_waiter_cancel(rx_bus_waiter *w) {
  if (w == NULL)
    return -EINVAL;
  rx_listener *l = w->_on;
  if (l == NULL)
    return -ENOENT; /* a woken waiter's callback is already due */
  rx_bus_waiter **pp = &l->wait_head, *prev = NULL;
  while (*pp != w) {
    prev = *pp;
    pp = &(*pp)->_next;
  }
  *pp = w->_next;
  if (l->wait_tail == w)
    l->wait_tail = prev;
  l->n_waiting--;
  w->_next = NULL;
  w->_on = NULL;
  return 0;
}

/* On the loop's thread: a posted event arrives. */
static void post_arrived(rx_loop *loop, rx_task *task) {
  (void)loop;
  rx_event *ev = (rx_event *)(void *)task;
  rx_bus *bus = ev->post_bus;
  if (bus->backlog_head != NULL) {
    /* Held behind the others by the same full listener. */
    bus->blocker->m.blocked++;
    backlog_push(bus, ev);
    return;
  }
  rx_listener *blocker = NULL;
  int rc = deliver(bus, ev, &blocker);
  if (rc == -EAGAIN) {
    bus->blocker = blocker;
    backlog_push(bus, ev);
    return;
  }
  if (rc == -ENOBUFS)
    bus->post_failed++;
  finish_post(bus, ev, 1);
}

/* Takes one of the post limit's slots, never overshooting the limit. */
static int reserve(rx_bus *bus) {
  size_t n = __atomic_load_n(&bus->inflight, __ATOMIC_RELAXED);
  do {
    if (n >= bus->post_limit)
      return -EAGAIN;
  } while (!__atomic_compare_exchange_n(&bus->inflight, &n, n + 1, 1,
                                        __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
  return 0;
}

static int post(rx_bus *bus, rx_event *ev) {
  /* Acquire pairs with finish_post()'s release: the loop is done with the
   * event's previous trip before this one writes its fields. */
  if (__atomic_exchange_n(&ev->posted, 1, __ATOMIC_ACQUIRE) != 0)
    return -EBUSY;
  int rc = reserve(bus);
  if (rc != 0) {
    __atomic_store_n(&ev->posted, 0, __ATOMIC_RELEASE);
    return rc;
  }
  ev->post_bus = bus;
  ev->task.fn = post_arrived;
  rx_event_ref(ev);
  rc = rx_loop_post(bus->loop, &ev->task);
  if (rc != 0) {
    /* The loop never saw it: give the slot back as the loop would. */
    finish_post(bus, ev, 0);
    return rc;
  }
  __atomic_fetch_add(&bus->posted, 1, __ATOMIC_RELAXED);
  return 0;
}

int rx_bus_post(rx_bus *bus, rx_event *ev) {
  if (bus == NULL || ev == NULL)
    return -EINVAL;
  int rc = post(bus, ev);
  if (rc == -EAGAIN)
    __atomic_fetch_add(&bus->post_refused, 1, __ATOMIC_RELAXED);
  return rc;
}

int rx_bus_post_wait(rx_bus *bus, rx_event *ev) {
  if (bus == NULL || ev == NULL)
    return -EINVAL;
  if (pthread_equal(pthread_self(), bus->owner))
    return -EDEADLK;
  for (;;) {
    int rc = post(bus, ev);
    if (rc != -EAGAIN)
      return rc;
    unsigned seq = __atomic_load_n(&bus->wake_seq, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&bus->sleepers, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&bus->inflight, __ATOMIC_SEQ_CST) < bus->post_limit) {
      __atomic_fetch_sub(&bus->sleepers, 1, __ATOMIC_SEQ_CST);
      continue;
    }
    __atomic_fetch_add(&bus->post_sleeps, 1, __ATOMIC_RELAXED);
    syscall(SYS_futex, &bus->wake_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
    __atomic_fetch_sub(&bus->sleepers, 1, __ATOMIC_SEQ_CST);
  }
}

int rx_bus_metrics(const rx_bus *bus, struct rx_bus_metrics *m) {
  if (bus == NULL || m == NULL)
    return -EINVAL;
  memset(m, 0, sizeof(*m));
  m->published = bus->published;
  m->posted = __atomic_load_n(&bus->posted, __ATOMIC_RELAXED);
  m->post_refused = __atomic_load_n(&bus->post_refused, __ATOMIC_RELAXED);
  m->post_sleeps = __atomic_load_n(&bus->post_sleeps, __ATOMIC_RELAXED);
  m->post_wakeups = __atomic_load_n(&bus->post_wakeups, __ATOMIC_RELAXED);
  m->post_sleeping = __atomic_load_n(&bus->sleepers, __ATOMIC_RELAXED);
  m->post_failed = bus->post_failed;
  m->inflight = __atomic_load_n(&bus->inflight, __ATOMIC_RELAXED);
  m->backlog = bus->backlog_len;
  m->listeners = bus->n_listeners;
  return 0;
}

void rx__bus_hold(rx_bus *bus, int delta) {
  bus->holds += delta;
}
