/*
 * child.c - child process watchers (libev's ev_child).
 *
 * Two ways to hear of a child:
 *   - a pidfd (pidfd_open, Linux 5.3) for a watcher of one pid that does not
 *     trace: it polls readable once the child has exited, like any fd, so
 *     it needs no signal handler at all and touches no disposition; the
 *     status is then reaped with waitpid(pid);
 *   - SIGCHLD for the rest (pid 0 = any child, or stops and continues, which
 *     a pidfd does not report, or a kernel or sandbox that refuses
 *     pidfd_open): an internal signal watcher claims SIGCHLD for the loop,
 *     and each delivery reaps with waitpid(WNOHANG) until nothing is left.
 * Whatever is reaped goes to every watcher of that pid and every pid 0
 * watcher, with rpid and rstatus set as waitpid() reports them.
 *
 * One child per dispatch. A watcher holds one report (rpid, rstatus), so
 * a second report to a watcher whose callback has not run yet would
 * overwrite the first: three children that exited before one SIGCHLD pass
 * would make one callback. So neither path reaps while a watcher the
 * report would go to is pending, and each reaps one child per call, then
 * feeds itself again to look for the next; the zombies the kernel keeps
 * are the queue, and nothing is allocated. Both the internal SIGCHLD
 * watcher and the pidfd watchers run at RX_MINPRI, and a feed goes to the
 * tail of its priority's queue, so the callbacks fed by one reap (at any
 * priority) have run by the time the reaper is called again: N children
 * make N callbacks of each pid 0 watcher within one iteration. A reaper
 * that still finds a recipient pending (a custom invoke_pending that runs
 * callbacks out of order) only feeds itself again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static rx_child *child_of(struct rx__link *node) {
  return rx__container_of(node, rx_child, _active);
}

/* Hands (pid, status) to every watcher of pid and every pid 0 watcher. A
 * watcher of one pid whose child has exited or was killed stops, as a
 * one-shot timer does, whichever way it heard of it: nothing more can
 * come, and the pid, now reaped, may soon be another process's. */
static void deliver(rx_loop *loop, int pid, int status) {
  struct rx__link *n = loop->children.next, *next;
  for (; n != &loop->children; n = next) {
    next = n->next;
    rx_child *w = child_of(n);
    if (w->pid != 0 && w->pid != pid)
      continue;
    w->rpid = pid;
    w->rstatus = status;
    if (w->pid != 0 && (WIFEXITED(status) || WIFSIGNALED(status)))
      rx_child_stop(loop, w);
    rx__feed(loop, rx__w(w), RX_CHILD);
  }
}

/* A report for `pid` (0: a pid not known yet, as waitpid(-1) returns)
 * would go to a watcher whose callback has not run yet. */
static bool recipient_pending(rx_loop *loop, int pid) {
  for (struct rx__link *n = loop->children.next; n != &loop->children;
       n = n->next) {
    rx_child *w = child_of(n);
    if ((w->_w.flags & RX__F_PENDING) &&
        (pid == 0 || w->pid == 0 || w->pid == pid))
      return true;
  }
  return false;
}

static void on_pidfd(rx_loop *loop, rx_io *io, int revents) {
  (void)revents;
  rx_child *w = rx__container_of(io, rx_child, _io);
  if (recipient_pending(loop, w->pid)) {
    rx__feed(loop, rx__w(io), RX_READ); /* later */
    return;
  }
  int status;
  pid_t pid = waitpid(w->pid, &status, WNOHANG);
  if (pid == w->pid)
    deliver(loop, pid, status);
  else if (pid < 0)
    rx_child_stop(loop, w); /* reaped by someone else: nothing will come */
}

/* SIGCHLD: reaps one child that the SIGCHLD watchers want, and returns
 * whether to look again (a child was reaped, or one was left for later). */
static bool reap_one(rx_loop *loop) {
  int any = 0, flags = WNOHANG;
  for (struct rx__link *n = loop->children.next; n != &loop->children;
       n = n->next) {
    rx_child *w = child_of(n);
    if (w->_pidfd >= 0)
      continue;
    if (w->pid == 0)
      any = 1;
    if (w->_trace)
      flags |= WUNTRACED | WCONTINUED;
  }
  int status;
  pid_t pid;
  if (any) {
    /* Any child may come, and it goes to every pid 0 watcher. */
    if (recipient_pending(loop, 0))
      return true;
    if ((pid = waitpid(-1, &status, flags)) <= 0)
      return false;
    deliver(loop, pid, status);
    return true;
  }
  /* Only watchers of given pids: reap those, and leave other children to
   * whoever else waits for them. */
  bool later = false;
  for (struct rx__link *n = loop->children.next; n != &loop->children;
       n = n->next) {
    rx_child *w = child_of(n);
    if (w->_pidfd >= 0)
      continue;
    if (recipient_pending(loop, w->pid)) {
      later = true;
    } else if ((pid = waitpid(w->pid, &status, flags)) > 0) {
      deliver(loop, pid, status);
      return true;
    }
  }
  return later;
}

static void on_sigchld(rx_loop *loop, rx_signal *sig, int revents) {
  (void)revents;
  if (reap_one(loop))
    rx__feed(loop, rx__w(sig), RX_SIGNAL);
}

void rx_child_init(rx_child *w, rx_child_cb cb, int pid, int trace) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_CHILD);
  w->pid = pid;
  w->rpid = 0;
  w->rstatus = 0;
  w->_trace = trace != 0;
  w->_pidfd = -1;
  w->_active.next = NULL;
  w->_active.prev = NULL;
}

static int use_sigchld(rx_loop *loop) {
  if (loop->sigchld_users++ > 0)
    return 0;
  rx_signal_init(&loop->sigchld, on_sigchld, SIGCHLD);
  rx_signal_set_priority(&loop->sigchld, RX_MINPRI); /* see the top */
  rx__unref_watcher(&loop->sigchld._w); /* the child watchers count */
  int rc = rx_signal_start(loop, &loop->sigchld);
  if (rc != 0) {
    loop->sigchld_users--;
    return rc;
  }
  return 0;
}

static void unuse_sigchld(rx_loop *loop) {
  if (--loop->sigchld_users > 0)
    return;
  rx_signal_stop(loop, &loop->sigchld);
}

int rx_child_start(rx_loop *loop, rx_child *w) {
  if (loop == NULL || w == NULL || w->pid < 0)
    return -EINVAL;
  if (w->_w.flags & RX__F_ACTIVE)
    return rx__owned_by(loop, &w->_active) ? 0 : -EBUSY;
  if (rx__pending_elsewhere(loop, rx__w(w)) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  int rc;
  w->_pidfd = -1;
  if (w->pid > 0 && !w->_trace) {
    int fd = (int)syscall(SYS_pidfd_open, w->pid, 0);
    if (fd < 0 && errno == ESRCH)
      return -ESRCH;
    if (fd >= 0) {
      rx_io_init(&w->_io, on_pidfd, fd, RX_READ);
      rx_io_set_priority(&w->_io, RX_MINPRI); /* see the top */
      rx__unref_watcher(&w->_io._w);          /* the child watcher counts */
      if ((rc = rx_io_start(loop, &w->_io)) != 0) {
        close(fd);
        return rc;
      }
      w->_pidfd = fd;
    }
  }
  if (w->_pidfd < 0 && (rc = use_sigchld(loop)) != 0)
    return rc;
  rc = rx__listed_start(loop, rx__w(w), &w->_active, &loop->children);
  /* A child that exited before SIGCHLD was caught: look once now. */
  if (rc == 0 && w->_pidfd < 0)
    rx_feed_signal_event(loop, SIGCHLD);
  return rc;
}

int rx_child_stop(rx_loop *loop, rx_child *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  int was = (w->_w.flags & RX__F_ACTIVE) != 0;
  int rc = rx__listed_stop(loop, rx__w(w), &w->_active);
  if (rc != 0 || !was)
    return rc;
  if (w->_pidfd >= 0) {
    rx_io_stop(loop, &w->_io);
    close(w->_pidfd);
    w->_pidfd = -1;
  } else {
    unuse_sigchld(loop);
  }
  return 0;
}

int rx_child_set_priority(rx_child *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* The loop's share (loop.c's table of kinds). */
int rx__child_loop_init(rx_loop *loop) {
  rx__list_init(&loop->children);
  return 0;
}

void rx__child_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->children))
    rx_child_stop(loop, child_of(loop->children.next));
}
