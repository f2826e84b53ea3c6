/*
 * bench/peers/peer_libuv.c - the peer benchmark's workloads on libuv 1.x
 * (peer.h), each on a uv_loop_t of its own set up with uv_loop_init. libuv
 * has no call that names its backend; on Linux 1.44 it is epoll.
 *
 *   loop_count      a uv_idle_t counts; a uv_timer_t stops the loop.
 *   million_timers  uv_timer_t array; uv_update_time() before the starts.
 *                   libuv's clock counts whole milliseconds (uv_now), so a
 *                   deadline is up to 1 ms earlier than t0 + delay and a
 *                   timer may fire that much early: libuv as it is.
 *   timer_churn     uv_timer_start on the active timer: libuv's one call for
 *                   a re-arm (it stops the timer first).
 *   pipe_chain      uv_poll_t (UV_READABLE) per pair, the readiness watcher
 *                   (uv_tcp_t would read for us). A re-registration is
 *                   uv_poll_start on the active handle, libuv's one call for
 *                   stop + start (a uv_poll_stop before it would only repeat
 *                   the stop), then uv_run(UV_RUN_NOWAIT). libuv's stop
 *                   removes the fd from epoll at once (EPOLL_CTL_DEL, so that
 *                   a closed fd can never report) and the start adds it back
 *                   at the next poll: two epoll_ctl calls per watcher.
 *   async_pummel    uv_async_t; the callback stops the loop at the end.
 *   ping_pongs      uv_poll_t (UV_READABLE) on the listener and on each
 *                   connection, for the same readiness workload as the
 *                   others (read, then write).
 *   timer_start     uv_timer_start of initialised timers (the delay is an
 *                   argument of the start); untimed uv_timer_stop between
 *                   batches.
 *   async_send_pending  uv_async_send to a pending uv_async_t.
 *   loop_pingpong   a uv_async_t on each loop, sent to by the other; loop b
 *                   is closed on the main thread once its thread ended.
 *
 * Every handle is uv_close'd and the closes are run before uv_loop_close,
 * which fails with UV_EBUSY while a handle is open.
 */
#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

const char peer_library[] = "libuv";

static uv_loop_t loop;

/* peer_fail with libuv's error name: "uv_poll_start: EEXIST". */
static int uv_fail(const char *call, int err) {
  char what[128];
  snprintf(what, sizeof what, "%s: %s", call, uv_err_name(err));
  return peer_fail(what);
}

static int loop_open(void) {
  int err = uv_loop_init(&loop);
  return err ? uv_fail("uv_loop_init", err) : 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* Closes every handle still open, runs the closes, closes the loop. */
static void loop_close(void) {
  uv_walk(&loop, close_walk, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int err = uv_loop_close(&loop);
  if (err)
    uv_fail("uv_loop_close", err);
}

const char *peer_setup(void) {
  if (loop_open() < 0)
    return NULL;
  loop_close();
  return "epoll";
}

/* loop_count */

static uint64_t iterations;

static void count_cb(uv_idle_t *h) {
  (void)h;
  iterations++;
}

static void stop_cb(uv_timer_t *h) {
  uv_stop(h->loop);
}

int peer_loop_count(void) {
  uv_idle_t idle;
  uv_timer_t stop;
  int err;
  if (loop_open() < 0)
    return -1;
  uv_idle_init(&loop, &idle);
  uv_timer_init(&loop, &stop);
  if ((err = uv_idle_start(&idle, count_cb)) ||
      (err = uv_timer_start(&stop, stop_cb, (uint64_t)(P.loop_seconds * 1e3),
                            0))) {
    loop_close();
    return uv_fail("start", err);
  }
  uint64_t t0 = peer_now_ns();
  uv_run(&loop, UV_RUN_DEFAULT);
  uint64_t t1 = peer_now_ns();
  loop_close();
  peer_report("iterations_per_s", (double)iterations * 1e9 / (double)(t1 - t0),
              "it/s");
  return 0;
}

/* million_timers */

static uv_timer_t *timers;

static void fired_cb(uv_timer_t *h) {
  peer_mt_fired((uint32_t)(h - timers));
}

int peer_million_timers(void) {
  if (loop_open() < 0)
    return -1;
  timers = peer_alloc(P.timers * sizeof *timers);
  if (!timers) {
    loop_close();
    return peer_fail("out of memory");
  }
  peer_mt_begin();
  uv_update_time(&loop);
  for (uint32_t i = 0; i < P.timers; i++) {
    uv_timer_init(&loop, &timers[i]);
    int err = uv_timer_start(&timers[i], fired_cb, peer_mt_delay_ms[i], 0);
    if (err) {
      loop_close();
      free(timers);
      return uv_fail("uv_timer_start", err);
    }
  }
  peer_mt_started();
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = peer_mt_end();
  loop_close();
  free(timers);
  return rc;
}

/* timer_churn */

static void never_cb(uv_timer_t *h) {
  (void)h;
}

int peer_timer_churn(void) {
  int err = 0;
  if (loop_open() < 0)
    return -1;
  timers = malloc(P.churn_timers * sizeof *timers);
  if (!timers) {
    loop_close();
    return peer_fail("out of memory");
  }
  for (uint32_t i = 0; i < P.churn_timers && !err; i++) {
    uv_timer_init(&loop, &timers[i]);
    err = uv_timer_start(&timers[i], never_cb, peer_churn_initial_ms(i), 0);
  }
  peer_churn_begin();
  for (uint64_t k = 0; k < P.churn_rearms && !err; k++) {
    uint32_t i, ms;
    peer_churn_next(&peer_churn_state, &i, &ms);
    err = uv_timer_start(&timers[i], never_cb, ms, 0);
  }
  int rc = err ? uv_fail("uv_timer_start", err) : peer_churn_end();
  loop_close();
  free(timers);
  return rc;
}

/* pipe_chain */

static uv_poll_t *pipe_w;
static int pipe_error;

static void pipe_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status < 0 && !pipe_error)
    pipe_error = status;
  peer_pipe_read((int)(h - pipe_w));
}

/* uv_poll_start on an active handle is the stop + start: it stops the
 * handle first, as uv_poll_stop would. */
static void pipe_setup(void) {
  for (int i = 0; i < P.pipes; i++) {
    int err = uv_poll_start(&pipe_w[i], UV_READABLE, pipe_cb);
    if (err && !pipe_error)
      pipe_error = err;
  }
  uv_run(&loop, UV_RUN_NOWAIT);
}

static void pipe_iterate(void) {
  uv_run(&loop, UV_RUN_NOWAIT);
}

int peer_pipe_chain(void) {
  if (loop_open() < 0)
    return -1;
  pipe_w = calloc((size_t)P.pipes, sizeof *pipe_w);
  if (!pipe_w || peer_pipe_open() < 0) {
    free(pipe_w);
    loop_close();
    return peer_fail("setup failed");
  }
  /* uv_poll_init only once per handle: it puts the handle on the loop's
   * list, and it fails with EEXIST for an fd another handle polls. */
  int err = 0;
  for (int i = 0; i < P.pipes && !err; i++)
    err = uv_poll_init(&loop, &pipe_w[i], peer_pipe_fd[2 * i]);
  int rc = err ? uv_fail("uv_poll_init", err)
               : peer_pipe_drive(pipe_setup, pipe_iterate);
  if (rc == 0 && pipe_error)
    rc = uv_fail("uv_poll_start", pipe_error);
  loop_close();
  peer_pipe_close();
  free(pipe_w);
  return rc;
}

/* async_pummel */

static uv_async_t pummel;
static int pummel_error;

static void pummel_cb(uv_async_t *h) {
  if (peer_pummel_callback())
    uv_stop(h->loop);
}

static void *pummel_producer(void *arg) {
  (void)arg;
  int err = 0;
  peer_pummel_go();
  for (uint64_t k = 0; k < P.async_sends; k++)
    err |= uv_async_send(&pummel);
  peer_pummel_finish();
  err |= uv_async_send(&pummel);
  pummel_error = err;
  return NULL;
}

/* The callback stops the loop rather than closing the handle: the producer
 * may still be inside its last uv_async_send, so the handle is closed only
 * after the producer was joined. */
int peer_async_pummel(void) {
  if (loop_open() < 0)
    return -1;
  int err = uv_async_init(&loop, &pummel, pummel_cb);
  if (err) {
    loop_close();
    return uv_fail("uv_async_init", err);
  }
  if (peer_thread(pummel_producer, NULL) < 0) {
    loop_close();
    return peer_fail("cannot start the producer");
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  peer_join();
  int rc = pummel_error ? uv_fail("uv_async_send", pummel_error)
                        : peer_pummel_end();
  loop_close();
  return rc;
}

/* ping_pongs */

struct conn {
  uv_poll_t poll; /* first: a handle pointer is a conn pointer */
  int fd;
};

static uv_poll_t listener;
static int listen_fd, pp_error;

/* A handle that fails stops the loop; peer_ping_pongs reports it. */
static void pp_fail(int err) {
  if (!pp_error)
    pp_error = err;
  uv_stop(&loop);
}

/* The fd is closed once libuv no longer polls it. */
static void conn_closed(uv_handle_t *h) {
  struct conn *c = (struct conn *)h;
  close(c->fd);
  free(c);
}

static void conn_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status < 0)
    pp_fail(status);
  else if (peer_pp_echo(((struct conn *)h)->fd) < 0)
    uv_close((uv_handle_t *)h, conn_closed);
}

static void accept_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  int fd, err;
  if (status < 0) {
    pp_fail(status);
    return;
  }
  while ((fd = peer_pp_accept(listen_fd)) >= 0) {
    struct conn *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      pp_fail(UV_ENOMEM);
      continue;
    }
    c->fd = fd;
    if ((err = uv_poll_init(&loop, &c->poll, fd))) {
      close(fd);
      free(c);
      pp_fail(err);
      continue;
    }
    if ((err = uv_poll_start(&c->poll, UV_READABLE, conn_cb))) {
      uv_close((uv_handle_t *)&c->poll, conn_closed);
      pp_fail(err);
    }
  }
  if (peer_pp_accepted())
    uv_close((uv_handle_t *)h, NULL);
}

/* After a failure the handles left are the listener and connections:
 * close them with the callback each needs. */
static void pp_close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, h == (uv_handle_t *)&listener ? NULL : conn_closed);
}

int peer_ping_pongs(void) {
  int err;
  if (loop_open() < 0)
    return -1;
  listen_fd = peer_pp_listen();
  if (listen_fd < 0) {
    loop_close();
    return -1;
  }
  if ((err = uv_poll_init(&loop, &listener, listen_fd)) ||
      (err = uv_poll_start(&listener, UV_READABLE, accept_cb))) {
    loop_close();
    return uv_fail("uv_poll_start", err);
  }
  peer_pp_begin();
  uv_run(&loop, UV_RUN_DEFAULT);
  if (pp_error) {
    uv_walk(&loop, pp_close_walk, NULL);
    loop_close();
    close(listen_fd);
    return uv_fail("uv_poll", pp_error);
  }
  int rc = peer_pp_end();
  loop_close();
  return rc;
}

/* timer_start */

int peer_timer_start(void) {
  int err = 0;
  if (loop_open() < 0)
    return -1;
  uv_timer_t *active = malloc(P.ts_active * sizeof *active);
  uv_timer_t *fresh = malloc(P.ts_batch * sizeof *fresh);
  if (!active || !fresh) {
    free(active);
    free(fresh);
    loop_close();
    return peer_fail("out of memory");
  }
  for (uint32_t i = 0; i < P.ts_active && !err; i++) {
    uv_timer_init(&loop, &active[i]);
    err = uv_timer_start(&active[i], never_cb, peer_ts_active_ms(i), 0);
  }
  for (uint32_t j = 0; j < P.ts_batch; j++)
    uv_timer_init(&loop, &fresh[j]);
  for (int b = 0; b < P.ts_batches && !err; b++) {
    peer_ts_begin();
    for (uint32_t j = 0; j < P.ts_batch; j++)
      err |= uv_timer_start(&fresh[j], never_cb, peer_ts_fresh_ms[j], 0);
    peer_ts_end();
    for (uint32_t j = 0; j < P.ts_batch; j++)
      uv_timer_stop(&fresh[j]);
  }
  int rc = err ? uv_fail("uv_timer_start", err) : peer_ts_report();
  loop_close();
  free(active);
  free(fresh);
  return rc;
}

/* async_send_pending */

static uint64_t asp_callbacks;

static void asp_cb(uv_async_t *h) {
  (void)h;
  asp_callbacks++;
}

int peer_async_send_pending(void) {
  uv_async_t h;
  if (loop_open() < 0)
    return -1;
  int err = uv_async_init(&loop, &h, asp_cb);
  if (err) {
    loop_close();
    return uv_fail("uv_async_init", err);
  }
  err |= uv_async_send(&h); /* now pending */
  peer_asp_begin();
  for (uint64_t k = 0; k < P.asp_sends; k++)
    err |= uv_async_send(&h);
  peer_asp_end();
  uv_run(&loop, UV_RUN_NOWAIT);
  loop_close();
  return err ? uv_fail("uv_async_send", err) : peer_asp_report(asp_callbacks);
}

/* loop_pingpong: loop is a, lpp_b is b. Each callback closes its handle at
 * the end, which lets its uv_run return; a send that reaches a closing
 * handle is ignored, and the loops are closed only after the join. */

static uv_loop_t lpp_b;
static uv_async_t at_a, at_b;

static void at_b_cb(uv_async_t *h) {
  if (peer_lpp_stopping()) {
    uv_close((uv_handle_t *)h, NULL);
    return;
  }
  uv_async_send(&at_a);
}

static void at_a_cb(uv_async_t *h) {
  if (peer_lpp_trip())
    uv_close((uv_handle_t *)h, NULL);
  uv_async_send(&at_b);
}

static void *run_b(void *arg) {
  (void)arg;
  uv_run(&lpp_b, UV_RUN_DEFAULT);
  return NULL;
}

static void close_b(void) {
  uv_walk(&lpp_b, close_walk, NULL);
  uv_run(&lpp_b, UV_RUN_DEFAULT);
  int err = uv_loop_close(&lpp_b);
  if (err)
    uv_fail("uv_loop_close", err);
}

int peer_loop_pingpong(void) {
  if (loop_open() < 0)
    return -1;
  int err = uv_loop_init(&lpp_b);
  if (err) {
    loop_close();
    return uv_fail("uv_loop_init", err);
  }
  uv_async_init(&loop, &at_a, at_a_cb);
  uv_async_init(&lpp_b, &at_b, at_b_cb);
  if (peer_thread(run_b, NULL) < 0) {
    close_b();
    loop_close();
    return peer_fail("cannot start loop b's thread");
  }
  peer_lpp_begin();
  uv_async_send(&at_b);
  uv_run(&loop, UV_RUN_DEFAULT);
  peer_lpp_release();
  peer_join();
  int rc = peer_lpp_end();
  close_b();
  loop_close();
  return rc;
}
