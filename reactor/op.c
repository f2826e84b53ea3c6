/*
 * op.c - completion operations: the core's half.
 *
 * An op is caller-owned (rx.h). The core keeps, per fd, three FIFO queues
 * in loop->opfds: reads, writes, and the ops that are not ordered (poll).
 * Only the head of the read queue and the head of the write queue are ever
 * armed, so that the reads of one fd run in submission order, and so do its
 * writes; an op that retires arms the next. A write is done when all of it
 * is written: after a short write the rest is submitted again, before the
 * next write of the fd is armed, so writes never interleave.
 *
 * Armed, an op is either the backend's (loop->ops->submit, when the backend
 * does its kind: io_uring) and comes back through rx__op_complete(), or
 * emulated here: the fd's registration (io.c's table, shared with rx_io
 * watchers, so one per fd) gets the readiness the queue heads need, and
 * when the backend reports it (rx__ops_ready()) rx__ops_run() makes the
 * syscall. Writes are tried at once when their fd has no write before
 * them: the socket buffer usually has room, which saves a registration and
 * a wait. Reads are not: an idle connection costs no syscall.
 *
 * Exactly one final callback per submission. An op that retires without a
 * kernel completion (cancelled while queued, emulated, refused at arming)
 * goes to loop->ops_done with its result, and its callback runs in the
 * wait step (rx__ops_run()), never inside the call that retired it.
 * Kernel completions call back at once, from the backend's reap.
 *
 * Close (rx_op_close()): the fd's watchers are stopped and its poll
 * released (io.c), its ops are cancelled, and when the last one has
 * retired the close is made (by the kernel on io_uring, in the same
 * batch as the cancellations' results allow). New ops on the fd are
 * refused until then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define RW (RX_READ | RX_WRITE)
/* Emulated reads of one fd per readiness report, and fds of a multishot
 * accept: a bound, so that one busy fd cannot starve the others. */
#define EMU_BURST 64

static rx_op *op_of(struct rx__link *link) {
  return rx__container_of(link, rx_op, _ent.link);
}

static int queue_of(unsigned kind) {
  switch (kind) {
  case RX__OP_READ:
  case RX__OP_READV:
  case RX__OP_RECV:
  case RX__OP_RECVMSG:
  case RX__OP_ACCEPT:
  case RX__OP_ACCEPT_MULTI:
  case RX__OP_RECV_POOL:
  case RX__OP_RECV_MULTI:
  case RX__OP_SPLICE:
    return RX__Q_READ;
  case RX__OP_WRITE:
  case RX__OP_WRITEV:
  case RX__OP_SEND:
  case RX__OP_SENDMSG:
  case RX__OP_CONNECT:
  case RX__OP_SHUTDOWN:
    return RX__Q_WRITE;
  default:
    return RX__Q_FREE;
  }
}

/* The queue of an op: its kind's, but a splice out of a pipe is queued
 * with its fd_out's writes. */
static int q_of(const rx_op *op) {
  if (op->_kind == RX__OP_SPLICE && (op->_oflags & RX__OPF_SPLICE_W))
    return RX__Q_WRITE;
  return queue_of(op->_kind);
}

static bool is_write(unsigned kind) {
  return kind == RX__OP_WRITE || kind == RX__OP_WRITEV || kind == RX__OP_SEND ||
         kind == RX__OP_SENDMSG;
}

static bool makes_fd(unsigned kind) {
  return kind == RX__OP_ACCEPT || kind == RX__OP_ACCEPT_MULTI;
}

/* ---------------------------------------------------------------------------
 * The fd table of ops.
 */

/* The names of the kinds, for rx_op_support(). */
static const char *const kind_names[RX__OP_NKINDS] = {
    [RX__OP_READ] = "read",
    [RX__OP_WRITE] = "write",
    [RX__OP_READV] = "readv",
    [RX__OP_WRITEV] = "writev",
    [RX__OP_RECV] = "recv",
    [RX__OP_SEND] = "send",
    [RX__OP_RECVMSG] = "recvmsg",
    [RX__OP_SENDMSG] = "sendmsg",
    [RX__OP_ACCEPT] = "accept",
    [RX__OP_ACCEPT_MULTI] = "accept_multishot",
    [RX__OP_CONNECT] = "connect",
    [RX__OP_SHUTDOWN] = "shutdown",
    [RX__OP_POLL] = "poll",
    [RX__OP_TIMEOUT] = "timeout",
    [RX__OP_NOP] = "nop",
    [RX__OP_CLOSE] = "close",
    [RX__OP_RECV_POOL] = "recv_pool",
    [RX__OP_RECV_MULTI] = "recv_multishot",
    [RX__OP_SPLICE] = "splice",
};

static bool by_kernel(rx_loop *loop, unsigned kind);

int rx__op_kind_named(const char *name, size_t len) {
  for (unsigned k = 1; k < RX__OP_NKINDS; k++)
    if (strlen(kind_names[k]) == len && memcmp(kind_names[k], name, len) == 0)
      return (int)k;
  return -1;
}

static void describe(rx_loop *loop) {
  char *buf = loop->ops_support;
  size_t cap = sizeof(loop->ops_support), n = 0;
  unsigned native = 0, total = 0;
  for (unsigned k = 1; k < RX__OP_NKINDS; k++) {
    total++;
    native += by_kernel(loop, k);
  }
  if (native == total) {
    snprintf(buf, cap, "all by the kernel");
    return;
  }
  if (native == 0) {
    snprintf(buf, cap, "all emulated (%s)", loop->ops->name);
    return;
  }
  n = (size_t)snprintf(buf, cap, "emulated:");
  for (unsigned k = 1; k < RX__OP_NKINDS && n < cap; k++)
    if (!by_kernel(loop, k))
      n += (size_t)snprintf(buf + n, cap - n, " %s", kind_names[k]);
}

const char *rx_op_support(const rx_loop *loop) {
  return loop != NULL ? loop->ops_support : NULL;
}

int rx__ops_loop_init(rx_loop *loop) {
  describe(loop);
  rx__list_init(&loop->ops_done);
  rx__list_init(&loop->ops_nofd);
  rx__list_init(&loop->pools);
  rx__tw_init(&loop->op_wheel, loop->now, loop->wheel.shift);
  loop->op_wheel.exact = loop->wheel.exact;
  return 0;
}

/* Grows loop->opfds (and ops_ready, never longer) to cover `fd`. The
 * queues are circular lists whose heads live in the table: after the move,
 * their first and last ops point back at the new heads. */
static int grow(rx_loop *loop, int fd) {
  int n = loop->nopfds > 0 ? loop->nopfds : 64;
  while (n <= fd)
    n = n > INT32_MAX / 2 ? fd + 1 : n * 2;
  struct rx__opfd *t = rx__alloc(sizeof(*t) * (size_t)n);
  int *ready = rx__alloc(sizeof(*ready) * (size_t)n);
  if (t == NULL || ready == NULL) {
    rx__free(t, sizeof(*t) * (size_t)n);
    rx__free(ready, sizeof(*ready) * (size_t)n);
    return -ENOMEM;
  }
  memset(t, 0, sizeof(*t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    struct rx__opfd *o = &t[i];
    if (i < loop->nopfds)
      *o = loop->opfds[i];
    for (int q = 0; q < RX__NQ; q++) {
      if (i >= loop->nopfds || rx__list_empty(&loop->opfds[i].q[q])) {
        rx__list_init(&o->q[q]);
      } else {
        o->q[q].next->prev = &o->q[q];
        o->q[q].prev->next = &o->q[q];
      }
    }
  }
  if (loop->nops_ready > 0)
    memcpy(ready, loop->ops_ready, sizeof(*ready) * (size_t)loop->nops_ready);
  rx__free(loop->opfds, sizeof(*t) * (size_t)loop->nopfds);
  rx__free(loop->ops_ready, sizeof(*ready) * (size_t)loop->nopfds);
  loop->opfds = t;
  loop->ops_ready = ready;
  loop->nopfds = n;
  return 0;
}

static struct rx__opfd *opfd(rx_loop *loop, int fd) {
  return fd >= 0 && fd < loop->nopfds ? &loop->opfds[fd] : NULL;
}

/* Whether the backend does ops of `kind` itself. */
static bool by_kernel(rx_loop *loop, unsigned kind) {
  return loop->ops->submit != NULL && loop->ops->probe(loop, kind);
}

static bool is_pool(unsigned kind) {
  return kind == RX__OP_RECV_POOL || kind == RX__OP_RECV_MULTI;
}

/* Whether the backend does `op` itself: its kind, and for a pool op, a
 * pool the kernel picks from. A timeout on a manual clock is the wheel's:
 * the kernel's clock does not stand still. */
static bool op_by_kernel(rx_loop *loop, const rx_op *op) {
  /* A pool the kernel picks from is the kernel's alone: a multishot recv
   * the kernel lacks is then one recv after another (rx__op_complete()). */
  if (is_pool(op->_kind))
    return ((const rx_pool *)op->_p)->bgid >= 0;
  if (!by_kernel(loop, op->_kind))
    return false;
  if (op->_kind == RX__OP_TIMEOUT)
    return !(loop->flags & RX_LOOP_MANUAL_CLOCK);
  return true;
}

/* ---------------------------------------------------------------------------
 * Deadlines (rx_op_deadline(), rx_op_timeout()). While an op is not with
 * the kernel (queued, parked, emulated), its deadline is in the loop's op
 * wheel; the kernel gets it as a linked timeout (io_uring.c).
 */

static int64_t clock_now(rx_loop *loop) {
  return (loop->flags & RX_LOOP_MANUAL_CLOCK) ? loop->now : rx__clock_now();
}

static void timed_add(rx_loop *loop, rx_op *op, int64_t at) {
  rx__tw_add(&loop->op_wheel, &op->_t.ent, at);
  op->_oflags |= RX__OPF_TIMED;
  loop->ops_timed++;
}

/* Takes the op's deadline out of the wheel; returns it. */
static int64_t timed_del(rx_loop *loop, rx_op *op) {
  int64_t at = rx__tw_at(&loop->op_wheel, &op->_t.ent);
  rx__tw_del(&loop->op_wheel, &op->_t.ent);
  op->_oflags &= (uint16_t)~RX__OPF_TIMED;
  loop->ops_timed--;
  return at;
}

/* Hands `op` to the backend, its deadline with it: 0 or -errno. */
static int to_kernel(rx_loop *loop, rx_op *op) {
  /* On a manual clock the deadline stays in the wheel, whose expiry
   * cancels the op (rx__ops_expire()). */
  if ((op->_oflags & RX__OPF_TIMED) && !(loop->flags & RX_LOOP_MANUAL_CLOCK))
    op->_t.k.at = timed_del(loop, op);
  op->_oflags |= RX__OPF_KERNEL;
  /* A pool op notes how many buffers had come back when it left: an
   * -ENOBUFS that a later return may have raced is retried, not parked. */
  if (is_pool(op->_kind))
    op->_res = (int32_t)((rx_pool *)op->_p)->puts;
  int rc = loop->ops->submit(loop, op);
  if (rc == 0) {
    loop->ops_kernel++;
    return 0;
  }
  op->_oflags &= (uint16_t)~RX__OPF_KERNEL;
  return rc;
}

/* ---------------------------------------------------------------------------
 * Emulation: the readiness each armed op needs, kept in the fd's
 * registration.
 */

static bool splice_w(const rx_op *op);

static uint8_t need(const rx_op *op) {
  if ((op->_oflags & (RX__OPF_KERNEL | RX__OPF_OTHERWAIT)) ||
      op->_state == RX__OPS_PARKED || op->_state == RX__OPS_QUEUED)
    return 0;
  switch (op->_kind) {
  case RX__OP_POLL:
    return (uint8_t)op->_len;
  case RX__OP_SHUTDOWN:
    return 0;
  case RX__OP_CONNECT:
  case RX__OP_WRITE:
  case RX__OP_WRITEV:
  case RX__OP_SEND:
  case RX__OP_SENDMSG:
    return RX_WRITE;
  case RX__OP_SPLICE:
    return splice_w(op) ? RX_WRITE : RX_READ;
  default:
    return RX_READ;
  }
}

uint8_t rx__ops_want(const rx_loop *loop, int fd) {
  return fd >= 0 && fd < loop->nopfds ? loop->opfds[fd].want : 0;
}

/* Recomputes what the fd's armed emulated ops need, and hands a change to
 * io.c, which merges it with the watchers' interest. */
static void sync_want(rx_loop *loop, int fd) {
  struct rx__opfd *o = &loop->opfds[fd];
  uint8_t want =
      (uint8_t)((o->sp_rd > 0 ? RX_READ : 0) | (o->sp_wr > 0 ? RX_WRITE : 0));
  for (int q = RX__Q_READ; q <= RX__Q_WRITE; q++)
    if (!rx__list_empty(&o->q[q]))
      want |= need(op_of(o->q[q].next));
  for (struct rx__link *l = o->q[RX__Q_FREE].next; l != &o->q[RX__Q_FREE];
       l = l->next)
    want |= need(op_of(l));
  if (want != o->want) {
    o->want = want;
    rx__fd_sync(loop, fd);
  }
}

/* ---------------------------------------------------------------------------
 * Retiring: an op leaves its fd's queue (arming the next), then either
 * calls back now (a kernel completion) or waits on loop->ops_done.
 */

static void arm(rx_loop *loop, rx_op *op);
static void close_now(rx_loop *loop, rx_op *op);
static void closed(rx_loop *loop, rx_op *op);

/* An op leaves its fd's queue in two halves: unqueue() takes it off, and
 * requeue() then arms the next op of that direction, or the fd's close once
 * its last op is gone. defer() puts the op on the done list in between, so
 * that its callback comes before the close's. */

static void splice_left(rx_loop *loop, rx_op *op);
static void splice_requeue(rx_loop *loop, int fd_out);
static int splice_other(const rx_op *op);
static bool splice_other_blocks(const rx_op *op);
static void otherwait_begin(rx_loop *loop, rx_op *op);
static void splice_wake(rx_loop *loop, int fd, int ready);
static void cancel_splices_to(rx_loop *loop, int fd);

static bool unqueue(rx_loop *loop, rx_op *op) {
  if (op->_kind == RX__OP_SPLICE)
    splice_left(loop, op);
  struct rx__opfd *o = &loop->opfds[op->_fd];
  bool head = o->q[q_of(op)].next == &op->_ent.link;
  rx__list_unlink(&op->_ent.link);
  o->nops--;
  return head;
}

static void requeue(rx_loop *loop, int fd, int q, bool head) {
  struct rx__opfd *o = &loop->opfds[fd];
  if (head && q != RX__Q_FREE && !rx__list_empty(&o->q[q])) {
    rx_op *next = op_of(o->q[q].next);
    if (next->_state == RX__OPS_QUEUED)
      arm(loop, next);
  }
  if (o->nops == 0 && o->spliced == 0 && o->closer != NULL &&
      o->closer->_state == RX__OPS_CLOSING)
    close_now(loop, o->closer);
  else if (loop->ops->submit == NULL || o->want != 0)
    sync_want(loop, fd);
}

static void leave_fd(rx_loop *loop, rx_op *op) {
  bool head = unqueue(loop, op);
  requeue(loop, op->_fd, q_of(op), head);
  if (op->_kind == RX__OP_SPLICE)
    splice_requeue(loop, splice_other(op));
}

/* The op is the caller's again; `res` goes to its callback. */
static void give_back(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  if (op->_oflags & RX__OPF_TIMED)
    timed_del(loop, op);
  if (is_pool(op->_kind))
    ((rx_pool *)op->_p)->users--;
  if (op->_kind == RX__OP_SPLICE)
    loop->ops_splices--;
  op->_state = RX__OPS_IDLE;
  op->_oflags = 0;
  op->_loop = NULL;
  op->_deadline = 0;
  loop->ops_inflight--;
  loop->activecnt--;
  op->_cb(loop, op, res, flags);
}

/* Retires `op` now, its callback in the next wait step. */
static void defer(rx_loop *loop, rx_op *op, int res) {
  if (op->_oflags & RX__OPF_TIMED)
    timed_del(loop, op);
  if (op->_state == RX__OPS_PARKED)
    rx__list_unlink(&op->_u.park);
  bool on_fd = op->_fd >= 0 && op->_kind != RX__OP_CLOSE, head = false;
  if (on_fd)
    head = unqueue(loop, op);
  else if (op->_fd < 0)
    rx__list_unlink(&op->_ent.link); /* from loop->ops_nofd */
  op->_state = RX__OPS_DONE;
  op->_res = res;
  rx__list_push(&loop->ops_done, &op->_ent.link);
  loop->ops_due++;
  if (on_fd)
    requeue(loop, op->_fd, q_of(op), head);
  if (op->_kind == RX__OP_SPLICE)
    splice_requeue(loop, splice_other(op));
}

/* A write's progress: `n` more bytes written. The iovec array of writev
 * and sendmsg is advanced in place past what is written. */
static void advance(rx_op *op, unsigned n) {
  op->_done += n;
  if (op->_kind != RX__OP_WRITEV && op->_kind != RX__OP_SENDMSG)
    return;
  struct msghdr *msg = op->_kind == RX__OP_SENDMSG ? op->_p : NULL;
  struct iovec *iov = msg != NULL ? msg->msg_iov : op->_p;
  size_t cnt = msg != NULL ? msg->msg_iovlen : op->_len;
  while (cnt > 0 && n >= iov->iov_len) {
    n -= (unsigned)iov->iov_len;
    iov++;
    cnt--;
  }
  if (cnt > 0) {
    iov->iov_base = (char *)iov->iov_base + n;
    iov->iov_len -= n;
  }
  if (msg != NULL) {
    msg->msg_iov = iov;
    msg->msg_iovlen = cnt;
  } else {
    op->_p = iov;
    op->_len = (uint32_t)cnt;
  }
}

/* Bytes of a write still to go. */
static size_t left(const rx_op *op) {
  if (op->_kind == RX__OP_WRITE || op->_kind == RX__OP_SEND)
    return op->_len - op->_done;
  const struct msghdr *msg = op->_kind == RX__OP_SENDMSG ? op->_p : NULL;
  const struct iovec *iov = msg != NULL ? msg->msg_iov : op->_p;
  size_t cnt = msg != NULL ? msg->msg_iovlen : op->_len, sum = 0;
  for (size_t i = 0; i < cnt; i++)
    sum += iov[i].iov_len;
  return sum;
}

static void pool_take(rx_pool *pool, unsigned id);
static void pool_give(rx_pool *pool, unsigned id);
static void park(rx_loop *loop, rx_op *op);

/* A completion from the backend. `flags`: RX_OP_F_MORE, RX_OP_F_BUFFER
 * with the buffer id. */
void rx__op_complete(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  bool cancelled = (op->_oflags & RX__OPF_CANCEL) != 0;
  if (flags & RX_OP_F_BUFFER) {
    rx_pool *pool = op->_p;
    if (cancelled) { /* nobody will read it */
      pool_give(pool, RX_OP_BUFFER_ID(flags));
      flags &= ~(RX_OP_F_BUFFER | ~UINT32_C(0xffff));
      if (flags & RX_OP_F_MORE)
        return;
      res = -ECANCELED;
    } else {
      pool_take(pool, RX_OP_BUFFER_ID(flags));
    }
  }
  if (makes_fd(op->_kind) && res >= 0 && cancelled) {
    close(res); /* nobody will take it */
    if (flags & RX_OP_F_MORE)
      return;
    res = -ECANCELED;
  }
  /* A multishot op whose kernel request ended with a result (one-shot
   * requests standing in for a multishot the kernel lacks, or a multishot
   * the kernel ended itself): the caller still gets a result with MORE,
   * and the op goes on. */
  if (!(flags & RX_OP_F_MORE) && !cancelled &&
      ((op->_kind == RX__OP_RECV_MULTI && res > 0) ||
       (op->_kind == RX__OP_ACCEPT_MULTI && res >= 0))) {
    loop->ops_kernel--;
    op->_oflags &= (uint16_t)~RX__OPF_KERNEL;
    int rc = to_kernel(loop, op);
    op->_cb(loop, op, res, flags | RX_OP_F_MORE);
    if (rc != 0)
      defer(loop, op, rc);
    return;
  }
  if (flags & RX_OP_F_MORE) {
    op->_cb(loop, op, res, flags);
    return;
  }
  loop->ops_kernel--;
  op->_oflags &= (uint16_t)~RX__OPF_KERNEL;
  if (op->_kind == RX__OP_CLOSE) {
    closed(loop, op);
    /* An op it cancelled may still wait for its callback on the done
     * list (one that never reached the kernel): the close's comes after. */
    if (!rx__list_empty(&loop->ops_done)) {
      op->_state = RX__OPS_DONE;
      op->_oflags |= RX__OPF_CLOSED;
      op->_res = res;
      rx__list_push(&loop->ops_done, &op->_ent.link);
      loop->ops_due++;
      return;
    }
    give_back(loop, op, res, 0);
    return;
  }
  /* The pool ran dry: wait for a buffer, unseen by the caller. */
  if (res == -ENOBUFS && is_pool(op->_kind) && !cancelled) {
    rx_pool *pool = op->_p;
    if ((uint32_t)op->_res != pool->puts) {
      int rc = to_kernel(loop, op); /* a buffer came back meanwhile */
      if (rc != 0)
        defer(loop, op, rc);
      return;
    }
    if (op->_oflags & RX__OPF_DEADLINE)
      timed_add(loop, op, op->_t.k.at);
    park(loop, op);
    return;
  }
  /* io_uring gives -EAGAIN for a nonblocking file when it ran the request
   * in a worker (read-write ops, sendmsg, recvmsg): the emulation would wait
   * for readiness, and so does this op, behind a poll of its fd. */
  if (res == -EAGAIN && !(op->_uflg & MSG_DONTWAIT) && q_of(op) != RX__Q_FREE &&
      !makes_fd(op->_kind) && !is_pool(op->_kind)) {
    res = -ECANCELED; /* it would have waited: the cancel came first */
    if (!cancelled) {
      op->_oflags |= RX__OPF_POLLFIRST;
      op->_oflags &= (uint16_t)~RX__OPF_POLLOTHER;
      if (op->_kind == RX__OP_SPLICE && splice_other_blocks(op))
        op->_oflags |= RX__OPF_POLLOTHER;
      if ((res = to_kernel(loop, op)) == 0)
        return;
    }
  }
  /* A cancel reaches a request that an io-wq worker runs as a signal: the
   * request ends with -EINTR, which to the caller is a cancel. */
  if (res == -EINTR && (cancelled || (op->_oflags & RX__OPF_DEADLINE)))
    res = -ECANCELED;
  /* A cancel by the deadline's linked timeout. */
  if (res == -ECANCELED && !cancelled && (op->_oflags & RX__OPF_DEADLINE))
    res = -ETIMEDOUT;
  if (is_write(op->_kind)) {
    if (res > 0) {
      advance(op, (unsigned)res);
      if (!cancelled && left(op) > 0 && to_kernel(loop, op) == 0)
        return; /* the rest, still first in its fd's write queue */
    }
    if (op->_done > 0)
      res = (int)op->_done;
  }
  if (op->_fd >= 0)
    leave_fd(loop, op);
  else
    rx__list_unlink(&op->_ent.link); /* from loop->ops_nofd */
  give_back(loop, op, res, flags);
}

/* ---------------------------------------------------------------------------
 * Emulated syscalls. Each returns the result as the kernel would give it,
 * or -EAGAIN to wait for readiness.
 */

static int sys(ssize_t rc) {
  return rc >= 0 ? (int)rc : -errno;
}

static int emu_try(rx_op *op, unsigned *flags) {
  int fd = op->_fd;
  int64_t off = (int64_t)op->_u.off;
  switch (op->_kind) {
  case RX__OP_READ:
    return sys(off < 0 ? read(fd, op->_p, op->_len)
                       : pread(fd, op->_p, op->_len, off));
  case RX__OP_READV:
    return sys(off < 0 ? readv(fd, op->_p, (int)op->_len)
                       : preadv(fd, op->_p, (int)op->_len, off));
  case RX__OP_WRITE: {
    const char *p = (const char *)op->_p + op->_done;
    size_t n = op->_len - op->_done;
    return sys(off < 0 ? write(fd, p, n) : pwrite(fd, p, n, off + op->_done));
  }
  case RX__OP_WRITEV:
    return sys(off < 0 ? writev(fd, op->_p, (int)op->_len)
                       : pwritev(fd, op->_p, (int)op->_len, off + op->_done));
  case RX__OP_RECV:
    return sys(recv(fd, op->_p, op->_len, (int)op->_uflg | MSG_DONTWAIT));
  case RX__OP_SEND:
    return sys(send(fd, (const char *)op->_p + op->_done, op->_len - op->_done,
                    (int)op->_uflg | MSG_DONTWAIT));
  case RX__OP_RECVMSG:
    return sys(recvmsg(fd, op->_p, (int)op->_uflg | MSG_DONTWAIT));
  case RX__OP_SENDMSG:
    return sys(sendmsg(fd, op->_p, (int)op->_uflg | MSG_DONTWAIT));
  case RX__OP_ACCEPT:
    return sys(accept4(fd, op->_p, (socklen_t *)(uintptr_t)op->_u.off,
                       (int)op->_uflg));
  case RX__OP_ACCEPT_MULTI:
    return sys(accept4(fd, NULL, NULL, (int)op->_uflg));
  case RX__OP_CONNECT:
    if (op->_done == 0) {
      op->_done = 1; /* under way: the result is SO_ERROR, once writable */
      int rc = sys(connect(fd, op->_p, op->_len));
      return rc == -EINPROGRESS ? -EAGAIN : rc;
    } else {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
      return -err;
    }
  case RX__OP_SHUTDOWN:
    return sys(shutdown(fd, (int)op->_len));
  case RX__OP_SPLICE: {
    loff_t in = (loff_t)op->_u.sp.off_in, out = (loff_t)op->_u.sp.off_out;
    int fd_in, fd_out;
    rx__op_splice_fds(op, &fd_in, &fd_out);
    return sys(splice(fd_in, in < 0 ? NULL : &in, fd_out, out < 0 ? NULL : &out,
                      op->_len, op->_uflg | SPLICE_F_NONBLOCK));
  }
  case RX__OP_RECV_POOL:
  case RX__OP_RECV_MULTI: {
    rx_pool *pool = op->_p;
    if (pool->nfree == 0)
      return -ENOBUFS;
    unsigned id = pool->free[pool->nfree - 1];
    int rc = sys(recv(fd, pool->mem + (size_t)id * pool->size, pool->size,
                      (int)op->_uflg | MSG_DONTWAIT));
    if (rc > 0) {
      pool->nfree--;
      pool->held[id] = 1;
      *flags = RX_OP_F_BUFFER | id << 16;
    }
    return rc;
  }
  default:
    return -EINVAL;
  }
}

/* What an emulated attempt did. */
enum { EMU_WAIT, EMU_RETIRED, EMU_MORE };

/* One emulated attempt at `op`, the head of its queue. A write goes on
 * until all of it is written or the fd is full. The final callback runs
 * now, or, with `later` (inside a submitting call), in the wait step; *res
 * is the result. */
static int emu_step(rx_loop *loop, rx_op *op, bool later, int *res) {
  int r;
  unsigned flags = 0;
  for (;;) {
    r = emu_try(op, &flags);
    if (!is_write(op->_kind) || r <= 0)
      break;
    advance(op, (unsigned)r);
    if (left(op) == 0)
      break;
  }
  if (r == -EAGAIN || r == -EWOULDBLOCK) {
    bool asked = (op->_kind == RX__OP_RECV || op->_kind == RX__OP_SEND) &&
                 (op->_uflg & MSG_DONTWAIT);
    if (op->_kind == RX__OP_SPLICE && splice_other_blocks(op))
      otherwait_begin(loop, op);
    if (!asked)
      return EMU_WAIT;
  }
  if (r == -ENOBUFS && is_pool(op->_kind)) {
    park(loop, op);
    return EMU_WAIT;
  }
  *res = r;
  if ((op->_kind == RX__OP_ACCEPT_MULTI && r >= 0) ||
      (op->_kind == RX__OP_RECV_MULTI && r > 0)) {
    op->_cb(loop, op, r, flags | RX_OP_F_MORE);
    return EMU_MORE;
  }
  if (is_write(op->_kind) && op->_done > 0)
    *res = r = (int)op->_done;
  if (op->_kind == RX__OP_CONNECT)
    op->_done = 0;
  if (later) {
    defer(loop, op, r); /* never a pool op: no buffer to carry */
  } else {
    leave_fd(loop, op);
    give_back(loop, op, r, flags);
  }
  return EMU_RETIRED;
}

/* Readiness reported for an fd with emulated ops (io.c). */
void rx__ops_ready(rx_loop *loop, int fd, int revents) {
  struct rx__opfd *o = opfd(loop, fd);
  if (o == NULL || o->want == 0)
    return;
  o->ready |= (uint8_t)revents;
  if (!o->listed) {
    o->listed = 1;
    loop->ops_ready[loop->nops_ready++] = fd;
    loop->ops_due++;
  }
}

/* The first poll op of the fd that `ready` satisfies, or NULL. */
static rx_op *ready_poll(struct rx__opfd *o, int ready) {
  for (struct rx__link *l = o->q[RX__Q_FREE].next; l != &o->q[RX__Q_FREE];
       l = l->next) {
    rx_op *op = op_of(l);
    if (op->_kind == RX__OP_POLL && !(op->_oflags & RX__OPF_KERNEL) &&
        (ready & (int)op->_len) != 0)
      return op;
  }
  return NULL;
}

/* The queues of a ready fd: polls, then reads, then writes. A callback may
 * change the queues (and move the table): each step looks afresh. */
static void emu_fd(rx_loop *loop, int fd, int ready) {
  rx_op *op;
  struct rx__opfd *of = &loop->opfds[fd];
  if (((ready & RX_READ) && of->sp_rd > 0) ||
      ((ready & RX_WRITE) && of->sp_wr > 0))
    splice_wake(loop, fd, ready);
  for (int n = 0;
       n < EMU_BURST && (op = ready_poll(&loop->opfds[fd], ready)) != NULL;
       n++) {
    leave_fd(loop, op);
    give_back(loop, op, ready & (int)op->_len, 0);
  }
  for (int q = RX__Q_READ; q <= RX__Q_WRITE; q++) {
    if (!(ready & (q == RX__Q_READ ? RX_READ : RX_WRITE)))
      continue;
    for (int n = 0; n < EMU_BURST; n++) {
      struct rx__opfd *o = &loop->opfds[fd];
      if (rx__list_empty(&o->q[q]))
        break;
      op = op_of(o->q[q].next);
      if (op->_state != RX__OPS_ARMED || (op->_oflags & RX__OPF_KERNEL))
        break;
      unsigned kind = op->_kind, len = op->_len;
      int res = 0, step = emu_step(loop, op, false, &res);
      if (step == EMU_WAIT)
        break;
      if (step == EMU_MORE)
        continue;
      /* Read on only after a read that filled its buffer: the next would
       * most likely find nothing. */
      if (step == EMU_RETIRED && q == RX__Q_READ &&
          !((kind == RX__OP_READ || kind == RX__OP_RECV) && res == (int)len &&
            len > 0))
        break;
    }
  }
}

/* A cancel found no request (io_uring.c, note l): every cancelled op still
 * with the kernel is cancelled again. The op may just have completed (then
 * it is no longer with the kernel), or the kernel held it where a cancel
 * does not look, as task work between a poll and its retry; from there it
 * may go on to block in io-wq, and only a cancel sent after that ends it.
 * Rare, so a walk of every fd's queues. */
static void recancel(rx_loop *loop) {
  loop->ops_recancel = false;
  const uint16_t f = RX__OPF_CANCEL | RX__OPF_KERNEL;
  for (int fd = 0; fd < loop->nopfds; fd++) {
    struct rx__opfd *o = &loop->opfds[fd];
    if (o->nops == 0)
      continue;
    for (int q = 0; q < RX__NQ; q++)
      for (struct rx__link *l = o->q[q].next; l != &o->q[q]; l = l->next) {
        rx_op *x = op_of(l);
        if ((x->_oflags & f) == f && x->_state == RX__OPS_ARMED)
          loop->ops->cancel(loop, x);
      }
  }
  for (struct rx__link *l = loop->ops_nofd.next; l != &loop->ops_nofd;
       l = l->next) {
    rx_op *x = op_of(l);
    if ((x->_oflags & f) == f && x->_state == RX__OPS_ARMED)
      loop->ops->cancel(loop, x);
  }
}

/* The wait step's share (loop.c): ready fds of emulated ops, then the
 * final callbacks due. Callbacks that submit ops add to the lists: only
 * what was there on entry runs now, the rest in the next iteration. */
void rx__ops_run(rx_loop *loop) {
  if (loop->ops_recancel)
    recancel(loop);
  int n = loop->nops_ready;
  for (int i = 0; i < n; i++) {
    int fd = loop->ops_ready[i];
    struct rx__opfd *o = &loop->opfds[fd];
    int ready = o->ready;
    o->ready = 0;
    o->listed = 0;
    loop->ops_due--;
    emu_fd(loop, fd, ready);
  }
  /* Fds listed by the callbacks above move to the front. */
  loop->nops_ready -= n;
  if (loop->nops_ready > 0)
    memmove(loop->ops_ready, loop->ops_ready + n,
            sizeof(*loop->ops_ready) * (size_t)loop->nops_ready);
  struct rx__link done = {NULL, NULL};
  rx__list_init(&done);
  rx__list_splice(&done, &loop->ops_done);
  while (!rx__list_empty(&done)) {
    rx_op *op = op_of(rx__list_shift(&done));
    loop->ops_due--;
    int res = op->_res;
    if (op->_kind == RX__OP_CLOSE && !(op->_oflags & RX__OPF_CLOSED)) {
      res = close(op->_fd) == 0 ? 0 : -errno;
      closed(loop, op);
    }
    give_back(loop, op, res, 0);
  }
}

/* ---------------------------------------------------------------------------
 * Arming and submitting.
 */

static void arm(rx_loop *loop, rx_op *op) {
  op->_state = RX__OPS_ARMED;
  if (op_by_kernel(loop, op)) {
    int rc = to_kernel(loop, op);
    if (rc != 0)
      defer(loop, op, rc);
    return;
  }
  switch (op->_kind) {
  case RX__OP_NOP:
    defer(loop, op, 0);
    return;
  case RX__OP_TIMEOUT:
    return; /* its deadline, in the wheel, is all it waits for */
  default:
    break;
  }
  /* Writes, connect and shutdown are tried at once: they seldom wait. Their
   * callback still runs in the wait step. */
  int res;
  if (q_of(op) == RX__Q_WRITE && emu_step(loop, op, true, &res) == EMU_RETIRED)
    return;
  sync_want(loop, op->_fd);
}

/* An fd an op of `kind` may use: not negative, in the table, not being
 * closed, and for an emulated op in the watcher table. */
static int fd_usable(rx_loop *loop, int fd, unsigned kind) {
  int rc;
  if (fd < 0)
    return -EBADF;
  if (fd >= loop->nopfds && (rc = grow(loop, fd)) != 0)
    return rc;
  if (loop->opfds[fd].closer != NULL)
    return -EBADF;
  if (!by_kernel(loop, kind) && (rc = rx__fd_reserve(loop, fd)) != 0)
    return rc;
  return 0;
}

/* Common checks and bookkeeping of every rx_op_*() call. */
static int begin(rx_loop *loop, rx_op *op, int fd, unsigned kind, rx_op_cb cb) {
  if (loop == NULL || op == NULL || cb == NULL)
    return -EINVAL;
  if (op->_state != RX__OPS_IDLE || op->_loop != NULL)
    return -EBUSY;
  if (loop->freeing)
    return -ECANCELED;
  if (kind != RX__OP_NOP && kind != RX__OP_TIMEOUT) {
    int rc = fd_usable(loop, fd, kind);
    if (rc != 0)
      return rc;
  }
  if (kind == RX__OP_TIMEOUT && op->_deadline != 0)
    return -EINVAL; /* a timeout is its own deadline */
  op->_kind = (uint8_t)kind;
  op->_cb = cb;
  op->_fd = fd;
  op->_oflags = 0;
  op->_done = 0;
  return 0;
}

static int submit(rx_loop *loop, rx_op *op) {
  op->_loop = loop;
  loop->ops_inflight++;
  loop->activecnt++;
  if (is_pool(op->_kind))
    ((rx_pool *)op->_p)->users++;
  if (op->_deadline > 0) {
    op->_oflags |= RX__OPF_DEADLINE;
    int64_t now = clock_now(loop);
    timed_add(loop, op,
              op->_deadline > INT64_MAX - now ? INT64_MAX
                                              : now + op->_deadline);
  }
  if (op->_kind == RX__OP_NOP || op->_kind == RX__OP_TIMEOUT) {
    op->_fd = -1;
    rx__list_push(&loop->ops_nofd, &op->_ent.link);
    arm(loop, op);
    return 0;
  }
  struct rx__opfd *o = &loop->opfds[op->_fd];
  int q = q_of(op);
  bool first = q == RX__Q_FREE || rx__list_empty(&o->q[q]);
  rx__list_push(&o->q[q], &op->_ent.link);
  o->nops++;
  if (first) {
    arm(loop, op);
  } else {
    op->_state = RX__OPS_QUEUED;
  }
  return 0;
}

#define BEGIN(kind)                          \
  do {                                       \
    int rc_ = begin(loop, op, fd, kind, cb); \
    if (rc_ != 0)                            \
      return rc_;                            \
  } while (0)

/* The data ops: their arguments checked by the caller, then one shape. */
static int data_op(rx_loop *loop, rx_op *op, int fd, unsigned kind, rx_op_cb cb,
                   const void *p, unsigned len, int flags, int64_t offset) {
  BEGIN(kind);
  op->_p = (void *)(uintptr_t)p;
  op->_len = len;
  op->_uflg = (uint32_t)flags;
  op->_u.off = (uint64_t)(offset < 0 ? -1 : offset);
  return submit(loop, op);
}

static int check_iov(const struct iovec *iov, int iovcnt) {
  return (iov == NULL && iovcnt > 0) || iovcnt < 0 || iovcnt > IOV_MAX ? -EINVAL
                                                                       : 0;
}

int rx_op_read(rx_loop *loop, rx_op *op, int fd, void *buf, unsigned len,
               int64_t offset, rx_op_cb cb) {
  if (buf == NULL && len > 0)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_READ, cb, buf, len, 0, offset);
}

int rx_op_write(rx_loop *loop, rx_op *op, int fd, const void *buf, unsigned len,
                int64_t offset, rx_op_cb cb) {
  if (buf == NULL && len > 0)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_WRITE, cb, buf, len, 0, offset);
}

int rx_op_readv(rx_loop *loop, rx_op *op, int fd, const struct iovec *iov,
                int iovcnt, int64_t offset, rx_op_cb cb) {
  if (check_iov(iov, iovcnt) != 0)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_READV, cb, iov, (unsigned)iovcnt, 0,
                 offset);
}

int rx_op_writev(rx_loop *loop, rx_op *op, int fd, struct iovec *iov,
                 int iovcnt, int64_t offset, rx_op_cb cb) {
  if (check_iov(iov, iovcnt) != 0)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_WRITEV, cb, iov, (unsigned)iovcnt, 0,
                 offset);
}

int rx_op_recv(rx_loop *loop, rx_op *op, int fd, void *buf, unsigned len,
               int flags, rx_op_cb cb) {
  if (buf == NULL && len > 0)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_RECV, cb, buf, len, flags, -1);
}

int rx_op_send(rx_loop *loop, rx_op *op, int fd, const void *buf, unsigned len,
               int flags, rx_op_cb cb) {
  if (buf == NULL && len > 0)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_SEND, cb, buf, len, flags, -1);
}

int rx_op_recvmsg(rx_loop *loop, rx_op *op, int fd, struct msghdr *msg,
                  int flags, rx_op_cb cb) {
  if (msg == NULL)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_RECVMSG, cb, msg, 0, flags, -1);
}

int rx_op_sendmsg(rx_loop *loop, rx_op *op, int fd, struct msghdr *msg,
                  int flags, rx_op_cb cb) {
  if (msg == NULL)
    return -EINVAL;
  return data_op(loop, op, fd, RX__OP_SENDMSG, cb, msg, 0, flags, -1);
}

#define ACCEPT_FLAGS (SOCK_NONBLOCK | SOCK_CLOEXEC)

int rx_op_accept(rx_loop *loop, rx_op *op, int fd, struct sockaddr *addr,
                 unsigned *addrlen, int flags, rx_op_cb cb) {
  if ((flags & ~ACCEPT_FLAGS) != 0 || (addr != NULL && addrlen == NULL))
    return -EINVAL;
  BEGIN(RX__OP_ACCEPT);
  op->_p = addr;
  op->_u.off = (uint64_t)(uintptr_t)addrlen;
  op->_uflg = (uint32_t)flags;
  return submit(loop, op);
}

int rx_op_accept_multishot(rx_loop *loop, rx_op *op, int fd, int flags,
                           rx_op_cb cb) {
  if ((flags & ~ACCEPT_FLAGS) != 0)
    return -EINVAL;
  BEGIN(RX__OP_ACCEPT_MULTI);
  op->_p = NULL;
  op->_uflg = (uint32_t)flags;
  return submit(loop, op);
}

int rx_op_connect(rx_loop *loop, rx_op *op, int fd, const struct sockaddr *addr,
                  unsigned addrlen, rx_op_cb cb) {
  if (addr == NULL)
    return -EINVAL;
  BEGIN(RX__OP_CONNECT);
  op->_p = (void *)(uintptr_t)addr;
  op->_len = addrlen;
  return submit(loop, op);
}

int rx_op_shutdown(rx_loop *loop, rx_op *op, int fd, int how, rx_op_cb cb) {
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
    return -EINVAL;
  BEGIN(RX__OP_SHUTDOWN);
  op->_len = (uint32_t)how;
  return submit(loop, op);
}

int rx_op_poll(rx_loop *loop, rx_op *op, int fd, int events, rx_op_cb cb) {
  if ((events & RW) == 0 || (events & ~RW) != 0)
    return -EINVAL;
  BEGIN(RX__OP_POLL);
  op->_len = (uint32_t)events;
  return submit(loop, op);
}

int rx_op_nop(rx_loop *loop, rx_op *op, rx_op_cb cb) {
  int fd = -1;
  BEGIN(RX__OP_NOP);
  return submit(loop, op);
}

/* ---------------------------------------------------------------------------
 * splice: an op of two fds, one of them a pipe. It is queued on the other:
 * with the socket's (or file's) reads when it moves data into a pipe, with
 * its writes when it moves data out of one (a header sent, then a body
 * spliced, go out in that order); pipe to pipe, with fd_in's reads. The fd
 * it is not queued on (its `other`, kept in _done) counts it (spliced), so
 * that closing that fd cancels it and waits for it as for its own ops.
 * Emulated, it waits for its queue fd; when the other fd is what blocks it
 * (no data in the pipe it reads, no room in the pipe it fills), for that fd
 * (otherwait, counted in the other fd's sp_rd / sp_wr): no spin.
 */

static int splice_other(const rx_op *op) {
  return (int)op->_done;
}

/* Whether the op is queued on fd_out (its writes). */
static bool splice_w(const rx_op *op) {
  return (op->_oflags & RX__OPF_SPLICE_W) != 0;
}

int rx__op_splice_fds(const rx_op *op, int *fd_in, int *fd_out) {
  bool w = splice_w(op);
  *fd_in = w ? splice_other(op) : op->_fd;
  *fd_out = w ? op->_fd : splice_other(op);
  return 0;
}

/* The queue fd is ready for the op and the other is not: the splice waits
 * on the other fd. */
static bool splice_other_blocks(const rx_op *op) {
  bool w = splice_w(op);
  short mine = w ? POLLOUT : POLLIN, theirs = w ? POLLIN : POLLOUT;
  struct pollfd p[2] = {{.fd = op->_fd, .events = mine},
                        {.fd = splice_other(op), .events = theirs}};
  if (poll(p, 2, 0) < 0)
    return false;
  return (p[0].revents & (mine | POLLHUP | POLLERR)) &&
         !(p[1].revents & (theirs | POLLHUP | POLLERR));
}

static uint32_t *otherwait_count(rx_loop *loop, rx_op *op) {
  struct rx__opfd *o = &loop->opfds[splice_other(op)];
  return splice_w(op) ? &o->sp_rd : &o->sp_wr;
}

static void otherwait_begin(rx_loop *loop, rx_op *op) {
  op->_oflags |= RX__OPF_OTHERWAIT;
  (*otherwait_count(loop, op))++;
  sync_want(loop, splice_other(op));
  sync_want(loop, op->_fd);
}

static void otherwait_end(rx_loop *loop, rx_op *op) {
  op->_oflags &= (uint16_t)~RX__OPF_OTHERWAIT;
  (*otherwait_count(loop, op))--;
  sync_want(loop, splice_other(op));
}

/* A splice leaves its queue (unqueue()): the other fd no longer waits for
 * it. */
static void splice_left(rx_loop *loop, rx_op *op) {
  if (op->_oflags & RX__OPF_OTHERWAIT)
    otherwait_end(loop, op);
  loop->opfds[splice_other(op)].spliced--;
}

/* ... and once it is on the done list, or called back (requeue()'s
 * time), a close of the other fd that waited for it goes ahead. */
static void splice_requeue(rx_loop *loop, int other) {
  struct rx__opfd *o = &loop->opfds[other];
  if (o->spliced == 0 && o->nops == 0 && o->closer != NULL &&
      o->closer->_state == RX__OPS_CLOSING)
    close_now(loop, o->closer);
}

/* Every splice of the loop (rare: a walk of the queues). */
#define FOR_EACH_SPLICE(loop, x, body)                                  \
  for (int fd_ = 0; fd_ < (loop)->nopfds; fd_++) {                      \
    for (int qi_ = RX__Q_READ; qi_ <= RX__Q_WRITE; qi_++) {             \
      struct rx__link *q_ = &(loop)->opfds[fd_].q[qi_], *l_ = q_->next; \
      while (l_ != q_) {                                                \
        rx_op *x = op_of(l_);                                           \
        l_ = l_->next;                                                  \
        if (x->_kind == RX__OP_SPLICE) {                                \
          body;                                                         \
        }                                                               \
      }                                                                 \
    }                                                                   \
  }

/* `fd` became `ready`: the splices waiting on it as their other fd try
 * again. */
static void splice_wake(rx_loop *loop, int fd, int ready) {
  FOR_EACH_SPLICE(loop, x, {
    int dir = splice_w(x) ? RX_READ : RX_WRITE;
    if ((x->_oflags & RX__OPF_OTHERWAIT) && splice_other(x) == fd &&
        (ready & dir)) {
      otherwait_end(loop, x);
      sync_want(loop, x->_fd);
      rx__ops_ready(loop, x->_fd, splice_w(x) ? RX_WRITE : RX_READ);
    }
  });
}

static void cancel_splices_to(rx_loop *loop, int fd) {
  FOR_EACH_SPLICE(loop, x, {
    if (splice_other(x) == fd && !(x->_oflags & RX__OPF_CANCEL))
      rx_op_cancel(loop, x);
  });
}

static int is_fifo(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  return S_ISFIFO(st.st_mode) ? 1 : 0;
}

int rx_op_splice(rx_loop *loop, rx_op *op, int fd_in, int64_t off_in,
                 int fd_out, int64_t off_out, unsigned len, unsigned flags,
                 rx_op_cb cb) {
  if (flags & ~(unsigned)(SPLICE_F_MOVE | SPLICE_F_MORE | SPLICE_F_NONBLOCK))
    return -EINVAL;
  if (fd_out == fd_in && fd_in >= 0)
    return -EINVAL;
  int fd = fd_in;
  BEGIN(RX__OP_SPLICE);
  /* fd_out as begin() checked fd_in; on failure the op is still the
   * caller's. */
  int rc = fd_usable(loop, fd_out, RX__OP_SPLICE);
  if (rc != 0)
    return rc;
  int in_fifo = is_fifo(fd_in), out_fifo = is_fifo(fd_out);
  if (in_fifo < 0 || out_fifo < 0)
    return in_fifo < 0 ? in_fifo : out_fifo;
  if (!in_fifo && !out_fifo)
    return -EINVAL; /* splice(2) needs a pipe on one side */
  if (in_fifo && !out_fifo) {
    op->_fd = fd_out;
    op->_oflags |= RX__OPF_SPLICE_W;
  }
  op->_p = NULL;
  op->_len = len;
  op->_uflg = flags;
  op->_u.sp.off_in = (uint64_t)(off_in < 0 ? -1 : off_in);
  op->_u.sp.off_out = (uint64_t)(off_out < 0 ? -1 : off_out);
  op->_done = (uint32_t)(op->_fd == fd_in ? fd_out : fd_in);
  loop->opfds[op->_done].spliced++;
  loop->ops_splices++;
  return submit(loop, op);
}

/* ---------------------------------------------------------------------------
 * Cancel and close.
 */

int rx_op_cancel(rx_loop *loop, rx_op *op) {
  if (loop == NULL || op == NULL)
    return -EINVAL;
  if (op->_loop != loop || op->_state == RX__OPS_IDLE)
    return -ENOENT;
  if ((op->_oflags & RX__OPF_CANCEL) || op->_state == RX__OPS_DONE ||
      op->_state == RX__OPS_CLOSING || op->_kind == RX__OP_CLOSE)
    return -EALREADY;
  op->_oflags |= RX__OPF_CANCEL;
  if (op->_state == RX__OPS_ARMED && (op->_oflags & RX__OPF_KERNEL)) {
    loop->ops->cancel(loop, op);
    return 0;
  }
  /* Queued, parked or emulated: nothing is under way in the kernel. A
   * write in part written reports what it wrote. */
  int res = is_write(op->_kind) && op->_done > 0 ? (int)op->_done : -ECANCELED;
  defer(loop, op, res);
  return 0;
}

/* Every op of the fd has retired: the close itself, by the kernel, or in
 * the wait step (rx__ops_run()). The fd refuses new ops until the close's
 * final callback. The close op was counted as submitted by rx_op_close(). */
static void close_now(rx_loop *loop, rx_op *op) {
  int fd = op->_fd;
  sync_want(loop, fd);
  op->_state = RX__OPS_ARMED;
  if (by_kernel(loop, RX__OP_CLOSE)) {
    op->_oflags |= RX__OPF_KERNEL;
    if (loop->ops->submit(loop, op) == 0) {
      loop->ops_kernel++;
      /* The kernel may close the fd at any submission from now on, and the
       * number then names the next file opened: no longer refused. */
      closed(loop, op);
      return;
    }
    op->_oflags &= (uint16_t)~RX__OPF_KERNEL;
  }
  op->_state = RX__OPS_DONE;
  rx__list_push(&loop->ops_done, &op->_ent.link);
  loop->ops_due++;
}

/* A close's end: the number is free for new ops. */
static void closed(rx_loop *loop, rx_op *op) {
  struct rx__opfd *o = opfd(loop, op->_fd);
  if (o != NULL && o->closer == op)
    o->closer = NULL;
}

/* Cancels every op of an fd not cancelled yet. Cancelling a queued op
 * retires it, which may arm the next: they are taken from the back, so
 * that nothing queued is armed just to be cancelled. */
static void cancel_fd_ops(rx_loop *loop, struct rx__opfd *o) {
  for (int q = 0; q < RX__NQ; q++) {
    struct rx__link *l = o->q[q].prev;
    while (l != &o->q[q]) {
      rx_op *x = op_of(l);
      l = l->prev;
      if (!(x->_oflags & RX__OPF_CANCEL))
        rx_op_cancel(loop, x);
    }
  }
}

int rx_op_close(rx_loop *loop, rx_op *op, int fd, rx_op_cb cb) {
  BEGIN(RX__OP_CLOSE);
  struct rx__opfd *o = &loop->opfds[fd];
  /* The watchers go first, and the kernel's poll with them. */
  rx__io_release(loop, fd);
  op->_loop = loop;
  op->_state = RX__OPS_CLOSING;
  loop->ops_inflight++;
  loop->activecnt++;
  o->closer = op;
  cancel_fd_ops(loop, o);
  if (loop->ops_splices > 0)
    cancel_splices_to(loop, fd);
  o = &loop->opfds[fd];
  if (o->nops == 0 && o->spliced == 0 && op->_state == RX__OPS_CLOSING)
    close_now(loop, op);
  return 0;
}

int rx_op_active(const rx_op *op) {
  return op != NULL && op->_state != RX__OPS_IDLE;
}

/* ---------------------------------------------------------------------------
 * rx_loop_free(): every op ends, with its final callback, before the loop
 * goes. Kernel requests are cancelled and reaped (the kernel may write into
 * their buffers until then); a bounded number of waits, so that a kernel
 * that never answers cannot hang the free.
 */
void rx__ops_free(rx_loop *loop) {
  for (int fd = 0; fd < loop->nopfds; fd++)
    cancel_fd_ops(loop, &loop->opfds[fd]);
  struct rx__link *l = loop->ops_nofd.next;
  while (l != &loop->ops_nofd) {
    rx_op *x = op_of(l);
    l = l->next;
    if (!(x->_oflags & RX__OPF_CANCEL))
      rx_op_cancel(loop, x);
  }
  for (int i = 0; i < 1000 && loop->ops_kernel > 0; i++) {
    if (loop->ops_recancel)
      recancel(loop);
    loop->ops->wait(loop, RX_MSEC(1));
  }
  while (loop->ops_due > 0 || !rx__list_empty(&loop->ops_done))
    rx__ops_run(loop);
  while (!rx__list_empty(&loop->pools))
    rx_pool_free(rx__container_of(loop->pools.next, rx_pool, link));
  rx__free(loop->opfds, sizeof(*loop->opfds) * (size_t)loop->nopfds);
  rx__free(loop->ops_ready, sizeof(*loop->ops_ready) * (size_t)loop->nopfds);
  loop->opfds = NULL;
  loop->ops_ready = NULL;
  loop->nopfds = 0;
}

/* ---------------------------------------------------------------------------
 * Deadlines that passed (loop.c, after the wait).
 */
void rx__ops_expire(rx_loop *loop) {
  struct rx__link due;
  rx__list_init(&due);
  rx__tw_advance(&loop->op_wheel, loop->now, &due);
  struct rx__link *node;
  while ((node = rx__list_shift(&due)) != NULL) {
    rx_op *op = rx__container_of(node, rx_op, _t.ent.link);
    op->_oflags &= (uint16_t)~RX__OPF_TIMED;
    loop->ops_timed--;
    if (op->_kind == RX__OP_TIMEOUT) {
      defer(loop, op, -ETIME);
    } else if (op->_oflags & RX__OPF_KERNEL) {
      /* A manual clock's deadline of an op with the kernel: its
       * -ECANCELED becomes -ETIMEDOUT (rx__op_complete()). */
      loop->ops->cancel(loop, op);
    } else {
      defer(loop, op,
            is_write(op->_kind) && op->_done > 0 ? (int)op->_done : -ETIMEDOUT);
    }
  }
}

void rx_op_init(rx_op *op) {
  if (op != NULL)
    memset(op, 0, sizeof(*op));
}

int rx_op_deadline(rx_op *op, int64_t ns) {
  if (op == NULL || ns < 0)
    return -EINVAL;
  if (op->_state != RX__OPS_IDLE)
    return -EBUSY;
  op->_deadline = ns;
  return 0;
}

int rx_op_timeout(rx_loop *loop, rx_op *op, int64_t ns, rx_op_cb cb) {
  int fd = -1;
  if (ns < 0)
    return -EINVAL;
  BEGIN(RX__OP_TIMEOUT);
  /* Its deadline is the timeout itself: the wheel's when emulated, the
   * kernel's timespec (io_uring.c) otherwise. */
  op->_deadline = ns > 0 ? ns : 1;
  return submit(loop, op);
}

/* ---------------------------------------------------------------------------
 * Buffer pools.
 */

#define POOL_MAX 32768u

/* The kernel filled buffer `id`: the caller holds it now. */
static void pool_take(rx_pool *pool, unsigned id) {
  if (id < pool->count)
    pool->held[id] = 1;
}

/* Buffer `id` goes back where the kernel or the emulation picks from, and
 * a parked op, if any, goes on. */
static void pool_give(rx_pool *pool, unsigned id) {
  rx_loop *loop = pool->loop;
  pool->held[id] = 0;
  pool->puts++;
  if (pool->bgid >= 0)
    loop->ops->pool_put(loop, pool, id);
  else
    pool->free[pool->nfree++] = (uint16_t)id;
  if (rx__list_empty(&pool->parked))
    return;
  rx_op *op = rx__container_of(rx__list_shift(&pool->parked), rx_op, _u.park);
  op->_state = RX__OPS_ARMED;
  if (pool->bgid >= 0) {
    int rc = to_kernel(loop, op);
    if (rc != 0)
      defer(loop, op, rc);
  } else {
    sync_want(loop, op->_fd);
  }
}

static void park(rx_loop *loop, rx_op *op) {
  rx_pool *pool = op->_p;
  op->_state = RX__OPS_PARKED;
  rx__list_push(&pool->parked, &op->_u.park);
  if (!(op->_oflags & RX__OPF_KERNEL))
    sync_want(loop, op->_fd);
}

int rx_pool_new(rx_loop *loop, rx_pool **out, unsigned count, unsigned size) {
  if (out != NULL)
    *out = NULL;
  if (loop == NULL || out == NULL || count == 0 || count > POOL_MAX ||
      (count & (count - 1)) != 0 || size == 0 || size > INT32_MAX ||
      (size_t)count * size > SIZE_MAX / 2)
    return -EINVAL;
  rx_pool *pool = rx__alloc(sizeof(*pool));
  char *mem = rx__alloc((size_t)count * size);
  uint16_t *free_ids = rx__alloc(sizeof(*free_ids) * count);
  uint8_t *held = rx__alloc(count);
  if (pool == NULL || mem == NULL || free_ids == NULL || held == NULL) {
    rx__free(pool, sizeof(*pool));
    rx__free(mem, (size_t)count * size);
    rx__free(free_ids, sizeof(*free_ids) * count);
    rx__free(held, count);
    return -ENOMEM;
  }
  memset(pool, 0, sizeof(*pool));
  memset(held, 0, count);
  pool->loop = loop;
  pool->mem = mem;
  pool->count = count;
  pool->size = size;
  pool->free = free_ids;
  pool->held = held;
  pool->bgid = -1;
  rx__list_init(&pool->parked);
  rx__list_push(&loop->pools, &pool->link);
  if (loop->ops->pool_new == NULL || !by_kernel(loop, RX__OP_RECV_POOL) ||
      loop->ops->pool_new(loop, pool) != 0) {
    pool->bgid = -1;
    for (unsigned i = 0; i < count; i++)
      free_ids[i] = (uint16_t)(count - 1 - i); /* id 0 is taken first */
    pool->nfree = count;
  }
  *out = pool;
  return 0;
}

int rx_pool_free(rx_pool *pool) {
  if (pool == NULL)
    return -EINVAL;
  if (pool->users > 0)
    return -EBUSY;
  if (pool->bgid >= 0)
    pool->loop->ops->pool_free(pool->loop, pool);
  rx__list_unlink(&pool->link);
  unsigned count = pool->count;
  rx__free(pool->mem, (size_t)count * pool->size);
  rx__free(pool->free, sizeof(*pool->free) * count);
  rx__free(pool->held, count);
  rx__free(pool, sizeof(*pool));
  return 0;
}

void *rx_pool_buffer(const rx_pool *pool, unsigned id) {
  if (pool == NULL || id >= pool->count)
    return NULL;
  return pool->mem + (size_t)id * pool->size;
}

unsigned rx_pool_size(const rx_pool *pool) {
  return pool != NULL ? pool->size : 0;
}

int rx_pool_put(rx_pool *pool, unsigned id) {
  if (pool == NULL || id >= pool->count || !pool->held[id])
    return -EINVAL;
  pool_give(pool, id);
  return 0;
}

static int pool_op(rx_loop *loop, rx_op *op, int fd, rx_pool *pool, int flags,
                   unsigned kind, rx_op_cb cb) {
  if (pool == NULL || (loop != NULL && pool->loop != loop))
    return -EINVAL;
  BEGIN(kind);
  op->_p = pool;
  op->_len = pool->size;
  op->_uflg = (uint32_t)flags;
  return submit(loop, op);
}

int rx_op_recv_pool(rx_loop *loop, rx_op *op, int fd, rx_pool *pool, int flags,
                    rx_op_cb cb) {
  return pool_op(loop, op, fd, pool, flags, RX__OP_RECV_POOL, cb);
}

int rx_op_recv_multishot(rx_loop *loop, rx_op *op, int fd, rx_pool *pool,
                         int flags, rx_op_cb cb) {
  return pool_op(loop, op, fd, pool, flags, RX__OP_RECV_MULTI, cb);
}

/* ---------------------------------------------------------------------------
 * After a fork, in the child (loop.c, once the backend has a kernel state
 * of its own). The requests the kernel held are the parent ring's, which
 * goes on with them in the parent; so in the child every op under way at
 * the fork ends with -ECANCELED, on every backend alike (the ops queued
 * behind them go on in the child, as do parked ones). Pools the kernel
 * picked from get a ring of the child's own, holding the buffers nobody
 * holds.
 */
/* Marks the ops of `list` under way at the fork (mark), or ends the marked
 * ones, looking afresh after each: ending one may arm the next. */
static void fork_mark(struct rx__link *list) {
  for (struct rx__link *l = list->next; l != list; l = l->next) {
    rx_op *op = op_of(l);
    if (op->_state == RX__OPS_ARMED && op->_kind != RX__OP_CLOSE)
      op->_oflags |= RX__OPF_FORKED;
  }
}

static void fork_cancel(rx_loop *loop, struct rx__link *list) {
  struct rx__link *l = list->next;
  while (l != list) {
    rx_op *op = op_of(l);
    if (!(op->_oflags & RX__OPF_FORKED)) {
      l = l->next;
      continue;
    }
    op->_oflags &= (uint16_t)~RX__OPF_FORKED;
    if (op->_oflags & RX__OPF_KERNEL) {
      op->_oflags &= (uint16_t)~RX__OPF_KERNEL;
      loop->ops_kernel--;
    }
    defer(loop, op, -ECANCELED);
    l = list->next;
  }
}

void rx__ops_forked(rx_loop *loop) {
  struct rx__link *l;
  for (l = loop->pools.next; l != &loop->pools; l = l->next) {
    rx_pool *pool = rx__container_of(l, rx_pool, link);
    if (pool->bgid < 0)
      continue;
    loop->ops->pool_free(loop, pool); /* the parent's ring: unmapped */
    if (loop->ops->pool_new(loop, pool) != 0) {
      pool->bgid = -1; /* emulated from here on */
      pool->nfree = 0;
      for (unsigned i = pool->count; i-- > 0;)
        if (!pool->held[i])
          pool->free[pool->nfree++] = (uint16_t)i;
    }
  }
  fork_mark(&loop->ops_nofd);
  for (int fd = 0; fd < loop->nopfds; fd++)
    for (int q = 0; q < RX__NQ; q++)
      fork_mark(&loop->opfds[fd].q[q]);
  fork_cancel(loop, &loop->ops_nofd);
  for (int fd = 0; fd < loop->nopfds; fd++)
    for (int q = 0; q < RX__NQ; q++)
      fork_cancel(loop, &loop->opfds[fd].q[q]);
}
