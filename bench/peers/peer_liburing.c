/*
 * bench/peers/peer_liburing.c - the floor of a completion-based echo server:
 * the ping_pongs workload (peer.h) on plain liburing, with no event loop
 * library in between. It is what rx's ping_pongs --ops (peer_rx.c) does,
 * written directly:
 *
 *   - the ring is made with rx's setup flags (backends/io_uring.c, note e):
 *     SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG, a 256-entry SQ and an
 *     8,192-entry CQ, falling back as rx does on older kernels;
 *   - a multishot ACCEPT on the listener, cancelled once every connection
 *     is in;
 *   - per connection one RECV in flight and a SEND per buffer: a completed
 *     recv queues the send of what it read and the next recv into the
 *     other buffer (unless that buffer's send still runs: then the recv
 *     waits for it);
 *   - one io_uring_enter per batch: io_uring_submit_and_wait(ring, 1)
 *     submits what the last batch's completions queued and waits for the
 *     next, then every completion in the ring is handled.
 *
 * pipe_chain is rx's pipe_chain --ops the same way: a one-byte RECV kept
 * in flight on every read end, a SEND per byte forwarded; the setup cancels
 * every recv (ASYNC_CANCEL by user_data), reaps until all are final and
 * queues them again; an iteration submits what is queued and reaps, entering
 * the kernel only when there is something to submit or the kernel flags
 * task work (IORING_SQ_TASKRUN), as rx's non-blocking iteration does.
 *
 * Only ping_pongs and pipe_chain exist here; every other workload fails.
 */
#include "peer.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char peer_library[] = "liburing";

#define SQ_ENTRIES 256
#define CQ_ENTRIES 8192

static struct io_uring ring;

/* rx's flags first, then what older kernels take. */
static int ring_open(void) {
  static const unsigned tries[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  int rc = -EINVAL;
  for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = tries[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    rc = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
    if (rc != -EINVAL)
      break;
  }
  return rc;
}

const char *peer_setup(void) {
  int rc = ring_open();
  if (rc < 0) {
    fprintf(stderr, "io_uring_queue_init_params: %s\n", strerror(-rc));
    return NULL;
  }
  io_uring_queue_exit(&ring);
  return "io_uring";
}

static int only_ping_pongs(void) {
  return peer_fail("peer_liburing has only ping_pongs and pipe_chain");
}

int peer_loop_count(void) {
  return only_ping_pongs();
}
int peer_million_timers(void) {
  return only_ping_pongs();
}
int peer_timer_churn(void) {
  return only_ping_pongs();
}
int peer_async_pummel(void) {
  return only_ping_pongs();
}
int peer_timer_start(void) {
  return only_ping_pongs();
}
int peer_async_send_pending(void) {
  return only_ping_pongs();
}
int peer_loop_pingpong(void) {
  return only_ping_pongs();
}

/* ping_pongs. user_data: the connection's address with the request in its
 * low two bits (a connection is 8-byte aligned), or ACCEPT_TAG. */
enum { REQ_RECV = 0, REQ_SEND0 = 1, REQ_SEND1 = 2, REQ_MASK = 3 };
#define ACCEPT_TAG UINT64_C(1)

struct conn {
  int fd;
  int cur;        /* the buffer the next recv fills */
  int recv_waits; /* that buffer's send is still running */
  int closing;
  int live;       /* requests in flight */
  int sending[2]; /* buffer k's send is in flight */
  int len[2];     /* and its length */
  char buf[2][4096];
};

static int live_conns, bad, accepting;

static struct io_uring_sqe *sqe_get(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (sqe == NULL) { /* the SQ is full: submit it, then there is room */
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void queue_recv(struct conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_recv(sqe, c->fd, c->buf[c->cur], sizeof c->buf[0], 0);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | REQ_RECV);
  c->live++;
}

static void queue_send(struct conn *c, int k, unsigned len) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_send(sqe, c->fd, c->buf[k], len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | (REQ_SEND0 + k));
  c->sending[k] = 1;
  c->len[k] = (int)len;
  c->live++;
}

static void queue_accept(int fd) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_multishot_accept(sqe, fd, NULL, NULL,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, ACCEPT_TAG);
  accepting = 1;
}

static void cancel_accept(void) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_cancel64(sqe, ACCEPT_TAG, 0);
  io_uring_sqe_set_data64(sqe, 0); /* its own completion is ignored */
}

/* A connection is closed when the client closed it or a request failed,
 * once nothing of it is in flight (nothing can then touch the fd). */
static void conn_put(struct conn *c) {
  if (--c->live == 0 && c->closing) {
    close(c->fd);
    free(c);
    live_conns--;
  }
}

static void on_accept(int listen_fd, int res, unsigned flags) {
  if (res >= 0) {
    struct conn *c = malloc(sizeof *c);
    if (!c) {
      close(res);
      bad = 1;
    } else {
      memset(c, 0, offsetof(struct conn, buf));
      c->fd = peer_pp_adopt(res);
      live_conns++;
      queue_recv(c);
    }
  }
  if (flags & IORING_CQE_F_MORE) {
    if (peer_pp_accepted() && accepting == 1) {
      cancel_accept();
      accepting = 2;
    }
    return;
  }
  accepting = 0;
  if (!peer_pp_accepted())
    queue_accept(listen_fd);
}

static void on_recv(struct conn *c, int res) {
  if (res <= 0 || c->closing) {
    c->closing = 1;
    conn_put(c);
    return;
  }
  int k = c->cur;
  queue_send(c, k, (unsigned)res);
  c->cur = k ^ 1;
  if (c->sending[c->cur])
    c->recv_waits = 1;
  else
    queue_recv(c);
  conn_put(c);
}

/* 64-byte messages on loopback are sent whole; a short send is counted as
 * a failure rather than finished (rx finishes it: the 64 bytes never come
 * to that). */
static void on_send(struct conn *c, int k, int res) {
  c->sending[k] = 0;
  if (c->closing) {
    /* nothing more for this connection */
  } else if (res != c->len[k]) {
    bad |= res >= 0; /* an error: the client says what went wrong */
    c->closing = 1;
  } else if (c->recv_waits && c->cur == k) {
    c->recv_waits = 0;
    queue_recv(c);
  }
  conn_put(c);
}

int peer_ping_pongs(void) {
  int rc = ring_open();
  if (rc < 0)
    return peer_fail("cannot make the ring");
  int fd = peer_pp_listen();
  if (fd < 0) {
    io_uring_queue_exit(&ring);
    return -1;
  }
  queue_accept(fd);
  peer_pp_begin();
  while (accepting || live_conns > 0) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY) {
      bad = 1;
      break;
    }
    io_uring_for_each_cqe(&ring, head, cqe) {
      uint64_t ud = io_uring_cqe_get_data64(cqe);
      n++;
      if (ud == ACCEPT_TAG) {
        on_accept(fd, cqe->res, cqe->flags);
      } else if (ud != 0) {
        struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)REQ_MASK);
        unsigned req = (unsigned)(ud & REQ_MASK);
        if (req == REQ_RECV)
          on_recv(c, cqe->res);
        else
          on_send(c, (int)req - REQ_SEND0, cqe->res);
      }
    }
    io_uring_cq_advance(&ring, n);
  }
  rc = peer_pp_end();
  io_uring_queue_exit(&ring);
  if (bad && rc == 0)
    return peer_fail("a request failed");
  return rc;
}

/* pipe_chain. user_data: pair << 2 | request (0: a cancel, ignored). */
enum { PIPE_RECV = 1, PIPE_SEND = 2 };

static char *pipe_byte, *pipe_sending;
static int pipe_live, pipe_bad;

static void pipe_queue_recv(int i) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_recv(sqe, peer_pipe_fd[2 * i], &pipe_byte[i], 1, 0);
  io_uring_sqe_set_data64(sqe, (uint64_t)i << 2 | PIPE_RECV);
  pipe_live++;
}

static void pipe_complete(uint64_t ud, int res) {
  int i = (int)(ud >> 2);
  if ((ud & 3) == PIPE_SEND) {
    pipe_sending[i] = 0;
    pipe_bad |= res != 1;
    return;
  }
  if ((ud & 3) != PIPE_RECV)
    return;
  pipe_live--;
  if (res != 1) { /* -ECANCELED by the setup, or a failure */
    pipe_bad |= res != -ECANCELED;
    return;
  }
  int w = peer_pipe_forward(i);
  if (w >= 0) {
    if (pipe_sending[w]) { /* as in peer_rx.c: never seen */
      pipe_bad |= send(peer_pipe_fd[2 * w + 1], "e", 1, MSG_NOSIGNAL) != 1;
    } else {
      struct io_uring_sqe *sqe = sqe_get();
      io_uring_prep_send(sqe, peer_pipe_fd[2 * w + 1], "e", 1, MSG_NOSIGNAL);
      io_uring_sqe_set_data64(sqe, (uint64_t)w << 2 | PIPE_SEND);
      pipe_sending[w] = 1;
    }
  }
  pipe_queue_recv(i);
}

static void pipe_iterate(void) {
  unsigned kflags = IO_URING_READ_ONCE(*ring.sq.kflags);
  if (io_uring_sq_ready(&ring) > 0)
    io_uring_submit_and_get_events(&ring);
  else if (kflags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))
    io_uring_get_events(&ring);
  /* Copied out first: the completions queue SQEs, and a full SQ is
   * submitted on the spot. */
  for (;;) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    uint64_t ud[64];
    int res[64];
    io_uring_for_each_cqe(&ring, head, cqe) {
      ud[n] = io_uring_cqe_get_data64(cqe);
      res[n] = cqe->res;
      if (++n == 64)
        break;
    }
    if (n == 0)
      break;
    io_uring_cq_advance(&ring, n);
    for (unsigned k = 0; k < n; k++)
      pipe_complete(ud[k], res[k]);
  }
}

static void pipe_setup(void) {
  if (pipe_live > 0) {
    for (int i = 0; i < P.pipes; i++) {
      struct io_uring_sqe *sqe = sqe_get();
      io_uring_prep_cancel64(sqe, (uint64_t)i << 2 | PIPE_RECV, 0);
      io_uring_sqe_set_data64(sqe, 0);
    }
    for (uint64_t spins = 0; pipe_live > 0 && spins < 10000000; spins++)
      pipe_iterate();
  }
  for (int i = 0; i < P.pipes; i++)
    pipe_queue_recv(i);
  pipe_iterate();
}

int peer_pipe_chain(void) {
  if (ring_open() < 0)
    return peer_fail("cannot make the ring");
  pipe_byte = calloc((size_t)P.pipes, 1);
  pipe_sending = calloc((size_t)P.pipes, 1);
  if (!pipe_byte || !pipe_sending || peer_pipe_open() < 0) {
    free(pipe_byte);
    free(pipe_sending);
    io_uring_queue_exit(&ring);
    return peer_fail("setup failed");
  }
  int rc = peer_pipe_drive(pipe_setup, pipe_iterate);
  io_uring_queue_exit(&ring); /* ends what is in flight */
  peer_pipe_close();
  free(pipe_byte);
  free(pipe_sending);
  if (pipe_bad && rc == 0)
    return peer_fail("a request failed");
  return rc;
}
