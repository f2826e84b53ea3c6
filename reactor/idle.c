/*
 * idle.c - idle, prepare and check watchers.
 *
 * All three are kept on intrusive lists in the loop (idle ones per priority,
 * because only the highest priority that has idle watchers runs), so start
 * and stop are O(1) and never allocate. The loop feeds a whole list at once
 * (loop.c); the `_active` link is separate from the pending link because a
 * watcher is on both while its event waits.
 */
#include <errno.h>
#include <stdbool.h>

#include "internal.h"

static void init_head(struct rx__head *w, enum rx__kind kind) {
  w->_link.next = NULL;
  w->_link.prev = NULL;
  w->_flags = ((uint32_t)(0 - RX_MINPRI) << RX__F_PRIO_SHIFT) |
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

/* Starts a list-kept watcher (idle, prepare, check, async): `active` is its
 * link on `list`. */
int rx__listed_start(rx_loop *loop, struct rx__head *w,
                     struct rx__link *active, struct rx__link *list) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (w->_flags & RX__F_ACTIVE)
    return rx__owned_by(loop, active) ? 0 : -EBUSY;
  if (rx__pending_elsewhere(loop, w) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  rx__list_push(list, active);
  w->_flags |= RX__F_ACTIVE;
  loop->activecnt++;
  return 0;
}

int rx__listed_stop(rx_loop *loop, struct rx__head *w,
                    struct rx__link *active) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  /* Active on another loop: rx.h promises -EBUSY, and touching it would
   * corrupt both loops' counts. So would an inactive one fed to another
   * loop, which rx__clear_pending() refuses. */
  if ((w->_flags & RX__F_ACTIVE) && !rx__owned_by(loop, active))
    return -EBUSY;
  int rc = rx__clear_pending(loop, w);
  if (rc != 0 || !(w->_flags & RX__F_ACTIVE))
    return rc;
  rx__list_unlink(active);
  w->_flags &= ~RX__F_ACTIVE;
  loop->activecnt--;
  return 0;
}

int rx__head_set_priority(struct rx__head *w, int priority) {
  if (w == NULL || priority < RX_MINPRI || priority > RX_MAXPRI)
    return -EINVAL;
  if (w->_flags & (RX__F_ACTIVE | RX__F_PENDING))
    return -EBUSY;
  w->_flags = (w->_flags & ~RX__F_PRIO) |
              ((uint32_t)(priority - RX_MINPRI) << RX__F_PRIO_SHIFT);
  return 0;
}

#define HEAD(w) ((struct rx__head *)(void *)(w))

void rx_idle_init(rx_idle *w, rx_idle_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  init_head(HEAD(w), RX__KIND_IDLE);
  w->_active.next = w->_active.prev = NULL;
}

int rx_idle_start(rx_loop *loop, rx_idle *w) {
  if (w == NULL)
    return -EINVAL;
  int pri = (int)((w->_flags & RX__F_PRIO) >> RX__F_PRIO_SHIFT);
  int was = w->_flags & RX__F_ACTIVE;
  int rc = rx__listed_start(loop, HEAD(w), &w->_active, loop ? &loop->idles[pri] : NULL);
  if (rc == 0 && !was)
    loop->idlecnt++;
  return rc;
}

int rx_idle_stop(rx_loop *loop, rx_idle *w) {
  int was = w != NULL && (w->_flags & RX__F_ACTIVE);
  int rc = rx__listed_stop(loop, HEAD(w), w ? &w->_active : NULL);
  if (rc == 0 && was)
    loop->idlecnt--;
  return rc;
}

void rx_prepare_init(rx_prepare *w, rx_prepare_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  init_head(HEAD(w), RX__KIND_PREPARE);
  w->_active.next = w->_active.prev = NULL;
}

int rx_prepare_start(rx_loop *loop, rx_prepare *w) {
  return rx__listed_start(loop, HEAD(w), w ? &w->_active : NULL,
                  loop ? &loop->prepares : NULL);
}

int rx_prepare_stop(rx_loop *loop, rx_prepare *w) {
  return rx__listed_stop(loop, HEAD(w), w ? &w->_active : NULL);
}

void rx_check_init(rx_check *w, rx_check_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  init_head(HEAD(w), RX__KIND_CHECK);
  w->_active.next = w->_active.prev = NULL;
}

int rx_check_start(rx_loop *loop, rx_check *w) {
  return rx__listed_start(loop, HEAD(w), w ? &w->_active : NULL,
                  loop ? &loop->checks : NULL);
}

int rx_check_stop(rx_loop *loop, rx_check *w) {
  return rx__listed_stop(loop, HEAD(w), w ? &w->_active : NULL);
}

int rx_idle_set_priority(rx_idle *w, int priority) {
  return rx__head_set_priority(HEAD(w), priority);
}

int rx_prepare_set_priority(rx_prepare *w, int priority) {
  return rx__head_set_priority(HEAD(w), priority);
}

int rx_check_set_priority(rx_check *w, int priority) {
  return rx__head_set_priority(HEAD(w), priority);
}

/* Cleanup watchers do not keep the loop running (libev unrefs them too): a
 * start takes back the reference it adds, and a stop gives it again. */
void rx_cleanup_init(rx_cleanup *w, rx_cleanup_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  init_head(HEAD(w), RX__KIND_CLEANUP);
  w->_active.next = w->_active.prev = NULL;
}

int rx_cleanup_start(rx_loop *loop, rx_cleanup *w) {
  int was = w != NULL && (w->_flags & RX__F_ACTIVE);
  int rc = rx__listed_start(loop, HEAD(w), w ? &w->_active : NULL,
                            loop ? &loop->cleanups : NULL);
  if (rc == 0 && !was)
    loop->activecnt--;
  return rc;
}

int rx_cleanup_stop(rx_loop *loop, rx_cleanup *w) {
  int was = w != NULL && (w->_flags & RX__F_ACTIVE);
  if (was && loop != NULL)
    loop->activecnt++;
  int rc = rx__listed_stop(loop, HEAD(w), w ? &w->_active : NULL);
  if (rc != 0 && was && loop != NULL)
    loop->activecnt--;
  return rc;
}

int rx_cleanup_set_priority(rx_cleanup *w, int priority) {
  return rx__head_set_priority(HEAD(w), priority);
}

void rx_fork_init(rx_fork *w, rx_fork_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  init_head(HEAD(w), RX__KIND_FORK);
  w->_active.next = w->_active.prev = NULL;
}

int rx_fork_start(rx_loop *loop, rx_fork *w) {
  return rx__listed_start(loop, HEAD(w), w ? &w->_active : NULL,
                          loop ? &loop->forks : NULL);
}

int rx_fork_stop(rx_loop *loop, rx_fork *w) {
  return rx__listed_stop(loop, HEAD(w), w ? &w->_active : NULL);
}

int rx_fork_set_priority(rx_fork *w, int priority) {
  return rx__head_set_priority(HEAD(w), priority);
}
