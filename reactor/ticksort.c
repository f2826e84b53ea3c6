/*
 * ticksort.c - the sort of one tick's timer wheel entries by deadline
 * (rx__tw_sort()), for a level 0 slot or the due entries of an advance whose
 * deadlines are out of order (timerwheel.c). Stable, so that entries of one
 * deadline go out in the order they were added, and without allocation.
 */
#include "timerwheel.h"

/* Merges two NULL-terminated runs by deadline; `a` holds the earlier
 * entries, so taking from it on a tie keeps the sort stable. The choice is
 * made with selects rather than a branch: deadlines of timers started at
 * random are a coin toss per step, and a mispredicted branch per step cost
 * more than the rest of the merge. */
static struct rx__link *rx__tw_merge(struct rx__link *a, struct rx__link *b) {
  struct rx__link head;
  struct rx__link *tail = &head;

  while (a != NULL && b != NULL) {
    int take_b = rx__tw_rel(rx__tw_entry_of(b)) <
                 rx__tw_rel(rx__tw_entry_of(a));
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

/* Bottom-up merging of sorted runs that arrive in list order: runs[i] is
 * empty or holds 2^i arrivals' worth, all before those in runs[i - 1]. */
struct rx__tw_runs {
  struct rx__link *runs[64];
  unsigned top;
};

static void rx__tw_runs_push(struct rx__tw_runs *r, struct rx__link *run) {
  unsigned i;

  for (i = 0; r->runs[i] != NULL; i++) {
    run = rx__tw_merge(r->runs[i], run);
    r->runs[i] = NULL;
  }
  r->runs[i] = run;
  if (i >= r->top)
    r->top = i + 1;
}

static struct rx__link *rx__tw_runs_join(struct rx__tw_runs *r) {
  struct rx__link *run = NULL;
  unsigned i;

  for (i = 0; i < r->top; i++)
    if (r->runs[i] != NULL)
      run = run == NULL ? r->runs[i] : rx__tw_merge(r->runs[i], run);
  return run;
}

/* A sort takes a list in chunks of at most this many entries: 10 bits of
 * index, and 24 KiB of stack for rx__tw_sort()'s three arrays. A chunk
 * holds a whole tick of a million timers due within a second (about 520
 * entries at the default tick), because the chunked path (a merge, then a
 * walk to rebuild the prev pointers, each step a dependent load) costs
 * half as much again per entry. */
#define RX__TW_CHUNK_BITS 10
#define RX__TW_CHUNK (1u << RX__TW_CHUNK_BITS)

/* Sorts node[0..n), given in list order, by deadline, stably, into
 * `order`: indices into node, each in the low RX__TW_CHUNK_BITS bits of a
 * word. Returns 0, or -1 when the deadlines are spread too wide for it.
 *
 * An LSD radix sort of (deadline - the least one, index) packed in one
 * word: the index makes each word unique and breaks ties in list order,
 * so the result is stable. One tick's deadlines differ only in the tick's
 * 2^shift ns, so that is 3 passes of 8 bits over arrays in L1 at the
 * default tick, where the merge sort this replaced made 9 passes over the
 * linked entries, each step a dependent load. A pass in which every word
 * has the same digit is skipped. Deadlines spread wider than the 54 bits
 * left (200 days) are the caller's to merge sort. */
static int rx__tw_radix(struct rx__link **node, size_t n, uint64_t *order,
                        uint64_t *tmp) {
  uint64_t *a = order, *t = tmp, *swap;
  uint64_t lo = UINT64_MAX, hi = 0, span;
  unsigned bits, shift;
  size_t i;

  for (i = 0; i < n; i++) {
    uint64_t rel = rx__tw_rel(rx__tw_entry_of(node[i]));
    order[i] = rel;
    lo = rel < lo ? rel : lo;
    hi = rel > hi ? rel : hi;
  }
  span = hi - lo;
  bits = span == 0 ? 0 : 64 - (unsigned)__builtin_clzll(span);
  if (bits > 64 - RX__TW_CHUNK_BITS)
    return -1;
  for (i = 0; i < n; i++)
    order[i] = (order[i] - lo) << RX__TW_CHUNK_BITS | i;
  for (shift = RX__TW_CHUNK_BITS; shift < RX__TW_CHUNK_BITS + bits;
       shift += 8) {
    uint32_t count[256] = {0};
    uint32_t sum = 0;
    for (i = 0; i < n; i++)
      count[(a[i] >> shift) & 255]++;
    if (count[(a[0] >> shift) & 255] == n)
      continue;
    for (i = 0; i < 256; i++) {
      uint32_t c = count[i];
      count[i] = sum;
      sum += c;
    }
    for (i = 0; i < n; i++)
      t[count[(a[i] >> shift) & 255]++] = a[i];
    swap = a;
    a = t;
    t = swap;
  }
  if (a != order)
    for (i = 0; i < n; i++)
      order[i] = a[i];
  return 0;
}

/* Links node[0..n), given in list order, into a NULL-terminated run sorted
 * by deadline, stably. */
static struct rx__link *rx__tw_run(struct rx__link **node, size_t n,
                                   uint64_t *order, uint64_t *tmp) {
  const uint64_t mask = RX__TW_CHUNK - 1;
  size_t i;

  if (rx__tw_radix(node, n, order, tmp) != 0) {
    struct rx__tw_runs r = {{NULL}, 0};
    for (i = 0; i < n; i++) {
      node[i]->next = NULL;
      rx__tw_runs_push(&r, node[i]);
    }
    return rx__tw_runs_join(&r);
  }
  for (i = 0; i + 1 < n; i++)
    node[order[i] & mask]->next = node[order[i + 1] & mask];
  node[order[n - 1] & mask]->next = NULL;
  return node[order[0] & mask];
}

/* Sorts `list`, of exactly n entries (count0 and the advance's count are
 * exact; rx__tw_validate() checks them), by deadline, stably. No
 * allocation.
 *
 * Up to a chunk, the entries are collected walking from both ends at once
 * (two loads in flight rather than one; see rx__tw_cascade_slot()) and put
 * back in order from the array, without another walk. A longer list is
 * sorted chunk by chunk into runs, which are merged, and the prev pointers
 * rebuilt. */
void rx__tw_sort(struct rx__link *list, size_t n) {
  struct rx__link *node[RX__TW_CHUNK];
  uint64_t order[RX__TW_CHUNK], tmp[RX__TW_CHUNK];
  struct rx__tw_runs r = {{NULL}, 0};
  struct rx__link *link, *prev;
  size_t i, j;

  if (n < 2)
    return;
  if (n <= RX__TW_CHUNK) {
    struct rx__link *front = list->next, *tail = list->prev;
    for (i = 0, j = n - 1; i < j; i++, j--) {
      node[i] = front;
      node[j] = tail;
      front = front->next;
      tail = tail->prev;
    }
    if (i == j)
      node[i] = front;
    if (rx__tw_radix(node, n, order, tmp) == 0) {
      prev = list;
      for (i = 0; i < n; i++) {
        link = node[order[i] & (RX__TW_CHUNK - 1)];
        link->prev = prev;
        prev->next = link;
        prev = link;
      }
      prev->next = list;
      list->prev = prev;
      return;
    }
  }
  link = list->next;
  while (link != list) {
    for (i = 0; i < RX__TW_CHUNK && link != list; i++) {
      node[i] = link;
      link = link->next;
    }
    rx__tw_runs_push(&r, rx__tw_run(node, i, order, tmp));
  }
  prev = list;
  for (link = rx__tw_runs_join(&r); link != NULL; link = link->next) {
    link->prev = prev;
    prev->next = link;
    prev = link;
  }
  prev->next = list;
  list->prev = prev;
}
