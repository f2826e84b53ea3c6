/*
 * loop.c - the loop's life and its run sequence.
 *
 * One iteration, in order (rx_run()):
 *   prepare watchers -> compute the wait -> backend wait (the backend applies
 *   fd changes and waits in one call; wait_step()) -> refresh the cached
 *   clock -> expired timers -> idle watchers if nothing of their priority is
 *   pending -> check watchers -> pending callbacks, highest priority first.
 *
 * Pending events wait in FIFO queues, one per priority, linked through the
 * watchers themselves, so feeding and invoking never allocate. A callback may
 * stop, restart or free any watcher, its own included: the invoke loop takes
 * one watcher off a queue at a time and never holds a pointer across a
 * callback.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---------------------------------------------------------------------------
 * Allocation. One process-wide hook, set before any loop exists (a loop must
 * free with the allocator it allocated with).
 */

static void *libc_alloc(void *ctx, size_t size) {
  (void)ctx;
  return malloc(size);
}

static void *libc_realloc(void *ctx, void *ptr, size_t old_size,
                          size_t new_size) {
  (void)ctx;
  (void)old_size;
  return realloc(ptr, new_size);
}

static void libc_free(void *ctx, void *ptr, size_t size) {
  (void)ctx;
  (void)size;
  free(ptr);
}

static struct rx_allocator allocator = {libc_alloc, libc_realloc, libc_free,
                                        NULL};
/* Loops alive, so that the allocator is not swapped under one. Relaxed
 * atomics suffice: the count only guards against misuse, it orders nothing. */
static int live_loops;

int rx_set_allocator(const struct rx_allocator *a) {
  if (a != NULL && (a->alloc == NULL || a->realloc == NULL || a->free == NULL))
    return -EINVAL;
  if (__atomic_load_n(&live_loops, __ATOMIC_RELAXED) != 0)
    return -EBUSY;
  if (a == NULL)
    allocator =
        (struct rx_allocator){libc_alloc, libc_realloc, libc_free, NULL};
  else
    allocator = *a;
  return 0;
}

void *rx__alloc(size_t size) {
  return allocator.alloc(allocator.ctx, size);
}

void *rx__realloc(void *ptr, size_t old_size, size_t new_size) {
  if (ptr == NULL)
    return rx__alloc(new_size);
  return allocator.realloc(allocator.ctx, ptr, old_size, new_size);
}

void rx__free(void *ptr, size_t size) {
  if (ptr != NULL)
    allocator.free(allocator.ctx, ptr, size);
}

/* ---------------------------------------------------------------------------
 * Time. CLOCK_MONOTONIC is read through the vDSO: no syscall.
 */

int64_t rx__clock_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rx_now(const rx_loop *loop) {
  return loop != NULL ? loop->now : 0;
}

void rx_now_update(rx_loop *loop) {
  if (loop != NULL && !(loop->flags & RX_LOOP_MANUAL_CLOCK))
    loop->now = rx__clock_now();
}

/* The names in parentheses here: rx.h's macros of those names check
 * callers' time arguments. */
int(rx_clock_advance)(rx_loop *loop, int64_t ns) {
  if (loop == NULL || !(loop->flags & RX_LOOP_MANUAL_CLOCK) || ns < 0)
    return -EINVAL;
  loop->now = ns > INT64_MAX - loop->now ? INT64_MAX : loop->now + ns;
  return 0;
}

void rx_suspend(rx_loop *loop) {
  if (loop != NULL && loop->suspended_at < 0) {
    rx_now_update(loop);
    loop->suspended_at = loop->now;
  }
}

void rx_resume(rx_loop *loop) {
  if (loop == NULL || loop->suspended_at < 0)
    return;
  rx_now_update(loop);
  int64_t delta = loop->now - loop->suspended_at;
  loop->suspended_at = -1;
  if (delta > 0)
    rx__timer_shift(loop, delta);
  rx__periodic_resume(loop);
}

int(rx_set_io_collect_interval)(rx_loop *loop, int64_t io) {
  if (loop == NULL || io < 0)
    return -EINVAL;
  loop->io_collect = io;
  return 0;
}

int(rx_set_busy_poll)(rx_loop *loop, int64_t max) {
  if (loop == NULL || max < 0)
    return -EINVAL;
  loop->poll_max = max;
  if (loop->poll_window > max)
    loop->poll_window = max;
  return 0;
}

int(rx_set_timeout_collect_interval)(rx_loop *loop, int64_t timeout) {
  if (loop == NULL || timeout < 0)
    return -EINVAL;
  loop->timeout_collect = timeout;
  return 0;
}

int rx_loop_metrics(const rx_loop *loop, struct rx_metrics *m) {
  if (loop == NULL || m == NULL)
    return -EINVAL;
  m->iterations = loop->iteration;
  m->dispatched = loop->m.dispatched;
  m->enters = loop->m.enters;
  m->completions = loop->m.completions;
  m->overflows = loop->m.overflows;
  m->rearms = loop->m.rearms;
  m->wakeups = loop->m.wakeups;
  m->coalesced = loop->m.cross_events > loop->m.wakeups
                     ? loop->m.cross_events - loop->m.wakeups
                     : 0;
  m->idle_ns = loop->m.idle_ns;
  m->poll_ns = loop->m.poll_ns;
  m->poll_hits = loop->m.poll_hits;
  m->async_fences = loop->m.async_fences;
  m->backend = loop->ops->name;
  m->reason = loop->reason;
  return 0;
}

/* ---------------------------------------------------------------------------
 * Creation and destruction.
 */

#define DEFAULT_TICK_SHIFT 19

static int tick_shift(int64_t tick, unsigned *shift) {
  if (tick == 0) {
    *shift = DEFAULT_TICK_SHIFT;
    return 0;
  }
  if (tick < 1024 || tick > ((int64_t)1 << 30))
    return -EINVAL;
  unsigned s = 63 - (unsigned)__builtin_clzll((unsigned long long)tick);
  *shift = s;
  return 0;
}

static int create_with(const struct rx_backend_ops *ops, rx_loop **loop,
                       const struct rx_loop_options *opts) {
  int rc = ops->create(loop, opts);
  if (rc == 0)
    (*loop)->ops = ops;
  return rc;
}

static const char *uring_refusal(int rc) {
  switch (rc) {
  case -ENOSYS:
    return "io_uring_setup: not implemented (ENOSYS); using epoll";
  case -EPERM:
    return "io_uring_setup: not permitted (EPERM); using epoll";
  case -EACCES:
    return "io_uring_setup: access denied (EACCES); using epoll";
  case RX__EKERNMEM:
    return "io_uring_setup: out of locked memory (ENOMEM); using epoll";
  default:
    return NULL;
  }
}

/* Backend selection: forced by the option or by
 * RX_BACKEND, otherwise io_uring with epoll as the fallback on the errors
 * that mean "not here". A forced epoll makes no io_uring syscall at all. */
static int select_backend(rx_loop **loop, const struct rx_loop_options *opts) {
  const char *want = opts->backend;
  const char *why = "requested in rx_loop_options";
  if (want == NULL) {
    want = getenv("RX_BACKEND");
    why = "forced by RX_BACKEND";
    if (want != NULL && *want == '\0')
      want = NULL;
  }
  if (want != NULL) {
    const struct rx_backend_ops *ops;
    if (strcmp(want, "io_uring") == 0)
      ops = &rx__uring_ops;
    else if (strcmp(want, "epoll") == 0)
      ops = &rx__epoll_ops;
    else
      return -EINVAL;
    int rc = create_with(ops, loop, opts);
    if (rc == 0)
      (*loop)->reason = why;
    return rc == RX__EKERNMEM ? -ENOMEM : rc;
  }
  int rc = create_with(&rx__uring_ops, loop, opts);
  if (rc == 0) {
    (*loop)->reason = "default: io_uring is available";
    return 0;
  }
  const char *reason = uring_refusal(rc);
  if (reason == NULL)
    return rc;
  rc = create_with(&rx__epoll_ops, loop, opts);
  if (rc == 0)
    (*loop)->reason = reason;
  return rc;
}

/* RX_LOOP_FORKCHECK: a pthread_atfork() child handler counts forks; a loop
 * compares the count with the one it last saw, one load per iteration. The
 * handler is installed once, by the first loop that asks. */
static unsigned fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void count_fork(void) {
  __atomic_fetch_add(&fork_generation, 1, __ATOMIC_RELAXED);
}

static void install_atfork(void) {
  pthread_atfork(NULL, NULL, count_fork);
}

/* Each watcher kind's share of the loop: its lists, counts and the fds it
 * holds. rx_loop_new() calls every init in this order; rx_loop_free() every
 * free in the same order, after the cleanup watchers ran: the kinds that
 * drive others internally (cross-thread tasks, which may stop any watcher;
 * embed, child, stat, signal and periodic watchers, which run io, timer,
 * prepare and signal watchers of their own) go before the kinds they use.
 * A NULL init: the zeroed loop is already the empty share. Fork handling
 * has no hook per kind: only the cross-thread share has any
 * (rx__cross_fork(), in rebuild()). */
static const struct {
  int (*init)(rx_loop *loop);
  void (*free)(rx_loop *loop);
} kinds[] = {
    {rx__cleanup_loop_init, rx__cleanup_free},
    {rx__ops_loop_init, rx__ops_free}, /* while the backend still waits */
    {rx__cross_init, rx__cross_free},  /* posted tasks, the doorbell */
    {rx__async_loop_init, rx__async_free},
    {rx__embed_loop_init, rx__embed_free},
    {rx__fork_loop_init, rx__fork_free},
    {rx__child_loop_init, rx__child_free},
    {rx__stat_loop_init, rx__stat_free},
    {NULL, rx__signal_stop_all},
    {rx__periodic_loop_init, rx__periodic_free},
    {NULL, rx__io_free},
    {NULL, rx__timer_stop_all}, /* the wheel is the loop's: rx_loop_new() */
    {rx__idle_loop_init, rx__idle_free},
    {rx__prepare_loop_init, rx__prepare_free},
    {rx__check_loop_init, rx__check_free},
};
enum { NKINDS = sizeof(kinds) / sizeof(kinds[0]) };

int rx_loop_new(rx_loop **out, const struct rx_loop_options *opts) {
  static const struct rx_loop_options defaults;
  if (out == NULL)
    return -EINVAL;
  *out = NULL;
  if (opts == NULL)
    opts = &defaults;
  unsigned shift;
  /* The same options are refused whichever backend the loop gets. */
  if ((opts->flags & ~(unsigned)(RX_LOOP_MANUAL_CLOCK | RX_LOOP_FORKCHECK |
                                 RX_LOOP_DEFER)) != 0 ||
      opts->ring_entries > RX__MAX_RING_ENTRIES ||
      tick_shift(opts->timer_tick, &shift) != 0)
    return -EINVAL;

  rx_loop *loop;
  int rc = select_backend(&loop, opts);
  if (rc != 0)
    return rc;

  loop->flags = opts->flags;
  loop->now = (loop->flags & RX_LOOP_MANUAL_CLOCK) ? 0 : rx__clock_now();
  loop->invoke = rx_invoke_pending;
  loop->suspended_at = -1;
  loop->poll_max = RX_BUSY_POLL_DEFAULT;
  if (loop->flags & RX_LOOP_FORKCHECK) {
    pthread_once(&atfork_once, install_atfork);
    loop->fork_gen = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
  }
  for (int i = 0; i < RX__NPRI; i++) {
    rx__list_init(&loop->pending[i]);
    rx__list_init(&loop->timers_pending[i]);
  }
  rx__tw_init(&loop->wheel, loop->now, shift);
  loop->wheel.exact = (loop->flags & RX_LOOP_MANUAL_CLOCK) != 0;
  for (int k = 0; k < NKINDS; k++) {
    if (kinds[k].init == NULL || (rc = kinds[k].init(loop)) == 0)
      continue;
    while (k-- > 0) /* the shares made so far, all empty */
      kinds[k].free(loop);
    loop->ops->destroy(loop);
    return rc;
  }
  struct rlimit rl;
  loop->fdlimit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < INT32_MAX
                      ? (int)rl.rlim_cur
                      : INT32_MAX;
  __atomic_fetch_add(&live_loops, 1, __ATOMIC_RELAXED);
  *out = loop;
  return 0;
}

static void feed_list(rx_loop *loop, struct rx__link *list, size_t offset,
                      int revents);

static rx_loop *default_loop;

int rx_loop_free(rx_loop *loop) {
  if (loop == NULL)
    return -EINVAL;
  /* From one of the loop's own callbacks, freeing would pull the loop from
   * under the rx_run() (or the rx_loop_free()) that called it. */
  if (loop->depth > 0 || loop->freeing)
    return -EBUSY;
  loop->freeing = 1; /* for its cleanup watchers and the tasks it runs */
  /* A fork not yet rebuilt from: the backend drops the parent's kernel
   * state instead of tearing it down (destroy sees RX__FORK_KERNEL). */
  rx__fork_pending(loop);
  /* Cleanup watchers first, while everything still works (libev too runs
   * every pending callback then). */
  if (!rx__list_empty(&loop->cleanups)) {
    feed_list(loop, &loop->cleanups, offsetof(rx_cleanup, _active), RX_CLEANUP);
    loop->invoke(loop);
  }
  /* Leave every watcher stopped, so that its memory may be reused. */
  for (int k = 0; k < NKINDS; k++)
    kinds[k].free(loop);
  rx__free(loop->fds, sizeof(*loop->fds) * (size_t)loop->nfds);
  rx__free(loop->changes, sizeof(*loop->changes) * (size_t)loop->nfds);
  loop->fds = NULL;
  loop->changes = NULL;
  loop->nfds = 0;
  /* The default loop can be made again after it is freed. */
  rx_loop *expected = loop;
  __atomic_compare_exchange_n(&default_loop, &expected, NULL, false,
                              __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
  loop->ops->destroy(loop);
  __atomic_fetch_sub(&live_loops, 1, __ATOMIC_RELAXED);
  return 0;
}

rx_loop *rx_default_loop(void) {
  rx_loop *loop = __atomic_load_n(&default_loop, __ATOMIC_ACQUIRE);
  if (loop != NULL)
    return loop;
  if (rx_loop_new(&loop, NULL) != 0)
    return NULL;
  rx_loop *expected = NULL;
  /* Release: another thread that loads the pointer sees a built loop. */
  if (!__atomic_compare_exchange_n(&default_loop, &expected, loop, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    rx_loop_free(loop);
    return expected;
  }
  return loop;
}

/* ---------------------------------------------------------------------------
 * Accessors.
 */

void rx_ref(rx_loop *loop) {
  if (loop != NULL)
    loop->activecnt++;
}

void rx_unref(rx_loop *loop) {
  if (loop != NULL)
    loop->activecnt--;
}

uint64_t rx_iteration(const rx_loop *loop) {
  return loop != NULL ? loop->iteration : 0;
}

int rx_depth(const rx_loop *loop) {
  return loop != NULL ? loop->depth : 0;
}

unsigned rx_pending_count(const rx_loop *loop) {
  return loop != NULL ? loop->pendingcnt : 0;
}

void rx_loop_set_data(rx_loop *loop, void *data) {
  if (loop != NULL)
    loop->data = data;
}

void *rx_loop_data(const rx_loop *loop) {
  return loop != NULL ? loop->data : NULL;
}

const char *rx_backend_name(const rx_loop *loop) {
  return loop != NULL ? loop->ops->name : NULL;
}

const char *rx_backend_reason(const rx_loop *loop) {
  return loop != NULL ? loop->reason : NULL;
}

const char *rx_strerror(int err) {
  if (err == 0)
    return "Success";
  if (err > 0)
    return "Unknown error (positive value)";
  if (err < -4095) /* beyond any errno (MAX_ERRNO); -INT_MIN would overflow */
    return "Unknown error";
  /* strerror() is not thread-safe; strerrordesc_np() returns static text. */
  const char *s = strerrordesc_np(-err);
  return s != NULL ? s : "Unknown error";
}

/* ---------------------------------------------------------------------------
 * Pending queues.
 */

static inline int prio_index(uint32_t flags) {
  return (int)((flags & RX__F_PRIO) >> RX__F_PRIO_SHIFT);
}

void rx__feed(rx_loop *loop, struct rx__watcher *w, int revents) {
  if (w->flags & RX__F_PENDING) {
    w->flags |= (uint32_t)revents << RX__F_REVENTS_SHIFT;
    return;
  }
  int pri = prio_index(w->flags);
  w->flags |= RX__F_PENDING | ((uint32_t)revents << RX__F_REVENTS_SHIFT);
  rx__list_push(&loop->pending[pri], &w->link);
  loop->pendingcnt++;
  if (pri > loop->pendingpri)
    loop->pendingpri = pri;
}

/* A watcher waits only on the queues of the loop it is active on (start,
 * feed and the clearing below refuse the others), so an active one's
 * owner is the loop its kind's list says. An inactive one can be pending
 * only because it was fed by hand, and only its queue, circular through a
 * sentinel in its loop, tells which loop that was: the walk costs
 * O(position) and is paid only for such a watcher. */
int rx__pending_elsewhere(const rx_loop *loop, const struct rx__watcher *w) {
  if ((w->flags & (RX__F_PENDING | RX__F_ACTIVE)) != RX__F_PENDING ||
      rx__owned_by(loop, &w->link))
    return 0;
  return -EBUSY;
}

int rx__clear_pending(rx_loop *loop, struct rx__watcher *w) {
  if (!(w->flags & RX__F_PENDING))
    return 0;
  int rc = rx__pending_elsewhere(loop, w);
  if (rc != 0)
    return rc;
  rx__list_unlink(&w->link);
  w->flags &= ~(RX__F_PENDING | (RX__F_REVENTS_MASK << RX__F_REVENTS_SHIFT));
  loop->pendingcnt--;
  return 0;
}

static void invoke_head(rx_loop *loop, struct rx__watcher *w) {
  int revents = (int)((w->flags >> RX__F_REVENTS_SHIFT) & RX__F_REVENTS_MASK);
  w->flags &= ~(RX__F_PENDING | (RX__F_REVENTS_MASK << RX__F_REVENTS_SHIFT));
  loop->pendingcnt--;
  loop->m.dispatched++;
  /* Each kind is called through its own pointer type: no cast of a
   * function pointer to an incompatible type. */
  switch ((w->flags & RX__F_KIND) >> RX__F_KIND_SHIFT) {
  case RX__KIND_IO: {
    rx_io *io = rx__of_head(w, rx_io);
    io->cb(loop, io, revents);
    break;
  }
  case RX__KIND_IDLE: {
    rx_idle *idle = rx__of_head(w, rx_idle);
    idle->cb(loop, idle, revents);
    break;
  }
  case RX__KIND_PREPARE: {
    rx_prepare *p = rx__of_head(w, rx_prepare);
    p->cb(loop, p, revents);
    break;
  }
  case RX__KIND_CHECK: {
    rx_check *c = rx__of_head(w, rx_check);
    c->cb(loop, c, revents);
    break;
  }
  case RX__KIND_ASYNC: {
    rx_async *a = rx__of_head(w, rx_async);
    a->cb(loop, a, revents);
    break;
  }
  case RX__KIND_CLEANUP: {
    rx_cleanup *c = rx__of_head(w, rx_cleanup);
    c->cb(loop, c, revents);
    break;
  }
  case RX__KIND_SIGNAL: {
    rx_signal *sg = rx__of_head(w, rx_signal);
    sg->cb(loop, sg, revents);
    break;
  }
  case RX__KIND_EMBED: {
    rx_embed *e = rx__of_head(w, rx_embed);
    e->cb(loop, e, revents);
    break;
  }
  case RX__KIND_PERIODIC: {
    rx_periodic *p = rx__of_head(w, rx_periodic);
    p->cb(loop, p, revents);
    break;
  }
  case RX__KIND_FORK: {
    rx_fork *f = rx__of_head(w, rx_fork);
    f->cb(loop, f, revents);
    break;
  }
  case RX__KIND_CHILD: {
    rx_child *c = rx__of_head(w, rx_child);
    c->cb(loop, c, revents);
    break;
  }
  case RX__KIND_STAT: {
    rx_stat *st = rx__of_head(w, rx_stat);
    st->cb(loop, st, revents);
    break;
  }
  default:
    abort(); /* a corrupted watcher: a broken internal invariant */
  }
}

/* Invokes pending callbacks, highest priority first, FIFO within a priority
 * (expired timers before other events of the same priority, since they were
 * collected in deadline order). A callback that feeds a higher priority makes
 * the scan restart there. */
void rx_invoke_pending(rx_loop *loop) {
  if (loop == NULL)
    return;
  while (loop->pendingcnt > 0) {
    int pri = loop->pendingpri;
    struct rx__link *node;
    if ((node = rx__list_shift(&loop->timers_pending[pri])) != NULL) {
      rx__timer_invoke(loop, node);
    } else if ((node = rx__list_shift(&loop->pending[pri])) != NULL) {
      invoke_head(loop, rx__container_of(node, struct rx__watcher, link));
    } else if (pri > 0) {
      loop->pendingpri = pri - 1;
    } else {
      abort(); /* pendingcnt disagrees with the queues */
    }
  }
  loop->pendingpri = 0;
}

void rx_set_invoke_pending(rx_loop *loop, void (*invoke)(rx_loop *loop)) {
  if (loop != NULL)
    loop->invoke = invoke != NULL ? invoke : rx_invoke_pending;
}

/* Whether the active watcher `w` of kind `kind` is active on `loop`: on
 * the list its kind keeps there. */
static bool active_here(rx_loop *loop, struct rx__watcher *w, unsigned kind) {
  const struct rx__link *at;
  switch (kind) {
  case RX__KIND_IO: {
    rx_io *io = rx__of_head(w, rx_io);
    struct rx__fd *f = rx__fd_get(loop, io->fd);
    for (rx_io *i = f != NULL ? f->head : NULL; i != NULL; i = i->_next)
      if (i == io)
        return true;
    return false;
  }
  case RX__KIND_SIGNAL: {
    rx_signal *sg = rx__of_head(w, rx_signal);
    if (sg->signum <= 0 || sg->signum >= RX__NSIG)
      return false;
    for (rx_signal *i = loop->signals[sg->signum]; i != NULL; i = i->_next)
      if (i == sg)
        return true;
    return false;
  }
  case RX__KIND_EMBED:
    at = &rx__of_head(w, rx_embed)->_prepare._active;
    break;
  case RX__KIND_PERIODIC:
    at = &rx__of_head(w, rx_periodic)->_active;
    break;
  case RX__KIND_CHILD:
    at = &rx__of_head(w, rx_child)->_active;
    break;
  case RX__KIND_STAT:
    at = &rx__of_head(w, rx_stat)->_active;
    break;
  case RX__KIND_ASYNC:
    at = &rx__of_head(w, rx_async)->_active;
    break;
  case RX__KIND_IDLE:
    at = &rx__of_head(w, rx_idle)->_active;
    break;
  case RX__KIND_PREPARE:
    at = &rx__of_head(w, rx_prepare)->_active;
    break;
  case RX__KIND_CHECK:
    at = &rx__of_head(w, rx_check)->_active;
    break;
  case RX__KIND_CLEANUP:
    at = &rx__of_head(w, rx_cleanup)->_active;
    break;
  case RX__KIND_FORK:
    at = &rx__of_head(w, rx_fork)->_active;
    break;
  default:
    return false;
  }
  return rx__owned_by(loop, at);
}

int rx_feed_event_head(rx_loop *loop, void *w, int revents) {
  struct rx__watcher *h = w;
  if (loop == NULL || h == NULL)
    return -EINVAL;
  unsigned kind = (h->flags & RX__F_KIND) >> RX__F_KIND_SHIFT;
  if (kind < RX__KIND_IO || kind > RX__KIND_STAT)
    return -EINVAL; /* not an initialised watcher */
  /* A watcher of another loop would wait on this loop's queue, and its own
   * loop would later unlink it from there: -EBUSY, as for start. */
  if ((h->flags & RX__F_ACTIVE) ? !active_here(loop, h, kind)
                                : rx__pending_elsewhere(loop, h) != 0)
    return -EBUSY;
  rx__feed(loop, h, revents & (int)RX__F_REVENTS_MASK);
  return 0;
}

int rx_clear_pending_head(rx_loop *loop, void *w) {
  struct rx__watcher *h = w;
  if (loop == NULL || h == NULL)
    return -EINVAL;
  if (!(h->flags & RX__F_PENDING))
    return 0;
  unsigned kind = (h->flags & RX__F_KIND) >> RX__F_KIND_SHIFT;
  if ((h->flags & RX__F_ACTIVE) && !active_here(loop, h, kind))
    return -EBUSY;
  int revents = (int)((h->flags >> RX__F_REVENTS_SHIFT) & RX__F_REVENTS_MASK);
  int rc = rx__clear_pending(loop, h);
  return rc != 0 ? rc : revents;
}

int rx_feed_fd_event(rx_loop *loop, int fd, int revents) {
  if (loop == NULL)
    return -EINVAL;
  if (fd < 0)
    return -EBADF;
  rx__io_event(loop, fd, revents & (RX_READ | RX_WRITE));
  return 0;
}

/* ---------------------------------------------------------------------------
 * The run sequence.
 */

static void feed_list(rx_loop *loop, struct rx__link *list, size_t offset,
                      int revents) {
  for (struct rx__link *n = list->next; n != list; n = n->next)
    rx__feed(loop, rx__head_at(n, offset), revents);
}

/* libev's rule: idle watchers of the highest priority that has any run, and
 * only while nothing of that priority or higher is pending. */
static void feed_idles(rx_loop *loop) {
  for (int pri = RX__NPRI - 1; pri >= 0; pri--) {
    if (!rx__list_empty(&loop->pending[pri]) ||
        !rx__list_empty(&loop->timers_pending[pri]))
      return;
    if (!rx__list_empty(&loop->idles[pri])) {
      feed_list(loop, &loop->idles[pri], offsetof(rx_idle, _active), RX_IDLE);
      return;
    }
  }
}

/* How long the backend may block: not at all when something is already due,
 * otherwise until the wheel's next deadline (but at least the timeout
 * collect interval), or without limit. A manual clock does not move while
 * the loop blocks, so there a timer never bounds a wait: it makes it
 * non-blocking. */
static int64_t wait_timeout(rx_loop *loop, int mode) {
  if ((mode & RX_RUN_NOWAIT) || loop->pendingcnt > 0 || loop->idlecnt > 0 ||
      loop->ops_due > 0 || loop->activecnt <= 0 ||
      loop->break_how != RX_BREAK_CANCEL)
    return 0;
  int64_t next = rx__tw_next(&loop->wheel);
  if (loop->ops_timed > 0) {
    int64_t op = rx__tw_next(&loop->op_wheel);
    next = op < next ? op : next;
  }
  int64_t periodic = rx__periodic_timeout(loop);
  if (next == INT64_MAX)
    return periodic;
  if (next <= loop->now || (loop->flags & RX_LOOP_MANUAL_CLOCK))
    return 0;
  int64_t timeout = next - loop->now;
  if (timeout < loop->timeout_collect)
    timeout = loop->timeout_collect;
  return periodic >= 0 && periodic < timeout ? periodic : timeout;
}

/* libev's io collect interval: before a blocking wait, sleep a little so
 * that more io is ready when the loop looks; the wait is shortened by as
 * much, and a timer still bounds it. */
static int64_t collect_io(rx_loop *loop, int64_t timeout) {
  int64_t nap = loop->io_collect;
  if (timeout >= 0 && nap > timeout)
    nap = timeout;
  if (nap <= 0)
    return timeout;
  struct timespec ts = {(time_t)(nap / 1000000000), (long)(nap % 1000000000)};
  nanosleep(&ts, NULL);
  return timeout < 0 ? -1 : timeout - nap;
}

static void refresh_now(rx_loop *loop) {
  if (!(loop->flags & RX_LOOP_MANUAL_CLOCK))
    loop->now = rx__clock_now();
}

/* The loop is in a forked child, whose one thread is the one that forked:
 * none of its loops sleeps. Until the doorbell is the child's own,
 * `doorbell_rung` stays set, so that no post or signal rings the parent's
 * eventfd (or a closed one). */
static void mark_forked(rx_loop *loop) {
  loop->postfork = RX__FORK_WAKEFD | RX__FORK_KERNEL | RX__FORK_NOTIFY;
  __atomic_store_n(&loop->sleeping, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&loop->doorbell_rung, 1, __ATOMIC_RELAXED);
}

void rx_loop_fork(rx_loop *loop) {
  if (loop != NULL)
    mark_forked(loop);
}

bool rx__fork_pending(rx_loop *loop) {
  if (loop->flags & RX_LOOP_FORKCHECK) {
    unsigned gen = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
    if (gen != loop->fork_gen) {
      loop->fork_gen = gen;
      mark_forked(loop);
    }
  }
  return (loop->postfork & (RX__FORK_WAKEFD | RX__FORK_KERNEL)) != 0;
}

/* The kernel state a fork calls for: a doorbell of its own (the inherited
 * eventfd is the parent's too), then the backend's. Each step is done
 * once; one that failed (-EMFILE: no fd free) is tried again from where it
 * stopped, and until then the loop never waits, flushes or changes the
 * backend's kernel state, which is the parent's or none. */
static int rebuild(rx_loop *loop) {
  if (!rx__fork_pending(loop))
    return 0;
  int rc;
  if (loop->postfork & RX__FORK_WAKEFD) {
    if ((rc = rx__cross_fork(loop)) != 0)
      return rc;
    loop->postfork &= ~(unsigned)RX__FORK_WAKEFD;
  }
  if ((rc = loop->ops->fork(loop)) != 0)
    return rc;
  loop->postfork &= ~(unsigned)RX__FORK_KERNEL;
  rx__ops_forked(loop);
  __atomic_store_n(&loop->doorbell_rung, 0, __ATOMIC_RELAXED);
  return 0;
}

/* The first iteration in a forked child: the rebuild, then the fork
 * watchers. While the rebuild fails, every iteration ends here with its
 * error. */
static int after_fork(rx_loop *loop) {
  int rc = rebuild(loop);
  if (rc != 0)
    return rc;
  if (loop->postfork & RX__FORK_NOTIFY) {
    loop->postfork &= ~(unsigned)RX__FORK_NOTIFY;
    if (!rx__list_empty(&loop->forks)) {
      feed_list(loop, &loop->forks, offsetof(rx_fork, _active), RX_FORK);
      loop->invoke(loop);
    }
  }
  return 0;
}

/* The busy-poll window adapts as KVM's halt polling does (Linux,
 * virt/kvm/kvm_main.c, "halt_poll_ns"): a sleep that a doorbell ended
 * within `poll_max` of the loop running out of work says that the other
 * threads hand work over that fast, so the window grows (from
 * POLL_START_NS, doubling up to poll_max) and the next hand-off is caught
 * by polling instead of a sleep and a wake-up (about 10 us of CPU each on a
 * VM). A sleep that outlasts poll_max shrinks it (halving, then off), so a
 * loop whose work comes slower, or from io and timers, does not poll. A
 * poll that finds work leaves it as it is. */
#define POLL_START_NS 10000
static void busy_poll_adapt(rx_loop *loop, bool doorbell, int64_t quiet_ns) {
  int64_t w = loop->poll_window;
  if (doorbell && quiet_ns < loop->poll_max)
    w = w < POLL_START_NS ? POLL_START_NS : w * 2;
  else if (quiet_ns >= loop->poll_max)
    w = w / 2 < POLL_START_NS ? 0 : w / 2;
  loop->poll_window = w < loop->poll_max ? w : loop->poll_max;
}

/* What is left of a wait of `timeout` ns after `spent` ns of polling: a
 * timer is never made late by the poll. 0 means "do not block". */
static int64_t poll_left(int64_t timeout, int64_t spent) {
  return spent >= timeout ? 0 : timeout - spent;
}

/* The busy poll before a sleep: hand queued changes to the kernel and take
 * what is ready, then poll for cross-thread work (busy_poll_adapt()).
 * Leaves in *timeout what is left of the wait, 0 if work was found, and in
 * *quiet when the loop ran out of work. Returns the backend's error. */
static inline int busy_poll(rx_loop *loop, int64_t *timeout, int64_t *quiet) {
  *quiet = rx__clock_now();
  uint64_t completions = loop->m.completions;
  int rc = loop->ops->wait(loop, 0);
  if (rc < 0)
    return rc;
  /* Anything reaped counts as work found: an op's callback runs from the
   * reap (io_uring) and may have stopped the last active watcher or started
   * a timer, so the timeout computed before it no longer holds. */
  if (loop->m.completions != completions || loop->pendingcnt > 0 ||
      loop->ops_due > 0 ||
      rx__cross_poll(loop, *timeout > 0 && *timeout < loop->poll_window
                               ? *timeout
                               : loop->poll_window))
    *timeout = 0;
  else if (*timeout > 0) /* the poll used up part of the wait */
    *timeout = poll_left(*timeout, rx__clock_now() - *quiet);
  return rc;
}

/* A wait that may block, with other threads told to ring (crossthread.c):
 * the io collect nap, the backend's wait, then the idle time and the busy-poll
 * window accounted for. `quiet` is when the loop ran out of work if it
 * polled first, else 0. */
static int sleep_step(rx_loop *loop, int64_t timeout, int64_t quiet) {
  uint64_t wakeups = loop->m.wakeups;
  int64_t before = rx__clock_now();
  if (loop->io_collect > 0)
    timeout = collect_io(loop, timeout);
  int rc = loop->ops->wait(loop, timeout);
  rx__cross_awake(loop);
  int64_t after = rx__clock_now();
  loop->m.idle_ns += after - before;
  busy_poll_adapt(loop, loop->m.wakeups != wakeups,
                  after - (quiet != 0 ? quiet : before));
  return rc;
}

/* An iteration's wait for events, in steps: how long it may block, a busy
 * poll first if the window is open, then a sleep if the loop may sleep
 * (rx__cross_may_sleep() tells other threads to ring), or a look without
 * blocking if it has not looked yet; then the clock. Returns the backend's
 * error. */
static inline int wait_step(rx_loop *loop, int mode) {
  int rc = 0;
  int64_t timeout = wait_timeout(loop, mode);
  int64_t quiet = 0;
  if (timeout != 0 && loop->poll_window > 0 &&
      (rc = busy_poll(loop, &timeout, &quiet)) < 0)
    return rc;
  if (timeout != 0 && rx__cross_may_sleep(loop))
    rc = sleep_step(loop, timeout, quiet);
  else if (quiet == 0)
    rc = loop->ops->wait(loop, 0);
  refresh_now(loop);
  return rc;
}

int rx_run(rx_loop *loop, int mode) {
  if (loop == NULL || (mode & ~(RX_RUN_ONCE | RX_RUN_NOWAIT)) != 0)
    return -EINVAL;
  loop->depth++;
  loop->break_how = RX_BREAK_CANCEL;
  /* rx_loop_timeout() may have announced a wait in a host loop. */
  if (__atomic_load_n(&loop->sleeping, __ATOMIC_RELAXED))
    rx__cross_awake(loop);
  /* A nested run first finishes what its caller left pending. */
  loop->invoke(loop);
  int rc = 0;
  do {
    loop->iteration++;
    if (loop->postfork != 0 ||
        ((loop->flags & RX_LOOP_FORKCHECK) &&
         __atomic_load_n(&fork_generation, __ATOMIC_RELAXED) !=
             loop->fork_gen)) {
      if ((rc = after_fork(loop)) < 0)
        break;
    }
    if (!rx__list_empty(&loop->prepares)) {
      feed_list(loop, &loop->prepares, offsetof(rx_prepare, _active),
                RX_PREPARE);
      loop->invoke(loop);
    }
    if (loop->break_how != RX_BREAK_CANCEL)
      break;

    if ((rc = wait_step(loop, mode)) < 0)
      break;
    if (loop->ops_timed > 0)
      rx__ops_expire(loop);
    if (loop->ops_due > 0 || loop->ops_recancel)
      rx__ops_run(loop);

    rx__timer_expire(loop);
    if (loop->nperiodics > 0)
      rx__periodic_expire(loop);
    rx__cross_drain(loop);
    if (loop->idlecnt > 0)
      feed_idles(loop);
    if (!rx__list_empty(&loop->checks))
      feed_list(loop, &loop->checks, offsetof(rx_check, _active), RX_CHECK);
    loop->invoke(loop);
  } while (loop->activecnt > 0 && loop->break_how == RX_BREAK_CANCEL &&
           !(mode & (RX_RUN_ONCE | RX_RUN_NOWAIT)));
  if (loop->break_how == RX_BREAK_ONE)
    loop->break_how = RX_BREAK_CANCEL;
  /* Not a ring that a fork (perhaps in a callback) left unmapped. */
  if (loop->ops->flush != NULL && !rx__fork_pending(loop))
    loop->ops->flush(loop);
  loop->depth--;
  if (rc < 0)
    return rc;
  return loop->activecnt > 0;
}

int rx_loop_fd(rx_loop *loop) {
  if (loop == NULL)
    return -EINVAL;
  /* After a fork, the fd must be the child's own: rebuild now (the fork
   * watchers still wait for the next iteration), or give the error. */
  int rc = rebuild(loop);
  if (rc != 0)
    return rc;
  return loop->ops->pollfd(loop);
}

int rx_loop_timeout(rx_loop *loop, int64_t *out) {
  if (loop == NULL || out == NULL)
    return -EINVAL;
  /* A fork to finish: rx_run() does it, or returns why it cannot. */
  if (rx__fork_pending(loop) || loop->postfork != 0) {
    *out = 0;
    return 0;
  }
  refresh_now(loop);
  int64_t timeout = wait_timeout(loop, RX_RUN_ONCE);
  if (timeout == 0 && loop->activecnt <= 0 && loop->pendingcnt == 0 &&
      loop->idlecnt == 0 && rx__tw_next(&loop->wheel) == INT64_MAX)
    timeout = -1; /* nothing at all: no reason to come back early */
  if (timeout != 0 && !rx__cross_may_sleep(loop))
    timeout = 0;
  *out = timeout;
  return 0;
}

void rx_break(rx_loop *loop, int how) {
  if (loop != NULL && how >= RX_BREAK_CANCEL && how <= RX_BREAK_ALL)
    loop->break_how = how;
}
