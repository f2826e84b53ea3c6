/*
 * fuzz_queue.c - services/queue.c (rx/queue.h) on a real loop, driven by a
 * byte script and checked against a model.
 *
 * The objects: one queue (a consumer with a budget of 1 to 4, or none: the
 * first byte says), up to four sub-queues (each plain or keyed with keys
 * 0..3, a priority from -1..1 and a limit of 0..7), a total limit, and four
 * waiters. The operations: make or free a sub-queue, push (with a key, with
 * or without a waiter), pop, block, unblock, clear, set a sub-queue's or the
 * total limit, wait for a sub-queue or the queue to be empty, cancel a
 * waiter, and run the loop once without waiting.
 *
 * The model keeps each sub-queue's items per lane and the turn order: the
 * sub-queues that can give out an item, ordered by priority and then by the
 * time they last joined their priority's turn (on becoming non-empty or
 * unblocked, and after each item they gave while items remain); a keyed
 * sub-queue's keys in their turn order. The checks: every push's return
 * value (0, -EAGAIN, -EBUSY, -EINVAL) is the model's, and so is every item
 * popped, consumed or dropped, in order; a run consumes exactly
 * min(budget, items available); a waiter is called only while registered,
 * only when due (room for its sub-queue, or its target empty), and after
 * every run no due waiter is left registered; the depths, refusal counts
 * and blocked pushers of the queue and each sub-queue equal the model's.
 * Any mismatch aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "rx/queue.h"

#define NSQ 4
#define NKEY 4
#define NW 4
#define MAX_OPS 600

struct mlane {
  uint64_t item[MAX_OPS];
  int head, len;
};

struct msq {
  rx_subqueue *sq;
  int live, prio, keyed, blocked;
  size_t limit, depth;
  uint64_t refused;
  struct mlane lane[NKEY];
  int turn[NKEY], nturn; /* keyed: keys with items, next first */
  uint64_t stamp;        /* when it last joined its priority's turn */
};

enum { W_NONE, W_ROOM, W_EMPTY };

struct fw {
  rx_queue_waiter w;
  int kind;
  int target; /* a sub-queue index, or -1: the whole queue */
};

static rx_loop *loop;
static rx_queue *q;
static struct msq m[NSQ];
static struct fw fw[NW];
static size_t mlimit, mdepth;
static uint64_t mrefused, clock_, next_item;
static unsigned budget;
static int consumed; /* in the current run */

static int sq_index(const rx_subqueue *sq) {
  for (int i = 0; i < NSQ; i++)
    if (m[i].live && m[i].sq == sq)
      return i;
  FZ_CHECK(!"an unknown sub-queue");
  return -1;
}

static int m_has_room(int i) {
  return (m[i].limit == 0 || m[i].depth < m[i].limit) &&
         (mlimit == 0 || mdepth < mlimit);
}

static int m_ready(int i) {
  return m[i].live && m[i].depth > 0 && !m[i].blocked;
}

/* The sub-queue that gives the next item, or -1. */
static int m_next_sq(void) {
  int best = -1;
  for (int i = 0; i < NSQ; i++) {
    if (!m_ready(i))
      continue;
    if (best < 0 || m[i].prio > m[best].prio ||
        (m[i].prio == m[best].prio && m[i].stamp < m[best].stamp))
      best = i;
  }
  return best;
}

/* Takes the next item of sub-queue i, as the queue does. */
static uint64_t m_take(int i) {
  struct msq *s = &m[i];
  int k = s->keyed ? s->turn[0] : 0;
  struct mlane *l = &s->lane[k];
  FZ_CHECK(l->len > 0);
  uint64_t item = l->item[l->head++];
  l->len--;
  if (s->keyed) {
    memmove(&s->turn[0], &s->turn[1], sizeof(int) * (size_t)(s->nturn - 1));
    if (l->len > 0)
      s->turn[s->nturn - 1] = k;
    else
      s->nturn--;
  }
  if (l->len == 0)
    l->head = 0;
  s->depth--;
  mdepth--;
  if (s->depth > 0)
    s->stamp = ++clock_;
  return item;
}

static int m_waiter_due(const struct fw *x) {
  if (x->kind == W_ROOM)
    return m_has_room(x->target);
  if (x->kind == W_EMPTY)
    return x->target < 0 ? mdepth == 0 : m[x->target].depth == 0;
  return 0;
}

static void waiter_cb(rx_queue *qq, rx_subqueue *sq, rx_queue_waiter *w) {
  FZ_CHECK(qq == q);
  struct fw *x = (struct fw *)w;
  FZ_CHECK(x->kind != W_NONE);
  FZ_CHECK(!rx_queue_waiter_active(w));
  FZ_CHECK(sq == (x->target < 0 ? NULL : m[x->target].sq));
  FZ_CHECK(m_waiter_due(x));
  x->kind = W_NONE;
}

static void consume(rx_queue *qq, rx_subqueue *sq, void *item) {
  FZ_CHECK(qq == q);
  FZ_CHECK((unsigned)++consumed <= budget);
  int i = m_next_sq();
  FZ_CHECK(i >= 0 && m[i].sq == sq);
  FZ_CHECK((uint64_t)(uintptr_t)item == m_take(i));
}

/* The sub-queue being cleared or freed; -2: any (rx_queue_free()). */
static int dropping = -1;
static void drop(rx_queue *qq, rx_subqueue *sq, void *item) {
  FZ_CHECK(qq == q);
  int i = dropping == -2 ? sq_index(sq) : dropping;
  FZ_CHECK(i >= 0 && sq == m[i].sq);
  FZ_CHECK((uint64_t)(uintptr_t)item == m_take(i));
}

static void check_state(void) {
  struct rx_queue_stats st;
  FZ_CHECK(rx_queue_stats(q, &st) == 0);
  FZ_CHECK(st.depth == mdepth);
  FZ_CHECK(st.refused == mrefused);
  size_t waiting = 0;
  for (int j = 0; j < NW; j++) {
    FZ_CHECK(rx_queue_waiter_active(&fw[j].w) == (fw[j].kind != W_NONE));
    waiting += fw[j].kind == W_ROOM;
  }
  FZ_CHECK(st.waiting == waiting);
  for (int i = 0; i < NSQ; i++) {
    if (!m[i].live)
      continue;
    FZ_CHECK(rx_subqueue_stats(m[i].sq, &st) == 0);
    FZ_CHECK(st.depth == m[i].depth);
    FZ_CHECK(st.refused == m[i].refused);
    size_t w = 0;
    for (int j = 0; j < NW; j++)
      w += fw[j].kind == W_ROOM && fw[j].target == i;
    FZ_CHECK(st.waiting == w);
    FZ_CHECK(rx_subqueue_blocked(m[i].sq) == m[i].blocked);
  }
}

static void op_new(struct fz_input *in) {
  int i = (int)fz_below(in, NSQ);
  if (m[i].live)
    return;
  struct rx_subqueue_options o;
  o.priority = (int)fz_below(in, 3) - 1;
  o.limit = fz_below(in, 8);
  o.flags = fz_below(in, 2) ? RX_SUBQUEUE_KEYED : 0;
  memset(&m[i], 0, sizeof(m[i]));
  FZ_CHECK(rx_subqueue_new(q, &m[i].sq, &o) == 0);
  m[i].live = 1;
  m[i].prio = o.priority;
  m[i].limit = o.limit;
  m[i].keyed = o.flags != 0;
}

static void forget_waiters(int i) {
  for (int j = 0; j < NW; j++)
    if (fw[j].kind != W_NONE && fw[j].target == i)
      fw[j].kind = W_NONE;
}

static void op_free(int i) {
  dropping = i;
  FZ_CHECK(rx_subqueue_free(m[i].sq) == 0);
  FZ_CHECK(m[i].depth == 0);
  dropping = -1;
  m[i].live = 0;
  forget_waiters(i);
}

static void op_push(struct fz_input *in, int i) {
  int keyed = (int)fz_below(in, 2);
  int key = (int)fz_below(in, NKEY);
  int wi = (int)fz_below(in, NW + 1);
  struct fw *x = wi < NW ? &fw[wi] : NULL;
  uint64_t item = ++next_item;
  rx_queue_waiter *w = x != NULL ? &x->w : NULL;
  int rc = keyed ? rx_queue_push_key(m[i].sq, (uint64_t)key,
                                     (void *)(uintptr_t)item, w)
                 : rx_queue_push(m[i].sq, (void *)(uintptr_t)item, w);
  int want;
  if (keyed && !m[i].keyed) {
    want = -EINVAL;
  } else if (m_has_room(i)) {
    want = 0;
    int k = keyed ? key : 0;
    struct msq *s = &m[i];
    struct mlane *l = &s->lane[k];
    if (s->keyed && l->len == 0)
      s->turn[s->nturn++] = k;
    l->item[l->head + l->len++] = item;
    if (s->depth++ == 0 && !s->blocked)
      s->stamp = ++clock_;
    mdepth++;
  } else {
    m[i].refused++;
    mrefused++;
    want = -EAGAIN;
    if (x != NULL) {
      if (x->kind == W_NONE) {
        x->kind = W_ROOM;
        x->target = i;
      } else if (!(x->kind == W_ROOM && x->target == i)) {
        want = -EBUSY;
      }
    }
  }
  FZ_CHECK(rc == want);
}

static void op_pop(void) {
  void *item = NULL;
  rx_subqueue *sq = NULL;
  int rc = rx_queue_pop(q, &item, &sq);
  int i = m_next_sq();
  if (i < 0) {
    FZ_CHECK(rc == -EAGAIN);
    return;
  }
  FZ_CHECK(rc == 0 && sq == m[i].sq);
  FZ_CHECK((uint64_t)(uintptr_t)item == m_take(i));
}

static void op_run(void) {
  int avail = 0;
  for (int i = 0; i < NSQ; i++)
    if (m_ready(i))
      avail += (int)m[i].depth;
  consumed = 0;
  FZ_CHECK(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  if (budget > 0)
    FZ_CHECK(consumed == (avail < (int)budget ? avail : (int)budget));
  for (int j = 0; j < NW; j++)
    FZ_CHECK(!m_waiter_due(&fw[j]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fz_input in;
  fz_init(&in, data, size);
  if (loop == NULL && rx_loop_new(&loop, NULL) != 0)
    abort();
  memset(m, 0, sizeof(m));
  mdepth = mlimit = 0;
  mrefused = clock_ = next_item = 0;
  budget = fz_below(&in, 5);
  struct rx_queue_options o = {0};
  o.budget = budget;
  o.consume = budget > 0 ? consume : NULL;
  o.drop = drop;
  FZ_CHECK(rx_queue_new(&q, loop, &o) == 0);
  for (int j = 0; j < NW; j++) {
    rx_queue_waiter_init(&fw[j].w, waiter_cb);
    fw[j].kind = W_NONE;
  }
  for (int n = 0; n < MAX_OPS && !fz_done(&in); n++) {
    unsigned op = fz_below(&in, 13);
    int i = (int)fz_below(&in, NSQ);
    int live = m[i].live;
    switch (op) {
    case 0:
      op_new(&in);
      break;
    case 1:
      if (live)
        op_free(i);
      break;
    case 2:
    case 3:
    case 4:
      if (live)
        op_push(&in, i);
      break;
    case 5:
      op_pop();
      break;
    case 6:
      if (live) {
        FZ_CHECK(rx_subqueue_block(m[i].sq) == 0);
        m[i].blocked = 1;
      }
      break;
    case 7:
      if (live) {
        FZ_CHECK(rx_subqueue_unblock(m[i].sq) == 0);
        if (m[i].blocked && m[i].depth > 0)
          m[i].stamp = ++clock_;
        m[i].blocked = 0;
      }
      break;
    case 8:
      if (live) {
        dropping = i;
        long want = (long)m[i].depth;
        FZ_CHECK(rx_subqueue_clear(m[i].sq) == want);
        dropping = -1;
      }
      break;
    case 9: {
      size_t limit = fz_below(&in, 8);
      if (live) {
        FZ_CHECK(rx_subqueue_set_limit(m[i].sq, limit) == 0);
        m[i].limit = limit;
      } else {
        FZ_CHECK(rx_queue_set_limit(q, limit) == 0);
        mlimit = limit;
      }
      break;
    }
    case 10: {
      struct fw *x = &fw[fz_below(&in, NW)];
      int target = live && fz_below(&in, 2) ? i : -1;
      int rc = rx_queue_wait_empty(q, target < 0 ? NULL : m[target].sq, &x->w);
      if (x->kind != W_NONE) {
        FZ_CHECK(rc == -EBUSY);
      } else {
        FZ_CHECK(rc == 0);
        x->kind = W_EMPTY;
        x->target = target;
      }
      break;
    }
    case 11: {
      struct fw *x = &fw[fz_below(&in, NW)];
      FZ_CHECK(rx_queue_waiter_cancel(&x->w) == 0);
      x->kind = W_NONE;
      break;
    }
    default:
      op_run();
      break;
    }
    check_state();
  }
  op_run();
  check_state();
  /* Freeing drops every item, each sub-queue's in take order (drop()
   * checks it): half the sub-queues one by one, the rest with the queue. */
  for (int i = 0; i < NSQ; i++)
    if (m[i].live && (i & 1))
      op_free(i);
  dropping = -2;
  FZ_CHECK(rx_queue_free(q) == 0);
  dropping = -1;
  FZ_CHECK(mdepth == 0);
  q = NULL;
  /* Nothing of the queue's is left on the loop. */
  FZ_CHECK(rx_run(loop, RX_RUN_NOWAIT) == 0);
  return 0;
}
