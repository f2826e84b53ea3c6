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
 * slot is taken whole and its entries added again, one level lower or more.
 * Ticks are processed up to floor(now), or up to ceil(now) when an entry
 * added since the last call was already due (a zero-delay timer, a repeat
 * catching up): it goes out now rather than up to a tick later. What is
 * handed out is filtered by deadline <= now, so never early either way.
 *
 * References: h2o lib/common/timerwheel.c for the API (absolute expiry,
 * collect expired entries into a list, then run them, so callbacks may
 * re-add; a validate mode); tokio tokio/src/runtime/time/wheel/ for the
 * level and slot arithmetic and the occupancy bitmaps; Varghese and Lauck,
 * "Hashed and Hierarchical Timing Wheels" (SOSP 1987) for the structure.
 */
#include "timerwheel.h"

#include <errno.h>

void rx__tw_init(struct rx__tw *tw, int64_t now, unsigned shift) {
  unsigned level, slot;

  /* The loop validates its option; a bad shift is clamped, not trusted. */
  if (shift < 10)
    shift = 10;
  if (shift > 30)
    shift = 30;
  tw->origin = now;
  tw->shift = shift;
  tw->elapsed = 0;
  tw->reached = 0;
  tw->count = 0;
  tw->overflow_tick = UINT64_MAX;
  tw->due_added = 0;
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    tw->count0[slot] = 0;
  tw->unsorted0 = 0;
  for (level = 0; level < RX__TW_LEVELS; level++) {
    tw->occupied[level] = 0;
    for (slot = 0; slot < RX__TW_SLOTS; slot++)
      rx__list_init(&tw->slots[level][slot]);
  }
  rx__list_init(&tw->overflow);
  rx__list_init(&tw->expired);
  tw->nexpired = 0;
  tw->expired_unsorted = 0;
  tw->exact = 0;
}

size_t rx__tw_count(const struct rx__tw *tw) {
  return tw->count;
}

/* The first tick after elapsed at which something must be done, and what:
 * the level whose slot starts then, RX__TW_LEVELS for moving the overflow
 * in, or -1 when the wheel and the overflow are empty. The lowest occupied
 * level always wins: its slots lie inside elapsed's current slot of every
 * level above. O(levels). */
static int rx__tw_next_tick(const struct rx__tw *tw, uint64_t *tick) {
  uint64_t rotation, first;
  unsigned level;

  for (level = 0; level < RX__TW_LEVELS; level++) {
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

/* Empties `list` (a slot or the overflow) and adds its entries again now
 * that elapsed has reached its first tick; they land on lower levels or on
 * `expired`.
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

/* Merges two NULL-terminated runs by deadline; `a` holds the earlier
 * entries, so taking from it on a tie keeps the sort stable. The choice is
 * made with selects rather than a branch: deadlines of timers started at
 * random are a coin toss per step, and a mispredicted branch per step cost
 * more than the rest of the merge. */
static struct rx__link *rx__tw_merge(struct rx__link *a, struct rx__link *b) {
  struct rx__link head;
  struct rx__link *tail = &head;

  while (a != NULL && b != NULL) {
    int take_b = rx__tw_rel(rx__tw_entry_of(b)) < rx__tw_rel(rx__tw_entry_of(a));
    struct rx__link *n = take_b ? b : a;
    struct rx__link *after = n->next;
    tail->next = n;
    tail = n;
    a = take_b ? a : after;
    b = take_b ? after : b;
  }
  tail->next = a != NULL ? a : b;
  return head.next;
}

/* Sorts `list` by deadline, stably: a bottom-up merge sort over the next
 * pointers (runs[i] holds 2^i entries, all added before those in runs[i -
 * 1]), then the prev pointers are rebuilt. No allocation. */
static void rx__tw_sort(struct rx__link *list) {
  struct rx__link *runs[64] = {NULL};
  struct rx__link *node, *next, *run, *prev;
  unsigned i, top = 0;

  list->prev->next = NULL;
  for (node = list->next; node != NULL; node = next) {
    next = node->next;
    node->next = NULL;
    run = node;
    for (i = 0; runs[i] != NULL; i++) {
      run = rx__tw_merge(runs[i], run);
      runs[i] = NULL;
    }
    runs[i] = run;
    if (i >= top)
      top = i + 1;
  }
  run = NULL;
  for (i = 0; i < top; i++)
    if (runs[i] != NULL)
      run = run == NULL ? runs[i] : rx__tw_merge(runs[i], run);
  prev = list;
  for (node = run; node != NULL; node = node->next) {
    node->prev = prev;
    prev->next = node;
    prev = node;
  }
  prev->next = list;
  list->prev = prev;
}

/* Moves level 0 slot `s`, whose entries are all due by its tick, to the
 * tail of `expired` whole: its count and order were kept as entries
 * arrived, so its (often cold) entries are not walked here. Sorting one
 * tick's entries at a time keeps the sort small even when the loop fell
 * behind by many ticks; the ticks themselves come out in order. */
static void rx__tw_expire_slot(struct rx__tw *tw, unsigned s) {
  struct rx__link *slot = &tw->slots[0][s];
  uint64_t bit = UINT64_C(1) << s;

  if (tw->unsorted0 & bit)
    rx__tw_sort(slot);
  tw->unsorted0 &= ~bit;
  if (tw->nexpired > 0 &&
      rx__tw_rel(rx__tw_entry_of(slot->next)) <
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
      rx__tw_cascade(tw, &tw->overflow);
    } else {
      unsigned slot = (unsigned)__builtin_ctzll(tw->occupied[level]);
      tw->occupied[level] &= ~(UINT64_C(1) << slot);
      if (level == 0)
        rx__tw_expire_slot(tw, slot);
      else
        rx__tw_cascade(tw, &tw->slots[level][slot]);
    }
  }
  if (tw->elapsed < target)
    tw->elapsed = target;
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
    rx__tw_sort(&due);
  if (tw->nexpired == 0)
    tw->expired_unsorted = 0;
  tw->count -= n;
  rx__list_splice(out, &due);
}

/* Checks one list: its links, that each entry is where its deadline says,
 * and counts the entries in *seen, giving up once more than the wheel's
 * count have been seen so that a corrupt ring cannot loop forever. */
static int rx__tw_check_list(const struct rx__tw *tw, unsigned where,
                             size_t *seen) {
  const struct rx__link *head, *prev, *link;

  head = rx__tw_list((struct rx__tw *)tw, where);
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
    prev = link;
  }
  return head->prev == prev ? 0 : -EFAULT;
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
      if (level == 0 && seen - before != tw->count0[slot])
        return -EFAULT;
    }
  }
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

  rx__list_splice(out, &tw->expired);
  for (level = 0; level < RX__TW_LEVELS; level++) {
    for (slot = 0; slot < RX__TW_SLOTS; slot++)
      rx__list_splice(out, &tw->slots[level][slot]);
    tw->occupied[level] = 0;
  }
  rx__list_splice(out, &tw->overflow);
  for (slot = 0; slot < RX__TW_SLOTS; slot++)
    tw->count0[slot] = 0;
  tw->unsorted0 = 0;
  tw->nexpired = 0;
  tw->expired_unsorted = 0;
  tw->overflow_tick = UINT64_MAX;
  tw->due_added = 0;
  tw->count = 0;
}
