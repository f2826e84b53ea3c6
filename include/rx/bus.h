/*
 * rx/bus.h - the event bus: reference-counted named events, listeners with
 * bounded FIFOs and history, publishing from the loop's thread or from any
 * thread, and a dispatcher that runs handler chains. Library librx-services
 * (pkg-config rx-services); it uses only rx.h. docs/bus.md is the guide.
 *
 * Conventions are rx.h's: 0 (or a count) on success, a negative errno on
 * failure; NULL is accepted for every pointer argument (-EINVAL, or nothing
 * for a void function, 0 or NULL for a getter). A bus, its listeners and its
 * dispatchers belong to the thread that runs the bus's loop. Exactly these
 * may be called from any thread: rx_event_new(), rx_event_ref(),
 * rx_event_unref() and the event getters, rx_bus_post() and
 * rx_bus_post_wait().
 */
#ifndef RX_BUS_H
#define RX_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "rx.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RX_SERVICES_BUILDING) && defined(__GNUC__)
#define RX_SERVICES_EXPORT __attribute__((visibility("default")))
#else
#define RX_SERVICES_EXPORT
#endif

typedef struct rx_event rx_event;
typedef struct rx_bus rx_bus;
typedef struct rx_listener rx_listener;
typedef struct rx_bus_waiter rx_bus_waiter;
typedef struct rx_dispatcher rx_dispatcher;

/* ---------------------------------------------------------------------------
 * Events: a name, a timestamp and a payload, reference counted. One event
 * published to N listeners is never copied: each holds a reference.
 */

/* Frees a payload when the last reference to its event goes. */
typedef void (*rx_event_free_fn)(void *payload);

/* Makes an event holding one reference: `name` is copied (1 to 255 bytes),
 * `time` is the timestamp (CLOCK_MONOTONIC ns; 0: now), `payload` is handed
 * to `free_payload` (may be NULL) when the last reference goes. 0, -EINVAL,
 * -ENOMEM (the payload then still belongs to the caller). Thread-safe. */
RX_SERVICES_EXPORT int rx_event_new(rx_event **ev, const char *name,
                                    int64_t time, void *payload,
                                    rx_event_free_fn free_payload);
/* One more reference; returns `ev`. Thread-safe. */
RX_SERVICES_EXPORT rx_event *rx_event_ref(rx_event *ev);
/* One fewer; the last frees the event and its payload. Thread-safe. */
RX_SERVICES_EXPORT void rx_event_unref(rx_event *ev);
RX_SERVICES_EXPORT const char *rx_event_name(const rx_event *ev);
RX_SERVICES_EXPORT int64_t rx_event_time(const rx_event *ev);
RX_SERVICES_EXPORT void *rx_event_payload(const rx_event *ev);
/* The current reference count (for tests and assertions). */
RX_SERVICES_EXPORT unsigned rx_event_refs(const rx_event *ev);

/* ---------------------------------------------------------------------------
 * The bus.
 */

struct rx_bus_options {
  size_t default_capacity; /* the default listener's FIFO; 0: 1024 */
  size_t default_history;  /* its history ring; 0: none */
  size_t post_limit;       /* events posted from other threads and not yet
                              delivered, at most; 0: 4096 */
};

/* Makes a bus on `loop` (`opts` may be NULL), on the thread that runs the
 * loop (rx_bus_post_wait() refuses that thread). -EINVAL, -ENOMEM. */
RX_SERVICES_EXPORT int rx_bus_new(rx_bus **bus, rx_loop *loop,
                                  const struct rx_bus_options *opts);
/* Removes every listener (clearing them, as rx_bus_remove()) and frees the
 * bus. -EBUSY, the bus untouched, while events posted from other threads are
 * still on their way through the loop's queue (stop the producers, run the
 * loop once, free again), while a dispatcher is attached, or from inside one
 * of the bus's callbacks. */
RX_SERVICES_EXPORT int rx_bus_free(rx_bus *bus);
RX_SERVICES_EXPORT rx_loop *rx_bus_loop(const rx_bus *bus);

/* ---------------------------------------------------------------------------
 * Listeners.
 */

/* What a full listener does with one more event. */
enum {
  RX_BUS_DROP_OLDEST = 0, /* the oldest queued event goes (counted) */
  RX_BUS_DROP_NEW = 1,    /* the new event is not taken (counted) */
  RX_BUS_FAIL = 2,        /* the publish fails: -ENOBUFS, delivered nowhere */
  RX_BUS_BLOCK = 3,       /* the publisher waits: -EAGAIN on the loop's
                             thread (rx_bus_publish_wait() gives a callback
                             per freed slot); from other threads, posts
                             queue up to the post limit, then
                             rx_bus_post_wait() sleeps */
};

/* Nonzero to accept `ev`. Runs on the loop's thread inside a publish; it
 * must not call into the bus. */
typedef int (*rx_listener_filter_fn)(const rx_event *ev, void *data);
/* Consumes one event (borrowed: take rx_event_ref() to keep it). Runs on the
 * loop's thread, from a pending callback; may publish, add and remove
 * listeners, this one included. */
typedef void (*rx_listener_cb)(rx_listener *l, rx_event *ev, void *data);
/* rx_listener_get()'s answer: an event (the callee's reference to keep or
 * unref) and 0, or NULL and -ETIMEDOUT (the deadline passed) or -ECANCELED
 * (the listener was removed or freed). */
typedef void (*rx_listener_get_cb)(rx_listener *l, rx_event *ev, int status,
                                   void *data);

struct rx_listener_options {
  const char *const *names; /* the names it takes; NULL or n_names 0: all */
  size_t n_names;
  rx_listener_filter_fn filter; /* after the names; NULL: accept */
  void *filter_data;
  size_t capacity;   /* FIFO; 0: 256 */
  int policy;        /* RX_BUS_DROP_OLDEST ... RX_BUS_BLOCK */
  size_t history;    /* history ring; 0: none */
  rx_listener_cb cb; /* consume by callback; NULL: pull (try_get, get) */
  void *data;        /* for cb */
};

/* Makes a listener (not yet on a bus): names are copied; the FIFO and the
 * history are allocated here, so that adding it cannot fail for memory.
 * -EINVAL for a bad policy or a name that is empty or longer than 255 bytes,
 * -ENOMEM. */
RX_SERVICES_EXPORT int rx_listener_new(rx_listener **l,
                                       const struct rx_listener_options *opts);
/* Frees a listener, removing it from its bus first. Inside its own
 * callback, the memory goes when the callback returns. */
RX_SERVICES_EXPORT void rx_listener_free(rx_listener *l);

/* Registers `l`: it sees the events published after this call. -EALREADY
 * when it is on this bus, -EBUSY when on another. */
RX_SERVICES_EXPORT int rx_bus_add(rx_bus *bus, rx_listener *l);
/* Unregisters `l` and clears it (its queued events are dropped; the history
 * stays). Its waiting publishers are woken, a pending get is answered with
 * -ECANCELED. -ENOENT when it is not on this bus, -EPERM for the default
 * listener. */
RX_SERVICES_EXPORT int rx_bus_remove(rx_bus *bus, rx_listener *l);
/* The default listener: every event, a bounded FIFO (drop oldest). It is
 * never removed; rx_bus_set_default() turns it off (1: on, 0: off). */
RX_SERVICES_EXPORT rx_listener *rx_bus_default(rx_bus *bus);
RX_SERVICES_EXPORT int rx_bus_set_default(rx_bus *bus, int on);

/* Scoped listening: adds the `n` listeners, runs fn(arg), removes them
 * (clearing them) and returns fn's result. If one cannot be added, those
 * already added are removed and its error returned; fn does not run. */
RX_SERVICES_EXPORT int rx_bus_listen(rx_bus *bus, rx_listener *const *ls,
                                     size_t n, int (*fn)(void *arg), void *arg);

/* Takes the oldest queued event: 0 and *ev (a reference for the caller), or
 * -EAGAIN when empty. Frees a slot (see RX_BUS_BLOCK). */
RX_SERVICES_EXPORT int rx_listener_try_get(rx_listener *l, rx_event **ev);
/* Asks for one event: `cb` runs on the loop once, with the oldest event
 * (now if one is queued, from a pending callback), or with -ETIMEDOUT when
 * `timeout` ns (> 0; 0: none) pass first. -EBUSY while another get is
 * pending, -EINVAL for a callback listener, -ENOENT when not on a bus. */
RX_SERVICES_EXPORT int rx_listener_get(rx_listener *l, rx_listener_get_cb cb,
                                       void *data, int64_t timeout);
/* Withdraws a pending get without calling it: 0, or -ENOENT if none. */
RX_SERVICES_EXPORT int rx_listener_cancel_get(rx_listener *l);
/* Empties the FIFO: each drained event, oldest first, goes to each(ev, arg)
 * with its reference (NULL each: unreffed). Returns how many. The history
 * stays. */
RX_SERVICES_EXPORT long rx_listener_clear(rx_listener *l,
                                          void (*each)(rx_event *ev, void *arg),
                                          void *arg);
/* The history: events accepted since the listener was made, the last
 * `history` of them. Entry `i` (0 = oldest) borrowed, or NULL. */
RX_SERVICES_EXPORT size_t rx_listener_history_count(const rx_listener *l);
RX_SERVICES_EXPORT rx_event *rx_listener_history(const rx_listener *l,
                                                 size_t i);
RX_SERVICES_EXPORT rx_bus *rx_listener_bus(const rx_listener *l);

struct rx_listener_metrics {
  size_t depth;      /* queued now */
  size_t high_water; /* most ever queued */
  size_t capacity;
  uint64_t accepted;       /* taken into the FIFO */
  uint64_t consumed;       /* taken out by a callback, get or try_get */
  uint64_t cleared;        /* drained by clear or remove */
  uint64_t dropped_oldest; /* RX_BUS_DROP_OLDEST */
  uint64_t dropped_new;    /* RX_BUS_DROP_NEW */
  uint64_t failed;         /* RX_BUS_FAIL: publishes it made fail (each full
                              FAIL listener that wanted the event counts it) */
  uint64_t blocked; /* RX_BUS_BLOCK: publishes it made wait (unless a FAIL
                       listener failed them), posts it held */
  size_t waiting;   /* publishers waiting for it now */
  uint64_t wakeups; /* waiting publishers woken (one per slot) */
};
RX_SERVICES_EXPORT int rx_listener_metrics(const rx_listener *l,
                                           struct rx_listener_metrics *m);

/* ---------------------------------------------------------------------------
 * Publishing.
 */

/* On the loop's thread: hands `ev` to every listener whose names, then
 * filter, accept it, once each (the caller keeps its reference). All or
 * nothing: -ENOBUFS when a full RX_BUS_FAIL listener wants it, -EAGAIN when
 * a full RX_BUS_BLOCK listener does; nothing is delivered then. Callback
 * listeners run later, from a pending callback of the loop. */
RX_SERVICES_EXPORT int rx_bus_publish(rx_bus *bus, rx_event *ev);

/* A publisher that waits for room (loop's thread). */
struct rx_bus_waiter {
  void (*cb)(rx_bus *bus, rx_bus_waiter *w); /* set before use */
  void *data;
  rx_bus_waiter *_next;
  rx_listener *_on; /* the full listener it waits for */
  int _ready;       /* woken, its callback due */
};
/* rx_bus_publish(), and on -EAGAIN queues `w` on the full listener: w->cb
 * runs once, from a pending callback, when that listener frees a slot (one
 * waiter per freed slot, in order); publish again then. -EBUSY when `w` is
 * already waiting. */
RX_SERVICES_EXPORT int rx_bus_publish_wait(rx_bus *bus, rx_event *ev,
                                           rx_bus_waiter *w);
/* Withdraws a waiting `w`: 0, or -ENOENT. */
RX_SERVICES_EXPORT int rx_bus_waiter_cancel(rx_bus_waiter *w);

/* From any thread (the loop's too): queues `ev` for the bus through the
 * loop's MPSC queue (rx_loop_post(), no lock, no allocation); the loop
 * delivers it as rx_bus_publish() would, exactly once per matching listener,
 * in post order for posts from one thread. The bus takes a reference until
 * delivery. -EAGAIN when `post_limit` events are on their way; -EBUSY while
 * `ev` itself is (one event travels to one bus at a time);
 * -ESHUTDOWN from rx_loop_post(). A full RX_BUS_BLOCK listener holds the
 * delivery of every later post until it has room; a full RX_BUS_FAIL
 * listener makes the event go nowhere (counted as failed there). */
RX_SERVICES_EXPORT int rx_bus_post(rx_bus *bus, rx_event *ev);
/* rx_bus_post() from a thread that is not the loop's, sleeping while
 * `post_limit` events are on their way: each event the loop finishes wakes
 * one sleeping poster. -EDEADLK on the loop's own thread. */
RX_SERVICES_EXPORT int rx_bus_post_wait(rx_bus *bus, rx_event *ev);

struct rx_bus_metrics {
  uint64_t published;    /* publishes and posts delivered */
  uint64_t posted;       /* posts taken (any thread) */
  uint64_t post_refused; /* posts refused with -EAGAIN (limit reached) */
  uint64_t post_sleeps;  /* times rx_bus_post_wait() slept */
  size_t post_sleeping;  /* posters asleep in it now */
  uint64_t post_wakeups; /* sleeping posters woken, one per freed slot */
  uint64_t post_failed;  /* posts a full RX_BUS_FAIL listener refused */
  size_t inflight;       /* posts on their way now */
  size_t backlog;        /* of them, held by a full RX_BUS_BLOCK listener */
  size_t listeners;
};
RX_SERVICES_EXPORT int rx_bus_metrics(const rx_bus *bus,
                                      struct rx_bus_metrics *m);

/* ---------------------------------------------------------------------------
 * The dispatcher: handler chains per event name, run on the bus's loop or
 * on a processor loop of another thread.
 */

/* A handler: > 0 to go on with the chain, 0 to stop it, a negative errno
 * for a failure (the chain stops and the error handler is given it). */
typedef int (*rx_handler_fn)(rx_dispatcher *d, rx_event *ev, void *data);

/* The payload of the events an error handler receives (name
 * "rx.bus.error"): the error and the original event (borrowed for as long
 * as the error event lives). */
struct rx_bus_error {
  int error;
  rx_event *original;
};

struct rx_dispatcher_options {
  size_t capacity;    /* its listener's FIFO (policy RX_BUS_BLOCK); 0: 1024 */
  rx_loop *processor; /* the loop that runs the handlers, on its own thread;
                         NULL: the bus's loop */
  size_t queue;       /* with a processor: the bounded queue between the
                         loops; 0: 256 */
};

/* Makes a dispatcher listening on `bus` for the names that have handlers.
 * Call on the bus's thread. -EINVAL, -ENOMEM. */
RX_SERVICES_EXPORT int rx_dispatcher_new(rx_dispatcher **d, rx_bus *bus,
                                         const struct rx_dispatcher_options *o);
/* Appends `fn` to the chain of `name` (NULL: every event, run before the
 * named chain). Before rx_dispatcher_start() only. */
RX_SERVICES_EXPORT int rx_dispatcher_on(rx_dispatcher *d, const char *name,
                                        rx_handler_fn fn, void *data);
/* The error handler: receives an "rx.bus.error" event for each failure; its
 * own failure (< 0) is counted (error_failures) and the error event put on
 * the bus (the default listener keeps it), never dropped silently. */
RX_SERVICES_EXPORT int rx_dispatcher_on_error(rx_dispatcher *d,
                                              rx_handler_fn fn, void *data);
/* Registers its listener: events published from now on are handled. */
RX_SERVICES_EXPORT int rx_dispatcher_start(rx_dispatcher *d);
/* Stops taking events. With `drop` 0, what is queued (in its listener and
 * between the loops) is handled first; else dropped, counted. On the bus's
 * thread; with a processor, the drain completes on the processor's loop and
 * `done` (may be NULL) runs on the bus's loop when it has. */
RX_SERVICES_EXPORT int
rx_dispatcher_stop(rx_dispatcher *d, int drop,
                   void (*done)(rx_dispatcher *d, void *arg), void *arg);
/* Frees a stopped dispatcher (-EBUSY while running or draining). */
RX_SERVICES_EXPORT int rx_dispatcher_free(rx_dispatcher *d);

struct rx_dispatcher_metrics {
  uint64_t handled;        /* events run through their chain */
  uint64_t stopped;        /* chains stopped by a handler's 0 */
  uint64_t failures;       /* handler failures given to the error handler */
  uint64_t error_failures; /* failures of the error handler */
  uint64_t unhandled;      /* failures with no error handler (published) */
  uint64_t dropped;        /* dropped by rx_dispatcher_stop(d, 1, ...) */
};
/* Read on the processor's thread, or after the drain completed. */
RX_SERVICES_EXPORT int rx_dispatcher_metrics(const rx_dispatcher *d,
                                             struct rx_dispatcher_metrics *m);
RX_SERVICES_EXPORT rx_listener *rx_dispatcher_listener(rx_dispatcher *d);

#ifdef __cplusplus
}
#endif

#endif /* RX_BUS_H */
