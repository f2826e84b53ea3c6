/*
 * fuzz_ops.c - completion operations (rx_op_*) driven by a byte script,
 * checked against a model of their contract (rx.h, "Completion
 * operations").
 *
 * The objects: sixteen op slots, each op in a heap block of its own with
 * its buffer, iovecs, msghdr and address, so that a block can be freed
 * (also inside its own final callback) and any later touch of it by rx is
 * caught: by ASan in the libFuzzer build; in the gcc replay build the
 * block is poisoned and kept until the end of the input. The fds ops run
 * on, called targets: three AF_UNIX stream socketpairs and a pipe (eight
 * ends; the second socketpair and the pipe with buffers small enough for
 * a few writes to fill), a listening TCP socket on 127.0.0.1 and two TCP
 * client sockets. Two of them have fd numbers above 100 and 200, so that
 * rx's per-fd table grows while other fds have ops queued.
 * A target closed through rx_op_close() may be opened again (a socketpair
 * once both its ends are closed): the kernel gives the same numbers back,
 * so a stale op meeting the new file would show.
 *
 * Each operation is an opcode byte and its arguments: submit an op of any
 * kind (read, write, readv, writev, recv, send, recvmsg, sendmsg, accept,
 * multishot accept, connect, shutdown, poll, nop, close) on a slot and a
 * target; a splice between a target and the slot's own pipe (in: the bytes
 * it moved are read from the pipe as the op's; out: the pipe holds the
 * op's pattern, which goes out as a write's); cancel a slot; close a target;
 * give a slot an action for its next final callback (free the block, submit
 * again, free and submit a new op in a new block, cancel another slot, close a
 * target, cancel itself); run the loop without waiting; reopen a target; read a
 * socket directly; free a block; settle.
 *
 * The checks. A submitting call (and rx_op_cancel()) returns what the
 * model expects: 0, -EBUSY for a submitted op, -EBADF for a closed fd or
 * one being closed (or 0 once that close is under way: such an op is on
 * whatever file the number names, and only its callback is checked),
 * -ECANCELED while the loop is being freed; no callback
 * runs inside one. Every accepted submission gets exactly one final
 * callback, on the block it was submitted with; a refused one gets none;
 * only a multishot accept gets callbacks with RX_OP_F_MORE, and
 * rx_op_active() is 1 in those, 0 in the final one and agrees with the
 * model after every step. -ECANCELED only after a cancel, a close of the
 * fd or while freeing the loop. A close's callback comes after the final
 * callbacks of every op its fd had, and its result is 0. Results are in
 * range for their kind: a write gives all of its bytes unless cancelled,
 * refused by the file, or its peer went away; a read's bytes, appended in
 * callback order to the stream of its direction, must be the bytes the
 * writes of the other end gave, in their submission order (each write's
 * bytes are a pattern of its own, and its result says how many went out);
 * 0 (EOF) only once the peer shut down or closed. At the end of an input
 * the loop is freed: every op still submitted gets its final callback
 * there, every byte written to a reader that stayed open is read (by the
 * ops or after them), and /proc/self/fd holds as many fds as before the
 * input. The backend comes from $RX_BACKEND; RX_URING_NO_OPS=all makes
 * io_uring emulate every kind. Where every op is emulated (epoll, or that
 * mask), a settle also checks progress: a nop, a cancelled op and a close
 * end within a few non-blocking iterations. FZ_TRACE=1 prints each step,
 * submission and callback; FZ_OPS_TOLERATE names known failures to fuzz
 * past (below, and fuzz/regress/fuzz_ops/README).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "rx.h"

#define MAX_STEPS 256
#define NSLOT 16
#define NCHAN 4 /* 0-2 socketpairs, 3 a pipe (end 0 reads, end 1 writes) */
#define PIPE_CHAN 3
#define T_LISTEN (2 * NCHAN)
#define T_CLIENT (T_LISTEN + 1)
#define NCLIENT 2
#define NTARGET (T_CLIENT + NCLIENT)
#define NDIR (2 * NCHAN) /* a channel's direction: by its writing end */
#define BUFSZ 4096
#define SETTLE_RUNS 8

enum kind {
  K_READ,
  K_WRITE,
  K_READV,
  K_WRITEV,
  K_RECV,
  K_SEND,
  K_RECVMSG,
  K_SENDMSG,
  K_ACCEPT,
  K_ACCEPT_MULTI,
  K_CONNECT,
  K_SHUTDOWN,
  K_POLL,
  K_NOP,
  K_CLOSE,
  NKIND,
  /* Not drawn with the others (so that the corpus keeps its meaning):
   * a step of its own. splice(2) through the slot's own pipe: in, from a
   * channel end into the pipe, whose bytes the harness then reads as the
   * op's; out, from the pipe, filled by the harness with the op's pattern,
   * into a channel end. */
  K_SPLICE_IN = NKIND,
  K_SPLICE_OUT
};

enum action {
  A_NONE,
  A_FREE,        /* free the block */
  A_RESUBMIT,    /* the same op again, on the same block */
  A_FREE_NEW,    /* free the block, submit a new op in a new one */
  A_CANCEL,      /* cancel another slot */
  A_CLOSE,       /* close a target with another slot */
  A_CANCEL_SELF, /* the op is the caller's: -ENOENT */
  A_SUBMIT,      /* submit another slot */
  NACTION
};

struct slot;

/* An op's heap block: the op first, so that the callback's pointer is the
 * block's. */
struct blk {
  rx_op op;
  struct slot *owner;
  struct iovec iov[3];
  struct msghdr msg;
  struct sockaddr_in addr;
  socklen_t alen;
  uint8_t buf[BUFSZ];
};

/* The model of one op slot. */
struct slot {
  struct blk *blk; /* NULL while freed */
  int submitted;   /* from an accepted submission to its final callback */
  int kind;
  int target;     /* -1 for a nop */
  unsigned epoch; /* the target's, at submission */
  int fd;         /* the target's fd, at submission */
  int orphan;     /* accepted while its fd's close was under way: on whatever
                     file the number names then; only its callback is checked */
  int dir;        /* a channel read or write: its direction, else -1 */
  size_t rec;     /* a channel write: its record in the direction */
  unsigned len;
  uint8_t fl; /* the flags byte of the submission */
  int dontwait;
  int cancel_asked; /* by rx_op_cancel(), a close of its fd, or the free */
  int action;
  uint8_t arg[4];
  uint64_t more;   /* RX_OP_F_MORE callbacks */
  uint64_t serial; /* of its last accepted submission, from 1 */
  int has_pipe;    /* a splice's other end: pipe[0] reads, pipe[1] writes */
  int pipe[2];
};

/* An fd the ops run on. */
struct target {
  int fd;         /* -1 once closed */
  int closing;    /* a close op is submitted on it */
  unsigned epoch; /* counts closes: an op's target is (index, epoch) */
};

/* A channel write, in submission order. */
struct wrec {
  uint32_t wid;
  int res; /* INT32_MIN until its final callback */
};

/* One direction of a channel: what its writing end's write ops sent, and
 * what the other end's reads got, in callback order. */
struct dir {
  struct wrec *recs;
  size_t nrec, cap;
  uint32_t nwid;
  uint8_t *rbuf;
  size_t rlen, rcap;
  size_t vidx, voff, vpos; /* verified up to: record, offset in it, byte */
  int eof_ok;              /* the writer shut down or closed: reads may end */
  int broken;              /* writes may fail (EPIPE, reset) */
  int lossy; /* the reader closed or shut down: bytes may be lost */
};

#define RES_UNKNOWN INT32_MIN

static rx_loop *loop;
static int strict; /* every op kind emulated: progress is checked */
static int freeing;
static int in_call; /* inside a submitting call */
static uint64_t nsubmits;
static int norphans; /* orphan ops submitted */
/* FZ_OPS_TOLERATE (a comma-separated list) lets fuzzing go on past
 * failures already known and reported.
 * close-order: a close's callback may come before the last
 * final callback of its fd's ops (still before the run that made it
 * returns), so that fuzzing can go on past that known failure. */
static int tolerate_close_order;
/* FZ_OPS_TOLERATE=eagain: a read, readv, recvmsg, write, writev or sendmsg
 * (eagain_kind()) may end with -EAGAIN, or a write short of its length
 * without a cause, as io_uring sometimes completes them on an O_NONBLOCK
 * socket; fuzzing goes on past that known failure. */
static int tolerate_eagain;
/* FZ_OPS_TOLERATE=close-reuse: an op on a new fd whose number the kernel
 * took from a close op whose callback has not run yet may be refused with
 * -EBADF. */
static int tolerate_close_reuse;
static int trace; /* FZ_TRACE set: each step, submission and callback */
static struct slot slots[NSLOT];
static struct target targets[NTARGET];
static struct dir dirs[NDIR];
static struct sockaddr_in listen_addr;
static struct blk *graveyard[NSLOT * (MAX_STEPS + 4) * 2];
static size_t ngraves;
static uint8_t scratch[65536];

static int submit_op(struct slot *s, int kind, int t, unsigned len, uint8_t fl);
static void do_cancel(struct slot *s);

/* ---------------------------------------------------------------------------
 * Targets and directions.
 */

static int chan_of(int t) {
  return t < T_LISTEN ? t / 2 : -1;
}

/* The direction a channel end writes into, or -1. */
static int wdir(int t) {
  return t < T_LISTEN ? t : -1;
}

/* The direction a channel end reads from, or -1. */
static int rdir(int t) {
  return t < T_LISTEN ? (t ^ 1) : -1;
}

/* Whether a read of `kind` on target `t` is one the file takes. */
static int read_ok(int kind, int t) {
  int c = chan_of(t);
  if (c < 0)
    return 0;
  if (c == PIPE_CHAN)
    return (t & 1) == 0 && (kind == K_READ || kind == K_READV);
  return 1;
}

static int write_ok(int kind, int t) {
  int c = chan_of(t);
  if (c < 0)
    return 0;
  if (c == PIPE_CHAN)
    return (t & 1) == 1 && (kind == K_WRITE || kind == K_WRITEV);
  return 1;
}

/* The kinds whose kernel path honours the file's O_NONBLOCK when io_uring
 * runs them in a worker (the read-write path, and ____sys_sendmsg() and
 * ____sys_recvmsg()); IORING_OP_SEND and IORING_OP_RECV do not. */
static int eagain_kind(int kind) {
  return kind == K_READ || kind == K_READV || kind == K_WRITE ||
         kind == K_WRITEV || kind == K_SENDMSG || kind == K_RECVMSG;
}

static uint8_t pattern(uint32_t wid, size_t j) {
  return (uint8_t)(wid * 151u + (uint32_t)j * 7u + (uint32_t)(j >> 8) * 13u +
                   1u);
}

/* Checks the bytes read so far against the writes whose results are
 * known. With `final` every result is known, and nothing may be read
 * beyond them; with `complete` also, everything written must have been
 * read. */
static void dir_verify(struct dir *d, int final, int complete) {
  while (d->vidx < d->nrec) {
    struct wrec *r = &d->recs[d->vidx];
    if (r->res == RES_UNKNOWN)
      break;
    size_t n = r->res > 0 ? (size_t)r->res : 0;
    if (d->voff >= n) {
      d->vidx++;
      d->voff = 0;
      continue;
    }
    if (d->vpos >= d->rlen)
      break;
    if (d->rbuf[d->vpos] != pattern(r->wid, d->voff)) {
      fprintf(stderr,
              "stream: byte %zu is %#x, want %#x (write %zu of %zu, id %u, "
              "offset %zu of %d)\n",
              d->vpos, d->rbuf[d->vpos], pattern(r->wid, d->voff), d->vidx,
              d->nrec, r->wid, d->voff, r->res);
      FZ_CHECK(!"a read got bytes out of the writes' order");
    }
    d->vpos++;
    d->voff++;
  }
  if (final) {
    FZ_CHECK(d->vidx == d->nrec || d->vpos == d->rlen);
    if (d->vpos != d->rlen)
      fprintf(stderr, "stream: %zu bytes read, %zu written\n", d->rlen,
              d->vpos);
    FZ_CHECK(d->vpos == d->rlen); /* nothing read that was not written */
    if (complete && d->vidx != d->nrec)
      fprintf(stderr, "stream: %zu bytes read; write %zu of %zu not all\n",
              d->rlen, d->vidx, d->nrec);
    if (complete)
      FZ_CHECK(d->vidx == d->nrec); /* nothing written was lost */
  }
}

static void dir_append(struct dir *d, const uint8_t *p, size_t n) {
  if (d->rlen + n > d->rcap) {
    size_t cap = d->rcap ? d->rcap : 4096;
    while (cap < d->rlen + n)
      cap *= 2;
    uint8_t *b = realloc(d->rbuf, cap);
    FZ_CHECK(b != NULL);
    d->rbuf = b;
    d->rcap = cap;
  }
  memcpy(d->rbuf + d->rlen, p, n);
  d->rlen += n;
}

static size_t dir_record(struct dir *d, uint32_t wid) {
  if (d->nrec == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 64;
    struct wrec *r = realloc(d->recs, cap * sizeof(*r));
    FZ_CHECK(r != NULL);
    d->recs = r;
    d->cap = cap;
  }
  d->recs[d->nrec].wid = wid;
  d->recs[d->nrec].res = RES_UNKNOWN;
  return d->nrec++;
}

static void dir_reset(struct dir *d) {
  free(d->recs);
  free(d->rbuf);
  memset(d, 0, sizeof(*d));
}

/* Reads what a channel end holds, straight from the socket, when no read
 * op of it is submitted (one would take bytes in between). */
static void drain(int t) {
  int dd = rdir(t);
  /* A closing target's number may be another file's already. */
  if (dd < 0 || targets[t].fd < 0 || targets[t].closing || !read_ok(K_READ, t))
    return;
  for (int i = 0; i < NSLOT; i++) {
    struct slot *s = &slots[i];
    if (s->submitted && s->target == t && s->dir == dd)
      return;
  }
  for (;;) {
    ssize_t n = read(targets[t].fd, scratch, sizeof(scratch));
    if (n <= 0)
      break;
    dir_append(&dirs[dd], scratch, (size_t)n);
  }
}

static int tcp_socket(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  FZ_CHECK(fd >= 0);
  return fd;
}

/* `fd`, moved to the first free number >= `min` (none if min < 0): the
 * op table grows (and moves) when such an fd gets its first op while
 * other fds have ops queued. */
static int high(int fd, int min) {
  if (min < 0)
    return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, min);
  FZ_CHECK(n >= min);
  FZ_CHECK(close(fd) == 0);
  return n;
}

/* Opens target `t` again, if it is closed (a channel: both ends). */
static void reopen(int t) {
  /* An orphan op would meet the new file that gets its number. */
  if (t < 0 || t >= NTARGET || norphans > 0)
    return;
  int c = chan_of(t);
  if (c >= 0) {
    int a = 2 * c, b = a + 1, sv[2];
    if (targets[a].fd >= 0 || targets[b].fd >= 0 || targets[a].closing ||
        targets[b].closing)
      return;
    /* Every op of both ends has ended: the streams are whole. */
    dir_verify(&dirs[a], 1, 0);
    dir_verify(&dirs[b], 1, 0);
    dir_reset(&dirs[a]);
    dir_reset(&dirs[b]);
    if (c == PIPE_CHAN)
      FZ_CHECK(pipe2(sv, O_NONBLOCK | O_CLOEXEC) == 0);
    else
      FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          0, sv) == 0);
    /* Channel 1 and the pipe get small buffers, so that writes fill
     * them: short writes, the rest resubmitted, writes queued behind it. */
    if (c == 1) {
      int small = 4096;
      for (int i = 0; i < 2; i++)
        FZ_CHECK(setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &small,
                            sizeof(small)) == 0);
    } else if (c == PIPE_CHAN) {
      FZ_CHECK(fcntl(sv[1], F_SETPIPE_SZ, 4096) >= 0);
    }
    targets[a].fd = sv[0];
    targets[b].fd = high(sv[1], c == 2 ? 100 : -1);
    return;
  }
  if (targets[t].fd >= 0 || targets[t].closing)
    return;
  if (t == T_LISTEN) {
    int fd = tcp_socket();
    socklen_t len = sizeof(listen_addr);
    memset(&listen_addr, 0, sizeof(listen_addr));
    listen_addr.sin_family = AF_INET;
    listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FZ_CHECK(bind(fd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) ==
             0);
    FZ_CHECK(getsockname(fd, (struct sockaddr *)&listen_addr, &len) == 0);
    FZ_CHECK(listen(fd, 8) == 0);
    targets[t].fd = fd;
  } else {
    targets[t].fd = high(tcp_socket(), t == T_CLIENT + 1 ? 200 : -1);
  }
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  FZ_CHECK(d != NULL);
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* ---------------------------------------------------------------------------
 * Blocks.
 */

static struct blk *blk_get(struct slot *s) {
  if (s->blk == NULL) {
    s->blk = calloc(1, sizeof(*s->blk));
    FZ_CHECK(s->blk != NULL);
    s->blk->owner = s;
  }
  return s->blk;
}

/* The caller's free: ASan catches a later touch; without it the block is
 * poisoned and kept, and a callback for it fails the owner check (or
 * crashes on the poisoned function pointer). */
static void blk_free(struct slot *s) {
  struct blk *b = s->blk;
  if (b == NULL)
    return;
  FZ_CHECK(!s->submitted);
  s->blk = NULL;
  if (FZ_ASAN) {
    free(b);
    return;
  }
  memset(b, 0xdb, sizeof(*b));
  b->owner = NULL;
  if (ngraves < sizeof(graveyard) / sizeof(graveyard[0]))
    graveyard[ngraves++] = b;
  else
    free(b);
}

/* ---------------------------------------------------------------------------
 * Callbacks.
 */

static void check_result(struct slot *s, int res) {
  int cancelled = s->cancel_asked || freeing;
  int t = s->target;
  struct dir *d = s->dir >= 0 ? &dirs[s->dir] : NULL;

  FZ_CHECK(res > -4096);
  if (s->orphan) {
    norphans--;
    if ((s->kind == K_ACCEPT || s->kind == K_ACCEPT_MULTI) && res >= 0)
      FZ_CHECK(close(res) == 0);
    return;
  }
  if (res == -ECANCELED)
    FZ_CHECK(cancelled);
  switch (s->kind) {
  case K_READ:
  case K_READV:
  case K_RECV:
  case K_RECVMSG:
    FZ_CHECK(res <= (int)s->len);
    if (d != NULL && res > 0) {
      dir_append(d, s->blk->buf, (size_t)res);
    } else if (d != NULL && res == 0) {
      if (s->len > 0 && !d->eof_ok)
        fprintf(stderr, "read of %u bytes: EOF, the writer is open\n", s->len);
      FZ_CHECK(s->len == 0 || d->eof_ok);
    } else if (d != NULL && res < 0 && !cancelled) {
      if (!(d->eof_ok || (res == -EAGAIN && s->dontwait)))
        fprintf(stderr, "read kind %d len %u on target %d: %d\n", s->kind,
                s->len, t, res);
      FZ_CHECK(d->eof_ok || (res == -EAGAIN && s->dontwait) ||
               (res == -EAGAIN && tolerate_eagain && eagain_kind(s->kind)));
    }
    break;
  case K_WRITE:
  case K_WRITEV:
  case K_SEND:
  case K_SENDMSG:
    FZ_CHECK(res <= (int)s->len);
    FZ_CHECK(res != 0 || s->len == 0);
    if (d != NULL) {
      FZ_CHECK(d->recs[s->rec].res == RES_UNKNOWN);
      d->recs[s->rec].res = res;
      if (res != (int)s->len && !cancelled && !d->broken && !s->dontwait)
        fprintf(stderr, "write kind %d len %u on target %d: %d\n", s->kind,
                s->len, t, res);
      FZ_CHECK(res == (int)s->len || cancelled || d->broken || s->dontwait ||
               (tolerate_eagain && eagain_kind(s->kind)));
    }
    break;
  case K_SPLICE_IN:
    FZ_CHECK(res <= (int)s->len);
    if (res > 0) { /* what it moved is in the slot's pipe */
      FZ_CHECK(read(s->pipe[0], scratch, (size_t)res) == res);
      if (d != NULL)
        dir_append(d, scratch, (size_t)res);
    } else if (d != NULL && res == 0) {
      FZ_CHECK(s->len == 0 || d->eof_ok);
    } else if (d != NULL && res < 0 && !cancelled) {
      if (!d->eof_ok)
        fprintf(stderr, "splice in of %u on target %d: %d\n", s->len, t, res);
      FZ_CHECK(d->eof_ok);
    }
    break;
  case K_SPLICE_OUT:
    FZ_CHECK(res <= (int)s->len);
    FZ_CHECK(res != 0 || s->len == 0);
    if (d != NULL) { /* not all-or-nothing: a record of what went out */
      FZ_CHECK(d->recs[s->rec].res == RES_UNKNOWN);
      d->recs[s->rec].res = res;
      if (res < 0 && !cancelled && !d->broken)
        fprintf(stderr, "splice out of %u on target %d: %d\n", s->len, t, res);
      FZ_CHECK(res >= 0 || cancelled || d->broken);
    }
    while (read(s->pipe[0], scratch, sizeof(scratch)) > 0)
      continue; /* what it left */
    break;
  case K_ACCEPT:
  case K_ACCEPT_MULTI:
    if (res >= 0) {
      FZ_CHECK(t == T_LISTEN);
      FZ_CHECK(close(res) == 0);
    }
    break;
  case K_CONNECT:
  case K_SHUTDOWN:
    FZ_CHECK(res <= 0);
    break;
  case K_POLL: {
    int ev = 1 + s->fl % 3;
    FZ_CHECK(res < 0 || (res & ~ev) == 0);
    break;
  }
  case K_NOP:
    FZ_CHECK(res == 0 || (cancelled && res == -ECANCELED));
    break;
  case K_CLOSE:
    if (res != 0)
      fprintf(stderr, "close of target %d: %d\n", t, res);
    FZ_CHECK(res == 0);
    /* Every op of the fd has had its final callback. */
    for (int i = 0; i < NSLOT; i++) {
      struct slot *o = &slots[i];
      if (o != s && o->submitted && !o->orphan && o->target == t &&
          o->epoch == s->epoch && !tolerate_close_order) {
        fprintf(stderr, "close of target %d: slot %d (kind %d) still on it\n",
                t, i, o->kind);
        FZ_CHECK(!"a close called back before an op of its fd");
      }
    }
    FZ_CHECK(targets[t].closing);
    targets[t].fd = -1;
    targets[t].closing = 0;
    targets[t].epoch++;
    break;
  default:
    break;
  }
}

static void run_action(struct slot *s) {
  int a = s->action;
  uint8_t *arg = s->arg;
  s->action = A_NONE;
  switch (a) {
  case A_FREE:
    blk_free(s);
    break;
  case A_RESUBMIT:
    submit_op(s, s->kind, s->target < 0 ? 0 : s->target, s->len, s->fl);
    break;
  case A_FREE_NEW:
    blk_free(s);
    submit_op(s, arg[0] % NKIND, arg[1] % NTARGET, arg[2] * 16u, arg[3]);
    break;
  case A_CANCEL:
    do_cancel(&slots[arg[0] % NSLOT]);
    break;
  case A_CLOSE:
    submit_op(&slots[arg[0] % NSLOT], K_CLOSE, arg[1] % NTARGET, 0, 0);
    break;
  case A_CANCEL_SELF: {
    in_call++;
    int rc = rx_op_cancel(loop, &s->blk->op);
    in_call--;
    FZ_CHECK(rc == -ENOENT);
    break;
  }
  case A_SUBMIT:
    submit_op(&slots[arg[0] % NSLOT], arg[1] % NKIND, arg[2] % NTARGET,
              arg[3] * 8u, arg[0] >> 4);
    break;
  default:
    break;
  }
}

static void op_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  struct blk *b = (struct blk *)(void *)op;
  struct slot *s = b->owner;

  if (trace)
    fprintf(stderr, "  callback slot %d kind %d: %d flags %#x\n",
            s != NULL ? (int)(s - slots) : -1, s != NULL ? s->kind : -1, res,
            flags);
  FZ_CHECK(l == loop);
  FZ_CHECK(in_call == 0); /* never inside a submitting call */
  FZ_CHECK(s != NULL && s->blk == b);
  FZ_CHECK(s->submitted);
  if (flags & RX_OP_F_MORE) {
    FZ_CHECK(flags == RX_OP_F_MORE);
    FZ_CHECK(s->kind == K_ACCEPT_MULTI);
    FZ_CHECK(rx_op_active(op) == 1);
    FZ_CHECK(res >= 0);
    FZ_CHECK(close(res) == 0);
    s->more++;
    return;
  }
  FZ_CHECK(flags == 0);
  FZ_CHECK(rx_op_active(op) == 0);
  s->submitted = 0;
  check_result(s, res);
  run_action(s);
}

/* ---------------------------------------------------------------------------
 * Submitting, cancelling.
 */

/* Splits the block's buffer, `len` bytes, into 1-3 iovecs. */
static int split(struct blk *b, unsigned len, uint8_t fl) {
  int n = 1 + (fl >> 2) % 3;
  unsigned at = 0;
  for (int i = 0; i < n; i++) {
    unsigned part = i == n - 1 ? len - at : len / (unsigned)n;
    b->iov[i].iov_base = b->buf + at;
    b->iov[i].iov_len = part;
    at += part;
  }
  return n;
}

static int recv_flags(uint8_t fl) {
  static const int f[] = {0, 0, MSG_DONTWAIT, MSG_WAITALL};
  return f[fl % 4];
}

/* Effects of a shutdown or a close of channel end `t` on the model, from
 * its submission on. */
static void end_effects(int t, int wr, int rd) {
  if (chan_of(t) < 0)
    return;
  if (wr) {
    dirs[wdir(t)].eof_ok = 1;
    dirs[wdir(t)].broken = 1;
  }
  if (rd) {
    dirs[rdir(t)].eof_ok = 1;
    dirs[rdir(t)].broken = 1;
    dirs[rdir(t)].lossy = 1;
  }
}

/* Submits an op of `kind` on slot `s` and target `t` (its fd, or -1 once
 * it is closed), and checks the call's result against the model. */
static int submit_op(struct slot *s, int kind, int t, unsigned len,
                     uint8_t fl) {
  /* A submitted op's buffers are rx's: a call that must fail with -EBUSY
   * gets the spare block's. */
  static struct blk spare;
  rx_op *op = &blk_get(s)->op;
  struct blk *b = s->submitted ? &spare : s->blk;
  int fd = kind == K_NOP ? -1 : targets[t].fd;
  int expect, rc, dd = -1, dontwait = 0;
  size_t rec = 0;

  if (len > BUFSZ)
    len = BUFSZ;
  int splice = kind == K_SPLICE_IN || kind == K_SPLICE_OUT;
  /* Pipe to pipe, a splice is ordered with its fd_in's reads alone (rx.h):
   * into the pipe channel, it would not keep its place among the writes. */
  if (kind == K_SPLICE_OUT && chan_of(t) == PIPE_CHAN)
    return -EINVAL;
  if (splice && !s->has_pipe && norphans > 0)
    return -EBADF; /* the pipe could take the number of an orphan's file */
  if (splice && !s->has_pipe) {
    FZ_CHECK(pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) == 0);
    s->has_pipe = 1;
  }
  /* A second close of a closing target would close whatever file takes
   * the number next (a multishot accept's connection): a caller's double
   * close, not rx's to prevent. */
  if (kind == K_CLOSE && targets[t].closing)
    return -EBADF;
  /* The number of a target still closing may already be another target's
   * (the kernel closed it, and a reopen took the number): an op there would
   * act on that target, which no caller who keeps track of its fds does. */
  if (kind != K_NOP && fd >= 0 && targets[t].closing) {
    for (int u = 0; u < NTARGET; u++)
      if (u != t && targets[u].fd == fd)
        return -EBADF;
    for (int i = 0; i < NSLOT; i++) /* or a slot's pipe's */
      if (slots[i].has_pipe &&
          (slots[i].pipe[0] == fd || slots[i].pipe[1] == fd))
        return -EBADF;
  }
  if (s->submitted)
    expect = -EBUSY;
  else if (freeing)
    expect = -ECANCELED;
  else if (kind != K_NOP && (fd < 0 || targets[t].closing))
    expect = -EBADF;
  else
    expect = 0;

  switch (kind) {
  case K_READ:
  case K_READV:
  case K_RECV:
  case K_RECVMSG:
    if (read_ok(kind, t))
      dd = rdir(t);
    break;
  case K_WRITE:
  case K_WRITEV:
  case K_SEND:
  case K_SENDMSG:
    if (write_ok(kind, t))
      dd = wdir(t);
    break;
  case K_SPLICE_IN:
    if (read_ok(K_READ, t))
      dd = rdir(t);
    break;
  case K_SPLICE_OUT:
    if (write_ok(K_WRITE, t))
      dd = wdir(t);
    break;
  default:
    break;
  }

  /* A write's bytes: a pattern of its own (the record is kept only if the
   * submission is accepted). */
  uint32_t wid = dd >= 0 ? dirs[dd].nwid + 1 : 0;
  if (kind == K_WRITE || kind == K_WRITEV || kind == K_SEND ||
      kind == K_SENDMSG || kind == K_SPLICE_OUT) {
    if (expect == 0)
      for (unsigned j = 0; j < len; j++)
        b->buf[j] = pattern(wid, j);
  }
  if (kind == K_SPLICE_OUT && expect == 0 && len > 0)
    FZ_CHECK(write(s->pipe[1], b->buf, len) == (ssize_t)len);
  memset(&b->msg, 0, sizeof(b->msg));

  in_call++;
  switch (kind) {
  case K_READ:
    rc = rx_op_read(loop, op, fd, b->buf, len, -1, op_cb);
    break;
  case K_WRITE:
    rc = rx_op_write(loop, op, fd, b->buf, len, -1, op_cb);
    break;
  case K_READV:
    rc = rx_op_readv(loop, op, fd, b->iov, split(b, len, fl), -1, op_cb);
    break;
  case K_WRITEV:
    rc = rx_op_writev(loop, op, fd, b->iov, split(b, len, fl), -1, op_cb);
    break;
  case K_RECV:
    dontwait = recv_flags(fl) == MSG_DONTWAIT;
    rc = rx_op_recv(loop, op, fd, b->buf, len, recv_flags(fl), op_cb);
    break;
  case K_SEND:
    dontwait = fl & 1;
    rc = rx_op_send(loop, op, fd, b->buf, len,
                    (fl & 1 ? MSG_DONTWAIT : 0) | (fl & 2 ? MSG_NOSIGNAL : 0),
                    op_cb);
    break;
  case K_RECVMSG:
    dontwait = recv_flags(fl) == MSG_DONTWAIT;
    b->msg.msg_iov = b->iov;
    b->msg.msg_iovlen = (size_t)split(b, len, fl);
    rc = rx_op_recvmsg(loop, op, fd, &b->msg, recv_flags(fl), op_cb);
    break;
  case K_SENDMSG:
    dontwait = fl & 1;
    b->msg.msg_iov = b->iov;
    b->msg.msg_iovlen = (size_t)split(b, len, fl);
    rc = rx_op_sendmsg(loop, op, fd, &b->msg, fl & 1 ? MSG_DONTWAIT : 0, op_cb);
    break;
  case K_ACCEPT: {
    static const int af[] = {0, SOCK_NONBLOCK, SOCK_CLOEXEC,
                             SOCK_NONBLOCK | SOCK_CLOEXEC};
    b->alen = sizeof(b->addr);
    rc = rx_op_accept(loop, op, fd, fl & 1 ? (struct sockaddr *)&b->addr : NULL,
                      fl & 1 ? &b->alen : NULL, af[(fl >> 1) % 4], op_cb);
    break;
  }
  case K_ACCEPT_MULTI:
    rc = rx_op_accept_multishot(loop, op, fd, fl & 1 ? SOCK_CLOEXEC : 0, op_cb);
    break;
  case K_CONNECT:
    b->addr = listen_addr;
    rc = rx_op_connect(loop, op, fd, (struct sockaddr *)&b->addr,
                       sizeof(b->addr), op_cb);
    break;
  case K_SHUTDOWN:
    rc = rx_op_shutdown(loop, op, fd, fl % 3, op_cb);
    break;
  case K_POLL:
    rc = rx_op_poll(loop, op, fd, 1 + fl % 3, op_cb);
    break;
  case K_NOP:
    rc = rx_op_nop(loop, op, op_cb);
    break;
  case K_SPLICE_IN:
    rc = rx_op_splice(loop, op, fd, -1, s->pipe[1], -1, len,
                      fl & 1 ? SPLICE_F_MOVE : 0, op_cb);
    break;
  case K_SPLICE_OUT:
    rc = rx_op_splice(loop, op, s->pipe[0], -1, fd, -1, len,
                      fl & 1 ? SPLICE_F_MORE : 0, op_cb);
    break;
  default:
    rc = rx_op_close(loop, op, fd, op_cb);
    break;
  }
  in_call--;
  if (trace)
    fprintf(stderr,
            "  submit slot %d kind %d target %d fd %d len %u fl %#x: %d\n",
            (int)(s - slots), kind, t, fd, len, fl, rc);
  /* Once a close is under way (rx.h: its fd's ops have retired and the
   * close is submitted), the number is free for new ops: a submission on
   * a target still closing may be accepted. */
  int orphan = expect == -EBADF && fd >= 0 && targets[t].closing && rc == 0;
  if (orphan)
    expect = 0;
  if (rc == -EBADF && expect == 0 && tolerate_close_reuse)
    for (int i = 0; i < NSLOT; i++)
      if (slots[i].submitted && slots[i].kind == K_CLOSE && slots[i].fd == fd)
        expect = -EBADF;
  if (rc != expect)
    fprintf(stderr, "submit kind %d on target %d (fd %d): %d, expected %d\n",
            kind, t, fd, rc, expect);
  FZ_CHECK(rc == expect);
  if (rc != 0)
    return rc;

  if (orphan)
    dd = -1;
  if (dd >= 0 && (kind == K_WRITE || kind == K_WRITEV || kind == K_SEND ||
                  kind == K_SENDMSG || kind == K_SPLICE_OUT)) {
    dirs[dd].nwid = wid;
    rec = dir_record(&dirs[dd], wid);
  }
  s->submitted = 1;
  s->serial = ++nsubmits;
  s->kind = kind;
  s->target = kind == K_NOP ? -1 : t;
  s->fd = fd;
  s->orphan = orphan;
  s->epoch = kind == K_NOP ? 0 : targets[t].epoch;
  s->dir = dd;
  s->rec = rec;
  s->len = len;
  s->fl = fl;
  s->dontwait = dontwait;
  s->cancel_asked = 0;
  s->more = 0;
  if (orphan) {
    norphans++;
  } else if (kind == K_SHUTDOWN) {
    int how = fl % 3;
    end_effects(t, how != SHUT_RD, how != SHUT_WR);
  } else if (kind == K_CLOSE) {
    targets[t].closing = 1;
    end_effects(t, 1, 1);
    /* Every op of the fd is cancelled. */
    for (int i = 0; i < NSLOT; i++) {
      struct slot *o = &slots[i];
      if (o != s && o->submitted && o->target == t && o->epoch == s->epoch)
        o->cancel_asked = 1;
    }
  }
  return 0;
}

static void do_cancel(struct slot *s) {
  if (s->blk == NULL)
    return;
  int was = s->cancel_asked;
  in_call++;
  int rc = rx_op_cancel(loop, &s->blk->op);
  in_call--;
  if (trace)
    fprintf(stderr, "  cancel slot %d: %d\n", (int)(s - slots), rc);
  if (!s->submitted) {
    FZ_CHECK(rc == -ENOENT);
    return;
  }
  if (was || s->kind == K_CLOSE)
    FZ_CHECK(rc == -EALREADY);
  else
    /* -EALREADY also for an op that has retired and waits for its
     * callback (an emulated write done at once). */
    FZ_CHECK(rc == 0 || rc == -EALREADY);
  if (s->kind != K_CLOSE)
    s->cancel_asked = 1;
}

/* ---------------------------------------------------------------------------
 * The loop.
 */

static void check_state(void) {
  for (int i = 0; i < NSLOT; i++) {
    struct slot *s = &slots[i];
    if (s->blk != NULL)
      FZ_CHECK(rx_op_active(&s->blk->op) == s->submitted);
  }
  for (int i = 0; i < NDIR; i++)
    dir_verify(&dirs[i], 0, 0);
  /* Outside callbacks, no op is left on an fd that was closed. */
  for (int i = 0; i < NSLOT; i++) {
    struct slot *s = &slots[i];
    if (s->submitted && s->target >= 0 && !s->orphan)
      FZ_CHECK(s->epoch == targets[s->target].epoch);
  }
}

static void run_nowait(void) {
  FZ_CHECK(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  check_state();
}

/* A few iterations; where every op is emulated, what must end by then
 * has ended: nops, cancelled ops, closes. Only what was so when the
 * settle began: callbacks in its last iteration may submit and cancel. */
static void settle(void) {
  uint64_t owed[NSLOT];
  for (int i = 0; i < NSLOT; i++) {
    struct slot *s = &slots[i];
    int due = s->kind == K_NOP ||
              (strict && (s->cancel_asked || s->kind == K_CLOSE));
    owed[i] = s->submitted && due ? s->serial : 0;
  }
  for (int i = 0; i < SETTLE_RUNS; i++)
    run_nowait();
  for (int i = 0; i < NSLOT; i++) {
    struct slot *s = &slots[i];
    int late = owed[i] != 0 && s->submitted && s->serial == owed[i];
    if (late)
      fprintf(stderr, "settle: slot %d kind %d target %d cancel %d open\n", i,
              s->kind, s->target, s->cancel_asked);
    FZ_CHECK(!late);
  }
}

static void setup(void) {
  struct rx_loop_options opts = {0};
  const char *mask = getenv("RX_URING_NO_OPS");
  int rc = rx_loop_new(&loop, &opts);
  if (rc != 0) {
    fprintf(stderr, "fuzz_ops: no loop: %d\n", rc);
    abort();
  }
  const char *tol = getenv("FZ_OPS_TOLERATE");
  tolerate_close_order = tol != NULL && strstr(tol, "close-order") != NULL;
  tolerate_eagain = tol != NULL && strstr(tol, "eagain") != NULL;
  tolerate_close_reuse = tol != NULL && strstr(tol, "close-reuse") != NULL;
  trace = getenv("FZ_TRACE") != NULL;
  strict = strcmp(rx_backend_name(loop), "epoll") == 0 ||
           (mask != NULL && strcmp(mask, "all") == 0);
  freeing = 0;
  in_call = 0;
  norphans = 0;
  memset(slots, 0, sizeof(slots));
  for (int t = 0; t < NTARGET; t++) {
    targets[t].fd = -1;
    targets[t].closing = 0;
    targets[t].epoch = 0;
  }
  for (int t = 0; t < NTARGET; t++)
    reopen(t);
}

static void teardown(int fds_before) {
  for (int i = 0; i < 4; i++)
    run_nowait();
  /* The free cancels what is left; each op gets its final callback
   * there. */
  freeing = 1;
  FZ_CHECK(rx_loop_free(loop) == 0);
  loop = NULL;
  for (int i = 0; i < NSLOT; i++) {
    if (slots[i].submitted)
      fprintf(stderr, "slot %d (kind %d): no final callback\n", i,
              slots[i].kind);
    FZ_CHECK(!slots[i].submitted);
  }
  /* What the readers did not take is still in their sockets. */
  for (int t = 0; t < T_LISTEN; t++)
    drain(t);
  for (int dd = 0; dd < NDIR; dd++) {
    int reader = dd ^ 1;
    dir_verify(&dirs[dd], 1,
               !dirs[dd].lossy && targets[reader].fd >= 0 &&
                   read_ok(K_READ, reader));
    dir_reset(&dirs[dd]);
  }
  for (int t = 0; t < NTARGET; t++)
    if (targets[t].fd >= 0)
      FZ_CHECK(close(targets[t].fd) == 0);
  for (int i = 0; i < NSLOT; i++) {
    if (slots[i].has_pipe) {
      FZ_CHECK(close(slots[i].pipe[0]) == 0);
      FZ_CHECK(close(slots[i].pipe[1]) == 0);
    }
    if (slots[i].blk != NULL) {
      free(slots[i].blk);
      slots[i].blk = NULL;
    }
  }
  for (size_t i = 0; i < ngraves; i++)
    free(graveyard[i]);
  ngraves = 0;
  int fds_after = count_fds();
  if (fds_after != fds_before)
    fprintf(stderr, "fds: %d before, %d after\n", fds_before, fds_after);
  FZ_CHECK(fds_after == fds_before);
}

static unsigned length(uint8_t v) {
  if (v < 8)
    return v;
  if (v < 128)
    return v * 8u;
  return (v - 127u) * 32u;
}

static void step(struct fz_input *in) {
  uint8_t code = fz_u8(in);
  struct slot *s = &slots[fz_below(in, NSLOT)];

  if (trace)
    fprintf(stderr, "step %u slot %d\n", code % 10, (int)(s - slots));
  switch (code % 10) {
  case 0:
  case 1:
  case 2:
  case 3: {
    int kind = fz_below(in, NKIND);
    int t = fz_below(in, NTARGET);
    unsigned len = length(fz_u8(in));
    submit_op(s, kind, t, len, fz_u8(in));
    break;
  }
  case 4:
    do_cancel(s);
    break;
  case 5:
    submit_op(s, K_CLOSE, fz_below(in, NTARGET), 0, 0);
    break;
  case 6:
  case 7:
    run_nowait();
    break;
  case 8:
    s->action = fz_below(in, NACTION);
    for (int i = 0; i < 4; i++)
      s->arg[i] = fz_u8(in);
    break;
  default:
    if (code >= 192) { /* 199, 209, ..., 249: a splice */
      int t = fz_below(in, NTARGET);
      unsigned len = length(fz_u8(in));
      uint8_t fl = fz_u8(in);
      submit_op(s, fl & 2 ? K_SPLICE_OUT : K_SPLICE_IN, t, len, fl);
      break;
    }
    switch ((code >> 4) % 4) {
    case 0:
      reopen(fz_below(in, NTARGET));
      break;
    case 1:
      drain(fz_below(in, T_LISTEN));
      break;
    case 2:
      if (!s->submitted)
        blk_free(s);
      break;
    default:
      settle();
      break;
    }
    break;
  }
  check_state();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* A write to a pipe or socket whose reader is gone raises SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fz_input in;
  int fds_before = count_fds();

  fz_init(&in, data, size);
  setup();
  for (int i = 0; i < MAX_STEPS && !fz_done(&in); i++)
    step(&in);
  settle();
  teardown(fds_before);
  return 0;
}
