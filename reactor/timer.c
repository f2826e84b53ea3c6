/*
 * timer.c - relative timers on the loop's timer wheel.
 *
 * A timer's one link serves two lists in turn: the wheel while it waits, the
 * timer pending queue of its priority once it has expired. A repeating timer
 * therefore leaves the wheel when it expires and is put back, at its
 * previous deadline plus `repeat`, just before its callback runs; between
 * the two it is active and pending, exactly as in libev. This is what keeps
 * rx_timer at 56 bytes (libev's ev_timer is 48; the 8 more name the loop
 * whose list holds it, so that a call naming another loop is refused) with
 * an O(1) wheel.
 *
 * The timer's state bits (priority, active, pending, invalid) share one word
 * with its deadline (rx.h, struct rx__tw_entry); every access below reads or
 * writes that word whole. While a timer is stopped, the deadline bits hold
 * the delay it will start with:
 * `after` from init/set, or what was left when it was stopped (libev's
 * semantics: stop keeps the remaining time, so start resumes; an expired
 * one-shot timer has none left). rx_timer_set() or rx_timer_again() give a
 * fresh delay.
 */
#include <errno.h>
#include <stdbool.h>

#include "internal.h"

#define MAX_DELAY ((int64_t)((UINT64_C(1) << 58) - 1))

static inline unsigned tflags(const rx_timer *w) {
  return (unsigned)(w->_ent.word >> RX__TW_AT_BITS);
}

static inline void tset(rx_timer *w, unsigned bits) {
  w->_ent.word |= (uint64_t)bits << RX__TW_AT_BITS;
}

static inline void tclear(rx_timer *w, unsigned bits) {
  w->_ent.word &= ~((uint64_t)bits << RX__TW_AT_BITS);
}

static inline int prio_index(const rx_timer *w) {
  return (int)(tflags(w) & RX__T_PRIO);
}

/* The delay a stopped timer starts with. */
static inline int64_t delay_of(const rx_timer *w) {
  return (int64_t)(w->_ent.word & RX__TW_AT_MASK);
}

static inline rx_timer *timer_of(struct rx__link *node) {
  return rx__container_of(node, rx_timer, _ent.link);
}

static void set_delay(rx_timer *w, int64_t after) {
  uint64_t d = (uint64_t)(after < 0           ? 0
                          : after > MAX_DELAY ? MAX_DELAY
                                              : after);
  w->_ent.word = (w->_ent.word & ~RX__TW_AT_MASK) | d;
}

/* The names in parentheses: rx.h also defines rx_timer_init and
 * rx_timer_set as macros that check their callers' time arguments. */
void(rx_timer_init)(rx_timer *w, rx_timer_cb cb, int64_t after,
                    int64_t repeat) {
  if (w == NULL)
    return;
  w->cb = cb;
  w->_ent.link.next = NULL;
  w->_ent.link.prev = NULL;
  w->_ent.word = (uint64_t)(0 - RX_MINPRI) << RX__TW_AT_BITS;
  w->repeat = repeat;
  set_delay(w, after);
  if (after < 0 || repeat < 0)
    tset(w, RX__T_INVALID);
}

int(rx_timer_set)(rx_timer *w, int64_t after, int64_t repeat) {
  if (w == NULL || after < 0 || repeat < 0)
    return -EINVAL;
  if (tflags(w) & (RX__T_ACTIVE | RX__T_PENDING))
    return -EBUSY;
  tclear(w, RX__T_INVALID);
  w->repeat = repeat;
  set_delay(w, after);
  return 0;
}

int rx_timer_set_priority(rx_timer *w, int priority) {
  if (w == NULL || priority < RX_MINPRI || priority > RX_MAXPRI)
    return -EINVAL;
  if (tflags(w) & (RX__T_ACTIVE | RX__T_PENDING))
    return -EBUSY;
  tclear(w, RX__T_PRIO);
  tset(w, (unsigned)(priority - RX_MINPRI));
  return 0;
}

static void unpend(rx_loop *loop, rx_timer *w) {
  if (!(tflags(w) & RX__T_PENDING))
    return;
  rx__list_unlink(&w->_ent.link);
  tclear(w, RX__T_PENDING);
  loop->pendingcnt--;
}

static void arm(rx_loop *loop, rx_timer *w, int64_t at) {
  rx__tw_add(&loop->wheel, &w->_ent, at);
  w->_loop = loop;
  if (!(tflags(w) & RX__T_ACTIVE)) {
    tset(w, RX__T_ACTIVE);
    loop->activecnt++;
  }
}

/* Whether the linked timer `w` is on one of `loop`'s lists, its wheel or a
 * pending queue: `_loop` is set whenever the timer is linked (start, again,
 * feed), and only read while it is. */
static bool timer_here(const rx_loop *loop, const rx_timer *w) {
  return w->_loop == loop;
}

/* Deadline `delay` ns from now, saturating far in the future. */
static int64_t deadline(const rx_loop *loop, int64_t delay) {
  return delay > INT64_MAX - loop->now ? INT64_MAX : loop->now + delay;
}

/* rx_timer_start() of a timer that is invalid, active or pending. Out of
 * line, so that the common case needs no stack frame. */
static __attribute__((noinline)) int start_other(rx_loop *loop, rx_timer *w) {
  if ((tflags(w) & RX__T_INVALID) || w->repeat < 0)
    return -EINVAL;
  if (tflags(w) & RX__T_ACTIVE)
    return timer_here(loop, w) ? 0 : -EBUSY;
  /* A pending expiry of the previous run is dropped: the timer starts over;
   * one pending on another loop stays there. */
  if (!timer_here(loop, w))
    return -EBUSY;
  unpend(loop, w);
  arm(loop, w, deadline(loop, delay_of(w)));
  return 0;
}

int rx_timer_start(rx_loop *loop, rx_timer *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  uint64_t word = w->_ent.word;
  if (((unsigned)(word >> RX__TW_AT_BITS) &
       (RX__T_INVALID | RX__T_ACTIVE | RX__T_PENDING)) != 0 ||
      w->repeat < 0)
    return start_other(loop, w);
  /* The common case, a stopped timer with nothing pending: the state in one
   * store (the wheel keeps the flag bits when it writes the deadline), then
   * the wheel. */
  w->_ent.word = word | ((uint64_t)RX__T_ACTIVE << RX__TW_AT_BITS);
  w->_loop = loop;
  loop->activecnt++;
  rx__tw_add(&loop->wheel, &w->_ent,
             deadline(loop, (int64_t)(word & RX__TW_AT_MASK)));
  return 0;
}

/* Takes an active timer out of the wheel or its pending queue and keeps the
 * time it had left as its next delay. */
static void deactivate(rx_loop *loop, rx_timer *w) {
  int64_t left = rx__tw_at(&loop->wheel, &w->_ent) - loop->now;
  if (tflags(w) & RX__T_PENDING)
    unpend(loop, w);
  else
    rx__tw_del(&loop->wheel, &w->_ent);
  set_delay(w, left);
  tclear(w, RX__T_ACTIVE);
  loop->activecnt--;
}

int rx_timer_stop(rx_loop *loop, rx_timer *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (w->_ent.link.next != NULL && !timer_here(loop, w))
    return -EBUSY; /* active or pending on another loop */
  if (tflags(w) & RX__T_ACTIVE)
    deactivate(loop, w);
  else
    unpend(loop, w);
  return 0;
}

int rx_timer_again(rx_loop *loop, rx_timer *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if ((tflags(w) & RX__T_INVALID) || w->repeat < 0)
    return -EINVAL;
  if (w->_ent.link.next != NULL && !timer_here(loop, w))
    return -EBUSY;
  if (tflags(w) & RX__T_ACTIVE) {
    if (w->repeat == 0) {
      deactivate(loop, w);
      return 0;
    }
    if (tflags(w) & RX__T_PENDING)
      unpend(loop, w);
    else
      rx__tw_del(&loop->wheel, &w->_ent);
  } else {
    unpend(loop, w);
    if (w->repeat == 0)
      return 0;
  }
  arm(loop, w, deadline(loop, w->repeat));
  return 0;
}

int64_t rx_timer_remaining(const rx_loop *loop, const rx_timer *w) {
  if (loop == NULL || w == NULL)
    return 0;
  if (tflags(w) & RX__T_ACTIVE)
    return rx__tw_at(&loop->wheel, &w->_ent) - loop->now;
  return delay_of(w);
}

/* Moves every timer the wheel hands out at the loop's time onto the pending
 * queue of its priority, in deadline order. A one-shot timer stops here, as
 * in libev; a repeating one stays active. */
void rx__timer_expire(rx_loop *loop) {
  struct rx__link due;
  rx__list_init(&due);
  rx__tw_advance(&loop->wheel, loop->now, &due);
  struct rx__link *node;
  while ((node = rx__list_shift(&due)) != NULL) {
    rx_timer *w = timer_of(node);
    int pri = prio_index(w);
    /* The callback and data are read only when the timer runs, and for one
     * timer in four of an array they lie on the cache line before the
     * link's: start loading it now, while the whole batch is queued. */
    __builtin_prefetch(w);
    if (w->repeat <= 0) {
      tclear(w, RX__T_ACTIVE);
      set_delay(w, 0);
      loop->activecnt--;
    }
    tset(w, RX__T_PENDING);
    rx__list_push(&loop->timers_pending[pri], node);
    loop->pendingcnt++;
    if (pri > loop->pendingpri)
      loop->pendingpri = pri;
  }
}

/* The first deadline after `now` of a timer that was due at `at` (<= now)
 * and repeats every `repeat` (> 0) ns: at + k * repeat for the least k >= 1
 * that passes `now`, skipping the periods missed; saturated at INT64_MAX. In
 * unsigned arithmetic, so that no step can overflow. */
static int64_t next_deadline(int64_t at, int64_t repeat, int64_t now) {
  uint64_t r = (uint64_t)repeat;
  uint64_t k = ((uint64_t)now - (uint64_t)at) / r + 1;
  uint64_t room = (uint64_t)INT64_MAX - (uint64_t)at;
  if (k > room / r)
    return INT64_MAX;
  return (int64_t)((uint64_t)at + k * r);
}

/* Puts a repeating timer that was due at `at` back into the wheel at its
 * next deadline. Once the clock has passed the last deadline the wheel can
 * hold (2^58 ns after the loop started: only a manual clock gets there),
 * none comes after now, and the timer ends as a one-shot does rather than
 * firing at every iteration. */
static void repeat_from(rx_loop *loop, rx_timer *w, int64_t at) {
  rx__tw_add(&loop->wheel, &w->_ent, next_deadline(at, w->repeat, loop->now));
  if (rx__tw_at(&loop->wheel, &w->_ent) > loop->now)
    return;
  rx__tw_del(&loop->wheel, &w->_ent);
  tclear(w, RX__T_ACTIVE);
  set_delay(w, 0);
  loop->activecnt--;
}

/* Runs the callback of a timer that rx_invoke_pending() took off its
 * queue. A repeating timer first goes back into the wheel at its previous
 * deadline plus `repeat`; periods that were missed entirely (the loop was
 * blocked) are skipped rather than fired in a burst, keeping the phase. */
void rx__timer_invoke(rx_loop *loop, struct rx__link *node) {
  rx_timer *w = timer_of(node);
  tclear(w, RX__T_PENDING);
  loop->pendingcnt--;
  loop->m.dispatched++;
  if (tflags(w) & RX__T_ACTIVE) {
    int64_t at = rx__tw_at(&loop->wheel, &w->_ent);
    if (at > loop->now) {
      /* Fed by rx_feed_event() before it was due: back to its deadline. */
      rx__tw_add(&loop->wheel, &w->_ent, at);
    } else if (w->repeat > 0) {
      repeat_from(loop, w, at);
    } else {
      /* repeat was set to 0 while the expiry was pending */
      tclear(w, RX__T_ACTIVE);
      set_delay(w, 0);
      loop->activecnt--;
    }
  }
  w->cb(loop, w, RX_TIMER);
}

int rx_feed_event_timer(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents; /* a timer's callback always receives RX_TIMER */
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (w->_ent.link.next != NULL && !timer_here(loop, w))
    return -EBUSY; /* active or pending on another loop */
  if (tflags(w) & RX__T_PENDING)
    return 0;
  /* The link serves the wheel or the pending queue: an active timer leaves
   * the wheel, and rx__timer_invoke() puts it back at its deadline. */
  if (tflags(w) & RX__T_ACTIVE)
    rx__tw_del(&loop->wheel, &w->_ent);
  int pri = prio_index(w);
  tset(w, RX__T_PENDING);
  rx__list_push(&loop->timers_pending[pri], &w->_ent.link);
  w->_loop = loop;
  loop->pendingcnt++;
  if (pri > loop->pendingpri)
    loop->pendingpri = pri;
  return 0;
}

int rx_clear_pending_timer(rx_loop *loop, rx_timer *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  if (!(tflags(w) & RX__T_PENDING))
    return 0;
  if (!timer_here(loop, w))
    return -EBUSY; /* pending on another loop */
  if (tflags(w) & RX__T_ACTIVE) {
    /* Active and pending: it left the wheel for the queue; back it goes,
     * at its next deadline, as rx__timer_invoke() would have put it. */
    rx__list_unlink(&w->_ent.link);
    tclear(w, RX__T_PENDING);
    loop->pendingcnt--;
    int64_t at = rx__tw_at(&loop->wheel, &w->_ent);
    if (at > loop->now) {
      rx__tw_add(&loop->wheel, &w->_ent, at);
    } else if (w->repeat > 0) {
      repeat_from(loop, w, at);
    } else {
      tclear(w, RX__T_ACTIVE);
      set_delay(w, 0);
      loop->activecnt--;
    }
    return RX_TIMER;
  }
  unpend(loop, w);
  return RX_TIMER;
}

/* rx_resume(): every waiting timer is delayed by `delta`. The wheel is
 * emptied list by list and refilled, which keeps ties in start order. */
void rx__timer_shift(rx_loop *loop, int64_t delta) {
  struct rx__link all, *node;
  rx__list_init(&all);
  rx__tw_take_all(&loop->wheel, &all);
  while ((node = rx__list_shift(&all)) != NULL) {
    rx_timer *w = timer_of(node);
    int64_t at = rx__tw_at(&loop->wheel, &w->_ent);
    at = delta > INT64_MAX - at ? INT64_MAX : at + delta;
    rx__tw_add(&loop->wheel, &w->_ent, at);
  }
}

static void stop_list(rx_loop *loop, struct rx__link *head) {
  struct rx__link *node;
  while ((node = head->next) != head)
    rx_timer_stop(loop, timer_of(node));
}

/* Stops every timer of a loop that is being freed. */
void rx__timer_stop_all(rx_loop *loop) {
  for (int i = 0; i < RX__NPRI; i++)
    stop_list(loop, &loop->timers_pending[i]);
  for (int l = 0; l < RX__TW_LEVELS; l++)
    for (int s = 0; s < RX__TW_SLOTS; s++)
      stop_list(loop, &loop->wheel.slots[l][s]);
  stop_list(loop, &loop->wheel.overflow);
  stop_list(loop, &loop->wheel.expired);
}
