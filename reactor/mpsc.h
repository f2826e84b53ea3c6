/*
 * mpsc.h - an intrusive multi-producer, single-consumer queue.
 *
 * Dmitry Vyukov's "intrusive MPSC node-based queue" (1024cores.net, 2010):
 * producers swap themselves into `head` with one atomic exchange and then
 * link the previous head to themselves; the consumer walks from `tail`. A
 * stub node that lives in the queue lets the consumer hand out the last real
 * node without ever leaving the list empty.
 *
 * Contract:
 *   - rx__mpsc_push() may be called from any thread, and from a signal
 *     handler: it is wait-free (one exchange, one store) and never allocates;
 *   - rx__mpsc_pop() is called by one consumer thread at a time;
 *   - a node is pushed at most once until it has been popped again;
 *   - FIFO per producer: nodes pushed by one thread pop in push order;
 *   - pop may return NULL while a producer is between its exchange and its
 *     link store (the queue is then "busy", not empty). rx__mpsc_empty()
 *     tells the two apart, so the consumer does not go to sleep on a busy
 *     queue; the producer's link store completes in a few instructions.
 *
 * Memory orders: the exchange on `head` is seq_cst. Acq_rel would be enough
 * for the queue alone (a producer sees the previous node fully initialised
 * before writing into its `next`); seq_cst is for rx_loop_post(), whose
 * push must not be reordered with its seq_cst load of the loop's sleeping
 * flag (rx__mpsc_push() says more). rx__mpsc_empty() loads `head` seq_cst
 * for the loop's side of that handshake. The consumer's acquire loads of
 * `next` pair with the producers' release stores, so a popped node's
 * payload (written before the push) is visible.
 */
#ifndef RX_MPSC_H
#define RX_MPSC_H

#include <stddef.h>

/* struct rx__mpsc_node, embedded in the public rx_task */
#include "rx/layout.h"

/* The GCC/Clang __atomic builtins are used rather than <stdatomic.h> so that
 * nodes can live in structs that rx.h shares with C++. */

/* A cache line's worth of padding: producers write `head`, the consumer
 * writes `tail`, and neither should pull the other's line away with it. A
 * gap of a whole line keeps them apart whatever the struct's alignment. */
#define RX__CACHE_LINE 64

struct rx__mpsc {
  struct rx__mpsc_node *head; /* last pushed; producers swap it */
  char _pad[RX__CACHE_LINE];
  struct rx__mpsc_node *tail; /* next to pop; the consumer's alone */
  struct rx__mpsc_node stub;
};

static inline void rx__mpsc_init(struct rx__mpsc *q) {
  __atomic_store_n(&q->stub.next, NULL, __ATOMIC_RELAXED);
  __atomic_store_n(&q->head, &q->stub, __ATOMIC_RELAXED);
  q->tail = &q->stub;
}

static inline void rx__mpsc_push(struct rx__mpsc *q, struct rx__mpsc_node *n) {
  /* Relaxed: nobody can reach `n` until the exchange below publishes it. */
  __atomic_store_n(&n->next, NULL, __ATOMIC_RELAXED);
  /* Release publishes `n` (and the caller's payload) to the next producer,
   * which will write n->next; acquire orders our write into prev->next
   * after the producer that pushed prev initialised it. Seq_cst rather than
   * acq_rel because rx_loop_post() follows the push with a seq_cst load of
   * the loop's sleeping flag and the pair must not be reordered (a Dekker
   * handshake, see crossthread.c); on x86-64 both are the same XCHG. */
  struct rx__mpsc_node *prev =
      __atomic_exchange_n(&q->head, n, __ATOMIC_SEQ_CST);
  /* Release: the consumer that loads this pointer with acquire sees `n`'s
   * payload. Between the exchange and this store the queue is "busy". */
  __atomic_store_n(&prev->next, n, __ATOMIC_RELEASE);
}

/* Whether nothing has been pushed that has not been popped. Seq_cst: the
 * loop calls it after announcing it will sleep (see rx__mpsc users), and it
 * must not be ordered before that announcement. */
static inline int rx__mpsc_empty(struct rx__mpsc *q) {
  /* Empty means only the stub is left: any other tail is a node not yet
   * handed out, and a head past the stub is a push in progress. */
  return __atomic_load_n(&q->head, __ATOMIC_SEQ_CST) == &q->stub &&
         q->tail == &q->stub &&
         __atomic_load_n(&q->stub.next, __ATOMIC_ACQUIRE) == NULL;
}

/* For a consumer that polls: whether a node has been pushed that was not
 * popped. It reads only the consumer's line (`tail`, the stub) and the link
 * out of the tail node, never `head`, so that polling does not pull away
 * the line every push writes. A push between its exchange and its link
 * store is not seen yet; the next look sees it. Acquire pairs with the
 * push's release store of the link. */
static inline int rx__mpsc_peek(struct rx__mpsc *q) {
  return q->tail != &q->stub ||
         __atomic_load_n(&q->stub.next, __ATOMIC_ACQUIRE) != NULL;
}

/* The oldest node, or NULL if the queue is empty or busy. */
static inline struct rx__mpsc_node *rx__mpsc_pop(struct rx__mpsc *q) {
  struct rx__mpsc_node *tail = q->tail;
  struct rx__mpsc_node *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (tail == &q->stub) {
    if (next == NULL)
      return NULL;
    /* Skip the stub; it is pushed back below when the queue drains. */
    q->tail = next;
    tail = next;
    next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
  }
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  /* `tail` is the last linked node. If it is not also the head, a producer
   * is mid-push behind it: busy. */
  if (tail != __atomic_load_n(&q->head, __ATOMIC_ACQUIRE))
    return NULL;
  /* Re-insert the stub behind `tail`, so `tail` can be handed out without
   * leaving the list without a node. */
  rx__mpsc_push(q, &q->stub);
  next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
  if (next != NULL) {
    q->tail = next;
    return tail;
  }
  return NULL; /* a producer slipped in before the stub: busy */
}

#endif /* RX_MPSC_H */
