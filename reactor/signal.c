/*
 * signal.c - Unix signals as watcher callbacks on the loop's thread.
 *
 * Signals belong to the process, not to a loop, so this is the one place
 * with process-wide state: for each signal number, the loop that watches it
 * and a flag the handler sets. The handler is async-signal-safe: a few
 * atomics and perhaps one write() on the loop's eventfd, through the same
 * sleep handshake as rx_async_send() (crossthread.c). The loop then finds the
 * flag and feeds the signal's watchers.
 *
 * A handler may run on any thread, in parallel with the loop's thread
 * giving the signal up (the last stop, or rx_loop_free(), which frees the
 * loop next). So the handler counts itself in `inflight` before it looks
 * for the owner, and giving the signal up (disown()) takes the owner away,
 * then waits until no handler is in flight: the pair of seq_cst accesses
 * on each side (a Dekker pair, as rx_loop_post's `posting` and `closing`
 * in crossthread.c) means that a handler either is seen in flight, and waited
 * for, or sees no owner. Once disown() returns, no handler holds the loop,
 * so it may be freed. The wait is short: a handler holds the count for a
 * few instructions, and no handler starts a wait of its own.
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
#include <time.h>

#include "internal.h"

static struct {
  rx_loop *loop;          /* atomic: the loop that watches it, or NULL */
  int pending;            /* atomic: delivered, not yet fed */
  unsigned inflight;      /* atomic: handlers between their look and done */
  struct sigaction saved; /* the disposition before rx's handler */
} sigs[RX__NSIG];

static pthread_mutex_t sigs_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int signum) {
  int saved_errno = errno;
  /* Seq_cst, against disown()'s store of NULL and load of this count (see
   * the top): either disown() sees this handler and waits for it, or this
   * handler's load below sees the owner gone. */
  __atomic_fetch_add(&sigs[signum].inflight, 1, __ATOMIC_SEQ_CST);
  /* Seq_cst for the pair above; as an acquire, it also makes the loop,
   * fully set up before claim() published it, visible here. */
  rx_loop *loop = __atomic_load_n(&sigs[signum].loop, __ATOMIC_SEQ_CST);
  if (loop != NULL) {
    /* Release, then the seq_cst handshake in rx__cross_notify(): the loop
     * that sees async_pending also sees this flag. */
    __atomic_store_n(&sigs[signum].pending, 1, __ATOMIC_RELEASE);
    rx__cross_notify(loop);
  }
  /* Release: this handler's accesses to the loop happen before disown()
   * reads the count that says it is done, and so before the loop is freed. */
  __atomic_fetch_sub(&sigs[signum].inflight, 1, __ATOMIC_RELEASE);
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
  rx__head_init(&w->_w, RX__KIND_SIGNAL);
  w->signum = signum;
  w->_next = NULL;
}

/* Takes the owner of `signum` away, then waits for the handlers that may
 * still hold it (see the top). A handler running on another CPU is done
 * within a few hundred ns, so the wait spins first. One that is not done
 * by then was preempted, often by this very thread (woken on its CPU): it
 * needs this CPU back, so the wait sleeps, where sched_yield() would hand
 * the CPU to whichever thread comes first for a whole time slice (in the
 * test's signal storm, 15 ms per loop freed that way, 2.6 ms with naps). */
#define DISOWN_SPINS 256
#define DISOWN_NAP_NS 10000
static void disown(int signum) {
  /* Seq_cst store, then seq_cst load of the count: the other half of
   * on_signal()'s pair. The load is also an acquire, which reads the
   * handlers' release decrements: their accesses to the loop are over. */
  __atomic_store_n(&sigs[signum].loop, NULL, __ATOMIC_SEQ_CST);
  for (int i = 0;
       __atomic_load_n(&sigs[signum].inflight, __ATOMIC_SEQ_CST) != 0; i++) {
    if (i < DISOWN_SPINS) {
      rx__cpu_relax(); /* a handler on another CPU: done in a moment */
    } else {
      struct timespec nap = {0, DISOWN_NAP_NS};
      nanosleep(&nap, NULL);
    }
  }
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
      disown(signum); /* rx_feed_signal() may have seen it */
    }
  }
  pthread_mutex_unlock(&sigs_lock);
  return rc;
}

/* Gives `signum` up: the old disposition back, then no owner. */
static void release(int signum) {
  pthread_mutex_lock(&sigs_lock);
  sigaction(signum, &sigs[signum].saved, NULL);
  disown(signum);
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
  if (w->_w.flags & RX__F_ACTIVE)
    return on_list(loop, w) ? 0 : -EBUSY;
  if (rx__pending_elsewhere(loop, rx__w(w)) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  if (loop->signals[w->signum] == NULL) {
    int rc = claim(loop, w->signum);
    if (rc != 0)
      return rc;
    loop->nsignals++;
  }
  w->_next = loop->signals[w->signum];
  loop->signals[w->signum] = w;
  w->_w.flags |= RX__F_ACTIVE;
  loop->activecnt += rx__counted(&w->_w);
  return 0;
}

int rx_signal_stop(rx_loop *loop, rx_signal *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (!(w->_w.flags & RX__F_ACTIVE))
    return rx__clear_pending(loop, rx__w(w));
  if (!catchable(w->signum) || !on_list(loop, w))
    return -EBUSY; /* active on another loop */
  rx__clear_pending(loop, rx__w(w));
  rx_signal **p = &loop->signals[w->signum];
  while (*p != w)
    p = &(*p)->_next;
  *p = w->_next;
  w->_next = NULL;
  w->_w.flags &= ~RX__F_ACTIVE;
  loop->activecnt -= rx__counted(&w->_w);
  if (loop->signals[w->signum] == NULL) {
    release(w->signum);
    loop->nsignals--;
  }
  return 0;
}

int rx_signal_set_priority(rx_signal *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

static void feed_signal(rx_loop *loop, int signum) {
  for (rx_signal *w = loop->signals[signum]; w != NULL; w = w->_next)
    rx__feed(loop, rx__w(w), RX_SIGNAL);
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
