/*
 * signal.c - Unix signals as watcher callbacks on the loop's thread.
 *
 * Signals belong to the process, not to a loop, so this is the one place
 * with process-wide state: for each signal number, the loop that watches it
 * and a flag the handler sets. The handler is async-signal-safe: two atomic
 * stores, a load and perhaps one write() on the loop's eventfd, through the
 * same sleep handshake as rx_async_send() (async.c). The loop then finds the
 * flag and feeds the signal's watchers.
 *
 * Ownership changes (the first start, the last stop of a signal) take a
 * mutex, because two loops on two threads may race for one signal; the
 * handler never takes it. rx installs its handler only when a watcher is
 * started and restores the saved disposition when the last one stops, so a
 * program that watches no signal has none of its dispositions touched
 * (STYLE.md, "Things to avoid" 2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "internal.h"

static struct {
  rx_loop *loop;          /* atomic: the loop that watches it, or NULL */
  int pending;            /* atomic: delivered, not yet fed */
  struct sigaction saved; /* the disposition before rx's handler */
} sigs[RX__NSIG];

static pthread_mutex_t sigs_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int signum) {
  int saved_errno = errno;
  /* Acquire: the loop was fully set up before it was published here. */
  rx_loop *loop = __atomic_load_n(&sigs[signum].loop, __ATOMIC_ACQUIRE);
  if (loop != NULL) {
    /* Release, then the seq_cst handshake in rx__cross_notify(): the loop
     * that sees async_pending also sees this flag. */
    __atomic_store_n(&sigs[signum].pending, 1, __ATOMIC_RELEASE);
    rx__cross_notify(loop);
  }
  errno = saved_errno;
}

static bool catchable(int signum) {
  return signum > 0 && signum < RX__NSIG && signum != SIGKILL &&
         signum != SIGSTOP;
}

void rx_signal_init(rx_signal *w, rx_signal_cb cb, int signum) {
  if (w == NULL)
    return;
  w->cb = cb;
  w->_link.next = NULL;
  w->_link.prev = NULL;
  w->_flags = ((uint32_t)(0 - RX_MINPRI) << RX__F_PRIO_SHIFT) |
              ((uint32_t)RX__KIND_SIGNAL << RX__F_KIND_SHIFT);
  w->signum = signum;
  w->_next = NULL;
}

/* Makes `loop` the owner of `signum` and installs the handler. */
static int claim(rx_loop *loop, int signum) {
  int rc = 0;
  pthread_mutex_lock(&sigs_lock);
  rx_loop *owner = __atomic_load_n(&sigs[signum].loop, __ATOMIC_RELAXED);
  if (owner != NULL) {
    rc = owner == loop ? 0 : -EBUSY;
  } else {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* nothing interrupts the handler */
    sa.sa_flags = SA_RESTART;
    __atomic_store_n(&sigs[signum].pending, 0, __ATOMIC_RELAXED);
    /* Publish the owner before the handler can run. */
    __atomic_store_n(&sigs[signum].loop, loop, __ATOMIC_RELEASE);
    if (sigaction(signum, &sa, &sigs[signum].saved) != 0) {
      rc = -errno;
      __atomic_store_n(&sigs[signum].loop, NULL, __ATOMIC_RELAXED);
    }
  }
  pthread_mutex_unlock(&sigs_lock);
  return rc;
}

/* Gives `signum` up: the old disposition back, then no owner. */
static void release(int signum) {
  pthread_mutex_lock(&sigs_lock);
  sigaction(signum, &sigs[signum].saved, NULL);
  __atomic_store_n(&sigs[signum].loop, NULL, __ATOMIC_RELEASE);
  __atomic_store_n(&sigs[signum].pending, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&sigs_lock);
}

static bool on_list(const rx_loop *loop, const rx_signal *w) {
  for (const rx_signal *i = loop->signals[w->signum]; i != NULL; i = i->_next)
    if (i == w)
      return true;
  return false;
}

int rx_signal_start(rx_loop *loop, rx_signal *w) {
  if (loop == NULL || w == NULL || !catchable(w->signum))
    return -EINVAL;
  if (w->_flags & RX__F_ACTIVE)
    return on_list(loop, w) ? 0 : -EBUSY;
  if (loop->signals[w->signum] == NULL) {
    int rc = claim(loop, w->signum);
    if (rc != 0)
      return rc;
    loop->nsignals++;
  }
  w->_next = loop->signals[w->signum];
  loop->signals[w->signum] = w;
  w->_flags |= RX__F_ACTIVE;
  loop->activecnt++;
  return 0;
}

int rx_signal_stop(rx_loop *loop, rx_signal *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (!(w->_flags & RX__F_ACTIVE)) {
    rx__clear_pending(loop, (struct rx__head *)(void *)w);
    return 0;
  }
  if (!catchable(w->signum) || !on_list(loop, w))
    return -EBUSY; /* active on another loop */
  rx__clear_pending(loop, (struct rx__head *)(void *)w);
  rx_signal **p = &loop->signals[w->signum];
  while (*p != w)
    p = &(*p)->_next;
  *p = w->_next;
  w->_next = NULL;
  w->_flags &= ~RX__F_ACTIVE;
  loop->activecnt--;
  if (loop->signals[w->signum] == NULL) {
    release(w->signum);
    loop->nsignals--;
  }
  return 0;
}

int rx_signal_set_priority(rx_signal *w, int priority) {
  return rx__head_set_priority((struct rx__head *)(void *)w, priority);
}

static void feed_signal(rx_loop *loop, int signum) {
  for (rx_signal *w = loop->signals[signum]; w != NULL; w = w->_next)
    rx__feed(loop, (struct rx__head *)(void *)w, RX_SIGNAL);
}

int rx_feed_signal(int signum) {
  if (signum <= 0 || signum >= RX__NSIG)
    return -EINVAL;
  on_signal(signum);
  return 0;
}

int rx_feed_signal_event(rx_loop *loop, int signum) {
  if (loop == NULL || signum <= 0 || signum >= RX__NSIG)
    return -EINVAL;
  feed_signal(loop, signum);
  return 0;
}

/* Feeds the watchers of every signal of this loop the handler flagged;
 * called by the cross-thread drain once async_pending says something came. */
void rx__signal_scan(rx_loop *loop) {
  for (int signum = 1; signum < RX__NSIG; signum++) {
    if (loop->signals[signum] != NULL &&
        __atomic_load_n(&sigs[signum].pending, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(&sigs[signum].pending, 0, __ATOMIC_ACQUIRE))
      feed_signal(loop, signum);
  }
}

/* Stops every signal watcher of a loop that is being freed. */
void rx__signal_stop_all(rx_loop *loop) {
  for (int signum = 1; signum < RX__NSIG; signum++)
    while (loop->signals[signum] != NULL)
      rx_signal_stop(loop, loop->signals[signum]);
}
