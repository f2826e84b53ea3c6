/*
 * io_uring.c - the io_uring backend (liburing).
 *
 * Kernel notes:
 *  a) Readiness is IORING_OP_POLL_ADD. A multishot poll (5.13) posts a
 *     completion per wake-up, which is edge-triggered behaviour, so it is
 *     used only for RX_ET watchers. Level-triggered watchers get a one-shot
 *     poll that is re-armed in the next submission batch: armed on a fd that
 *     is still ready, it completes at once, which is exactly level
 *     triggering, and the re-arm rides along with the wait's own
 *     io_uring_enter(), so it costs no syscall.
 *  b) A poll request holds a reference to the file, not to the fd number:
 *     closing the fd neither cancels it nor releases the file (a socket stays
 *     open, its peer sees no FIN). So a poll is removed (POLL_REMOVE) when
 *     its fd has no watchers at the next flush, and renewed (removed, then
 *     added with a new generation) when a freshly set watcher starts
 *     (RX__FD_RENEW, io.c): the number may name a new file by then. Removals
 *     and adds are queued SQEs, sent with the next wait, or when rx_run()
 *     returns (uring_flush()), never a syscall of their own; only
 *     rx_io_close() submits its removal at once, so that the file is
 *     released before it closes the fd. A plain stop and start between two
 *     waits queues nothing.
 *  c) Stale completions are impossible by construction: a poll's user_data
 *     is its tag, rx__tag_poll(fd, generation) (internal.h, which says how
 *     poll tags, op pointers and internal values are told apart), and every
 *     POLL_ADD takes a new generation, so a completion of a removed or
 *     superseded poll, or of an fd since reused, does not match the fd's
 *     current generation and is dropped. Internal SQEs (POLL_REMOVE,
 *     MSG_RING) carry RX__TAG_IGNORE and, where the kernel has
 *     IOSQE_CQE_SKIP_SUCCESS (5.17), post nothing on success.
 *  d) The wait's timeout goes in io_uring_enter()'s extended argument
 *     (IORING_FEAT_EXT_ARG, 5.11): no timeout SQE per iteration. Kernels
 *     without it are refused with -ENOSYS, so the loop falls back to epoll.
 *  e) Setup flags: SINGLE_ISSUER (6.0) because only the loop's thread
 *     submits; COOP_TASKRUN (5.19) so that a completion does not interrupt
 *     the loop's thread with an IPI while it runs: the kernel posts it at
 *     the thread's next kernel entry (a recv or send in a callback, or the
 *     next io_uring_enter), or wakes the thread if it sleeps. It does wake
 *     any interruptible sleep of that thread, a nap included: rx-load's
 *     50 us collect nanosleep, against nginx, was cut short 1.8 times per
 *     nap (strace), each time a wake-up paid on the server's CPU. A loop
 *     made with RX_LOOP_DEFER gets DEFER_TASKRUN (6.1) instead: such a
 *     completion is queued on the ring and run only when the thread enters
 *     with GETEVENTS; the peer that made it ready only adds it to a list,
 *     and wakes the loop only if it waits in io_uring_enter(). That took
 *     rx-load's CPU per request from 6.9 to 3.9 us (docs/benchmarks.md).
 *     Not the default: since Linux 6.13 one enter runs at most 20 queued
 *     completions (the kernel's IO_LOCAL_TW_DEFAULT_MAX, "io_uring: limit
 *     local tw done") and flags the rest with IORING_SQ_TASKRUN, so a wait
 *     enters again while the flag is up (run_deferred()), and a batch of
 *     100 ready polls that the loop's own callbacks made takes five enters
 *     (pipe_chain at 9,000 pairs: 10,288 enters against 2,071).
 *     SINGLE_ISSUER binds the ring to one task: the one that creates it,
 *     unless the ring starts disabled (R_DISABLED, 5.10), in which case the
 *     one that enables it. The ring is enabled by the first wait, so a loop
 *     made on one thread and run on another works; running it later from
 *     yet another thread fails with -EEXIST, which rx_run() returns. Older
 *     kernels refuse unknown flags with EINVAL, so setup falls back to the
 *     same without DEFER_TASKRUN, then to COOP_TASKRUN|TASKRUN_FLAG alone
 *     (5.19), then to no flags. SQPOLL is never used: it burns a core.
 *  f) A non-blocking iteration with nothing to submit reads the completion
 *     ring without entering the kernel. With TASKRUN_FLAG (given with
 *     DEFER_TASKRUN or COOP_TASKRUN), the kernel sets IORING_SQ_TASKRUN
 *     when completions are waiting to be run, and IORING_SQ_CQ_OVERFLOW
 *     when some did not fit the ring; either flag makes the iteration
 *     enter with GETEVENTS. No ready event is missed, and an idle
 *     iteration costs no syscall.
 *  g) The CQ ring is at least four times the SQ ring (DEFAULT_CQ_ENTRIES
 *     for the default ring). Completions that still do not
 *     fit wait in the kernel's overflow list (IORING_FEAT_NODROP, 5.5) and
 *     are flushed by the next GETEVENTS: none is lost.
 *  h) A full SQ ring is submitted on the spot and the SQE retried.
 *  i) The doorbell is a READ on the loop's (blocking) eventfd, kept in
 *     flight: its completion both wakes the wait and empties the counter, so
 *     a wake-up costs the loop no read() syscall. Between two io_uring loops,
 *     IORING_OP_MSG_RING (5.18) posts a completion straight into the other
 *     ring instead; it is submitted with the sender's next batch. Support is
 *     probed once with IORING_REGISTER_PROBE.
 *  j) rx_loop_fd(): an eventfd registered with IORING_REGISTER_EVENTFD,
 *     which the kernel signals when it posts completions (with COOP_TASKRUN
 *     a sleeping loop thread is woken to post them). A host loop or an
 *     embedding loop watches it. It is made on first request; from then
 *     on each wait empties it with one non-blocking read().
 *  k) fork(): the ring's memory is mapped MAP_SHARED, so a child writing
 *     into it would corrupt the parent's ring; it is marked MADV_DONTFORK
 *     (io_uring_ring_dontfork) and the child does not have it at all. A
 *     child that goes on with the loop (rx_loop_fork) closes its copy of the
 *     ring fd, never unmaps (nothing is mapped there in the child), makes a
 *     new ring and re-arms every poll and the doorbell. The fd is closed
 *     first, so that a child with no fd to spare gets its number back; if
 *     no ring can be made, the loop holds none (ring_fd -1), and neither
 *     waits nor submits until a later iteration makes one.
 *  l) Completion operations (op.c) are one SQE each, tagged with the op's
 *     address (internal.h), sent with the wait's enter like every other
 *     SQE: N ops submitted in one iteration cost one io_uring_enter().
 *     The kinds the kernel has are probed once (IORING_REGISTER_PROBE);
 *     the core emulates the others on readiness. A cancel is an
 *     ASYNC_CANCEL by tag; the op still posts its own final completion
 *     (-ECANCELED, or its result when it was done first), which keeps
 *     the rule of one final callback. Completions are copied out of the
 *     CQ ring before any callback runs (reap()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../reactor/internal.h"

/* user_data is a tag (internal.h): rx__tag_poll() for polls, RX__TAG_*
 * for the doorbell READ, a MSG_RING from another loop and ignored SQEs. */
#define DEFAULT_ENTRIES 256
/* The kernel finds a poll to remove or update in a hash table of
 * 2^(log2(CQ size) - 5) buckets, clamped to 2..256 (io_uring.c,
 * io_ring_ctx_alloc). A CQ of 4 x 256 entries gives 32 buckets, and with
 * 9,000 armed polls every removal walked ~280 of them; 8,192 CQ entries
 * (128 KiB) are the first size with all 256. Only the default ring is made this
 * way; an explicit ring_entries keeps a CQ of 4 x ring_entries. */
#define DEFAULT_CQ_ENTRIES 8192

struct rx_uring {
  struct rx_loop loop; /* first: a loop pointer is a backend pointer */
  struct io_uring ring;
  unsigned sqe_flags;  /* IOSQE_CQE_SKIP_SUCCESS for internal SQEs, or 0 */
  bool peek_ok;        /* the kernel flags pending task work (note f) */
  bool want_defer;     /* RX_LOOP_DEFER: DEFER_TASKRUN if the kernel has it */
  bool msg_ring;       /* IORING_OP_MSG_RING is supported (note i) */
  uint32_t op_kinds;   /* note l): bit k: the kernel does RX__OP_ kind k */
  uint16_t next_bgid;  /* note l): the next pool's buffer group */
  bool disabled;       /* made with R_DISABLED, enabled by the first wait; other
                        * loops read it (uring_wake_from()) */
  bool rearm_doorbell; /* the doorbell READ could not be queued */
  bool has_pollfd;     /* note j): an eventfd registered for rx_loop_fd() */
  int pollfd;
  unsigned entries;    /* SQ and CQ sizes the ring was made with, for a */
  unsigned cq_entries; /* fork */
  uint64_t wakebuf;    /* where the doorbell READ lands */
};

static inline struct rx_uring *backend_of(rx_loop *loop) {
  return (struct rx_uring *)(void *)loop;
}

/* Note l): the io_uring opcode of each op kind. */
static const uint8_t opcodes[RX__OP_NKINDS] = {
    [RX__OP_READ] = IORING_OP_READ,
    [RX__OP_WRITE] = IORING_OP_WRITE,
    [RX__OP_READV] = IORING_OP_READV,
    [RX__OP_WRITEV] = IORING_OP_WRITEV,
    [RX__OP_RECV] = IORING_OP_RECV,
    [RX__OP_SEND] = IORING_OP_SEND,
    [RX__OP_RECVMSG] = IORING_OP_RECVMSG,
    [RX__OP_SENDMSG] = IORING_OP_SENDMSG,
    [RX__OP_ACCEPT] = IORING_OP_ACCEPT,
    [RX__OP_ACCEPT_MULTI] = IORING_OP_ACCEPT,
    [RX__OP_CONNECT] = IORING_OP_CONNECT,
    [RX__OP_SHUTDOWN] = IORING_OP_SHUTDOWN,
    [RX__OP_POLL] = IORING_OP_POLL_ADD,
    [RX__OP_NOP] = IORING_OP_NOP,
    [RX__OP_CLOSE] = IORING_OP_CLOSE,
    [RX__OP_TIMEOUT] = IORING_OP_TIMEOUT,
    [RX__OP_RECV_POOL] = IORING_OP_RECV,
    [RX__OP_RECV_MULTI] = IORING_OP_RECV,
    [RX__OP_SPLICE] = IORING_OP_SPLICE,
};

/* The op kinds the kernel has (note l), less those named in RX_URING_NO_OPS
 * (a comma-separated list of kind names, as rx_op_support() gives them, or
 * "all"): the tests mask kinds to check that their emulation gives the
 * same results. */
static uint32_t probe_ops(const struct io_uring_probe *probe) {
  uint32_t kinds = 0;
  for (unsigned k = 1; probe != NULL && k < RX__OP_NKINDS; k++)
    if (opcodes[k] != 0 || k == RX__OP_NOP)
      if (io_uring_opcode_supported(probe, opcodes[k]))
        kinds |= UINT32_C(1) << k;
  /* Multishot accept and provided buffer rings: 5.19, the kernel that has
   * IORING_OP_SOCKET; multishot recv: 6.0, which has IORING_OP_SEND_ZC.
   * Linked timeouts (deadlines) came with 5.5, long before. */
  if (probe == NULL || !io_uring_opcode_supported(probe, IORING_OP_SOCKET))
    kinds &=
        ~(UINT32_C(1) << RX__OP_ACCEPT_MULTI | UINT32_C(1) << RX__OP_RECV_POOL);
  if (probe == NULL || !io_uring_opcode_supported(probe, IORING_OP_SEND_ZC))
    kinds &= ~(UINT32_C(1) << RX__OP_RECV_MULTI);
  const char *mask = getenv("RX_URING_NO_OPS");
  if (mask != NULL && strcmp(mask, "all") == 0)
    return 0;
  while (mask != NULL && *mask != '\0') {
    size_t len = strcspn(mask, ",");
    int k = rx__op_kind_named(mask, len);
    if (k > 0)
      kinds &= ~(UINT32_C(1) << k);
    mask += len;
    mask += *mask == ',';
  }
  return kinds;
}

/* Tries the setup flags of note e), best first; DEFER_TASKRUN only when
 * the loop asked for it (be->want_defer). */
static int setup_ring(struct rx_uring *be, unsigned entries, unsigned cq) {
  static const unsigned tries[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  int rc = -EINVAL;
  for (size_t i = be->want_defer ? 0 : 1; i < sizeof(tries) / sizeof(tries[0]);
       i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = tries[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = cq;
    rc = io_uring_queue_init_params(entries, &be->ring, &p);
    if (rc == -EINVAL)
      continue;
    if (rc != 0)
      return rc;
    if (!(p.features & IORING_FEAT_EXT_ARG) ||
        !(p.features & IORING_FEAT_NODROP)) {
      io_uring_queue_exit(&be->ring);
      return -ENOSYS;
    }
    be->sqe_flags = (p.features & IORING_FEAT_CQE_SKIP) ? IOSQE_CQE_SKIP_SUCCESS
                                                        : 0;
    be->peek_ok = tries[i] != 0;
    be->disabled = (tries[i] & IORING_SETUP_R_DISABLED) != 0;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&be->ring);
    be->msg_ring = probe != NULL &&
                   io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    be->op_kinds = probe_ops(probe);
    if (probe != NULL)
      io_uring_free_probe(probe);
    return 0;
  }
  return rc;
}

static int uring_create(rx_loop **loop, const struct rx_loop_options *opts) {
  /* rx_loop_new() has checked ring_entries <= RX__MAX_RING_ENTRIES. */
  unsigned entries = opts->ring_entries ? opts->ring_entries : DEFAULT_ENTRIES;
  struct rx_uring *be = rx__alloc(sizeof(*be));
  if (be == NULL)
    return -ENOMEM;
  memset(be, 0, sizeof(*be));
  be->want_defer = (opts->flags & RX_LOOP_DEFER) != 0;
  /* The kernel refuses a CQ above twice IORING_MAX_ENTRIES, so that 4 x
   * ring_entries stops there (and stays at least the SQ's size). */
  unsigned cq = opts->ring_entries ? entries * 4 : DEFAULT_CQ_ENTRIES;
  if (cq > 2 * RX__MAX_RING_ENTRIES)
    cq = 2 * RX__MAX_RING_ENTRIES;
  int rc = setup_ring(be, entries, cq);
  /* Locked memory is scarce under some limits: retry once, small. */
  if (rc == -ENOMEM && entries > 16)
    rc = setup_ring(be, 16, 64);
  if (rc != 0) {
    rx__free(be, sizeof(*be));
    return rc == -ENOMEM ? RX__EKERNMEM : rc;
  }
  be->entries = be->ring.sq.ring_entries;
  be->cq_entries = be->ring.cq.ring_entries;
  /* Note k): a forked child must not share this memory with the parent. */
  io_uring_ring_dontfork(&be->ring);
  *loop = &be->loop;
  return 0;
}

static void forget_ring(struct rx_uring *be);

static void uring_destroy(rx_loop *loop) {
  struct rx_uring *be = backend_of(loop);
  if (loop->postfork & RX__FORK_KERNEL) {
    forget_ring(be); /* note k): the parent's ring, or none */
  } else {
    io_uring_queue_exit(&be->ring);
    if (be->has_pollfd)
      close(be->pollfd);
  }
  rx__free(be, sizeof(*be));
}

/* An SQE, submitting the full ring first if need be (note h); NULL only if
 * that submission failed (a ring used from a thread it is not bound to). */
static struct io_uring_sqe *get_sqe(struct rx_uring *be) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&be->ring);
  if (sqe == NULL) {
    be->loop.m.enters++;
    io_uring_submit(&be->ring);
    sqe = io_uring_get_sqe(&be->ring);
  }
  return sqe;
}

/* Queues a POLL_REMOVE of the poll tagged `ud`. */
static void queue_remove(struct rx_uring *be, uint64_t ud) {
  struct io_uring_sqe *sqe = get_sqe(be);
  if (sqe == NULL)
    return; /* only outside flush_changes(): a stale poll, retried later */
  io_uring_prep_poll_remove(sqe, ud);
  io_uring_sqe_set_data64(sqe, RX__TAG_IGNORE);
  sqe->flags |= be->sqe_flags;
}

static void remove_poll(struct rx_uring *be, struct rx__fd *f, int fd) {
  queue_remove(be, rx__tag_poll(fd, f->gen));
  f->backend &= (uint8_t)~RX__FD_URING_ARMED;
  f->kernel = 0;
  f->gen++; /* the removed poll's -ECANCELED completion is now stale */
}

static void add_poll(struct rx_uring *be, struct rx__fd *f, int fd) {
  unsigned mask = ((f->want & RX_READ) ? POLLIN : 0) |
                  ((f->want & RX_WRITE) ? POLLOUT : 0);
  /* flush_changes() made room, so there is always an SQE here. */
  struct io_uring_sqe *sqe = get_sqe(be);
  f->gen++;
  be->loop.m.rearms++;
  if (f->want & RX_ET)
    io_uring_prep_poll_multishot(sqe, fd, mask);
  else
    io_uring_prep_poll_add(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, rx__tag_poll(fd, f->gen));
  f->backend |= RX__FD_URING_ARMED;
  f->kernel = f->want;
}

static void apply_change(struct rx_uring *be, int fd) {
  struct rx__fd *f = &be->loop.fds[fd];
  f->flags &= ~RX__FD_CHANGED;
  bool renew = (f->flags & RX__FD_RENEW) != 0;
  f->flags &= ~RX__FD_RENEW;
  /* No watchers left: want is 0, the poll goes (note b). */
  if ((f->backend & RX__FD_URING_ARMED) && (f->want != f->kernel || renew))
    remove_poll(be, f, fd);
  if (f->want != 0 && !(f->backend & RX__FD_URING_ARMED))
    add_poll(be, f, fd);
}

/* Queues the SQEs of every changed fd. A change takes at most two SQEs
 * (remove, add), so room for them is made before each one; if the ring
 * cannot be submitted, the changes not yet applied stay for the next wait
 * and the error is returned. */
static int flush_changes(struct rx_uring *be) {
  rx_loop *loop = &be->loop;
  for (int i = 0; i < loop->nchanges; i++) {
    if (io_uring_sq_space_left(&be->ring) < 2) {
      be->loop.m.enters++;
      int rc = io_uring_submit(&be->ring);
      if (io_uring_sq_space_left(&be->ring) < 2) {
        loop->nchanges -= i;
        memmove(loop->changes, loop->changes + i,
                sizeof(*loop->changes) * (size_t)loop->nchanges);
        return rc < 0 ? rc : -EBUSY;
      }
    }
    apply_change(be, loop->changes[i]);
  }
  loop->nchanges = 0;
  return 0;
}

static int poll_revents(int res) {
  int revents = 0;
  if (res & (POLLIN | POLLHUP | POLLERR | POLLRDHUP))
    revents |= RX_READ;
  if (res & (POLLOUT | POLLHUP | POLLERR))
    revents |= RX_WRITE;
  return revents;
}

static void arm_doorbell(struct rx_uring *be) {
  struct io_uring_sqe *sqe = get_sqe(be);
  if (sqe == NULL) {
    be->rearm_doorbell = true; /* retried by the next wait */
    return;
  }
  be->rearm_doorbell = false;
  io_uring_prep_read(sqe, be->loop.wakefd, &be->wakebuf, sizeof(be->wakebuf),
                     0);
  io_uring_sqe_set_data64(sqe, RX__TAG_WAKEFD);
}

/* A completion with an internal tag: the doorbell READ (note i), re-armed,
 * a message from another loop, or a cancel that found nothing (note l);
 * RX__TAG_IGNORE is dropped. */
static void complete_internal(struct rx_uring *be, uint64_t ud, int res) {
  if (ud == RX__TAG_CANCEL && res == -ENOENT)
    be->loop.ops_recancel = true;
  if (ud != RX__TAG_WAKEFD && ud != RX__TAG_MESSAGE)
    return;
  if (ud == RX__TAG_WAKEFD && be->loop.wakefd >= 0)
    arm_doorbell(be);
  rx__doorbell(&be->loop);
}

/* A completion of an op (note l): to the core, which calls back. */
static void complete_op(struct rx_uring *be, rx_op *op, int res,
                        unsigned cflags) {
  if (op->_kind == RX__OP_POLL && res >= 0)
    res = poll_revents(res) & (int)op->_len;
  unsigned flags = (cflags & IORING_CQE_F_MORE) ? RX_OP_F_MORE : 0;
  if (cflags & IORING_CQE_F_BUFFER)
    flags |= RX_OP_F_BUFFER | (cflags >> IORING_CQE_BUFFER_SHIFT) << 16;
  rx__op_complete(&be->loop, op, res, flags);
}

/* A CQE, as reap() copies it out of the ring. */
struct cqe {
  uint64_t ud;
  int32_t res;
  uint32_t flags;
};

static void complete(struct rx_uring *be, const struct cqe *cqe) {
  rx_loop *loop = &be->loop;
  uint64_t ud = cqe->ud;
  if (rx__tag_kind(ud) != RX__TAG_KIND_POLL) {
    if (rx__tag_kind(ud) == RX__TAG_KIND_OP && (ud & 7) == 0)
      complete_op(be, rx__tag_to_op(ud), cqe->res, cqe->flags);
    else if (rx__tag_kind(ud) == RX__TAG_KIND_OP)
      return; /* the poll before an op (uring_submit()): the op reports */
    else
      complete_internal(be, ud, cqe->res);
    return;
  }
  int fd = rx__tag_fd(ud);
  struct rx__fd *f = rx__fd_get(loop, fd);
  if (f == NULL || f->gen != rx__tag_gen(ud)) {
    /* note c). A stale multishot poll that is still armed (F_MORE) lost its
     * POLL_REMOVE to a wake-up in progress (-EALREADY): remove it again, or
     * it would hold the old file open for the ring's lifetime. */
    if (cqe->flags & IORING_CQE_F_MORE)
      queue_remove(be, ud);
    return;
  }
  if (!(cqe->flags & IORING_CQE_F_MORE)) {
    /* One-shot, or a multishot the kernel ended: re-arm in the next batch
     * if anyone still wants it (note a). */
    f->backend &= (uint8_t)~RX__FD_URING_ARMED;
    f->kernel = 0;
    if (f->want != 0 && !(f->flags & RX__FD_CHANGED)) {
      f->flags |= RX__FD_CHANGED;
      loop->changes[loop->nchanges++] = fd;
    }
  }
  if (cqe->res < 0 || (cqe->res & POLLNVAL))
    rx__io_error(loop, fd);
  else
    rx__io_event(loop, fd, poll_revents(cqe->res));
}

/* Reaps what the ring holds, a batch at a time: each batch is copied out
 * and the ring advanced before any of it is handled, because an op's
 * callback runs from here and may run the loop again (a nested rx_run()
 * reaps the same ring). */
#define REAP_BATCH 32
static unsigned reap(struct rx_uring *be) {
  unsigned total = 0;
  for (;;) {
    struct cqe batch[REAP_BATCH];
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&be->ring, head, cqe) {
      batch[n].ud = io_uring_cqe_get_data64(cqe);
      batch[n].res = cqe->res;
      batch[n].flags = cqe->flags;
      if (++n == REAP_BATCH)
        break;
    }
    if (n == 0)
      break;
    io_uring_cq_advance(&be->ring, n);
    be->loop.m.completions += n;
    /* Op callbacks run from here, inside the wait: they see the time after
     * it, as emulated ops and watchers do (a timer started in one is not
     * early by the time the loop slept). */
    if (total == 0)
      rx_now_update(&be->loop);
    total += n;
    for (unsigned i = 0; i < n; i++)
      complete(be, &batch[i]);
    if (n < REAP_BATCH)
      break;
  }
  return total;
}

/* Note e): the thread that first runs the loop becomes the ring's one
 * submitter, not the thread that made it. The raw syscall: Debian's
 * liburing 2.3 declares io_uring_enable_rings() but does not export it. */
static int enable_ring(struct rx_uring *be) {
  if (syscall(__NR_io_uring_register, be->ring.ring_fd,
              IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
    return -errno;
  /* Release: a sender that reads false may message the ring (note i). */
  __atomic_store_n(&be->disabled, false, __ATOMIC_RELEASE);
  return 0;
}

/* Note j): empty the rx_loop_fd() eventfd before looking, so that any
 * later signal stays. */
static void empty_pollfd(struct rx_uring *be) {
  uint64_t count;
  be->loop.m.enters++;
  (void)!read(be->pollfd, &count, sizeof(count));
}

/* A wait that must not block: submit what is queued, or have the kernel
 * run and post what it holds, or, when neither is needed, nothing at all
 * (note f): the completion ring is then read without a syscall. */
static inline int enter_nowait(struct rx_uring *be) {
  struct io_uring *ring = &be->ring;
  unsigned kflags = IO_URING_READ_ONCE(*ring->sq.kflags);
  if (io_uring_sq_ready(ring) > 0) {
    be->loop.m.enters++;
    return io_uring_submit_and_get_events(ring);
  }
  if (!be->peek_ok || (kflags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))) {
    be->loop.m.enters++;
    return io_uring_get_events(ring);
  }
  return 0;
}

/* A wait that may block for `timeout` ns (-1: no limit) in one
 * io_uring_enter() with what is queued, unless completions are waiting
 * already: then what is queued is only submitted. The timeout goes in the
 * extended argument (note d). */
static inline int enter_wait(struct rx_uring *be, int64_t timeout) {
  struct io_uring *ring = &be->ring;
  if (io_uring_cq_ready(ring) == 0) {
    struct __kernel_timespec ts, *tsp = NULL;
    if (timeout > 0) {
      ts.tv_sec = timeout / 1000000000;
      ts.tv_nsec = timeout % 1000000000;
      tsp = &ts;
    }
    struct io_uring_cqe *cqe;
    be->loop.m.enters++;
    return io_uring_submit_and_wait_timeout(ring, &cqe, 1, tsp, NULL);
  }
  if (io_uring_sq_ready(ring) > 0) {
    be->loop.m.enters++;
    return io_uring_submit(ring);
  }
  return 0;
}

/* Reaps every completion, flushing the kernel's overflow list until it is
 * empty (note g). The bound keeps a flood from starving the rest of the
 * iteration. */
static inline void drain(struct rx_uring *be) {
  for (int round = 0; round < 64; round++) {
    reap(be);
    if (!io_uring_cq_has_overflow(&be->ring))
      break;
    be->loop.m.overflows++;
    be->loop.m.enters++;
    io_uring_get_events(&be->ring);
  }
}

/* Note e): the ring was made with DEFER_TASKRUN (liburing keeps the setup
 * flags; a ring let go of after a fork has none). */
static inline bool deferred(const struct rx_uring *be) {
  return (be->ring.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
}

/* Note e): the kernel holds back completions on a DEFER_TASKRUN ring
 * (past its per-enter limit, or queued since the last enter); each further
 * enter runs at most 20 of them. */
#define DEFERRED_ROUNDS 16
static inline bool held_back(struct rx_uring *be) {
  return (IO_URING_READ_ONCE(*be->ring.sq.kflags) & IORING_SQ_TASKRUN) != 0;
}

/* Note e): completions the kernel holds back past its per-enter limit
 * are run by more enters, each followed by the callbacks of what it
 * posted. The bound keeps a flood from starving the rest of the
 * iteration; what is left is still flagged, so the next iteration's
 * non-blocking look enters for it. A host loop watching rx_loop_fd()
 * comes back too: the kernel signals that eventfd whenever it posts
 * completions, and these enters post after the wait emptied it. */
static void run_deferred(struct rx_uring *be) {
  for (int round = 0; round < DEFERRED_ROUNDS && held_back(be); round++) {
    be->loop.m.enters++;
    io_uring_get_events(&be->ring);
    drain(be);
  }
}

/* The steps of a wait: the ring enabled by its first, the doorbell READ
 * queued again if it could not be, the rx_loop_fd() eventfd emptied, the
 * fd changes queued, one enter (or none), then the completions reaped. */
static int uring_wait(rx_loop *loop, int64_t timeout) {
  struct rx_uring *be = backend_of(loop);
  int rc;
  if (be->disabled && (rc = enable_ring(be)) < 0)
    return rc;
  if (be->rearm_doorbell)
    arm_doorbell(be);
  if (be->has_pollfd)
    empty_pollfd(be);
  if ((rc = flush_changes(be)) < 0)
    return rc;
  rc = timeout == 0 ? enter_nowait(be) : enter_wait(be, timeout);
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
    return rc;
  drain(be);
  if (deferred(be))
    run_deferred(be);
  return 0;
}

static int uring_doorbell(rx_loop *loop) {
  arm_doorbell(backend_of(loop));
  return 0;
}

/* Note i): queue a message for `to`'s ring; it leaves with `from`'s next
 * submission. Only the sender's thread touches `from`'s SQ ring. A ring
 * not enabled yet (note e) refuses messages with -EBADFD, and `to` may
 * announce its sleep before its first wait enables it: the sender's
 * completion of that failure is ignored, so `to` would never hear the
 * doorbell it was promised and every later post would find it rung. Such
 * a loop gets the eventfd (the caller's fallback), which its doorbell READ
 * reads once the ring runs. */
static int uring_wake_from(rx_loop *from, rx_loop *to) {
  struct rx_uring *src = backend_of(from), *dst = backend_of(to);
  if (!src->msg_ring)
    return -ENOTSUP;
  if (__atomic_load_n(&dst->disabled, __ATOMIC_ACQUIRE))
    return -EAGAIN;
  struct io_uring_sqe *sqe = get_sqe(src);
  if (sqe == NULL)
    return -EBUSY;
  io_uring_prep_msg_ring(sqe, dst->ring.ring_fd, 0, RX__TAG_MESSAGE, 0);
  io_uring_sqe_set_data64(sqe, RX__TAG_IGNORE);
  sqe->flags |= src->sqe_flags;
  return 0;
}

/* Note k): lets go of the ring without touching it, so that the child
 * neither unmaps what is not its own nor enters the parent's ring; a ring
 * already let go of (ring_fd -1) is left alone. */
static void forget_ring(struct rx_uring *be) {
  if (be->ring.ring_fd >= 0)
    close(be->ring.ring_fd);
  memset(&be->ring, 0, sizeof(be->ring));
  be->ring.ring_fd = -1;
  __atomic_store_n(&be->disabled, false, __ATOMIC_RELEASE);
  be->rearm_doorbell = false;
  if (be->has_pollfd) {
    /* The inherited eventfd is the parent's too; a new one on request. */
    close(be->pollfd);
    be->has_pollfd = false;
  }
}

/* Note k): the old ring's fds are closed first, so that a child with no fd
 * to spare gets a number back for the new ring. If the new one cannot be
 * made (-EMFILE), the loop has none, and tries again at its next
 * iteration (loop.c). */
static int uring_fork(rx_loop *loop) {
  struct rx_uring *be = backend_of(loop);
  forget_ring(be);
  int rc = setup_ring(be, be->entries, be->cq_entries);
  if (rc != 0) {
    /* Whatever the failed setup left is not a ring of ours. */
    memset(&be->ring, 0, sizeof(be->ring));
    be->ring.ring_fd = -1;
    return rc;
  }
  io_uring_ring_dontfork(&be->ring);
  /* The new ring holds no poll. */
  for (int fd = 0; fd < loop->nfds; fd++)
    loop->fds[fd].backend &= (uint8_t)~RX__FD_URING_ARMED;
  rx__fds_renew_all(loop);
  arm_doorbell(be);
  return 0;
}

/* Note j). */
static int uring_pollfd(rx_loop *loop) {
  struct rx_uring *be = backend_of(loop);
  if (be->has_pollfd)
    return be->pollfd;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0)
    return -errno;
  int rc = io_uring_register_eventfd(&be->ring, fd);
  if (rc < 0) {
    close(fd);
    return rc;
  }
  be->pollfd = fd;
  be->has_pollfd = true;
  return fd;
}

/* Submits what is queued. A removed poll lets go of its file when the
 * poll's own completion runs; on a DEFER_TASKRUN ring (note e) that waits
 * for an enter with GETEVENTS, so the removal is submitted with one, and
 * followed by more while the kernel flags completions held back. What
 * they post stays in the completion ring for the next reap. */
static void submit_removals(struct rx_uring *be) {
  be->loop.m.enters++;
  if (!deferred(be)) {
    io_uring_submit(&be->ring);
    return;
  }
  io_uring_submit_and_get_events(&be->ring);
  for (int round = 0; round < DEFERRED_ROUNDS && held_back(be); round++) {
    be->loop.m.enters++;
    io_uring_get_events(&be->ring);
  }
}

/* rx_io_close(), note b): the poll is removed now, and the removal
 * submitted, so that the kernel drops its reference to the file before the
 * fd is closed. The removal runs inside io_uring_enter(). */
static void uring_release(rx_loop *loop, int fd) {
  struct rx_uring *be = backend_of(loop);
  struct rx__fd *f = rx__fd_get(loop, fd);
  if (f == NULL || !(f->backend & RX__FD_URING_ARMED))
    return;
  remove_poll(be, f, fd);
  if (!be->disabled)
    submit_removals(be);
}

/* rx_run() is returning: submit what callbacks queued after the last wait
 * (a MSG_RING to another loop above all, note i) and the removals of polls
 * whose fds lost their watchers (note b). One syscall, and only when
 * something is queued. */
static void uring_flush(rx_loop *loop) {
  struct rx_uring *be = backend_of(loop);
  if (be->disabled)
    return;
  /* Note b): the polls of fds that lost their watchers go now, not at the
   * next wait, which may be far off: their fds may be closed already. */
  int kept = 0;
  for (int i = 0; i < loop->nchanges; i++) {
    int fd = loop->changes[i];
    if (loop->fds[fd].want == 0)
      apply_change(be, fd);
    else
      loop->changes[kept++] = fd;
  }
  loop->nchanges = kept;
  if (io_uring_sq_ready(&be->ring) > 0)
    submit_removals(be);
}

/* Note l): one SQE for `op`, tagged with its address. A write that the
 * core resubmits after a short write goes on from where it stopped. */
static int uring_submit(rx_loop *loop, rx_op *op) {
  struct rx_uring *be = backend_of(loop);
  if (be->ring.ring_fd < 0)
    return -EBADF; /* no ring after a failed fork rebuild */
  /* Note e): a full SQ is submitted, which a disabled ring refuses; ops
   * are submitted on the loop's thread, which may enable it. */
  int rc;
  if (be->disabled && (rc = enable_ring(be)) < 0)
    return rc;
  /* A deadline (and a timeout op) is a timespec the kernel reads when the
   * SQE is submitted: the time left, from now. */
  bool timed = (op->_oflags & (RX__OPF_DEADLINE | RX__OPF_TIMED)) ==
               RX__OPF_DEADLINE; /* not left to the wheel (op.c) */
  bool linked = timed && op->_kind != RX__OP_TIMEOUT;
  if (timed) {
    int64_t left = op->_t.k.at - rx__clock_now();
    if (left <= 0)
      return op->_kind == RX__OP_TIMEOUT ? -ETIME : -ETIMEDOUT;
    op->_t.k.ts[0] = left / 1000000000;
    op->_t.k.ts[1] = left % 1000000000;
  }
  /* An op with a poll before it or a linked timeout after it: one chain,
   * never split by a full ring (note h). */
  bool pollfirst = (op->_oflags & RX__OPF_POLLFIRST) != 0;
  unsigned need = 1u + linked + pollfirst;
  if (need > 1 && io_uring_sq_space_left(&be->ring) < need) {
    loop->m.enters++;
    io_uring_submit(&be->ring);
    if (io_uring_sq_space_left(&be->ring) < need)
      return -EBUSY;
  }
  struct io_uring_sqe *sqe;
  int fd = op->_fd;
  op->_oflags &= (uint16_t)~RX__OPF_CHAINED;
  if (pollfirst) {
    /* The poll's tag is the op's address + 4: rx_op_cancel() must reach
     * it, since an op linked behind a poll is not found by its own tag
     * until the poll fires. */
    op->_oflags =
        (uint16_t)((op->_oflags & ~RX__OPF_POLLFIRST) | RX__OPF_CHAINED);
    sqe = get_sqe(be);
    bool out = op->_kind == RX__OP_WRITE || op->_kind == RX__OP_WRITEV ||
               op->_kind == RX__OP_SEND || op->_kind == RX__OP_SENDMSG;
    int pfd = fd;
    if (op->_kind == RX__OP_SPLICE) { /* the side that blocked (op.c) */
      bool w = (op->_oflags & RX__OPF_SPLICE_W) != 0;
      bool other = (op->_oflags & RX__OPF_POLLOTHER) != 0;
      pfd = other ? (int)op->_done : fd;
      out = other != w;
    }
    io_uring_prep_poll_add(sqe, pfd, out ? POLLOUT : POLLIN);
    io_uring_sqe_set_data64(sqe, rx__tag_op(op) + 4);
    /* Not IOSQE_CQE_SKIP_SUCCESS: a head with it that fails (a cancelled
     * poll) posts its own CQE but none for the requests linked to it, and
     * the op would never report. */
    sqe->flags |= IOSQE_IO_LINK;
  }
  sqe = get_sqe(be);
  if (sqe == NULL)
    return -EBUSY;
  uint64_t off = op->_u.off;
  if (off != UINT64_MAX && op->_kind != RX__OP_ACCEPT &&
      op->_kind != RX__OP_SPLICE)
    off += op->_done;
  char *p = op->_p;
  switch (op->_kind) {
  case RX__OP_READ:
    io_uring_prep_read(sqe, fd, p, op->_len, off);
    break;
  case RX__OP_WRITE:
    io_uring_prep_write(sqe, fd, p + op->_done, op->_len - op->_done, off);
    break;
  case RX__OP_READV:
    io_uring_prep_readv(sqe, fd, op->_p, op->_len, off);
    break;
  case RX__OP_WRITEV:
    io_uring_prep_writev(sqe, fd, op->_p, op->_len, off);
    break;
  case RX__OP_RECV:
    io_uring_prep_recv(sqe, fd, p, op->_len, (int)op->_uflg);
    break;
  case RX__OP_SEND:
    io_uring_prep_send(sqe, fd, p + op->_done, op->_len - op->_done,
                       (int)op->_uflg);
    break;
  case RX__OP_RECVMSG:
    io_uring_prep_recvmsg(sqe, fd, op->_p, op->_uflg);
    break;
  case RX__OP_SENDMSG:
    io_uring_prep_sendmsg(sqe, fd, op->_p, op->_uflg);
    break;
  case RX__OP_ACCEPT:
    io_uring_prep_accept(sqe, fd, op->_p, (socklen_t *)(uintptr_t)op->_u.off,
                         (int)op->_uflg);
    break;
  case RX__OP_ACCEPT_MULTI:
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, (int)op->_uflg);
    break;
  case RX__OP_CONNECT:
    io_uring_prep_connect(sqe, fd, op->_p, op->_len);
    break;
  case RX__OP_SHUTDOWN:
    io_uring_prep_shutdown(sqe, fd, (int)op->_len);
    break;
  case RX__OP_POLL:
    io_uring_prep_poll_add(sqe, fd,
                           ((op->_len & RX_READ) ? POLLIN : 0) |
                               ((op->_len & RX_WRITE) ? POLLOUT : 0));
    break;
  case RX__OP_NOP:
    io_uring_prep_nop(sqe);
    break;
  case RX__OP_CLOSE:
    io_uring_prep_close(sqe, fd);
    break;
  case RX__OP_SPLICE: {
    int fd_in, fd_out;
    rx__op_splice_fds(op, &fd_in, &fd_out);
    io_uring_prep_splice(sqe, fd_in, (int64_t)op->_u.sp.off_in, fd_out,
                         (int64_t)op->_u.sp.off_out, op->_len, op->_uflg);
    break;
  }
  case RX__OP_TIMEOUT:
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)op->_t.k.ts, 0, 0);
    break;
  case RX__OP_RECV_POOL:
  case RX__OP_RECV_MULTI:
    if (op->_kind == RX__OP_RECV_MULTI &&
        (be->op_kinds & UINT32_C(1) << RX__OP_RECV_MULTI))
      io_uring_prep_recv_multishot(sqe, fd, NULL, 0, (int)op->_uflg);
    else
      io_uring_prep_recv(sqe, fd, NULL, op->_len, (int)op->_uflg);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (uint16_t)((rx_pool *)op->_p)->bgid;
    break;
  default:
    io_uring_prep_nop(sqe); /* never: the core asks only for probed kinds */
    break;
  }
  io_uring_sqe_set_data64(sqe, rx__tag_op(op));
  if (linked) {
    sqe->flags |= IOSQE_IO_LINK;
    struct io_uring_sqe *t = get_sqe(be);
    io_uring_prep_link_timeout(t, (struct __kernel_timespec *)op->_t.k.ts, 0);
    io_uring_sqe_set_data64(t, RX__TAG_IGNORE);
  }
  return 0;
}

/* Buffer pools (note l): a provided buffer ring per pool, registered with
 * the kernel under the pool's group id, filled with every buffer. The
 * ring's memory is page-aligned, so it is mapped, not allocated. */
static int uring_pool_new(rx_loop *loop, rx_pool *pool) {
  struct rx_uring *be = backend_of(loop);
  if (be->ring.ring_fd < 0)
    return -EBADF;
  size_t bytes = sizeof(struct io_uring_buf) * pool->count;
  void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED)
    return -ENOMEM;
  struct io_uring_buf_ring *br = mem;
  io_uring_buf_ring_init(br);
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof(reg));
  reg.ring_addr = (uint64_t)(uintptr_t)mem;
  reg.ring_entries = pool->count;
  reg.bgid = be->next_bgid;
  int rc = io_uring_register_buf_ring(&be->ring, &reg, 0);
  if (rc != 0) {
    munmap(mem, bytes);
    return rc;
  }
  pool->bgid = be->next_bgid++;
  pool->ring = mem;
  /* Every buffer nobody holds (after a fork, the caller may hold some). */
  int mask = io_uring_buf_ring_mask(pool->count), n = 0;
  for (unsigned i = 0; i < pool->count; i++)
    if (!pool->held[i])
      io_uring_buf_ring_add(br, pool->mem + (size_t)i * pool->size, pool->size,
                            (unsigned short)i, mask, n++);
  io_uring_buf_ring_advance(br, n);
  return 0;
}

static void uring_pool_put(rx_loop *loop, rx_pool *pool, unsigned id) {
  (void)loop;
  struct io_uring_buf_ring *br = pool->ring;
  io_uring_buf_ring_add(br, pool->mem + (size_t)id * pool->size, pool->size,
                        (unsigned short)id, io_uring_buf_ring_mask(pool->count),
                        0);
  io_uring_buf_ring_advance(br, 1);
}

static void uring_pool_free(rx_loop *loop, rx_pool *pool) {
  struct rx_uring *be = backend_of(loop);
  if (be->ring.ring_fd >= 0)
    io_uring_unregister_buf_ring(&be->ring, pool->bgid);
  munmap(pool->ring, sizeof(struct io_uring_buf) * pool->count);
  pool->ring = NULL;
  pool->bgid = -1;
}

/* Note l): an ASYNC_CANCEL of the op's tag. The op completes either way,
 * with -ECANCELED or its result; only a cancel that found no request says
 * something (RX__TAG_CANCEL): the op may have completed first, or it was
 * between two homes the cancel looks in. A send whose first poll fired at
 * once (EPOLLRDHUP after SHUT_RD) waits as task work for its retry, which
 * then blocks in io-wq for good: op.c asks again. */
static void uring_cancel(rx_loop *loop, rx_op *op) {
  struct rx_uring *be = backend_of(loop);
  /* Behind a poll (a retried -EAGAIN), the poll is cancelled, which ends
   * the op linked to it with -ECANCELED; and the op itself, in case the
   * poll has fired. */
  uint64_t tags[2] = {rx__tag_op(op), rx__tag_op(op) + 4};
  int n = (op->_oflags & RX__OPF_CHAINED) ? 2 : 1;
  for (int i = n - 1; i >= 0; i--) {
    struct io_uring_sqe *sqe = get_sqe(be);
    if (sqe == NULL) { /* a ring that refuses to submit: later */
      loop->ops_recancel = true;
      return;
    }
    io_uring_prep_cancel64(sqe, tags[i], 0);
    io_uring_sqe_set_data64(sqe, i == 0 ? RX__TAG_CANCEL : RX__TAG_IGNORE);
    sqe->flags |= be->sqe_flags;
  }
}

static bool uring_probe(rx_loop *loop, unsigned kind) {
  return (backend_of(loop)->op_kinds >> kind) & 1;
}

const struct rx_backend_ops rx__uring_ops = {
    .name = "io_uring",
    .create = uring_create,
    .destroy = uring_destroy,
    .wait = uring_wait,
    .flush = uring_flush,
    .release = uring_release,
    .pollfd = uring_pollfd,
    .fork = uring_fork,
    .doorbell = uring_doorbell,
    .wake_from = uring_wake_from,
    .submit = uring_submit,
    .cancel = uring_cancel,
    .probe = uring_probe,
    .pool_new = uring_pool_new,
    .pool_put = uring_pool_put,
    .pool_free = uring_pool_free,
};
