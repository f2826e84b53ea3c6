/*
 * epoll.c - the epoll backend: the same contract as io_uring.c on epoll(7).
 *
 * Kernel notes:
 *  a) epoll registers (file, fd) pairs, not fds. Closing an fd removes the
 *     registration only when that was the file's last reference; a file that
 *     lives on (dup, fork) keeps reporting events under the old fd number.
 *     Each registration therefore carries its fd's 32-bit generation in its
 *     tag (data.u64 is rx__tag_poll(fd, generation), internal.h), and an
 *     event whose generation is not the fd's current one is dropped instead
 *     of being delivered to a new watcher.
 *  b) An fd that lost its last watcher has its registration removed
 *     (EPOLL_CTL_DEL) at the next flush, unless a start brought one back
 *     first, and takes a new generation. When a freshly set watcher starts
 *     (RX__FD_RENEW, see io.c), the registration is renewed with a new
 *     generation. With an unchanged interest that is an ADD: EEXIST proves
 *     that the file the number names is the one registered, which then
 *     stands as it was (libev's test, and cheaper than a MOD, which polls
 *     the file again). A changed interest is a MOD, falling back to ADD on
 *     ENOENT because the number may now name a new file (and to MOD on
 *     EEXIST). A plain stop and start between two waits costs no
 *     epoll_ctl().
 *  c) epoll_ctl() refuses dead fds with EBADF, reported to the watchers as
 *     RX_ERROR. It refuses regular files and directories with EPERM; those
 *     are always ready for poll(2) and for io_uring's POLL_ADD, so here too
 *     (as libev does): they go on an always-ready list that every wait
 *     reports, and a wait never blocks while the list holds one. Such a
 *     file has no edges: RX_ET watchers hear of it every iteration too, as
 *     on io_uring, where its poll completes at once and is re-armed.
 *  d) epoll_pwait2() (Linux 5.11) takes a timespec, so timers wait with
 *     nanosecond precision; on older kernels epoll_wait() is used with the
 *     timeout rounded up to whole milliseconds, so timers are never early.
 *  e) EPOLLHUP and EPOLLERR are always reported; like libev, they wake both
 *     readers and writers, whose next read or write returns the error.
 *  f) A registration dropped by note a) cannot be removed: EPOLL_CTL_DEL
 *     names (file, fd) through the fd, which now refers to another file. If
 *     the old file stays ready, level-triggered epoll would report it in
 *     every wait and the loop would never block again. So, as libev does,
 *     the first such event makes the next wait rebuild the epoll set from
 *     the fd table (and the doorbell), which leaves the orphan behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../reactor/internal.h"

#define MAX_EVENTS 256

struct rx_epoll {
  struct rx_loop loop; /* first: a loop pointer is a backend pointer */
  int epfd;
  int no_pwait2; /* epoll_pwait2 returned ENOSYS once */
  int orphan;    /* note f): an orphaned registration reported */
  int *always;   /* note c): fds epoll refused with EPERM */
  int nalways, capalways;
  struct epoll_event events[MAX_EVENTS];
};

static inline struct rx_epoll *backend_of(rx_loop *loop) {
  return (struct rx_epoll *)(void *)loop;
}

static int epoll_create_loop(rx_loop **loop,
                             const struct rx_loop_options *opts) {
  (void)opts;
  struct rx_epoll *be = rx__alloc(sizeof(*be));
  if (be == NULL)
    return -ENOMEM;
  memset(be, 0, sizeof(*be));
  be->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (be->epfd < 0) {
    int err = -errno;
    rx__free(be, sizeof(*be));
    return err;
  }
  *loop = &be->loop;
  return 0;
}

static void epoll_destroy(rx_loop *loop) {
  struct rx_epoll *be = backend_of(loop);
  rx__free(be->always, sizeof(*be->always) * (size_t)be->capalways);
  close(be->epfd);
  rx__free(be, sizeof(*be));
}

/* epoll_ctl(), counted for rx_loop_metrics(). */
static int ctl(struct rx_epoll *be, int op, int fd, struct epoll_event *ev) {
  be->loop.m.enters++;
  if (op != EPOLL_CTL_DEL)
    be->loop.m.rearms++;
  return epoll_ctl(be->epfd, op, fd, ev);
}

static uint32_t epoll_mask(uint8_t want) {
  return ((want & RX_READ) ? EPOLLIN : 0) | ((want & RX_WRITE) ? EPOLLOUT : 0) |
         ((want & RX_ET) ? EPOLLET : 0);
}

/* Puts `fd` on the always-ready list (note c); -ENOMEM if it cannot grow. */
static int list_always(struct rx_epoll *be, int fd, struct rx__fd *f) {
  if (f->backend & RX__FD_EPOLL_LISTED)
    return 0;
  if (be->nalways == be->capalways) {
    int cap = be->capalways ? be->capalways * 2 : 16;
    int *a = rx__realloc(be->always, sizeof(*a) * (size_t)be->capalways,
                         sizeof(*a) * (size_t)cap);
    if (a == NULL)
      return -ENOMEM;
    be->always = a;
    be->capalways = cap;
  }
  be->always[be->nalways++] = fd;
  f->backend |= RX__FD_EPOLL_LISTED;
  return 0;
}

/* Forgets the registration of an fd without watchers (note b). DEL fails
 * harmlessly when the fd is closed already; a registration that survives
 * with the file (note a) has the old generation, which is now stale. */
static void drop(struct rx_epoll *be, int fd, struct rx__fd *f) {
  if (f->backend & RX__FD_EPOLL_ALWAYS) {
    f->backend &= (uint8_t)~RX__FD_EPOLL_ALWAYS; /* report_always() unlists */
  } else if (f->kernel != 0) {
    ctl(be, EPOLL_CTL_DEL, fd, NULL);
    f->gen++;
  }
  f->kernel = 0;
}

/* Tells the kernel the interest of one changed fd; see notes b) and c).
 * Returns true if it reported the fd's watchers an error (rx__io_error()). */
static bool apply_change(struct rx_epoll *be, int fd) {
  rx_loop *loop = &be->loop;
  struct rx__fd *f = &loop->fds[fd];
  bool renew = (f->flags & RX__FD_RENEW) != 0;
  f->flags &= ~(RX__FD_CHANGED | RX__FD_RENEW);
  if (f->want == 0) {
    drop(be, fd, f);
    return false;
  }
  if (f->backend & RX__FD_EPOLL_ALWAYS) {
    if (!renew) {
      /* The same file, perhaps with a new interest: still on the list. */
      if (list_always(be, fd, f) != 0) {
        f->backend &= (uint8_t)~RX__FD_EPOLL_ALWAYS;
        rx__io_error(loop, fd);
        return true;
      }
      f->kernel = f->want;
      return false;
    }
    /* The number may name a pollable file now. */
    f->backend &= (uint8_t)~RX__FD_EPOLL_ALWAYS;
    f->kernel = 0;
  }
  if (f->want == f->kernel && !renew)
    return false;

  struct epoll_event ev;
  int op = f->kernel != 0 && f->want != f->kernel ? EPOLL_CTL_MOD
                                                  : EPOLL_CTL_ADD;
  if (renew)
    f->gen++;
  ev.events = epoll_mask(f->want);
  ev.data.u64 = rx__tag_poll(fd, f->gen);
  int rc = ctl(be, op, fd, &ev);
  if (rc < 0 && errno == EEXIST && renew && f->want == f->kernel) {
    /* Note b): the file the number names is still registered, with this
     * interest, so the registration stands as it was. */
    f->gen--;
    return false;
  }
  if (rc < 0 && errno == ENOENT && op == EPOLL_CTL_MOD)
    rc = ctl(be, EPOLL_CTL_ADD, fd, &ev);
  else if (rc < 0 && errno == EEXIST && op == EPOLL_CTL_ADD)
    rc = ctl(be, EPOLL_CTL_MOD, fd, &ev);
  if (rc < 0 && errno == EPERM && list_always(be, fd, f) == 0) {
    f->backend |= RX__FD_EPOLL_ALWAYS;
    f->kernel = f->want;
    return false;
  }
  if (rc < 0) {
    f->kernel = 0;
    rx__io_error(loop, fd);
    return true;
  }
  f->kernel = f->want;
  return false;
}

/* Applies every change; true if one was reported as an error. */
static bool flush_changes(struct rx_epoll *be) {
  rx_loop *loop = &be->loop;
  bool reported = false;
  /* rx__io_error() may append to the list while it is walked; those
   * entries have no watchers left and cost nothing. */
  for (int i = 0; i < loop->nchanges; i++)
    reported |= apply_change(be, loop->changes[i]);
  loop->nchanges = 0;
  return reported;
}

static int wait_events(struct rx_epoll *be, int64_t timeout) {
  be->loop.m.enters++;
  if (!be->no_pwait2) {
    struct timespec ts, *tsp = NULL;
    if (timeout >= 0) {
      ts.tv_sec = timeout / 1000000000;
      ts.tv_nsec = timeout % 1000000000;
      tsp = &ts;
    }
    int n = epoll_pwait2(be->epfd, be->events, MAX_EVENTS, tsp, NULL);
    if (n >= 0 || errno != ENOSYS)
      return n;
    be->no_pwait2 = 1;
  }
  int ms = -1;
  if (timeout >= 0)
    ms = timeout > (int64_t)INT32_MAX * 1000000
             ? INT32_MAX
             : (int)((timeout + 999999) / 1000000);
  return epoll_wait(be->epfd, be->events, MAX_EVENTS, ms);
}

static int epoll_doorbell(rx_loop *loop);

/* Note f): a new epoll set with every wanted fd queued for an ADD. On
 * failure (no fd left), the old set stays and the next wait tries again. */
static int rebuild(struct rx_epoll *be) {
  rx_loop *loop = &be->loop;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    return -errno;
  close(be->epfd);
  be->epfd = ep;
  be->orphan = 0;
  if (loop->wakefd >= 0)
    epoll_doorbell(loop);
  rx__fds_renew_all(loop);
  return 0;
}

/* In a forked child: the epoll fd it inherited names the parent's epoll
 * set (one file, shared), so a change made through it would change the
 * parent's interest, and a wait would report the parent's events. A new
 * set, rebuilt from the fd table, as for note f), but the old fd is closed
 * first, so that a child with no fd to spare gets its number back. If the
 * new set cannot be made (-EMFILE), the loop has none (epfd -1) and tries
 * again at its next iteration (loop.c). */
static int epoll_fork(rx_loop *loop) {
  struct rx_epoll *be = backend_of(loop);
  if (be->epfd >= 0)
    close(be->epfd);
  be->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (be->epfd < 0)
    return -errno;
  int rc = epoll_doorbell(loop);
  if (rc != 0) {
    close(be->epfd);
    be->epfd = -1;
    return rc;
  }
  be->orphan = 0;
  rx__fds_renew_all(loop);
  return 0;
}

/* Note c): every listed file is ready for whatever its watchers want. An
 * fd that lost its watchers leaves the list. */
static void report_always(struct rx_epoll *be) {
  rx_loop *loop = &be->loop;
  int kept = 0;
  for (int i = 0; i < be->nalways; i++) {
    int fd = be->always[i];
    struct rx__fd *f = rx__fd_get(loop, fd);
    if (f == NULL)
      continue;
    if (!(f->backend & RX__FD_EPOLL_ALWAYS) || f->want == 0) {
      f->backend &= (uint8_t) ~(RX__FD_EPOLL_LISTED | RX__FD_EPOLL_ALWAYS);
      f->kernel = 0; /* nothing was ever registered */
      continue;
    }
    rx__io_event(loop, fd, f->want & (RX_READ | RX_WRITE));
    be->always[kept++] = fd;
  }
  be->nalways = kept;
}

static int epoll_wait_loop(rx_loop *loop, int64_t timeout) {
  struct rx_epoll *be = backend_of(loop);
  if (be->orphan)
    rebuild(be);
  /* A registration the kernel refused was just reported (note c): its
   * RX_ERROR is pending, and the wait must not block before it is run; nor
   * while a file is always ready. */
  if (flush_changes(be) || be->nalways > 0)
    timeout = 0;
  int n = wait_events(be, timeout);
  if (n < 0)
    return errno == EINTR ? 0 : -errno;
  loop->m.completions += (uint64_t)n;
  for (int i = 0; i < n; i++) {
    const struct epoll_event *ev = &be->events[i];
    if (ev->data.u64 == RX__TAG_WAKEFD) {
      uint64_t count;
      (void)!read(loop->wakefd, &count, sizeof(count));
      rx__doorbell(loop);
      continue;
    }
    /* Every other registration is an fd's (rx__tag_poll()). */
    int fd = rx__tag_fd(ev->data.u64);
    struct rx__fd *f = rx__fd_get(loop, fd);
    if (f == NULL || f->gen != rx__tag_gen(ev->data.u64)) {
      /* note a): a registration older than the fd's watchers; note f) */
      be->orphan = 1;
      continue;
    }
    if (f->want == 0)
      continue; /* note b): no watchers; the next flush drops it */
    int revents = 0;
    if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
      revents |= RX_READ;
    if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
      revents |= RX_WRITE;
    rx__io_event(loop, fd, revents);
  }
  report_always(be);
  return 0;
}

/* rx_io_close(): the registration goes before the fd is closed, so that a
 * file kept alive elsewhere (dup, fork) stops reporting here. */
static void epoll_release(rx_loop *loop, int fd) {
  struct rx__fd *f = rx__fd_get(loop, fd);
  if (f != NULL)
    drop(backend_of(loop), fd, f);
}

static int epoll_pollfd(rx_loop *loop) {
  return backend_of(loop)->epfd;
}

/* The doorbell is one more registration, told apart by its tag: the
 * internal RX__TAG_WAKEFD, even, where an fd's tags are odd (internal.h). */
static int epoll_doorbell(rx_loop *loop) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = RX__TAG_WAKEFD};
  if (epoll_ctl(backend_of(loop)->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
    return -errno;
  return 0;
}

const struct rx_backend_ops rx__epoll_ops = {
    .name = "epoll",
    .create = epoll_create_loop,
    .destroy = epoll_destroy,
    .wait = epoll_wait_loop,
    .flush = NULL,
    .release = epoll_release,
    .pollfd = epoll_pollfd,
    .fork = epoll_fork,
    .doorbell = epoll_doorbell,
    .wake_from = NULL,
    .submit = NULL, /* ops are emulated on readiness (op.c) */
    .cancel = NULL,
    .probe = NULL,
    .pool_new = NULL,
    .pool_put = NULL,
    .pool_free = NULL,
};
