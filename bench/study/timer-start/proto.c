#include "proto.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NOINL __attribute__((noinline))
#define COLD __attribute__((noinline, cold))
#define MAX_DELAY ((int64_t)PT_AT_MASK)

static inline unsigned tflags(uint64_t w) { return (unsigned)(w >> PT_AT_BITS); }
static inline uint64_t fl(unsigned b) { return (uint64_t)b << PT_AT_BITS; }

int pt_loop_init(pt_loop *L, unsigned shift) {
  memset(L, 0, sizeof *L);
  L->shift = shift;
  L->round = (UINT64_C(1) << shift) - 1;
  L->overflow_tick = UINT64_MAX;
  for (int i = 0; i < PT_NLISTS; i++)
    L->lheads[i].next = L->lheads[i].prev = &L->lheads[i];
  return 0;
}

void pt_timer_init(pt_timer *t, void *cb, int64_t after, int64_t repeat) {
  memset(t, 0, sizeof *t);
  t->cb = (void (*)(void *, pt_timer *, int))cb;
  t->repeat = repeat;
  t->word = (uint64_t)(after < 0 ? 0 : after > MAX_DELAY ? MAX_DELAY : after);
  if (after < 0 || repeat < 0)
    t->word |= fl(PT_INVALID);
}

int pt_timer_set(pt_timer *t, int64_t after, int64_t repeat) {
  if (t == NULL || after < 0 || repeat < 0)
    return -EINVAL;
  if (tflags(t->word) & (PT_ACTIVE | PT_PENDING))
    return -EBUSY;
  t->repeat = repeat;
  t->word = (t->word & ~(PT_AT_MASK | fl(PT_INVALID))) |
            (uint64_t)(after > MAX_DELAY ? MAX_DELAY : after);
  return 0;
}

/* Deadline rel. origin, clamped to 58 bits. */
static inline uint64_t deadline(const pt_loop *L, uint64_t delay) {
  uint64_t rel = L->now_rel + delay;
  return rel > PT_AT_MASK ? PT_AT_MASK : rel;
}

static COLD int start_other(pt_loop *L, pt_timer *t) {
  (void)L;
  if ((tflags(t->word) & PT_INVALID) || t->repeat < 0)
    return -EINVAL;
  return 0; /* already active: no-op (prototype) */
}

/* Common prologue of every variant: argument and state checks. */
#define PROLOGUE()                                                          \
  if (L == NULL || t == NULL)                                               \
    return -EINVAL;                                                         \
  uint64_t word = t->word;                                                  \
  if ((tflags(word) & (PT_INVALID | PT_ACTIVE | PT_PENDING)) || t->repeat < 0) \
    return start_other(L, t);                                               \
  uint64_t rel = deadline(L, word & PT_AT_MASK);

/* ----------------------------------------------------------------- floor */
int pt_floor_start(pt_loop *L, pt_timer *t) {
  PROLOGUE();
  t->word = (word & ~PT_AT_MASK) | rel | fl(PT_ACTIVE);
  L->activecnt++;
  return 0;
}
int pt_floor_stop(pt_loop *L, pt_timer *t) {
  if (!(tflags(t->word) & PT_ACTIVE))
    return 0;
  t->word &= ~fl(PT_ACTIVE);
  L->activecnt--;
  return 0;
}

/* --------------------------------------------------------- placement math */
static inline unsigned where_of(const pt_loop *L, uint64_t tick) {
  if (tick <= L->elapsed)
    return PT_EXPIRED;
  uint64_t diff = (L->elapsed ^ tick) | (PT_SLOTS - 1);
  unsigned level = (unsigned)(63 - __builtin_clzll(diff)) / PT_BITS;
  if (level >= PT_LEVELS)
    return PT_OVERFLOW;
  return level * PT_SLOTS + ((unsigned)(tick >> (level * PT_BITS)) & 63);
}

static inline void mark(pt_loop *L, unsigned where, uint64_t tick) {
  if (where < PT_NSLOT) {
    uint64_t bit = UINT64_C(1) << (where % 64);
    if (!(L->occupied[where / 64] & bit))
      L->occupied[where / 64] |= bit;
  } else if (where == PT_OVERFLOW && tick < L->overflow_tick)
    L->overflow_tick = tick;
}

/* Fast path where: level >= 1, within the top level's rotation. Returns
 * PT_NLISTS when the slow path must decide. */
static inline unsigned fast_where(const pt_loop *L, uint64_t tick) {
  uint64_t diff = L->elapsed ^ tick;
  if (tick > L->elapsed && diff >= PT_SLOTS &&
      diff < (UINT64_C(1) << (PT_BITS * PT_LEVELS))) {
    unsigned level = (unsigned)(63 - __builtin_clzll(diff)) / PT_BITS;
    return level * PT_SLOTS + ((unsigned)(tick >> (level * PT_BITS)) & 63);
  }
  return PT_NLISTS;
}

/* Shared steps, always inlined, so that each variant compiles exactly as if
 * they were written out in it. */
#define ALWAYS static inline __attribute__((always_inline))

/* The deadline and the active flag in one store, and the active count. */
ALWAYS void arm_word(pt_loop *L, pt_timer *t, uint64_t word, uint64_t rel) {
  t->word = (word & ~PT_AT_MASK) | rel | fl(PT_ACTIVE);
  L->activecnt++;
}

ALWAYS uint64_t tick_of(const pt_loop *L, uint64_t rel) {
  return (rel + L->round) >> L->shift;
}

/* The occupancy bit, read first (see rx's rx__tw_add). */
ALWAYS void occupy(pt_loop *L, unsigned where) {
  uint64_t bit = UINT64_C(1) << (where % 64);
  if (!(L->occupied[where / 64] & bit))
    L->occupied[where / 64] |= bit;
}

/* The list or slot of the slow path, marked. */
ALWAYS unsigned slow_where(pt_loop *L, uint64_t rel) {
  uint64_t tick = tick_of(L, rel);
  unsigned where = where_of(L, tick);
  mark(L, where, tick);
  return where;
}

/* List `w` has become empty. */
ALWAYS void vacate(pt_loop *L, size_t w) {
  if (w < PT_NSLOT)
    L->occupied[w / 64] &= ~(UINT64_C(1) << (w % 64));
  else if (w == PT_OVERFLOW)
    L->overflow_tick = UINT64_MAX;
}

/* The end of every stop: the time left as the next delay, the counts. */
ALWAYS int stop_finish(pt_loop *L, pt_timer *t, uint64_t word) {
  uint64_t rel = word & PT_AT_MASK;
  uint64_t left = rel > L->now_rel ? rel - L->now_rel : 0;
  t->word = (word & ~(PT_AT_MASK | fl(PT_ACTIVE))) | left;
  L->activecnt--;
  L->count--;
  return 0;
}

ALWAYS void lpush(struct pt_link *h, struct pt_link *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}

/* ------------------------------------------------------------ (3) arrays */
static COLD void slot_grow(struct pt_slot *s) {
  uint32_t cap = s->cap ? s->cap * 2 : 16;
  struct pt_rec *v = realloc(s->v, (size_t)cap * sizeof *v);
  if (v == NULL)
    abort(); /* prototype; a library would return -ENOMEM before arming */
  s->v = v;
  s->cap = cap;
}

static inline void arr_put(struct pt_slot *s, unsigned where, uint32_t n,
                           uint64_t rel, pt_timer *t) {
  s->v[n].rel = rel;
  s->v[n].t = t;
  s->n = n + 1;
  t->u.a.loc = (where << PT_IDX_BITS) | n;
}

/* Out of line with everything it needs, so that the fast path is a leaf
 * function without a stack frame and this is a tail call. */
static NOINL int arr_append_grow(pt_loop *L, unsigned where, uint64_t rel,
                                 pt_timer *t) {
  struct pt_slot *s = &L->slots[where];
  slot_grow(s);
  arr_put(s, where, s->n, rel, t);
  return 0;
}

static inline void arr_append(pt_loop *L, unsigned where, uint64_t rel,
                              pt_timer *t) {
  struct pt_slot *s = &L->slots[where];
  uint32_t n = s->n;
  if (__builtin_expect(n == s->cap, 0)) {
    arr_append_grow(L, where, rel, t);
    return;
  }
  arr_put(s, where, n, rel, t);
}

static NOINL int arr_place_slow(pt_loop *L, pt_timer *t, uint64_t rel) {
  arr_append(L, slow_where(L, rel), rel, t);
  return 0;
}

int pt_arr_start(pt_loop *L, pt_timer *t) {
  PROLOGUE();
  arm_word(L, t, word, rel);
  L->count++;
  unsigned where = fast_where(L, tick_of(L, rel));
  if (__builtin_expect(where == PT_NLISTS, 0))
    return arr_place_slow(L, t, rel);
  occupy(L, where);
  struct pt_slot *s = &L->slots[where];
  uint32_t n = s->n;
  if (__builtin_expect(n == s->cap, 0))
    return arr_append_grow(L, where, rel, t);
  arr_put(s, where, n, rel, t);
  return 0;
}

static inline void arr_remove(pt_loop *L, pt_timer *t) {
  uint32_t loc = t->u.a.loc;
  unsigned where = loc >> PT_IDX_BITS;
  uint32_t i = loc & PT_IDX_MASK;
  struct pt_slot *s = &L->slots[where];
  uint32_t last = --s->n;
  if (i != last) {
    struct pt_rec r = s->v[last];
    s->v[i] = r;
    r.t->u.a.loc = (where << PT_IDX_BITS) | i;
  }
  if (last == 0)
    vacate(L, where);
}

int pt_arr_stop(pt_loop *L, pt_timer *t) {
  if (L == NULL || t == NULL)
    return -EINVAL;
  uint64_t word = t->word;
  if (!(tflags(word) & PT_ACTIVE))
    return 0;
  arr_remove(L, t);
  return stop_finish(L, t, word);
}

int pt_arr_validate(pt_loop *L) {
  for (unsigned w = 0; w < PT_NLISTS; w++) {
    struct pt_slot *s = &L->slots[w];
    for (uint32_t i = 0; i < s->n; i++) {
      pt_timer *t = s->v[i].t;
      if (t->u.a.loc != ((w << PT_IDX_BITS) | i)) return -1;
      if ((t->word & PT_AT_MASK) != s->v[i].rel) return -2;
      if (!(tflags(t->word) & PT_ACTIVE)) return -3;
    }
    if (w < PT_NSLOT && (!!(L->occupied[w / 64] >> (w % 64) & 1)) != (s->n > 0))
      return -4;
  }
  return 0;
}

/* ------------------------------------------------------ (5a) dlist, rx-like */
static NOINL int list_place_slow(pt_loop *L, pt_timer *t, uint64_t rel) {
  lpush(&L->lheads[slow_where(L, rel)], &t->u.link);
  return 0;
}

int pt_list_start(pt_loop *L, pt_timer *t) {
  PROLOGUE();
  arm_word(L, t, word, rel);
  L->count++;
  unsigned where = fast_where(L, tick_of(L, rel));
  if (__builtin_expect(where == PT_NLISTS, 0))
    return list_place_slow(L, t, rel);
  occupy(L, where);
  struct pt_link *h = &L->lheads[where], *n = &t->u.link;
  n->prev = h->prev; n->next = h; h->prev->next = n; h->prev = n;
  return 0;
}

int pt_list_stop(pt_loop *L, pt_timer *t) {
  if (L == NULL || t == NULL)
    return -EINVAL;
  uint64_t word = t->word;
  if (!(tflags(word) & PT_ACTIVE))
    return 0;
  struct pt_link *n = t->u.link.next, *p = t->u.link.prev;
  p->next = n; n->prev = p;
  t->u.link.next = t->u.link.prev = NULL;
  if (n == p) {
    uintptr_t off = (uintptr_t)n - (uintptr_t)&L->lheads[0];
    if (off < sizeof L->lheads) {
      vacate(L, off / sizeof(struct pt_link));
    }
  }
  return stop_finish(L, t, word);
}

/* ----------------------------------------------------- (5b) hlist (Linux) */
static inline void hpush(struct pt_hnode **head, struct pt_hnode *n) {
  struct pt_hnode *first = *head;
  n->next = first;
  if (first)
    first->pprev = &n->next;
  *head = n;
  n->pprev = head;
}

static NOINL int hlist_place_slow(pt_loop *L, pt_timer *t, uint64_t rel) {
  hpush(&L->hheads[slow_where(L, rel)], &t->u.h);
  return 0;
}

int pt_hlist_start(pt_loop *L, pt_timer *t) {
  PROLOGUE();
  arm_word(L, t, word, rel);
  L->count++;
  unsigned where = fast_where(L, tick_of(L, rel));
  if (__builtin_expect(where == PT_NLISTS, 0))
    return hlist_place_slow(L, t, rel);
  occupy(L, where);
  hpush(&L->hheads[where], &t->u.h);
  return 0;
}

int pt_hlist_stop(pt_loop *L, pt_timer *t) {
  if (L == NULL || t == NULL)
    return -EINVAL;
  uint64_t word = t->word;
  if (!(tflags(word) & PT_ACTIVE))
    return 0;
  struct pt_hnode *n = t->u.h.next, **pp = t->u.h.pprev;
  *pp = n;
  if (n)
    n->pprev = pp;
  t->u.h.next = NULL;
  t->u.h.pprev = NULL;
  if (n == NULL) {
    uintptr_t off = (uintptr_t)pp - (uintptr_t)&L->hheads[0];
    if (off < sizeof L->hheads && *pp == NULL) {
      vacate(L, off / sizeof(L->hheads[0]));
    }
  }
  return stop_finish(L, t, word);
}

/* ---------------------------------------------- (5c) deferred placement */
int pt_defer_start(pt_loop *L, pt_timer *t) {
  PROLOGUE();
  arm_word(L, t, word, rel);
  L->count++;
  struct pt_slot *s = &L->slots[PT_INCOMING];
  uint32_t n = s->n;
  if (__builtin_expect(n == s->cap, 0))
    return arr_append_grow(L, PT_INCOMING, rel, t);
  arr_put(s, PT_INCOMING, n, rel, t);
  return 0;
}

int pt_defer_stop(pt_loop *L, pt_timer *t) { return pt_arr_stop(L, t); }

/* Moves every incoming record to its wheel slot: done once per loop
 * iteration, before the wheel is advanced. */
void pt_defer_flush(pt_loop *L) {
  struct pt_slot *in = &L->slots[PT_INCOMING];
  for (uint32_t i = 0; i < in->n; i++) {
    uint64_t rel = in->v[i].rel;
    pt_timer *t = in->v[i].t;
    uint64_t tick = (rel + L->round) >> L->shift;
    unsigned where = fast_where(L, tick);
    if (where == PT_NLISTS) {
      where = where_of(L, tick);
      mark(L, where, tick);
    } else {
      L->occupied[where / 64] |= UINT64_C(1) << (where % 64);
    }
    arr_append(L, where, rel, t);
  }
  in->n = 0;
}

/* ------------------------------------------------------------ lean variants
 * where for the fast path from a table indexed by the highest differing bit
 * b of (elapsed ^ tick): (level * 6) << 9 | level * 64 for 6 <= b < 36,
 * 0xffff (slow path: level 0 or overflow) otherwise. */
#define W(b) ((b) < 6 || (b) >= 36 ? 0xffff : (((b) / 6 * 6) << 9) | ((b) / 6 * 64))
static const uint16_t where_tab[64] = {
  W(0),W(1),W(2),W(3),W(4),W(5),W(6),W(7),W(8),W(9),W(10),W(11),W(12),W(13),
  W(14),W(15),W(16),W(17),W(18),W(19),W(20),W(21),W(22),W(23),W(24),W(25),
  W(26),W(27),W(28),W(29),W(30),W(31),W(32),W(33),W(34),W(35),W(36),W(37),
  W(38),W(39),W(40),W(41),W(42),W(43),W(44),W(45),W(46),W(47),W(48),W(49),
  W(50),W(51),W(52),W(53),W(54),W(55),W(56),W(57),W(58),W(59),W(60),W(61),
  W(62),W(63)};

static inline unsigned lean_where(const pt_loop *L, uint64_t tick) {
  uint64_t el = L->elapsed;
  if (tick <= el)
    return PT_NLISTS;
  unsigned e = where_tab[63 - __builtin_clzll(el ^ tick)];
  if (e == 0xffff)
    return PT_NLISTS;
  return (e & 511) + ((unsigned)(tick >> (e >> 9)) & 63);
}

#define LEAN_PROLOGUE()                                                     \
  PROLOGUE();                                                               \
  arm_word(L, t, word, rel);                                                \
  uint64_t tick = tick_of(L, rel);                                          \
  uint64_t el_ = L->elapsed;                                                \
  unsigned e_ = where_tab[63 - __builtin_clzll((el_ ^ tick) | 1)];          \
  if (__builtin_expect(tick <= el_ || e_ == 0xffff, 0))                     \
    goto slow;                                                              \
  unsigned where = (e_ & 511) + ((unsigned)(tick >> (e_ >> 9)) & 63);

int pt_arrL_start(pt_loop *L, pt_timer *t) {
  LEAN_PROLOGUE();
  occupy(L, where);
  struct pt_slot *s = &L->slots[where];
  uint32_t n = s->n;
  if (__builtin_expect(n == s->cap, 0))
    return arr_append_grow(L, where, rel, t);
  arr_put(s, where, n, rel, t);
  return 0;
slow:
  return arr_place_slow(L, t, rel);
}

int pt_listL_start(pt_loop *L, pt_timer *t) {
  LEAN_PROLOGUE();
  occupy(L, where);
  struct pt_link *h = &L->lheads[where], *n = &t->u.link;
  n->prev = h->prev; n->next = h; h->prev->next = n; h->prev = n;
  return 0;
slow:
  return list_place_slow(L, t, rel);
}

int pt_hlistL_start(pt_loop *L, pt_timer *t) {
  LEAN_PROLOGUE();
  occupy(L, where);
  hpush(&L->hheads[where], &t->u.h);
  return 0;
slow:
  return hlist_place_slow(L, t, rel);
}

/* ----------------------------------------------------------- minimal variants */
#define PT_SHIFT 20
#define MIN_PROLOGUE()                                                      \
  PROLOGUE();                                                               \
  arm_word(L, t, word, rel);                                                \
  uint64_t tick = (rel + ((UINT64_C(1) << PT_SHIFT) - 1)) >> PT_SHIFT;      \
  uint64_t el_ = L->elapsed;                                                \
  unsigned e_ = where_tab[63 - __builtin_clzll((el_ ^ tick) | 1)];          \
  if (__builtin_expect(tick <= el_ || e_ == 0xffff, 0))                     \
    goto slow;                                                              \
  unsigned where = (e_ & 511) + ((unsigned)(tick >> (e_ >> 9)) & 63);

static NOINL int set_occupied(pt_loop *L, unsigned where) {
  L->occupied[where / 64] |= UINT64_C(1) << (where % 64);
  return 0;
}

int pt_arrM_start(pt_loop *L, pt_timer *t) {
  MIN_PROLOGUE();
  struct pt_slot *s = &L->slots[where];
  uint32_t n = s->n;
  if (__builtin_expect(n == s->cap, 0))
    goto grow;
  arr_put(s, where, n, rel, t);
  if (__builtin_expect(n == 0, 0))
    return set_occupied(L, where);
  return 0;
grow:
  arr_append_grow(L, where, rel, t);
  return set_occupied(L, where);
slow:
  return arr_place_slow(L, t, rel);
}

int pt_listM_start(pt_loop *L, pt_timer *t) {
  MIN_PROLOGUE();
  struct pt_link *h = &L->lheads[where], *n = &t->u.link, *p = h->prev;
  n->prev = p; n->next = h; p->next = n; h->prev = n;
  if (__builtin_expect(p == h, 0))
    return set_occupied(L, where);
  return 0;
slow:
  return list_place_slow(L, t, rel);
}

int pt_hlistM_start(pt_loop *L, pt_timer *t) {
  MIN_PROLOGUE();
  struct pt_hnode **head = &L->hheads[where], *first = *head, *n = &t->u.h;
  n->next = first;
  n->pprev = head;
  *head = n;
  if (__builtin_expect(first == NULL, 0))
    return set_occupied(L, where);
  first->pprev = &n->next;
  return 0;
slow:
  return hlist_place_slow(L, t, rel);
}
