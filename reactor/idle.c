/*
 * idle.c - idle, prepare, check, cleanup and fork watchers.
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

void rx_idle_init(rx_idle *w, rx_idle_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_IDLE);
  w->_active.next = w->_active.prev = NULL;
}

int rx_idle_start(rx_loop *loop, rx_idle *w) {
  if (w == NULL)
    return -EINVAL;
  int pri = (int)((w->_w.flags & RX__F_PRIO) >> RX__F_PRIO_SHIFT);
  int was = w->_w.flags & RX__F_ACTIVE;
  int rc = rx__listed_start(loop, rx__w(w), &w->_active,
                            loop ? &loop->idles[pri] : NULL);
  if (rc == 0 && !was)
    loop->idlecnt++;
  return rc;
}

int rx_idle_stop(rx_loop *loop, rx_idle *w) {
  int was = w != NULL && (w->_w.flags & RX__F_ACTIVE);
  int rc = rx__listed_stop(loop, rx__w(w), w ? &w->_active : NULL);
  if (rc == 0 && was)
    loop->idlecnt--;
  return rc;
}

void rx_prepare_init(rx_prepare *w, rx_prepare_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_PREPARE);
  w->_active.next = w->_active.prev = NULL;
}

int rx_prepare_start(rx_loop *loop, rx_prepare *w) {
  return rx__listed_start(loop, rx__w(w), w ? &w->_active : NULL,
                          loop ? &loop->prepares : NULL);
}

int rx_prepare_stop(rx_loop *loop, rx_prepare *w) {
  return rx__listed_stop(loop, rx__w(w), w ? &w->_active : NULL);
}

void rx_check_init(rx_check *w, rx_check_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_CHECK);
  w->_active.next = w->_active.prev = NULL;
}

int rx_check_start(rx_loop *loop, rx_check *w) {
  return rx__listed_start(loop, rx__w(w), w ? &w->_active : NULL,
                          loop ? &loop->checks : NULL);
}

int rx_check_stop(rx_loop *loop, rx_check *w) {
  return rx__listed_stop(loop, rx__w(w), w ? &w->_active : NULL);
}

int rx_idle_set_priority(rx_idle *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

int rx_prepare_set_priority(rx_prepare *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

int rx_check_set_priority(rx_check *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* Cleanup watchers do not keep the loop running (libev unrefs them too):
 * their head's unref bit keeps them out of the active count. */
void rx_cleanup_init(rx_cleanup *w, rx_cleanup_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_CLEANUP);
  rx__unref_watcher(&w->_w);
  w->_active.next = w->_active.prev = NULL;
}

int rx_cleanup_start(rx_loop *loop, rx_cleanup *w) {
  return rx__listed_start(loop, rx__w(w), w ? &w->_active : NULL,
                          loop ? &loop->cleanups : NULL);
}

int rx_cleanup_stop(rx_loop *loop, rx_cleanup *w) {
  return rx__listed_stop(loop, rx__w(w), w ? &w->_active : NULL);
}

int rx_cleanup_set_priority(rx_cleanup *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

void rx_fork_init(rx_fork *w, rx_fork_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_FORK);
  w->_active.next = w->_active.prev = NULL;
}

int rx_fork_start(rx_loop *loop, rx_fork *w) {
  return rx__listed_start(loop, rx__w(w), w ? &w->_active : NULL,
                          loop ? &loop->forks : NULL);
}

int rx_fork_stop(rx_loop *loop, rx_fork *w) {
  return rx__listed_stop(loop, rx__w(w), w ? &w->_active : NULL);
}

int rx_fork_set_priority(rx_fork *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* The loop's share of each kind above (loop.c's table of kinds): empty
 * lists at first, every watcher stopped at the end. */
int rx__idle_loop_init(rx_loop *loop) {
  for (int i = 0; i < RX__NPRI; i++)
    rx__list_init(&loop->idles[i]);
  return 0;
}

void rx__idle_free(rx_loop *loop) {
  for (int i = 0; i < RX__NPRI; i++)
    while (!rx__list_empty(&loop->idles[i]))
      rx_idle_stop(loop,
                   rx__container_of(loop->idles[i].next, rx_idle, _active));
}

int rx__prepare_loop_init(rx_loop *loop) {
  rx__list_init(&loop->prepares);
  return 0;
}

void rx__prepare_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->prepares))
    rx_prepare_stop(loop,
                    rx__container_of(loop->prepares.next, rx_prepare, _active));
}

int rx__check_loop_init(rx_loop *loop) {
  rx__list_init(&loop->checks);
  return 0;
}

void rx__check_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->checks))
    rx_check_stop(loop, rx__container_of(loop->checks.next, rx_check, _active));
}

int rx__cleanup_loop_init(rx_loop *loop) {
  rx__list_init(&loop->cleanups);
  return 0;
}

void rx__cleanup_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->cleanups))
    rx_cleanup_stop(loop,
                    rx__container_of(loop->cleanups.next, rx_cleanup, _active));
}

int rx__fork_loop_init(rx_loop *loop) {
  rx__list_init(&loop->forks);
  return 0;
}

void rx__fork_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->forks))
    rx_fork_stop(loop, rx__container_of(loop->forks.next, rx_fork, _active));
}
