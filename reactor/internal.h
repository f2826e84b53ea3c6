/*
 * internal.h - what the loop core and the backends share: the loop struct,
 * the backend ops table and the rx__ helpers both sides call.
 *
 * A backend allocates its own state with the loop as its first member
 * (struct rx_uring { struct rx_loop loop; ... }), so that converting between
 * the two is a cast and no `void *` state pointer is needed. The loop calls
 * the backend only through `loop->ops`, never by name; the backend calls
 * back only the rx__ functions declared here. Of the loop's fields, a
 * backend touches only the fd table (fds, nfds, as struct rx__fd says),
 * the change list (changes, nchanges: it empties it, and io_uring appends
 * to it), wakefd, postfork (in destroy) and its own metrics.
 */
#ifndef RX_INTERNAL_H
#define RX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "list.h"
#include "mpsc.h"
#include "rx.h"
#include "timerwheel.h"

#define RX__NPRI (RX_MAXPRI - RX_MINPRI + 1)
/* rx_loop_options.ring_entries at most, on either backend: io_uring's
 * IORING_MAX_ENTRIES. */
#define RX__MAX_RING_ENTRIES 32768u

/* Watcher kinds, stored in the head's flags (timers need none). */
enum rx__kind {
  RX__KIND_IO = 1,
  RX__KIND_IDLE,
  RX__KIND_PREPARE,
  RX__KIND_CHECK,
  RX__KIND_ASYNC,
  RX__KIND_CLEANUP,
  RX__KIND_SIGNAL,
  RX__KIND_EMBED,
  RX__KIND_PERIODIC,
  RX__KIND_FORK,
  RX__KIND_CHILD,
  RX__KIND_STAT,
};

#define RX__NSIG 65 /* signal numbers 1..64 */

/* What the loop knows about one fd, and which side writes each field:
 *   head, want  the core (io.c): the watchers and the union of their
 *               interest; a backend only reads them.
 *   flags       RX__FD_*, below: the core sets CHANGED (appending the fd to
 *               loop->changes) and RENEW; the backend clears both when it
 *               applies the change, and io_uring sets CHANGED itself (and
 *               appends) to re-arm a one-shot poll.
 *   gen, kernel the backend's record of what the kernel has been told.
 *               rx__fds_renew_all(), which a backend calls, zeroes `kernel`.
 *   backend     the backend's own bits (RX__FD_URING_*, RX__FD_EPOLL_*); the
 *               core never reads or writes them. */
struct rx__fd {
  rx_io *head;     /* watchers of this fd, most recently started first */
  uint32_t gen;    /* generation of the kernel registration, in its tag
                      (rx__tag_poll()); a new one on each io_uring poll and
                      each renewed or dropped epoll registration, so that
                      stale events are dropped */
  uint8_t want;    /* union of the watchers' RX_READ|RX_WRITE|RX_ET */
  uint8_t kernel;  /* interest currently registered with the kernel */
  uint8_t flags;   /* RX__FD_* */
  uint8_t backend; /* RX__FD_URING_* or RX__FD_EPOLL_*, the backend's */
};

/* `flags`: the core's. */
enum {
  RX__FD_CHANGED = 0x01, /* on loop->changes, to be flushed before waiting */
  RX__FD_RENEW = 0x02,   /* a freshly set watcher (rx_io_init, rx_io_set)
                            started since the last flush: the number may
                            name another file, so the kernel registration
                            is renewed, never assumed */
};

/* `backend`: each backend's own. */
enum {
  RX__FD_URING_ARMED = 0x01,  /* io_uring: a poll request is in flight */
  RX__FD_EPOLL_ALWAYS = 0x01, /* epoll: a file epoll refuses (EPERM: a
                                 regular file), emulated as always ready */
  RX__FD_EPOLL_LISTED = 0x02, /* epoll: on the backend's always-ready list */
};

/* Tags: the 64 bits a backend hands the kernel with a request and gets back
 * with its event (io_uring's user_data, epoll's data.u64). One scheme for
 * both backends, told apart by the low bit and the size:
 *   odd          a poll of an fd: bit 0 set, the fd (a non-negative int, 31
 *                bits) in bits 1..31, its generation (32 bits) in bits
 *                32..63; an event whose generation is not the fd's current
 *                one is stale.
 *   even, >= RX__TAG_OP_MIN
 *                a pointer to an rx_op (aligned to 8), or on io_uring that
 *                pointer + 4: the poll an op waits behind (io_uring.c).
 *   even, below RX__TAG_OP_MIN
 *                internal requests, RX__TAG_* below; no pointer is that
 *                small (the first page is never mapped). */
enum rx__tag_kind { RX__TAG_KIND_POLL, RX__TAG_KIND_OP, RX__TAG_KIND_INTERNAL };

#define RX__TAG_OP_MIN 4096u
/* io_uring: a request whose completion is of no interest (POLL_REMOVE). */
#define RX__TAG_IGNORE UINT64_C(2)
/* The doorbell: io_uring's READ of loop->wakefd, epoll's registration. */
#define RX__TAG_WAKEFD UINT64_C(4)
/* io_uring: a MSG_RING from another loop. */
#define RX__TAG_MESSAGE UINT64_C(6)
/* io_uring: an ASYNC_CANCEL of an op; -ENOENT sets loop->ops_recancel. */
#define RX__TAG_CANCEL UINT64_C(8)

/* 32 bits of generation, 31 of fd and the tag bit fill the 64. */
_Static_assert(sizeof(int) == 4, "an fd is 31 bits in a poll tag");

static inline uint64_t rx__tag_poll(int fd, uint32_t gen) {
  return (uint64_t)gen << 32 | (uint64_t)(uint32_t)fd << 1 | 1;
}

static inline enum rx__tag_kind rx__tag_kind(uint64_t tag) {
  if (tag & 1)
    return RX__TAG_KIND_POLL;
  return tag >= RX__TAG_OP_MIN ? RX__TAG_KIND_OP : RX__TAG_KIND_INTERNAL;
}

/* The fd and generation of a poll tag. */
static inline int rx__tag_fd(uint64_t tag) {
  return (int)((uint32_t)tag >> 1);
}

static inline uint32_t rx__tag_gen(uint64_t tag) {
  return (uint32_t)(tag >> 32);
}

static inline uint64_t rx__tag_op(const rx_op *op) {
  return (uint64_t)(uintptr_t)op;
}

static inline rx_op *rx__tag_to_op(uint64_t tag) {
  return (rx_op *)(uintptr_t)tag;
}

/* Completion operations (op.c). An op's kind, in rx_op._kind. */
enum rx__op_kind {
  RX__OP_NONE,
  RX__OP_READ,
  RX__OP_WRITE,
  RX__OP_READV,
  RX__OP_WRITEV,
  RX__OP_RECV,
  RX__OP_SEND,
  RX__OP_RECVMSG,
  RX__OP_SENDMSG,
  RX__OP_ACCEPT,
  RX__OP_ACCEPT_MULTI,
  RX__OP_CONNECT,
  RX__OP_SHUTDOWN,
  RX__OP_POLL,
  RX__OP_TIMEOUT,
  RX__OP_NOP,
  RX__OP_CLOSE,
  RX__OP_RECV_POOL,
  RX__OP_RECV_MULTI,
  RX__OP_SPLICE,
  RX__OP_NKINDS
};

/* A splice's two fds (op.c; its _fd is the one it is queued on). */
int rx__op_splice_fds(const rx_op *op, int *fd_in, int *fd_out);

/* rx_op._state: where the op is. */
enum {
  RX__OPS_IDLE = 0, /* the caller's */
  RX__OPS_QUEUED,   /* behind another op of its fd and direction */
  RX__OPS_ARMED,    /* with the kernel (io_uring), or waiting for
                       readiness (emulated); on its fd's queue */
  RX__OPS_DONE,     /* on loop->ops_done, its result in _res */
  RX__OPS_CLOSING,  /* a close op waiting for its fd's ops to retire */
  RX__OPS_PARKED,   /* a pool op waiting for a buffer, on pool->parked
                       and still first in its fd's read queue */
};

/* rx_op._oflags. */
enum {
  RX__OPF_CANCEL = 0x1,      /* rx_op_cancel(), a close or a manual-clock
                                deadline asked for its end */
  RX__OPF_KERNEL = 0x2,      /* with the backend (not emulated) */
  RX__OPF_DEADLINE = 0x4,    /* this submission has a deadline */
  RX__OPF_FORKED = 0x10,     /* under way at a fork: ends in the child */
  RX__OPF_POLLFIRST = 0x20,  /* io_uring: submit behind a poll of its fd */
  RX__OPF_CHAINED = 0x40,    /* io_uring: it was, the poll tagged op + 4 */
  RX__OPF_CLOSED = 0x80,     /* a close the kernel made, its callback due */
  RX__OPF_OTHERWAIT = 0x100, /* an emulated splice waiting for its other
                                fd (op.c), counted in its sp_rd / sp_wr */
  RX__OPF_POLLOTHER = 0x200, /* io_uring: a splice's poll first (POLLFIRST)
                                is of its other fd */
  RX__OPF_SPLICE_W = 0x400,  /* a splice queued on its fd_out's writes */
  RX__OPF_TIMED = 0x8,       /* the deadline is in loop->op_wheel (_t.ent);
                                with the kernel, it is in _t.k */
};

/* A buffer pool (op.c): `count` buffers of `size` bytes in one block. The
 * kernel picks from a provided buffer ring (bgid >= 0, the backend's), or
 * the emulation from the `free` stack. `held` marks the buffers a caller
 * holds. */
struct rx_pool {
  struct rx__link link; /* on loop->pools */
  rx_loop *loop;
  char *mem;
  unsigned count, size;
  int bgid;       /* the kernel's buffer group, or -1: emulated */
  void *ring;     /* the backend's ring memory */
  uint16_t *free; /* emulation: ids free */
  unsigned nfree;
  uint8_t *held;          /* per id: the caller holds it */
  struct rx__link parked; /* ops waiting for a buffer */
  unsigned users;         /* ops submitted with the pool */
  uint32_t puts;          /* buffers given back so far */
};

/* An fd's ops (op.c), in loop->opfds: three FIFO queues, the head of
 * each direction the one op in flight. */
enum { RX__Q_READ, RX__Q_WRITE, RX__Q_FREE, RX__NQ };
struct rx__opfd {
  struct rx__link q[RX__NQ];
  rx_op *closer;    /* the close op waiting for the others */
  uint32_t nops;    /* ops on the queues */
  uint8_t want;     /* emulation: the readiness the queue heads need */
  uint8_t ready;    /* emulation: readiness seen, not yet acted on */
  uint8_t listed;   /* emulation: on loop->ops_ready */
  uint32_t sp_rd;   /* emulation: splices waiting to read this fd ... */
  uint32_t sp_wr;   /* ... or to write it, as their other fd (op.c) */
  uint32_t spliced; /* splices under way whose other fd this is */
};

void rx__op_complete(rx_loop *loop, rx_op *op, int res, unsigned cflags);
/* The kind called `name` (len bytes: "recv", "accept_multishot"), or -1. */
int rx__op_kind_named(const char *name, size_t len);
void rx__ops_ready(rx_loop *loop, int fd, int revents);
void rx__ops_run(rx_loop *loop);
uint8_t rx__ops_want(const rx_loop *loop, int fd);
void rx__ops_free(rx_loop *loop);
void rx__ops_expire(rx_loop *loop);
void rx__ops_forked(rx_loop *loop);
int rx__ops_loop_init(rx_loop *loop);

struct rx_backend_ops {
  const char *name;
  /* Allocates backend state with a zeroed struct rx_loop as its first
   * member and sets up the kernel side. Returns 0 or -errno. */
  int (*create)(rx_loop **loop, const struct rx_loop_options *opts);
  /* Releases the kernel side and frees the state `create` allocated. */
  void (*destroy)(rx_loop *loop);
  /* Waits for events at most `timeout` ns (-1: no limit, 0: never block),
   * after applying the fd changes in loop->changes. Reports readiness with
   * rx__io_event() and dead fds with rx__io_error(); one reported while
   * applying the changes makes the wait non-blocking (the core saw nothing
   * pending only before the call). Returns 0 or -errno; an
   * interrupted wait (EINTR) is 0. A fired doorbell (loop->wakefd, or a
   * message from another ring) is reported with rx__doorbell(). */
  int (*wait)(rx_loop *loop, int64_t timeout);
  /* Sends what the backend has queued for the kernel without waiting, so
   * that nothing queued (a wake-up for another loop, a poll removal) is
   * held back while the loop is not run. NULL when nothing is ever queued. */
  void (*flush)(rx_loop *loop);
  /* rx_io_close(): `fd` has just lost its watchers; drop what the kernel
   * holds for it now instead of at the next flush (io_uring: the poll,
   * which keeps the file open). */
  void (*release)(rx_loop *loop, int fd);
  /* The pollable fd that is readable while the loop has work (the epoll
   * fd, the ring fd): for rx_loop_fd(). */
  int (*pollfd)(rx_loop *loop);
  /* In a forked child: drop the kernel state inherited from the parent
   * without touching it (closing its fds first, so that a child with no fd
   * to spare gets their numbers back), make a new one, and queue every
   * wanted fd and the doorbell (loop->wakefd, already new) again. Returns
   * 0 or -errno (-EMFILE); after a failure the backend holds no kernel
   * state, and while loop->postfork has RX__FORK_KERNEL the loop calls it
   * for nothing but this op again and destroy. */
  int (*fork)(rx_loop *loop);
  /* Starts watching loop->wakefd; called once, after create (the eventfd
   * is made after the backend, crossthread.c). */
  int (*doorbell)(rx_loop *loop);
  /* Wakes `to` from the thread of `from`, both on this backend, without
   * touching `to`'s eventfd; -ENOTSUP where the kernel cannot. NULL if the
   * backend has no such path. */
  int (*wake_from)(rx_loop *from, rx_loop *to);
  /* Operations (a read, a write, an accept) done by the kernel rather than
   * on readiness (op.c). `submit` queues `op` for the kernel, tagged
   * rx__tag_op(op); its completions go to rx__op_complete(). `cancel` asks
   * for the end of a submitted op; the op still completes through
   * rx__op_complete() (a close is an op of kind RX__OP_CLOSE). `probe` says
   * whether the backend does ops of kind RX__OP_* itself. NULL submit: the core
   * emulates every op on readiness (a poll of its fd, then the syscall). */
  int (*submit)(rx_loop *loop, rx_op *op);
  void (*cancel)(rx_loop *loop, rx_op *op);
  bool (*probe)(rx_loop *loop, unsigned kind);
  /* Buffer pools: `pool_new` gives the pool a buffer ring the kernel picks
   * from (setting pool->bgid), 0 or -errno (the core then emulates it);
   * `pool_put` hands buffer `id` back to that ring; `pool_free` takes the
   * ring away. NULL: pools are emulated. */
  int (*pool_new)(rx_loop *loop, rx_pool *pool);
  void (*pool_put)(rx_loop *loop, rx_pool *pool, unsigned id);
  void (*pool_free)(rx_loop *loop, rx_pool *pool);
};

/* A backend's create: the kernel refused the memory it asked for (locked
 * memory for io_uring rings), told apart from a failed allocation of rx's
 * own, which stays -ENOMEM. Outside the errno range, never returned to the
 * caller: rx_loop_new() falls back, or gives -ENOMEM for a forced backend. */
#define RX__EKERNMEM (-4096 - 1)

/* Defined in a ThreadSanitizer build (gcc says so with a macro, clang with
 * __has_feature): TSan cannot see membarrier(), so async.c keeps every
 * send's atomic there, and the tests expect that. */
#if defined(__SANITIZE_THREAD__)
#define RX__HAS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RX__HAS_TSAN 1
#endif
#endif

extern const struct rx_backend_ops rx__uring_ops;
extern const struct rx_backend_ops rx__epoll_ops;

/* Counters behind rx_loop_metrics(). A backend only adds to its four
 * (enters, completions, overflows, rearms) and reads none; the core writes
 * the rest. */
struct rx__metrics {
  uint64_t dispatched;
  uint64_t enters;      /* backend: syscalls into the kernel's event side */
  uint64_t completions; /* backend: events reaped */
  uint64_t overflows;   /* backend: io_uring CQ overflow flushes */
  uint64_t rearms;      /* backend: registrations and polls (re)made */
  uint64_t wakeups;
  uint64_t cross_events;
  int64_t idle_ns;
  int64_t poll_ns;       /* time spent busy-polling for cross-thread work */
  uint64_t poll_hits;    /* busy-polls that found work */
  uint64_t async_fences; /* membarrier() calls for light rx_async sends */
};

struct rx_loop {
  const struct rx_backend_ops *ops;
  const char *reason; /* why this backend */
  void *data;
  unsigned flags;                /* RX_LOOP_* given to rx_loop_new() */
  void (*invoke)(rx_loop *loop); /* rx_set_invoke_pending() */
  struct rx__metrics m;
  int64_t suspended_at;    /* rx_suspend() time, or -1 */
  int64_t io_collect;      /* rx_set_io_collect_interval() */
  int64_t timeout_collect; /* rx_set_timeout_collect_interval() */
  int64_t poll_max;        /* rx_set_busy_poll(): the most a poll may last */
  int64_t poll_window;     /* the next poll's length, adapted (loop.c) */
  struct rx__link cleanups;
  struct rx__link forks;  /* rx_fork watchers */
  struct rx__link embeds; /* rx_embed watchers (embed.c) */
  struct rx__link stats;  /* rx_stat watchers (stat.c) */
  int inotifyfd;          /* -1 until a stat watcher needs it */
  rx_io inotifywatch;
  struct rx__link children; /* rx_child watchers (child.c) */
  int sigchld_users;        /* child watchers that need SIGCHLD */
  rx_signal sigchld;
  unsigned postfork; /* RX__FORK_*: what a fork left to do */
  unsigned fork_gen; /* RX_LOOP_FORKCHECK: forks seen so far */

  int64_t now; /* cached CLOCK_MONOTONIC ns */
  uint64_t iteration;
  int depth;     /* nested rx_run() calls */
  int freeing;   /* rx_loop_free() has begun */
  int break_how; /* RX_BREAK_* requested */
  int activecnt; /* active watchers plus rx_ref() minus rx_unref() */
  unsigned pendingcnt;
  int pendingpri; /* highest priority that may have pending events */

  /* Pending callbacks, FIFO per priority; index 0 is RX_MINPRI. Timers keep
   * their own queues because their link doubles as the wheel link. */
  struct rx__link pending[RX__NPRI];
  struct rx__link timers_pending[RX__NPRI];

  struct rx__link idles[RX__NPRI];
  int idlecnt;
  struct rx__link prepares;
  struct rx__link checks;

  struct rx__fd *fds; /* indexed by fd */
  int nfds;           /* entries in fds */
  int fdlimit;        /* RLIMIT_NOFILE when the loop was made */
  int *changes;       /* fds with RX__FD_CHANGED set */
  int nchanges;

  struct rx__tw wheel;

  /* Cross-thread state (crossthread.c, async.c). Fields written by other
   * threads are only touched with __atomic builtins, each naming its
   * order. */
  /* Grouped by writer, a cache line apart (see mpsc.h), so that a producer
   * posting in a loop and the loop draining do not steal each other's
   * lines: the loop's own fields above; then what producers write on
   * every post (`posting` and the queue head) with `closing`, which they
   * read on every post and which changes once, on one line (a counter on
   * the line of the consumer's tail halved the post rate); the queue's
   * tail; `async_pending`, written by both sides; then what the loop
   * writes and producers only read (`sleeping`, reset `doorbell_rung`). */
  char _pad0[RX__CACHE_LINE];
  int posting;           /* atomic: rx_loop_post() calls under way */
  int closing;           /* atomic: rx_loop_free() has begun */
  struct rx__mpsc posts; /* rx_loop_post() tasks; head | pad | tail, stub */
  int async_pending;     /* atomic: an rx_async_send() since the last scan */
  char _pad1[RX__CACHE_LINE];
  int sleeping;           /* atomic: the loop may block in the backend */
  int doorbell_rung;      /* atomic: the doorbell was rung, not yet heard */
  int wakefd;             /* eventfd: the doorbell */
  struct rx__link asyncs; /* active async watchers */
  rx_signal *signals[RX__NSIG]; /* watchers per signal (signal.c) */
  /* Periodics (periodic.c): the wall clock, read with `now`, and a timerfd
   * that turns readable when the wall clock is set. */
  int64_t wallnow;
  struct rx__link periodics;
  int nperiodics;
  int clockfd; /* -1 until the first periodic starts */
  rx_io clockwatch;
  int nsignals; /* signal numbers this loop watches */

  /* Completion operations (op.c). */
  struct rx__opfd *opfds; /* indexed by fd, grown on demand */
  int nopfds;
  struct rx__link ops_done; /* ops whose final callback is due */
  struct rx__link ops_nofd; /* submitted ops without an fd (nop, timeout) */
  struct rx__link pools;    /* rx_pool_new(): freed with the loop */
  int *ops_ready;           /* emulation: fds with readiness to act on */
  int nops_ready;
  unsigned ops_due;       /* ops_done entries plus ops_ready fds: no blocking */
  unsigned ops_inflight;  /* submitted ops, until their final callback */
  unsigned ops_kernel;    /* of which the backend holds */
  unsigned ops_timed;     /* deadlines in op_wheel */
  bool ops_recancel;      /* a cancel found no request: ask again (op.c) */
  unsigned ops_splices;   /* submitted splices (one fd is no queue's) */
  struct rx__tw op_wheel; /* deadlines of ops not with the kernel */
  char ops_support[256];  /* rx_op_support() */
};

/* What a fork leaves a loop to do in the child (loop.c, after_fork()), in
 * this order; each bit is cleared once its step succeeded, so that a step
 * that failed (no fd free) is tried again at the next iteration. */
enum {
  RX__FORK_WAKEFD = 0x1, /* loop->wakefd is still the parent's doorbell */
  RX__FORK_KERNEL = 0x2, /* the backend's kernel state is the parent's, or
                            none: never waited on, flushed or changed */
  RX__FORK_NOTIFY = 0x4, /* the fork watchers are still to be invoked */
};

/* The head of a watcher `w` of any kind but rx_timer, or NULL for NULL. */
#define rx__w(w) ((w) != NULL ? &(w)->_w : NULL)
/* What an active watcher adds to loop->activecnt: 1, or 0 for one that
 * keeps no loop running (RX__F_UNREF). */
static inline int rx__counted(const struct rx__watcher *w) {
  return (w->flags & RX__F_UNREF) == 0;
}
/* Marks `w` (initialised, not active) as one that keeps no loop running:
 * rx's internal watchers, in place of rx_unref() after the start and
 * rx_ref() before the stop. */
static inline void rx__unref_watcher(struct rx__watcher *w) {
  w->flags |= RX__F_UNREF;
}
/* The head of the watcher that holds `link` at `offset`: container_of,
 * the head being every such watcher's first member. */
static inline struct rx__watcher *rx__head_at(struct rx__link *link,
                                              size_t offset) {
  return (struct rx__watcher *)(void *)((char *)link - offset);
}
/* The watcher of type `type` whose head is `h`. */
#define rx__of_head(h, type) rx__container_of(h, type, _w)

/* Pending queues (loop.c). */
void rx__feed(rx_loop *loop, struct rx__watcher *w, int revents);
/* Drops a pending event: 0, or -EBUSY (and nothing done) when `w`, not
 * active, was fed to another loop. For an active `w`, the caller has checked
 * that it is active on `loop`. */
int rx__clear_pending(rx_loop *loop, struct rx__watcher *w);
/* -EBUSY if `w`, not active, is pending on another loop than `loop`. */
int rx__pending_elsewhere(const rx_loop *loop, const struct rx__watcher *w);

/* Heads, watchers kept on a loop list, and the head's priority
 * (watcher.c). */
void rx__head_init(struct rx__watcher *w, enum rx__kind kind);
bool rx__owned_by(const rx_loop *loop, const struct rx__link *node);
int rx__listed_start(rx_loop *loop, struct rx__watcher *w,
                     struct rx__link *active, struct rx__link *list);
int rx__listed_stop(rx_loop *loop, struct rx__watcher *w,
                    struct rx__link *active);
int rx__head_set_priority(struct rx__watcher *w, int priority);

/* Timers (timer.c). */
void rx__timer_expire(rx_loop *loop);
void rx__timer_invoke(rx_loop *loop, struct rx__link *node);
void rx__timer_stop_all(rx_loop *loop);
void rx__timer_shift(rx_loop *loop, int64_t delta);

/* Cross-thread (crossthread.c). rx__cross_ring() rings the doorbell unless
 * a producer already did since the loop last drained it. */
int rx__cross_init(rx_loop *loop);
void rx__cross_free(rx_loop *loop);
bool rx__cross_may_sleep(rx_loop *loop);
bool rx__cross_poll(rx_loop *loop, int64_t limit);
void rx__cross_awake(rx_loop *loop);
void rx__cross_drain(rx_loop *loop);
void rx__doorbell(rx_loop *loop);
void rx__cross_notify(rx_loop *loop);
void rx__cross_ring(rx_loop *loop);
int rx__cross_fork(rx_loop *loop);

/* Async watchers (async.c): the scan that feeds sent watchers, and the
 * loop's share. */
void rx__async_scan(rx_loop *loop);
int rx__async_loop_init(rx_loop *loop);
void rx__async_free(rx_loop *loop);

/* Forks (loop.c): true while a fork has left the kernel state to rebuild,
 * after noticing one on a RX_LOOP_FORKCHECK loop. */
bool rx__fork_pending(rx_loop *loop);

/* Each kind's share of the loop, set up by rx_loop_new() and torn down by
 * rx_loop_free() through loop.c's table of kinds: init makes it empty (0,
 * or -errno), free stops every watcher of the kind and releases what the
 * kind holds. */
int rx__idle_loop_init(rx_loop *loop);
void rx__idle_free(rx_loop *loop);
int rx__prepare_loop_init(rx_loop *loop);
void rx__prepare_free(rx_loop *loop);
int rx__check_loop_init(rx_loop *loop);
void rx__check_free(rx_loop *loop);
int rx__cleanup_loop_init(rx_loop *loop);
void rx__cleanup_free(rx_loop *loop);
int rx__fork_loop_init(rx_loop *loop);
void rx__fork_free(rx_loop *loop);
int rx__embed_loop_init(rx_loop *loop);
void rx__embed_free(rx_loop *loop);
int rx__child_loop_init(rx_loop *loop);
void rx__child_free(rx_loop *loop);
int rx__stat_loop_init(rx_loop *loop);
void rx__stat_free(rx_loop *loop);
int rx__periodic_loop_init(rx_loop *loop);
void rx__periodic_free(rx_loop *loop);
void rx__io_free(rx_loop *loop);

/* Periodics (periodic.c). */
void rx__periodic_expire(rx_loop *loop);
int64_t rx__periodic_timeout(rx_loop *loop);
void rx__periodic_resume(rx_loop *loop);

/* Signals (signal.c). */
void rx__signal_scan(rx_loop *loop);
void rx__signal_stop_all(rx_loop *loop);

/* Allocation through the hook installed with rx_set_allocator(). */
void *rx__alloc(size_t size);
void *rx__realloc(void *ptr, size_t old_size, size_t new_size);
void rx__free(void *ptr, size_t size);

/* Called by a backend while waiting. */
void rx__io_event(rx_loop *loop, int fd, int revents);
void rx__io_error(rx_loop *loop, int fd);
void rx__fds_renew_all(rx_loop *loop);
/* io.c, for op.c: the fd's entry exists (0 or -errno); the fd's interest
 * is the watchers' and its emulated ops' again; its watchers stop and the
 * kernel lets go of it (rx_io_close() but the close). */
int rx__fd_reserve(rx_loop *loop, int fd);
void rx__fd_sync(rx_loop *loop, int fd);
void rx__io_release(rx_loop *loop, int fd);

/* The fd entry of a watched fd, or NULL if fd is outside the table. */
static inline struct rx__fd *rx__fd_get(rx_loop *loop, int fd) {
  return fd >= 0 && fd < loop->nfds ? &loop->fds[fd] : NULL;
}

int64_t rx__clock_now(void);

/* A spin-wait hint to the CPU (and to the other hyperthread). */
static inline void rx__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif /* RX_INTERNAL_H */
