/*
 * timerwheel.h - the hierarchical timer wheel behind rx_timer.
 *
 * Six levels of 64 slots hold entries by deadline; level L slot s covers
 * 64^L ticks. Entries are caller-owned `struct rx__tw_entry`s (see rx.h);
 * the wheel never allocates, add and del are O(1) and advance costs O(1)
 * per entry per level it descends. The wheel knows nothing of the loop, so
 * it is tested alone against a model (tests/test-timerwheel.c). The design
 * and its references are at the top of timerwheel.c.
 *
 * Time is int64_t nanoseconds. The wheel counts ticks of 2^shift ns since
 * `origin`; an entry due at `at` belongs to tick ceil((at - origin) / tick).
 *
 * Contract for the user (the loop):
 *   - rx__tw_advance(now) hands out an entry only if its deadline is <= now,
 *     and surely if its tick boundary is, or if it was added already due
 *     (at <= the previous advance's now): never early, at most a tick late;
 *   - no advance moves more than a bounded share of a level 1 slot down to
 *     level 0: the slot that starts the next rotation of level 0 is moved
 *     down over the advances of the rotation before it, a part each time
 *     (see "Lateness at scale" in timerwheel.c);
 *   - rx__tw_next() is when to call rx__tw_advance() next; calling it then
 *     always makes progress, so the loop can sleep until it without spinning;
 *   - an entry handed out is on the caller's `out` list, no longer in the
 *     wheel: take it off that list with rx__list_unlink(), not rx__tw_del();
 *   - the 6 `flags` bits of an entry are the user's: the wheel never reads
 *     or writes them.
 */
#ifndef RX_TIMERWHEEL_H
#define RX_TIMERWHEEL_H

#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "rx.h"

#define RX__TW_BITS 6 /* 64 slots per level */
#define RX__TW_SLOTS 64
#define RX__TW_LEVELS 6
/* Two more rows of slots after the levels' hold the next rotation of level 0
 * while it is being moved down (timerwheel.c, rx__tw_stage()): entries taken
 * from the front of their level 1 slot, and from its back. */
#define RX__TW_STAGE RX__TW_LEVELS
#define RX__TW_STAGE_BACK (RX__TW_LEVELS + 1)
#define RX__TW_ROWS (RX__TW_LEVELS + 2)

/* Embedded in the loop by value. Every field is private to timerwheel.c;
 * they are listed here only so that the struct has a size. */
struct rx__tw {
  int64_t origin;   /* the absolute ns that an entry's at == 0 stands for */
  unsigned shift;   /* a tick is 2^shift ns, shift in [10, 30] */
  uint64_t round;   /* 2^shift - 1: rounds a deadline up to its tick */
  uint64_t elapsed; /* ticks since origin fully processed */
  uint64_t reached; /* ns since origin of the latest rx__tw_advance() */
  size_t count;     /* entries in the wheel, expired included */
  /* Set when an entry was added already due (at <= the latest advance's
   * now): the next advance then also takes the partial tick. */
  int due_added;
  /* A lower bound on the tick of every overflow entry, so that the wheel
   * can skip straight to the first top-level rotation that has one. */
  uint64_t overflow_tick;
  /* Exact: bit s is set if and only if slots[row][s] is non-empty. Rows
   * RX__TW_STAGE and RX__TW_STAGE_BACK are the next rotation of level 0,
   * staged; rx__tw_del() finds them by address like any slot. */
  uint64_t occupied[RX__TW_ROWS];
  struct rx__link slots[RX__TW_ROWS][RX__TW_SLOTS];
  /* The rest of the level 1 slot being staged, taken from both ends. */
  struct rx__link pending;
  /* Entries staged per slot, counting some since deleted (a deletion cannot
   * tell a staged entry from one still pending), and a bit per slot for an
   * entry staged out of deadline order. */
  uint32_t count_stage[RX__TW_SLOTS];
  uint64_t unsorted_stage;
  /* Entries staged per advance at most; stage_moved counts this rotation's,
   * which sets the next rotation's rate; stage_min is the least rate. */
  size_t stage_rate, stage_moved, stage_min;
  struct rx__link overflow; /* beyond the top level, in insertion order */
  struct rx__link expired;  /* due (tick <= elapsed), not yet handed out */
  size_t nexpired;          /* entries on `expired` */
  int expired_unsorted;     /* `expired` is not in deadline order */
  /* Level 0 slots go to `expired` whole, without a walk over their (often
   * cold) entries: so each keeps its count, and a bit says whether an entry
   * was appended out of deadline order. */
  uint32_t count0[RX__TW_SLOTS];
  uint64_t unsorted0;
  /* Slots whose count0 is only an upper bound (they came from the stage),
   * made exact by a walk before the slot expires. */
  uint64_t uncounted0;
  /* Level 0 slots whose entries were just loaded into the cache, several
   * lists at once, ahead of their sort (timerwheel.c, rx__tw_warm()). A hint
   * only: a stale bit costs time, never correctness. */
  uint64_t warm0;
  /* Set by the user: every advance also takes the partial tick, so that an
   * entry goes out as soon as its deadline is reached rather than up to a
   * tick later (a manual clock, where "now" jumps exactly to deadlines). */
  int exact;
};

/* Initialises an empty wheel whose time starts at `now`, with a tick of
 * 2^shift ns; shift must be in [10, 30]. */
void rx__tw_init(struct rx__tw *tw, int64_t now, unsigned shift);
/* When to call rx__tw_advance() next (absolute ns): INT64_MAX when empty,
 * the previous advance's now when an entry was added already due, else at
 * most the earliest tick boundary of an entry. O(levels). */
int64_t rx__tw_next(struct rx__tw *tw);
/* Processes the ticks up to `now` and appends to the tail of the list `out`
 * the entries due as the contract above says, in deadline order, ties in
 * the order they were added. O(1) per entry per level it moves down, plus
 * a sort (a radix sort, O(1) per entry for a tick's deadlines) when a
 * tick's deadlines come out of order. */
void rx__tw_advance(struct rx__tw *tw, int64_t now, struct rx__link *out);
/* Entries in the wheel. */
size_t rx__tw_count(const struct rx__tw *tw);
/* 0 if every invariant holds, -EFAULT if one is broken. O(entries); for
 * tests and rx_verify(). */
int rx__tw_validate(const struct rx__tw *tw);
/* Empties the wheel onto the tail of `out`, list by list, so that entries of
 * one tick keep their order (for re-adding them all, shifted in time). */
void rx__tw_take_all(struct rx__tw *tw, struct rx__link *out);
/* Sorts `list`, of exactly n entries, by deadline, stably, without
 * allocation (ticksort.c). For timerwheel.c. */
void rx__tw_sort(struct rx__link *list, size_t n);

/* ---------------------------------------------------------------------------
 * inline definitions: placement, add, del (the paths timer start and stop
 * take, inlined into timer.c).
 */

#define RX__TW_MAX_REL RX__TW_AT_MASK /* fits the 58 bits of the word */
#define RX__TW_SPAN_BITS (RX__TW_BITS * RX__TW_LEVELS)

/* List indices beyond the slots, so that a placement is one small number. */
enum {
  RX__TW_OVERFLOW = RX__TW_LEVELS * RX__TW_SLOTS,
  RX__TW_EXPIRED,
};

static inline struct rx__tw_entry *rx__tw_entry_of(struct rx__link *link) {
  return rx__container_of(link, struct rx__tw_entry, link);
}

/* The deadline relative to origin. */
static inline uint64_t rx__tw_rel(const struct rx__tw_entry *e) {
  return e->word & RX__TW_AT_MASK;
}

/* `at` relative to origin, 0 before it; unsigned, so it cannot overflow. */
static inline uint64_t rx__tw_since(const struct rx__tw *tw, int64_t at) {
  if (at <= tw->origin)
    return 0;
  return (uint64_t)at - (uint64_t)tw->origin;
}

/* origin + rel, saturated at INT64_MAX, without signed overflow. */
static inline int64_t rx__tw_abs(const struct rx__tw *tw, uint64_t rel) {
  uint64_t room = (uint64_t)INT64_MAX - (uint64_t)tw->origin;
  if (rel > room)
    return INT64_MAX;
  if (rel <= (uint64_t)INT64_MAX)
    return tw->origin + (int64_t)rel;
  /* Only a negative origin leaves room for more than INT64_MAX. */
  return (tw->origin + INT64_MAX) + (int64_t)(rel - (uint64_t)INT64_MAX);
}

static inline int64_t rx__tw_time(const struct rx__tw *tw, uint64_t tick) {
  if (tick > (UINT64_MAX >> tw->shift))
    return INT64_MAX;
  return rx__tw_abs(tw, tick << tw->shift);
}

static inline uint64_t rx__tw_tick(const struct rx__tw *tw, uint64_t rel) {
  return (rel + tw->round) >> tw->shift;
}

#define RX__TW_ALWAYS_INLINE inline __attribute__((always_inline))

/* The wheel's index math, in one place: the level of a tick whose highest
 * bit differing from elapsed is that of `diff` (elapsed ^ tick, nonzero),
 * and the slot of `tick` at `level`, its digit there. */
static RX__TW_ALWAYS_INLINE unsigned rx__tw_level_of(uint64_t diff) {
  return (unsigned)(63 - __builtin_clzll(diff)) / RX__TW_BITS;
}

static RX__TW_ALWAYS_INLINE unsigned rx__tw_slot_of(uint64_t tick,
                                                    unsigned level) {
  return (unsigned)(tick >> (level * RX__TW_BITS)) & (RX__TW_SLOTS - 1);
}

/* The level for `tick`, RX__TW_LEVELS and above meaning overflow. Or-ing in
 * the slot mask makes level 0 the minimum and keeps clz's argument nonzero
 * (tokio does the same). */
static inline unsigned rx__tw_level(uint64_t elapsed, uint64_t tick) {
  return rx__tw_level_of((elapsed ^ tick) | (RX__TW_SLOTS - 1));
}

/* The first tick of slot `slot` of `level` in elapsed's current rotation of
 * that level. */
static inline uint64_t rx__tw_slot_start(uint64_t elapsed, unsigned level,
                                         unsigned slot) {
  unsigned lo = level * RX__TW_BITS;
  uint64_t upper = elapsed >> (lo + RX__TW_BITS) << (lo + RX__TW_BITS);
  return upper | ((uint64_t)slot << lo);
}

/* Where an entry of tick `tick` belongs right now: a slot index (level * 64
 * + slot), RX__TW_OVERFLOW or RX__TW_EXPIRED. */
static inline unsigned rx__tw_where(const struct rx__tw *tw, uint64_t tick) {
  unsigned level;
  if (tick <= tw->elapsed)
    return RX__TW_EXPIRED;
  level = rx__tw_level(tw->elapsed, tick);
  if (level >= RX__TW_LEVELS)
    return RX__TW_OVERFLOW;
  return level * RX__TW_SLOTS + rx__tw_slot_of(tick, level);
}

static inline struct rx__link *rx__tw_list(struct rx__tw *tw, unsigned where) {
  if (where == RX__TW_EXPIRED)
    return &tw->expired;
  if (where == RX__TW_OVERFLOW)
    return &tw->overflow;
  return &tw->slots[where / RX__TW_SLOTS][where % RX__TW_SLOTS];
}

/* Links `e` at the tail of the list its deadline and elapsed select. On
 * `expired`, it keeps the count and notes whether deadlines are still in
 * order, so that handing out needs no extra pass over the entries. */
static inline void rx__tw_place(struct rx__tw *tw, struct rx__tw_entry *e) {
  uint64_t tick = rx__tw_tick(tw, rx__tw_rel(e));
  unsigned where = rx__tw_where(tw, tick);

  if (where < RX__TW_SLOTS) {
    struct rx__link *slot = &tw->slots[0][where];
    /* The list, not count0, which may be an upper bound (uncounted0). */
    if (!rx__list_empty(slot) &&
        rx__tw_rel(rx__tw_entry_of(slot->prev)) > rx__tw_rel(e))
      tw->unsorted0 |= UINT64_C(1) << where;
    tw->count0[where]++;
    tw->occupied[0] |= UINT64_C(1) << where;
  } else if (where < RX__TW_OVERFLOW) {
    tw->occupied[where / RX__TW_SLOTS] |= UINT64_C(1) << (where % RX__TW_SLOTS);
  } else if (where == RX__TW_OVERFLOW) {
    if (tick < tw->overflow_tick)
      tw->overflow_tick = tick;
  } else {
    if (tw->nexpired++ > 0 &&
        rx__tw_rel(rx__tw_entry_of(tw->expired.prev)) > rx__tw_rel(e))
      tw->expired_unsorted = 1;
  }
  rx__list_push(rx__tw_list(tw, where), &e->link);
}

/* Adds the unlinked entry `e` due at `at` (absolute ns). A deadline before
 * the origin counts as the origin; one more than 2^58 - 1 ns after it is
 * clamped to that. O(1), inline because timer start is a hot path. */
static inline void rx__tw_add(struct rx__tw *tw, struct rx__tw_entry *e,
                              int64_t at) {
  uint64_t rel = rx__tw_since(tw, at);

  if (rel > RX__TW_MAX_REL)
    rel = RX__TW_MAX_REL;
  e->word = (e->word & ~RX__TW_AT_MASK) | rel;
  tw->count++;
  /* An entry that was due by the last advance must not wait for the next
   * tick boundary: note it, so that the next advance takes the partial
   * tick and rx__tw_next() says "now". */
  if (rel <= tw->reached)
    tw->due_added = 1;
  /* The common case, a deadline beyond the current rotation of level 0 and
   * within the top level's: a bit and a list push. Level 0 (its counts and
   * order bits), entries already due and overflow go to rx__tw_place(). */
  uint64_t tick = rx__tw_tick(tw, rel);
  uint64_t diff = tw->elapsed ^ tick;
  if (tick > tw->elapsed && diff >= RX__TW_SLOTS &&
      diff < (UINT64_C(1) << RX__TW_SPAN_BITS)) {
    unsigned level = rx__tw_level_of(diff);
    unsigned slot = rx__tw_slot_of(tick, level);
    /* Read first: consecutive inserts at one level then do not each wait
     * for the previous one's store to the same word. */
    if (!(tw->occupied[level] & (UINT64_C(1) << slot)))
      tw->occupied[level] |= UINT64_C(1) << slot;
    rx__list_push(&tw->slots[level][slot], &e->link);
    return;
  }
  rx__tw_place(tw, e);
}

/* Removes `e` from the wheel; a no-op when `e` is unlinked. O(1). The list
 * it leaves is known without working out its slot: when `e` was the only
 * entry, its two neighbours are that list's head, whose address says which
 * slot (or list) it is. Only the per-list counts need the deadline: entries
 * due already (tick <= elapsed) are on `expired`, and those in the current
 * rotation of level 0 ((tick ^ elapsed) < 64, rx__tw_level()) in slot
 * tick % 64. A staged entry (next rotation) may be on the stage or still
 * pending, so its count is left: count_stage is an upper bound. */
static inline void rx__tw_del(struct rx__tw *tw, struct rx__tw_entry *e) {
  struct rx__link *next = e->link.next, *prev = e->link.prev;

  if (next == NULL)
    return;
  rx__list_unlink(&e->link);
  tw->count--;
  uint64_t tick = rx__tw_tick(tw, rx__tw_rel(e));
  if (tick <= tw->elapsed)
    tw->nexpired--;
  else if ((tick ^ tw->elapsed) < RX__TW_SLOTS)
    tw->count0[tick % RX__TW_SLOTS]--;
  if (next != prev)
    return; /* the list still holds another entry */
  /* Compared as integers: `next` may be a head outside `slots`. */
  uintptr_t off = (uintptr_t)next - (uintptr_t)&tw->slots[0][0];
  if (off < sizeof(tw->slots)) {
    size_t where = off / sizeof(struct rx__link);
    tw->occupied[where / RX__TW_SLOTS] &=
        ~(UINT64_C(1) << (where % RX__TW_SLOTS));
  } else if (next == &tw->overflow)
    tw->overflow_tick = UINT64_MAX;
}

/* The absolute deadline of `e`, as clamped by rx__tw_add(). */
static inline int64_t rx__tw_at(const struct rx__tw *tw,
                                const struct rx__tw_entry *e) {
  return rx__tw_abs(tw, rx__tw_rel(e));
}

#endif /* RX_TIMERWHEEL_H */
