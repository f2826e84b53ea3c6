/*
 * fuzz_loop.c - a real loop driven by a byte script, checked against a
 * model of the watcher contract (rx.h).
 *
 * The objects: three socketpairs, six io watchers on their ends (level or
 * RX_ET, read and/or write; or on an fd number that is surely closed, which
 * the kernel must refuse with one RX_ERROR), four timers on a manual clock
 * (RX_LOOP_MANUAL_CLOCK: rx_clock_advance() moves time, nothing sleeps),
 * two each of idle, prepare and check watchers, two async watchers (sent
 * to from this thread), two periodic watchers (on the manual clock, which
 * is also their wall clock), two signal watchers (of SIGURG and a
 * real-time signal, raised with raise() or rx_feed_signal()), four posted
 * tasks. Every watcher has a priority the script may change. Every
 * watcher lives in its own heap block so that one can be freed, also from
 * its own callback, and a use after free is caught: by ASan in the
 * libFuzzer build; in the gcc replay build the block is kept until the end
 * of the input with its callback pointing at a trap.
 *
 * Each operation is an opcode byte and its arguments: start, stop, set,
 * feed, free or re-allocate a watcher; give it an action for its callback
 * (stop itself, drain its fd, start or stop or feed another watcher, break
 * one or all, run the loop nested up to depth 3, post a task, write to a
 * socket, re-arm a timer, free itself, send an async, raise a signal);
 * set a watcher's priority; send an async; raise or feed a signal; post a
 * task with an action of its own (post another, send, raise); write, read,
 * close and reopen sockets; advance the clock; run the loop once without
 * waiting; settle.
 *
 * The checks, after every operation and inside callbacks: rx_verify() is
 * 0; rx_is_active() agrees with the model; a timer's remaining time is the
 * model's; a callback runs only for an active watcher or one fed since it
 * was last stopped, never early for a timer, with events it asked for, and
 * never after its watcher was freed; a task runs once per post, in post
 * order. Priorities: when a callback runs, no watcher of a higher priority
 * is pending, nor a timer of the same priority unless it is a timer too
 * (expired timers go first), and of two watchers the script fed into the
 * same queue, the one fed first runs first. An async watcher's callback
 * runs only after a send the loop has seen (its rx_async_pending() flag
 * went from set to clear while it was active), or a feed; a signal
 * watcher's only after the loop has seen a raise, or a feed. The loop's
 * looking is observed without hooks: a probe async watcher is sent along
 * with every raise, and the loop scans asyncs and signals together. A
 * periodic never fires before its time, and then its next time is the
 * first offset + k * interval after now. After every run nothing is left
 * pending. "Settle" runs the loop a few times with callbacks that do
 * nothing and then also checks progress: a level-triggered watcher of a
 * ready fd was called, every due timer and periodic fired, a refused fd
 * was reported, every task ran, every fed watcher was called, every send
 * and every raise was answered by a callback that started after it. At the
 * end of an input everything is stopped, freed and closed, and the loop,
 * which is reused across inputs (an io_uring ring costs 46-180 us to
 * create), must be idle and valid. The backend comes from $RX_BACKEND.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "rx.h"

#define MAX_STEPS 200
#define MAX_DEPTH 3
#define NPAIR 3
#define NIO 6
#define NTIMER 4
#define NTASK 4
#define NASYNC 2
#define NPERIODIC 2
#define NSIGNAL 2
#define SETTLE_RUNS 8
#define TICK RX_USEC(512) /* the loop's default tick is 2^19 ns */
/* The probe's priority: lowest, so that its callback also checks that
 * everything of a higher priority ran first. */
#define PROBE_PRI RX_MINPRI

enum kind {
  K_IO,
  K_TIMER,
  K_IDLE,
  K_PREPARE,
  K_CHECK,
  K_ASYNC,
  K_PERIODIC,
  K_SIGNAL
};
/* The first NOLD objects are allocated from the input's first bytes; the
 * others, added later, with defaults, so that older corpus inputs still
 * begin the same way. */
enum {
  NOLD = NIO + NTIMER + 2 + 2 + 2,
  FIRST_ASYNC = NOLD,
  FIRST_PERIODIC = FIRST_ASYNC + NASYNC,
  FIRST_SIGNAL = FIRST_PERIODIC + NPERIODIC,
  NOBJ = FIRST_SIGNAL + NSIGNAL
};

struct obj;

/* A watcher's heap block: the watcher first, so that the callback's
 * pointer is the block's. */
struct wmem {
  union {
    rx_io io;
    rx_timer timer;
    rx_idle idle;
    rx_prepare prepare;
    rx_check check;
    rx_async async;
    rx_periodic periodic;
    rx_signal signal;
  } u;
  struct obj *owner;
};

/* The model of one watcher. */
struct obj {
  enum kind kind;
  struct wmem *mem; /* NULL while freed */
  int active;
  int fed;         /* fed since last stopped: its callback may run */
  int fedev;       /* with these events */
  uint64_t fedseq; /* when a feed put it at the tail of its queue, or 0 */
  int pri;         /* its priority */
  uint8_t action;
  uint64_t calls;
  /* io */
  int pair, end; /* end -1: the closed fd number */
  int events;
  int expect_error;  /* started on a refused fd: RX_ERROR is owed */
  int err_restarted; /* started again after the loop refused it, before
                        its RX_ERROR callback: that one finds it active */
  int got;           /* revents seen since the last settle began */
  /* timer */
  int64_t deadline, left, repeat;
  /* async and signal */
  int sent;    /* async: sent, and the loop has not looked yet (_sent) */
  int scanned; /* the loop has seen a send or a raise: a callback is owed */
  int signum;
  /* periodic */
  int64_t at, offset, interval;
  int stale; /* 1: its pending callback is of an expiry from before a
                restart or rx_periodic_again(), which already moved `at` on;
                2: it was also fed, so that expiry may not have come */
};

struct task {
  rx_task t;
  int posted;
  uint8_t action;
  uint64_t ran;
};

static rx_loop *loop;
static struct obj objs[NOBJ];
static int fds[NPAIR][2]; /* -1 when closed */
static struct task tasks[NTASK];
static int tq[NTASK], tq_head, tq_len; /* posted tasks, in post order */
static int quiet;                      /* settling: callbacks only record */
static uint64_t feedseq;
/* The probe: sent along with every raise. When its _sent flag clears, the
 * loop has scanned the signals too (crossthread.c: one drain looks at both). */
static rx_async probe;
static int probe_sent, probe_scanned;
static int sig_nums[NSIGNAL];
static int sig_raised[NSIGNAL]; /* raised, and the loop has not looked yet */
/* Callback actions left in this step: two watchers that feed each other
 * would keep one iteration busy for ever, as in any loop. */
static int budget;
static int bad_fd = -1; /* an fd number that is not open */
static struct wmem *graveyard[4 * MAX_STEPS + NOBJ];
static size_t ngraves;
static char buf[65536];

static void observe(void);
static void periodic_start(struct obj *o, int again);

/* ---------------------------------------------------------------------------
 * The model's view of each watcher.
 */

static int lib_active(struct obj *o) {
  switch (o->kind) {
  case K_IO:
    return rx_is_active(&o->mem->u.io);
  case K_TIMER:
    return rx_is_active(&o->mem->u.timer);
  case K_IDLE:
    return rx_is_active(&o->mem->u.idle);
  case K_PREPARE:
    return rx_is_active(&o->mem->u.prepare);
  case K_CHECK:
    return rx_is_active(&o->mem->u.check);
  case K_ASYNC:
    return rx_is_active(&o->mem->u.async);
  case K_PERIODIC:
    return rx_is_active(&o->mem->u.periodic);
  default:
    return rx_is_active(&o->mem->u.signal);
  }
}

static int lib_pending(struct obj *o) {
  switch (o->kind) {
  case K_IO:
    return rx_is_pending(&o->mem->u.io);
  case K_TIMER:
    return rx_is_pending(&o->mem->u.timer);
  case K_IDLE:
    return rx_is_pending(&o->mem->u.idle);
  case K_PREPARE:
    return rx_is_pending(&o->mem->u.prepare);
  case K_CHECK:
    return rx_is_pending(&o->mem->u.check);
  case K_ASYNC:
    return rx_is_pending(&o->mem->u.async);
  case K_PERIODIC:
    return rx_is_pending(&o->mem->u.periodic);
  default:
    return rx_is_pending(&o->mem->u.signal);
  }
}

static int lib_priority(struct obj *o) {
  switch (o->kind) {
  case K_IO:
    return rx_priority(&o->mem->u.io);
  case K_TIMER:
    return rx_priority(&o->mem->u.timer);
  case K_IDLE:
    return rx_priority(&o->mem->u.idle);
  case K_PREPARE:
    return rx_priority(&o->mem->u.prepare);
  case K_CHECK:
    return rx_priority(&o->mem->u.check);
  case K_ASYNC:
    return rx_priority(&o->mem->u.async);
  case K_PERIODIC:
    return rx_priority(&o->mem->u.periodic);
  default:
    return rx_priority(&o->mem->u.signal);
  }
}

static int lib_set_priority(struct obj *o, int pri) {
  switch (o->kind) {
  case K_IO:
    return rx_io_set_priority(&o->mem->u.io, pri);
  case K_TIMER:
    return rx_timer_set_priority(&o->mem->u.timer, pri);
  case K_IDLE:
    return rx_idle_set_priority(&o->mem->u.idle, pri);
  case K_PREPARE:
    return rx_prepare_set_priority(&o->mem->u.prepare, pri);
  case K_CHECK:
    return rx_check_set_priority(&o->mem->u.check, pri);
  case K_ASYNC:
    return rx_async_set_priority(&o->mem->u.async, pri);
  case K_PERIODIC:
    return rx_periodic_set_priority(&o->mem->u.periodic, pri);
  default:
    return rx_signal_set_priority(&o->mem->u.signal, pri);
  }
}

static int io_fd(const struct obj *o) {
  return o->end < 0 ? bad_fd : fds[o->pair][o->end];
}

static int64_t sat_add(int64_t a, int64_t b) {
  return b > INT64_MAX - a ? INT64_MAX : a + b;
}

static int sig_index(int signum) {
  return signum == sig_nums[0] ? 0 : 1;
}

/* Whether a signal watcher of `signum` is active, i.e. rx's handler is
 * installed for it. */
static int sig_watched(int signum) {
  for (int i = FIRST_SIGNAL; i < FIRST_SIGNAL + NSIGNAL; i++)
    if (objs[i].mem != NULL && objs[i].active && objs[i].signum == signum)
      return 1;
  return 0;
}

/* A periodic's next time after `now`, from rx.h: with an interval, the
 * first offset + k * interval strictly after now (saturating); without
 * one, the absolute time `offset`. */
static int64_t periodic_next(const struct obj *o, int64_t now) {
  if (o->interval <= 0)
    return o->offset;
  if (now < o->offset)
    return o->offset;
  int64_t since = (now - o->offset) % o->interval;
  int64_t at = sat_add(now - since, o->interval);
  FZ_CHECK(at > now || at == INT64_MAX);
  return at;
}

/* Whether an active watcher of the same fd disagrees with `o` on RX_ET. */
static int et_conflict(const struct obj *o) {
  for (int i = 0; i < NIO; i++) {
    const struct obj *x = &objs[i];
    if (x != o && x->mem != NULL && x->active && x->end >= 0 &&
        io_fd(x) == io_fd(o) && ((x->events ^ o->events) & RX_ET))
      return 1;
  }
  return 0;
}

/* Its callback ran, or its pending event was dropped. */
static void unfeed(struct obj *o) {
  o->fed = o->fedev = 0;
  o->fedseq = 0;
}

static int obj_stop(struct obj *o) {
  int rc;
  switch (o->kind) {
  case K_IO:
    rc = rx_io_stop(loop, &o->mem->u.io);
    o->expect_error = o->err_restarted = 0;
    break;
  case K_TIMER:
    if (o->active) {
      int64_t left = o->deadline - rx_now(loop);
      o->left = left < 0 ? 0 : left;
    }
    rc = rx_timer_stop(loop, &o->mem->u.timer);
    break;
  case K_IDLE:
    rc = rx_idle_stop(loop, &o->mem->u.idle);
    break;
  case K_PREPARE:
    rc = rx_prepare_stop(loop, &o->mem->u.prepare);
    break;
  case K_CHECK:
    rc = rx_check_stop(loop, &o->mem->u.check);
    break;
  case K_ASYNC:
    /* A send it has not seen stays in _sent; a start clears it. */
    observe();
    rc = rx_async_stop(loop, &o->mem->u.async);
    o->scanned = 0;
    break;
  case K_PERIODIC:
    rc = rx_periodic_stop(loop, &o->mem->u.periodic);
    o->stale = 0;
    break;
  default:
    observe();
    rc = rx_signal_stop(loop, &o->mem->u.signal);
    o->scanned = 0;
    break;
  }
  FZ_CHECK(rc == 0);
  o->active = 0;
  unfeed(o);
  FZ_CHECK(!lib_active(o));
  FZ_CHECK(!lib_pending(o));
  /* The last watcher of a signal gives it up, and a raise the loop had
   * not seen yet with it (signal.c, release()). */
  if (o->kind == K_SIGNAL && !sig_watched(o->signum))
    sig_raised[sig_index(o->signum)] = 0;
  return rc;
}

static void obj_start(struct obj *o) {
  int rc, refused;
  switch (o->kind) {
  case K_IO:
    if (o->end >= 0 && fds[o->pair][o->end] < 0)
      return; /* its socket is closed: starting it would be a caller bug */
    if (o->end < 0 && bad_fd < 0)
      return;
    /* The loop stops a watcher when the kernel refuses its fd, and the
     * model learns it in the RX_ERROR callback: until then, a start is a
     * real one, like a start of an expired one-shot timer. */
    refused = o->active && o->expect_error && !rx_is_active(&o->mem->u.io);
    rc = rx_io_start(loop, &o->mem->u.io);
    if (o->active && !refused) {
      FZ_CHECK(rc == 0);
      return;
    }
    if (o->end < 0) {
      /* A refused fd: -EBADF now, or RX_ERROR later; or -EINVAL when
       * another watcher of the number disagrees on RX_ET. */
      FZ_CHECK(rc == 0 || rc == -EBADF || rc == -EINVAL);
      if (rc == 0) {
        o->err_restarted |= refused;
        o->active = o->expect_error = 1;
      }
      return;
    }
    /* Edge and level triggering are per fd: all its watchers agree. */
    FZ_CHECK(rc == (et_conflict(o) ? -EINVAL : 0));
    if (rc != 0)
      return;
    break;
  case K_TIMER:
    /* A one-shot timer the loop has expired but whose callback has not run
     * yet is already stopped (rx__timer_expire), though the model learns
     * it only in the callback: starting it drops the pending expiry and
     * starts it afresh with no time left (found by this fuzzer). */
    if (o->active && !rx_is_active(&o->mem->u.timer)) {
      FZ_CHECK(o->repeat == 0 && o->deadline <= rx_now(loop));
      FZ_CHECK(rx_is_pending(&o->mem->u.timer));
      o->active = 0;
      o->left = 0;
    }
    rc = rx_timer_start(loop, &o->mem->u.timer);
    FZ_CHECK(rc == 0);
    if (!o->active) {
      o->deadline = sat_add(rx_now(loop), o->left);
      unfeed(o); /* a pending expiry is dropped */
    }
    break;
  case K_IDLE:
    FZ_CHECK(rx_idle_start(loop, &o->mem->u.idle) == 0);
    break;
  case K_PREPARE:
    FZ_CHECK(rx_prepare_start(loop, &o->mem->u.prepare) == 0);
    break;
  case K_CHECK:
    FZ_CHECK(rx_check_start(loop, &o->mem->u.check) == 0);
    break;
  case K_ASYNC:
    observe();
    FZ_CHECK(rx_async_start(loop, &o->mem->u.async) == 0);
    if (!o->active)
      o->sent = 0; /* only sends after the start count (rx.h) */
    FZ_CHECK(rx_async_pending(&o->mem->u.async) == o->sent);
    break;
  case K_PERIODIC:
    periodic_start(o, 0);
    return;
  default:
    FZ_CHECK(rx_signal_start(loop, &o->mem->u.signal) == 0);
    break;
  }
  o->active = 1;
}

/* rx_periodic_start(), or with `again` rx_periodic_again(), which is the
 * same on a stopped periodic and on an active one moves `at` on. */
static void periodic_start(struct obj *o, int again) {
  rx_periodic *w = &o->mem->u.periodic;
  int64_t now = rx_now(loop);
  if (o->active && !rx_is_active(w)) {
    /* An absolute periodic the loop has expired, its callback still to
     * come: it stopped then (rx__periodic_expire). It starts again, and
     * the pending callback is of the old expiry. */
    FZ_CHECK(o->at <= now && rx_is_pending(w));
    o->active = 0;
    o->stale = 1;
  }
  if (o->active && !again) {
    FZ_CHECK(rx_periodic_start(loop, w) == 0); /* leaves it alone */
    /* If it expired, its callback still to come, `at` is already the next
     * time, which the model moves to in that callback. */
    FZ_CHECK(w->at == o->at ||
             (rx_is_pending(w) && w->at == periodic_next(o, now)));
    return;
  }
  if (o->active && rx_is_pending(w) && o->stale != 1)
    /* Expired, its callback to come, and `at` moves on now; when it was
     * also fed, the expiry may or may not have come yet. */
    o->stale = o->fed ? 2 : 1;
  if (again)
    FZ_CHECK(rx_periodic_again(loop, w) == 0);
  else
    FZ_CHECK(rx_periodic_start(loop, w) == 0);
  o->active = 1;
  o->at = periodic_next(o, now);
  FZ_CHECK(w->at == o->at);
}

static void timer_again(struct obj *o) {
  int64_t now = rx_now(loop);
  FZ_CHECK(rx_timer_again(loop, &o->mem->u.timer) == 0);
  unfeed(o);
  if (o->active && o->repeat == 0) {
    int64_t left = o->deadline - now;
    o->left = left < 0 ? 0 : left;
    o->active = 0;
  } else if (o->repeat > 0) {
    o->active = 1;
    o->deadline = sat_add(now, o->repeat);
  }
}

static void obj_feed(struct obj *o, int revents) {
  int was = lib_pending(o);
  int rc;
  switch (o->kind) {
  case K_IO:
    rc = rx_feed_event(loop, &o->mem->u.io, revents);
    break;
  case K_TIMER:
    rc = rx_feed_event(loop, &o->mem->u.timer, revents);
    break;
  case K_IDLE:
    rc = rx_feed_event(loop, &o->mem->u.idle, revents);
    break;
  case K_PREPARE:
    rc = rx_feed_event(loop, &o->mem->u.prepare, revents);
    break;
  case K_CHECK:
    rc = rx_feed_event(loop, &o->mem->u.check, revents);
    break;
  case K_ASYNC:
    rc = rx_feed_event(loop, &o->mem->u.async, revents);
    break;
  case K_PERIODIC:
    rc = rx_feed_event(loop, &o->mem->u.periodic, revents);
    break;
  default:
    rc = rx_feed_event(loop, &o->mem->u.signal, revents);
    break;
  }
  FZ_CHECK(rc == 0);
  FZ_CHECK(lib_pending(o));
  o->fed = 1;
  o->fedev |= revents;
  if (!was)
    o->fedseq = ++feedseq; /* at the tail of its queue */
}

/* Sets a priority: -EBUSY while active or pending (rx.h), which the model
 * knows without asking. */
static void set_priority(struct obj *o, int pri) {
  int busy = o->active || o->fed || o->scanned;
  int rc = lib_set_priority(o, pri);
  FZ_CHECK(rc == (busy ? -EBUSY : 0));
  if (rc == 0)
    o->pri = pri;
  FZ_CHECK(lib_priority(o) == o->pri);
}

/* Stops and frees; the block is really freed under ASan, which then
 * catches any later access, and otherwise kept with a trap callback. */
static void trap_cb(void) {
  fprintf(stderr, "callback of a freed watcher\n");
  abort();
}

static void obj_free(struct obj *o) {
  struct wmem *m = o->mem;
  obj_stop(o);
  o->mem = NULL;
  if (FZ_ASAN) {
    free(m);
    return;
  }
  memset(m, 0xa5, sizeof(*m));
  /* Every kind keeps its callback pointer at the same place. */
  m->u.io.cb = (rx_io_cb)(void (*)(void))trap_cb;
  m->u.timer.cb = (rx_timer_cb)(void (*)(void))trap_cb;
  if (ngraves < sizeof(graveyard) / sizeof(graveyard[0]))
    graveyard[ngraves++] = m;
  else
    free(m); /* cannot happen: a bounded number of frees per input */
}

/* ---------------------------------------------------------------------------
 * Sends, raises and what the loop has seen of them.
 */

/* Catches up with the loop's scans of asyncs and signals, which happen in
 * rx_run() between two callbacks: an async whose _sent flag went clear was
 * scanned (only active ones are) and is owed a callback; so, when the
 * probe's flag went clear, is every active watcher of a raised signal.
 * Called before anything that reads or changes that state. */
static void observe(void) {
  for (int i = FIRST_ASYNC; i < FIRST_ASYNC + NASYNC; i++) {
    struct obj *o = &objs[i];
    int f;
    if (o->mem == NULL)
      continue;
    f = rx_async_pending(&o->mem->u.async);
    if (o->sent && !f) {
      FZ_CHECK(o->active);
      o->sent = 0;
      o->scanned = 1;
    } else {
      FZ_CHECK(f == o->sent); /* no _sent without a send */
    }
  }
  if (probe_sent && !rx_async_pending(&probe)) {
    probe_sent = 0;
    probe_scanned = 1;
    for (int s = 0; s < NSIGNAL; s++) {
      if (!sig_raised[s])
        continue;
      sig_raised[s] = 0;
      for (int i = FIRST_SIGNAL; i < FIRST_SIGNAL + NSIGNAL; i++)
        if (objs[i].mem != NULL && objs[i].active &&
            objs[i].signum == sig_nums[s])
          objs[i].scanned = 1;
    }
  } else {
    FZ_CHECK(rx_async_pending(&probe) == probe_sent);
  }
}

static void async_send(struct obj *o) {
  if (o->mem == NULL || o->kind != K_ASYNC)
    return;
  observe();
  FZ_CHECK(rx_async_send(loop, &o->mem->u.async) == 0);
  o->sent = 1; /* a send to a stopped watcher too, dropped at its start */
  FZ_CHECK(rx_async_pending(&o->mem->u.async));
}

/* Raises signal `s` with raise() (the handler runs before it returns: the
 * signal is sent to this thread) or rx_feed_signal(). Only while rx's
 * handler is installed: the default action of the real-time one ends the
 * process. */
static void sig_raise(unsigned s, int how) {
  int signum = sig_nums[s % NSIGNAL];
  observe();
  if (!sig_watched(signum))
    return;
  if (how)
    FZ_CHECK(rx_feed_signal(signum) == 0);
  else
    FZ_CHECK(raise(signum) == 0);
  sig_raised[s % NSIGNAL] = 1;
  FZ_CHECK(rx_async_send(loop, &probe) == 0);
  probe_sent = 1;
}

/* rx_feed_signal_event(): every active watcher of the signal, in an order
 * of the loop's (so they share one place in the feed order). */
static void sig_feed(unsigned s) {
  int signum = sig_nums[s % NSIGNAL];
  uint64_t seq = ++feedseq;
  int was[NSIGNAL];
  for (int i = 0; i < NSIGNAL; i++) {
    struct obj *o = &objs[FIRST_SIGNAL + i];
    was[i] = o->mem != NULL && lib_pending(o);
  }
  FZ_CHECK(rx_feed_signal_event(loop, signum) == 0);
  for (int i = 0; i < NSIGNAL; i++) {
    struct obj *o = &objs[FIRST_SIGNAL + i];
    if (o->mem == NULL || !o->active || o->signum != signum)
      continue;
    FZ_CHECK(lib_pending(o));
    o->fed = 1;
    o->fedev |= RX_SIGNAL;
    if (!was[i])
      o->fedseq = seq;
  }
}

/* Runs the loop once without waiting. Pending events never outlive a run:
 * every invocation runs until nothing is pending. */
static int run_nowait(void) {
  int rc = rx_run(loop, RX_RUN_NOWAIT);
  FZ_CHECK(rc >= 0);
  FZ_CHECK(rx_pending_count(loop) == 0);
  return rc;
}

/* ---------------------------------------------------------------------------
 * Callbacks.
 */

static void task_act(struct task *k);

static void task_fn(rx_loop *l, rx_task *t) {
  struct task *k = (struct task *)t;
  FZ_CHECK(l == loop);
  observe();
  FZ_CHECK(k->posted);                                     /* once per post */
  FZ_CHECK(tq_len > 0 && tq[tq_head] == (int)(k - tasks)); /* in order */
  tq_head = (tq_head + 1) % NTASK;
  tq_len--;
  k->posted = 0;
  k->ran++;
  task_act(k);
}

static void post(unsigned i) {
  struct task *k = &tasks[i % NTASK];
  if (k->posted)
    return;
  k->t.fn = task_fn;
  k->posted = 1;
  FZ_CHECK(tq_len < NTASK);
  tq[(tq_head + tq_len) % NTASK] = (int)(i % NTASK);
  tq_len++;
  FZ_CHECK(rx_loop_post(loop, &k->t) == 0);
}

/* A task's action byte: low two bits the verb, the rest its argument. */
static void task_act(struct task *k) {
  if (quiet || budget <= 0)
    return;
  budget--;
  switch (k->action & 3) {
  case 1:
    post(k->action >> 2); /* itself included: it may be posted again */
    break;
  case 2:
    async_send(&objs[FIRST_ASYNC + (k->action >> 2) % NASYNC]);
    break;
  case 3:
    sig_raise(k->action >> 2, (k->action >> 3) & 1);
    break;
  default:
    break;
  }
}

static void drain(int fd) {
  for (int k = 0; k < 8; k++)
    if (read(fd, buf, sizeof(buf)) <= 0)
      break;
}

static void sock_write(int pair, int end, size_t n) {
  int fd = fds[pair % NPAIR][end & 1];
  if (fd >= 0 && send(fd, buf, n, MSG_NOSIGNAL) < 0)
    FZ_CHECK(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
}

/* What a callback does: its watcher's action byte, low nibble the verb,
 * high nibble the other watcher it acts on. Runs last in the callback, as
 * it may free the watcher, or run the loop which may free it. */
static void act(struct obj *o) {
  struct obj *other = &objs[(o->action >> 4) % NOBJ];
  if (quiet || budget <= 0)
    return;
  budget--;
  switch (o->action & 15) {
  case 0:
    break;
  case 1:
    obj_stop(o);
    break;
  case 2:
    if (o->kind == K_IO && io_fd(o) >= 0)
      drain(io_fd(o));
    break;
  case 3:
    rx_break(loop, RX_BREAK_ONE);
    break;
  case 4:
    rx_break(loop, RX_BREAK_ALL);
    break;
  case 5:
    if (rx_depth(loop) < MAX_DEPTH)
      run_nowait();
    break; /* `o` may be gone now */
  case 6:
    if (other->mem != NULL)
      obj_feed(other, RX_CUSTOM);
    break;
  case 7:
    if (other->mem != NULL)
      obj_start(other);
    break;
  case 8:
    if (other->mem != NULL && other != o)
      obj_stop(other);
    break;
  case 9:
    post(o->action >> 4);
    break;
  case 10:
    sock_write(o->action >> 4, o->action >> 6, 1 + (o->action >> 4));
    break;
  case 11:
    if (other->mem != NULL && other->kind == K_TIMER)
      timer_again(other);
    break;
  case 12:
    obj_free(o);
    break;
  case 13:
    async_send(&objs[FIRST_ASYNC + (o->action >> 4) % NASYNC]);
    break;
  case 14:
    sig_raise(o->action >> 4, (o->action >> 5) & 1);
    break;
  default: {
    /* The watchers added after the others, which `other` cannot name. */
    struct obj *x = &objs[NOLD + (o->action >> 4) % (NOBJ - NOLD)];
    if (x->mem == NULL)
      break;
    if (x->kind == K_PERIODIC && (o->action & 0x80))
      periodic_start(x, 1);
    else
      obj_start(x);
    break;
  }
  }
}

/* Whether the callback of `x` (NULL: the probe), of priority `pri`, from
 * the timers' queue or the other one, may run now: nothing of a higher
 * priority is pending, no timer of the same priority unless `x` is one
 * too, nothing fed into the same queue before it; and what the model knows
 * to be pending, is. */
static void check_order(const struct obj *x, int pri, int timer_q,
                        uint64_t seq) {
  int x_moved = x != NULL && x->kind == K_IO && x->expect_error;
  for (int i = 0; i < NOBJ; i++) {
    struct obj *y = &objs[i];
    int p;
    if (y->mem == NULL || y == x)
      continue;
    p = lib_pending(y);
    if (y->fed)
      FZ_CHECK(p); /* a feed is never lost */
    if (y->kind == K_ASYNC || y->kind == K_SIGNAL)
      FZ_CHECK(p == (y->fed || y->scanned)); /* and nothing else pends */
    if (!p)
      continue;
    if (y->pri > pri) {
      fprintf(stderr, "obj %d of priority %d runs before obj %d of %d\n",
              x ? (int)(x - objs) : -1, pri, i, y->pri);
      abort();
    }
    if (y->pri == pri) {
      int y_timer_q = y->kind == K_TIMER;
      if (!timer_q)
        FZ_CHECK(!y_timer_q); /* expired timers first */
      /* A refused fd's watcher is stopped and fed RX_ERROR, at the tail
       * (io.c, rx__io_error): its place is not the feed's any more. */
      if (y_timer_q == timer_q && seq != 0 && y->fedseq != 0 &&
          y->fedseq < seq && !y->expect_error && !x_moved) {
        fprintf(stderr, "obj %d (fed %llu) runs before obj %d (fed %llu)\n",
                x ? (int)(x - objs) : -1, (unsigned long long)seq, i,
                (unsigned long long)y->fedseq);
        abort();
      }
    }
  }
  if (x != NULL) {
    FZ_CHECK(rx_is_pending(&probe) == probe_scanned);
    if (probe_scanned)
      FZ_CHECK(PROBE_PRI <= pri);
  }
}

/* What every callback checks first. */
static struct obj *enter(void *w) {
  struct wmem *m = w;
  struct obj *o = m->owner;
  const char *what = NULL;
  FZ_CHECK(o >= objs && o < objs + NOBJ && o->mem == m); /* not freed */
  FZ_CHECK(o->active || o->fed); /* a stopped watcher's callback never runs */
  if (rx_verify(loop, &what) != 0) {
    fprintf(stderr, "rx_verify: %s\n", what ? what : "?");
    abort();
  }
  observe();
  check_order(o, o->pri, o->kind == K_TIMER, o->fedseq);
  o->calls++;
  return o;
}

static void io_cb(rx_loop *l, rx_io *w, int revents) {
  struct obj *o = enter(w);
  FZ_CHECK(l == loop);
  FZ_CHECK((revents & ~(o->events & (RX_READ | RX_WRITE)) &
            ~(RX_ERROR | o->fedev)) == 0);
  if (revents & RX_ERROR) {
    /* Only for the refused fd, and the watcher is stopped already, unless
     * it was started again since: then the kernel refuses it again. */
    FZ_CHECK(o->expect_error);
    if (rx_is_active(w))
      FZ_CHECK(o->err_restarted);
    else
      o->active = o->expect_error = 0;
    o->err_restarted = 0;
  }
  o->got |= revents;
  unfeed(o);
  act(o);
}

static void timer_cb(rx_loop *l, rx_timer *w, int revents) {
  struct obj *o = enter(w);
  int64_t now = rx_now(l);
  FZ_CHECK(revents == RX_TIMER);
  if (o->active) {
    if (o->deadline > now) {
      FZ_CHECK(o->fed); /* never early, unless fed */
    } else if (o->repeat > 0) {
      int64_t next = o->deadline + o->repeat;
      if (next <= now)
        next += ((now - next) / o->repeat + 1) * o->repeat;
      o->deadline = next;
    } else {
      o->active = 0;
      o->left = 0;
    }
  }
  unfeed(o);
  act(o);
}

static void idle_cb(rx_loop *l, rx_idle *w, int revents) {
  struct obj *o = enter(w);
  (void)l;
  FZ_CHECK((revents & ~(RX_IDLE | o->fedev)) == 0);
  unfeed(o);
  act(o);
}

static void prepare_cb(rx_loop *l, rx_prepare *w, int revents) {
  struct obj *o = enter(w);
  (void)l;
  FZ_CHECK((revents & ~(RX_PREPARE | o->fedev)) == 0);
  unfeed(o);
  act(o);
}

static void check_cb(rx_loop *l, rx_check *w, int revents) {
  struct obj *o = enter(w);
  (void)l;
  FZ_CHECK((revents & ~(RX_CHECK | o->fedev)) == 0);
  unfeed(o);
  act(o);
}

/* Coalesced: a send the loop has seen, or a feed, and never a callback
 * without one of them. */
static void async_cb(rx_loop *l, rx_async *w, int revents) {
  struct obj *o = enter(w);
  FZ_CHECK(l == loop);
  FZ_CHECK((revents & ~(RX_ASYNC | o->fedev)) == 0);
  FZ_CHECK(((revents & RX_ASYNC) != 0) == o->scanned);
  FZ_CHECK(o->scanned || o->fed);
  o->scanned = 0;
  unfeed(o);
  act(o);
}

static void signal_cb(rx_loop *l, rx_signal *w, int revents) {
  struct obj *o = enter(w);
  FZ_CHECK(l == loop);
  FZ_CHECK(w->signum == o->signum);
  FZ_CHECK((revents & ~(RX_SIGNAL | o->fedev)) == 0);
  FZ_CHECK(o->scanned || o->fed);
  if (!(o->fedev & RX_SIGNAL))
    FZ_CHECK(((revents & RX_SIGNAL) != 0) == o->scanned);
  o->scanned = 0;
  unfeed(o);
  act(o);
}

/* Never before its time; then `at` is already its next time. The model
 * does not see the loop expire it: that it did shows in `at` (moved past
 * now) or, for an absolute one, in its having stopped. */
static void periodic_cb(rx_loop *l, rx_periodic *w, int revents) {
  struct obj *o = enter(w);
  int64_t now = rx_now(l);
  FZ_CHECK((revents & ~(RX_PERIODIC | o->fedev)) == 0);
  int stale = o->stale;
  o->stale = 0;
  if (stale == 1) {
    FZ_CHECK(revents & RX_PERIODIC);
  } else if (o->active && o->at <= now &&
             (o->interval > 0 ? w->at > now : !rx_is_active(w))) {
    FZ_CHECK(revents & RX_PERIODIC);
    if (o->interval > 0) {
      o->at = periodic_next(o, now);
      FZ_CHECK(w->at == o->at);
    } else {
      o->active = 0;
    }
  } else {
    FZ_CHECK(o->fed); /* never early, never twice */
    FZ_CHECK(stale == 2 || !(revents & RX_PERIODIC));
  }
  unfeed(o);
  act(o);
}

/* The probe's callback: its send was seen. */
static void probe_cb(rx_loop *l, rx_async *w, int revents) {
  const char *what = NULL;
  FZ_CHECK(l == loop && w == &probe && revents == RX_ASYNC);
  if (rx_verify(loop, &what) != 0) {
    fprintf(stderr, "rx_verify: %s\n", what ? what : "?");
    abort();
  }
  observe();
  FZ_CHECK(probe_scanned);
  check_order(NULL, PROBE_PRI, 0, 0);
  probe_scanned = 0;
}

/* ---------------------------------------------------------------------------
 * Set-up, checks, settling, tear-down.
 */

static uint8_t in_u8(struct fz_input *in) {
  return in != NULL ? fz_u8(in) : 0;
}

/* A new watcher; `in` NULL for the defaults. */
static void obj_alloc(struct obj *o, struct fz_input *in) {
  struct wmem *m = calloc(1, sizeof(*m));
  FZ_CHECK(m != NULL);
  m->owner = o;
  o->mem = m;
  o->active = o->expect_error = o->err_restarted = 0;
  unfeed(o);
  o->pri = 0;
  o->sent = o->scanned = o->stale = 0;
  o->action = in_u8(in);
  switch (o->kind) {
  case K_IO:
    o->pair = (int)((o - objs) % NPAIR);
    o->end = (int)((o - objs) / NPAIR) & 1;
    o->events = RX_READ;
    rx_io_init(&m->u.io, io_cb, io_fd(o) < 0 ? 0 : io_fd(o), o->events);
    break;
  case K_TIMER:
    o->left = (int64_t)fz_below(in, 4 * TICK);
    o->repeat = (int64_t)(fz_u8(in) & 3) * TICK / 2;
    rx_timer_init(&m->u.timer, timer_cb, o->left, o->repeat);
    break;
  case K_IDLE:
    rx_idle_init(&m->u.idle, idle_cb);
    break;
  case K_PREPARE:
    rx_prepare_init(&m->u.prepare, prepare_cb);
    break;
  case K_CHECK:
    rx_check_init(&m->u.check, check_cb);
    break;
  case K_ASYNC:
    rx_async_init(&m->u.async, async_cb);
    break;
  case K_PERIODIC: {
    uint8_t v = in_u8(in);
    o->interval = (int64_t)(1 + (v & 3)) * TICK;
    o->offset = (int64_t)(v >> 2) * TICK / 16 % o->interval;
    rx_periodic_init(&m->u.periodic, periodic_cb, o->offset, o->interval, NULL);
    break;
  }
  default:
    o->signum = sig_nums[(in_u8(in) + (o - objs)) % NSIGNAL];
    rx_signal_init(&m->u.signal, signal_cb, o->signum);
    break;
  }
}

static void check_state(void) {
  const char *what = NULL;
  if (rx_verify(loop, &what) != 0) {
    fprintf(stderr, "rx_verify: %s\n", what ? what : "?");
    abort();
  }
  observe();
  FZ_CHECK(rx_is_pending(&probe) == probe_scanned);
  for (int i = 0; i < NOBJ; i++) {
    struct obj *o = &objs[i];
    if (o->mem == NULL)
      continue;
    /* A refused fd's watcher is stopped by the loop before its callback
     * tells the model. */
    if (!(o->kind == K_IO && o->expect_error))
      FZ_CHECK(lib_active(o) == o->active);
    FZ_CHECK(lib_priority(o) == o->pri);
    if (o->fed)
      FZ_CHECK(lib_pending(o));
    if (o->kind == K_ASYNC || o->kind == K_SIGNAL)
      FZ_CHECK(lib_pending(o) == (o->fed || o->scanned));
    if (o->kind == K_PERIODIC && o->active)
      FZ_CHECK(o->mem->u.periodic.at == o->at);
    FZ_CHECK(!o->stale || lib_pending(o));
    if (o->kind == K_TIMER && o->active &&
        rx_timer_remaining(loop, &o->mem->u.timer) !=
            o->deadline - rx_now(loop))
      fprintf(stderr,
              "timer %d: remaining %lld, model deadline %lld, now %lld, "
              "repeat %lld, pending %d\n",
              i, (long long)rx_timer_remaining(loop, &o->mem->u.timer),
              (long long)o->deadline, (long long)rx_now(loop),
              (long long)o->repeat, rx_is_pending(&o->mem->u.timer));
    if (o->kind == K_TIMER && o->active)
      FZ_CHECK(rx_timer_remaining(loop, &o->mem->u.timer) ==
               o->deadline - rx_now(loop));
    if (o->kind == K_TIMER && !o->active && !o->fed)
      FZ_CHECK(rx_timer_remaining(loop, &o->mem->u.timer) == o->left);
  }
}

static int pollfd_has(int fd, short ev) {
  struct pollfd p = {.fd = fd, .events = ev};
  return poll(&p, 1, 0) == 1 && (p.revents & ev);
}

/* Runs the loop until what must happen has happened, callbacks doing
 * nothing; aborts if it does not within a few non-blocking iterations. */
static void settle(void) {
  uint64_t before[NOBJ];
  int ok = 0;

  quiet = 1;
  for (int i = 0; i < NOBJ; i++) {
    objs[i].got = 0;
    before[i] = objs[i].calls;
  }
  for (int run = 0; run < SETTLE_RUNS && !ok; run++) {
    run_nowait();
    check_state();
    ok = !probe_sent && !probe_scanned;
    for (int i = 0; i < NOBJ; i++) {
      struct obj *o = &objs[i];
      if (o->mem == NULL)
        continue;
      if (o->fed)
        ok = 0;
      switch (o->kind) {
      case K_IO:
        if (o->expect_error) {
          ok = 0;
        } else if (o->active && !(o->events & RX_ET)) {
          int fd = io_fd(o);
          if ((o->events & RX_READ) && !(o->got & RX_READ) &&
              pollfd_has(fd, POLLIN))
            ok = 0;
          if ((o->events & RX_WRITE) && !(o->got & RX_WRITE) &&
              pollfd_has(fd, POLLOUT))
            ok = 0;
        }
        break;
      case K_TIMER:
        if (o->active && o->deadline <= rx_now(loop))
          ok = 0;
        break;
      case K_PREPARE:
      case K_CHECK:
        if (o->active && o->calls == before[i])
          ok = 0;
        break;
      case K_ASYNC:
        if (o->active && (o->sent || o->scanned))
          ok = 0;
        break;
      case K_PERIODIC:
        if (o->active && o->at <= rx_now(loop))
          ok = 0;
        break;
      case K_SIGNAL:
        if (o->scanned || (o->active && sig_raised[sig_index(o->signum)]))
          ok = 0;
        break;
      default:
        break;
      }
    }
    for (int i = 0; i < NTASK; i++)
      if (tasks[i].posted)
        ok = 0;
  }
  quiet = 0;
  if (!ok) {
    for (int i = 0; i < NOBJ; i++) {
      struct obj *o = &objs[i];
      if (o->mem != NULL)
        fprintf(stderr,
                "obj %d kind %d active %d fed %d events %#x got %#x "
                "error owed %d calls %llu deadline %lld at %lld sent %d "
                "scanned %d now %lld\n",
                i, o->kind, o->active, o->fed, o->events, o->got,
                o->expect_error, (unsigned long long)o->calls,
                (long long)o->deadline, (long long)o->at, o->sent, o->scanned,
                (long long)rx_now(loop));
    }
    fprintf(stderr, "probe sent %d scanned %d\n", probe_sent, probe_scanned);
    fprintf(stderr, "the loop did not settle in %d iterations\n", SETTLE_RUNS);
    abort();
  }
}

static void close_end(int p, int e) {
  if (fds[p][e] < 0)
    return;
  /* Its watchers stop first: closing a watched fd is a caller bug. */
  for (int i = 0; i < NIO; i++) {
    struct obj *o = &objs[i];
    if (o->mem != NULL && o->pair == p && o->end == e)
      obj_stop(o);
  }
  close(fds[p][e]);
  fds[p][e] = -1;
}

static void reopen(int p) {
  int sv[2];
  close_end(p, 0);
  close_end(p, 1);
  FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                      sv) == 0);
  fds[p][0] = sv[0];
  fds[p][1] = sv[1];
  /* The same fd numbers come back, usually: a new file behind an old
   * number, which rx_io_set() makes the loop watch afresh (io.c,
   * RX__FD_RENEW). */
  for (int i = 0; i < NIO; i++) {
    struct obj *o = &objs[i];
    if (o->mem != NULL && o->pair == p && o->end >= 0) {
      obj_stop(o);
      FZ_CHECK(rx_io_set(&o->mem->u.io, io_fd(o), o->events) == 0);
    }
  }
}

static int setup(void) {
  struct rx_loop_options opts = {0};
  opts.flags = RX_LOOP_MANUAL_CLOCK;
  if (loop == NULL && rx_loop_new(&loop, &opts) != 0) {
    fprintf(stderr, "fuzz_loop: no loop\n");
    abort();
  }
  if (bad_fd < 0) {
    /* A number far above what the process uses, and not open. */
    for (int fd = 900; fd < 1000; fd++) {
      if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
        bad_fd = fd;
        break;
      }
    }
  }
  /* SIGURG is ignored by default and the kernel sends it only to an fd's
   * owner (none here); a real-time signal's default ends the process, so it
   * is raised only while watched. Neither is one that libFuzzer or a
   * terminal sends (SIGUSR1, SIGWINCH). */
  sig_nums[0] = SIGURG;
  sig_nums[1] = SIGRTMIN + 4;
  for (int p = 0; p < NPAIR; p++)
    fds[p][0] = fds[p][1] = -1;
  for (int i = 0; i < NOBJ; i++) {
    memset(&objs[i], 0, sizeof(objs[i]));
    objs[i].kind = i < NIO                ? K_IO
                   : i < NIO + NTIMER     ? K_TIMER
                   : i < NIO + NTIMER + 2 ? K_IDLE
                   : i < NIO + NTIMER + 4 ? K_PREPARE
                   : i < NOLD             ? K_CHECK
                   : i < FIRST_PERIODIC   ? K_ASYNC
                   : i < FIRST_SIGNAL     ? K_PERIODIC
                                          : K_SIGNAL;
  }
  for (int i = 0; i < NTASK; i++)
    tasks[i].action = 0;
  tq_head = tq_len = 0;
  feedseq = 0;
  for (int s = 0; s < NSIGNAL; s++)
    sig_raised[s] = 0;
  rx_async_init(&probe, probe_cb);
  FZ_CHECK(rx_async_set_priority(&probe, PROBE_PRI) == 0);
  FZ_CHECK(rx_async_start(loop, &probe) == 0);
  probe_sent = probe_scanned = 0;
  return 0;
}

static void teardown(void) {
  int rc;
  for (int i = 0; i < NOBJ; i++)
    if (objs[i].mem != NULL)
      obj_free(&objs[i]);
  for (int p = 0; p < NPAIR; p++) {
    close_end(p, 0);
    close_end(p, 1);
  }
  settle(); /* posted tasks run; nothing else is left */
  for (int i = 0; i < NTASK; i++)
    FZ_CHECK(!tasks[i].posted);
  FZ_CHECK(tq_len == 0);
  FZ_CHECK(!probe_sent && !probe_scanned);
  FZ_CHECK(rx_async_stop(loop, &probe) == 0);
  FZ_CHECK(rx_pending_count(loop) == 0);
  rc = rx_run(loop, RX_RUN_NOWAIT);
  FZ_CHECK(rc == 0); /* no active watcher is left behind */
  check_state();
  for (size_t i = 0; i < ngraves; i++)
    free(graveyard[i]);
  ngraves = 0;
}

/* ---------------------------------------------------------------------------
 * The script.
 */

static void set_params(struct obj *o, struct fz_input *in) {
  uint8_t v = fz_u8(in);
  int busy = o->active || o->fed;
  int rc;

  switch (o->kind) {
  case K_IO: {
    int pair = v % NPAIR, end = (v >> 2) & 1;
    int events = (1 + (v >> 3) % 3) | ((v & 0x40) ? RX_ET : 0);
    int fd;
    if (v & 0x80) {
      if (bad_fd < 0)
        return;
      end = -1;
      fd = bad_fd;
    } else {
      fd = fds[pair][end];
      if (fd < 0)
        return;
    }
    rc = rx_io_set(&o->mem->u.io, fd, events);
    FZ_CHECK(rc == (busy ? -EBUSY : 0));
    if (rc == 0) {
      o->pair = pair;
      o->end = end;
      o->events = events;
    }
    break;
  }
  case K_TIMER: {
    int64_t after = (int64_t)(v & 15) * TICK / 4;
    int64_t repeat = (int64_t)(v >> 6) * TICK / 3;
    rc = rx_timer_set(&o->mem->u.timer, after, repeat);
    FZ_CHECK(rc == (busy ? -EBUSY : 0));
    if (rc == 0) {
      o->left = after;
      o->repeat = repeat;
    }
    break;
  }
  case K_PERIODIC: {
    /* offset and interval are plain fields; rx_periodic_again() takes a
     * change in (rx.h). Without an interval, a time a little ahead. */
    int64_t interval = (int64_t)(v & 3) * TICK;
    int64_t offset = (int64_t)(v >> 2) * TICK / 16;
    if (interval > 0)
      offset %= interval;
    else
      offset = sat_add(rx_now(loop), offset);
    o->interval = o->mem->u.periodic.interval = interval;
    o->offset = o->mem->u.periodic.offset = offset;
    if (o->active)
      periodic_start(o, 1);
    break;
  }
  case K_SIGNAL:
    if (o->active)
      return; /* its signal is fixed while it is on the loop's list */
    o->signum = o->mem->u.signal.signum = sig_nums[v % NSIGNAL];
    break;
  default: /* idle, prepare, check, async: only a priority */
    set_priority(o, (int)(v % 5) + RX_MINPRI);
    break;
  }
}

/* Opcode 1: the operations added after the first fifteen. Half of its
 * codes still start a watcher, as opcode 1 always did. */
static void extra_step(unsigned sub, struct obj *o, struct fz_input *in) {
  switch (sub) {
  case 8:
    if (o->mem != NULL)
      set_priority(o, (int)(fz_u8(in) % 5) + RX_MINPRI);
    break;
  case 9:
    async_send(o->kind == K_ASYNC
                   ? o
                   : &objs[FIRST_ASYNC + (unsigned)(o - objs) % NASYNC]);
    break;
  case 10:
  case 11:
    sig_raise(o->kind == K_SIGNAL && o->mem != NULL
                  ? (unsigned)sig_index(o->signum)
                  : (unsigned)(o - objs),
              sub == 11);
    break;
  case 12:
    sig_feed(o->kind == K_SIGNAL && o->mem != NULL
                 ? (unsigned)sig_index(o->signum)
                 : (unsigned)(o - objs));
    break;
  case 13:
    if (o->mem != NULL && o->kind == K_PERIODIC)
      periodic_start(o, 1);
    break;
  case 14: {
    struct task *k = &tasks[fz_u8(in) % NTASK];
    if (!k->posted)
      k->action = fz_u8(in);
    post((unsigned)(k - tasks));
    break;
  }
  default:
    if (o->mem != NULL)
      obj_start(o);
    break;
  }
}

static void step(struct fz_input *in) {
  uint8_t code = fz_u8(in);
  struct obj *o = &objs[fz_below(in, NOBJ)];

  budget = 64;
  observe();
  if (getenv("FZ_TRACE") != NULL)
    fprintf(stderr, "step %u obj %d now %lld\n", code % 16, (int)(o - objs),
            (long long)rx_now(loop));
  switch (code % 16) {
  case 0:
    if (o->mem != NULL)
      obj_start(o);
    break;
  case 1:
    extra_step(code >> 4, o, in);
    break;
  case 2:
    if (o->mem != NULL)
      obj_stop(o);
    break;
  case 3:
    if (o->mem != NULL)
      set_params(o, in);
    break;
  case 4:
    if (o->mem != NULL)
      o->action = fz_u8(in);
    break;
  case 5:
    if (o->mem != NULL)
      obj_feed(o, (code & 0x10) ? RX_CUSTOM : RX_READ);
    break;
  case 6:
    sock_write(code >> 4, code >> 6, 1 + fz_below(in, 4096));
    break;
  case 7: {
    int fd = fds[(code >> 4) % NPAIR][(code >> 6) & 1];
    if (fd >= 0)
      drain(fd);
    break;
  }
  case 8:
    if (code & 0x10)
      close_end((code >> 5) % NPAIR, (code >> 7) & 1);
    else
      reopen((code >> 5) % NPAIR);
    break;
  case 9: {
    int64_t ns;
    if ((code & 0x30) == 0 && o->kind == K_TIMER && o->active &&
        o->deadline > rx_now(loop))
      /* to a deadline exactly, or one ns short of it */
      ns = o->deadline - rx_now(loop) - ((code >> 6) & 1);
    else if ((code & 0x30) == 0 && o->kind == K_PERIODIC && o->active &&
             o->at > rx_now(loop) && o->at < INT64_MAX)
      ns = o->at - rx_now(loop) - ((code >> 6) & 1);
    else
      ns = (int64_t)fz_magnitude(in, 24);
    FZ_CHECK(rx_clock_advance(loop, ns) == 0);
    break;
  }
  case 10:
  case 11:
    run_nowait();
    break;
  case 12:
    if (o->mem != NULL && o->kind == K_TIMER)
      timer_again(o);
    break;
  case 13:
    if (o->mem != NULL)
      obj_free(o);
    else
      obj_alloc(o, in);
    break;
  case 14:
    if (code & 0x10) {
      post(code >> 5);
    } else {
      int fd = fds[(code >> 5) % NPAIR][(code >> 7) & 1];
      if (fd >= 0) {
        FZ_CHECK(rx_feed_fd_event(loop, fd, RX_READ | RX_WRITE) == 0);
        /* Only its active watchers become pending: permitted already. */
      }
    }
    break;
  default:
    settle();
    break;
  }
  check_state();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fz_input in;

  fz_init(&in, data, size);
  setup();
  for (int p = 0; p < NPAIR; p++)
    reopen(p);
  for (int i = 0; i < NOBJ; i++)
    obj_alloc(&objs[i], i < NOLD ? &in : NULL);
  for (int i = 0; i < MAX_STEPS && !fz_done(&in); i++)
    step(&in);
  settle();
  teardown();
  return 0;
}
