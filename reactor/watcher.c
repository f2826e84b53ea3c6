/*
 * watcher.c - what every watcher kind but rx_timer shares: its head
 * (struct rx__watcher, rx.h) set up, the priority in it, and the start and
 * stop of watchers kept on a list of their loop, with the test of which
 * loop owns such a list.
 */
#include <errno.h>
#include <stdbool.h>

#include "internal.h"

void rx__head_init(struct rx__watcher *w, enum rx__kind kind) {
  w->link.next = NULL;
  w->link.prev = NULL;
  w->flags = ((uint32_t)(0 - RX_MINPRI) << RX__F_PRIO_SHIFT) |
             ((uint32_t)kind << RX__F_KIND_SHIFT);
}

/* Whether the linked `active` is on one of `loop`'s lists. Every list is
 * circular through a sentinel inside its loop; walking backwards finds it
 * at once for the first watcher of a list, which is the one rx_loop_free()
 * stops each time. */
bool rx__owned_by(const rx_loop *loop, const struct rx__link *active) {
  const char *lo = (const char *)loop, *hi = lo + sizeof(*loop);
  for (const struct rx__link *n = active->prev; n != active; n = n->prev)
    if ((const char *)n >= lo && (const char *)n < hi)
      return true;
  return false;
}

/* Starts a list-kept watcher (idle, prepare, check, async, cleanup, fork,
 * periodic, child, stat): `active` is its
 * link on `list`. */
int rx__listed_start(rx_loop *loop, struct rx__watcher *w,
                     struct rx__link *active, struct rx__link *list) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (w->flags & RX__F_ACTIVE)
    return rx__owned_by(loop, active) ? 0 : -EBUSY;
  if (rx__pending_elsewhere(loop, w) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  rx__list_push(list, active);
  w->flags |= RX__F_ACTIVE;
  loop->activecnt += rx__counted(w);
  return 0;
}

int rx__listed_stop(rx_loop *loop, struct rx__watcher *w,
                    struct rx__link *active) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  /* Active on another loop: rx.h promises -EBUSY, and touching it would
   * corrupt both loops' counts. So would an inactive one fed to another
   * loop, which rx__clear_pending() refuses. */
  if ((w->flags & RX__F_ACTIVE) && !rx__owned_by(loop, active))
    return -EBUSY;
  int rc = rx__clear_pending(loop, w);
  if (rc != 0 || !(w->flags & RX__F_ACTIVE))
    return rc;
  rx__list_unlink(active);
  w->flags &= ~RX__F_ACTIVE;
  loop->activecnt -= rx__counted(w);
  return 0;
}

int rx__head_set_priority(struct rx__watcher *w, int priority) {
  if (w == NULL || priority < RX_MINPRI || priority > RX_MAXPRI)
    return -EINVAL;
  if (w->flags & (RX__F_ACTIVE | RX__F_PENDING))
    return -EBUSY;
  w->flags = (w->flags & ~RX__F_PRIO) |
             ((uint32_t)(priority - RX_MINPRI) << RX__F_PRIO_SHIFT);
  return 0;
}
