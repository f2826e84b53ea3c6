/*
 * ids.c - handles and timeouts by integer id (include/rx/ids.h), on rx's
 * public API alone.
 *
 * Design. Each add allocates one entry, which holds the rx watcher it runs
 * (an rx_io for a handle, an rx_timer for a timeout) and is found by id in
 * a chained hash table (ids are consecutive, so `id & mask` spreads them
 * evenly; the table doubles when it holds as many entries as buckets).
 * One mutex guards the tables, each entry's user-visible state (interest,
 * period, removed) and a work list; it is never held while a callback or a
 * free function runs.
 *
 * The six calls never touch an rx watcher: they edit the entry under the
 * lock and queue it on the work list, which only the loop's thread drains
 * (apply(), from a prepare watcher before every wait and from an rx_async
 * callback). That is what makes them callable from any thread, and what
 * makes a mask change lazy: apply() compares the interest with what the
 * watcher was started with, so an interest flipped to 0 and back between
 * two waits costs nothing. A call from another thread also sends the
 * rx_async, so that a loop asleep in the kernel wakes for it. The loop's
 * thread is the one that last ran apply() (or made the rx_ids); both
 * that record and the decision to send are made under the lock, so a loop
 * that moved to another thread is never left asleep: either its first
 * apply() follows the call, and sees the work, or the call sees the new
 * owner and sends.
 *
 * Removal takes the id out of the table at once (a second remove finds
 * nothing: -ENOENT) and marks the entry removed; the callbacks check that
 * mark under the lock before they start the user's callback, so none starts
 * after the remove returned. The entry itself stays queued until apply()
 * stops its watcher and, with the lock dropped, runs its `ff` and frees it:
 * a clean stack, after the current callback, as libvirt requires. An entry
 * whose callback is still running (the remove came from another thread, or
 * from a nested rx_run() inside the callback) waits for a later apply().
 *
 * Timeouts are one-shot rx timers restarted after each callback returns,
 * with the loop's clock refreshed first: the period is measured from the
 * end of the callback (as libvirt's loops measure it from their dispatch),
 * so no fire comes early even after a slow callback or a late wake-up, and
 * a late loop never fires a burst to catch up. A period of 0 is no timer
 * at all: apply() feeds the timer's event at every iteration, which also
 * keeps the loop from blocking, as libvirt's poll(2) with a 0 timeout does.
 */
#include "rx/ids.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

enum { KIND_HANDLE, KIND_TIMEOUT };

#define IDS_RW (RX_IDS_READ | RX_IDS_WRITE)
#define IDS_ALL (RX_IDS_READ | RX_IDS_WRITE | RX_IDS_ERROR | RX_IDS_HANGUP)

struct ent {
  struct ent *hnext; /* hash chain, while the id is registered */
  struct ent *wnext; /* work list, while queued */
  rx_ids *ids;
  int id;
  unsigned char kind;
  unsigned char queued;  /* on the work list */
  unsigned char removed; /* the id is gone; the entry awaits apply() */
  unsigned char busy;    /* its callback is running (loop thread) */
  void *opaque;
  rx_ids_free_fn ff;
  union {
    struct {
      rx_io io;
      rx_ids_handle_cb cb;
      int fd;
      int want;   /* the interest the user asked for, RX_IDS_* */
      int armed;  /* the interest the rx_io was started with (0: stopped) */
      int failed; /* RX_ERROR was reported: silent until the next update */
    } h;
    struct {
      rx_timer timer;
      rx_ids_timeout_cb cb;
      int ms;       /* -1: disabled */
      unsigned gen; /* bumped by each update */
      int restart;  /* an update waits for apply() */
    } t;
  } u;
};

struct table {
  struct ent **b;
  size_t mask; /* buckets - 1; b == NULL while empty */
  size_t n;
};

struct rx_ids {
  rx_loop *loop;
  pthread_mutex_t lock;
  struct table tab[2];   /* KIND_HANDLE, KIND_TIMEOUT */
  long long next[2];     /* the next id of each kind */
  struct ent *work;      /* the work list, FIFO: ffs run in remove order */
  struct ent **work_end; /* its last `wnext` */
  pthread_t owner;       /* the loop's thread, as far as known */
  int closed;            /* calls return -ESHUTDOWN */
  /* Loop thread only: */
  int depth;     /* callbacks and ffs of this rx_ids on the stack */
  int torn_down; /* teardown() ran */
  rx_prepare prepare;
  rx_async async;
  rx_cleanup cleanup;
};

/* ---------------------------------------------------------------------------
 * The id tables. Caller holds the lock.
 */

static struct ent *table_find(const struct table *t, int id) {
  if (t->b == NULL)
    return NULL;
  for (struct ent *e = t->b[(size_t)id & t->mask]; e != NULL; e = e->hnext)
    if (e->id == id)
      return e;
  return NULL;
}

/* Makes room for one more entry: 0 or -ENOMEM (the table unchanged). */
static int table_reserve(struct table *t) {
  if (t->b != NULL && t->n <= t->mask)
    return 0;
  size_t nb = t->b == NULL ? 16 : 2 * (t->mask + 1);
  struct ent **b = calloc(nb, sizeof(*b));
  if (b == NULL)
    return -ENOMEM;
  if (t->b != NULL) {
    for (size_t i = 0; i <= t->mask; i++) {
      struct ent *e = t->b[i];
      while (e != NULL) {
        struct ent *next = e->hnext;
        e->hnext = b[(size_t)e->id & (nb - 1)];
        b[(size_t)e->id & (nb - 1)] = e;
        e = next;
      }
    }
    free(t->b);
  }
  t->b = b;
  t->mask = nb - 1;
  return 0;
}

static void table_insert(struct table *t, struct ent *e) {
  struct ent **head = &t->b[(size_t)e->id & t->mask];
  e->hnext = *head;
  *head = e;
  t->n++;
}

static struct ent *table_take(struct table *t, int id) {
  if (t->b == NULL)
    return NULL;
  for (struct ent **p = &t->b[(size_t)id & t->mask]; *p != NULL;
       p = &(*p)->hnext) {
    struct ent *e = *p;
    if (e->id == id) {
      *p = e->hnext;
      e->hnext = NULL;
      t->n--;
      return e;
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------
 * The work list and the wake-up. Caller holds the lock.
 */

static void queue(rx_ids *ids, struct ent *e) {
  if (e->queued)
    return;
  e->queued = 1;
  e->wnext = NULL;
  *ids->work_end = e;
  ids->work_end = &e->wnext;
}

/* Wakes the loop unless the caller is its thread, which runs apply()
 * before it next waits. Sent under the lock, so that teardown(), which sets
 * `closed` under it, follows every send it did not refuse. */
static void wake(rx_ids *ids) {
  if (!pthread_equal(ids->owner, pthread_self()))
    rx_async_send(ids->loop, &ids->async);
}

/* ---------------------------------------------------------------------------
 * The loop's side: callbacks and apply(). Loop thread only.
 */

/* Restarts a timeout's period from now. `*fresh`: the loop's clock was
 * already refreshed after the call that asked for this (apply() refreshes
 * it once for its whole batch). */
static void restart_timer(rx_ids *ids, struct ent *e, int *fresh) {
  rx_timer_stop(ids->loop, &e->u.t.timer);
  if (e->u.t.ms < 0)
    return;
  /* A 0 ms timer would wait for the wheel's next tick; fed, it runs in
   * this iteration, which then does not block. */
  if (e->u.t.ms == 0) {
    rx_feed_event(ids->loop, &e->u.t.timer, RX_TIMER);
    return;
  }
  /* Measured from now, not from the loop's cached time, which may be a
   * whole dispatch old: the period never starts before the call. */
  if (!*fresh) {
    rx_now_update(ids->loop);
    *fresh = 1;
  }
  rx_timer_set(&e->u.t.timer, RX_MSEC(e->u.t.ms), 0);
  rx_timer_start(ids->loop, &e->u.t.timer);
}

static void sync_handle(rx_ids *ids, struct ent *e) {
  int want = e->u.h.failed ? 0 : e->u.h.want & IDS_RW;
  if (want == e->u.h.armed)
    return;
  rx_io_stop(ids->loop, &e->u.h.io);
  e->u.h.armed = 0;
  if (want == 0)
    return;
  /* RX_IDS_READ and RX_IDS_WRITE are RX_READ and RX_WRITE. */
  int rc = rx_io_set(&e->u.h.io, e->u.h.fd, want);
  if (rc == 0)
    rc = rx_io_start(ids->loop, &e->u.h.io);
  if (rc == 0)
    e->u.h.armed = want;
  else /* e.g. -ENOMEM: the callback hears RX_IDS_ERROR */
    rx_feed_event(ids->loop, &e->u.h.io, RX_ERROR);
}

static void stop_entry(rx_ids *ids, struct ent *e) {
  if (e->kind == KIND_HANDLE)
    rx_io_stop(ids->loop, &e->u.h.io);
  else
    rx_timer_stop(ids->loop, &e->u.t.timer);
}

/* Runs the free functions of a list of stopped entries (linked by wnext)
 * and frees them; no lock held. */
static void finish(rx_ids *ids, struct ent *dead) {
  ids->depth++;
  while (dead != NULL) {
    struct ent *next = dead->wnext;
    if (dead->ff != NULL)
      dead->ff(dead->opaque);
    free(dead);
    dead = next;
  }
  ids->depth--;
}

/* Brings every queued entry's watcher in line with what the calls asked,
 * then runs the free functions of the removed ones. Again while those free
 * functions queued more work: this may run in the prepare watcher, the last
 * chance before the loop waits. */
static void apply(rx_ids *ids) {
  for (;;) {
    struct ent *dead = NULL, **dead_end = &dead;
    int fresh = 0;
    pthread_mutex_lock(&ids->lock);
    ids->owner = pthread_self();
    struct ent *e = ids->work;
    ids->work = NULL;
    ids->work_end = &ids->work;
    while (e != NULL) {
      struct ent *next = e->wnext;
      e->wnext = NULL;
      e->queued = 0;
      if (e->removed) {
        if (e->busy) {
          queue(ids, e); /* its callback is still on the stack */
        } else {
          stop_entry(ids, e);
          *dead_end = e;
          dead_end = &e->wnext;
        }
      } else if (e->kind == KIND_HANDLE) {
        sync_handle(ids, e);
      } else if (e->u.t.restart) {
        e->u.t.restart = 0;
        restart_timer(ids, e, &fresh);
      }
      e = next;
    }
    pthread_mutex_unlock(&ids->lock);
    if (dead == NULL)
      return;
    finish(ids, dead);
  }
}

static void handle_ready(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct ent *e = w->data;
  rx_ids *ids = e->ids;
  pthread_mutex_lock(&ids->lock);
  int events;
  if (revents & RX_ERROR) {
    /* rx has stopped the watcher: it stays so until the next update. */
    e->u.h.armed = 0;
    e->u.h.failed = 1;
    events = RX_IDS_ERROR;
  } else {
    /* The watcher may still hold an interest the user has since dropped
     * (applied lazily): report only what is wanted now. */
    events = revents & e->u.h.want & IDS_RW;
  }
  if (e->removed || events == 0) {
    pthread_mutex_unlock(&ids->lock);
    return;
  }
  rx_ids_handle_cb cb = e->u.h.cb;
  e->busy = 1;
  ids->depth++;
  pthread_mutex_unlock(&ids->lock);
  cb(e->id, e->u.h.fd, events, e->opaque);
  pthread_mutex_lock(&ids->lock);
  ids->depth--;
  e->busy = 0;
  pthread_mutex_unlock(&ids->lock);
}

static void timeout_fired(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct ent *e = w->data;
  rx_ids *ids = e->ids;
  pthread_mutex_lock(&ids->lock);
  /* An update not yet applied restarted the period: this expiry is of the
   * old one, and firing it could be early by the new one. */
  if (e->removed || e->u.t.restart || e->u.t.ms < 0) {
    pthread_mutex_unlock(&ids->lock);
    return;
  }
  unsigned gen = e->u.t.gen;
  e->busy = 1;
  ids->depth++;
  pthread_mutex_unlock(&ids->lock);
  e->u.t.cb(e->id, e->opaque);
  pthread_mutex_lock(&ids->lock);
  ids->depth--;
  e->busy = 0;
  /* Unless the callback removed or updated it (then apply() decides). A
   * 0 ms timeout fires again at the next iteration: from its prepare
   * watcher, as fed from here it could run again in this dispatch. */
  if (!e->removed && e->u.t.gen == gen) {
    if (e->u.t.ms == 0) {
      e->u.t.restart = 1;
      queue(ids, e);
    } else {
      int fresh = 0;
      restart_timer(ids, e, &fresh);
    }
  }
  pthread_mutex_unlock(&ids->lock);
}

static void prepare_cb(rx_loop *loop, rx_prepare *w, int revents) {
  (void)loop;
  (void)revents;
  apply(w->data);
}

static void async_cb(rx_loop *loop, rx_async *w, int revents) {
  (void)loop;
  (void)revents;
  apply(w->data);
}

/* Removes every entry, runs every ff and stops the internal watchers. */
static void teardown(rx_ids *ids) {
  if (ids->torn_down)
    return;
  ids->torn_down = 1;
  struct ent *dead = NULL, **dead_end = &dead;
  pthread_mutex_lock(&ids->lock);
  ids->closed = 1;
  /* Removed entries are all on the work list; live ones are in a table
   * (and perhaps on the list too: take the list first). */
  for (struct ent *e = ids->work, *next; e != NULL; e = next) {
    next = e->wnext;
    e->queued = 0;
    e->wnext = NULL;
    if (e->removed) {
      *dead_end = e;
      dead_end = &e->wnext;
    }
  }
  ids->work = NULL;
  ids->work_end = &ids->work;
  for (int k = 0; k < 2; k++) {
    struct table *t = &ids->tab[k];
    for (size_t i = 0; t->b != NULL && i <= t->mask; i++) {
      while (t->b[i] != NULL) {
        struct ent *e = t->b[i];
        t->b[i] = e->hnext;
        e->hnext = NULL;
        e->wnext = NULL;
        e->removed = 1;
        *dead_end = e;
        dead_end = &e->wnext;
      }
    }
    t->n = 0;
  }
  pthread_mutex_unlock(&ids->lock);
  for (struct ent *e = dead; e != NULL; e = e->wnext)
    stop_entry(ids, e);
  rx_ref(ids->loop);
  rx_ref(ids->loop);
  rx_prepare_stop(ids->loop, &ids->prepare);
  rx_async_stop(ids->loop, &ids->async);
  rx_cleanup_stop(ids->loop, &ids->cleanup);
  finish(ids, dead);
}

static void cleanup_cb(rx_loop *loop, rx_cleanup *w, int revents) {
  (void)loop;
  (void)revents;
  teardown(w->data);
}

/* ---------------------------------------------------------------------------
 * The public functions.
 */

int rx_ids_new(rx_ids **out, rx_loop *loop) {
  if (out == NULL || loop == NULL)
    return -EINVAL;
  rx_ids *ids = calloc(1, sizeof(*ids));
  if (ids == NULL)
    return -ENOMEM;
  int rc = -pthread_mutex_init(&ids->lock, NULL);
  if (rc != 0) {
    free(ids);
    return rc;
  }
  ids->loop = loop;
  ids->next[KIND_HANDLE] = ids->next[KIND_TIMEOUT] = 1;
  ids->work_end = &ids->work;
  ids->owner = pthread_self();
  rx_prepare_init(&ids->prepare, prepare_cb);
  ids->prepare.data = ids;
  /* Last among the prepare watchers, so that work queued by the others
   * before this wait is applied in it. */
  rx_prepare_set_priority(&ids->prepare, RX_MINPRI);
  rx_async_init(&ids->async, async_cb);
  ids->async.data = ids;
  rx_cleanup_init(&ids->cleanup, cleanup_cb);
  ids->cleanup.data = ids;
  if ((rc = rx_prepare_start(loop, &ids->prepare)) != 0 ||
      (rc = rx_async_start(loop, &ids->async)) != 0 ||
      (rc = rx_cleanup_start(loop, &ids->cleanup)) != 0) {
    rx_prepare_stop(loop, &ids->prepare);
    rx_async_stop(loop, &ids->async);
    pthread_mutex_destroy(&ids->lock);
    free(ids);
    return rc;
  }
  /* The service's own watchers do not keep rx_run() going; the entries'
   * watchers do. */
  rx_unref(loop);
  rx_unref(loop);
  *out = ids;
  return 0;
}

int rx_ids_free(rx_ids *ids) {
  if (ids == NULL)
    return -EINVAL;
  if (ids->depth > 0)
    return -EBUSY;
  teardown(ids);
  for (int k = 0; k < 2; k++)
    free(ids->tab[k].b);
  pthread_mutex_destroy(&ids->lock);
  free(ids);
  return 0;
}

/* Registers a new entry of `e->kind` under a fresh id: the id, or a
 * negative errno with `e` freed. */
static int add(rx_ids *ids, struct ent *e, int active) {
  struct table *t = &ids->tab[e->kind];
  pthread_mutex_lock(&ids->lock);
  int rc = ids->closed                               ? -ESHUTDOWN
           : ids->next[e->kind] > (long long)INT_MAX ? -EOVERFLOW
                                                     : table_reserve(t);
  if (rc == 0) {
    e->id = (int)ids->next[e->kind]++;
    table_insert(t, e);
    if (active) {
      queue(ids, e);
      wake(ids);
    }
    rc = e->id;
  }
  pthread_mutex_unlock(&ids->lock);
  if (rc < 0)
    free(e);
  return rc;
}

int rx_ids_add_handle(rx_ids *ids, int fd, int events, rx_ids_handle_cb cb,
                      void *opaque, rx_ids_free_fn ff) {
  if (ids == NULL || cb == NULL || (events & ~IDS_ALL) != 0)
    return -EINVAL;
  if (fd < 0)
    return -EBADF;
  struct ent *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return -ENOMEM;
  e->ids = ids;
  e->kind = KIND_HANDLE;
  e->opaque = opaque;
  e->ff = ff;
  e->u.h.cb = cb;
  e->u.h.fd = fd;
  e->u.h.want = events;
  rx_io_init(&e->u.h.io, handle_ready, fd, RX_READ);
  e->u.h.io.data = e;
  return add(ids, e, (events & IDS_RW) != 0);
}

int rx_ids_add_timeout(rx_ids *ids, int ms, rx_ids_timeout_cb cb, void *opaque,
                       rx_ids_free_fn ff) {
  if (ids == NULL || cb == NULL || ms < -1)
    return -EINVAL;
  struct ent *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return -ENOMEM;
  e->ids = ids;
  e->kind = KIND_TIMEOUT;
  e->opaque = opaque;
  e->ff = ff;
  e->u.t.cb = cb;
  e->u.t.ms = ms;
  e->u.t.restart = ms >= 0;
  rx_timer_init(&e->u.t.timer, timeout_fired, 0, 0);
  e->u.t.timer.data = e;
  return add(ids, e, ms >= 0);
}

/* Finds a registered id of `kind` and locks: the entry, or NULL with *rc
 * set and the lock released. */
static struct ent *lookup(rx_ids *ids, int kind, int id, int *rc) {
  pthread_mutex_lock(&ids->lock);
  struct ent *e = ids->closed ? NULL : table_find(&ids->tab[kind], id);
  if (e == NULL) {
    *rc = ids->closed ? -ESHUTDOWN : -ENOENT;
    pthread_mutex_unlock(&ids->lock);
  }
  return e;
}

int rx_ids_update_handle(rx_ids *ids, int id, int events) {
  if (ids == NULL || id <= 0 || (events & ~IDS_ALL) != 0)
    return -EINVAL;
  int rc;
  struct ent *e = lookup(ids, KIND_HANDLE, id, &rc);
  if (e == NULL)
    return rc;
  e->u.h.want = events;
  e->u.h.failed = 0;
  /* Only a change from what the watcher holds needs the loop; a flip
   * back before the loop looked needs nothing more. */
  if ((events & IDS_RW) != e->u.h.armed) {
    queue(ids, e);
    wake(ids);
  }
  pthread_mutex_unlock(&ids->lock);
  return 0;
}

int rx_ids_update_timeout(rx_ids *ids, int id, int ms) {
  if (ids == NULL || id <= 0 || ms < -1)
    return -EINVAL;
  int rc;
  struct ent *e = lookup(ids, KIND_TIMEOUT, id, &rc);
  if (e == NULL)
    return rc;
  e->u.t.ms = ms;
  e->u.t.gen++;
  e->u.t.restart = 1;
  queue(ids, e);
  wake(ids);
  pthread_mutex_unlock(&ids->lock);
  return 0;
}

static int remove_id(rx_ids *ids, int kind, int id) {
  if (ids == NULL || id <= 0)
    return -EINVAL;
  pthread_mutex_lock(&ids->lock);
  struct ent *e = ids->closed ? NULL : table_take(&ids->tab[kind], id);
  int rc = e != NULL ? 0 : ids->closed ? -ESHUTDOWN : -ENOENT;
  if (e != NULL) {
    e->removed = 1;
    queue(ids, e);
    wake(ids);
  }
  pthread_mutex_unlock(&ids->lock);
  return rc;
}

int rx_ids_remove_handle(rx_ids *ids, int id) {
  return remove_id(ids, KIND_HANDLE, id);
}

int rx_ids_remove_timeout(rx_ids *ids, int id) {
  return remove_id(ids, KIND_TIMEOUT, id);
}
