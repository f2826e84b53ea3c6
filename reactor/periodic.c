/*
 * periodic.c - wall-clock timers (libev's ev_periodic).
 *
 * A periodic's time is on CLOCK_REALTIME, which can be set, so periodics do
 * not go on the timer wheel (monotonic): they are few, kept on one list, and
 * each iteration looks for the earliest (O(periodics), nothing at all while
 * there are none). Two things keep them right across a change of the wall
 * clock:
 *   - the loop never waits longer than until the earliest one, measured on
 *     the wall clock just before the wait, and fires one only when the wall
 *     clock, read after the wait, has reached its time: never early;
 *   - a timerfd armed with TFD_TIMER_CANCEL_ON_SET (Linux 2.6.28) turns
 *     readable when the wall clock is set, which wakes the loop so that
 *     every periodic is recomputed for the new time at once, instead of at
 *     the end of a wait computed for the old one.
 *
 * Periodics due in one iteration are fed in deadline order, ties in start
 * order, as timers are (and as libev's heap runs them). The list stays in
 * start order, so the due batch is sorted where it lies: one pass finds
 * the due ones, and when their times already rise along the list (one due
 * periodic, the usual case, or several started in deadline order) it feeds
 * them in a second pass; otherwise it picks the next by (time, place on the
 * list), one pass per due periodic. That costs O(periodics x due) in the
 * worst case, against a sorted list's O(periodics) insert on every start,
 * again and rescheduling, and the whole list re-sorted on a change of the
 * wall clock; with few periodics, few of them due at once, the batch sort
 * is the cheaper, and it needs neither a sequence number in the public
 * struct nor any allocation. New times are computed only once the whole
 * batch is fed, so that a periodic rescheduled to "now" is not fed twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int64_t wall_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rx_wallclock(const rx_loop *loop) {
  if (loop == NULL)
    return 0;
  return (loop->flags & RX_LOOP_MANUAL_CLOCK) ? loop->now : wall_clock();
}

static void refresh_wall(rx_loop *loop) {
  loop->wallnow = rx_wallclock(loop);
}

/* The next time `w` fires, after `now` for a repeating periodic. */
static int64_t next_at(rx_periodic *w, int64_t now) {
  if (w->reschedule != NULL) {
    int64_t at = w->reschedule(w, now);
    return at < now ? now : at;
  }
  if (w->interval > 0) {
    /* The first offset + k * interval strictly after now. */
    int64_t k = now >= w->offset ? (now - w->offset) / w->interval + 1 : 0;
    if (k > (INT64_MAX - w->offset) / w->interval)
      return INT64_MAX;
    return w->offset + k * w->interval;
  }
  return w->offset;
}

static rx_periodic *periodic_of(struct rx__link *node) {
  return rx__container_of(node, rx_periodic, _active);
}

/* Every periodic again from the wall clock: after it was set, or after
 * rx_resume(). Absolute ones keep their time. */
static void recompute_all(rx_loop *loop) {
  refresh_wall(loop);
  for (struct rx__link *n = loop->periodics.next; n != &loop->periodics;
       n = n->next) {
    rx_periodic *w = periodic_of(n);
    if (w->reschedule != NULL || w->interval > 0)
      w->at = next_at(w, loop->wallnow);
  }
}

/* Arms the clock-change timerfd: an absolute expiry far away, cancelled
 * (ECANCELED on read, and readable) if the wall clock is set. */
static int arm_clockfd(int fd) {
  struct itimerspec its = {{0, 0}, {(time_t)INT32_MAX, 0}};
  if (timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its,
                      NULL) != 0)
    return -errno;
  return 0;
}

static void on_clock_set(rx_loop *loop, rx_io *w, int revents) {
  (void)revents;
  uint64_t expirations;
  /* ECANCELED is the news; read() also clears the readiness. */
  (void)!read(w->fd, &expirations, sizeof(expirations));
  arm_clockfd(w->fd);
  recompute_all(loop);
}

static int watch_clock(rx_loop *loop) {
  if (loop->flags & RX_LOOP_MANUAL_CLOCK)
    return 0; /* a manual clock is never set behind the loop's back */
  int fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = arm_clockfd(fd);
  if (rc == 0) {
    rx_io_init(&loop->clockwatch, on_clock_set, fd, RX_READ);
    rx__unref_watcher(&loop->clockwatch._w); /* keeps no loop running */
    rc = rx_io_start(loop, &loop->clockwatch);
  }
  if (rc != 0) {
    close(fd);
    return rc;
  }
  loop->clockfd = fd;
  return 0;
}

static void unwatch_clock(rx_loop *loop) {
  if (loop->clockfd < 0)
    return;
  rx_io_stop(loop, &loop->clockwatch);
  close(loop->clockfd);
  loop->clockfd = -1;
}

/* The name in parentheses: rx.h's macro of that name checks callers' times. */
void(rx_periodic_init)(rx_periodic *w, rx_periodic_cb cb, int64_t offset,
                       int64_t interval, rx_reschedule_fn reschedule) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_PERIODIC);
  w->offset = offset;
  w->interval = interval;
  w->reschedule = reschedule;
  w->at = 0;
  w->_active.next = NULL;
  w->_active.prev = NULL;
}

int rx_periodic_start(rx_loop *loop, rx_periodic *w) {
  if (loop == NULL || w == NULL || w->interval < 0 ||
      (w->interval > 0 && w->reschedule == NULL &&
       (w->offset < 0 || w->offset >= w->interval)))
    return -EINVAL;
  if (w->_w.flags & RX__F_ACTIVE)
    return rx__owned_by(loop, &w->_active) ? 0 : -EBUSY;
  if (rx__pending_elsewhere(loop, rx__w(w)) != 0)
    return -EBUSY; /* fed to another loop, and still waiting there */
  if (loop->nperiodics == 0) {
    int rc = watch_clock(loop);
    if (rc != 0)
      return rc;
  }
  refresh_wall(loop);
  w->at = next_at(w, loop->wallnow);
  int rc = rx__listed_start(loop, rx__w(w), &w->_active, &loop->periodics);
  if (rc == 0)
    loop->nperiodics++;
  return rc;
}

int rx_periodic_stop(rx_loop *loop, rx_periodic *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  int was = (w->_w.flags & RX__F_ACTIVE) != 0;
  int rc = rx__listed_stop(loop, rx__w(w), &w->_active);
  if (rc == 0 && was && --loop->nperiodics == 0)
    unwatch_clock(loop);
  return rc;
}

int rx_periodic_again(rx_loop *loop, rx_periodic *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (!(w->_w.flags & RX__F_ACTIVE))
    return rx_periodic_start(loop, w);
  if (!rx__owned_by(loop, &w->_active))
    return -EBUSY;
  refresh_wall(loop);
  w->at = next_at(w, loop->wallnow);
  return 0;
}

int rx_periodic_set_priority(rx_periodic *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

/* The due periodic that comes after (`at`, `after`) in deadline order,
 * ties in list (start) order; NULL when none is left. */
static rx_periodic *next_due(rx_loop *loop, int64_t at,
                             struct rx__link *after) {
  rx_periodic *best = NULL;
  bool past = after == NULL;
  for (struct rx__link *n = loop->periodics.next; n != &loop->periodics;
       n = n->next) {
    rx_periodic *w = periodic_of(n);
    if (n == after) {
      past = true;
      continue;
    }
    if (w->at > loop->wallnow || w->at < at || (w->at == at && !past))
      continue;
    if (best == NULL || w->at < best->at)
      best = w;
  }
  return best;
}

/* Feeds every periodic whose time the wall clock has reached, in deadline
 * order (see the top); then repeating ones get their next time, absolute
 * ones stop (as one-shot timers do). */
void rx__periodic_expire(rx_loop *loop) {
  refresh_wall(loop);
  int due = 0;
  bool sorted = true;
  int64_t last = INT64_MIN;
  struct rx__link *n, *next;
  for (n = loop->periodics.next; n != &loop->periodics; n = n->next) {
    rx_periodic *w = periodic_of(n);
    if (w->at > loop->wallnow)
      continue;
    due++;
    sorted = sorted && w->at >= last;
    last = w->at;
  }
  if (due == 0)
    return;
  if (sorted) {
    for (n = loop->periodics.next; n != &loop->periodics; n = n->next)
      if (periodic_of(n)->at <= loop->wallnow)
        rx__feed(loop, rx__w(periodic_of(n)), RX_PERIODIC);
  } else {
    rx_periodic *w = NULL;
    while ((w = next_due(loop, w != NULL ? w->at : INT64_MIN,
                         w != NULL ? &w->_active : NULL)) != NULL)
      rx__feed(loop, rx__w(w), RX_PERIODIC);
  }
  for (n = loop->periodics.next; n != &loop->periodics; n = next) {
    next = n->next;
    rx_periodic *w = periodic_of(n);
    if (w->at > loop->wallnow)
      continue;
    if (w->reschedule != NULL || w->interval > 0) {
      w->at = next_at(w, loop->wallnow);
    } else {
      rx__list_unlink(&w->_active);
      w->_w.flags &= ~RX__F_ACTIVE;
      loop->activecnt -= rx__counted(&w->_w);
      if (--loop->nperiodics == 0)
        unwatch_clock(loop);
    }
  }
}

/* How long the loop may wait, in ns, for the earliest periodic: -1 for
 * none. A manual clock never bounds a wait (see wait_timeout in loop.c). */
int64_t rx__periodic_timeout(rx_loop *loop) {
  if (loop->nperiodics == 0)
    return -1;
  if (loop->flags & RX_LOOP_MANUAL_CLOCK)
    return 0;
  refresh_wall(loop);
  int64_t best = INT64_MAX;
  for (struct rx__link *n = loop->periodics.next; n != &loop->periodics;
       n = n->next) {
    int64_t at = periodic_of(n)->at;
    if (at < best)
      best = at;
  }
  return best <= loop->wallnow ? 0 : best - loop->wallnow;
}

void rx__periodic_resume(rx_loop *loop) {
  if (loop->nperiodics > 0)
    recompute_all(loop);
}

/* The loop's share (loop.c's table of kinds). */
int rx__periodic_loop_init(rx_loop *loop) {
  rx__list_init(&loop->periodics);
  loop->clockfd = -1;
  return 0;
}

void rx__periodic_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->periodics))
    rx_periodic_stop(loop, periodic_of(loop->periodics.next));
  unwatch_clock(loop);
}
