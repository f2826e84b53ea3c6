/*
 * test-op.c - tests reactor/op.c (and the io_uring backend's half of it):
 * completion operations. Every test runs on io_uring, on epoll, and on
 * io_uring with every op kind masked from the probe (RX_URING_NO_OPS=all,
 * so emulated there), with the same assertions.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "internal.h"

_Static_assert(sizeof(rx_op) <= 128, "an op is at most 128 bytes");

/* What one op saw: every callback, its results and flags. */
struct rec {
  rx_op op;
  int calls;   /* callbacks of any kind */
  int finals;  /* callbacks without RX_OP_F_MORE */
  int res;     /* the last result */
  int more;    /* callbacks with RX_OP_F_MORE */
  int in_call; /* set while the submitting call runs */
  int during_call;
  int seq; /* when its final callback came, in final callbacks */
};
static int final_seq;

static void rec_cb(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  struct rec *r = rx__container_of(op, struct rec, op);
  r->calls++;
  r->res = res;
  if (r->in_call)
    r->during_call++;
  if (flags & RX_OP_F_MORE) {
    r->more++;
    if (res >= 0)
      close(res); /* a multishot accept's connection */
  } else {
    r->finals++;
    r->seq = ++final_seq;
  }
}

static void run_until_final(struct rec *r, int n) {
  int done = 0;
  for (int i = 0; i < 2000 && !done; i++) {
    rxt_assert_verified(rxt.loop);
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
    done = 1;
    for (int k = 0; k < n; k++)
      done &= r[k].finals > 0;
  }
  assert_true(done);
}

/* A listening TCP socket on 127.0.0.1 and its address. */
static int listener(struct sockaddr_in *addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  memset(addr, 0, sizeof(*addr));
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
  socklen_t len = sizeof(*addr);
  assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
  assert_int_equal(listen(fd, 64), 0);
  return fd;
}

/* ---------------------------------------------------------------------------
 * Basics: bad input, a nop, a send and a recv.
 */

static void test_bad_input(void **state) {
  (void)state;
  struct rec r = {0};
  char buf[4];
  assert_int_equal(rx_op_nop(NULL, &r.op, rec_cb), -EINVAL);
  assert_int_equal(rx_op_nop(rxt.loop, NULL, rec_cb), -EINVAL);
  assert_int_equal(rx_op_nop(rxt.loop, &r.op, NULL), -EINVAL);
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, -1, buf, 4, 0, rec_cb), -EBADF);
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, 0, NULL, 4, 0, rec_cb), -EINVAL);
  assert_int_equal(rx_op_poll(rxt.loop, &r.op, 0, 0, rec_cb), -EINVAL);
  assert_int_equal(rx_op_poll(rxt.loop, &r.op, 0, RX_ERROR, rec_cb), -EINVAL);
  assert_int_equal(rx_op_shutdown(rxt.loop, &r.op, 0, 7, rec_cb), -EINVAL);
  assert_int_equal(rx_op_accept(rxt.loop, &r.op, 0, NULL, NULL, 0x10, rec_cb),
                   -EINVAL);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), -ENOENT);
  assert_int_equal(rx_op_active(&r.op), 0);
  assert_null(rx_op_support(NULL));
  const char *support = rx_op_support(rxt.loop);
  print_message("ops: %s\n", support);
  const char *mask = getenv("RX_URING_NO_OPS");
  if (!rxt_is_uring(rxt.loop) || (mask != NULL && strcmp(mask, "all") == 0))
    assert_non_null(strstr(support, "all emulated"));
  else if (mask != NULL) /* the mixed run of tests/meson.build */
    assert_string_equal(support, "emulated: recv send accept recv_multishot");
  else
    assert_string_equal(support, "all by the kernel");
  /* Submitted twice: refused, and the first submission is unharmed. */
  assert_int_equal(rx_op_nop(rxt.loop, &r.op, rec_cb), 0);
  assert_int_equal(rx_op_nop(rxt.loop, &r.op, rec_cb), -EBUSY);
  assert_int_equal(rx_op_active(&r.op), 1);
  run_until_final(&r, 1);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.res, 0);
  assert_int_equal(rx_op_active(&r.op), 0);
  assert_int_equal(r.calls, 1);
  /* A bad fd reaches the kernel (or the emulated syscall): its errno. */
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, 1000, buf, 4, 0, rec_cb), 0);
  run_until_final(&r, 1);
  assert_int_equal(r.res, -EBADF);
}

/* Emulated ops are level-triggered: an RX_ET watcher and emulated ops on
 * one fd refuse each other. */
static void test_et_watchers_and_ops(void **state) {
  (void)state;
  if (rxt_is_uring(rxt.loop) && getenv("RX_URING_NO_OPS") == NULL)
    return; /* the kernel's ops need no registration: nothing to refuse */
  int sv[2];
  rxt_pair(sv);
  struct rec r = {0};
  char in[4];
  rx_io w;
  rx_io_init(&w, NULL, sv[1], RX_READ | RX_ET);
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, sv[1], in, 4, 0, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(rx_io_start(rxt.loop, &w), -EINVAL);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), 0);
  run_until_final(&r, 1);
  rxt_close_pair(sv);
}

static void test_nop_not_inside_call(void **state) {
  (void)state;
  struct rec r = {0};
  r.in_call = 1;
  assert_int_equal(rx_op_nop(rxt.loop, &r.op, rec_cb), 0);
  r.in_call = 0;
  assert_int_equal(r.calls, 0);
  /* An op keeps rx_run() going until its final callback. */
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.finals, 1);
}

/* An op reaped by the busy poll's look (a wait that does not block), whose
 * callback leaves nothing active: rx_run() returns without sleeping,
 * instead of sleeping out the timeout it had computed before the look
 * (here the unreferenced guard's; without one, no limit at all). */
static void test_op_done_in_busy_poll(void **state) {
  (void)state;
  rx_timer guard;
  int guard_fired = 0;
  rx_timer_init(&guard, rxt_count_fires, RX_SEC(10), 0);
  guard.data = &guard_fired;
  assert_int_equal(rx_timer_start(rxt.loop, &guard), 0);
  rx_unref(rxt.loop);
  rxt.loop->poll_window = rxt.loop->poll_max; /* as after a fast doorbell */
  struct rec r = {0};
  assert_int_equal(rx_op_nop(rxt.loop, &r.op, rec_cb), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(r.finals, 1);
  assert_int_equal(guard_fired, 0);
  struct rx_metrics m;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m), 0);
  assert_int_equal(m.idle_ns, 0); /* it never slept */
  rx_ref(rxt.loop);
  rx_timer_stop(rxt.loop, &guard);
}

static void test_send_recv(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct rec s = {0}, r = {0};
  char out[] = "hello", in[16] = {0};
  r.in_call = 1;
  s.in_call = 1;
  assert_int_equal(
      rx_op_recv(rxt.loop, &r.op, sv[1], in, sizeof(in), 0, rec_cb), 0);
  assert_int_equal(rx_op_send(rxt.loop, &s.op, sv[0], out, 5, 0, rec_cb), 0);
  r.in_call = s.in_call = 0;
  assert_int_equal(s.during_call + r.during_call, 0);
  run_until_final(&r, 1);
  run_until_final(&s, 1);
  assert_int_equal(s.res, 5);
  assert_int_equal(r.res, 5);
  assert_memory_equal(in, "hello", 5);
  assert_int_equal(s.finals + r.finals, 2);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Cancel: exactly one final callback, whatever the interleaving.
 */

static void test_cancel_pending_recv(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct rec r = {0};
  char in[8];
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, sv[1], in, 8, 0, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 2); /* now in the kernel, or armed */
  assert_int_equal(r.calls, 0);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), 0);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), -EALREADY);
  assert_int_equal(r.calls, 0);
  run_until_final(&r, 1);
  assert_int_equal(r.res, -ECANCELED);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 1);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), -ENOENT);
  /* Cancelled at once, before any wait, and the data sent after it is not
   * taken by the cancelled recv: a later plain read gets it. */
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, sv[1], in, 8, 0, rec_cb), 0);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), 0);
  run_until_final(&r, 1);
  assert_int_equal(r.calls, 2);
  rxt_send(sv[0], 'x');
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(r.calls, 2);
  assert_int_equal(read(sv[1], in, 8), 1);
  rxt_close_pair(sv);
}

/* A cancel that loses the race: the recv's data is there already. Its
 * final callback has the real result (or -ECANCELED if the cancel won):
 * exactly one either way, and no byte is lost. */
static void test_cancel_race(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  int got = 0;
  for (int i = 0; i < 200; i++) {
    struct rec r = {0};
    char in[8];
    assert_int_equal(rx_op_recv(rxt.loop, &r.op, sv[1], in, 8, 0, rec_cb), 0);
    if (i & 1)
      rxt_run_nowait(rxt.loop, 1);
    rxt_send(sv[0], 'a');
    if (i & 2)
      rxt_run_nowait(rxt.loop, 1);
    int rc = rx_op_cancel(rxt.loop, &r.op);
    assert_true(rc == 0 || (rc == -ENOENT && r.finals == 1));
    run_until_final(&r, 1);
    rxt_run_nowait(rxt.loop, 1);
    assert_int_equal(r.finals, 1);
    assert_int_equal(r.calls, 1);
    if (r.res == 1)
      got++;
    else
      assert_int_equal(r.res, -ECANCELED);
    /* What the recv did not take is still in the socket. */
    got += rxt_drain(sv[1]) > 0;
  }
  assert_int_equal(got, 200);
  rxt_close_pair(sv);
}

/* A send cancelled in the batch that submits it, on a full socket whose
 * reading side is shut down. On io_uring the send's first poll fires at
 * once (EPOLLRDHUP), its retry waits as task work, where a cancel finds no
 * request, and then blocks in an io-wq worker until the peer reads; rx
 * asks again. The send ends -ECANCELED and the close after it completes,
 * though the peer never reads. */
static void cancelled_count(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  rec_cb(loop, op, res, flags);
  struct rec *r = rx__container_of(op, struct rec, op);
  int *count = op->data; /* finals, and whether both came */
  if (r->finals == 1 && ++count[0] == 2)
    count[1] = 1;
}

static void test_cancel_send_between_homes(void **state) {
  (void)state;
  static char buf[4096];
  for (int i = 0; i < 10; i++) {
    int sv[2];
    rxt_pair(sv);
    int small = 4096;
    assert_int_equal(
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    while (send(sv[0], buf, sizeof(buf), MSG_DONTWAIT) > 0)
      continue;
    assert_int_equal(shutdown(sv[0], SHUT_RD), 0);
    struct rec s = {0}, c = {0};
    int done[2] = {0, 0};
    s.op.data = c.op.data = done;
    assert_int_equal(
        rx_op_send(rxt.loop, &s.op, sv[0], buf, 2336, 0, cancelled_count), 0);
    if (i & 1)
      rxt_run_nowait(rxt.loop, 1);
    assert_int_equal(rx_op_close(rxt.loop, &c.op, sv[0], cancelled_count), 0);
    assert_true(rxt_run_until(rxt.loop, &done[1], RX_SEC(10)));
    assert_int_equal(s.finals, 1);
    assert_int_equal(s.res, -ECANCELED);
    assert_int_equal(c.res, 0);
    assert_true(s.seq < c.seq);
    close(sv[1]);
  }
}

/* 100,000 arm/cancel cycles of recvs and accepts leave the fd table as it
 * was (no dup per op, no leaked accepted fd). */
static void test_arm_cancel_cycles_no_fd_leak(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct sockaddr_in addr;
  int lfd = listener(&addr);
  int before = rxt_count_fds();
  struct rec r = {0}, a = {0};
  char in[8];
  for (int i = 0; i < 100000; i++) {
    assert_int_equal(rx_op_recv(rxt.loop, &r.op, sv[1], in, 8, 0, rec_cb), 0);
    assert_int_equal(
        rx_op_accept(rxt.loop, &a.op, lfd, NULL, NULL, SOCK_CLOEXEC, rec_cb),
        0);
    if (i % 64 == 0)
      rxt_run_nowait(rxt.loop, 1);
    assert_int_equal(rx_op_cancel(rxt.loop, &r.op), 0);
    assert_int_equal(rx_op_cancel(rxt.loop, &a.op), 0);
    run_until_final(&r, 1);
    run_until_final(&a, 1);
    assert_int_equal(r.res, -ECANCELED);
    assert_int_equal(a.res, -ECANCELED);
    r.finals = a.finals = 0;
  }
  assert_int_equal(r.calls, 100000);
  assert_int_equal(a.calls, 100000);
  assert_int_equal(rxt_count_fds(), before);
  close(lfd);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Order: writes of random sizes through a small send buffer arrive whole
 * and in order; reads are taken in submission order.
 */

#define NWRITES 100000
static unsigned char wbuf[1 << 16];

struct writer {
  rx_op op[8];
  unsigned next; /* writes submitted */
  unsigned done; /* writes completed */
  uint64_t bytes;
  int fd;
  unsigned seed;
  int bad;
};

static void write_cb(rx_loop *loop, rx_op *op, int res, unsigned flags);

static void write_next(rx_loop *loop, struct writer *w, rx_op *op) {
  if (w->next >= NWRITES)
    return;
  unsigned len = 1 + rand_r(&w->seed) % 3000;
  /* Each write starts where the stream is: the receiver checks the bytes
   * against their offset. */
  unsigned start = (unsigned)(w->bytes % 251);
  op->data = w;
  w->bytes += len;
  w->next++;
  assert_int_equal(rx_op_send(loop, op, w->fd, wbuf + start, len, 0, write_cb),
                   0);
}

static void write_cb(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  struct writer *w = op->data;
  (void)flags;
  if (res <= 0)
    w->bad++;
  w->done++;
  write_next(loop, w, op);
}

struct reader {
  rx_io io;
  uint64_t bytes;
  int bad;
  int eof;
};

static void read_cb(rx_loop *loop, rx_io *io, int revents) {
  (void)loop;
  (void)revents;
  struct reader *r = io->data;
  unsigned char buf[8192];
  ssize_t n;
  while ((n = read(io->fd, buf, sizeof(buf))) > 0) {
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] != (unsigned char)((r->bytes + (uint64_t)i) % 251))
        r->bad++;
    r->bytes += (uint64_t)n;
  }
}

static void test_writes_in_order(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(wbuf); i++)
    wbuf[i] = (unsigned char)(i % 251);
  int sv[2];
  rxt_pair(sv);
  int small = 4096;
  assert_int_equal(
      setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  struct writer w = {.fd = sv[0], .seed = 7};
  struct reader r = {0};
  rx_io_init(&r.io, read_cb, sv[1], RX_READ);
  r.io.data = &r;
  assert_int_equal(rx_io_start(rxt.loop, &r.io), 0);
  /* Eight writes in flight at a time, on one fd: rx queues them. */
  for (int i = 0; i < 8; i++)
    write_next(rxt.loop, &w, &w.op[i]);
  int64_t t0 = rxt_clock();
  while ((w.done < NWRITES || r.bytes < w.bytes) &&
         rxt_clock() - t0 < RX_SEC(120))
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(w.done, NWRITES);
  assert_int_equal(w.bad, 0);
  assert_int_equal(r.bad, 0);
  assert_true(r.bytes == w.bytes);
  rx_io_stop(rxt.loop, &r.io);
  rxt_close_pair(sv);
}

/* Three recvs queued on one fd take three sends' bytes in their order. */
static void test_reads_in_order(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct rec r[3];
  memset(r, 0, sizeof(r));
  char in[3][4];
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        rx_op_read(rxt.loop, &r[i].op, sv[1], in[i], 1, -1, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 2);
  for (int i = 0; i < 3; i++) {
    rxt_send(sv[0], (char)('a' + i));
    run_until_final(&r[i], 1);
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].res, 1);
    assert_int_equal(in[i][0], 'a' + i);
  }
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Accept, connect, shutdown, poll.
 */

static void test_accept_connect(void **state) {
  (void)state;
  struct sockaddr_in addr;
  int lfd = listener(&addr);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct rec a = {0}, k = {0}, sh = {0}, p = {0};
  struct sockaddr_in peer;
  socklen_t plen = sizeof(peer);
  assert_int_equal(rx_op_accept(rxt.loop, &a.op, lfd, (struct sockaddr *)&peer,
                                &plen, SOCK_CLOEXEC | SOCK_NONBLOCK, rec_cb),
                   0);
  assert_int_equal(rx_op_connect(rxt.loop, &k.op, c, (struct sockaddr *)&addr,
                                 sizeof(addr), rec_cb),
                   0);
  run_until_final(&a, 1);
  run_until_final(&k, 1);
  assert_int_equal(k.res, 0);
  assert_true(a.res >= 0);
  assert_int_equal(peer.sin_family, AF_INET);
  int s = a.res;
  /* shutdown(SHUT_WR) of the client: the server's poll sees EOF. */
  assert_int_equal(rx_op_poll(rxt.loop, &p.op, s, RX_READ, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(p.calls, 0);
  assert_int_equal(rx_op_shutdown(rxt.loop, &sh.op, c, SHUT_WR, rec_cb), 0);
  run_until_final(&sh, 1);
  run_until_final(&p, 1);
  assert_int_equal(sh.res, 0);
  assert_int_equal(p.res, RX_READ);
  char b;
  assert_int_equal(read(s, &b, 1), 0);
  /* A connect refused: its errno. */
  struct rec k2 = {0};
  int c2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  close(lfd);
  assert_int_equal(rx_op_connect(rxt.loop, &k2.op, c2, (struct sockaddr *)&addr,
                                 sizeof(addr), rec_cb),
                   0);
  run_until_final(&k2, 1);
  assert_int_equal(k2.res, -ECONNREFUSED);
  close(c2);
  close(s);
  close(c);
}

static void test_accept_multishot(void **state) {
  (void)state;
  struct sockaddr_in addr;
  int lfd = listener(&addr);
  struct rec a = {0};
  assert_int_equal(
      rx_op_accept_multishot(rxt.loop, &a.op, lfd, SOCK_CLOEXEC, rec_cb), 0);
  int c[5];
  for (int i = 0; i < 5; i++) {
    c[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c[i], (struct sockaddr *)&addr, sizeof(addr)), 0);
  }
  for (int i = 0; i < 200 && a.more < 5; i++)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(a.more, 5);
  assert_int_equal(a.finals, 0);
  assert_int_equal(rx_op_cancel(rxt.loop, &a.op), 0);
  run_until_final(&a, 1);
  assert_int_equal(a.res, -ECANCELED);
  assert_int_equal(a.finals, 1);
  for (int i = 0; i < 5; i++)
    close(c[i]);
  close(lfd);
}

/* splice: socket to pipe and pipe to socket; a splice whose fd_out is full
 * waits without spinning and goes on when the peer reads; a close of either
 * fd cancels it, and the close calls back after it. */
static void fill(int fd) {
  static char junk[4096];
  while (send(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
    continue;
}

static void test_splice(void **state) {
  (void)state;
  int sv[2], p[2];
  rxt_pair(sv);
  assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  struct rec r = {0};
  /* Bad input. */
  assert_int_equal(
      rx_op_splice(rxt.loop, &r.op, sv[1], -1, p[1], -1, 8, 0x80000, rec_cb),
      -EINVAL);
  assert_int_equal(
      rx_op_splice(rxt.loop, &r.op, sv[1], -1, -1, -1, 8, 0, rec_cb), -EBADF);
  assert_int_equal(
      rx_op_splice(rxt.loop, &r.op, -1, -1, p[1], -1, 8, 0, rec_cb), -EBADF);
  assert_int_equal(
      rx_op_splice(rxt.loop, &r.op, p[1], -1, p[1], -1, 8, 0, rec_cb), -EINVAL);
  assert_false(rx_op_active(&r.op));

  /* Socket to pipe: the splice waits for data. */
  assert_int_equal(
      rx_op_splice(rxt.loop, &r.op, sv[1], -1, p[1], -1, 64, 0, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(r.calls, 0);
  assert_int_equal(write(sv[0], "hello", 5), 5);
  run_until_final(&r, 1);
  assert_int_equal(r.res, 5);
  char got[64];
  assert_int_equal(read(p[0], got, sizeof(got)), 5);
  assert_memory_equal(got, "hello", 5);

  /* Pipe to a full socket: it waits, asleep, until the peer reads. */
  int small = 4096;
  assert_int_equal(
      setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  fill(sv[0]);
  char out[1000];
  memset(out, 'p', sizeof(out));
  assert_int_equal(write(p[1], out, sizeof(out)), (int)sizeof(out));
  memset(&r, 0, sizeof(r));
  assert_int_equal(rx_op_splice(rxt.loop, &r.op, p[0], -1, sv[0], -1,
                                sizeof(out), 0, rec_cb),
                   0);
  int never = 0;
  uint64_t before = rx_iteration(rxt.loop);
  rxt_run_until(rxt.loop, &never, RX_MSEC(100));
  assert_int_equal(r.calls, 0);
  assert_true(rx_iteration(rxt.loop) - before < 50); /* no spin */
  while (r.finals == 0) {
    rxt_drain(sv[1]);
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  }
  assert_true(r.res > 0 && r.res <= (int)sizeof(out));

  /* A splice out of a pipe is ordered with its socket's writes: queued
   * behind a send to the full socket, its bytes come after the send's. */
  rxt_drain(sv[1]);
  fill(sv[0]);
  assert_int_equal(write(p[1], out, sizeof(out)), (int)sizeof(out));
  struct rec hdr = {0};
  memset(&r, 0, sizeof(r));
  assert_int_equal(rx_op_send(rxt.loop, &hdr.op, sv[0], "HDR", 3, 0, rec_cb),
                   0);
  assert_int_equal(rx_op_splice(rxt.loop, &r.op, p[0], -1, sv[0], -1,
                                sizeof(out), 0, rec_cb),
                   0);
  char *seen = calloc(1, 1 << 20);
  size_t nseen = 0;
  assert_non_null(seen);
  for (int i = 0; i < 20000 && (r.finals == 0 || hdr.finals == 0); i++) {
    ssize_t n;
    while (nseen < (1u << 20) &&
           (n = read(sv[1], seen + nseen, (1u << 20) - nseen)) > 0)
      nseen += (size_t)n;
    assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
  }
  assert_int_equal(hdr.res, 3);
  assert_true(r.res > 0);
  ssize_t n;
  while ((n = read(sv[1], seen + nseen, (1u << 20) - nseen)) > 0)
    nseen += (size_t)n;
  size_t first = 0;
  while (first < nseen && seen[first] == 0)
    first++; /* fill()'s zeros */
  assert_true(first + 3 + (size_t)r.res <= nseen);
  assert_memory_equal(seen + first, "HDR", 3);
  assert_int_equal(seen[first + 3], 'p');
  free(seen);

  /* A close of fd_out cancels a waiting splice and calls back after it. */
  fill(sv[0]);
  assert_int_equal(write(p[1], out, sizeof(out)), (int)sizeof(out));
  memset(&r, 0, sizeof(r));
  struct rec c = {0};
  assert_int_equal(rx_op_splice(rxt.loop, &r.op, p[0], -1, sv[0], -1,
                                sizeof(out), 0, rec_cb),
                   0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(r.calls, 0);
  assert_int_equal(rx_op_close(rxt.loop, &c.op, sv[0], rec_cb), 0);
  for (int i = 0; i < 2000 && (r.finals == 0 || c.finals == 0); i++)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(r.finals, 1);
  assert_int_equal(c.finals, 1);
  assert_true(r.res == -ECANCELED || r.res > 0);
  assert_int_equal(c.res, 0);
  assert_true(r.seq < c.seq);

  /* A close of fd_in cancels a splice waiting for data. */
  close(sv[1]);
  rxt_pair(sv);
  memset(&r, 0, sizeof(r));
  memset(&c, 0, sizeof(c));
  assert_int_equal(
      rx_op_splice(rxt.loop, &r.op, sv[1], -1, p[1], -1, 64, 0, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(rx_op_close(rxt.loop, &c.op, sv[1], rec_cb), 0);
  for (int i = 0; i < 2000 && (r.finals == 0 || c.finals == 0); i++)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(r.res, -ECANCELED);
  assert_int_equal(c.res, 0);
  assert_true(r.seq < c.seq);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(r.calls, 1);
  close(sv[0]);
  close(p[0]);
  close(p[1]);
}

/* ---------------------------------------------------------------------------
 * Close: a busy fd's ops all end, the peer sees FIN at once, and a new file
 * under the same number never reaches an old op.
 */

static void test_busy_close(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  /* Fill sv[0]'s send buffer, so that its sends queue. */
  char big[65536];
  memset(big, 'q', sizeof(big));
  while (write(sv[0], big, sizeof(big)) > 0) {
  }
  struct rec recv_op = {0}, cl = {0}, acc = {0}, lcl = {0}, sends[3];
  memset(sends, 0, sizeof(sends));
  char in[16];
  assert_int_equal(
      rx_op_recv(rxt.loop, &recv_op.op, sv[0], in, sizeof(in), 0, rec_cb), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        rx_op_send(rxt.loop, &sends[i].op, sv[0], big, 1000, 0, rec_cb), 0);
  struct sockaddr_in addr;
  int lfd = listener(&addr);
  assert_int_equal(
      rx_op_accept_multishot(rxt.loop, &acc.op, lfd, SOCK_CLOEXEC, rec_cb), 0);
  struct rec pl = {0}; /* unordered: its close comes after it too */
  assert_int_equal(rx_op_poll(rxt.loop, &pl.op, sv[0], RX_READ, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 2);
  assert_int_equal(recv_op.calls + sends[0].calls + acc.calls + pl.calls, 0);
  int fd = sv[0];
  assert_int_equal(rx_op_close(rxt.loop, &cl.op, fd, rec_cb), 0);
  assert_int_equal(rx_op_close(rxt.loop, &lcl.op, lfd, rec_cb), 0);
  /* A new op on a closing fd is refused while the close waits for the fd's
   * ops; once the close is the kernel's (the ops retired at once), it is
   * taken and ends with the closed fd's -EBADF. Never the old file. */
  struct rec late = {0};
  int rc = rx_op_recv(rxt.loop, &late.op, fd, in, 1, 0, rec_cb);
  assert_true(rc == -EBADF || rc == 0);
  assert_int_equal(recv_op.calls, 0); /* never inside the call */
  /* Every op ends within one iteration; the close, queued when the last of
   * them retired, completes in the next. */
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(recv_op.finals, 1);
  assert_int_equal(recv_op.res, -ECANCELED);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(sends[i].finals, 1);
    assert_int_equal(sends[i].res, -ECANCELED);
  }
  assert_int_equal(acc.finals, 1);
  assert_int_equal(acc.res, -ECANCELED);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(cl.finals, 1);
  /* The close's callback comes after those of the ops it ended. */
  assert_true(cl.seq > recv_op.seq && cl.seq > sends[2].seq);
  assert_int_equal(pl.finals, 1);
  assert_int_equal(pl.res, -ECANCELED);
  assert_true(cl.seq > pl.seq);
  assert_true(lcl.seq > acc.seq);
  assert_int_equal(cl.res, 0);
  assert_int_equal(lcl.finals, 1);
  if (rc == 0) {
    run_until_final(&late, 1);
    assert_int_equal(late.res, -EBADF);
  }
  /* The peer sees the close at once: EOF after the queued bytes. */
  ssize_t got;
  while ((got = read(sv[1], big, sizeof(big))) > 0) {
  }
  assert_int_equal(got, 0);
  char b;
  /* A new socket under the old number: a sentinel byte on it reaches none
   * of the old ops. */
  int nv[2];
  rxt_pair_at(fd, nv);
  rxt_send(nv[1], 's');
  rxt_run_nowait(rxt.loop, 3);
  assert_int_equal(recv_op.calls, 1);
  assert_int_equal(read(nv[0], &b, 1), 1);
  assert_int_equal(b, 's');
  rxt_close_pair(nv);
  close(sv[1]);
}

/* ---------------------------------------------------------------------------
 * Batching and a small ring.
 */

static void test_batch_one_enter(void **state) {
  (void)state;
  struct rec r[16];
  memset(r, 0, sizeof(r));
  rxt_run_nowait(rxt.loop, 2);
  struct rx_metrics m0, m1;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m0), 0);
  for (int i = 0; i < 16; i++)
    assert_int_equal(rx_op_nop(rxt.loop, &r[i].op, rec_cb), 0);
  assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(rx_loop_metrics(rxt.loop, &m1), 0);
  for (int i = 0; i < 16; i++)
    assert_int_equal(r[i].finals, 1);
  /* On io_uring the 16 SQEs go with the wait's one enter; emulated, a nop
   * needs no syscall at all, and the iteration's look costs at most one. */
  if (rxt_is_uring(rxt.loop) && getenv("RX_URING_NO_OPS") == NULL)
    assert_true(m1.enters - m0.enters == 1);
  else
    assert_true(m1.enters - m0.enters <= 1);
}

static void test_small_ring_many_recvs(void **state) {
  (void)state;
  rx_loop *loop;
  struct rx_loop_options o = {.ring_entries = 4};
  assert_int_equal(rx_loop_new(&loop, &o), 0);
  enum { N = 256 };
  static int sv[N][2];
  static struct rec r[N];
  static char in[N][4];
  memset(r, 0, sizeof(r));
  for (int i = 0; i < N; i++) {
    rxt_pair(sv[i]);
    assert_int_equal(rx_op_recv(loop, &r[i].op, sv[i][1], in[i], 4, 0, rec_cb),
                     0);
  }
  rxt_run_nowait(loop, 2);
  for (int i = 0; i < N; i++)
    assert_int_equal(rx_op_cancel(loop, &r[i].op), 0);
  int done = 0;
  for (int k = 0; k < 1000 && done < N; k++) {
    assert_true(rx_run(loop, RX_RUN_NOWAIT) >= 0);
    done = 0;
    for (int i = 0; i < N; i++)
      done += r[i].finals;
  }
  assert_int_equal(done, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].res, -ECANCELED);
    rxt_close_pair(sv[i]);
  }
  assert_int_equal(rx_loop_free(loop), 0);
}

/* rx_loop_free() with ops in flight: each gets its final callback. */
static void test_free_with_ops(void **state) {
  (void)state;
  rx_loop *loop;
  assert_int_equal(rxt_loop_new(&loop), 0);
  int sv[2];
  rxt_pair(sv);
  struct rec r = {0}, n = {0};
  char in[4];
  assert_int_equal(rx_op_recv(loop, &r.op, sv[1], in, 4, 0, rec_cb), 0);
  rxt_run_nowait(loop, 1);
  assert_int_equal(rx_op_nop(loop, &n.op, rec_cb), 0);
  assert_int_equal(rx_loop_free(loop), 0);
  assert_int_equal(r.finals, 1);
  assert_int_equal(r.res, -ECANCELED);
  assert_int_equal(n.finals, 1);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Timeouts and deadlines: never early, the documented results.
 */

struct timed {
  rx_op op;
  int64_t start, end;
  int64_t loop_start, loop_now; /* rx_now() at submission, in the callback */
  int res, finals;
};

static void timed_cb(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct timed *t = rx__container_of(op, struct timed, op);
  t->end = rxt_clock();
  t->loop_now = rx_now(loop);
  t->res = res;
  t->finals++;
}

static void test_timeout_op(void **state) {
  (void)state;
  struct timed t[4];
  memset(t, 0, sizeof(t));
  static const int64_t ns[4] = {0, RX_MSEC(1), RX_MSEC(5), RX_MSEC(20)};
  assert_int_equal(rx_op_timeout(rxt.loop, &t[0].op, -1, timed_cb), -EINVAL);
  for (int i = 0; i < 4; i++) {
    t[i].start = rxt_clock();
    rx_now_update(rxt.loop);
    t[i].loop_start = rx_now(rxt.loop);
    assert_int_equal(rx_op_timeout(rxt.loop, &t[i].op, ns[i], timed_cb), 0);
  }
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(t[i].finals, 1);
    assert_int_equal(t[i].res, -ETIME);
    rxt_assert_ge(t[i].end - t[i].start, ns[i]); /* never early */
    /* The loop's time in the callback is after the wait, not before it:
     * a timer started there is not early either. */
    rxt_assert_ge(t[i].loop_now - t[i].loop_start, ns[i]);
  }
  /* Cancelled: -ECANCELED, at once. */
  assert_int_equal(rx_op_timeout(rxt.loop, &t[0].op, RX_SEC(60), timed_cb), 0);
  rxt_run_nowait(rxt.loop, 1);
  assert_int_equal(rx_op_cancel(rxt.loop, &t[0].op), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(t[0].finals, 2);
  assert_int_equal(t[0].res, -ECANCELED);
}

/* A recv with a deadline ends with -ETIMEDOUT, not before it; one whose
 * data comes first gets the data; a deadline does not outlive its
 * submission. */
static void test_deadline(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct timed t;
  memset(&t, 0, sizeof(t));
  char in[8];
  assert_int_equal(rx_op_deadline(NULL, 1), -EINVAL);
  assert_int_equal(rx_op_deadline(&t.op, -1), -EINVAL);
  for (int i = 0; i < 5; i++) {
    int64_t ns = RX_MSEC(1) << i;
    assert_int_equal(rx_op_deadline(&t.op, ns), 0);
    t.start = rxt_clock();
    assert_int_equal(rx_op_recv(rxt.loop, &t.op, sv[1], in, 8, 0, timed_cb), 0);
    assert_int_equal(rx_op_deadline(&t.op, ns), -EBUSY);
    assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
    assert_int_equal(t.finals, i + 1);
    assert_int_equal(t.res, -ETIMEDOUT);
    rxt_assert_ge(t.end - t.start, ns);
  }
  /* Data before the deadline. */
  assert_int_equal(rx_op_deadline(&t.op, RX_SEC(60)), 0);
  assert_int_equal(rx_op_recv(rxt.loop, &t.op, sv[1], in, 8, 0, timed_cb), 0);
  rxt_send(sv[0], 'd');
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(t.res, 1);
  /* The next submission has none: it waits for its data. */
  assert_int_equal(rx_op_recv(rxt.loop, &t.op, sv[1], in, 8, 0, timed_cb), 0);
  for (int i = 0; i < 5; i++)
    assert_true(rx_run(rxt.loop, RX_RUN_NOWAIT) >= 0);
  assert_int_equal(t.finals, 6);
  assert_int_equal(rx_op_cancel(rxt.loop, &t.op), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  assert_int_equal(t.res, -ECANCELED);
  /* A queued recv behind one that waits: its deadline still counts. */
  struct timed q;
  memset(&q, 0, sizeof(q));
  assert_int_equal(rx_op_recv(rxt.loop, &t.op, sv[1], in, 8, 0, timed_cb), 0);
  assert_int_equal(rx_op_deadline(&q.op, RX_MSEC(2)), 0);
  q.start = rxt_clock();
  assert_int_equal(rx_op_recv(rxt.loop, &q.op, sv[1], in, 8, 0, timed_cb), 0);
  while (q.finals == 0)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(q.res, -ETIMEDOUT);
  rxt_assert_ge(q.end - q.start, RX_MSEC(2));
  assert_int_equal(rx_op_cancel(rxt.loop, &t.op), 0);
  assert_int_equal(rx_run(rxt.loop, RX_RUN_DEFAULT), 0);
  rxt_close_pair(sv);
}

/* ---------------------------------------------------------------------------
 * Buffer pools.
 */

static void test_pool_bad_input(void **state) {
  (void)state;
  rx_pool *pool;
  assert_int_equal(rx_pool_new(NULL, &pool, 8, 64), -EINVAL);
  assert_int_equal(rx_pool_new(rxt.loop, NULL, 8, 64), -EINVAL);
  assert_int_equal(rx_pool_new(rxt.loop, &pool, 0, 64), -EINVAL);
  assert_int_equal(rx_pool_new(rxt.loop, &pool, 6, 64), -EINVAL);
  assert_int_equal(rx_pool_new(rxt.loop, &pool, 65536, 64), -EINVAL);
  assert_int_equal(rx_pool_new(rxt.loop, &pool, 8, 0), -EINVAL);
  assert_int_equal(rx_pool_new(rxt.loop, &pool, 8, 64), 0);
  assert_int_equal(rx_pool_size(pool), 64);
  assert_null(rx_pool_buffer(pool, 8));
  assert_non_null(rx_pool_buffer(pool, 7));
  assert_int_equal(rx_pool_put(pool, 3), -EINVAL); /* not held */
  assert_int_equal(rx_pool_put(pool, 99), -EINVAL);
  struct rec r = {0};
  assert_int_equal(rx_op_recv_pool(rxt.loop, &r.op, 0, NULL, 0, rec_cb),
                   -EINVAL);
  int sv[2];
  rxt_pair(sv);
  assert_int_equal(rx_op_recv_pool(rxt.loop, &r.op, sv[1], pool, 0, rec_cb), 0);
  assert_int_equal(rx_pool_free(pool), -EBUSY);
  assert_int_equal(rx_op_cancel(rxt.loop, &r.op), 0);
  run_until_final(&r, 1);
  assert_int_equal(r.res, -ECANCELED);
  assert_int_equal(rx_pool_free(pool), 0);
  rxt_close_pair(sv);
}

struct pooled {
  rx_op op;
  rx_pool *pool;
  int finals, more, res;
  unsigned ids[64];
  int lens[64];
  int n;
  int hold; /* keep the buffers (do not put them back) */
};

static void pooled_cb(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  struct pooled *p = rx__container_of(op, struct pooled, op);
  if (flags & RX_OP_F_MORE)
    p->more++;
  else
    p->finals++;
  p->res = res;
  if (flags & RX_OP_F_BUFFER) {
    assert_true(res > 0);
    if (p->n < 64) {
      p->ids[p->n] = RX_OP_BUFFER_ID(flags);
      p->lens[p->n] = res;
      p->n++;
    }
    if (!p->hold)
      assert_int_equal(rx_pool_put(p->pool, RX_OP_BUFFER_ID(flags)), 0);
  }
}

static void test_pool_recv(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct pooled p;
  memset(&p, 0, sizeof(p));
  assert_int_equal(rx_pool_new(rxt.loop, &p.pool, 4, 16), 0);
  p.hold = 1;
  assert_int_equal(
      rx_op_recv_pool(rxt.loop, &p.op, sv[1], p.pool, 0, pooled_cb), 0);
  assert_int_equal(write(sv[0], "abc", 3), 3);
  while (p.finals == 0)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(p.res, 3);
  assert_int_equal(p.n, 1);
  assert_memory_equal(rx_pool_buffer(p.pool, p.ids[0]), "abc", 3);
  assert_int_equal(rx_pool_put(p.pool, p.ids[0]), 0);
  assert_int_equal(rx_pool_put(p.pool, p.ids[0]), -EINVAL); /* twice */
  /* Multishot: one callback per arrival, then EOF ends it with 0. */
  p.hold = 0;
  p.n = 0;
  assert_int_equal(
      rx_op_recv_multishot(rxt.loop, &p.op, sv[1], p.pool, 0, pooled_cb), 0);
  for (int i = 0; i < 10; i++) {
    char c = (char)('0' + i);
    assert_int_equal(write(sv[0], &c, 1), 1);
    while (p.more < i + 1)
      assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  }
  assert_int_equal(p.finals, 1);
  shutdown(sv[0], SHUT_WR);
  while (p.finals == 1)
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  assert_int_equal(p.res, 0);
  assert_int_equal(p.more, 10);
  assert_int_equal(rx_pool_free(p.pool), 0);
  rxt_close_pair(sv);
}

/* A pool of 8 buffers of 64 bytes for 256 connections that stream: every
 * byte arrives once and in order per connection, and while the pool is dry
 * the loop sleeps (no spin): the reader holds its buffers until a timer
 * gives them back. */
enum { NCONN = 256, PER_CONN = 2000 };
struct stream {
  rx_op op;
  int fd;
  uint64_t got;
  int bad, finals;
};
static struct {
  rx_pool *pool;
  struct stream s[NCONN];
  unsigned held[64];
  int nheld;
  uint64_t total;
} st;

static void stream_cb(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  struct stream *s = rx__container_of(op, struct stream, op);
  if (!(flags & RX_OP_F_MORE)) {
    s->finals++;
    return;
  }
  const unsigned char *b = rx_pool_buffer(st.pool, RX_OP_BUFFER_ID(flags));
  for (int i = 0; i < res; i++)
    if (b[i] != (unsigned char)((s->got + (uint64_t)i) % 253))
      s->bad++;
  s->got += (uint64_t)res;
  st.total += (uint64_t)res;
  st.held[st.nheld++] = RX_OP_BUFFER_ID(flags);
}

static void give_back_cb(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  for (int i = 0; i < st.nheld; i++)
    assert_int_equal(rx_pool_put(st.pool, st.held[i]), 0);
  st.nheld = 0;
}

static void test_pool_starved(void **state) {
  (void)state;
  memset(&st, 0, sizeof(st));
  int peers[NCONN];
  unsigned char data[PER_CONN];
  for (int i = 0; i < PER_CONN; i++)
    data[i] = (unsigned char)(i % 253);
  assert_int_equal(rx_pool_new(rxt.loop, &st.pool, 8, 64), 0);
  for (int i = 0; i < NCONN; i++) {
    int sv[2];
    rxt_pair(sv);
    st.s[i].fd = sv[1];
    peers[i] = sv[0];
    assert_int_equal(write(sv[0], data, PER_CONN), PER_CONN);
    assert_int_equal(rx_op_recv_multishot(rxt.loop, &st.s[i].op, sv[1], st.pool,
                                          0, stream_cb),
                     0);
  }
  rx_timer give;
  rx_timer_init(&give, give_back_cb, RX_MSEC(1), RX_MSEC(1));
  assert_int_equal(rx_timer_start(rxt.loop, &give), 0);
  uint64_t want = (uint64_t)NCONN * PER_CONN;
  struct rx_metrics m0, m1;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m0), 0);
  uint64_t it0 = rx_iteration(rxt.loop);
  int64_t t0 = rxt_clock();
  while (st.total < want && rxt_clock() - t0 < RX_SEC(120))
    assert_true(rx_run(rxt.loop, RX_RUN_ONCE) >= 0);
  uint64_t iters = rx_iteration(rxt.loop) - it0;
  assert_int_equal(rx_loop_metrics(rxt.loop, &m1), 0);
  assert_true(st.total == want);
  for (int i = 0; i < NCONN; i++) {
    assert_int_equal(st.s[i].bad, 0);
    assert_true(st.s[i].got == PER_CONN);
  }
  /* No spin: 8 buffers of 64 bytes per 1 ms tick hand over 512 KB in at
   * least 1,000 ticks; a loop that spun while starved would run far more
   * iterations than the wake-ups it had (a timer tick or data). */
  uint64_t ticks = (uint64_t)(rxt_clock() - t0) / RX_MSEC(1) + 1;
  rxt_assert_le(iters, 4 * ticks + 4 * (want / 512) + 100);
  (void)m0;
  (void)m1;
  rx_timer_stop(rxt.loop, &give);
  give_back_cb(rxt.loop, &give, 0);
  for (int i = 0; i < NCONN; i++) {
    close(peers[i]);
    struct rec c = {0};
    assert_int_equal(rx_op_close(rxt.loop, &c.op, st.s[i].fd, rec_cb), 0);
    run_until_final(&c, 1);
    assert_int_equal(st.s[i].finals, 1);
  }
  assert_int_equal(rx_pool_free(st.pool), 0);
}

/* 10,000 idle connections each with a multishot pool recv hold no buffer
 * and cost at most 1 KiB of this process's memory each. */
static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld %ld", &pages, &rss), 2);
  fclose(f);
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_idle_connections_rss(void **state) {
  (void)state;
  enum { WANT = 10000 };
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  struct rlimit old = rl;
  /* Two fds per connection: raise the limit (root may raise the hard one
   * too); without the right, as many connections as the limit allows. */
  rl.rlim_cur = rl.rlim_max = 2 * WANT + 200;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    rl = old;
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  int N = (int)(rl.rlim_cur < 2 * WANT + 200 ? (rl.rlim_cur - 200) / 2 : WANT);
  rx_loop *loop;
  assert_int_equal(rxt_loop_new(&loop), 0);
  rx_pool *pool;
  assert_int_equal(rx_pool_new(loop, &pool, 64, 4096), 0);
  static int sv[WANT][2];
  static struct pooled p[WANT];
  memset(p, 0, sizeof(p));
  for (int i = 0; i < N; i++)
    rxt_pair(sv[i]);
  rxt_run_nowait(loop, 1);
  long before = rss_kib();
  for (int i = 0; i < N; i++) {
    p[i].pool = pool;
    assert_int_equal(
        rx_op_recv_multishot(loop, &p[i].op, sv[i][1], pool, 0, pooled_cb), 0);
  }
  rxt_run_nowait(loop, 3);
  long after = rss_kib();
  /* The ops themselves are the test's (static); rx's share is its tables. */
  print_message("%d idle pool recvs: %ld KiB of RSS\n", N, after - before);
  rxt_assert_le((after - before) * 1024, (long)N * 1024);
  for (int i = 0; i < N; i++)
    assert_int_equal(p[i].n, 0); /* no buffer taken */
  assert_int_equal(rx_loop_free(loop), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(p[i].finals, 1);
    rxt_close_pair(sv[i]);
  }
  if (setrlimit(RLIMIT_NOFILE, &old) != 0) { /* a hard limit raised */
    old.rlim_max = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  }
}

/* After a fork, the child's ops under way end with -ECANCELED (the
 * parent's ring goes on with them in the parent), the ops queued behind
 * them go on, and pools work in the child; the parent's ops are untouched. */
static void test_fork(void **state) {
  (void)state;
  int sv[2];
  rxt_pair(sv);
  struct rec r = {0}, q = {0};
  char in[4], in2[4];
  rx_pool *pool;
  assert_int_equal(rx_pool_new(rxt.loop, &pool, 4, 16), 0);
  assert_int_equal(rx_op_recv(rxt.loop, &r.op, sv[1], in, 1, 0, rec_cb), 0);
  assert_int_equal(rx_op_recv(rxt.loop, &q.op, sv[1], in2, 1, 0, rec_cb), 0);
  rxt_run_nowait(rxt.loop, 2);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rx_loop_fork(rxt.loop);
    for (int i = 0; i < 100 && r.finals == 0; i++)
      if (rx_run(rxt.loop, RX_RUN_NOWAIT) < 0)
        _exit(10);
    if (r.finals != 1 || r.res != -ECANCELED || q.finals != 0)
      _exit(11);
    /* q, queued behind r, is armed now; cancel it, then a pool recv on a
     * socket of the child's own. */
    if (rx_op_cancel(rxt.loop, &q.op) != 0)
      _exit(12);
    int cv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, cv) != 0)
      _exit(13);
    struct pooled p;
    memset(&p, 0, sizeof(p));
    p.pool = pool;
    if (rx_op_recv_pool(rxt.loop, &p.op, cv[1], pool, 0, pooled_cb) != 0 ||
        write(cv[0], "kid", 3) != 3)
      _exit(14);
    for (int i = 0; i < 1000 && p.finals == 0; i++)
      if (rx_run(rxt.loop, RX_RUN_ONCE) < 0)
        _exit(15);
    if (p.res != 3 || q.finals != 1)
      _exit(16);
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* The parent's recvs are still there. */
  assert_int_equal(r.calls + q.calls, 0);
  rxt_send(sv[0], 'p');
  run_until_final(&r, 1);
  assert_int_equal(r.res, 1);
  assert_int_equal(in[0], 'p');
  assert_int_equal(rx_op_cancel(rxt.loop, &q.op), 0);
  run_until_final(&q, 1);
  assert_int_equal(rx_pool_free(pool), 0);
  rxt_close_pair(sv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_bad_input),
      RXT_TEST(test_nop_not_inside_call),
      RXT_TEST(test_op_done_in_busy_poll),
      RXT_TEST(test_et_watchers_and_ops),
      RXT_TEST(test_send_recv),
      RXT_TEST(test_cancel_pending_recv),
      RXT_TEST(test_cancel_race),
      RXT_TEST(test_cancel_send_between_homes),
      RXT_TEST(test_arm_cancel_cycles_no_fd_leak),
      RXT_TEST(test_writes_in_order),
      RXT_TEST(test_reads_in_order),
      RXT_TEST(test_accept_connect),
      RXT_TEST(test_accept_multishot),
      RXT_TEST(test_splice),
      RXT_TEST(test_busy_close),
      RXT_TEST(test_batch_one_enter),
      RXT_TEST_NOLOOP(test_small_ring_many_recvs),
      RXT_TEST_NOLOOP(test_free_with_ops),
      RXT_TEST(test_timeout_op),
      RXT_TEST(test_deadline),
      RXT_TEST(test_pool_bad_input),
      RXT_TEST(test_pool_recv),
      RXT_TEST(test_pool_starved),
      RXT_TEST_NOLOOP(test_idle_connections_rss),
      RXT_TEST(test_fork),
  };
  const char *filter = getenv("RXT_TEST_FILTER");
  if (filter != NULL && *filter != '\0')
    cmocka_set_test_filter(filter);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
