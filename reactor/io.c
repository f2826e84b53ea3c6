/*
 * io.c - fd watchers and the fd table.
 *
 * Each watched fd has an entry in loop->fds with the list of its watchers and
 * `want`, the union of their interest. Start and stop only edit the entry and
 * put the fd on loop->changes; the backend reconciles `want` with what the
 * kernel was told just before it waits, so that any number of starts and
 * stops between two waits cost at most one kernel update per fd, and none
 * when they cancel out while the fd keeps a watcher.
 *
 * The contract is libev's: an fd is not closed while a watcher of it is
 * active (rx_io_close() stops them, releases the kernel's hold and closes).
 * An fd that loses its last watcher has its registration dropped at the
 * next flush, unless a start brings it back first: a plain stop and start
 * of the same file costs nothing. Whether the number may now name another
 * file is told the way libev tells it (EV__IOFDSET): rx_io_init() and
 * rx_io_set() mark the watcher freshly set, and starting a freshly set
 * watcher marks its fd RX__FD_RENEW, so that the backend renews the
 * registration (a new generation tag) instead of trusting what it cached.
 * The mark lives in `_next`, unused while the watcher is stopped: NULL, or
 * the watcher itself when freshly set.
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"

#define RW (RX_READ | RX_WRITE)

void rx_io_init(rx_io *w, rx_io_cb cb, int fd, int events) {
  if (w == NULL)
    return;
  w->cb = cb;
  w->_w.link.next = NULL;
  w->_w.link.prev = NULL;
  /* Bits rx_io_set() would refuse leave no interest at all, so that
   * rx_io_start() refuses the watcher (-EINVAL) instead of watching part
   * of what was asked (libev's ev_io_start() asserts on them). */
  if ((events & ~(RW | RX_ET)) != 0)
    events = 0;
  w->_w.flags = ((uint32_t)(0 - RX_MINPRI) << RX__F_PRIO_SHIFT) |
                ((uint32_t)RX__KIND_IO << RX__F_KIND_SHIFT) |
                ((uint32_t)events & RX__F_EVENTS);
  w->fd = fd;
  w->_next = w; /* freshly set */
}

static int check_interest(int fd, int events) {
  if (fd < 0)
    return -EBADF;
  if ((events & RW) == 0 || (events & ~(RW | RX_ET)) != 0)
    return -EINVAL;
  return 0;
}

int rx_io_set(rx_io *w, int fd, int events) {
  if (w == NULL)
    return -EINVAL;
  if (w->_w.flags & (RX__F_ACTIVE | RX__F_PENDING))
    return -EBUSY;
  int rc = check_interest(fd, events);
  if (rc != 0)
    return rc;
  w->fd = fd;
  w->_w.flags = (w->_w.flags & ~RX__F_EVENTS) | (uint32_t)events;
  w->_next = w; /* freshly set: the number may name a new file */
  return 0;
}

int rx_io_set_priority(rx_io *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* Grows the fd table (and the change list, which never holds more entries
 * than the table) to cover `fd`. */
static int grow_fds(rx_loop *loop, int fd) {
  if (fd >= loop->fdlimit) {
    /* The limit may have been raised since the loop was made. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || (rlim_t)fd >= rl.rlim_cur)
      return -EBADF;
    loop->fdlimit = rl.rlim_cur < INT32_MAX ? (int)rl.rlim_cur : INT32_MAX;
  }
  int n = loop->nfds > 0 ? loop->nfds : 64;
  while (n <= fd)
    n = n > INT32_MAX / 2 ? fd + 1 : n * 2;
  /* Both tables are sized by nfds, which is also the size their frees are
   * given (rx.h's sized-free contract): allocate both new ones before
   * touching the old ones, so that a failure leaves everything as it was. */
  struct rx__fd *fds = rx__alloc(sizeof(*fds) * (size_t)n);
  int *changes = rx__alloc(sizeof(*changes) * (size_t)n);
  if (fds == NULL || changes == NULL) {
    rx__free(fds, sizeof(*fds) * (size_t)n);
    rx__free(changes, sizeof(*changes) * (size_t)n);
    return -ENOMEM;
  }
  if (loop->nfds > 0) {
    memcpy(fds, loop->fds, sizeof(*fds) * (size_t)loop->nfds);
    memcpy(changes, loop->changes, sizeof(*changes) * (size_t)loop->nchanges);
  }
  memset(fds + loop->nfds, 0, sizeof(*fds) * (size_t)(n - loop->nfds));
  rx__free(loop->fds, sizeof(*fds) * (size_t)loop->nfds);
  rx__free(loop->changes, sizeof(*changes) * (size_t)loop->nfds);
  loop->fds = fds;
  loop->changes = changes;
  loop->nfds = n;
  return 0;
}

static void fd_changed(rx_loop *loop, int fd, struct rx__fd *f) {
  if (f->flags & RX__FD_CHANGED)
    return;
  f->flags |= RX__FD_CHANGED;
  loop->changes[loop->nchanges++] = fd;
}

static uint8_t union_of(const rx_loop *loop, int fd, const struct rx__fd *f) {
  uint8_t want = rx__ops_want(loop, fd);
  for (const rx_io *w = f->head; w != NULL; w = w->_next)
    want |= (uint8_t)(w->_w.flags & RX__F_EVENTS);
  return want;
}

static bool on_fd(const struct rx__fd *f, const rx_io *w) {
  for (const rx_io *i = f->head; i != NULL; i = i->_next)
    if (i == w)
      return true;
  return false;
}

int rx_io_start(rx_loop *loop, rx_io *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  int events = (int)(w->_w.flags & RX__F_EVENTS);
  int rc = check_interest(w->fd, events);
  if (rc != 0)
    return rc;
  if (w->_w.flags & RX__F_ACTIVE) {
    struct rx__fd *f = rx__fd_get(loop, w->fd);
    return f != NULL && on_fd(f, w) ? 0 : -EBUSY;
  }
  if (rx__pending_elsewhere(loop, rx__w(w)) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  if (w->fd >= loop->nfds && (rc = grow_fds(loop, w->fd)) != 0)
    return rc;
  struct rx__fd *f = &loop->fds[w->fd];
  /* Edge and level triggering are per fd in the kernel: all watchers of one
   * fd must agree, and emulated ops (op.c) are level-triggered. */
  if (f->head != NULL && ((f->want ^ (uint8_t)events) & RX_ET))
    return -EINVAL;
  if ((events & RX_ET) && rx__ops_want(loop, w->fd) != 0)
    return -EINVAL;
  if (w->_next == w)
    f->flags |= RX__FD_RENEW;
  w->_next = f->head;
  f->head = w;
  f->want |= (uint8_t)events;
  fd_changed(loop, w->fd, f);
  w->_w.flags |= RX__F_ACTIVE;
  loop->activecnt += rx__counted(&w->_w);
  return 0;
}

int rx_io_stop(rx_loop *loop, rx_io *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (!(w->_w.flags & RX__F_ACTIVE))
    return rx__clear_pending(loop, rx__w(w));
  struct rx__fd *f = rx__fd_get(loop, w->fd);
  rx_io **p = f != NULL ? &f->head : NULL;
  while (p != NULL && *p != NULL && *p != w)
    p = &(*p)->_next;
  if (p == NULL || *p == NULL)
    return -EBUSY; /* active on another loop */
  rx__clear_pending(loop, rx__w(w));
  *p = w->_next;
  w->_next = NULL;
  w->_w.flags &= ~RX__F_ACTIVE;
  loop->activecnt -= rx__counted(&w->_w);
  f->want = union_of(loop, w->fd, f);
  fd_changed(loop, w->fd, f);
  return 0;
}

void rx__io_release(rx_loop *loop, int fd) {
  struct rx__fd *f = rx__fd_get(loop, fd);
  if (f == NULL)
    return;
  while (f->head != NULL)
    rx_io_stop(loop, f->head);
  /* Now, not at the next flush: the peer sees the close at once. In a
   * forked child not yet rebuilt, the kernel state is the parent's: the
   * rebuild registers only fds that have watchers. */
  if (f->want == 0 && !rx__fork_pending(loop))
    loop->ops->release(loop, fd);
}

int rx_io_close(rx_loop *loop, int fd) {
  if (loop == NULL)
    return -EINVAL;
  if (fd < 0)
    return -EBADF;
  rx__io_release(loop, fd);
  return close(fd) == 0 ? 0 : -errno;
}

int rx__fd_reserve(rx_loop *loop, int fd) {
  return fd < loop->nfds ? 0 : grow_fds(loop, fd);
}

void rx__fd_sync(rx_loop *loop, int fd) {
  struct rx__fd *f = &loop->fds[fd];
  uint8_t want = union_of(loop, fd, f);
  if (want != f->want) {
    f->want = want;
    fd_changed(loop, fd, f);
  }
}

/* Feeds `revents` to every watcher of `fd` that asked for any of it. */
void rx__io_event(rx_loop *loop, int fd, int revents) {
  struct rx__fd *f = rx__fd_get(loop, fd);
  if (f == NULL)
    return;
  for (rx_io *w = f->head; w != NULL; w = w->_next) {
    int got = revents & (int)(w->_w.flags & RW);
    if (got != 0)
      rx__feed(loop, rx__w(w), got);
  }
  if (fd < loop->nopfds)
    rx__ops_ready(loop, fd, revents);
}

/* The kernel refused `fd` (closed or never valid): every watcher of it is
 * stopped and told once, with RX_ERROR plus its interest so that a callback
 * that only looks at RX_READ still tries the fd and sees the error. */
void rx__io_error(rx_loop *loop, int fd) {
  struct rx__fd *f = rx__fd_get(loop, fd);
  if (f == NULL)
    return;
  rx_io *w;
  while ((w = f->head) != NULL) {
    int events = (int)(w->_w.flags & RW);
    rx_io_stop(loop, w);
    rx__feed(loop, rx__w(w), RX_ERROR | events);
  }
  /* Emulated ops make their syscall, which gives them the error. */
  if (fd < loop->nopfds)
    rx__ops_ready(loop, fd, RW);
}

/* A backend lost its kernel state (a fork, an epoll set rebuilt): forget
 * what the kernel was told and queue every wanted fd for the next flush. */
void rx__fds_renew_all(rx_loop *loop) {
  for (int fd = 0; fd < loop->nfds; fd++) {
    struct rx__fd *f = &loop->fds[fd];
    f->kernel = 0;
    if (f->want != 0)
      fd_changed(loop, fd, f);
  }
}

/* The loop's share (loop.c's table of kinds): the fd table itself is the
 * loop's, shared with the backend; this stops every io watcher in it. */
void rx__io_free(rx_loop *loop) {
  for (int fd = 0; fd < loop->nfds; fd++)
    while (loop->fds[fd].head != NULL)
      rx_io_stop(loop, loop->fds[fd].head);
}
