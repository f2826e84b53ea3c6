/*
 * fuzz_loop.c - a real loop driven by a byte script, checked against a
 * model of the watcher contract (rx.h).
 *
 * The objects: three socketpairs, six io watchers on their ends (level or
 * RX_ET, read and/or write; or on an fd number that is surely closed, which
 * the kernel must refuse with one RX_ERROR), four timers on a manual clock
 * (RX_LOOP_MANUAL_CLOCK: rx_clock_advance() moves time, nothing sleeps),
 * two each of idle, prepare and check watchers, four posted tasks. Every
 * watcher lives in its own heap block so that one can be freed, also from
 * its own callback, and a use after free is caught: by ASan in the
 * libFuzzer build; in the gcc replay build the block is kept until the end
 * of the input with its callback pointing at a trap.
 *
 * Each operation is an opcode byte and its arguments: start, stop, set,
 * feed, free or re-allocate a watcher; give it an action for its callback
 * (stop itself, drain its fd, start or stop or feed another watcher, break
 * one or all, run the loop nested up to depth 3, post a task, write to a
 * socket, re-arm a timer, free itself); write, read, close and reopen
 * sockets; advance the clock; run the loop once without waiting; settle.
 *
 * The checks, after every operation and inside callbacks: rx_verify() is
 * 0; rx_is_active() agrees with the model; a timer's remaining time is the
 * model's; a callback runs only for an active watcher or one fed since it
 * was last stopped, never early for a timer, with events it asked for, and
 * never after its watcher was freed; a task runs once per post. "Settle"
 * runs the loop a few times with callbacks that do nothing and then also
 * checks progress: a level-triggered watcher of a ready fd was called,
 * every due timer fired, a refused fd was reported, every task ran. At the
 * end of an input everything is stopped, freed and closed, and the loop,
 * which is reused across inputs (an io_uring ring costs 46-180 us to
 * create), must be idle and valid. The backend comes from $RX_BACKEND.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "rx.h"

#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif
#ifndef FZ_ASAN
#define FZ_ASAN 0
#endif

#define MAX_STEPS 200
#define MAX_DEPTH 3
#define NPAIR 3
#define NIO 6
#define NTIMER 4
#define NTASK 4
#define SETTLE_RUNS 8
#define TICK RX_USEC(512) /* the loop's default tick is 2^19 ns */

enum kind { K_IO, K_TIMER, K_IDLE, K_PREPARE, K_CHECK };
enum { NOBJ = NIO + NTIMER + 2 + 2 + 2 };

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
  } u;
  struct obj *owner;
};

/* The model of one watcher. */
struct obj {
  enum kind kind;
  struct wmem *mem; /* NULL while freed */
  int active;
  int fed;      /* fed since last stopped: its callback may run */
  int fedev;    /* with these events */
  uint8_t action;
  uint64_t calls;
  /* io */
  int pair, end; /* end -1: the closed fd number */
  int events;
  int expect_error; /* started on a refused fd: RX_ERROR is owed */
  int got;          /* revents seen since the last settle began */
  /* timer */
  int64_t deadline, left, repeat;
};

struct task {
  rx_task t;
  int posted;
  uint64_t ran;
};

static rx_loop *loop;
static struct obj objs[NOBJ];
static int fds[NPAIR][2]; /* -1 when closed */
static struct task tasks[NTASK];
static int quiet;         /* settling: callbacks only record */
/* Callback actions left in this step: two watchers that feed each other
 * would keep one iteration busy for ever, as in any loop. */
static int budget;
static int bad_fd = -1;   /* an fd number that is not open */
static struct wmem *graveyard[4 * MAX_STEPS + NOBJ];
static size_t ngraves;
static char buf[65536];

static void check_state(void);

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
  default:
    return rx_is_active(&o->mem->u.check);
  }
}

static int io_fd(const struct obj *o) {
  return o->end < 0 ? bad_fd : fds[o->pair][o->end];
}

static int64_t sat_add(int64_t a, int64_t b) {
  return b > INT64_MAX - a ? INT64_MAX : a + b;
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

static int obj_stop(struct obj *o) {
  int rc;
  switch (o->kind) {
  case K_IO:
    rc = rx_io_stop(loop, &o->mem->u.io);
    o->expect_error = 0;
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
  default:
    rc = rx_check_stop(loop, &o->mem->u.check);
    break;
  }
  FZ_CHECK(rc == 0);
  o->active = 0;
  o->fed = o->fedev = 0;
  FZ_CHECK(!lib_active(o));
  return rc;
}

static void obj_start(struct obj *o) {
  int rc;
  switch (o->kind) {
  case K_IO:
    if (o->end >= 0 && fds[o->pair][o->end] < 0)
      return; /* its socket is closed: starting it would be a caller bug */
    if (o->end < 0 && bad_fd < 0)
      return;
    rc = rx_io_start(loop, &o->mem->u.io);
    if (o->active) {
      FZ_CHECK(rc == 0);
      return;
    }
    if (o->end < 0) {
      /* A refused fd: -EBADF now, or RX_ERROR later; or -EINVAL when
       * another watcher of the number disagrees on RX_ET. */
      FZ_CHECK(rc == 0 || rc == -EBADF || rc == -EINVAL);
      if (rc == 0)
        o->active = o->expect_error = 1;
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
      o->fed = o->fedev = 0; /* a pending expiry is dropped */
    }
    break;
  case K_IDLE:
    FZ_CHECK(rx_idle_start(loop, &o->mem->u.idle) == 0);
    break;
  case K_PREPARE:
    FZ_CHECK(rx_prepare_start(loop, &o->mem->u.prepare) == 0);
    break;
  default:
    FZ_CHECK(rx_check_start(loop, &o->mem->u.check) == 0);
    break;
  }
  o->active = 1;
}

static void timer_again(struct obj *o) {
  int64_t now = rx_now(loop);
  FZ_CHECK(rx_timer_again(loop, &o->mem->u.timer) == 0);
  o->fed = o->fedev = 0;
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
  default:
    rc = rx_feed_event(loop, &o->mem->u.check, revents);
    break;
  }
  FZ_CHECK(rc == 0);
  o->fed = 1;
  o->fedev |= revents;
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
 * Callbacks.
 */

static void task_fn(rx_loop *l, rx_task *t) {
  struct task *k = (struct task *)t;
  FZ_CHECK(l == loop);
  FZ_CHECK(k->posted); /* once per post */
  k->posted = 0;
  k->ran++;
}

static void post(unsigned i) {
  struct task *k = &tasks[i % NTASK];
  if (k->posted)
    return;
  k->t.fn = task_fn;
  k->posted = 1;
  FZ_CHECK(rx_loop_post(loop, &k->t) == 0);
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
      FZ_CHECK(rx_run(loop, RX_RUN_NOWAIT) >= 0);
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
  default:
    break;
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
  o->calls++;
  return o;
}

static void io_cb(rx_loop *l, rx_io *w, int revents) {
  struct obj *o = enter(w);
  FZ_CHECK(l == loop);
  FZ_CHECK((revents & ~(o->events & (RX_READ | RX_WRITE)) &
            ~(RX_ERROR | o->fedev)) == 0);
  if (revents & RX_ERROR) {
    /* Only for the refused fd, and the watcher is stopped already. */
    FZ_CHECK(o->expect_error);
    FZ_CHECK(!rx_is_active(w));
    o->active = o->expect_error = 0;
  }
  o->got |= revents;
  o->fed = o->fedev = 0;
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
  o->fed = o->fedev = 0;
  act(o);
}

static void idle_cb(rx_loop *l, rx_idle *w, int revents) {
  struct obj *o = enter(w);
  (void)l;
  FZ_CHECK((revents & ~(RX_IDLE | o->fedev)) == 0);
  o->fed = o->fedev = 0;
  act(o);
}

static void prepare_cb(rx_loop *l, rx_prepare *w, int revents) {
  struct obj *o = enter(w);
  (void)l;
  FZ_CHECK((revents & ~(RX_PREPARE | o->fedev)) == 0);
  o->fed = o->fedev = 0;
  act(o);
}

static void check_cb(rx_loop *l, rx_check *w, int revents) {
  struct obj *o = enter(w);
  (void)l;
  FZ_CHECK((revents & ~(RX_CHECK | o->fedev)) == 0);
  o->fed = o->fedev = 0;
  act(o);
}

/* ---------------------------------------------------------------------------
 * Set-up, checks, settling, tear-down.
 */

static void obj_alloc(struct obj *o, struct fz_input *in) {
  struct wmem *m = calloc(1, sizeof(*m));
  FZ_CHECK(m != NULL);
  m->owner = o;
  o->mem = m;
  o->active = o->fed = o->fedev = o->expect_error = 0;
  o->action = fz_u8(in);
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
  default:
    rx_check_init(&m->u.check, check_cb);
    break;
  }
}

static void check_state(void) {
  const char *what = NULL;
  if (rx_verify(loop, &what) != 0) {
    fprintf(stderr, "rx_verify: %s\n", what ? what : "?");
    abort();
  }
  for (int i = 0; i < NOBJ; i++) {
    struct obj *o = &objs[i];
    if (o->mem == NULL)
      continue;
    /* A refused fd's watcher is stopped by the loop before its callback
     * tells the model. */
    if (!(o->kind == K_IO && o->expect_error))
      FZ_CHECK(lib_active(o) == o->active);
    if (o->kind == K_TIMER && o->active &&
        rx_timer_remaining(loop, &o->mem->u.timer) !=
            o->deadline - rx_now(loop))
      fprintf(stderr, "timer %d: remaining %lld, model deadline %lld, now %lld, "
              "repeat %lld, pending %d\n", i,
              (long long)rx_timer_remaining(loop, &o->mem->u.timer),
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
    int rc = rx_run(loop, RX_RUN_NOWAIT);
    FZ_CHECK(rc >= 0);
    check_state();
    ok = 1;
    for (int i = 0; i < NOBJ; i++) {
      struct obj *o = &objs[i];
      if (o->mem == NULL)
        continue;
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
                "error owed %d calls %llu deadline %lld now %lld\n",
                i, o->kind, o->active, o->fed, o->events, o->got,
                o->expect_error, (unsigned long long)o->calls,
                (long long)o->deadline, (long long)rx_now(loop));
    }
    fprintf(stderr, "the loop did not settle in %d iterations\n",
            SETTLE_RUNS);
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
   * number, which the loop must watch afresh (io.c, RX__FD_REOPEN). */
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
  for (int p = 0; p < NPAIR; p++)
    fds[p][0] = fds[p][1] = -1;
  for (int i = 0; i < NOBJ; i++) {
    memset(&objs[i], 0, sizeof(objs[i]));
    objs[i].kind = i < NIO                ? K_IO
                   : i < NIO + NTIMER     ? K_TIMER
                   : i < NIO + NTIMER + 2 ? K_IDLE
                   : i < NIO + NTIMER + 4 ? K_PREPARE
                                          : K_CHECK;
  }
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
  default: {
    int pri = (int)(v % 5) + RX_MINPRI;
    if (o->kind == K_IDLE)
      rc = rx_idle_set_priority(&o->mem->u.idle, pri);
    else if (o->kind == K_PREPARE)
      rc = rx_prepare_set_priority(&o->mem->u.prepare, pri);
    else
      rc = rx_check_set_priority(&o->mem->u.check, pri);
    FZ_CHECK(rc == (busy ? -EBUSY : 0));
    break;
  }
  }
}

static void step(struct fz_input *in) {
  uint8_t code = fz_u8(in);
  struct obj *o = &objs[fz_below(in, NOBJ)];

  budget = 64;
  if (getenv("FZ_TRACE") != NULL)
    fprintf(stderr, "step %u obj %d now %lld\n", code % 16, (int)(o - objs),
            (long long)rx_now(loop));
  switch (code % 16) {
  case 0:
  case 1:
    if (o->mem != NULL)
      obj_start(o);
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
    else
      ns = (int64_t)fz_magnitude(in, 24);
    FZ_CHECK(rx_clock_advance(loop, ns) == 0);
    break;
  }
  case 10:
  case 11:
    FZ_CHECK(rx_run(loop, RX_RUN_NOWAIT) >= 0);
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
    obj_alloc(&objs[i], &in);
  for (int i = 0; i < MAX_STEPS && !fz_done(&in); i++)
    step(&in);
  settle();
  teardown();
  return 0;
}
