/*
 * verify.c - rx_verify(): checks that the loop's structures agree with each
 * other, as libev's ev_verify does, but returns what is broken instead of
 * asserting.
 *
 * Each check walks one structure with a bound (the number of entries it can
 * possibly hold), so a corrupted ring of links ends the walk instead of
 * looping forever. O(watchers + fds); for tests and debugging, never called
 * by the loop itself.
 */
#include <errno.h>

#include "internal.h"

/* Walks the circular list `head`, calling `check` on each node; counts the
 * nodes in *n. False if the links are inconsistent, a node fails the check,
 * or the list is longer than `bound`. */
static bool walk(const struct rx__link *head, size_t bound, size_t *n,
                 bool (*check)(const struct rx__link *node, int arg),
                 int arg) {
  const struct rx__link *prev = head;
  for (const struct rx__link *l = head->next; l != head; l = l->next) {
    if (l == NULL || l->prev != prev || ++*n > bound)
      return false;
    if (check != NULL && !check(l, arg))
      return false;
    prev = l;
  }
  return head->prev == prev;
}

static uint32_t head_flags(const struct rx__link *node, size_t offset) {
  /* container_of: the head is the first member of the watcher that holds
   * `node` at `offset`. */
  return ((const struct rx__watcher *)(const void *)((const char *)node - offset))
      ->flags;
}

/* A pending head watcher: flagged pending, queued at its priority. */
static bool pending_ok(const struct rx__link *node, int pri) {
  uint32_t f = head_flags(node, offsetof(struct rx__watcher, link));
  return (f & RX__F_PENDING) &&
         (int)((f & RX__F_PRIO) >> RX__F_PRIO_SHIFT) == pri;
}

static bool timer_pending_ok(const struct rx__link *node, int pri) {
  const rx_timer *w = rx__container_of(node, rx_timer, _ent.link);
  unsigned f = (unsigned)(w->_ent.word >> RX__TW_AT_BITS);
  return (f & RX__T_PENDING) && (int)(f & RX__T_PRIO) == pri;
}

/* An active watcher of kind `kind` on one of the loop's lists. */
static bool listed_ok(const struct rx__link *node, int kind) {
  /* Every list-kept watcher has its `_active` link right after the head. */
  uint32_t f = head_flags(node, offsetof(rx_idle, _active));
  return (f & RX__F_ACTIVE) &&
         (int)((f & RX__F_KIND) >> RX__F_KIND_SHIFT) == kind;
}

static int broken(const char **what, const char *name) {
  if (what != NULL)
    *what = name;
  return -EFAULT;
}

static int verify_pending(rx_loop *loop, const char **what, size_t bound) {
  size_t n = 0;
  for (int pri = 0; pri < RX__NPRI; pri++) {
    if (!walk(&loop->pending[pri], bound, &n, pending_ok, pri))
      return broken(what, "pending queue");
    if (!walk(&loop->timers_pending[pri], bound, &n, timer_pending_ok, pri))
      return broken(what, "timer pending queue");
  }
  if (n != loop->pendingcnt)
    return broken(what, "pending count");
  return 0;
}

static int verify_fds(rx_loop *loop, const char **what) {
  if (loop->nfds < 0 || loop->nchanges < 0 || loop->nchanges > loop->nfds)
    return broken(what, "fd change list");
  for (int i = 0; i < loop->nchanges; i++) {
    int fd = loop->changes[i];
    if (fd < 0 || fd >= loop->nfds || !(loop->fds[fd].flags & RX__FD_CHANGED))
      return broken(what, "fd change list");
  }
  for (int fd = 0; fd < loop->nfds; fd++) {
    const struct rx__fd *f = &loop->fds[fd];
    uint8_t want = 0;
    int n = 0;
    for (const rx_io *w = f->head; w != NULL; w = w->_next) {
      if (++n > 1 << 20 || w->fd != fd || !(w->_w.flags & RX__F_ACTIVE) ||
          ((w->_w.flags & RX__F_KIND) >> RX__F_KIND_SHIFT) != RX__KIND_IO)
        return broken(what, "fd watcher list");
      want |= (uint8_t)(w->_w.flags & RX__F_EVENTS);
    }
    if (want != f->want)
      return broken(what, "fd interest");
  }
  return 0;
}

static int verify_lists(rx_loop *loop, const char **what, size_t bound) {
  size_t n = 0;
  for (int pri = 0; pri < RX__NPRI; pri++)
    if (!walk(&loop->idles[pri], bound, &n, listed_ok, RX__KIND_IDLE))
      return broken(what, "idle watchers");
  if (n != (size_t)loop->idlecnt)
    return broken(what, "idle count");
  n = 0;
  if (!walk(&loop->prepares, bound, &n, listed_ok, RX__KIND_PREPARE))
    return broken(what, "prepare watchers");
  if (!walk(&loop->checks, bound, &n, listed_ok, RX__KIND_CHECK))
    return broken(what, "check watchers");
  if (!walk(&loop->asyncs, bound, &n, listed_ok, RX__KIND_ASYNC))
    return broken(what, "async watchers");
  if (!walk(&loop->cleanups, bound, &n, listed_ok, RX__KIND_CLEANUP))
    return broken(what, "cleanup watchers");
  return 0;
}

int rx_verify(rx_loop *loop, const char **what) {
  if (loop == NULL)
    return -EINVAL;
  /* No list can be longer than every watcher in memory: a generous bound
   * that still ends a walk around a corrupted ring. */
  size_t bound = (size_t)1 << 28;
  int rc;
  if ((rc = verify_pending(loop, what, bound)) != 0 ||
      (rc = verify_fds(loop, what)) != 0 ||
      (rc = verify_lists(loop, what, bound)) != 0)
    return rc;
  if (rx__tw_validate(&loop->wheel) != 0)
    return broken(what, "timer wheel");
  if (what != NULL)
    *what = NULL;
  return 0;
}
