/*
 * bench/peers/peer_rx.c - the peer benchmark's workloads on rx (peer.h).
 * The backend is rx's usual choice, which $RX_BACKEND overrides: run.py runs
 * every workload with RX_BACKEND=io_uring and with RX_BACKEND=epoll.
 *
 *   loop_count      an rx_idle watcher counts; an rx_timer breaks the loop.
 *   million_timers  rx_timer array; rx_now_update() before the starts.
 *   timer_churn     rx_timer_stop + rx_timer_set + rx_timer_start.
 *   pipe_chain      rx_io (RX_READ) per pair: rx_io_stop + rx_io_set +
 *                   rx_io_start, then rx_run(RX_RUN_NOWAIT).
 *   async_pummel    rx_async; the callback stops the watcher at the end.
 *   ping_pongs      rx_io (RX_READ) on the listener and each connection.
 *   timer_start     rx_timer_start of timers set up with rx_timer_init;
 *                   untimed rx_timer_stop + rx_timer_set between batches.
 *   async_send_pending  rx_async_send to a pending rx_async.
 *   loop_pingpong   rx_loop_post_from() of one rx_task each way (a
 *                   MSG_RING between io_uring loops); each loop holds an
 *                   rx_ref, since posted tasks do not keep rx_run() going.
 *
 * --ops (peer.h), completion operations:
 *   ping_pongs      rx_op_accept_multishot on the listener, cancelled once
 *                   every connection is in; per connection an rx_op_recv
 *                   and two rx_op_send (one per buffer), rx_op_close at the
 *                   end. The loop ends when no op is left.
 *   pipe_chain      an rx_op_recv of one byte per read end, an rx_op_send
 *                   per write end; the setup is rx_op_cancel of every recv,
 *                   rx_run(RX_RUN_NOWAIT) until their final callbacks, then
 *                   rx_op_recv again and one more RX_RUN_NOWAIT.
 *
 * When meson found jemalloc it is the process's malloc here as in every
 * peer's executable, so all libraries allocate from the same allocator.
 */
#include "peer.h"
#include "rx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

const char peer_library[] = "rx";

static rx_loop *loop;

static int loop_open(void) {
  int rc = rx_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "rx_loop_new: %s\n", rx_strerror(rc));
    return -1;
  }
  return 0;
}

const char *peer_setup(void) {
  static char name[32];
  if (loop_open() < 0)
    return NULL;
  snprintf(name, sizeof name, "%s", rx_backend_name(loop));
  rx_loop_free(loop);
  loop = NULL;
  return name;
}

/* loop_count */

static uint64_t iterations;

static void count_cb(rx_loop *l, rx_idle *w, int revents) {
  (void)l, (void)w, (void)revents;
  iterations++;
}

static void stop_cb(rx_loop *l, rx_timer *w, int revents) {
  (void)w, (void)revents;
  rx_break(l, RX_BREAK_ALL);
}

int peer_loop_count(void) {
  rx_idle idle;
  rx_timer stop;
  if (loop_open() < 0)
    return -1;
  rx_idle_init(&idle, count_cb);
  rx_timer_init(&stop, stop_cb, (int64_t)(P.loop_seconds * 1e9), 0);
  rx_idle_start(loop, &idle);
  rx_timer_start(loop, &stop);
  uint64_t t0 = peer_now_ns();
  rx_run(loop, RX_RUN_DEFAULT);
  uint64_t t1 = peer_now_ns();
  rx_idle_stop(loop, &idle);
  rx_timer_stop(loop, &stop);
  rx_loop_free(loop);
  peer_report("iterations_per_s", (double)iterations * 1e9 / (double)(t1 - t0),
              "it/s");
  return 0;
}

/* million_timers */

static rx_timer *timers;

static void fired_cb(rx_loop *l, rx_timer *w, int revents) {
  (void)l, (void)revents;
  peer_mt_fired((uint32_t)(w - timers));
}

int peer_million_timers(void) {
  if (loop_open() < 0)
    return -1;
  timers = peer_alloc(P.timers * sizeof *timers);
  if (!timers)
    return peer_fail("out of memory");
  peer_mt_begin();
  rx_now_update(loop);
  for (uint32_t i = 0; i < P.timers; i++) {
    rx_timer_init(&timers[i], fired_cb, RX_MSEC(peer_mt_delay_ms[i]), 0);
    rx_timer_start(loop, &timers[i]);
  }
  peer_mt_started();
  rx_run(loop, RX_RUN_DEFAULT);
  int rc = peer_mt_end();
  rx_loop_free(loop);
  free(timers);
  return rc;
}

/* timer_churn */

static void never_cb(rx_loop *l, rx_timer *w, int revents) {
  (void)l, (void)w, (void)revents;
}

int peer_timer_churn(void) {
  if (loop_open() < 0)
    return -1;
  timers = malloc(P.churn_timers * sizeof *timers);
  if (!timers)
    return peer_fail("out of memory");
  for (uint32_t i = 0; i < P.churn_timers; i++) {
    rx_timer_init(&timers[i], never_cb, RX_MSEC(peer_churn_initial_ms(i)), 0);
    rx_timer_start(loop, &timers[i]);
  }
  peer_churn_begin();
  for (uint64_t k = 0; k < P.churn_rearms; k++) {
    uint32_t i, ms;
    peer_churn_next(&peer_churn_state, &i, &ms);
    rx_timer_stop(loop, &timers[i]);
    rx_timer_set(&timers[i], RX_MSEC(ms), 0);
    rx_timer_start(loop, &timers[i]);
  }
  int rc = peer_churn_end();
  for (uint32_t i = 0; i < P.churn_timers; i++)
    rx_timer_stop(loop, &timers[i]);
  rx_loop_free(loop);
  free(timers);
  return rc;
}

/* pipe_chain */

static rx_io *pipe_w;

static void pipe_cb(rx_loop *l, rx_io *w, int revents) {
  (void)l, (void)revents;
  peer_pipe_read((int)(w - pipe_w));
}

static void pipe_setup(void) {
  for (int i = 0; i < P.pipes; i++) {
    rx_io_stop(loop, &pipe_w[i]);
    rx_io_set(&pipe_w[i], peer_pipe_fd[2 * i], RX_READ);
    rx_io_start(loop, &pipe_w[i]);
  }
  rx_run(loop, RX_RUN_NOWAIT);
}

static void pipe_iterate(void) {
  rx_run(loop, RX_RUN_NOWAIT);
}

int peer_pipe_chain(void) {
  if (loop_open() < 0)
    return -1;
  pipe_w = calloc((size_t)P.pipes, sizeof *pipe_w);
  if (!pipe_w || peer_pipe_open() < 0) {
    free(pipe_w);
    rx_loop_free(loop);
    return peer_fail("setup failed");
  }
  for (int i = 0; i < P.pipes; i++)
    rx_io_init(&pipe_w[i], pipe_cb, peer_pipe_fd[2 * i], RX_READ);
  int rc = peer_pipe_drive(pipe_setup, pipe_iterate);
  for (int i = 0; i < P.pipes; i++)
    rx_io_stop(loop, &pipe_w[i]);
  rx_loop_free(loop);
  peer_pipe_close();
  free(pipe_w);
  return rc;
}

/* async_pummel */

static rx_async pummel;

static void pummel_cb(rx_loop *l, rx_async *w, int revents) {
  (void)revents;
  if (peer_pummel_callback())
    rx_async_stop(l, w);
}

static void *pummel_producer(void *arg) {
  (void)arg;
  peer_pummel_go();
  for (uint64_t k = 0; k < P.async_sends; k++)
    rx_async_send(loop, &pummel);
  peer_pummel_finish();
  rx_async_send(loop, &pummel);
  return NULL;
}

int peer_async_pummel(void) {
  if (loop_open() < 0)
    return -1;
  rx_async_init(&pummel, pummel_cb);
  rx_async_start(loop, &pummel);
  if (peer_thread(pummel_producer, NULL) < 0) {
    rx_loop_free(loop);
    return peer_fail("cannot start the producer");
  }
  rx_run(loop, RX_RUN_DEFAULT);
  peer_join();
  int rc = peer_pummel_end();
  rx_loop_free(loop);
  return rc;
}

/* ping_pongs */

static rx_io listener;

static void conn_cb(rx_loop *l, rx_io *w, int revents) {
  (void)revents;
  if (peer_pp_echo(w->fd) < 0) {
    rx_io_stop(l, w);
    close(w->fd);
    free(w);
  }
}

static void accept_cb(rx_loop *l, rx_io *w, int revents) {
  (void)revents;
  int fd;
  while ((fd = peer_pp_accept(w->fd)) >= 0) {
    rx_io *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    rx_io_init(c, conn_cb, fd, RX_READ);
    rx_io_start(l, c);
  }
  if (peer_pp_accepted())
    rx_io_stop(l, w);
}

int peer_ping_pongs(void) {
  if (loop_open() < 0)
    return -1;
  int fd = peer_pp_listen();
  if (fd < 0) {
    rx_loop_free(loop);
    return -1;
  }
  rx_io_init(&listener, accept_cb, fd, RX_READ);
  rx_io_start(loop, &listener);
  peer_pp_begin();
  rx_run(loop, RX_RUN_DEFAULT);
  int rc = peer_pp_end();
  rx_loop_free(loop);
  return rc;
}

/* timer_start */

int peer_timer_start(void) {
  if (loop_open() < 0)
    return -1;
  rx_timer *active = malloc(P.ts_active * sizeof *active);
  rx_timer *fresh = malloc(P.ts_batch * sizeof *fresh);
  if (!active || !fresh) {
    free(active);
    free(fresh);
    rx_loop_free(loop);
    return peer_fail("out of memory");
  }
  for (uint32_t i = 0; i < P.ts_active; i++) {
    rx_timer_init(&active[i], never_cb, RX_MSEC(peer_ts_active_ms(i)), 0);
    rx_timer_start(loop, &active[i]);
  }
  for (uint32_t j = 0; j < P.ts_batch; j++)
    rx_timer_init(&fresh[j], never_cb, RX_MSEC(peer_ts_fresh_ms[j]), 0);
  int bad = 0;
  for (int b = 0; b < P.ts_batches; b++) {
    peer_ts_begin();
    for (uint32_t j = 0; j < P.ts_batch; j++)
      rx_timer_start(loop, &fresh[j]);
    peer_ts_end();
    for (uint32_t j = 0; j < P.ts_batch; j++) {
      bad |= !rx_is_active(&fresh[j]);
      rx_timer_stop(loop, &fresh[j]);
      rx_timer_set(&fresh[j], RX_MSEC(peer_ts_fresh_ms[j]), 0);
    }
  }
  int rc = bad ? peer_fail("a timer did not start") : peer_ts_report();
  for (uint32_t i = 0; i < P.ts_active; i++)
    rx_timer_stop(loop, &active[i]);
  rx_loop_free(loop);
  free(active);
  free(fresh);
  return rc;
}

/* async_send_pending */

static uint64_t asp_callbacks;

static void asp_cb(rx_loop *l, rx_async *w, int revents) {
  (void)l, (void)w, (void)revents;
  asp_callbacks++;
}

int peer_async_send_pending(void) {
  rx_async w;
  if (loop_open() < 0)
    return -1;
  rx_async_init(&w, asp_cb);
  rx_async_start(loop, &w);
  int bad = rx_async_send(loop, &w); /* now pending */
  peer_asp_begin();
  for (uint64_t k = 0; k < P.asp_sends; k++)
    bad |= rx_async_send(loop, &w);
  peer_asp_end();
  rx_run(loop, RX_RUN_NOWAIT);
  rx_async_stop(loop, &w);
  rx_loop_free(loop);
  return bad ? peer_fail("rx_async_send failed")
             : peer_asp_report(asp_callbacks);
}

/* loop_pingpong: loop is a, lpp_b is b. */

static rx_loop *lpp_b;
static rx_task to_a, to_b;
static int lpp_bad_a, lpp_bad_b;

static void at_b(rx_loop *b, rx_task *t) {
  (void)t;
  if (peer_lpp_stopping()) {
    rx_unref(b);
    return;
  }
  lpp_bad_b |= rx_loop_post_from(b, loop, &to_a) != 0;
}

static void at_a(rx_loop *a, rx_task *t) {
  (void)t;
  if (peer_lpp_trip())
    rx_unref(a);
  /* The last one tells b to stop; rx_run() submits it as it returns. */
  lpp_bad_a |= rx_loop_post_from(a, lpp_b, &to_b) != 0;
}

static void *run_b(void *arg) {
  (void)arg;
  rx_run(lpp_b, RX_RUN_DEFAULT);
  peer_lpp_wait();
  rx_loop_free(lpp_b);
  return NULL;
}

int peer_loop_pingpong(void) {
  if (loop_open() < 0)
    return -1;
  int rc = rx_loop_new(&lpp_b, NULL);
  if (rc < 0) {
    rx_loop_free(loop);
    return peer_fail(rx_strerror(rc));
  }
  to_a.fn = at_a;
  to_b.fn = at_b;
  rx_ref(loop);
  rx_ref(lpp_b);
  if (peer_thread(run_b, NULL) < 0) {
    rx_loop_free(lpp_b);
    rx_loop_free(loop);
    return peer_fail("cannot start loop b's thread");
  }
  peer_lpp_begin();
  lpp_bad_a |= rx_loop_post_from(loop, lpp_b, &to_b) != 0;
  rx_run(loop, RX_RUN_DEFAULT);
  peer_lpp_release();
  peer_join();
  rc = lpp_bad_a || lpp_bad_b ? peer_fail("a post failed") : peer_lpp_end();
  rx_loop_free(loop);
  return rc;
}

/* ---------------------------------------------------------------------------
 * ping_pongs --ops. A connection owns its ops; it is freed when the last of
 * them has had its final callback (the close op's is the last one queued,
 * but counting does not depend on that).
 */

struct pp_conn {
  int fd;
  int cur;        /* the buffer the next recv fills */
  int recv_waits; /* that buffer's send is still running */
  int closing;
  int live; /* ops submitted and not yet final */
  rx_op recv, send[2], close;
  char buf[2][4096];
};

static rx_op pp_accept_op;
static int pp_listen, pp_bad;

static void pp_recv_cb(rx_loop *l, rx_op *op, int res, unsigned flags);

static void pp_put(struct pp_conn *c) {
  if (--c->live == 0 && c->closing)
    free(c);
}

static void pp_close(rx_loop *l, struct pp_conn *c);

static void pp_closed_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  (void)l, (void)res, (void)flags;
  pp_put(op->data);
}

static void pp_close(rx_loop *l, struct pp_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  c->close.data = c;
  if (rx_op_close(l, &c->close, c->fd, pp_closed_cb) == 0) {
    c->live++;
  } else { /* the caller's pp_put(), or pp_accept_cb(), frees c */
    pp_bad = 1;
    close(c->fd);
  }
}

static void pp_recv_next(rx_loop *l, struct pp_conn *c) {
  if (rx_op_recv(l, &c->recv, c->fd, c->buf[c->cur], sizeof c->buf[0], 0,
                 pp_recv_cb) == 0) {
    c->live++;
  } else {
    pp_bad = 1;
    pp_close(l, c);
  }
}

static void pp_sent_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct pp_conn *c = op->data;
  int k = op == &c->send[1];
  if (res < 0 && !c->closing)
    pp_close(l, c);
  else if (c->recv_waits && c->cur == k && !c->closing) {
    c->recv_waits = 0;
    pp_recv_next(l, c);
  }
  pp_put(c);
}

static void pp_recv_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct pp_conn *c = op->data;
  if (res <= 0 || c->closing) { /* 0: the client closed; or cancelled */
    pp_close(l, c);
    pp_put(c);
    return;
  }
  int k = c->cur;
  if (rx_op_send(l, &c->send[k], c->fd, c->buf[k], (unsigned)res, MSG_NOSIGNAL,
                 pp_sent_cb) == 0) {
    c->live++;
  } else {
    pp_bad = 1;
    pp_close(l, c);
  }
  c->cur = k ^ 1;
  if (!c->closing) {
    if (rx_op_active(&c->send[c->cur]))
      c->recv_waits = 1;
    else
      pp_recv_next(l, c);
  }
  pp_put(c);
}

static void pp_accept_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  if (res >= 0) {
    struct pp_conn *c = calloc(1, sizeof *c); /* its ops zeroed (rx.h) */
    if (!c) {
      close(res);
    } else {
      peer_pp_adopt(res);
      c->fd = res;
      c->cur = c->recv_waits = c->closing = c->live = 0;
      c->recv.data = c->send[0].data = c->send[1].data = c;
      pp_recv_next(l, c);
      if (c->live == 0) /* neither the recv nor the close was submitted */
        free(c);
    }
  }
  if (flags & RX_OP_F_MORE) {
    if (peer_pp_accepted())
      rx_op_cancel(l, op);
    return;
  }
  /* The final callback: -ECANCELED once all are in; anything else ended
   * the multishot early, and it is submitted again. */
  if (!peer_pp_accepted() &&
      rx_op_accept_multishot(l, op, pp_listen, SOCK_NONBLOCK | SOCK_CLOEXEC,
                             pp_accept_cb) < 0)
    pp_bad = 1;
}

int peer_ping_pongs_ops(void) {
  if (loop_open() < 0)
    return -1;
  int fd = peer_pp_listen();
  if (fd < 0) {
    rx_loop_free(loop);
    return -1;
  }
  pp_listen = fd;
  int rc = rx_op_accept_multishot(loop, &pp_accept_op, fd,
                                  SOCK_NONBLOCK | SOCK_CLOEXEC, pp_accept_cb);
  if (rc < 0)
    pp_bad = 1;
  peer_pp_begin();
  if (rc == 0)
    rx_run(loop, RX_RUN_DEFAULT);
  rc = peer_pp_end();
  rx_loop_free(loop);
  if (pp_bad && rc == 0)
    return peer_fail("an op could not be submitted");
  return rc;
}

/* ---------------------------------------------------------------------------
 * pipe_chain --ops
 */

static rx_op *pipe_recv, *pipe_send;
static char *pipe_byte;
static int pipe_live, pipe_bad;

static void pipe_sent_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  (void)l, (void)op, (void)flags;
  pipe_bad |= res != 1;
}

/* Each read end keeps one multishot recv on a pool of provided buffers
 * (the one recv shape that beat readiness in the ops-recv study,
 * docs/benchmarks.md): a byte per callback, the buffer given back at once. */
static rx_pool *pipe_pool;

static void pipe_got_cb(rx_loop *l, rx_op *op, int res, unsigned flags) {
  int i = (int)(op - pipe_recv);
  if (flags & RX_OP_F_BUFFER)
    rx_pool_put(pipe_pool, RX_OP_BUFFER_ID(flags));
  if (!(flags & RX_OP_F_MORE)) { /* -ECANCELED by the setup, or a failure */
    pipe_bad |= res != -ECANCELED;
    pipe_live--;
    return;
  }
  if (res != 1) {
    pipe_bad = 1;
    return;
  }
  int w = peer_pipe_forward(i);
  if (w >= 0) {
    /* A pair's send op is done long before its next byte (the bytes move
     * in step, one pair a round); were it not, a plain send keeps the
     * byte going. */
    if (rx_op_active(&pipe_send[w]) ||
        rx_op_send(l, &pipe_send[w], peer_pipe_fd[2 * w + 1], "e", 1,
                   MSG_NOSIGNAL, pipe_sent_cb) < 0)
      pipe_bad |= send(peer_pipe_fd[2 * w + 1], "e", 1, MSG_NOSIGNAL) != 1;
  }
}

static void pipe_ops_setup(void) {
  for (int i = 0; i < P.pipes; i++)
    if (rx_op_active(&pipe_recv[i]))
      rx_op_cancel(loop, &pipe_recv[i]);
  for (uint64_t spins = 0; pipe_live > 0 && spins < 10000000; spins++)
    rx_run(loop, RX_RUN_NOWAIT);
  for (int i = 0; i < P.pipes; i++) {
    if (rx_op_recv_multishot(loop, &pipe_recv[i], peer_pipe_fd[2 * i],
                             pipe_pool, 0, pipe_got_cb) == 0)
      pipe_live++;
    else
      pipe_bad = 1;
  }
  rx_run(loop, RX_RUN_NOWAIT);
}

int peer_pipe_chain_ops(void) {
  if (loop_open() < 0)
    return -1;
  pipe_recv = calloc((size_t)P.pipes, sizeof *pipe_recv);
  pipe_send = calloc((size_t)P.pipes, sizeof *pipe_send);
  pipe_byte = calloc((size_t)P.pipes, 1);
  if (!pipe_recv || !pipe_send || !pipe_byte ||
      rx_pool_new(loop, &pipe_pool, 1024, 16) != 0 || peer_pipe_open() < 0) {
    free(pipe_recv);
    free(pipe_send);
    free(pipe_byte);
    rx_loop_free(loop);
    return peer_fail("setup failed");
  }
  int rc = peer_pipe_drive(pipe_ops_setup, pipe_iterate);
  for (int i = 0; i < P.pipes; i++)
    if (rx_op_active(&pipe_recv[i]))
      rx_op_cancel(loop, &pipe_recv[i]);
  rx_loop_free(loop); /* runs the final callbacks of what is left */
  peer_pipe_close();
  free(pipe_recv);
  free(pipe_send);
  free(pipe_byte);
  if (pipe_bad && rc == 0)
    return peer_fail("an op failed or could not be submitted");
  return rc;
}
