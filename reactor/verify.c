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
 * or the list is longer than `bound`. A node reached from the loop's own
 * sentinel is on that loop's list: the walk is the membership test. */
static bool walk(const struct rx__link *head, size_t bound, size_t *n,
                 bool (*check)(const struct rx__link *node, const void *arg),
                 const void *arg) {
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

/* The head of the watcher that holds `node` at `offset` (container_of: the
 * head is the watcher's first member). */
static const struct rx__watcher *head_at(const struct rx__link *node,
                                         size_t offset) {
  return (const struct rx__watcher *)(const void *)((const char *)node -
                                                    offset);
}

/* A pending head watcher: flagged pending, queued at its priority. */
static bool pending_ok(const struct rx__link *node, const void *arg) {
  int pri = *(const int *)arg;
  uint32_t f = head_at(node, offsetof(struct rx__watcher, link))->flags;
  return (f & RX__F_PENDING) &&
         (int)((f & RX__F_PRIO) >> RX__F_PRIO_SHIFT) == pri;
}

static bool timer_pending_ok(const struct rx__link *node, const void *arg) {
  int pri = *(const int *)arg;
  const rx_timer *w = rx__container_of(node, rx_timer, _ent.link);
  unsigned f = (unsigned)(w->_ent.word >> RX__TW_AT_BITS);
  return (f & RX__T_PENDING) && (int)(f & RX__T_PRIO) == pri;
}

/* One of the loop's watcher lists: the kind on it, where each watcher
 * keeps its `_active` link (after the head for idle, prepare, check,
 * async, cleanup and fork watchers; further down for periodic, child,
 * stat and embed ones), the priority every watcher on it must have (idle
 * lists are per priority), or -1 for any, and the loop. */
struct list_spec {
  int kind;
  size_t at;
  int pri;
  const rx_loop *loop;
};

/* An active watcher of the list's kind, and what its kind adds: an async
 * watcher names its loop, a child watcher on a pidfd watches it with its
 * own io watcher, an embed watcher's prepare watcher is on this loop. */
static bool listed_ok(const struct rx__link *node, const void *arg) {
  const struct list_spec *spec = arg;
  const struct rx__watcher *h = head_at(node, spec->at);
  uint32_t f = h->flags;
  if (!(f & RX__F_ACTIVE) ||
      (int)((f & RX__F_KIND) >> RX__F_KIND_SHIFT) != spec->kind ||
      (spec->pri >= 0 &&
       (int)((f & RX__F_PRIO) >> RX__F_PRIO_SHIFT) != spec->pri))
    return false;
  switch (spec->kind) {
  case RX__KIND_ASYNC: {
    const rx_async *w = rx__of_head(h, const rx_async);
    return __atomic_load_n(&w->_loop, __ATOMIC_RELAXED) == spec->loop;
  }
  case RX__KIND_CHILD: {
    const rx_child *w = rx__of_head(h, const rx_child);
    return w->_pidfd < 0 || (rx_is_active(&w->_io) && w->_io.fd == w->_pidfd);
  }
  case RX__KIND_EMBED: {
    const rx_embed *w = rx__of_head(h, const rx_embed);
    return w->other != NULL && w->other != spec->loop &&
           rx_is_active(&w->_prepare) &&
           rx__owned_by(spec->loop, &w->_prepare._active);
  }
  default:
    return true;
  }
}

/* Child watchers that wait for SIGCHLD rather than a pidfd. */
static bool child_sigchld(const struct rx__link *node, const void *arg) {
  size_t *n = (size_t *)(uintptr_t)arg;
  if (rx__container_of(node, rx_child, _active)->_pidfd < 0)
    ++*n;
  return true;
}

static int broken(const char **what, const char *name) {
  if (what != NULL)
    *what = name;
  return -EFAULT;
}

static int verify_pending(rx_loop *loop, const char **what, size_t bound) {
  size_t n = 0;
  for (int pri = 0; pri < RX__NPRI; pri++) {
    if (!walk(&loop->pending[pri], bound, &n, pending_ok, &pri))
      return broken(what, "pending queue");
    if (!walk(&loop->timers_pending[pri], bound, &n, timer_pending_ok, &pri))
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
    want |= rx__ops_want(loop, fd); /* emulated ops share the registration */
    if (want != f->want)
      return broken(what, "fd interest");
  }
  return 0;
}

/* Walks one watcher list of `loop` with listed_ok(). */
static bool list_ok(rx_loop *loop, const struct rx__link *list, int kind,
                    size_t at, int pri, size_t bound, size_t *n) {
  struct list_spec spec = {kind, at, pri, loop};
  return walk(list, bound, n, listed_ok, &spec);
}

static int verify_lists(rx_loop *loop, const char **what, size_t bound) {
  size_t n = 0;
  for (int pri = 0; pri < RX__NPRI; pri++)
    if (!list_ok(loop, &loop->idles[pri], RX__KIND_IDLE,
                 offsetof(rx_idle, _active), pri, bound, &n))
      return broken(what, "idle watchers");
  if (n != (size_t)loop->idlecnt)
    return broken(what, "idle count");
  n = 0;
  if (!list_ok(loop, &loop->prepares, RX__KIND_PREPARE,
               offsetof(rx_prepare, _active), -1, bound, &n))
    return broken(what, "prepare watchers");
  if (!list_ok(loop, &loop->checks, RX__KIND_CHECK, offsetof(rx_check, _active),
               -1, bound, &n))
    return broken(what, "check watchers");
  if (!list_ok(loop, &loop->asyncs, RX__KIND_ASYNC, offsetof(rx_async, _active),
               -1, bound, &n))
    return broken(what, "async watchers");
  if (!list_ok(loop, &loop->cleanups, RX__KIND_CLEANUP,
               offsetof(rx_cleanup, _active), -1, bound, &n))
    return broken(what, "cleanup watchers");
  if (!list_ok(loop, &loop->forks, RX__KIND_FORK, offsetof(rx_fork, _active),
               -1, bound, &n))
    return broken(what, "fork watchers");
  if (!list_ok(loop, &loop->embeds, RX__KIND_EMBED, offsetof(rx_embed, _active),
               -1, bound, &n))
    return broken(what, "embed watchers");
  if (!list_ok(loop, &loop->stats, RX__KIND_STAT, offsetof(rx_stat, _active),
               -1, bound, &n))
    return broken(what, "stat watchers");
  n = 0;
  if (!list_ok(loop, &loop->periodics, RX__KIND_PERIODIC,
               offsetof(rx_periodic, _active), -1, bound, &n))
    return broken(what, "periodic watchers");
  if (loop->nperiodics < 0 || n != (size_t)loop->nperiodics)
    return broken(what, "periodic count");
  n = 0;
  if (!list_ok(loop, &loop->children, RX__KIND_CHILD,
               offsetof(rx_child, _active), -1, bound, &n))
    return broken(what, "child watchers");
  size_t sigchld = 0;
  n = 0;
  walk(&loop->children, bound, &n, child_sigchld, &sigchld);
  if (loop->sigchld_users < 0 || sigchld != (size_t)loop->sigchld_users)
    return broken(what, "child count");
  return 0;
}

/* An op on fd `fd`'s queue: submitted on this loop, for this fd; the head
 * of an ordered queue is armed (or parked for a buffer), the rest queued. */
struct op_spec {
  const rx_loop *loop;
  int fd;
  int q;
  const struct rx__link *head;
};

static bool op_ok(const struct rx__link *node, const void *arg) {
  const struct op_spec *spec = arg;
  const rx_op *op = rx__container_of(node, rx_op, _ent.link);
  if (op->_loop != spec->loop || op->_fd != spec->fd)
    return false;
  if (spec->q == RX__Q_FREE || node == spec->head->next)
    return op->_state == RX__OPS_ARMED || op->_state == RX__OPS_PARKED;
  return op->_state == RX__OPS_QUEUED;
}

static bool done_ok(const struct rx__link *node, const void *arg) {
  const rx_op *op = rx__container_of(node, rx_op, _ent.link);
  return op->_loop == arg && op->_state == RX__OPS_DONE;
}

static int verify_ops(rx_loop *loop, const char **what, size_t bound) {
  size_t total = 0;
  for (int fd = 0; fd < loop->nopfds; fd++) {
    const struct rx__opfd *o = &loop->opfds[fd];
    size_t n = 0;
    for (int q = 0; q < RX__NQ; q++) {
      struct op_spec spec = {loop, fd, q, &o->q[q]};
      if (!walk(&o->q[q], bound, &n, op_ok, &spec))
        return broken(what, "op queue");
    }
    if (n != o->nops)
      return broken(what, "op count");
    total += n;
  }
  size_t done = 0;
  if (!walk(&loop->ops_done, bound, &done, done_ok, loop))
    return broken(what, "op done list");
  if (done + (size_t)loop->nops_ready != loop->ops_due ||
      total > loop->ops_inflight || loop->ops_kernel > loop->ops_inflight)
    return broken(what, "op counts");
  if (rx__tw_validate(&loop->op_wheel) != 0 ||
      rx__tw_count(&loop->op_wheel) != loop->ops_timed)
    return broken(what, "op deadline wheel");
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
      (rc = verify_lists(loop, what, bound)) != 0 ||
      (rc = verify_ops(loop, what, bound)) != 0)
    return rc;
  if (rx__tw_validate(&loop->wheel) != 0)
    return broken(what, "timer wheel");
  if (what != NULL)
    *what = NULL;
  return 0;
}
