/*
 * dispatcher.c - handler chains on the bus (include/rx/bus.h).
 *
 * A dispatcher is a listener on the bus (policy RX_BUS_BLOCK, so that a busy
 * dispatcher holds its publishers back instead of losing events) whose
 * events run through a chain: the handlers attached to the event's name and
 * the catch-all ones, in the order they were attached, until one returns 0
 * (the chain stops) or fails (< 0: the chain stops, and the failure becomes
 * an "rx.bus.error" event for the error handler).
 *
 * On the bus's own loop the listener's callback runs the chain. With a
 * processor loop (another thread's), the listener is pulled instead: the bus
 * side moves events into a bounded single-producer single-consumer ring and
 * posts the processor a task, the processor runs the chains and posts the
 * bus side a task when it has made room. Each side posts at most one task
 * at a time (`proc_sched`, `room_sched`): a side sets the flag before it
 * posts and the other clears it before it looks at the ring, both with
 * seq_cst operations, so that an event pushed after the processor's last
 * look is seen by a task posted after it. The bus side moves an event only
 * into room it has seen, so the ring is the bounded queue between the two
 * loops, and a full ring leaves the events in the listener, whose BLOCK
 * policy holds the publishers.
 *
 * Stopping: the listener's filter refuses new events at once; without drop,
 * what the listener holds is moved through the ring and handled, then the
 * listener is removed and the processor told so (`bus_done`); the processor
 * posts `done_task` back when the ring is empty too. With drop, the
 * listener is cleared and the ring emptied unhandled, both counted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-private.h"
#include "rx/bus.h"

#define DEFAULT_CAPACITY 1024
#define DEFAULT_QUEUE 256
#define ERROR_NAME "rx.bus.error"

struct handler {
  char *name; /* NULL: every event */
  rx_handler_fn fn;
  void *data;
};

enum { IDLE, RUNNING, STOPPING, STOPPED };

struct rx_dispatcher {
  rx_bus *bus;
  rx_loop *proc; /* NULL: the bus's loop runs the chains */
  rx_listener *l;
  size_t capacity;
  struct handler *h;
  size_t nh;
  int handles_error; /* a handler names ERROR_NAME */
  rx_handler_fn err_fn;
  void *err_data;
  int state;
  int drop;
  int get_pending;
  void (*done)(rx_dispatcher *d, void *arg);
  void *done_arg;
  uint64_t bus_dropped; /* the bus side's drops */
  /* The ring between the loops; head and tail atomic. */
  rx_event **ring;
  size_t qcap;
  size_t head, tail;
  rx_task proc_task, room_task, done_task;
  unsigned proc_sched, room_sched; /* atomic */
  unsigned bus_done, drop_ring;    /* atomic: set by the bus side */
  int done_posted;                 /* the processor's */
  struct rx_dispatcher_metrics m;  /* the chain runner's */
};

static void free_error(void *p) {
  struct rx_bus_error *e = p;
  rx_event_unref(e->original);
  free(e);
}

static void failure(rx_dispatcher *d, rx_event *ev, int err) {
  d->m.failures++;
  struct rx_bus_error *pe = malloc(sizeof(*pe));
  rx_event *e = NULL;
  if (pe == NULL) {
    d->m.error_failures++; /* out of memory: counted, as promised */
    return;
  }
  pe->error = err;
  pe->original = rx_event_ref(ev);
  if (rx_event_new(&e, ERROR_NAME, 0, pe, free_error) != 0) {
    free_error(pe);
    d->m.error_failures++;
    return;
  }
  if (d->err_fn != NULL) {
    if (d->err_fn(d, e, d->err_data) < 0) {
      d->m.error_failures++;
      rx_bus_post(d->bus, e); /* the default listener keeps it */
    }
  } else {
    d->m.unhandled++;
    rx_bus_post(d->bus, e);
  }
  rx_event_unref(e);
}

static void run_chain(rx_dispatcher *d, rx_event *ev) {
  const char *name = rx_event_name(ev);
  for (size_t i = 0; i < d->nh; i++) {
    struct handler *h = &d->h[i];
    if (h->name != NULL && strcmp(h->name, name) != 0)
      continue;
    int rc = h->fn(d, ev, h->data);
    if (rc > 0)
      continue;
    if (rc == 0)
      d->m.stopped++;
    else
      failure(d, ev, rc);
    break;
  }
  d->m.handled++;
}

static int accept_event(const rx_event *ev, void *data) {
  rx_dispatcher *d = data;
  if (d->state != RUNNING)
    return 0;
  /* Its own error events come back only to a handler that asks for them. */
  return d->handles_error || strcmp(rx_event_name(ev), ERROR_NAME) != 0;
}

static void on_event(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  run_chain(data, ev);
}

/* ---------------------------------------------------------------------------
 * The ring and the two tasks.
 */

static size_t ring_used(rx_dispatcher *d) {
  return __atomic_load_n(&d->tail, __ATOMIC_SEQ_CST) -
         __atomic_load_n(&d->head, __ATOMIC_ACQUIRE);
}

static void wake_proc(rx_dispatcher *d) {
  if (__atomic_exchange_n(&d->proc_sched, 1, __ATOMIC_SEQ_CST) == 0)
    rx_loop_post(d->proc, &d->proc_task);
}

static void pump(rx_dispatcher *d);

static void on_get(rx_listener *l, rx_event *ev, int status, void *data) {
  (void)l;
  rx_dispatcher *d = data;
  d->get_pending = 0;
  if (status != 0)
    return;
  size_t t = d->tail;
  d->ring[t % d->qcap] = ev;
  __atomic_store_n(&d->tail, t + 1, __ATOMIC_SEQ_CST);
  pump(d);
}

static void bus_side_done(rx_dispatcher *d) {
  if (d->l != NULL && rx_listener_bus(d->l) != NULL)
    rx_bus_remove(d->bus, d->l);
  __atomic_store_n(&d->bus_done, 1, __ATOMIC_SEQ_CST);
  wake_proc(d);
}

/* Bus side: moves events from the listener into the ring's free room. */
static void pump(rx_dispatcher *d) {
  size_t moved = 0;
  rx_event *ev;
  /* A get answers into room it saw when it was asked: take it back before
   * filling that room here. */
  if (d->get_pending) {
    rx_listener_cancel_get(d->l);
    d->get_pending = 0;
  }
  while (ring_used(d) < d->qcap && rx_listener_try_get(d->l, &ev) == 0) {
    size_t t = d->tail;
    d->ring[t % d->qcap] = ev;
    __atomic_store_n(&d->tail, t + 1, __ATOMIC_SEQ_CST);
    moved++;
  }
  if (moved != 0 || d->state == STOPPING)
    wake_proc(d);
  if (d->state == STOPPING) {
    struct rx_listener_metrics lm;
    rx_listener_metrics(d->l, &lm);
    if (lm.depth == 0 && !__atomic_load_n(&d->bus_done, __ATOMIC_RELAXED))
      bus_side_done(d);
    return;
  }
  if (!d->get_pending && ring_used(d) < d->qcap &&
      rx_listener_get(d->l, on_get, d, 0) == 0)
    d->get_pending = 1;
}

static void room_task(rx_loop *loop, rx_task *t) {
  (void)loop;
  rx_dispatcher *d = t->data;
  __atomic_store_n(&d->room_sched, 0, __ATOMIC_SEQ_CST);
  if (d->state == RUNNING || d->state == STOPPING)
    pump(d);
}

static void done_task(rx_loop *loop, rx_task *t) {
  (void)loop;
  rx_dispatcher *d = t->data;
  d->state = STOPPED;
  if (d->done != NULL)
    d->done(d, d->done_arg);
}

/* Processor side: runs (or drops) what the ring holds. */
static void proc_task(rx_loop *loop, rx_task *t) {
  (void)loop;
  rx_dispatcher *d = t->data;
  __atomic_exchange_n(&d->proc_sched, 0, __ATOMIC_SEQ_CST);
  size_t h = d->head, popped = 0;
  while (h != __atomic_load_n(&d->tail, __ATOMIC_SEQ_CST)) {
    rx_event *ev = d->ring[h % d->qcap];
    if (__atomic_load_n(&d->drop_ring, __ATOMIC_ACQUIRE)) {
      d->m.dropped++;
    } else {
      run_chain(d, ev);
    }
    rx_event_unref(ev);
    __atomic_store_n(&d->head, ++h, __ATOMIC_RELEASE);
    popped++;
  }
  if (__atomic_load_n(&d->bus_done, __ATOMIC_SEQ_CST)) {
    if (h == __atomic_load_n(&d->tail, __ATOMIC_SEQ_CST) && !d->done_posted) {
      d->done_posted = 1;
      rx_loop_post(rx_bus_loop(d->bus), &d->done_task);
    }
    return;
  }
  if (popped != 0 &&
      __atomic_exchange_n(&d->room_sched, 1, __ATOMIC_SEQ_CST) == 0)
    rx_loop_post(rx_bus_loop(d->bus), &d->room_task);
}

/* ---------------------------------------------------------------------------
 * The API.
 */

int rx_dispatcher_new(rx_dispatcher **dp, rx_bus *bus,
                      const struct rx_dispatcher_options *o) {
  if (dp == NULL || bus == NULL)
    return -EINVAL;
  rx_dispatcher *d = calloc(1, sizeof(*d));
  if (d == NULL)
    return -ENOMEM;
  d->bus = bus;
  d->capacity = o != NULL && o->capacity != 0 ? o->capacity : DEFAULT_CAPACITY;
  if (o != NULL && o->processor != NULL && o->processor != rx_bus_loop(bus)) {
    d->proc = o->processor;
    d->qcap = o->queue != 0 ? o->queue : DEFAULT_QUEUE;
    d->ring = calloc(d->qcap, sizeof(rx_event *));
    if (d->ring == NULL) {
      free(d);
      return -ENOMEM;
    }
  }
  d->proc_task.fn = proc_task;
  d->proc_task.data = d;
  d->room_task.fn = room_task;
  d->room_task.data = d;
  d->done_task.fn = done_task;
  d->done_task.data = d;
  rx__bus_hold(bus, 1);
  *dp = d;
  return 0;
}

int rx_dispatcher_on(rx_dispatcher *d, const char *name, rx_handler_fn fn,
                     void *data) {
  if (d == NULL || fn == NULL || (name != NULL && name[0] == '\0'))
    return -EINVAL;
  if (d->state != IDLE)
    return -EBUSY;
  char *copy = NULL;
  if (name != NULL && (copy = strdup(name)) == NULL)
    return -ENOMEM;
  struct handler *h = realloc(d->h, (d->nh + 1) * sizeof(*h));
  if (h == NULL) {
    free(copy);
    return -ENOMEM;
  }
  d->h = h;
  d->h[d->nh++] = (struct handler){copy, fn, data};
  if (name != NULL && strcmp(name, ERROR_NAME) == 0)
    d->handles_error = 1;
  return 0;
}

int rx_dispatcher_on_error(rx_dispatcher *d, rx_handler_fn fn, void *data) {
  if (d == NULL)
    return -EINVAL;
  d->err_fn = fn;
  d->err_data = data;
  return 0;
}

int rx_dispatcher_start(rx_dispatcher *d) {
  if (d == NULL)
    return -EINVAL;
  if (d->state != IDLE)
    return -EBUSY;
  /* The names of the chains, unless a catch-all handler wants them all. */
  const char **names = calloc(d->nh + 1, sizeof(char *));
  if (names == NULL)
    return -ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < d->nh; i++) {
    if (d->h[i].name == NULL) {
      n = 0;
      break;
    }
    size_t j = 0;
    while (j < n && strcmp(names[j], d->h[i].name) != 0)
      j++;
    if (j == n)
      names[n++] = d->h[i].name;
  }
  struct rx_listener_options lo = {0};
  lo.names = names;
  lo.n_names = d->nh == 0 ? 0 : n;
  lo.filter = accept_event;
  lo.filter_data = d;
  lo.capacity = d->capacity;
  lo.policy = RX_BUS_BLOCK;
  if (d->proc == NULL) {
    lo.cb = on_event;
    lo.data = d;
  }
  int rc = rx_listener_new(&d->l, &lo);
  free(names);
  if (rc != 0)
    return rc;
  rc = rx_bus_add(d->bus, d->l);
  if (rc != 0) {
    rx_listener_free(d->l);
    d->l = NULL;
    return rc;
  }
  d->state = RUNNING;
  if (d->proc != NULL)
    pump(d);
  return 0;
}

int rx_dispatcher_stop(rx_dispatcher *d, int drop,
                       void (*done)(rx_dispatcher *d, void *arg), void *arg) {
  if (d == NULL)
    return -EINVAL;
  if (d->state != RUNNING)
    return -EALREADY;
  d->done = done;
  d->done_arg = arg;
  d->drop = drop != 0;
  if (d->proc == NULL) {
    d->state = STOPPING; /* the filter refuses from now on */
    rx_event *ev;
    if (drop)
      d->m.dropped += (uint64_t)rx_listener_clear(d->l, NULL, NULL);
    else
      while (rx_listener_try_get(d->l, &ev) == 0) {
        run_chain(d, ev);
        rx_event_unref(ev);
      }
    rx_bus_remove(d->bus, d->l);
    d->state = STOPPED;
    if (done != NULL)
      done(d, arg);
    return 0;
  }
  d->state = STOPPING;
  if (d->get_pending) {
    rx_listener_cancel_get(d->l);
    d->get_pending = 0;
  }
  if (drop) {
    d->bus_dropped += (uint64_t)rx_listener_clear(d->l, NULL, NULL);
    __atomic_store_n(&d->drop_ring, 1, __ATOMIC_RELEASE);
    bus_side_done(d);
  } else {
    pump(d);
  }
  return 0;
}

int rx_dispatcher_free(rx_dispatcher *d) {
  if (d == NULL)
    return -EINVAL;
  if (d->state == RUNNING || d->state == STOPPING)
    return -EBUSY;
  rx_listener_free(d->l);
  for (size_t i = 0; i < d->nh; i++)
    free(d->h[i].name);
  free(d->h);
  free(d->ring);
  rx__bus_hold(d->bus, -1);
  free(d);
  return 0;
}

int rx_dispatcher_metrics(const rx_dispatcher *d,
                          struct rx_dispatcher_metrics *m) {
  if (d == NULL || m == NULL)
    return -EINVAL;
  *m = d->m;
  m->dropped += d->bus_dropped;
  return 0;
}

rx_listener *rx_dispatcher_listener(rx_dispatcher *d) {
  return d != NULL ? d->l : NULL;
}
