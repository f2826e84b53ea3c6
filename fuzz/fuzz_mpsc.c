/*
 * fuzz_mpsc.c - reactor/mpsc.h against a FIFO model, one thread.
 *
 * Real producers race; here their interleavings are spelled out by the
 * input instead. Besides whole pushes and pops, a push can stop half-way,
 * after its exchange on `head` and before the store that links the
 * previous node to it: the state a producer preempted between its two
 * instructions leaves behind (tests/test-async.c, test_mpsc_busy). Several
 * such pushes may be open at once, and they complete in any order.
 *
 * The model is the queue in exchange order. The checks: a pop returns
 * NULL or exactly the model's oldest node (FIFO, nothing lost, nothing
 * twice, never the stub), with the payload written before its push; it
 * returns a node whenever no push is half-done (a busy queue may answer
 * NULL, an idle one may not); rx__mpsc_empty() is true exactly when the
 * model is empty and no push is open. At the end every open push is
 * completed and the queue drained. Any mismatch aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "mpsc.h"

#define POOL 32
#define MAX_OPS 1000

enum { FREE, QUEUED, HALF };

struct node {
  struct rx__mpsc_node link; /* first: a node pointer is a struct node's */
  int state;
  uint64_t payload;
  struct rx__mpsc_node *prev; /* for a HALF push: the node to link from */
};

static struct rx__mpsc q;
static struct node pool[POOL];
static struct node *fifo[POOL]; /* the model, oldest first */
static size_t nfifo;
static size_t nhalf;
static uint64_t next_payload;

static void model_push(struct node *n) {
  n->payload = next_payload++;
  fifo[nfifo++] = n;
}

/* The first half of rx__mpsc_push(): what a producer has done when it is
 * preempted between its exchange and its link store. */
static void half_push(struct node *n) {
  model_push(n);
  __atomic_store_n(&n->link.next, NULL, __ATOMIC_RELAXED);
  n->prev = __atomic_exchange_n(&q.head, &n->link, __ATOMIC_SEQ_CST);
  n->state = HALF;
  nhalf++;
}

static void finish_push(struct node *n) {
  __atomic_store_n(&n->prev->next, &n->link, __ATOMIC_RELEASE);
  n->prev = NULL;
  n->state = QUEUED;
  nhalf--;
}

static void check_empty(void) {
  FZ_CHECK(rx__mpsc_empty(&q) == (nfifo == 0 && nhalf == 0));
}

/* Pops once; returns whether a node came out. */
static int pop(void) {
  struct rx__mpsc_node *got = rx__mpsc_pop(&q);
  struct node *n;

  if (got == NULL) {
    /* Only a half-done push may hold up a non-empty queue. */
    FZ_CHECK(nfifo == 0 || nhalf > 0);
    return 0;
  }
  FZ_CHECK(got != &q.stub);
  n = (struct node *)(void *)got;
  FZ_CHECK(n >= pool && n < pool + POOL);
  FZ_CHECK(nfifo > 0 && fifo[0] == n); /* FIFO, once each */
  FZ_CHECK(n->state == QUEUED);        /* linked before it is handed out */
  FZ_CHECK(n->payload == fifo[0]->payload);
  memmove(fifo, fifo + 1, (nfifo - 1) * sizeof(fifo[0]));
  nfifo--;
  n->state = FREE;
  return 1;
}

/* An open push, picked by the input, or NULL. */
static struct node *pick_half(struct fz_input *in) {
  unsigned start = fz_below(in, POOL);
  for (unsigned k = 0; k < POOL; k++) {
    struct node *n = &pool[(start + k) % POOL];
    if (n->state == HALF)
      return n;
  }
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fz_input in;

  fz_init(&in, data, size);
  memset(pool, 0, sizeof(pool));
  nfifo = nhalf = 0;
  next_payload = 0;
  rx__mpsc_init(&q);
  check_empty();

  for (int op = 0; op < MAX_OPS && !fz_done(&in); op++) {
    uint8_t code = fz_u8(&in);
    switch (code % 6) {
    case 0:
    case 1: { /* push a free node */
      struct node *n = &pool[(code >> 3) % POOL];
      if (n->state == FREE) {
        model_push(n);
        rx__mpsc_push(&q, &n->link);
        n->state = QUEUED;
      }
      break;
    }
    case 2: { /* start a push and leave it half-done */
      struct node *n = &pool[(code >> 3) % POOL];
      if (n->state == FREE)
        half_push(n);
      break;
    }
    case 3: { /* complete one open push, in any order */
      struct node *n = pick_half(&in);
      if (n != NULL)
        finish_push(n);
      break;
    }
    case 4: /* pop once */
      pop();
      break;
    default: { /* pop a few; an idle queue must hand out what it holds */
      unsigned n = 1 + (code >> 3) % 8;
      for (unsigned k = 0; k < n; k++)
        if (!pop())
          break;
      break;
    }
    }
    check_empty();
  }
  /* Every producer finishes; then the queue gives back exactly the rest. */
  while (nhalf > 0) {
    struct node *n = pick_half(&in);
    FZ_CHECK(n != NULL);
    finish_push(n);
    check_empty();
  }
  while (nfifo > 0) {
    FZ_CHECK(pop());
    check_empty();
  }
  FZ_CHECK(rx__mpsc_pop(&q) == NULL);
  FZ_CHECK(rx__mpsc_empty(&q));
  return 0;
}
