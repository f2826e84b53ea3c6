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

/* Embedded in the loop by value. Every field is private to timerwheel.c;
 * they are listed here only so that the struct has a size. */
struct rx__tw {
  int64_t origin;   /* the absolute ns that an entry's at == 0 stands for */
  unsigned shift;   /* a tick is 2^shift ns, shift in [10, 30] */
  uint64_t elapsed; /* ticks since origin fully processed */
  uint64_t reached; /* ns since origin of the latest rx__tw_advance() */
  size_t count;     /* entries in the wheel, expired included */
  /* Set when an entry was added already due (at <= the latest advance's
   * now): the next advance then also takes the partial tick. */
  int due_added;
  /* A lower bound on the tick of every overflow entry, so that the wheel
   * can skip straight to the first top-level rotation that has one. */
  uint64_t overflow_tick;
  /* Exact: bit s is set if and only if slots[level][s] is non-empty. */
  uint64_t occupied[RX__TW_LEVELS];
  struct rx__link slots[RX__TW_LEVELS][RX__TW_SLOTS];
  struct rx__link overflow; /* beyond the top level, in insertion order */
  struct rx__link expired;  /* due (tick <= elapsed), not yet handed out */
};

/* Initialises an empty wheel whose time starts at `now`, with a tick of
 * 2^shift ns; shift must be in [10, 30]. */
void rx__tw_init(struct rx__tw *tw, int64_t now, unsigned shift);
/* Adds the unlinked entry `e` due at `at` (absolute ns). A deadline before
 * the origin counts as the origin, one after origin + 2^58 - 1 ns (9.1
 * years) as that. O(1). */
void rx__tw_add(struct rx__tw *tw, struct rx__tw_entry *e, int64_t at);
/* Removes `e` from the wheel; a no-op when `e` is unlinked. O(1). */
void rx__tw_del(struct rx__tw *tw, struct rx__tw_entry *e);
/* The absolute deadline of `e`, as clamped by rx__tw_add(). */
int64_t rx__tw_at(const struct rx__tw *tw, const struct rx__tw_entry *e);
/* When to call rx__tw_advance() next (absolute ns): INT64_MAX when empty,
 * the previous advance's now when an entry was added already due, else at
 * most the earliest tick boundary of an entry. O(levels). */
int64_t rx__tw_next(struct rx__tw *tw);
/* Processes the ticks up to `now` and appends to the tail of the list `out`
 * the entries due as the contract above says, in deadline order, ties in
 * the order they were added. O(1) per entry per level it moves down, plus
 * a sort when a tick's deadlines come out of order. */
void rx__tw_advance(struct rx__tw *tw, int64_t now, struct rx__link *out);
/* Entries in the wheel. */
size_t rx__tw_count(const struct rx__tw *tw);
/* 0 if every invariant holds, -EFAULT if one is broken. O(entries); for
 * tests and rx_verify(). */
int rx__tw_validate(const struct rx__tw *tw);

#endif /* RX_TIMERWHEEL_H */
