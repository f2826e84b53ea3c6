/*
 * embed.c - one loop driven from inside another (libev's ev_embed).
 *
 * The embedding loop learns that the embedded one has work the same way a
 * foreign host loop would (rx.h, rx_loop_fd / rx_loop_timeout): its pollable
 * fd turns readable for io and cross-thread wake-ups, and its next timeout
 * is a plain timer here. A prepare watcher re-arms that timer before every
 * wait, and first sweeps the embedded loop if it has changes that only an
 * iteration of its own hands to the kernel. libev leaves the embedded
 * loop's timers to the user; here they are covered.
 *
 * The three internal watchers do not count as active: the embed watcher
 * itself does, once.
 */
#include <errno.h>

#include "internal.h"

#define EMBED_OF(ptr, member) rx__container_of(ptr, rx_embed, member)

static void wake(rx_loop *loop, rx_embed *w) {
  if (w->cb != NULL)
    rx__feed(loop, rx__w(w), RX_EMBED);
  else
    rx_embed_sweep(loop, w);
}

static void on_fd(rx_loop *loop, rx_io *io, int revents) {
  (void)revents;
  wake(loop, EMBED_OF(io, _io));
}

static void on_timeout(rx_loop *loop, rx_timer *t, int revents) {
  (void)revents;
  /* The one-shot timer stopped at expiry, taking one from the active count
   * that its start had already given back: return it. */
  rx_ref(loop);
  wake(loop, EMBED_OF(t, _timer));
}

/* Before the embedding loop waits: make sure the embedded loop's kernel
 * state is current, then bound the wait by its next timeout. */
static void on_prepare(rx_loop *loop, rx_prepare *p, int revents) {
  (void)revents;
  rx_embed *w = EMBED_OF(p, _prepare);
  rx_loop *other = w->other;
  if (other->nchanges > 0)
    rx_embed_sweep(loop, w);
  int64_t t = 0;
  rx_loop_timeout(other, &t); /* `other` is not NULL: never fails */
  bool was = rx_is_active(&w->_timer);
  if (was) {
    rx_ref(loop);
    rx_timer_stop(loop, &w->_timer);
  }
  if (t >= 0) {
    rx_timer_set(&w->_timer, t, 0);
    rx_timer_start(loop, &w->_timer);
    rx_unref(loop);
  }
}

void rx_embed_init(rx_embed *w, rx_embed_cb cb, rx_loop *other) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_EMBED);
  w->other = other;
  rx_io_init(&w->_io, on_fd, other != NULL ? rx_loop_fd(other) : -1, RX_READ);
  rx_timer_init(&w->_timer, on_timeout, 0, 0);
  rx_prepare_init(&w->_prepare, on_prepare);
  /* Internal: the embed watcher counts, not these (the timer has no unref
   * bit: it takes its reference back by hand). */
  rx__unref_watcher(&w->_io._w);
  rx__unref_watcher(&w->_prepare._w);
  w->_active.next = NULL;
  w->_active.prev = NULL;
}

/* Whether `from` is `to` or embeds it, directly or through loops it
 * embeds. The embeddings form no cycle (rx_embed_start() refuses one), so
 * the search ends; its depth is that of the nesting. */
static bool reaches(const rx_loop *from, const rx_loop *to) {
  if (from == to)
    return true;
  for (const struct rx__link *n = from->embeds.next; n != &from->embeds;
       n = n->next)
    if (reaches(EMBED_OF(n, _active)->other, to))
      return true;
  return false;
}

int rx_embed_start(rx_loop *loop, rx_embed *w) {
  if (loop == NULL || w == NULL || w->other == NULL || w->other == loop)
    return -EINVAL;
  if (w->_w.flags & RX__F_ACTIVE)
    return rx_is_active(&w->_prepare) &&
                   rx__owned_by(loop, &w->_prepare._active)
               ? 0
               : -EBUSY;
  if (rx__pending_elsewhere(loop, rx__w(w)) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  /* A loop that `other` embeds, itself or further down, would sweep this
   * one from inside its own sweep, and so on without end. */
  if (reaches(w->other, loop))
    return -ELOOP;
  int rc = rx_io_start(loop, &w->_io);
  if (rc != 0)
    return rc;
  rx_prepare_start(loop, &w->_prepare);
  rx__list_push(&loop->embeds, &w->_active);
  w->_w.flags |= RX__F_ACTIVE;
  loop->activecnt += rx__counted(&w->_w);
  /* One iteration hands what the embedded loop has started to its kernel
   * side, so that its fd reports from now on. */
  rx_embed_sweep(loop, w);
  return 0;
}

int rx_embed_stop(rx_loop *loop, rx_embed *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if ((w->_w.flags & RX__F_ACTIVE) && !rx__owned_by(loop, &w->_prepare._active))
    return -EBUSY;
  int rc = rx__clear_pending(loop, rx__w(w));
  if (rc != 0 || !(w->_w.flags & RX__F_ACTIVE))
    return rc;
  rx_io_stop(loop, &w->_io);
  rx_prepare_stop(loop, &w->_prepare);
  if (rx_is_active(&w->_timer)) {
    rx_ref(loop);
    rx_timer_stop(loop, &w->_timer);
  }
  rx__list_unlink(&w->_active);
  w->_w.flags &= ~RX__F_ACTIVE;
  loop->activecnt -= rx__counted(&w->_w);
  return 0;
}

void rx_embed_sweep(rx_loop *loop, rx_embed *w) {
  (void)loop;
  if (w != NULL)
    rx_run(w->other, RX_RUN_NOWAIT);
}

int rx_embed_set_priority(rx_embed *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* The loop's share (loop.c's table of kinds). */
int rx__embed_loop_init(rx_loop *loop) {
  rx__list_init(&loop->embeds);
  return 0;
}

void rx__embed_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->embeds))
    rx_embed_stop(loop, EMBED_OF(loop->embeds.next, _active));
}
