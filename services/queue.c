/*
 * queue.c - bounded priority queues on an rx loop (include/rx/queue.h).
 *
 * The semantics are those of vlcp's CBQueue (sub-queues with priorities,
 * limits per sub-queue and in total, a full queue handing the producer
 * something to wait on, block/unblock, wait-until-empty), written for a
 * callback loop: the producer's "something to wait on" is a caller-owned
 * waiter whose callback runs once, and the queue is drained by the loop
 * itself, a budget of items per iteration.
 *
 * Layout. Every sub-queue is on the queue's list `subs` (any order). Those
 * that can give out an item (holding one and not blocked) are also on the
 * ready list, sorted by priority, highest first; the next item always
 * comes from the head of that list, and a sub-queue that still has items
 * afterwards goes back in at the end of its priority's group. So a higher
 * priority always wins and equal priorities take one item each in turn.
 * Insertion walks the group: O(sub-queues of that priority), which are few
 * (a keyed sub-queue is one entry however many keys it has).
 *
 * A sub-queue holds its items in lanes, each a growable ring of pointers:
 * one lane (lane0) for a plain sub-queue; for a keyed one, a lane per key
 * that has items, found through a chained hash table and linked in a
 * circular "turn" ring. The ring's head gives the next item and then moves
 * on one lane, so keys take turns exactly as sub-queues do. A keyed lane is
 * freed once empty, so that a stream of distinct keys does not hold memory;
 * lane0 keeps a small ring and gives back a large one when it empties.
 *
 * Consumption. The queue owns two loop watchers, active only while there
 * is something for it to do (an item to consume, or a waiter that may be
 * due): an rx_check at the queue's priority, whose callback consumes at
 * most `budget` items and then runs the waiters that are due, and an
 * rx_idle at RX_MINPRI whose callback does nothing. The check runs in every
 * iteration after the wait, alongside the loop's other callbacks, so a
 * queue that never empties takes `budget` items per iteration and every
 * other watcher still gets its turn; the idle only keeps that wait at zero
 * while work is left (a check alone would let the loop sleep with items
 * queued). An idle watcher alone would be the wrong consumer: it runs only
 * when nothing else is pending, so a busy loop would starve the queue. The
 * idle sits at the lowest priority so that it never holds back an idle
 * watcher of the application's (only the highest priority's idles run).
 * rx_async was the other candidate; it wakes across threads, which the
 * queue does not need, and costs an atomic per send.
 *
 * Waiters run only from that check callback, never from inside a call the
 * application made (a push, a clear, a pop), so no function here calls back
 * into the caller before it returns. A room waiter is kept on the list of
 * the sub-queue it was refused by, whichever limit refused it; it is due
 * when both that sub-queue and the queue have room. Each due waiter is
 * unlinked, then called: once per registration.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rx/queue.h"

#define DEFAULT_BUDGET 64
#define LANE_MIN 8   /* first ring size */
#define LANE_KEEP 64 /* lane0 keeps a ring this small when empty */
#define TABLE_MIN 16 /* first hash table size */

struct wlist {
  rx_queue_waiter *first, *last;
  rx_queue *q;
  int room; /* room waiters are counted in `waiting` */
};

struct lane {
  void **buf;
  size_t cap, head, len;
  uint64_t key;
  struct lane *hnext;         /* hash chain */
  struct lane *rnext, *rprev; /* the turn ring */
};

struct rx_subqueue {
  rx_queue *q;
  int priority;
  unsigned flags;
  size_t limit;
  int blocked;
  int busy;                   /* 1: being cleared, 2: being freed */
  int ready;                  /* on the ready list */
  rx_subqueue *next, *prev;   /* q->subs */
  rx_subqueue *rnext, *rprev; /* the ready list */
  struct lane lane0;          /* plain sub-queue */
  struct lane **table;        /* keyed: lanes with items, by key */
  size_t tsize, nlanes;
  struct lane *turn; /* keyed: the lane that gives the next item */
  struct wlist room, empty;
  struct rx_queue_stats st;
};

struct rx_queue {
  rx_loop *loop;
  struct rx_allocator a;
  rx_check check;
  rx_idle idle;
  rx_queue_consume_fn consume;
  rx_queue_drop_fn drop;
  void *data;
  size_t limit;
  unsigned budget;
  rx_subqueue *subs;
  rx_subqueue *ready_first, *ready_last;
  struct wlist empty;
  size_t nwaiters; /* every registered waiter, room and empty */
  int kick;        /* a waiter may be due: run the check */
  int running;     /* check and idle started */
  int in_cb;       /* inside one of the application's callbacks */
  struct rx_queue_stats st;
};

/* ---------------------------------------------------------------------------
 * Memory.
 */

static void *libc_alloc(void *ctx, size_t size) {
  (void)ctx;
  return malloc(size);
}
static void *libc_realloc(void *ctx, void *p, size_t old, size_t size) {
  (void)ctx;
  (void)old;
  return realloc(p, size);
}
static void libc_free(void *ctx, void *p, size_t size) {
  (void)ctx;
  (void)size;
  free(p);
}

static void *qalloc(const struct rx_allocator *a, size_t size) {
  void *p = a->alloc(a->ctx, size);
  if (p != NULL)
    memset(p, 0, size);
  return p;
}

static void qfree(const struct rx_allocator *a, void *p, size_t size) {
  if (p != NULL)
    a->free(a->ctx, p, size);
}

/* ---------------------------------------------------------------------------
 * Waiter lists. A waiter is on at most one list; `_list` says which.
 */

static void wlist_init(struct wlist *l, rx_queue *q, int room) {
  l->first = l->last = NULL;
  l->q = q;
  l->room = room;
}

static void wlist_append(struct wlist *l, rx_queue_waiter *w, rx_subqueue *sq) {
  w->_next = NULL;
  w->_prev = l->last;
  if (l->last != NULL)
    l->last->_next = w;
  else
    l->first = w;
  l->last = w;
  w->_list = l;
  w->_sq = sq;
  l->q->nwaiters++;
  if (l->room) {
    sq->st.waiting++;
    l->q->st.waiting++;
  }
}

static void wlist_unlink(rx_queue_waiter *w) {
  struct wlist *l = w->_list;
  if (w->_prev != NULL)
    w->_prev->_next = w->_next;
  else
    l->first = w->_next;
  if (w->_next != NULL)
    w->_next->_prev = w->_prev;
  else
    l->last = w->_prev;
  l->q->nwaiters--;
  if (l->room) {
    w->_sq->st.waiting--;
    l->q->st.waiting--;
  }
  w->_next = w->_prev = NULL;
  w->_list = NULL;
  w->_sq = NULL;
}

/* Unregisters every waiter of `l` without a call. */
static void wlist_drop(struct wlist *l) {
  while (l->first != NULL)
    wlist_unlink(l->first);
}

/* ---------------------------------------------------------------------------
 * The loop watchers.
 */

/* Starts the check and the idle while there is work, stops them when there
 * is none, so that an idle queue neither spins the loop nor keeps rx_run()
 * going. Start and stop cannot fail here: the arguments are ours and the
 * watchers belong to this loop alone. */
static void update_watchers(rx_queue *q) {
  int want = (q->consume != NULL && q->ready_first != NULL) || q->kick;
  if (want == q->running)
    return;
  q->running = want;
  if (want) {
    rx_check_start(q->loop, &q->check);
    rx_idle_start(q->loop, &q->idle);
  } else {
    rx_check_stop(q->loop, &q->check);
    rx_idle_stop(q->loop, &q->idle);
  }
}

/* Something changed that may make a waiter due. */
static void kick(rx_queue *q) {
  if (q->nwaiters > 0) {
    q->kick = 1;
    update_watchers(q);
  }
}

/* ---------------------------------------------------------------------------
 * The ready list.
 */

static void ready_insert(rx_queue *q, rx_subqueue *sq) {
  rx_subqueue *after = q->ready_last;
  while (after != NULL && after->priority < sq->priority)
    after = after->rprev;
  sq->rprev = after;
  sq->rnext = after != NULL ? after->rnext : q->ready_first;
  if (sq->rnext != NULL)
    sq->rnext->rprev = sq;
  else
    q->ready_last = sq;
  if (after != NULL)
    after->rnext = sq;
  else
    q->ready_first = sq;
  sq->ready = 1;
}

static void ready_remove(rx_queue *q, rx_subqueue *sq) {
  if (sq->rprev != NULL)
    sq->rprev->rnext = sq->rnext;
  else
    q->ready_first = sq->rnext;
  if (sq->rnext != NULL)
    sq->rnext->rprev = sq->rprev;
  else
    q->ready_last = sq->rprev;
  sq->rnext = sq->rprev = NULL;
  sq->ready = 0;
}

/* Puts `sq` on or off the ready list as its depth and block say. */
static void ready_update(rx_queue *q, rx_subqueue *sq) {
  int want = sq->st.depth > 0 && !sq->blocked;
  if (want && !sq->ready)
    ready_insert(q, sq);
  else if (!want && sq->ready)
    ready_remove(q, sq);
}

/* ---------------------------------------------------------------------------
 * Lanes.
 */

static int lane_push(const struct rx_allocator *a, struct lane *l, void *item) {
  if (l->len == l->cap) {
    size_t cap = l->cap != 0 ? l->cap * 2 : LANE_MIN;
    if (cap < l->cap || cap > SIZE_MAX / sizeof(void *))
      return -ENOMEM;
    void **buf = a->alloc(a->ctx, cap * sizeof(void *));
    if (buf == NULL)
      return -ENOMEM;
    /* Unwrapped into the new ring, oldest first. */
    for (size_t i = 0; i < l->len; i++)
      buf[i] = l->buf[(l->head + i) % l->cap];
    qfree(a, l->buf, l->cap * sizeof(void *));
    l->buf = buf;
    l->cap = cap;
    l->head = 0;
  }
  l->buf[(l->head + l->len) % l->cap] = item;
  l->len++;
  return 0;
}

static void *lane_pop(struct lane *l) {
  void *item = l->buf[l->head];
  l->head = (l->head + 1) % l->cap;
  l->len--;
  return item;
}

static size_t key_slot(uint64_t key, size_t tsize) {
  uint64_t h = key * UINT64_C(0x9e3779b97f4a7c15);
  return (size_t)(h ^ (h >> 29)) & (tsize - 1);
}

static struct lane *lane_find(rx_subqueue *sq, uint64_t key) {
  if (sq->table == NULL)
    return NULL;
  struct lane *l = sq->table[key_slot(key, sq->tsize)];
  while (l != NULL && l->key != key)
    l = l->hnext;
  return l;
}

/* Doubles the hash table. A failure is not an error while a table exists:
 * chains just grow longer. */
static int table_grow(rx_subqueue *sq) {
  const struct rx_allocator *a = &sq->q->a;
  size_t n = sq->tsize != 0 ? sq->tsize * 2 : TABLE_MIN;
  struct lane **t = qalloc(a, n * sizeof(*t));
  if (t == NULL)
    return sq->table != NULL ? 0 : -ENOMEM;
  for (size_t i = 0; i < sq->tsize; i++) {
    struct lane *l = sq->table[i];
    while (l != NULL) {
      struct lane *next = l->hnext;
      size_t s = key_slot(l->key, n);
      l->hnext = t[s];
      t[s] = l;
      l = next;
    }
  }
  qfree(a, sq->table, sq->tsize * sizeof(*t));
  sq->table = t;
  sq->tsize = n;
  return 0;
}

/* Unhooks an empty keyed lane from the table and the turn ring, and frees
 * it. */
static void lane_free(rx_subqueue *sq, struct lane *l) {
  struct lane **pp = &sq->table[key_slot(l->key, sq->tsize)];
  while (*pp != l)
    pp = &(*pp)->hnext;
  *pp = l->hnext;
  sq->nlanes--;
  if (l->rnext == l) {
    sq->turn = NULL;
  } else {
    l->rprev->rnext = l->rnext;
    l->rnext->rprev = l->rprev;
    if (sq->turn == l)
      sq->turn = l->rnext;
  }
  qfree(&sq->q->a, l->buf, l->cap * sizeof(void *));
  qfree(&sq->q->a, l, sizeof(*l));
}

/* Appends to the lane of `key`, making it (last in the turn ring) if the
 * key has none. Nothing changes on failure. */
static int keyed_push(rx_subqueue *sq, uint64_t key, void *item) {
  const struct rx_allocator *a = &sq->q->a;
  struct lane *l = lane_find(sq, key);
  if (l != NULL)
    return lane_push(a, l, item);
  if (sq->nlanes >= sq->tsize) {
    int rc = table_grow(sq);
    if (rc < 0)
      return rc;
  }
  l = qalloc(a, sizeof(*l));
  if (l == NULL)
    return -ENOMEM;
  l->key = key;
  if (lane_push(a, l, item) < 0) {
    qfree(a, l, sizeof(*l));
    return -ENOMEM;
  }
  size_t s = key_slot(key, sq->tsize);
  l->hnext = sq->table[s];
  sq->table[s] = l;
  sq->nlanes++;
  if (sq->turn == NULL) {
    l->rnext = l->rprev = l;
    sq->turn = l;
  } else {
    l->rnext = sq->turn;
    l->rprev = sq->turn->rprev;
    l->rprev->rnext = l;
    sq->turn->rprev = l;
  }
  return 0;
}

/* Takes the next item of `sq` (depth > 0), blocked or not, and keeps the
 * counts and the ready list right; `delivered` counts it as given out,
 * otherwise as dropped. */
static void *sq_take(rx_subqueue *sq, int delivered) {
  rx_queue *q = sq->q;
  void *item;
  if (sq->flags & RX_SUBQUEUE_KEYED) {
    struct lane *l = sq->turn;
    item = lane_pop(l);
    if (l->len == 0)
      lane_free(sq, l);
    else
      sq->turn = l->rnext;
  } else {
    item = lane_pop(&sq->lane0);
    if (sq->lane0.len == 0 && sq->lane0.cap > LANE_KEEP) {
      qfree(&q->a, sq->lane0.buf, sq->lane0.cap * sizeof(void *));
      sq->lane0.buf = NULL;
      sq->lane0.cap = sq->lane0.head = 0;
    }
  }
  sq->st.depth--;
  q->st.depth--;
  if (delivered) {
    sq->st.delivered++;
    q->st.delivered++;
  } else {
    sq->st.dropped++;
    q->st.dropped++;
  }
  /* Off the list, and back at the end of its priority's group if it still
   * has items: the turn passes to the next sub-queue of that priority. */
  if (sq->ready)
    ready_remove(q, sq);
  ready_update(q, sq);
  return item;
}

/* ---------------------------------------------------------------------------
 * Waking waiters.
 */

static int has_room(const rx_subqueue *sq) {
  const rx_queue *q = sq->q;
  return (sq->limit == 0 || sq->st.depth < sq->limit) &&
         (q->limit == 0 || q->st.depth < q->limit);
}

static void fire(rx_queue *q, rx_queue_waiter *w) {
  rx_subqueue *sq = w->_sq;
  wlist_unlink(w);
  if (w->cb != NULL)
    w->cb(q, sq, w);
}

/* Runs one due waiter; 0 when none is due. The scan starts afresh after
 * each call, since a callback may push, clear or free sub-queues. */
static int wake_one(rx_queue *q) {
  for (rx_subqueue *sq = q->subs; sq != NULL; sq = sq->next) {
    if (sq->room.first != NULL && has_room(sq)) {
      fire(q, sq->room.first);
      return 1;
    }
    if (sq->empty.first != NULL && sq->st.depth == 0) {
      fire(q, sq->empty.first);
      return 1;
    }
  }
  if (q->empty.first != NULL && q->st.depth == 0) {
    fire(q, q->empty.first);
    return 1;
  }
  return 0;
}

static void on_check(rx_loop *loop, rx_check *w, int revents) {
  (void)loop;
  (void)revents;
  rx_queue *q = w->data;
  q->in_cb++;
  if (q->consume != NULL) {
    for (unsigned n = 0; n < q->budget && q->ready_first != NULL; n++) {
      rx_subqueue *sq = q->ready_first;
      void *item = sq_take(sq, 1);
      q->consume(q, sq, item);
    }
  }
  /* What the consumer freed, and what changed since the last iteration. */
  q->kick = 0;
  while (wake_one(q))
    ;
  q->in_cb--;
  update_watchers(q);
}

static void on_idle(rx_loop *loop, rx_idle *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
}

/* ---------------------------------------------------------------------------
 * The queue.
 */

int rx_queue_new(rx_queue **qp, rx_loop *loop,
                 const struct rx_queue_options *opts) {
  static const struct rx_queue_options none;
  if (qp == NULL || loop == NULL)
    return -EINVAL;
  if (opts == NULL)
    opts = &none;
  if (opts->priority < RX_MINPRI || opts->priority > RX_MAXPRI)
    return -EINVAL;
  struct rx_allocator a = {libc_alloc, libc_realloc, libc_free, NULL};
  if (opts->allocator != NULL) {
    a = *opts->allocator;
    if (a.alloc == NULL || a.realloc == NULL || a.free == NULL)
      return -EINVAL;
  }
  rx_queue *q = qalloc(&a, sizeof(*q));
  if (q == NULL)
    return -ENOMEM;
  q->loop = loop;
  q->a = a;
  q->consume = opts->consume;
  q->drop = opts->drop;
  q->data = opts->data;
  q->limit = opts->limit;
  q->budget = opts->budget != 0 ? opts->budget : DEFAULT_BUDGET;
  wlist_init(&q->empty, q, 0);
  rx_check_init(&q->check, on_check);
  q->check.data = q;
  rx_check_set_priority(&q->check, opts->priority);
  rx_idle_init(&q->idle, on_idle);
  rx_idle_set_priority(&q->idle, RX_MINPRI);
  *qp = q;
  return 0;
}

/* Frees `sq`'s memory, its items to `drop`. `sq` is already off every
 * list of the queue, so a drop callback cannot reach it through them. */
static void sq_destroy(rx_queue *q, rx_subqueue *sq) {
  sq->busy = 2;
  q->in_cb++;
  while (sq->st.depth > 0) {
    void *item = sq_take(sq, 0);
    if (q->drop != NULL)
      q->drop(q, sq, item);
  }
  q->in_cb--;
  wlist_drop(&sq->room);
  wlist_drop(&sq->empty);
  qfree(&q->a, sq->lane0.buf, sq->lane0.cap * sizeof(void *));
  qfree(&q->a, sq->table, sq->tsize * sizeof(*sq->table));
  qfree(&q->a, sq, sizeof(*sq));
}

static void sq_unlink(rx_queue *q, rx_subqueue *sq) {
  if (sq->prev != NULL)
    sq->prev->next = sq->next;
  else
    q->subs = sq->next;
  if (sq->next != NULL)
    sq->next->prev = sq->prev;
  sq->next = sq->prev = NULL;
  /* Blocked, so that sq_take() leaves it off the ready list. */
  sq->blocked = 1;
  if (sq->ready)
    ready_remove(q, sq);
}

int rx_queue_free(rx_queue *q) {
  if (q == NULL)
    return -EINVAL;
  if (q->in_cb)
    return -EBUSY;
  q->kick = 0;
  q->consume = NULL;
  while (q->subs != NULL) {
    rx_subqueue *sq = q->subs;
    sq_unlink(q, sq);
    sq_destroy(q, sq);
  }
  wlist_drop(&q->empty);
  rx_check_stop(q->loop, &q->check);
  rx_idle_stop(q->loop, &q->idle);
  struct rx_allocator a = q->a;
  qfree(&a, q, sizeof(*q));
  return 0;
}

void *rx_queue_data(const rx_queue *q) {
  return q != NULL ? q->data : NULL;
}

int rx_queue_set_limit(rx_queue *q, size_t limit) {
  if (q == NULL)
    return -EINVAL;
  q->limit = limit;
  kick(q);
  return 0;
}

int rx_queue_set_budget(rx_queue *q, unsigned budget) {
  if (q == NULL)
    return -EINVAL;
  q->budget = budget != 0 ? budget : DEFAULT_BUDGET;
  return 0;
}

int rx_queue_stats(const rx_queue *q, struct rx_queue_stats *s) {
  if (q == NULL || s == NULL)
    return -EINVAL;
  *s = q->st;
  return 0;
}

/* ---------------------------------------------------------------------------
 * Sub-queues.
 */

int rx_subqueue_new(rx_queue *q, rx_subqueue **sqp,
                    const struct rx_subqueue_options *opts) {
  static const struct rx_subqueue_options none;
  if (q == NULL || sqp == NULL)
    return -EINVAL;
  if (opts == NULL)
    opts = &none;
  if (opts->flags & ~(unsigned)RX_SUBQUEUE_KEYED)
    return -EINVAL;
  rx_subqueue *sq = qalloc(&q->a, sizeof(*sq));
  if (sq == NULL)
    return -ENOMEM;
  sq->q = q;
  sq->priority = opts->priority;
  sq->limit = opts->limit;
  sq->flags = opts->flags;
  wlist_init(&sq->room, q, 1);
  wlist_init(&sq->empty, q, 0);
  sq->next = q->subs;
  if (q->subs != NULL)
    q->subs->prev = sq;
  q->subs = sq;
  *sqp = sq;
  return 0;
}

int rx_subqueue_free(rx_subqueue *sq) {
  if (sq == NULL)
    return -EINVAL;
  if (sq->busy)
    return -EBUSY;
  rx_queue *q = sq->q;
  sq_unlink(q, sq);
  sq_destroy(q, sq);
  kick(q);
  update_watchers(q);
  return 0;
}

int rx_subqueue_set_limit(rx_subqueue *sq, size_t limit) {
  if (sq == NULL || sq->busy == 2)
    return -EINVAL;
  sq->limit = limit;
  kick(sq->q);
  return 0;
}

int rx_subqueue_block(rx_subqueue *sq) {
  if (sq == NULL || sq->busy == 2)
    return -EINVAL;
  sq->blocked = 1;
  ready_update(sq->q, sq);
  update_watchers(sq->q);
  return 0;
}

int rx_subqueue_unblock(rx_subqueue *sq) {
  if (sq == NULL || sq->busy == 2)
    return -EINVAL;
  sq->blocked = 0;
  ready_update(sq->q, sq);
  update_watchers(sq->q);
  return 0;
}

int rx_subqueue_blocked(const rx_subqueue *sq) {
  return sq != NULL ? sq->blocked : 0;
}

int rx_subqueue_stats(const rx_subqueue *sq, struct rx_queue_stats *s) {
  if (sq == NULL || s == NULL)
    return -EINVAL;
  *s = sq->st;
  return 0;
}

long rx_subqueue_clear(rx_subqueue *sq) {
  if (sq == NULL)
    return -EINVAL;
  rx_queue *q = sq->q;
  /* At most the items there now: a drop callback that pushes back into
   * `sq` does not keep the clear going. */
  size_t n = sq->st.depth;
  long dropped = 0;
  if (sq->busy)
    return -EBUSY;
  sq->busy = 1;
  q->in_cb++;
  while (n-- > 0 && sq->st.depth > 0) {
    void *item = sq_take(sq, 0);
    dropped++;
    if (q->drop != NULL)
      q->drop(q, sq, item);
  }
  q->in_cb--;
  sq->busy = 0;
  kick(q);
  update_watchers(q);
  return dropped;
}

/* ---------------------------------------------------------------------------
 * Push and pop.
 */

static int refuse(rx_subqueue *sq, rx_queue_waiter *w) {
  rx_queue *q = sq->q;
  sq->st.refused++;
  q->st.refused++;
  if (w != NULL) {
    if (w->_list == NULL)
      wlist_append(&sq->room, w, sq);
    else if (w->_list != &sq->room)
      return -EBUSY;
  }
  return -EAGAIN;
}

static int push(rx_subqueue *sq, int keyed, uint64_t key, void *item,
                rx_queue_waiter *w) {
  if (sq == NULL || sq->busy == 2)
    return -EINVAL;
  if (keyed && !(sq->flags & RX_SUBQUEUE_KEYED))
    return -EINVAL;
  rx_queue *q = sq->q;
  if (!has_room(sq))
    return refuse(sq, w);
  int rc = (sq->flags & RX_SUBQUEUE_KEYED) ? keyed_push(sq, key, item)
                                           : lane_push(&q->a, &sq->lane0, item);
  if (rc < 0)
    return rc;
  sq->st.pushed++;
  q->st.pushed++;
  if (++sq->st.depth > sq->st.high_water)
    sq->st.high_water = sq->st.depth;
  if (++q->st.depth > q->st.high_water)
    q->st.high_water = q->st.depth;
  ready_update(q, sq);
  update_watchers(q);
  return 0;
}

int rx_queue_push(rx_subqueue *sq, void *item, rx_queue_waiter *w) {
  return push(sq, 0, 0, item, w);
}

int rx_queue_push_key(rx_subqueue *sq, uint64_t key, void *item,
                      rx_queue_waiter *w) {
  return push(sq, 1, key, item, w);
}

int rx_queue_pop(rx_queue *q, void **item, rx_subqueue **sqp) {
  if (q == NULL || item == NULL)
    return -EINVAL;
  rx_subqueue *sq = q->ready_first;
  if (sq == NULL)
    return -EAGAIN;
  *item = sq_take(sq, 1);
  if (sqp != NULL)
    *sqp = sq;
  kick(q);
  update_watchers(q);
  return 0;
}

/* ---------------------------------------------------------------------------
 * Waiters.
 */

void rx_queue_waiter_init(rx_queue_waiter *w, rx_queue_waiter_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  w->_next = w->_prev = NULL;
  w->_list = NULL;
  w->_sq = NULL;
}

int rx_queue_waiter_cancel(rx_queue_waiter *w) {
  if (w == NULL)
    return -EINVAL;
  if (w->_list != NULL) {
    rx_queue *q = ((struct wlist *)w->_list)->q;
    wlist_unlink(w);
    if (q->nwaiters == 0)
      q->kick = 0;
    update_watchers(q);
  }
  return 0;
}

int rx_queue_waiter_active(const rx_queue_waiter *w) {
  return w != NULL && w->_list != NULL;
}

int rx_queue_wait_empty(rx_queue *q, rx_subqueue *sq, rx_queue_waiter *w) {
  if (q == NULL || w == NULL || (sq != NULL && (sq->q != q || sq->busy == 2)))
    return -EINVAL;
  if (w->_list != NULL)
    return -EBUSY;
  if (sq != NULL)
    wlist_append(&sq->empty, w, sq);
  else
    wlist_append(&q->empty, w, NULL);
  kick(q);
  return 0;
}

/* ---------------------------------------------------------------------------
 * Posting from other threads. The producer's side touches only `p` and the
 * immutable `sq->q->loop`; everything else happens in the posted task, on
 * the loop's thread. `_posted` keeps a post from being handed over twice:
 * the exchange that sets it is acquire, pairing with the release store
 * that clears it on the loop, so that a producer that sees it clear (and
 * then rewrites the post) comes after the loop's last read of the fields
 * it was given. The loop reads what it needs before that store: from then
 * on the post is the producer's again, as an rx_task is once its function
 * has started.
 */

static void post_settle(rx_queue_task *p, rx_queue *q, int rc) {
  rx_queue_task_cb done = p->done;
  __atomic_store_n(&p->_posted, 0, __ATOMIC_RELEASE);
  if (done != NULL)
    done(q, p, rc);
}

static int post_push(rx_queue_task *p) {
  int wait = (p->flags & RX_QUEUE_TASK_WAIT) != 0;
  int keyed = (p->flags & RX_QUEUE_TASK_KEY) != 0;
  return push(p->sq, keyed, p->key, p->item, wait ? &p->_w : NULL);
}

/* Room for a post that waited: push now, or wait again if another push
 * took the room first. */
static void post_room(rx_queue *q, rx_subqueue *sq, rx_queue_waiter *w) {
  (void)sq;
  rx_queue_task *p =
      (rx_queue_task *)(void *)((char *)w - offsetof(rx_queue_task, _w));
  int rc = post_push(p);
  if (rc != -EAGAIN)
    post_settle(p, q, rc);
}

static void post_run(rx_loop *loop, rx_task *t) {
  (void)loop;
  rx_queue_task *p = (rx_queue_task *)(void *)t;
  rx_queue *q = p->sq->q;
  rx_queue_waiter_init(&p->_w, post_room);
  int rc = post_push(p);
  if (rc == -EAGAIN && (p->flags & RX_QUEUE_TASK_WAIT))
    return; /* registered: post_room() goes on */
  post_settle(p, q, rc);
}

int rx_queue_post(rx_queue_task *p) {
  if (p == NULL || p->sq == NULL ||
      (p->flags & ~(unsigned)(RX_QUEUE_TASK_KEY | RX_QUEUE_TASK_WAIT)))
    return -EINVAL;
  if (__atomic_exchange_n(&p->_posted, 1, __ATOMIC_ACQUIRE) != 0)
    return -EBUSY;
  p->_task.fn = post_run;
  p->_task.data = p;
  int rc = rx_loop_post(p->sq->q->loop, &p->_task);
  if (rc < 0)
    __atomic_store_n(&p->_posted, 0, __ATOMIC_RELEASE);
  return rc;
}

int rx_queue_task_pending(const rx_queue_task *p) {
  return p != NULL && __atomic_load_n(&p->_posted, __ATOMIC_ACQUIRE) != 0;
}
