/*
 * rx.h - the one public header of rx, an event loop for Linux.
 *
 * rx runs caller-owned watchers on io_uring, or on epoll where io_uring is
 * missing or forbidden, with the same behaviour on both. Read it top to
 * bottom: types, the loop, each watcher, then the inline definitions.
 *
 * Conventions:
 *   - every function that can fail returns 0 (or a count) on success and a
 *     negative errno value on failure; rx_strerror() names it. rx never sets
 *     errno for the caller, never prints and never aborts on bad input.
 *     NULL is accepted for every pointer argument of every function: a
 *     void function then does nothing, a getter returns 0 (or NULL), the
 *     rest -EINVAL. (A pointer to freed or never initialised memory cannot
 *     be checked.)
 *   - time is int64_t nanoseconds on CLOCK_MONOTONIC.
 *   - names: rx_ public, RX_ macros, a leading underscore on private fields
 *     (do not touch them), rx__ for internal symbols.
 *   - thread safety: a loop and its watchers belong to the one thread that
 *     runs the loop. Exactly these functions may be called from any thread:
 *       rx_async_send()    (also from a signal handler),
 *       rx_feed_signal()   (also from a signal handler),
 *       rx_loop_post()     (not from a signal handler),
 *       rx_strerror(),
 *     and rx_set_allocator() before any loop exists. Everything else must be
 *     called on the loop's own thread (for rx_loop_post_from(): on the
 *     thread of `from`).
 */
#ifndef RX_H
#define RX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Not API: the private types the watcher structs below embed by value. */
#include "rx/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RX_BUILDING) && defined(__GNUC__)
#define RX_EXPORT __attribute__((visibility("default")))
#else
#define RX_EXPORT
#endif

/* RX_VERSION_MAJOR, _MINOR, _PATCH, RX_VERSION_HEX ((major << 16) |
 * (minor << 8) | patch) and RX_VERSION_STRING ("MAJOR.MINOR.PATCH"): the
 * version of these headers, generated from meson.build's project version.
 * rx_version() and rx_version_string() give the library's. */
#include "rx_version.h"

/* The running library's version as RX_VERSION_HEX packs it. */
RX_EXPORT unsigned rx_version(void);
/* The running library's version as a string, "MAJOR.MINOR.PATCH". */
RX_EXPORT const char *rx_version_string(void);

/* Event bits: a watcher's interest (RX_READ, RX_WRITE, RX_ET) and the
 * `revents` its callback receives. */
enum {
  RX_READ = 0x01,     /* fd readable */
  RX_WRITE = 0x02,    /* fd writable */
  RX_ET = 0x04,       /* io interest flag: edge-triggered, the caller drains */
  RX_ERROR = 0x08,    /* fd invalid or closed: the watcher has been stopped */
  RX_TIMER = 0x10,    /* timer expired */
  RX_IDLE = 0x20,     /* nothing else was pending */
  RX_PREPARE = 0x40,  /* the loop is about to wait */
  RX_CHECK = 0x80,    /* the loop has just waited */
  RX_ASYNC = 0x100,   /* rx_async_send() was called */
  RX_CLEANUP = 0x200, /* the loop is being freed */
  RX_SIGNAL = 0x400,  /* the signal was delivered */
  RX_EMBED = 0x800,   /* the embedded loop has work */
  RX_PERIODIC = 0x1000, /* a wall-clock time was reached */
  RX_FORK = 0x2000,     /* the loop is running in a forked child */
  RX_CHILD = 0x8000,    /* a child process changed state */
  RX_STAT = 0x10000,    /* a watched path's attributes changed */
  RX_CUSTOM = 0x4000,   /* free for rx_feed_event() callers */
};

/* rx_run() modes. */
enum {
  RX_RUN_DEFAULT = 0, /* until no active referenced watcher or a break */
  RX_RUN_ONCE = 1,    /* one iteration, blocking until something happens
                         (after running what was already pending) */
  RX_RUN_NOWAIT = 2,  /* one iteration, never blocking */
};

/* rx_break() modes. */
enum {
  RX_BREAK_CANCEL = 0, /* undo a break that has not been acted on yet */
  RX_BREAK_ONE = 1,    /* leave the innermost rx_run() */
  RX_BREAK_ALL = 2,    /* leave every nested rx_run() */
};

/* Watcher priorities: pending callbacks run highest first. */
enum { RX_MINPRI = -2, RX_MAXPRI = 2 };

/* Time helpers: an integer count of us, ms or s to int64_t ns. The count is
 * converted first, so a fraction is dropped: RX_SEC(1.5) is 1 s; write
 * RX_MSEC(1500). In C, a float, double or long double given where a
 * function of rx takes a time is a compile error (libev's seconds would
 * silently become ns: 5.5 is 5 ns); cast a computed value, as in
 * (int64_t)(s * 1e9), or define RX_NO_TIME_GUARD before including rx.h to
 * turn the check off (see "inline definitions"). */
#define RX_USEC(n) (1000 * (int64_t)(n))
#define RX_MSEC(n) (1000000 * (int64_t)(n))
#define RX_SEC(n) (1000000000 * (int64_t)(n))

typedef struct rx_loop rx_loop;
typedef struct rx_io rx_io;
typedef struct rx_timer rx_timer;
typedef struct rx_idle rx_idle;
typedef struct rx_prepare rx_prepare;
typedef struct rx_check rx_check;
typedef struct rx_async rx_async;
typedef struct rx_task rx_task;
typedef struct rx_cleanup rx_cleanup;
typedef struct rx_signal rx_signal;
typedef struct rx_embed rx_embed;
typedef struct rx_periodic rx_periodic;
typedef struct rx_fork rx_fork;
typedef struct rx_child rx_child;
typedef struct rx_stat rx_stat;
typedef struct rx_op rx_op;
typedef struct rx_pool rx_pool;
/* The ops' system types, by name only: rx.h includes no socket header. An
 * address length is a socklen_t, which is unsigned int on Linux. */
struct iovec;
struct msghdr;
struct sockaddr;

typedef void (*rx_io_cb)(rx_loop *loop, rx_io *w, int revents);
typedef void (*rx_timer_cb)(rx_loop *loop, rx_timer *w, int revents);
typedef void (*rx_idle_cb)(rx_loop *loop, rx_idle *w, int revents);
typedef void (*rx_prepare_cb)(rx_loop *loop, rx_prepare *w, int revents);
typedef void (*rx_check_cb)(rx_loop *loop, rx_check *w, int revents);
typedef void (*rx_async_cb)(rx_loop *loop, rx_async *w, int revents);
typedef void (*rx_task_fn)(rx_loop *loop, rx_task *task);
typedef void (*rx_cleanup_cb)(rx_loop *loop, rx_cleanup *w, int revents);
typedef void (*rx_signal_cb)(rx_loop *loop, rx_signal *w, int revents);
typedef void (*rx_embed_cb)(rx_loop *loop, rx_embed *w, int revents);
typedef void (*rx_periodic_cb)(rx_loop *loop, rx_periodic *w, int revents);
typedef void (*rx_fork_cb)(rx_loop *loop, rx_fork *w, int revents);
typedef void (*rx_child_cb)(rx_loop *loop, rx_child *w, int revents);
typedef void (*rx_stat_cb)(rx_loop *loop, rx_stat *w, int revents);
/* A completion operation's callback: `res` is the kernel's result unchanged
 * (bytes, a new fd, 0, or a negative errno), `flags` RX_OP_F_* below. */
typedef void (*rx_op_cb)(rx_loop *loop, rx_op *op, int res, unsigned flags);
/* Returns the next wall-clock time (ns since the epoch) at which `w` fires,
 * at or after `now`; must not call into the loop. */
typedef int64_t (*rx_reschedule_fn)(rx_periodic *w, int64_t now);

/* ---------------------------------------------------------------------------
 * Private building blocks of the watcher structs. They are here only because
 * watchers are caller-owned and must have a size; their fields are private.
 * The types they embed (struct rx__link, struct rx__tw_entry, struct
 * rx__mpsc_node) are in rx/layout.h, included at the top.
 */

/* The head every watcher but rx_timer starts with, as rx's own code sees
 * it: user data, the callback (never called through this member: each kind
 * calls its own type), the pending-queue link, a word of state (kind,
 * priority, active, pending, interest, pending events; the bits are listed
 * below, at RX__F_ACTIVE) and 32 bits the kind names itself (rx_io's fd,
 * rx_signal's signum, rx_child's pid), otherwise unused. */
typedef void (*rx__any_cb)(void);
struct rx__watcher {
  void *data;
  rx__any_cb cb;
  struct rx__link link;
  uint32_t flags;
  int32_t word;
};

/* Under GCC and Clang, keeps -Wpedantic quiet about the anonymous struct in
 * C++, where it is an extension (C11 has it). */
#if defined(__GNUC__)
#define RX__EXTENSION __extension__
#else
#define RX__EXTENSION
#endif

/* The first member of each watcher struct but rx_timer: the head as
 * `_w`, and over it the same bytes under the names users write (`data`,
 * `cb` of the kind's own type, and the kind's 32-bit field `word`, e.g.
 * `int fd;`, or nothing). rx's code reads and writes the head only as
 * `_w`; `_link` and `_flags` are spelled out so that the layout is the
 * head's, and for code that used them. */
#define RX__WATCHER_HEAD(cbtype, word) \
  union {                              \
    struct rx__watcher _w;             \
    RX__EXTENSION struct {             \
      void *data;                      \
      cbtype cb;                       \
      struct rx__link _link;           \
      uint32_t _flags;                 \
      word                             \
    };                                 \
  }

/* ---------------------------------------------------------------------------
 * Watchers. Initialise with rx_X_init() before first use; a watcher's memory
 * may be reused or freed once it is stopped, also from its own callback.
 */

/* Clang's -Wpedantic in C++ names the anonymous struct of each watcher's
 * head (RX__WATCHER_HEAD) even under __extension__. */
#if defined(__cplusplus) && defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wnested-anon-types"
#endif

/* An fd watcher: level-triggered readiness, or edge-triggered with RX_ET. */
struct rx_io {
  RX__WATCHER_HEAD(rx_io_cb, int fd;);
  struct rx_io *_next; /* next watcher of the same fd; while stopped,
                          itself after init or set (io.c) */
};

/* A relative timer: fires `after` ns from start, then every `repeat` ns. */
struct rx_timer {
  void *data;
  rx_timer_cb cb;
  struct rx__tw_entry _ent; /* wheel or pending link, deadline, state bits */
  int64_t repeat;           /* ns; 0 = one-shot. Read by rx_timer_again(). */
  rx_loop *_loop;           /* while linked: the loop whose list holds it */
};

/* Called once per iteration while nothing of its priority or higher is
 * pending; an active idle watcher keeps the loop from blocking. */
struct rx_idle {
  RX__WATCHER_HEAD(rx_idle_cb, );
  struct rx__link _active;
};

/* Called every iteration just before the loop waits. */
struct rx_prepare {
  RX__WATCHER_HEAD(rx_prepare_cb, );
  struct rx__link _active;
};

/* Called every iteration just after the loop has waited. */
struct rx_check {
  RX__WATCHER_HEAD(rx_check_cb, );
  struct rx__link _active;
};

/* Wakes the loop from any thread: many sends, at least one callback after
 * the last send. A send carries no data and publishes none; to hand data to
 * the loop, use rx_loop_post(). */
struct rx_async {
  RX__WATCHER_HEAD(rx_async_cb, );
  struct rx__link _active;
  /* Atomic: sends the loop has not seen yet, counted while a send still
   * takes an atomic (see rx_async_send() in async.c), and a bit that lets
   * further sends only look. */
  unsigned _sent;
  /* Atomic: the loop it is active on, or NULL; read by sends. */
  rx_loop *_loop;
};

/* A function to run on a loop's thread, posted from any thread. Caller-owned:
 * rx keeps no other copy and allocates nothing. Set `fn` (and `data`) before
 * posting; the task may be posted again, or freed, once `fn` has started.
 * Posting it again before that is refused (-EBUSY). */
struct rx_task {
  struct rx__mpsc_node _node;
  rx_task_fn fn;
  void *data;
  unsigned _queued; /* atomic: set from the post until `fn` starts */
};

/* A completion operation (rx_op_read() and friends, below): caller-owned,
 * like a watcher, and at most 128 bytes. rx allocates nothing to submit,
 * complete or cancel one. Between its submission and its final callback
 * the op is rx's (do not touch or free it); from the final callback on it
 * is the caller's again, and may be freed or submitted anew inside that
 * callback. `data` is the caller's. The other fields are private. */
struct rx_op {
  struct rx__tw_entry _ent; /* the fd's queue, or the done list */
  rx_loop *_loop;           /* while submitted */
  rx_op_cb _cb;
  void *data;
  int32_t _fd;
  uint8_t _kind;
  uint8_t _state;
  uint16_t _oflags;
  void *_p;       /* buffer, iovec array, msghdr, address or pool */
  uint32_t _len;  /* length, iovec count, address length, how, events */
  uint32_t _uflg; /* MSG_* or SOCK_* flags */
  union {
    uint64_t off;         /* file offset, or accept's length pointer */
    struct rx__link park; /* a pool op waiting for a buffer */
    struct {
      uint64_t off_in; /* the same as off */
      uint64_t off_out;
    } sp; /* a splice's offsets; its fd_out is in _done */
  } _u;
  int32_t _res;   /* a retired op's result, until its callback */
  uint32_t _done; /* bytes written so far (writes complete in full) */
  union {
    struct rx__tw_entry ent; /* the deadline, in the loop's op wheel */
    struct {
      int64_t ts[2]; /* io_uring: the timespec of a timeout */
      int64_t at;    /* io_uring: the deadline, absolute */
    } k;
  } _t;
  int64_t _deadline; /* rx_op_deadline(), for the next submission */
};

/* Called by rx_loop_free(), before anything is torn down: the last chance
 * to stop watchers and free what they hold. Does not keep rx_run() going. */
struct rx_cleanup {
  RX__WATCHER_HEAD(rx_cleanup_cb, );
  struct rx__link _active;
};

/* A Unix signal, delivered as a callback on the loop's thread. */
struct rx_signal {
  RX__WATCHER_HEAD(rx_signal_cb, int signum;);
  struct rx_signal *_next; /* next watcher of the same signal */
};

/* A wall-clock (CLOCK_REALTIME) timer, libev's ev_periodic: with a
 * reschedule function, fires whenever it says; else with an interval > 0,
 * at offset + k * interval (e.g. offset 0, interval 3600 s: on the hour);
 * else once, at the absolute time `offset`. Follows the wall clock when it
 * is set, and never fires before its time on it. */
struct rx_periodic {
  RX__WATCHER_HEAD(rx_periodic_cb, );
  int64_t offset;   /* ns since the epoch, or the phase */
  int64_t interval; /* ns; 0 = absolute */
  rx_reschedule_fn reschedule;
  int64_t at; /* the next time it fires (read-only; in
                 the callback, already the one after) */
  struct rx__link _active;
};

/* A child process's change of state (libev's ev_child). A watcher of one
 * pid, without `trace`, uses a pidfd (Linux 5.3) and stops by itself once
 * the child has exited and been reaped. With pid 0 (any child), or `trace`
 * (also stops and continues), or where pidfds are refused, it uses SIGCHLD
 * and waitpid(): that claims SIGCHLD for the loop (rx_signal's rules), and
 * the watcher stays active until stopped. rx reaps the children it reports
 * (pid 0 watchers: every child). */
struct rx_child {
  /* pid: the child to watch, or 0 for any */
  RX__WATCHER_HEAD(rx_child_cb, int pid;);
  int rpid;    /* in the callback: the child that changed */
  int rstatus; /* in the callback: its status, as waitpid() */
  int _trace;
  int _pidfd;              /* -1 when watched through SIGCHLD */
  rx_io _io;               /* on the pidfd */
  struct rx__link _active; /* on the loop's child list */
};

/* A path's attributes (libev's ev_stat): the callback runs when stat(2) of
 * `path` gives something else than before; `prev` and `attr` hold the old
 * and new results (st_nlink == 0: the path does not exist). Changes are
 * heard at once through inotify where it can watch the path, and in any
 * case by polling every `interval` ns (0: 5 s). `path` must stay valid
 * while the watcher is active. */
struct rx_stat {
  RX__WATCHER_HEAD(rx_stat_cb, );
  const char *path;
  int64_t interval;
  struct stat prev;
  struct stat attr;
  int _wd;                 /* inotify watch descriptor, or -1 */
  rx_timer _timer;         /* the polling */
  struct rx__link _active; /* on the loop's stat list */
};

/* Called in a forked child, at the first iteration after the loop noticed
 * the fork (rx_loop_fork() or RX_LOOP_FORKCHECK), before it waits. */
struct rx_fork {
  RX__WATCHER_HEAD(rx_fork_cb, );
  struct rx__link _active;
};

/* Drives another loop from inside this one (libev's ev_embed): when the
 * embedded loop has io, a due timer or cross-thread work, the callback runs
 * with RX_EMBED, or, with a NULL callback, the embedded loop runs one
 * non-blocking iteration (rx_embed_sweep). Both loops must run on the same
 * thread. */
struct rx_embed {
  RX__WATCHER_HEAD(rx_embed_cb, );
  rx_loop *other;
  rx_io _io;               /* the embedded loop's rx_loop_fd() */
  rx_timer _timer;         /* its next timeout */
  rx_prepare _prepare;     /* re-arms the two before each wait */
  struct rx__link _active; /* on the loop's embed list */
};

#if defined(__cplusplus) && defined(__clang__)
#pragma clang diagnostic pop
#endif

/* ---------------------------------------------------------------------------
 * Loops.
 */

/* rx_loop_options.flags */
enum {
  /* Time moves only by rx_clock_advance(), starting at 0: timers fire in
   * order without sleeping, for deterministic tests of timeout logic. A wait
   * is never bounded by a timer then (the clock would not move while
   * blocked): drive such a loop with RX_RUN_NOWAIT or RX_RUN_ONCE. */
  RX_LOOP_MANUAL_CLOCK = 0x1,
  /* Notices a fork by itself (libev's EVFLAG_FORKCHECK): the child's loop
   * rebuilds its kernel state at its next iteration without a call to
   * rx_loop_fork(). Costs one load per iteration (a fork counter bumped by
   * a pthread_atfork() handler), no syscall. */
  RX_LOOP_FORKCHECK = 0x2,
  /* On io_uring, a completion that needs the loop's thread (a watched socket
   * that became ready, a recv op that found data) waits for the loop's next
   * wait instead of waking or interrupting its thread (IORING_SETUP_
   * DEFER_TASKRUN, Linux 6.1). The process that made the socket ready (a
   * client's send) then pays no wake-up while the loop runs callbacks or
   * naps (rx_set_io_collect_interval()), and a nap is not cut short: a
   * loop serving other processes over sockets costs them, and itself, less
   * (rx-http and rx-load set it). A loop whose callbacks make its own fds
   * ready is better off without it: each enter runs at most 20 queued
   * completions (Linux 6.13 and later), so large batches take several.
   * Ignored on epoll (which wakes only a thread waiting in epoll_wait())
   * and on kernels without DEFER_TASKRUN. */
  RX_LOOP_DEFER = 0x4,
};

/* Options for rx_loop_new(); zero-initialise and set what you need. */
struct rx_loop_options {
  const char *backend;   /* "io_uring", "epoll", or NULL: $RX_BACKEND, else
                            io_uring falling back to epoll */
  int64_t timer_tick;    /* timer resolution in ns, rounded down to a power
                            of two; 0 = 2^19 ns (a timer is at most 0.53 ms
                            late). Minimum 1024 ns. */
  unsigned ring_entries; /* io_uring submission queue size, CQ 4x that
                            (at most 65536); 0 = 256, with a CQ of 8192.
                            At most 32768, on either backend. */
  unsigned flags;        /* RX_LOOP_*; other bits must be 0 */
};

/* Creates a loop. `opts` may be NULL. -EINVAL for bad options, or when
 * opts->backend, else a non-empty $RX_BACKEND, is not "io_uring" or "epoll";
 * -ENOMEM; -ENOSYS/-EPERM when the forced backend is unavailable. */
RX_EXPORT int rx_loop_new(rx_loop **loop, const struct rx_loop_options *opts);
/* Frees a loop; its watchers are left stopped. 0; -EINVAL for NULL; -EBUSY,
 * the loop untouched, when called from inside rx_run() of this loop (from
 * one of its callbacks) or from its cleanup watchers. */
RX_EXPORT int rx_loop_free(rx_loop *loop);
/* The process-wide default loop, created on first call; NULL if it cannot be
 * created. Like any loop it belongs to the thread that runs it. */
RX_EXPORT rx_loop *rx_default_loop(void);

/* Runs the loop in `mode` (RX_RUN_*). Returns 1 if active referenced
 * watchers remain, 0 if none do, or a negative errno if the backend failed. */
RX_EXPORT int rx_run(rx_loop *loop, int mode);
/* Asks rx_run() to return (RX_BREAK_ONE / RX_BREAK_ALL / RX_BREAK_CANCEL). */
RX_EXPORT void rx_break(rx_loop *loop, int how);

/* The loop's cached time, taken once per iteration (CLOCK_MONOTONIC, ns). */
RX_EXPORT int64_t rx_now(const rx_loop *loop);
/* Refreshes the cached time. */
RX_EXPORT void rx_now_update(rx_loop *loop);

/* Counts one more (rx_ref) or one fewer (rx_unref) active watcher, so that
 * e.g. a long-lived internal watcher does not keep rx_run() from returning. */
RX_EXPORT void rx_ref(rx_loop *loop);
RX_EXPORT void rx_unref(rx_loop *loop);

/* Iterations started so far. */
RX_EXPORT uint64_t rx_iteration(const rx_loop *loop);
/* How many rx_run() calls are on the stack. */
RX_EXPORT int rx_depth(const rx_loop *loop);
/* Watchers with a pending, not yet invoked, event. */
RX_EXPORT unsigned rx_pending_count(const rx_loop *loop);

/* The loop's user data pointer. */
RX_EXPORT void rx_loop_set_data(rx_loop *loop, void *data);
RX_EXPORT void *rx_loop_data(const rx_loop *loop);

/* "io_uring" or "epoll". */
RX_EXPORT const char *rx_backend_name(const rx_loop *loop);
/* Why that backend was chosen, e.g. "forced by RX_BACKEND" or
 * "io_uring_setup failed: Operation not permitted". */
RX_EXPORT const char *rx_backend_reason(const rx_loop *loop);

/* In a forked child that goes on using `loop`: its kernel state (the
 * io_uring ring, whose memory the child does not inherit, or the epoll set,
 * and the doorbell) is rebuilt at the next iteration, every watcher kept.
 * Call it in the child only; the parent's loop is unaffected either way.
 * While the rebuild fails (-EMFILE: no fd free), rx_run() and rx_loop_fd()
 * return its error and try again at each call, running no callback;
 * starts, stops and posts are kept for when it succeeds. */
RX_EXPORT void rx_loop_fork(rx_loop *loop);

/* Moves a RX_LOOP_MANUAL_CLOCK loop's time forward by `ns` (>= 0); the
 * timers that become due fire in the next iteration. -EINVAL for a loop on
 * the real clock or a negative `ns`. */
RX_EXPORT int rx_clock_advance(rx_loop *loop, int64_t ns);

/* Suspends the loop's time (libev's ev_suspend): after rx_resume(), timers
 * are delayed by however long the loop was suspended, as if that time had
 * not passed. Call both on the loop's thread, outside rx_run(). */
RX_EXPORT void rx_suspend(rx_loop *loop);
RX_EXPORT void rx_resume(rx_loop *loop);

/* libev's collect intervals, in ns (0, the default, turns each off): a wait
 * for io first sleeps up to `io` ns, so that more events arrive per
 * iteration; a wait bounded by a timer lasts at least `timeout` ns, so that
 * nearby timers expire together (later, never earlier). -EINVAL if
 * negative. */
RX_EXPORT int rx_set_io_collect_interval(rx_loop *loop, int64_t io);
RX_EXPORT int rx_set_timeout_collect_interval(rx_loop *loop, int64_t timeout);

/* Busy-polling for cross-thread work (rx_async_send(), rx_loop_post(),
 * signals). When other threads have been handing work to the loop faster
 * than `max` ns after it ran out of work, the loop polls for the next
 * hand-off, up to an adaptive window of at most `max` ns, before it sleeps:
 * the hand-off then costs neither side a syscall nor a context switch
 * (waking a sleeping thread costs about 10 us of CPU on a VM). The window
 * grows only while doorbells keep ending short sleeps, and shrinks to
 * nothing when sleeps last longer (as KVM's halt polling): a loop fed by io
 * and timers never polls. While it polls, the loop yields the CPU every
 * 2 us to any other runnable thread; io and timer events that arrive
 * meanwhile wait for the poll's end (at most `max` ns, never past a timer's
 * deadline). rx_loop_metrics() reports the time spent (poll_ns). Default
 * RX_BUSY_POLL_DEFAULT; 0 turns it off. -EINVAL if negative. */
#define RX_BUSY_POLL_DEFAULT 50000
RX_EXPORT int rx_set_busy_poll(rx_loop *loop, int64_t max);

/* Replaces how pending callbacks are invoked each iteration (libev's
 * ev_set_invoke_pending), e.g. to run them on another thread under a lock;
 * NULL restores rx_invoke_pending(). rx_invoke_pending() invokes every
 * pending callback, highest priority first. */
RX_EXPORT void rx_set_invoke_pending(rx_loop *loop,
                                     void (*invoke)(rx_loop *loop));
RX_EXPORT void rx_invoke_pending(rx_loop *loop);

/* Makes `fd`'s watchers pending as if the backend had reported `revents`
 * (RX_READ / RX_WRITE) for it; those without matching interest are left
 * alone. -EBADF for a negative fd. */
RX_EXPORT int rx_feed_fd_event(rx_loop *loop, int fd, int revents);

/* Checks every internal structure of the loop: pending queues and counts,
 * the fd table and its watchers, the timer wheel, the watcher lists. 0, or
 * -EFAULT with *what (if not NULL) naming the first broken structure. */
RX_EXPORT int rx_verify(rx_loop *loop, const char **what);

/* What the loop has done since it was made. */
struct rx_metrics {
  uint64_t iterations;
  uint64_t dispatched;   /* callbacks invoked */
  uint64_t enters;       /* backend syscalls: io_uring_enter, epoll_wait,
                            epoll_ctl */
  uint64_t completions;  /* completions reaped or epoll events returned */
  uint64_t overflows;    /* completion overflow flushes (io_uring) */
  uint64_t rearms;       /* interest (re)registered: POLL_ADD SQEs or
                            epoll_ctl ADD/MOD */
  uint64_t wakeups;      /* doorbells heard from other threads */
  uint64_t coalesced;    /* cross-thread events (tasks run, async callbacks)
                            that needed no doorbell of their own */
  int64_t idle_ns;       /* time spent blocked in the backend */
  int64_t poll_ns;       /* time spent busy-polling for cross-thread work
                            (rx_set_busy_poll()) */
  uint64_t poll_hits;    /* busy-polls that found work */
  uint64_t async_fences; /* process-wide barriers issued so that many sends
                            to a pending rx_async cost a load each */
  const char *backend;   /* rx_backend_name() */
  const char *reason;    /* rx_backend_reason() */
};
/* Fills `m`: 0, or -EINVAL for a NULL argument. */
RX_EXPORT int rx_loop_metrics(const rx_loop *loop, struct rx_metrics *m);

/* Embedding rx in another event loop (GLib, Qt, another reactor): watch
 * rx_loop_fd() for readability with the timeout rx_loop_timeout() writes to
 * *timeout (ns, -1 for none, 0 to run at once, as poll(2) and libuv's
 * uv_backend_timeout() take it), then call rx_run(loop, RX_RUN_NOWAIT);
 * repeat. Run it once before the first wait, so that what was started is
 * handed to the kernel. rx_loop_fd() returns the fd or a negative errno.
 * rx_loop_timeout() returns 0, or -EINVAL (and writes nothing) for a NULL
 * argument: the error is never a timeout. It also tells other threads that
 * the loop may be waiting, so that their posts make the fd readable. */
RX_EXPORT int rx_loop_fd(rx_loop *loop);
RX_EXPORT int rx_loop_timeout(rx_loop *loop, int64_t *timeout);

/* A static description of a negative errno value (or 0). Thread-safe. */
RX_EXPORT const char *rx_strerror(int err);

/* The allocator used for rx's internal tables. Every function receives the
 * size of the block it handles; `free` and `realloc` receive the size given
 * when the block was allocated (jemalloc's sdallocx wants it). */
struct rx_allocator {
  void *(*alloc)(void *ctx, size_t size);
  void *(*realloc)(void *ctx, void *ptr, size_t old_size, size_t new_size);
  void (*free)(void *ctx, void *ptr, size_t size);
  void *ctx;
};
/* Installs `a` (NULL: libc). Call before creating any loop; -EINVAL when a
 * function is missing, -EBUSY while a loop exists. */
RX_EXPORT int rx_set_allocator(const struct rx_allocator *a);

/* ---------------------------------------------------------------------------
 * io watchers.
 */

/* Sets callback, fd and interest (RX_READ | RX_WRITE, optionally RX_ET).
 * Any other bit leaves no interest: rx_io_events() is then 0 and
 * rx_io_start() returns -EINVAL, as rx_io_set() would. */
RX_EXPORT void rx_io_init(rx_io *w, rx_io_cb cb, int fd, int events);
/* Changes fd and interest of a stopped watcher: -EBUSY while active,
 * -EBADF for a negative fd, -EINVAL for events without RX_READ or RX_WRITE. */
RX_EXPORT int rx_io_set(rx_io *w, int fd, int events);
/* Starts watching: 0, or -EBADF / -EINVAL for a bad fd or interest, -EBUSY
 * when active on another loop, -ENOMEM. An fd the kernel rejects, or that
 * cannot be registered when the loop next waits (e.g. out of memory for
 * the epoll backend's list of always-ready files), is reported to the
 * callback as RX_ERROR once and the watcher stopped. Never close an fd
 * while a watcher of it is active (stop first, or rx_io_close()); after
 * init or set the fd is registered afresh, so a number closed and reused
 * needs rx_io_set() or rx_io_init() before the start, and a plain stop and
 * start of the same file costs no kernel call. */
RX_EXPORT int rx_io_start(rx_loop *loop, rx_io *w);
/* Stops the watcher and clears a pending event; 0 also when inactive,
 * -EBUSY when active or pending on another loop. The kernel's registration
 * of an fd left without watchers goes at the next wait, or when rx_run()
 * returns. */
RX_EXPORT int rx_io_stop(rx_loop *loop, rx_io *w);
/* Stops every watcher of fd on this loop (no callback; pending events are
 * dropped), releases what the kernel holds for it at once, then closes it:
 * 0, close()'s negative errno, -EINVAL for a NULL loop, -EBADF for fd < 0. */
RX_EXPORT int rx_io_close(rx_loop *loop, int fd);
/* The interest given to init or set. */
static inline int rx_io_events(const rx_io *w);

/* ---------------------------------------------------------------------------
 * Timers. A timer never fires before its deadline; timers that expire in the
 * same iteration run in deadline order, ties in start order; a repeating
 * timer's next deadline is its previous deadline plus `repeat` (no drift).
 */

/* Sets callback, first delay and repeat interval (ns, both >= 0). A negative
 * value makes the timer invalid: rx_timer_start() then returns -EINVAL. */
RX_EXPORT void rx_timer_init(rx_timer *w, rx_timer_cb cb, int64_t after,
                             int64_t repeat);
/* Changes delay and repeat of a stopped timer: -EBUSY while active, -EINVAL
 * for a negative value. */
RX_EXPORT int rx_timer_set(rx_timer *w, int64_t after, int64_t repeat);
/* Starts the timer `after` ns from rx_now(). -EINVAL for an invalid timer,
 * -EBUSY when active on another loop. */
RX_EXPORT int rx_timer_start(rx_loop *loop, rx_timer *w);
/* Stops the timer and clears a pending expiry; 0 also when inactive,
 * -EBUSY when active or pending on another loop. */
RX_EXPORT int rx_timer_stop(rx_loop *loop, rx_timer *w);
/* libev's ev_timer_again: with `repeat` > 0, (re)starts the timer to expire
 * `repeat` ns from now; with `repeat` == 0, stops it. -EINVAL if repeat < 0,
 * -EBUSY when active or pending on another loop. */
RX_EXPORT int rx_timer_again(rx_loop *loop, rx_timer *w);
/* Nanoseconds until an active timer expires (<= 0 once due); for a stopped
 * timer, the delay it would start with; 0 for a NULL argument. */
RX_EXPORT int64_t rx_timer_remaining(const rx_loop *loop, const rx_timer *w);

/* ---------------------------------------------------------------------------
 * idle, prepare and check watchers. Start and stop cannot fail except on a
 * NULL argument (-EINVAL) or a watcher active on another loop (-EBUSY).
 */

RX_EXPORT void rx_idle_init(rx_idle *w, rx_idle_cb cb);
RX_EXPORT int rx_idle_start(rx_loop *loop, rx_idle *w);
RX_EXPORT int rx_idle_stop(rx_loop *loop, rx_idle *w);

RX_EXPORT void rx_prepare_init(rx_prepare *w, rx_prepare_cb cb);
RX_EXPORT int rx_prepare_start(rx_loop *loop, rx_prepare *w);
RX_EXPORT int rx_prepare_stop(rx_loop *loop, rx_prepare *w);

RX_EXPORT void rx_check_init(rx_check *w, rx_check_cb cb);
RX_EXPORT int rx_check_start(rx_loop *loop, rx_check *w);
RX_EXPORT int rx_check_stop(rx_loop *loop, rx_check *w);

/* ---------------------------------------------------------------------------
 * signal watchers. Starting the first watcher of a signal installs rx's
 * handler for it (the only change rx makes to signal dispositions, and only
 * when asked); stopping the last one puts back the disposition that was
 * there before, and waits for handlers still running on other threads. The
 * handler may run on any thread; the callback runs on the loop's. A signal
 * is watched by one loop at a time.
 */

RX_EXPORT void rx_signal_init(rx_signal *w, rx_signal_cb cb, int signum);
/* 0; -EINVAL for a signal that cannot be caught (SIGKILL, SIGSTOP) or is
 * out of range; -EBUSY if another loop watches `signum`, or `w` is active on
 * another loop; or the error of sigaction(). */
RX_EXPORT int rx_signal_start(rx_loop *loop, rx_signal *w);
RX_EXPORT int rx_signal_stop(rx_loop *loop, rx_signal *w);
RX_EXPORT int rx_signal_set_priority(rx_signal *w, int priority);
/* Makes `signum`'s watchers on `loop` pending as if it had been delivered.
 * -EINVAL for a signal out of range. */
RX_EXPORT int rx_feed_signal_event(rx_loop *loop, int signum);
/* As if `signum` had been delivered to the process: whichever loop watches
 * it hears of it (libev's ev_feed_signal). Thread-safe and
 * async-signal-safe; -EINVAL for a signal out of range. */
RX_EXPORT int rx_feed_signal(int signum);

/* ---------------------------------------------------------------------------
 * periodic watchers. Those due in the same iteration run in the order of
 * their times, ties in start order, as timers do.
 */

RX_EXPORT void rx_periodic_init(rx_periodic *w, rx_periodic_cb cb,
                                int64_t offset, int64_t interval,
                                rx_reschedule_fn reschedule);
/* -EINVAL for a negative interval, or an offset outside [0, interval)
 * with an interval; -EBUSY when active on another loop. */
RX_EXPORT int rx_periodic_start(rx_loop *loop, rx_periodic *w);
RX_EXPORT int rx_periodic_stop(rx_loop *loop, rx_periodic *w);
/* Recomputes `at` from the current wall clock (after a change of offset,
 * interval or of what reschedule returns); starts it if stopped. */
RX_EXPORT int rx_periodic_again(rx_loop *loop, rx_periodic *w);
RX_EXPORT int rx_periodic_set_priority(rx_periodic *w, int priority);
/* The wall clock now (CLOCK_REALTIME ns, read at each call); on a manual
 * clock, the manual clock. */
RX_EXPORT int64_t rx_wallclock(const rx_loop *loop);

/* ---------------------------------------------------------------------------
 * embed watchers.
 */

RX_EXPORT void rx_embed_init(rx_embed *w, rx_embed_cb cb, rx_loop *other);
/* -EINVAL for a NULL argument or a loop embedded in itself; -ELOOP when
 * `other` embeds `loop`, directly or further down (a cycle); -EBUSY when
 * active on another loop. */
RX_EXPORT int rx_embed_start(rx_loop *loop, rx_embed *w);
RX_EXPORT int rx_embed_stop(rx_loop *loop, rx_embed *w);
/* Runs one non-blocking iteration of the embedded loop. */
RX_EXPORT void rx_embed_sweep(rx_loop *loop, rx_embed *w);
RX_EXPORT int rx_embed_set_priority(rx_embed *w, int priority);

/* ---------------------------------------------------------------------------
 * child watchers.
 */

/* `trace`: also report stops and continues (WUNTRACED | WCONTINUED). */
RX_EXPORT void rx_child_init(rx_child *w, rx_child_cb cb, int pid, int trace);
/* -EINVAL for a negative pid; -EBUSY when another loop holds SIGCHLD (for
 * pid 0 or trace) or `w` is active on another loop; -ESRCH for a pid no
 * process has; or the error of pidfd_open(). Watch your own children: a
 * pidfd watcher of a process that is not one stops, without a callback,
 * when that process exits (it cannot be reaped here). */
RX_EXPORT int rx_child_start(rx_loop *loop, rx_child *w);
RX_EXPORT int rx_child_stop(rx_loop *loop, rx_child *w);
RX_EXPORT int rx_child_set_priority(rx_child *w, int priority);

/* ---------------------------------------------------------------------------
 * stat watchers.
 */

RX_EXPORT void rx_stat_init(rx_stat *w, rx_stat_cb cb, const char *path,
                            int64_t interval);
/* Takes the first stat() into `attr`. -EINVAL for a NULL path or a
 * negative interval; -EBUSY when active on another loop. */
RX_EXPORT int rx_stat_start(rx_loop *loop, rx_stat *w);
RX_EXPORT int rx_stat_stop(rx_loop *loop, rx_stat *w);
/* Refreshes `attr` now (libev's ev_stat_stat), without a callback. */
RX_EXPORT int rx_stat_stat(rx_loop *loop, rx_stat *w);
RX_EXPORT int rx_stat_set_priority(rx_stat *w, int priority);

/* ---------------------------------------------------------------------------
 * fork watchers.
 */

RX_EXPORT void rx_fork_init(rx_fork *w, rx_fork_cb cb);
RX_EXPORT int rx_fork_start(rx_loop *loop, rx_fork *w);
RX_EXPORT int rx_fork_stop(rx_loop *loop, rx_fork *w);
RX_EXPORT int rx_fork_set_priority(rx_fork *w, int priority);

/* ---------------------------------------------------------------------------
 * cleanup watchers.
 */

RX_EXPORT void rx_cleanup_init(rx_cleanup *w, rx_cleanup_cb cb);
RX_EXPORT int rx_cleanup_start(rx_loop *loop, rx_cleanup *w);
RX_EXPORT int rx_cleanup_stop(rx_loop *loop, rx_cleanup *w);

/* ---------------------------------------------------------------------------
 * Feeding events by hand (libev's ev_feed_event). `w` is any started or
 * stopped watcher of this loop; its callback runs in this or the next
 * invocation of pending callbacks with `revents` (a timer always receives
 * RX_TIMER). Use rx_feed_event(loop, w, revents) with any watcher type.
 * -EBUSY for a watcher active or pending on another loop: feeding,
 * clearing, starting or stopping it there would corrupt both loops.
 */
RX_EXPORT int rx_feed_event_head(rx_loop *loop, void *w, int revents);
RX_EXPORT int rx_feed_event_timer(rx_loop *loop, rx_timer *w, int revents);
/* Clears `w`'s pending event without invoking it and returns the events it
 * had (0 if none): libev's ev_clear_pending. Use rx_clear_pending(loop, w)
 * with any watcher type. */
RX_EXPORT int rx_clear_pending_head(rx_loop *loop, void *w);
RX_EXPORT int rx_clear_pending_timer(rx_loop *loop, rx_timer *w);

/* ---------------------------------------------------------------------------
 * Cross-thread wake-ups and work.
 */

RX_EXPORT void rx_async_init(rx_async *w, rx_async_cb cb);
/* Starting clears an earlier send: only sends after the start count. */
RX_EXPORT int rx_async_start(rx_loop *loop, rx_async *w);
RX_EXPORT int rx_async_stop(rx_loop *loop, rx_async *w);
/* Thread-safe and async-signal-safe. Makes `w`'s callback run on the loop's
 * thread, once for any number of sends before it runs, and what the sending
 * thread wrote before the send is visible to that callback (an atomic
 * read-modify-write, or, after many sends since the loop last looked, a
 * load paired with the loop's membarrier(): see the guide). 0, or -EINVAL;
 * -EBUSY for a watcher active on another loop. A send to a stopped watcher
 * is dropped. Sends come from threads of this
 * process. */
RX_EXPORT int rx_async_send(rx_loop *loop, rx_async *w);
/* Whether a send has not yet been seen by the loop. */
RX_EXPORT int rx_async_pending(const rx_async *w);

/* Thread-safe. Runs task->fn(loop, task) on the loop's thread, exactly once,
 * in post order for posts from one thread. 0; -EINVAL for a NULL argument or
 * `fn`; -EBUSY while `task` is posted and its `fn` has not started;
 * -ESHUTDOWN when the post lost a race with rx_loop_free() (which waits for
 * posts already under way and runs every task posted before it began).
 * -ESHUTDOWN is no stop signal: posting to a loop whose rx_loop_free() has
 * returned is a use after free, so stop and join producers before freeing
 * their loop. A
 * posted task does not keep rx_run() from returning; hold an rx_ref() or an
 * active watcher while tasks are expected. */
RX_EXPORT int rx_loop_post(rx_loop *loop, rx_task *task);
/* rx_loop_post() from the thread that runs `from`. Between two io_uring
 * loops on a kernel with IORING_OP_MSG_RING, called from inside rx_run() of
 * `from` (a callback), the wake-up travels as a message from ring to ring
 * in `from`'s next submission (at the latest when that rx_run() returns)
 * instead of an eventfd write; so a callback that then blocks for long
 * delays it. Outside rx_run() it is rx_loop_post(). */
RX_EXPORT int rx_loop_post_from(rx_loop *from, rx_loop *to, rx_task *task);

/* ---------------------------------------------------------------------------
 * Completion operations: the kernel does the read, the write, the accept.
 * On io_uring each op is one request, and the ops submitted during an
 * iteration go to the kernel with the next wait, in one io_uring_enter().
 * On epoll (and for an op the kernel lacks) rx emulates it: the fd is
 * watched for the readiness the op needs (one registration per fd, shared
 * with its rx_io watchers), and the syscall is made when it is ready. Both
 * give the same results. See docs/guide.md, "Completion operations".
 *
 * Each call submits `op` and returns 0, or a negative errno and leaves the
 * op the caller's (no callback): -EINVAL for bad arguments, -EBUSY for an
 * op already submitted, -EBADF for a negative fd or one being closed
 * through rx_op_close(). The callback never runs inside the call.
 *
 * Exactly one final callback per submitted op: its result, -ECANCELED, or
 * its real result when a cancel came too late. A multishot op first gives
 * zero or more callbacks with RX_OP_F_MORE, then its final one without.
 * Callbacks run in the wait step of an iteration, before the watchers'.
 * While submitted, an op keeps rx_run() going, as an active watcher does.
 *
 * Per-fd order: reads (read, readv, recv, recvmsg, accept) of one fd run
 * one at a time in submission order, and so do writes (write, writev,
 * send, sendmsg, connect, shutdown). A write completes only when all of its
 * bytes are written (rx submits the rest after a short write), or with the
 * bytes written before an error (the error itself if none was), so the
 * writes of one fd never interleave.
 * rx_op_writev() and rx_op_sendmsg() may modify the iovec array while the
 * op runs. poll is not ordered. */
enum {
  RX_OP_F_MORE = 0x1,   /* a multishot op: more callbacks follow */
  RX_OP_F_BUFFER = 0x2, /* a pool buffer holds the data: RX_OP_BUFFER_ID() */
};
/* The pool buffer id of a callback whose flags have RX_OP_F_BUFFER. */
#define RX_OP_BUFFER_ID(flags) ((unsigned)(flags) >> 16)

/* Makes `op` ready for its first submission (or zero it). */
RX_EXPORT void rx_op_init(rx_op *op);
/* A deadline of `ns` (> 0) ns from the op's next submission, for that
 * submission only (0: none): if the op has not completed by then, it ends
 * with -ETIMEDOUT (a write with the bytes it wrote, if any). Never early.
 * -EBUSY while the op is submitted, -EINVAL for ns < 0. */
RX_EXPORT int rx_op_deadline(rx_op *op, int64_t ns);

RX_EXPORT int rx_op_read(rx_loop *loop, rx_op *op, int fd, void *buf,
                         unsigned len, int64_t offset, rx_op_cb cb);
RX_EXPORT int rx_op_write(rx_loop *loop, rx_op *op, int fd, const void *buf,
                          unsigned len, int64_t offset, rx_op_cb cb);
/* offset -1: the file position (and for a socket or pipe), as read(2). */
RX_EXPORT int rx_op_readv(rx_loop *loop, rx_op *op, int fd,
                          const struct iovec *iov, int iovcnt, int64_t offset,
                          rx_op_cb cb);
RX_EXPORT int rx_op_writev(rx_loop *loop, rx_op *op, int fd, struct iovec *iov,
                           int iovcnt, int64_t offset, rx_op_cb cb);
RX_EXPORT int rx_op_recv(rx_loop *loop, rx_op *op, int fd, void *buf,
                         unsigned len, int flags, rx_op_cb cb);
RX_EXPORT int rx_op_send(rx_loop *loop, rx_op *op, int fd, const void *buf,
                         unsigned len, int flags, rx_op_cb cb);
RX_EXPORT int rx_op_recvmsg(rx_loop *loop, rx_op *op, int fd,
                            struct msghdr *msg, int flags, rx_op_cb cb);
RX_EXPORT int rx_op_sendmsg(rx_loop *loop, rx_op *op, int fd,
                            struct msghdr *msg, int flags, rx_op_cb cb);
/* res: the new connection's fd (flags: SOCK_NONBLOCK, SOCK_CLOEXEC). An
 * accept that completes after its cancel closes that fd itself and gives
 * -ECANCELED. addr and addrlen may be NULL. */
RX_EXPORT int rx_op_accept(rx_loop *loop, rx_op *op, int fd,
                           struct sockaddr *addr, unsigned *addrlen, int flags,
                           rx_op_cb cb);
/* One fd per callback, with RX_OP_F_MORE, until cancelled or an error. */
RX_EXPORT int rx_op_accept_multishot(rx_loop *loop, rx_op *op, int fd,
                                     int flags, rx_op_cb cb);
RX_EXPORT int rx_op_connect(rx_loop *loop, rx_op *op, int fd,
                            const struct sockaddr *addr, unsigned addrlen,
                            rx_op_cb cb);
RX_EXPORT int rx_op_shutdown(rx_loop *loop, rx_op *op, int fd, int how,
                             rx_op_cb cb);
/* splice(2): moves up to `len` bytes from fd_in to fd_out, one of which is
 * a pipe (else -EINVAL; flags: SPLICE_F_MOVE, SPLICE_F_MORE; an offset -1
 * for a pipe or to use the file position). res: the bytes moved, 0 at
 * fd_in's end. The op is ordered with the ops of the fd that is not a pipe:
 * with its reads (into a pipe) or its writes (out of one); pipe to pipe,
 * with fd_in's reads. rx_op_close() of either fd cancels it. */
RX_EXPORT int rx_op_splice(rx_loop *loop, rx_op *op, int fd_in, int64_t off_in,
                           int fd_out, int64_t off_out, unsigned len,
                           unsigned flags, rx_op_cb cb);
/* res: the RX_READ / RX_WRITE bits of `events` that are ready (RX_READ
 * also for a hang-up or an error). One-shot. */
RX_EXPORT int rx_op_poll(rx_loop *loop, rx_op *op, int fd, int events,
                         rx_op_cb cb);
/* A pure delay: res -ETIME after `ns` (>= 0) ns, never early. */
RX_EXPORT int rx_op_timeout(rx_loop *loop, rx_op *op, int64_t ns, rx_op_cb cb);
/* Completes with 0 in the next wait step. */
RX_EXPORT int rx_op_nop(rx_loop *loop, rx_op *op, rx_op_cb cb);
/* Buffer pools: `count` (a power of two, at most 32768) buffers of `size`
 * bytes that the kernel (io_uring's provided buffer rings) or the emulation
 * picks from when data arrives, so that an idle connection holds no
 * buffer. The pool belongs to `loop`. A recv into a pool completes with
 * RX_OP_F_BUFFER and the buffer's id in its flags (RX_OP_BUFFER_ID()); the
 * buffer is the caller's until rx_pool_put(). When the pool is empty, a
 * pool recv waits (no callback, no spin) and goes on when a buffer comes
 * back. rx_pool_free(): -EBUSY while an op uses the pool; buffers still out
 * are gone with it. */
RX_EXPORT int rx_pool_new(rx_loop *loop, rx_pool **pool, unsigned count,
                          unsigned size);
RX_EXPORT int rx_pool_free(rx_pool *pool);
/* The buffer `id`, or NULL for an id out of range. */
RX_EXPORT void *rx_pool_buffer(const rx_pool *pool, unsigned id);
RX_EXPORT unsigned rx_pool_size(const rx_pool *pool);
/* Gives buffer `id` back: 0, or -EINVAL if the caller does not hold it. */
RX_EXPORT int rx_pool_put(rx_pool *pool, unsigned id);
/* One recv into a buffer of `pool`. */
RX_EXPORT int rx_op_recv_pool(rx_loop *loop, rx_op *op, int fd, rx_pool *pool,
                              int flags, rx_op_cb cb);
/* Receives until EOF (final res 0), an error or a cancel: one callback with
 * RX_OP_F_MORE per buffer filled. */
RX_EXPORT int rx_op_recv_multishot(rx_loop *loop, rx_op *op, int fd,
                                   rx_pool *pool, int flags, rx_op_cb cb);
/* Cancels every op of `fd` and stops its rx_io watchers; once each op has
 * retired (its final callback is queued), closes the fd and completes with
 * close's result. The number is reused only after no op can touch the
 * file: the peer sees the close in the same iteration. Until the close is
 * under way, new ops on `fd` are refused with -EBADF. */
RX_EXPORT int rx_op_close(rx_loop *loop, rx_op *op, int fd, rx_op_cb cb);
/* Asks for the end of a submitted op: 0 (its final callback follows, with
 * -ECANCELED or its real result), -ENOENT if it is not submitted on this
 * loop, -EALREADY if its cancel was asked already. */
RX_EXPORT int rx_op_cancel(rx_loop *loop, rx_op *op);
/* Which ops the kernel does and which rx emulates on this loop: "all by
 * the kernel", "all emulated (epoll)", or "emulated: " and the names of
 * the kinds that the kernel lacks (probed once, when the loop was made). */
RX_EXPORT const char *rx_op_support(const rx_loop *loop);
/* 1 while the op is submitted (from its submission to its final callback),
 * else 0. */
RX_EXPORT int rx_op_active(const rx_op *op);

/* ---------------------------------------------------------------------------
 * Watcher state, for every watcher type. Priority may only change while the
 * watcher is stopped: -EBUSY while active or pending, -EINVAL out of range.
 */

RX_EXPORT int rx_io_set_priority(rx_io *w, int priority);
RX_EXPORT int rx_timer_set_priority(rx_timer *w, int priority);
RX_EXPORT int rx_idle_set_priority(rx_idle *w, int priority);
RX_EXPORT int rx_prepare_set_priority(rx_prepare *w, int priority);
RX_EXPORT int rx_check_set_priority(rx_check *w, int priority);
RX_EXPORT int rx_async_set_priority(rx_async *w, int priority);
RX_EXPORT int rx_cleanup_set_priority(rx_cleanup *w, int priority);

/* Whether a watcher is started (active) or has an event waiting for its
 * callback (pending), and its priority: rx_is_active(w), rx_is_pending(w)
 * and rx_priority(w) take a pointer to any watcher type. */
/* ---------------------------------------------------------------------------
 * inline definitions
 */

/* Layout of the private flags word of the watcher head (`_w.flags`), all
 * 32 bits spoken for:
 *   bits  0-2   RX__F_EVENTS   io interest (other kinds: unused)
 *   bit   3     RX__F_ACTIVE
 *   bit   4     RX__F_PENDING
 *   bits  5-7   RX__F_PRIO     priority + 2 (5 of 8 values used)
 *   bits  8-11  RX__F_KIND     enum rx__kind (12 of 15 kinds used)
 *   bits 12-30  pending revents, 19 bits (RX_STAT, the highest event bit,
 *               is bit 16 of revents: 2 bits to spare)
 *   bit  31     RX__F_UNREF    an active watcher that does not count in
 *                              the loop's active count (internal watchers
 *                              and cleanup watchers)
 * None remains free: a new one comes from the revents bits above RX_STAT's,
 * or from the kind's own 32-bit field (`_w.word`). */
#define RX__F_EVENTS 0x0000007u /* io interest: RX_READ|RX_WRITE|RX_ET */
#define RX__F_ACTIVE 0x0000008u
#define RX__F_PENDING 0x0000010u
#define RX__F_PRIO_SHIFT 5 /* priority + 2, 3 bits */
#define RX__F_PRIO 0x00000e0u
#define RX__F_KIND_SHIFT 8 /* enum rx__kind, 4 bits */
#define RX__F_KIND 0x0000f00u
#define RX__F_REVENTS_SHIFT 12 /* pending revents, 19 bits */
#define RX__F_REVENTS_MASK 0x7ffffu
#define RX__F_UNREF 0x80000000u

/* The timer's 6 private state bits, above the deadline in `_ent.word`, all
 * used: none is left for an unref bit, so rx's internal timers (stat and
 * embed watchers') still take their reference back with rx_unref(). */
#define RX__T_PRIO 0x07u /* priority + 2 */
#define RX__T_ACTIVE 0x08u
#define RX__T_PENDING 0x10u
#define RX__T_INVALID 0x20u /* init or set was given a negative value */

/* The helpers below are NULL-safe like every function of rx: a NULL watcher
 * is neither active nor pending, has no interest and priority 0. */
static inline int rx_io_events(const rx_io *w) {
  return w != NULL ? (int)(w->_w.flags & RX__F_EVENTS) : 0;
}

/* Every watcher but rx_timer starts with its head: a pointer to the watcher
 * is one to the head (C11 6.7.2.1p15, through the union that holds it). */
static inline uint32_t rx__head_flags(const void *w) {
  return w != NULL ? ((const struct rx__watcher *)w)->flags : 0;
}
static inline int rx__head_active(const void *w) {
  return (rx__head_flags(w) & RX__F_ACTIVE) != 0;
}
static inline int rx__head_pending(const void *w) {
  return (rx__head_flags(w) & RX__F_PENDING) != 0;
}
/* A timer's state bits, or 0 for NULL. */
static inline unsigned rx__timer_bits(const void *w) {
  return w != NULL
             ? (unsigned)(((const rx_timer *)w)->_ent.word >> RX__TW_AT_BITS)
             : 0;
}
static inline int rx__timer_active(const void *w) {
  return (rx__timer_bits(w) & RX__T_ACTIVE) != 0;
}
static inline int rx__head_priority(const void *w) {
  if (w == NULL)
    return 0;
  return (int)((rx__head_flags(w) & RX__F_PRIO) >> RX__F_PRIO_SHIFT) +
         RX_MINPRI;
}
static inline int rx__timer_priority(const void *w) {
  if (w == NULL)
    return 0;
  return (int)(rx__timer_bits(w) & RX__T_PRIO) + RX_MINPRI;
}
static inline int rx__timer_pending(const void *w) {
  return (rx__timer_bits(w) & RX__T_PENDING) != 0;
}

#ifndef __cplusplus
#define rx_priority(w) \
  _Generic((w), rx_timer *: rx__timer_priority,                    \
           const rx_timer *: rx__timer_priority,                   \
           default: rx__head_priority)(w)
#define rx_clear_pending(loop, w)            \
  _Generic((w), rx_timer *                   \
           : rx_clear_pending_timer, default \
           : rx_clear_pending_head)(loop, w)
#define rx_feed_event(loop, w, revents)   \
  _Generic((w), rx_timer *                \
           : rx_feed_event_timer, default \
           : rx_feed_event_head)(loop, w, revents)
#define rx_is_active(w) \
  _Generic((w), rx_timer *: rx__timer_active,                      \
           const rx_timer *: rx__timer_active,                     \
           default: rx__head_active)(w)
#define rx_is_pending(w) \
  _Generic((w), rx_timer *: rx__timer_pending,                     \
           const rx_timer *: rx__timer_pending,                    \
           default: rx__head_pending)(w)
#endif

/* Time arguments checked at compile time, in C: each function above that
 * takes a time in ns is also a macro of the same name that refuses a
 * floating-point argument (the _Static_assert's message says what to write)
 * and passes any integer expression on unchanged. It costs nothing at run
 * time: the assertion sits in a struct that is only measured (sizeof), and
 * _Generic does not evaluate its operand, so each argument is evaluated
 * once, as by the call itself. The functions are still there: a pointer to
 * rx_timer_init, or (rx_timer_init)(...), bypasses the check, which is how
 * the library defines them. RX_NO_TIME_GUARD, defined before rx.h is
 * included, leaves the macros out. C++ has no _Generic: no check there. */
#if !defined(__cplusplus) && !defined(RX_NO_TIME_GUARD)
#define RX__NS(t)                                                             \
  ((void)sizeof(struct {                                                      \
     _Static_assert(                                                          \
         !_Generic((t), float : 1, double : 1, long double : 1, default : 0), \
         "rx times are int64_t nanoseconds: for 5.5 s write "                 \
         "RX_MSEC(5500), not 5.5; cast a computed value "                     \
         "with (int64_t)");                                                   \
     int rx__ns_checked;                                                      \
   }),                                                                        \
   (t))
#define rx_clock_advance(loop, ns) (rx_clock_advance)(loop, RX__NS(ns))
#define rx_set_io_collect_interval(loop, io) \
  (rx_set_io_collect_interval)(loop, RX__NS(io))
#define rx_set_timeout_collect_interval(loop, timeout) \
  (rx_set_timeout_collect_interval)(loop, RX__NS(timeout))
#define rx_set_busy_poll(loop, max) (rx_set_busy_poll)(loop, RX__NS(max))
#define rx_timer_init(w, cb, after, repeat) \
  (rx_timer_init)(w, cb, RX__NS(after), RX__NS(repeat))
#define rx_timer_set(w, after, repeat) \
  (rx_timer_set)(w, RX__NS(after), RX__NS(repeat))
#define rx_periodic_init(w, cb, offset, interval, reschedule) \
  (rx_periodic_init)(w, cb, RX__NS(offset), RX__NS(interval), reschedule)
#define rx_stat_init(w, cb, path, interval) \
  (rx_stat_init)(w, cb, path, RX__NS(interval))
#endif

#ifdef __cplusplus
}

/* C++ has no _Generic: overloads instead. */
static inline int rx_is_active(const rx_io *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_idle *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_prepare *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_check *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_async *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_timer *w) {
  return rx__timer_active(w);
}
static inline int rx_is_pending(const rx_io *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_idle *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_prepare *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_check *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_async *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_timer *w) {
  return rx__timer_pending(w);
}
static inline int rx_is_active(const rx_cleanup *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_signal *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_embed *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_periodic *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_fork *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_child *w) {
  return rx__head_active(w);
}
static inline int rx_is_active(const rx_stat *w) {
  return rx__head_active(w);
}
static inline int rx_is_pending(const rx_stat *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_child *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_fork *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_periodic *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_embed *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_signal *w) {
  return rx__head_pending(w);
}
static inline int rx_is_pending(const rx_cleanup *w) {
  return rx__head_pending(w);
}
static inline int rx_priority(const rx_timer *w) {
  return rx__timer_priority(w);
}
template <typename W> static inline int rx_priority(const W *w) {
  return rx__head_priority(w);
}
static inline int rx_clear_pending(rx_loop *loop, rx_timer *w) {
  return rx_clear_pending_timer(loop, w);
}
template <typename W> static inline int rx_clear_pending(rx_loop *loop, W *w) {
  return rx_clear_pending_head(loop, w);
}
static inline int rx_feed_event(rx_loop *loop, rx_timer *w, int revents) {
  return rx_feed_event_timer(loop, w, revents);
}
template <typename W>
static inline int rx_feed_event(rx_loop *loop, W *w, int revents) {
  return rx_feed_event_head(loop, w, revents);
}
#endif

#endif /* RX_H */
