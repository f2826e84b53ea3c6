/*
 * rx/queue.h - bounded priority queues on an rx loop (librx-services,
 * pkg-config rx-services). The guide's chapter is docs/queue.md.
 *
 * A queue holds items (void pointers the caller owns) in sub-queues. Each
 * sub-queue has a priority and a limit; the queue has a total limit. The
 * loop consumes the queue: a consumer callback runs for each item, highest
 * priority first, sub-queues of equal priority taking turns one item each,
 * at most `budget` items per loop iteration. A keyed sub-queue keeps one
 * lane per key and its lanes take turns the same way, so one busy key
 * cannot hold back the others.
 *
 * A push into a full sub-queue (or a full queue) returns -EAGAIN and, given
 * a waiter, registers it: the waiter's callback then runs exactly once, on
 * the loop, when there is room again for that sub-queue. A wait-until-empty
 * waiter runs once when the queue or one sub-queue holds no item.
 *
 * Conventions are rx.h's: 0 or a count on success, a negative errno on
 * failure, NULL accepted everywhere (-EINVAL, or nothing for a void
 * function). Threads: a queue belongs to its loop's thread, and every
 * function here must be called there, except rx_queue_post(), which any
 * thread may call to push through the loop's lock-free task queue.
 */
#ifndef RX_QUEUE_H
#define RX_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "rx.h"

#if defined(RX_SERVICES_BUILDING) && defined(__GNUC__)
#define RX_SERVICES_EXPORT __attribute__((visibility("default")))
#else
#define RX_SERVICES_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rx_queue rx_queue;
typedef struct rx_subqueue rx_subqueue;
typedef struct rx_queue_waiter rx_queue_waiter;

/* Runs on the loop for each item taken from `sq`. The item is out of the
 * queue already; the callback may push, pop, block, clear and free
 * sub-queues (`sq` included), but not free the queue. */
typedef void (*rx_queue_consume_fn)(rx_queue *q, rx_subqueue *sq, void *item);
/* Runs for each item a clear or a free throws away, so that its owner can
 * release it. */
typedef void (*rx_queue_drop_fn)(rx_queue *q, rx_subqueue *sq, void *item);
/* A waiter's callback: `sq` is the sub-queue it waited for (NULL for a
 * wait on the whole queue being empty). `w` is no longer registered: it may
 * be registered again or freed. */
typedef void (*rx_queue_waiter_cb)(rx_queue *q, rx_subqueue *sq,
                                   rx_queue_waiter *w);

/* A caller-owned waiter: for room (given to a push that is refused) or for
 * emptiness (rx_queue_wait_empty()). Registered on at most one thing at a
 * time; the queue allocates nothing for it. */
struct rx_queue_waiter {
  void *data;
  rx_queue_waiter_cb cb;
  struct rx_queue_waiter *_next, *_prev;
  void *_list;      /* the list it is on, or NULL */
  rx_subqueue *_sq; /* the sub-queue it waits for, or NULL */
};

/* Options for rx_queue_new(); zero-initialise and set what you need. */
struct rx_queue_options {
  size_t limit;                /* items in all sub-queues; 0 = no limit */
  unsigned budget;             /* items consumed per iteration; 0 = 64 */
  int priority;                /* of the loop watcher that consumes
                                  (RX_MINPRI..RX_MAXPRI) */
  rx_queue_consume_fn consume; /* NULL: pull with rx_queue_pop() */
  rx_queue_drop_fn drop;       /* may be NULL */
  void *data;                  /* rx_queue_data() */
  /* For the queue's own memory (sub-queues, item rings, key lanes); NULL:
   * libc. Kept by pointer: it must outlive the queue. */
  const struct rx_allocator *allocator;
};

/* Options for rx_subqueue_new(). */
enum {
  RX_SUBQUEUE_KEYED = 0x1, /* one lane per key (rx_queue_push_key()) */
};
struct rx_subqueue_options {
  int priority;   /* higher is consumed first; any int */
  size_t limit;   /* items in this sub-queue; 0 = no limit */
  unsigned flags; /* RX_SUBQUEUE_*; other bits must be 0 */
};

/* What a queue or sub-queue has done since it was made. */
struct rx_queue_stats {
  size_t depth;       /* items held now (blocked ones included) */
  size_t high_water;  /* the largest depth so far */
  size_t waiting;     /* room waiters registered now: blocked pushers */
  uint64_t pushed;    /* items accepted */
  uint64_t delivered; /* items consumed or popped */
  uint64_t refused;   /* pushes refused for want of room (-EAGAIN) */
  uint64_t dropped;   /* items thrown away by a clear or a free */
};

/* Makes a queue on `loop`. -EINVAL for a NULL argument, a priority out of
 * range or an allocator with a function missing; -ENOMEM. */
RX_SERVICES_EXPORT int rx_queue_new(rx_queue **q, rx_loop *loop,
                                    const struct rx_queue_options *opts);
/* Frees the queue and its sub-queues: each item goes to `drop`, waiters
 * are unregistered without a call. -EBUSY, nothing done, from inside one of
 * the queue's callbacks. */
RX_SERVICES_EXPORT int rx_queue_free(rx_queue *q);
RX_SERVICES_EXPORT void *rx_queue_data(const rx_queue *q);
/* Changes the total limit (0 = none). Lowering it below the depth drops
 * nothing: pushes are refused until the depth is below it. */
RX_SERVICES_EXPORT int rx_queue_set_limit(rx_queue *q, size_t limit);
/* Changes the per-iteration budget (0 = 64). */
RX_SERVICES_EXPORT int rx_queue_set_budget(rx_queue *q, unsigned budget);

/* Adds a sub-queue (`opts` may be NULL: priority 0, no limit, plain).
 * -EINVAL for a NULL argument or an unknown flag; -ENOMEM. */
RX_SERVICES_EXPORT int rx_subqueue_new(rx_queue *q, rx_subqueue **sq,
                                       const struct rx_subqueue_options *opts);
/* Removes a sub-queue: its items go to `drop`, its waiters are
 * unregistered without a call. -EBUSY from a drop callback of its own
 * clear or free. */
RX_SERVICES_EXPORT int rx_subqueue_free(rx_subqueue *sq);
/* As rx_queue_set_limit(), for one sub-queue. */
RX_SERVICES_EXPORT int rx_subqueue_set_limit(rx_subqueue *sq, size_t limit);
/* A blocked sub-queue accepts pushes up to its limit but gives out no item
 * until it is unblocked. Blocking twice is the same as once. */
RX_SERVICES_EXPORT int rx_subqueue_block(rx_subqueue *sq);
RX_SERVICES_EXPORT int rx_subqueue_unblock(rx_subqueue *sq);
RX_SERVICES_EXPORT int rx_subqueue_blocked(const rx_subqueue *sq);

/* Appends `item` (any pointer, NULL too) to `sq`; a keyed sub-queue puts
 * it in the lane of key 0. 0; -EAGAIN when `sq` or the queue is full, `w`
 * (if not NULL) then registered to run once there is room for `sq` (a `w`
 * already waiting for `sq` stays registered, once); -EBUSY, when refused,
 * for a `w` registered on something else; -ENOMEM. */
RX_SERVICES_EXPORT int rx_queue_push(rx_subqueue *sq, void *item,
                                     rx_queue_waiter *w);
/* As rx_queue_push(), into the lane of `key` of a keyed sub-queue; -EINVAL
 * for a sub-queue that is not keyed. */
RX_SERVICES_EXPORT int rx_queue_push_key(rx_subqueue *sq, uint64_t key,
                                         void *item, rx_queue_waiter *w);
/* Takes the next item as the consumer would get it: 0 with *item and (if
 * not NULL) *sq set; -EAGAIN when no item can be given out (empty, or all
 * blocked). Counts against no budget. */
RX_SERVICES_EXPORT int rx_queue_pop(rx_queue *q, void **item, rx_subqueue **sq);
/* Throws away the items of `sq` (to `drop`, counted); returns how many,
 * or -EINVAL, or -EBUSY from a drop callback of its own clear or free. A
 * drop callback that pushes into `sq` does not prolong the clear. */
RX_SERVICES_EXPORT long rx_subqueue_clear(rx_subqueue *sq);

/* Sets a waiter's callback and clears its state. */
RX_SERVICES_EXPORT void rx_queue_waiter_init(rx_queue_waiter *w,
                                             rx_queue_waiter_cb cb);
/* Unregisters `w` without a call; 0 also when it was not registered. */
RX_SERVICES_EXPORT int rx_queue_waiter_cancel(rx_queue_waiter *w);
/* Whether `w` is registered. */
RX_SERVICES_EXPORT int rx_queue_waiter_active(const rx_queue_waiter *w);
/* Registers `w` to run once, on the loop, when `sq` (NULL: the whole
 * queue) holds no item; at the next iteration if it is empty already.
 * -EBUSY for a `w` already registered. */
RX_SERVICES_EXPORT int rx_queue_wait_empty(rx_queue *q, rx_subqueue *sq,
                                           rx_queue_waiter *w);

/* A push from any thread (rx_queue_post()), caller-owned like rx_task.
 * Set `sq`, `item`, `key` (with RX_QUEUE_TASK_KEY), `flags`, `done` and
 * `data` before posting; the queue allocates nothing for it. */
typedef struct rx_queue_task rx_queue_task;
/* Runs on the loop once the push is settled: `rc` is rx_queue_push()'s
 * result (0: accepted). From the moment it starts, the task may be posted
 * again (from any thread) or freed, as an rx_task once its `fn` started. */
typedef void (*rx_queue_task_cb)(rx_queue *q, rx_queue_task *p, int rc);
enum {
  RX_QUEUE_TASK_KEY = 0x1,  /* rx_queue_push_key() with `key` */
  RX_QUEUE_TASK_WAIT = 0x2, /* when full, wait for room and push then:
                               `done` runs once the item is in */
};
struct rx_queue_task {
  rx_task _task;
  rx_queue_waiter _w;
  rx_subqueue *sq;
  void *item;
  uint64_t key;
  unsigned flags;
  rx_queue_task_cb done; /* may be NULL */
  void *data;
  unsigned _posted; /* atomic: set from the post until `done` starts */
};
/* Thread-safe: hands `p` to the loop of `p->sq`'s queue (rx_loop_post(),
 * lock-free), where its item is pushed; posts from one thread are pushed
 * in post order (a waiting post keeps its place among the sub-queue's
 * waiters). 0; -EINVAL for a NULL argument, a NULL `sq` or an unknown flag;
 * -EBUSY while `p` is posted and its `done` has not started;
 * rx_loop_post()'s other errors. `sq` must stay alive until `done` has
 * run: freeing it unregisters a waiting task, whose `done` then never
 * runs. */
RX_SERVICES_EXPORT int rx_queue_post(rx_queue_task *p);
/* Thread-safe: whether `p` is posted and its `done` has not started (its
 * fields must not be changed meanwhile). */
RX_SERVICES_EXPORT int rx_queue_task_pending(const rx_queue_task *p);

/* Fills `s`: 0, or -EINVAL. */
RX_SERVICES_EXPORT int rx_queue_stats(const rx_queue *q,
                                      struct rx_queue_stats *s);
RX_SERVICES_EXPORT int rx_subqueue_stats(const rx_subqueue *sq,
                                         struct rx_queue_stats *s);

#ifdef __cplusplus
}
#endif

#endif /* RX_QUEUE_H */
