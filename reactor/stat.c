/*
 * stat.c - path attribute watchers (libev's ev_stat).
 *
 * A change is noticed two ways, as libev does on Linux:
 *   - inotify, when the path exists and can be watched: one inotify fd per
 *     loop, made on first need, read by an internal io watcher; any event
 *     on a watch makes its watchers stat() their path again;
 *   - polling every `interval`, always: inotify misses what happens to a
 *     path it does not watch (a file created later, a rename over it, a
 *     network filesystem), and a periodic stat() catches those.
 * Either way the callback runs only when the new stat() differs from the
 * last one, so a spurious inotify event or a poll costs no callback.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_INTERVAL RX_SEC(5)
#define INOTIFY_MASK                                                        \
  (IN_ATTRIB | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF | \
   IN_DONT_FOLLOW)

static rx_stat *stat_of(struct rx__link *node) {
  return rx__container_of(node, rx_stat, _active);
}

static void take(const rx_stat *w, struct stat *st) {
  if (stat(w->path, st) != 0)
    memset(st, 0, sizeof(*st)); /* st_nlink == 0: not there */
}

static bool differs(const struct stat *a, const struct stat *b) {
  return a->st_dev != b->st_dev || a->st_ino != b->st_ino ||
         a->st_mode != b->st_mode || a->st_nlink != b->st_nlink ||
         a->st_uid != b->st_uid || a->st_gid != b->st_gid ||
         a->st_rdev != b->st_rdev || a->st_size != b->st_size ||
         a->st_mtim.tv_sec != b->st_mtim.tv_sec ||
         a->st_mtim.tv_nsec != b->st_mtim.tv_nsec ||
         a->st_ctim.tv_sec != b->st_ctim.tv_sec ||
         a->st_ctim.tv_nsec != b->st_ctim.tv_nsec;
}

/* Watches the path with inotify if it can; keeps polling either way. */
static void add_watch(rx_loop *loop, rx_stat *w) {
  w->_wd = loop->inotifyfd >= 0
               ? inotify_add_watch(loop->inotifyfd, w->path, INOTIFY_MASK)
               : -1;
}

static void check(rx_loop *loop, rx_stat *w) {
  struct stat st;
  take(w, &st);
  if (!differs(&st, &w->attr))
    return;
  w->prev = w->attr;
  w->attr = st;
  /* A replaced or recreated file is another inode: watch the new one. */
  if (w->_wd < 0 || w->prev.st_ino != st.st_ino) {
    if (w->_wd >= 0)
      inotify_rm_watch(loop->inotifyfd, w->_wd);
    add_watch(loop, w);
  }
  rx__feed(loop, rx__w(w), RX_STAT);
}

static void on_poll(rx_loop *loop, rx_timer *t, int revents) {
  (void)revents;
  check(loop, rx__container_of(t, rx_stat, _timer));
}

/* inotify: every watcher of a watch descriptor that had an event looks
 * again. A removed watch (IN_IGNORED) is forgotten; polling goes on. */
static void on_inotify(rx_loop *loop, rx_io *io, int revents) {
  (void)revents;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  ssize_t n;
  while ((n = read(io->fd, buf, sizeof(buf))) > 0) {
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      struct rx__link *l = loop->stats.next, *next;
      for (; l != &loop->stats; l = next) {
        next = l->next;
        rx_stat *w = stat_of(l);
        if (w->_wd != ev->wd)
          continue;
        if (ev->mask & IN_IGNORED)
          w->_wd = -1;
        check(loop, w);
      }
      p += sizeof(*ev) + ev->len;
    }
  }
}

static void open_inotify(rx_loop *loop) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0)
    return; /* polling alone, as where inotify is not available */
  rx_io_init(&loop->inotifywatch, on_inotify, fd, RX_READ);
  rx__unref_watcher(&loop->inotifywatch._w); /* keeps no loop running */
  if (rx_io_start(loop, &loop->inotifywatch) != 0) {
    close(fd);
    return;
  }
  loop->inotifyfd = fd;
}

/* The name in parentheses: rx.h's macro of that name checks callers' times. */
void(rx_stat_init)(rx_stat *w, rx_stat_cb cb, const char *path,
                   int64_t interval) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_STAT);
  w->path = path;
  w->interval = interval;
  memset(&w->prev, 0, sizeof(w->prev));
  memset(&w->attr, 0, sizeof(w->attr));
  w->_wd = -1;
  w->_active.next = NULL;
  w->_active.prev = NULL;
}

int rx_stat_start(rx_loop *loop, rx_stat *w) {
  if (loop == NULL || w == NULL || w->path == NULL || w->interval < 0)
    return -EINVAL;
  if (w->_w.flags & RX__F_ACTIVE)
    return rx__owned_by(loop, &w->_active) ? 0 : -EBUSY;
  if (rx__pending_elsewhere(loop, rx__w(w)) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  if (loop->inotifyfd < 0)
    open_inotify(loop);
  take(w, &w->attr);
  w->prev = w->attr;
  add_watch(loop, w);
  int64_t every = w->interval > 0 ? w->interval : DEFAULT_INTERVAL;
  rx_timer_init(&w->_timer, on_poll, every, every);
  int rc = rx_timer_start(loop, &w->_timer);
  if (rc == 0) {
    rx_unref(loop);
    rc = rx__listed_start(loop, rx__w(w), &w->_active, &loop->stats);
  }
  return rc;
}

int rx_stat_stop(rx_loop *loop, rx_stat *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  int was = (w->_w.flags & RX__F_ACTIVE) != 0;
  int rc = rx__listed_stop(loop, rx__w(w), &w->_active);
  if (rc != 0 || !was)
    return rc;
  rx_ref(loop);
  rx_timer_stop(loop, &w->_timer);
  if (w->_wd >= 0) {
    /* Another watcher of the same path may share the descriptor. */
    bool shared = false;
    for (struct rx__link *l = loop->stats.next; l != &loop->stats; l = l->next)
      shared |= stat_of(l)->_wd == w->_wd;
    if (!shared)
      inotify_rm_watch(loop->inotifyfd, w->_wd);
    w->_wd = -1;
  }
  return 0;
}

int rx_stat_stat(rx_loop *loop, rx_stat *w) {
  if (loop == NULL || w == NULL || w->path == NULL)
    return -EINVAL;
  take(w, &w->attr);
  return 0;
}

int rx_stat_set_priority(rx_stat *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* The loop's share (loop.c's table of kinds). */
int rx__stat_loop_init(rx_loop *loop) {
  rx__list_init(&loop->stats);
  loop->inotifyfd = -1;
  return 0;
}

void rx__stat_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->stats))
    rx_stat_stop(loop, stat_of(loop->stats.next));
  if (loop->inotifyfd >= 0) {
    rx_io_stop(loop, &loop->inotifywatch);
    close(loop->inotifyfd);
    loop->inotifyfd = -1;
  }
}
