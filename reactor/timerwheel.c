/*
 * timerwheel.c - a hierarchical timer wheel: O(1) add and del, no allocation.
 *
 * Time is counted in ticks of 2^shift ns since `origin`; an entry due at
 * `at` belongs to tick t = ceil((at - origin) / 2^shift), and `elapsed` is
 * the last tick processed. Six levels of 64 slots: the level is the digit
 * (6 bits) of the highest bit in which elapsed and t differ, the slot is
 * t's digit at that level (tokio's index math). As the placement is a pure
 * function of (elapsed, t):
 *
 *   - del finds an entry's list from its deadline alone, so the occupancy
 *     bitmaps are exact (bit s set iff slot s is non-empty);
 *   - a level's occupied slots all lie after elapsed's digit at that level
 *     (a slot is emptied when elapsed reaches its first tick), so the next
 *     slot is the lowest set bit, without the rotation tokio does first;
 *   - entries of one tick are always on one list, which keeps ties in
 *     insertion order (see rx__tw_cascade()).
 *
 * Ticks <= elapsed wait on `expired`. Ticks beyond the top level's current
 * rotation of 2^36 ticks (19.5 hours at the 1 us minimum tick, 1.1 years at
 * the default 2^19 ns) wait on `overflow` until elapsed reaches theirs.
 *
 * rx__tw_advance(now) jumps from occupied slot to occupied slot, not tick by
 * tick. A level 0 slot is one tick and goes to `expired` whole; a higher
 * slot is taken whole and its entries added again, one level lower or more,
 * except that the level 1 slot of the next rotation of level 0 is staged
 * ahead, a part at each advance (below).
 * Ticks are processed up to floor(now), or up to ceil(now) when an entry
 * added since the last call was already due (a zero-delay timer, a repeat
 * catching up): it goes out now rather than up to a tick later. What is
 * handed out is filtered by deadline <= now, so never early either way.
 *
 * Lateness at scale: a level 1 slot spans 64 ticks, and moving it down
 * costs a memory latency or so per entry (its entries are cold). With
 * 1,000,000 timers due in 1..1000 ms at the default tick, a slot holds about
 * 33,000, and cascading one whole at its first tick made that tick several
 * ms late, every 64 ticks. So the
 * slot that holds the next rotation of level 0 (slot d + 1 while elapsed's
 * level 1 digit is d, d < 63) is moved down while level 0 ticks through the
 * current rotation, at most stage_rate entries per advance: enough to move
 * the previous such slot in 32 advances, and at least stage_min (1024).
 * The slot's list is first taken whole onto `pending` (so that entries added
 * to the slot meanwhile, which land behind, cannot be mixed with it) and
 * walked from both ends at once, as rx__tw_cascade_slot() does and for the
 * same reason; front entries are appended to a row of 64 "stage" lists,
 * back ones prepended to a second row, per tick, and the rows become level
 * 0 when elapsed reaches the rotation (rx__tw_promote()): stage, the rest of
 * pending, back row, and what was added to the slot meanwhile, in that
 * order, which is list order for every tick. Of the alternatives, placing
 * entries at level 0 directly is not possible before their rotation (its
 * slots are still the current rotation's), and a lazier cascade (only the
 * next few ticks' entries) needs the slot sorted or scanned first, which is
 * the cost being spread. The staging only rides on advances the loop makes
 * anyway: a loop that sleeps through a whole rotation (nothing due in it)
 * still cascades the next slot at once, as before.
 *
 * Placement stays a pure function of (elapsed, tick) for adds, so add and
 * del stay O(1) and unchanged: a staged entry's place is known only to be
 * on the stage or on `pending` (both in its rotation), which del needs not
 * tell apart, except for the per-slot counts. So the counts of staged slots
 * are upper bounds (count_stage, then count0 with the uncounted0 bit), made
 * exact by the walk that warms a level 0 slot before it expires
 * (rx__tw_warm()), or by a walk of its own when it was not warmed.
 *
 * References: h2o lib/common/timerwheel.c for the API (absolute expiry,
 * collect expired entries into a list, then run them, so callbacks may
 * re-add; a validate mode); tokio tokio/src/runtime/time/wheel/ for the
 * level and slot arithmetic and the occupancy bitmaps; Varghese and Lauck,
 * "Hashed and Hierarchical Timing Wheels" (SOSP 1987) for the structure.
 */
#include "timerwheel.h"

#include <errno.h>

/* The least number of entries staged per advance (see "Lateness at scale"
 * above): about 65 us of cold moves, and enough to stage 64,000 entries in a
 * rotation before there is a previous rotation to go by. */
#define RX__TW_STAGE_MIN 1024
/* The rate stages a slot the size of the previous one in this many
 * advances, half a rotation, leaving room for ticks without an advance. */
#define RX__TW_STAGE_SPREAD 32

void rx__tw_init(struct rx__tw *tw, int64_t now, unsigned shift) {
  unsigned level, slot;

  /* The loop validates its option; a bad shift is clamped, not trusted. */
  if (shift < 10)
    shift = 10;
  if (shift > 30)
    shift = 30;
  tw->origin = now;
  tw->shift = shift;
  tw->round = (UINT64_C(1) << shift) - 1;
  tw->elapsed = 0;
  tw->reached = 0;
  tw->count = 0;
  tw->overflow_tick = UINT64_MAX;
  tw->due_added = 0;
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    tw->count0[slot] = 0;
  tw->unsorted0 = 0;
  tw->uncounted0 = 0;
  tw->warm0 = 0;
  for (level = 0; level < RX__TW_ROWS; level++) {
    tw->occupied[level] = 0;
    for (slot = 0; slot < RX__TW_SLOTS; slot++)
      rx__list_init(&tw->slots[level][slot]);
  }
  rx__list_init(&tw->pending);
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    tw->count_stage[slot] = 0;
  tw->unsorted_stage = 0;
  tw->stage_min = RX__TW_STAGE_MIN;
  tw->stage_rate = RX__TW_STAGE_MIN;
  tw->stage_moved = 0;
  rx__list_init(&tw->overflow);
  rx__list_init(&tw->expired);
  tw->nexpired = 0;
  tw->expired_unsorted = 0;
  tw->exact = 0;
}

size_t rx__tw_count(const struct rx__tw *tw) {
  return tw->count;
}

/* Whether part of the next rotation of level 0 is staged or pending. */
static int rx__tw_staged(const struct rx__tw *tw) {
  return (tw->occupied[RX__TW_STAGE] | tw->occupied[RX__TW_STAGE_BACK]) != 0 ||
         !rx__list_empty(&tw->pending);
}

/* The first tick after elapsed at which something must be done, and what:
 * the level whose slot starts then, RX__TW_LEVELS for moving the overflow
 * in, or -1 when the wheel and the overflow are empty. The lowest occupied
 * level always wins: its slots lie inside elapsed's current slot of every
 * level above. O(levels). */
static int rx__tw_next_tick(const struct rx__tw *tw, uint64_t *tick) {
  uint64_t rotation, first;
  unsigned level;

  if (tw->occupied[0] != 0) {
    *tick = rx__tw_slot_start(tw->elapsed, 0,
                              (unsigned)__builtin_ctzll(tw->occupied[0]));
    return 0;
  }
  /* The staged rotation starts at the next level 1 slot boundary, before
   * any level 1 slot that is still occupied. */
  if (rx__tw_staged(tw)) {
    *tick = ((tw->elapsed >> RX__TW_BITS) + 1) << RX__TW_BITS;
    return 1;
  }
  for (level = 1; level < RX__TW_LEVELS; level++) {
    if (tw->occupied[level] != 0) {
      unsigned slot = (unsigned)__builtin_ctzll(tw->occupied[level]);
      *tick = rx__tw_slot_start(tw->elapsed, level, slot);
      return (int)level;
    }
  }
  if (rx__list_empty(&tw->overflow))
    return -1;
  /* Nothing can be moved in before the next rotation, nor before the
   * rotation of the earliest overflow entry; overflow_tick is a lower bound
   * on that, so a long empty stretch is crossed in one step. */
  rotation = ((tw->elapsed >> RX__TW_SPAN_BITS) + 1) << RX__TW_SPAN_BITS;
  first = tw->overflow_tick >> RX__TW_SPAN_BITS << RX__TW_SPAN_BITS;
  *tick = first > rotation ? first : rotation;
  return RX__TW_LEVELS;
}

int64_t rx__tw_next(struct rx__tw *tw) {
  uint64_t tick;

  if (tw->count == 0)
    return INT64_MAX;
  /* An entry added already due: the time of the last advance, which has
   * passed, and advancing to it takes the partial tick. */
  if (tw->due_added)
    return rx__tw_abs(tw, tw->reached);
  /* Expired entries are due by the end of tick `elapsed`: all of them when
   * it is not after the last advance, and otherwise (the partial tick was
   * taken) the remaining ones belong to tick `elapsed` exactly. */
  if (!rx__list_empty(&tw->expired))
    return rx__tw_time(tw, tw->elapsed);
  if (rx__tw_next_tick(tw, &tick) < 0)
    return INT64_MAX;
  return rx__tw_time(tw, tick);
}

/* Empties `list` (the overflow) and adds its entries again now that elapsed
 * has reached its first tick; they land on the wheel, on `expired`, or back
 * on the overflow.
 *
 * Why ties stay in insertion order: entries of one tick are always on the
 * same list, since their placement depends only on (elapsed, tick). A later
 * add of that tick is appended behind the earlier ones; a cascade moves
 * them all together, in list order, to the tail of a list that cannot hold
 * an entry of their tick yet (it would have been in this slot). An entry
 * only ever moves down (overflow, higher level, lower level, expired) as
 * elapsed grows, so it never comes back behind an entry added after it. */
static void rx__tw_cascade(struct rx__tw *tw, struct rx__link *list) {
  struct rx__link batch;
  struct rx__link *link;

  rx__list_init(&batch);
  rx__list_splice(&batch, list);
  while ((link = rx__list_shift(&batch)) != NULL) {
    /* The walk is a chain of cache misses on cold timers: start loading
     * the next one while this one is placed. */
    __builtin_prefetch(batch.next->next);
    rx__tw_place(tw, rx__tw_entry_of(link));
  }
}

/* Prepends `link` to `head`: walking a list backwards and prepending what
 * it meets rebuilds that part in list order. */
static inline void rx__tw_prepend(struct rx__link *head,
                                  struct rx__link *link) {
  link->next = head->next;
  link->prev = head;
  head->next->prev = link;
  head->next = link;
}

/* The cascade of slot `slot` of `level` (>= 1), as rx__tw_cascade() above
 * but walking the list from both ends at once.
 *
 * Why: the entries of a slot were added long ago and are cold, and walking
 * a linked list costs a full memory latency per entry, as the address of
 * the next entry is known only once this one has arrived. Two walks, one
 * from each end, keep two misses in flight, which halves the cost.
 *
 * Order: the front walk appends to the destination lists as the plain
 * cascade does. The back walk meets entries in reverse, so it prepends
 * them to a local list per level-below slot, which rebuilds their order;
 * once the walks meet, each local list is spliced behind its slot. The few
 * back entries bound lower still or for `expired` (those whose digit at
 * the level below is elapsed's, 0 here) are collected on `rest`, in order,
 * and placed last. Either way, what the back walk found goes behind what
 * the front walk found, which is list order for every tick. The levels
 * below are empty when a slot cascades (the lowest occupied level is
 * always taken first), except level 0 when it just received the staged
 * part of the same rotation (rx__tw_promote()), which came before in list
 * order: the splice checks the order against what is there.
 *
 * `list` is the slot, or `pending`, whose entries all belong to level
 * `below`'s slots or to `expired`. Returns the number of entries moved. */
static size_t rx__tw_cascade_list(struct rx__tw *tw, struct rx__link *list,
                                  unsigned below) {
  struct rx__link back[RX__TW_SLOTS]; /* valid where `used` has the bit */
  uint32_t nback[RX__TW_SLOTS];
  struct rx__link rest, *front, *tail, *link;
  uint64_t used = 0;
  size_t n = 0;

  if (rx__list_empty(list))
    return 0;
  front = list->next;
  tail = list->prev;
  rx__list_init(list);
  rx__list_init(&rest);
  for (;;) {
    struct rx__link *front_next, *tail_prev;
    struct rx__tw_entry *e;
    unsigned where, s;
    uint64_t bit;

    if (front == tail) {
      rx__tw_place(tw, rx__tw_entry_of(front));
      n++;
      break;
    }
    /* Read both neighbours before either entry is relinked. */
    front_next = front->next;
    tail_prev = tail->prev;
    rx__tw_place(tw, rx__tw_entry_of(front));
    e = rx__tw_entry_of(tail);
    where = rx__tw_where(tw, rx__tw_tick(tw, rx__tw_rel(e)));
    if (where / RX__TW_SLOTS != below) {
      rx__tw_prepend(&rest, tail);
    } else {
      s = where % RX__TW_SLOTS;
      bit = UINT64_C(1) << s;
      if (!(used & bit)) {
        used |= bit;
        rx__list_init(&back[s]);
        nback[s] = 0;
      } else if (below == 0 &&
                 rx__tw_rel(rx__tw_entry_of(back[s].next)) < rx__tw_rel(e)) {
        tw->unsorted0 |= bit; /* e goes before an earlier deadline */
      }
      nback[s]++;
      rx__tw_prepend(&back[s], tail);
    }
    n += 2;
    if (front_next == tail)
      break;
    front = front_next;
    tail = tail_prev;
  }
  while (used != 0) {
    unsigned s = (unsigned)__builtin_ctzll(used);
    uint64_t bit = UINT64_C(1) << s;
    struct rx__link *dst = &tw->slots[below][s];

    used &= used - 1;
    if (below == 0) {
      if (!rx__list_empty(dst) && rx__tw_rel(rx__tw_entry_of(dst->prev)) >
                                      rx__tw_rel(rx__tw_entry_of(back[s].next)))
        tw->unsorted0 |= bit;
      tw->count0[s] += nback[s];
    }
    tw->occupied[below] |= bit;
    rx__list_splice(dst, &back[s]);
  }
  while ((link = rx__list_shift(&rest)) != NULL)
    rx__tw_place(tw, rx__tw_entry_of(link));
  return n;
}

static size_t rx__tw_cascade_slot(struct rx__tw *tw, unsigned level,
                                  unsigned slot) {
  return rx__tw_cascade_list(tw, &tw->slots[level][slot], level - 1);
}

/* Splices `src` behind `dst`, setting `bit` in *unsorted when that puts an
 * earlier deadline behind a later one. */
static void rx__tw_join(struct rx__link *dst, struct rx__link *src,
                        uint64_t bit, uint64_t *unsorted) {
  if (rx__list_empty(src))
    return;
  if (!rx__list_empty(dst) && rx__tw_rel(rx__tw_entry_of(dst->prev)) >
                                  rx__tw_rel(rx__tw_entry_of(src->next)))
    *unsorted |= bit;
  rx__list_splice(dst, src);
}

/* Stages `link`, taken from the front of `pending`: to the tail of its
 * tick's list on the stage row. */
static inline void rx__tw_stage_front(struct rx__tw *tw,
                                      struct rx__link *link) {
  struct rx__tw_entry *e = rx__tw_entry_of(link);
  unsigned s = rx__tw_slot_of(rx__tw_tick(tw, rx__tw_rel(e)), 0);
  struct rx__link *head = &tw->slots[RX__TW_STAGE][s];
  uint64_t bit = UINT64_C(1) << s;

  if (!rx__list_empty(head) &&
      rx__tw_rel(rx__tw_entry_of(head->prev)) > rx__tw_rel(e))
    tw->unsorted_stage |= bit;
  tw->count_stage[s]++;
  tw->occupied[RX__TW_STAGE] |= bit;
  rx__list_push(head, link);
}

/* Stages `link`, taken from the back of `pending`: to the head of its
 * tick's list on the back row, which rebuilds list order. */
static inline void rx__tw_stage_back(struct rx__tw *tw, struct rx__link *link) {
  struct rx__tw_entry *e = rx__tw_entry_of(link);
  unsigned s = rx__tw_slot_of(rx__tw_tick(tw, rx__tw_rel(e)), 0);
  struct rx__link *head = &tw->slots[RX__TW_STAGE_BACK][s];
  uint64_t bit = UINT64_C(1) << s;

  if (!rx__list_empty(head) &&
      rx__tw_rel(e) > rx__tw_rel(rx__tw_entry_of(head->next)))
    tw->unsorted_stage |= bit;
  tw->count_stage[s]++;
  tw->occupied[RX__TW_STAGE_BACK] |= bit;
  rx__tw_prepend(head, link);
}

/* Stages up to stage_rate entries of the level 1 slot that holds the next
 * rotation of level 0 (see "Lateness at scale" at the top). Called at the
 * end of every advance; nothing to do (a few instructions) unless that
 * slot is occupied or partly staged. */
static void rx__tw_stage(struct rx__tw *tw) {
  struct rx__link *pending = &tw->pending, *link;
  unsigned digit = rx__tw_slot_of(tw->elapsed, 1);
  size_t moved = 0;

  if (rx__list_empty(pending)) {
    uint64_t bit, back;

    /* At digit 63 the next rotation is in a slot of a higher level. */
    if (digit == RX__TW_SLOTS - 1)
      return;
    bit = UINT64_C(1) << (digit + 1);
    if (!(tw->occupied[1] & bit))
      return;
    /* The slot again, with what was added to it since the last time it
     * was taken: that goes behind all that was staged before, back row
     * included, so the back row joins the front one first. */
    back = tw->occupied[RX__TW_STAGE_BACK];
    while (back != 0) {
      unsigned s = (unsigned)__builtin_ctzll(back);
      back &= back - 1;
      rx__tw_join(&tw->slots[RX__TW_STAGE][s], &tw->slots[RX__TW_STAGE_BACK][s],
                  UINT64_C(1) << s, &tw->unsorted_stage);
    }
    tw->occupied[RX__TW_STAGE] |= tw->occupied[RX__TW_STAGE_BACK];
    tw->occupied[RX__TW_STAGE_BACK] = 0;
    tw->occupied[1] &= ~bit;
    rx__list_splice(pending, &tw->slots[1][digit + 1]);
  }
  /* The two walks are independent chains of loads, so two cache misses
   * are in flight rather than one. */
  while (moved < tw->stage_rate) {
    if ((link = pending->next) == pending)
      break;
    rx__list_unlink(link);
    rx__tw_stage_front(tw, link);
    if ((link = pending->prev) == pending) {
      moved++;
      break;
    }
    rx__list_unlink(link);
    rx__tw_stage_back(tw, link);
    moved += 2;
  }
  tw->stage_moved += moved;
}

/* Makes the staged rotation level 0, now that elapsed has reached its first
 * tick (level 0 is empty then): the stage row, the rest of `pending`, then
 * the back row, which is list order (the slot's own rest, added meanwhile,
 * follows in the caller). Entries of the first tick, now due, go through
 * rx__tw_place() to `expired` in that same order. Returns how many entries
 * were moved here rather than staged. */
static size_t rx__tw_promote(struct rx__tw *tw) {
  uint64_t front = tw->occupied[RX__TW_STAGE];
  uint64_t back = tw->occupied[RX__TW_STAGE_BACK];
  uint64_t bits = (front | back) & ~UINT64_C(1);
  struct rx__link *link;
  size_t n;
  unsigned s;

  if (!rx__tw_staged(tw))
    return 0;
  while ((link = rx__list_shift(&tw->slots[RX__TW_STAGE][0])) != NULL)
    rx__tw_place(tw, rx__tw_entry_of(link));
  /* The counts include entries deleted while staged: upper bounds, also
   * where all of a slot's were deleted. */
  for (s = 1; s < RX__TW_SLOTS; s++) {
    if (tw->count_stage[s] != 0) {
      tw->count0[s] += tw->count_stage[s];
      tw->uncounted0 |= UINT64_C(1) << s;
      tw->count_stage[s] = 0;
    }
  }
  tw->count_stage[0] = 0;
  tw->unsorted0 |= tw->unsorted_stage & bits;
  tw->unsorted_stage = 0;
  front &= ~UINT64_C(1);
  tw->occupied[0] |= front;
  while (front != 0) {
    s = (unsigned)__builtin_ctzll(front);
    front &= front - 1;
    rx__list_splice(&tw->slots[0][s], &tw->slots[RX__TW_STAGE][s]);
  }
  tw->occupied[RX__TW_STAGE] = 0;
  n = rx__tw_cascade_list(tw, &tw->pending, 0);
  while ((link = rx__list_shift(&tw->slots[RX__TW_STAGE_BACK][0])) != NULL)
    rx__tw_place(tw, rx__tw_entry_of(link));
  back &= ~UINT64_C(1);
  tw->occupied[0] |= back;
  while (back != 0) {
    s = (unsigned)__builtin_ctzll(back);
    back &= back - 1;
    rx__tw_join(&tw->slots[0][s], &tw->slots[RX__TW_STAGE_BACK][s],
                UINT64_C(1) << s, &tw->unsorted0);
  }
  tw->occupied[RX__TW_STAGE_BACK] = 0;
  return n;
}

/* Level 0 slots warmed at once, and at most this many entries in them, so
 * that they are still in the cache (L2) when their ticks come. */
#define RX__TW_WARM_SLOTS 4
#define RX__TW_WARM_MAX 4096

/* Loads into the cache the entries of level 0 slot `s` and of the next
 * occupied slots after it, walking each from both ends, all at once.
 *
 * Why: a slot's entries, cascaded up to 64 ticks ago, have left the faster
 * caches, and the first walk over them (the sort of an unsorted slot, or
 * the user's walk over what is handed out) is a memory latency per entry,
 * one after the other. Walking 4 slots from both ends keeps 8 misses in
 * flight, and the 3 slots warmed ahead are walked from the cache when
 * their ticks come (more slots at once did no better). Slots already in
 * deadline order, which go out without a sort, are warmed too: the loop's
 * walk over the due timers would be the cold one. */
static void rx__tw_warm(struct rx__tw *tw, unsigned s) {
  struct rx__link *front[RX__TW_WARM_SLOTS], *tail[RX__TW_WARM_SLOTS];
  unsigned slot[RX__TW_WARM_SLOTS];
  uint32_t len[RX__TW_WARM_SLOTS];
  /* Slot s's occupancy bit was cleared as the advance took it. */
  uint64_t todo = (tw->occupied[0] | UINT64_C(1) << s) & ~tw->warm0 &
                  (~UINT64_C(0) << s);
  size_t total = 0;
  unsigned k = 0, i, moved;

  while (todo != 0 && k < RX__TW_WARM_SLOTS) {
    unsigned t = (unsigned)__builtin_ctzll(todo);
    struct rx__link *head = &tw->slots[0][t];

    todo &= todo - 1;
    total += tw->count0[t];
    if (total > RX__TW_WARM_MAX)
      break;
    tw->warm0 |= UINT64_C(1) << t;
    front[k] = head->next;
    tail[k] = head->prev;
    slot[k] = t;
    len[k] = 0;
    k++;
  }
  do {
    moved = 0;
    for (i = 0; i < k; i++) {
      if (front[i] != tail[i] && front[i]->next != tail[i]) {
        front[i] = front[i]->next;
        tail[i] = tail[i]->prev;
        len[i] += 2;
        moved = 1;
      }
    }
  } while (moved);
  /* The walk counted each list, which makes an upper bound exact. */
  for (i = 0; i < k; i++) {
    uint64_t bit = UINT64_C(1) << slot[i];
    if (tw->uncounted0 & bit) {
      tw->count0[slot[i]] = len[i] + (front[i] == tail[i] ? 1 : 2);
      tw->uncounted0 &= ~bit;
    }
  }
}

/* The number of entries on `list`, by a walk. */
static uint32_t rx__tw_length(const struct rx__link *list) {
  const struct rx__link *link;
  uint32_t n = 0;

  for (link = list->next; link != list; link = link->next)
    n++;
  return n;
}

/* Moves level 0 slot `s`, whose entries are all due by its tick, to the
 * tail of `expired` whole: its count and order were kept as entries
 * arrived, so a slot in deadline order is not walked here. Sorting one
 * tick's entries at a time keeps the sort small even when the loop fell
 * behind by many ticks; the ticks themselves come out in order. */
static void rx__tw_expire_slot(struct rx__tw *tw, unsigned s) {
  struct rx__link *slot = &tw->slots[0][s];
  uint64_t bit = UINT64_C(1) << s;

  if (!(tw->warm0 & bit))
    rx__tw_warm(tw, s);
  if (tw->uncounted0 & bit) { /* staged, and too long to be warmed */
    tw->count0[s] = rx__tw_length(slot);
    tw->uncounted0 &= ~bit;
  }
  if (tw->unsorted0 & bit)
    rx__tw_sort(slot, tw->count0[s]);
  tw->unsorted0 &= ~bit;
  tw->warm0 &= ~bit;
  if (tw->nexpired > 0 && rx__tw_rel(rx__tw_entry_of(slot->next)) <
                              rx__tw_rel(rx__tw_entry_of(tw->expired.prev)))
    tw->expired_unsorted = 1;
  tw->nexpired += tw->count0[s];
  tw->count0[s] = 0;
  rx__list_splice(&tw->expired, slot);
}

void rx__tw_advance(struct rx__tw *tw, int64_t now, struct rx__link *out) {
  struct rx__link due, *link, *next;
  uint64_t rel, target, tick;
  size_t n = 0;
  int level;

  /* Every deadline is at or after origin, so nothing is due before it. */
  if (now < tw->origin)
    return;
  rel = rx__tw_since(tw, now);
  /* Whole ticks up to now; the partial one too when an entry added since
   * the last call is already due, since that entry is in it. */
  target = rel >> tw->shift;
  if (tw->due_added || tw->exact)
    target = rx__tw_tick(tw, rel);
  /* From occupied slot to occupied slot: each step empties one slot, and
   * moves elapsed strictly forward, to that slot's first tick. */
  while (tw->elapsed < target) {
    level = rx__tw_next_tick(tw, &tick);
    if (level < 0 || tick > target)
      break;
    tw->elapsed = tick;
    if (level == RX__TW_LEVELS) {
      tw->overflow_tick = UINT64_MAX;
      tw->warm0 = 0;
      rx__tw_cascade(tw, &tw->overflow);
    } else {
      unsigned slot = rx__tw_slot_of(tick, (unsigned)level);
      uint64_t bit = UINT64_C(1) << slot;
      if (level == 0) {
        tw->occupied[0] &= ~bit;
        rx__tw_expire_slot(tw, slot);
      } else {
        size_t moved = 0;
        /* Level 0 is empty, so no warm bit can still be of use; one left
         * by a slot emptied by deletions would only skip a warm-up. */
        tw->warm0 = 0;
        if (level == 1)
          moved = rx__tw_promote(tw);
        if (tw->occupied[level] & bit) {
          tw->occupied[level] &= ~bit;
          moved += rx__tw_cascade_slot(tw, (unsigned)level, slot);
        }
        if (level == 1) {
          /* The rotation just begun sets the pace for staging the next. */
          size_t rate = (tw->stage_moved + moved) / RX__TW_STAGE_SPREAD;
          tw->stage_rate = rate > tw->stage_min ? rate : tw->stage_min;
          tw->stage_moved = 0;
        }
      }
    }
  }
  if (tw->elapsed < target)
    tw->elapsed = target;
  rx__tw_stage(tw);
  /* A clock that went backwards leaves the flag set, so that the entries
   * it stands for are still reported due by rx__tw_next(). */
  if (rel >= tw->reached) {
    tw->due_added = 0;
    tw->reached = rel;
  }

  /* Hand out what is due. Usually that is all of `expired`, whose count
   * and order were kept as entries arrived; after the partial tick was
   * taken, or with a clock that went backwards, the entries of the last
   * tick due after now stay, in order. */
  rx__list_init(&due);
  if (tw->elapsed <= (rel >> tw->shift)) {
    n = tw->nexpired;
    rx__list_splice(&due, &tw->expired);
    tw->nexpired = 0;
  } else {
    for (link = tw->expired.next; link != &tw->expired; link = next) {
      next = link->next;
      if (rx__tw_rel(rx__tw_entry_of(link)) <= rel) {
        rx__list_unlink(link);
        rx__list_push(&due, link);
        n++;
      }
    }
    tw->nexpired -= n;
  }
  if (n == 0)
    return;
  if (tw->expired_unsorted)
    rx__tw_sort(&due, n);
  if (tw->nexpired == 0)
    tw->expired_unsorted = 0;
  tw->count -= n;
  rx__list_splice(out, &due);
}

/* Checks one list: its links, that each entry is where its deadline says,
 * and counts the entries in *seen, giving up once more than the wheel's
 * count have been seen so that a corrupt ring cannot loop forever. A staged
 * list (`stage` >= 0, its slot) or `pending` (`stage` -1) is a part of the
 * level 1 slot `where`, the next rotation's, and a staged one holds one
 * tick of it. */
static int rx__tw_check_in(const struct rx__tw *tw, const struct rx__link *head,
                           unsigned where, int stage, size_t *seen) {
  const struct rx__link *prev, *link;

  prev = head;
  for (link = head->next; link != head; link = link->next) {
    const struct rx__tw_entry *e;
    uint64_t tick;

    if (link == NULL || link->prev != prev || ++*seen > tw->count)
      return -EFAULT;
    e = rx__container_of(link, const struct rx__tw_entry, link);
    tick = rx__tw_tick(tw, rx__tw_rel(e));
    if (rx__tw_where(tw, tick) != where)
      return -EFAULT;
    if (where == RX__TW_OVERFLOW && tick < tw->overflow_tick)
      return -EFAULT;
    if (stage >= 0 && rx__tw_slot_of(tick, 0) != (unsigned)stage)
      return -EFAULT;
    prev = link;
  }
  return head->prev == prev ? 0 : -EFAULT;
}

static int rx__tw_check_list(const struct rx__tw *tw, unsigned where,
                             size_t *seen) {
  return rx__tw_check_in(tw, rx__tw_list((struct rx__tw *)tw, where), where, -2,
                         seen);
}

int rx__tw_validate(const struct rx__tw *tw) {
  size_t seen = 0;
  unsigned level, slot;

  if (tw->shift < 10 || tw->shift > 30)
    return -EFAULT;
  /* A partial tick is taken only when the last advance asked for it, so
   * elapsed can never pass the end of the tick that contains `reached`. */
  if (tw->elapsed > rx__tw_tick(tw, tw->reached))
    return -EFAULT;
  for (level = 0; level < RX__TW_LEVELS; level++) {
    for (slot = 0; slot < RX__TW_SLOTS; slot++) {
      int bit = (int)(tw->occupied[level] >> slot) & 1;
      size_t before = seen;
      if (bit == rx__list_empty(&tw->slots[level][slot]))
        return -EFAULT;
      if (rx__tw_check_list(tw, level * RX__TW_SLOTS + slot, &seen) != 0)
        return -EFAULT;
      /* An uncounted slot's count is an upper bound. */
      if (level == 0 && seen - before != tw->count0[slot] &&
          !((tw->uncounted0 >> slot & 1) && seen - before < tw->count0[slot]))
        return -EFAULT;
    }
  }
  /* The stage: only the next rotation of level 0, in level 1 (elapsed's
   * level 1 digit is not 63), which no advance has reached yet. */
  unsigned next1 = RX__TW_SLOTS +
                   ((rx__tw_slot_of(tw->elapsed, 1) + 1) & (RX__TW_SLOTS - 1));
  for (slot = 0; slot < RX__TW_SLOTS; slot++) {
    size_t before = seen;
    for (level = RX__TW_STAGE; level < RX__TW_ROWS; level++) {
      int bit = (int)(tw->occupied[level] >> slot) & 1;
      if (bit == rx__list_empty(&tw->slots[level][slot]))
        return -EFAULT;
      if (rx__tw_check_in(tw, &tw->slots[level][slot], next1, (int)slot,
                          &seen) != 0)
        return -EFAULT;
    }
    if (seen - before > tw->count_stage[slot])
      return -EFAULT;
  }
  if (rx__tw_check_in(tw, &tw->pending, next1, -1, &seen) != 0)
    return -EFAULT;
  if (rx__tw_check_list(tw, RX__TW_OVERFLOW, &seen) != 0)
    return -EFAULT;
  size_t before_expired = seen;
  if (rx__tw_check_list(tw, RX__TW_EXPIRED, &seen) != 0 ||
      seen - before_expired != tw->nexpired)
    return -EFAULT;
  return seen == tw->count ? 0 : -EFAULT;
}

void rx__tw_take_all(struct rx__tw *tw, struct rx__link *out) {
  unsigned level, slot;

  /* A tick of the staged rotation is on the stage row, `pending`, the back
   * row and its level 1 slot, in that order. */
  rx__list_splice(out, &tw->expired);
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    rx__list_splice(out, &tw->slots[0][slot]);
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    rx__list_splice(out, &tw->slots[RX__TW_STAGE][slot]);
  rx__list_splice(out, &tw->pending);
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    rx__list_splice(out, &tw->slots[RX__TW_STAGE_BACK][slot]);
  for (level = 1; level < RX__TW_LEVELS; level++)
    for (slot = 0; slot < RX__TW_SLOTS; slot++)
      rx__list_splice(out, &tw->slots[level][slot]);
  for (level = 0; level < RX__TW_ROWS; level++)
    tw->occupied[level] = 0;
  rx__list_splice(out, &tw->overflow);
  for (slot = 0; slot < RX__TW_SLOTS; slot++) {
    tw->count0[slot] = 0;
    tw->count_stage[slot] = 0;
  }
  tw->unsorted0 = 0;
  tw->uncounted0 = 0;
  tw->unsorted_stage = 0;
  tw->stage_moved = 0;
  tw->warm0 = 0;
  tw->nexpired = 0;
  tw->expired_unsorted = 0;
  tw->overflow_tick = UINT64_MAX;
  tw->due_added = 0;
  tw->count = 0;
}
