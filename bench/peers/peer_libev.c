/*
 * bench/peers/peer_libev.c - the peer benchmark's workloads on libev 4
 * (peer.h), on a loop of its own made with ev_loop_new(EVFLAG_AUTO): on
 * Linux that is the epoll backend (libev does not pick its io_uring or
 * linux AIO backends by itself).
 *
 *   loop_count      an ev_idle watcher counts; an ev_timer breaks the loop.
 *   million_timers  ev_timer array; ev_now_update() before the starts.
 *   timer_churn     ev_timer_stop + ev_timer_set + ev_timer_start.
 *   pipe_chain      ev_io (EV_READ) per pair: ev_io_stop + ev_io_set +
 *                   ev_io_start, then ev_run(EVRUN_NOWAIT).
 *   async_pummel    ev_async; the callback stops the watcher at the end.
 *   ping_pongs      ev_io (EV_READ) on the listener and each connection.
 *   timer_start     ev_timer_start of timers set up with ev_timer_init;
 *                   untimed ev_timer_stop + ev_timer_set between batches.
 *   async_send_pending  ev_async_send to a pending ev_async.
 *   loop_pingpong   an ev_async on each loop, sent to by the other; loop b
 *                   is destroyed on the main thread once its thread ended.
 */
#include "peer.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char peer_library[] = "libev";

static struct ev_loop *loop;

static int loop_open(void) {
  loop = ev_loop_new(EVFLAG_AUTO);
  return loop ? 0 : peer_fail("ev_loop_new failed");
}

static const char *backend_name(unsigned b) {
  switch (b) {
  case EVBACKEND_EPOLL:
    return "epoll";
  case EVBACKEND_POLL:
    return "poll";
  case EVBACKEND_SELECT:
    return "select";
#ifdef EVBACKEND_IOURING
  case EVBACKEND_IOURING:
    return "io_uring";
#endif
#ifdef EVBACKEND_LINUXAIO
  case EVBACKEND_LINUXAIO:
    return "linuxaio";
#endif
  default:
    return "other";
  }
}

const char *peer_setup(void) {
  if (loop_open() < 0)
    return NULL;
  const char *name = backend_name(ev_backend(loop));
  ev_loop_destroy(loop);
  loop = NULL;
  return name;
}

/* loop_count */

static uint64_t iterations;

static void count_cb(struct ev_loop *l, ev_idle *w, int revents) {
  (void)l, (void)w, (void)revents;
  iterations++;
}

static void stop_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)w, (void)revents;
  ev_break(l, EVBREAK_ALL);
}

int peer_loop_count(void) {
  ev_idle idle;
  ev_timer stop;
  if (loop_open() < 0)
    return -1;
  ev_idle_init(&idle, count_cb);
  ev_timer_init(&stop, stop_cb, P.loop_seconds, 0.);
  ev_idle_start(loop, &idle);
  ev_timer_start(loop, &stop);
  uint64_t t0 = peer_now_ns();
  ev_run(loop, 0);
  uint64_t t1 = peer_now_ns();
  ev_idle_stop(loop, &idle);
  ev_timer_stop(loop, &stop);
  ev_loop_destroy(loop);
  peer_report("iterations_per_s", (double)iterations * 1e9 / (double)(t1 - t0),
              "it/s");
  return 0;
}

/* million_timers */

static ev_timer *timers;

static void fired_cb(struct ev_loop *l, ev_timer *w, int revents) {
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
  ev_now_update(loop);
  for (uint32_t i = 0; i < P.timers; i++) {
    ev_timer_init(&timers[i], fired_cb, peer_mt_delay_ms[i] * 1e-3, 0.);
    ev_timer_start(loop, &timers[i]);
  }
  peer_mt_started();
  ev_run(loop, 0);
  int rc = peer_mt_end();
  ev_loop_destroy(loop);
  free(timers);
  return rc;
}

/* timer_churn */

static void never_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l, (void)w, (void)revents;
}

int peer_timer_churn(void) {
  if (loop_open() < 0)
    return -1;
  timers = malloc(P.churn_timers * sizeof *timers);
  if (!timers)
    return peer_fail("out of memory");
  for (uint32_t i = 0; i < P.churn_timers; i++) {
    ev_timer_init(&timers[i], never_cb, peer_churn_initial_ms(i) * 1e-3, 0.);
    ev_timer_start(loop, &timers[i]);
  }
  peer_churn_begin();
  for (uint64_t k = 0; k < P.churn_rearms; k++) {
    uint32_t i, ms;
    peer_churn_next(&peer_churn_state, &i, &ms);
    ev_timer_stop(loop, &timers[i]);
    ev_timer_set(&timers[i], ms * 1e-3, 0.);
    ev_timer_start(loop, &timers[i]);
  }
  int rc = peer_churn_end();
  for (uint32_t i = 0; i < P.churn_timers; i++)
    ev_timer_stop(loop, &timers[i]);
  ev_loop_destroy(loop);
  free(timers);
  return rc;
}

/* pipe_chain */

static ev_io *pipe_w;

static void pipe_cb(struct ev_loop *l, ev_io *w, int revents) {
  (void)l, (void)revents;
  peer_pipe_read((int)(w - pipe_w));
}

static void pipe_setup(void) {
  for (int i = 0; i < P.pipes; i++) {
    ev_io_stop(loop, &pipe_w[i]);
    ev_io_set(&pipe_w[i], peer_pipe_fd[2 * i], EV_READ);
    ev_io_start(loop, &pipe_w[i]);
  }
  ev_run(loop, EVRUN_NOWAIT);
}

static void pipe_iterate(void) {
  ev_run(loop, EVRUN_NOWAIT);
}

int peer_pipe_chain(void) {
  if (loop_open() < 0)
    return -1;
  pipe_w = calloc((size_t)P.pipes, sizeof *pipe_w);
  if (!pipe_w || peer_pipe_open() < 0) {
    free(pipe_w);
    ev_loop_destroy(loop);
    return peer_fail("setup failed");
  }
  for (int i = 0; i < P.pipes; i++)
    ev_io_init(&pipe_w[i], pipe_cb, peer_pipe_fd[2 * i], EV_READ);
  int rc = peer_pipe_drive(pipe_setup, pipe_iterate);
  for (int i = 0; i < P.pipes; i++)
    ev_io_stop(loop, &pipe_w[i]);
  ev_loop_destroy(loop);
  peer_pipe_close();
  free(pipe_w);
  return rc;
}

/* async_pummel */

static ev_async pummel;

static void pummel_cb(struct ev_loop *l, ev_async *w, int revents) {
  (void)revents;
  if (peer_pummel_callback())
    ev_async_stop(l, w);
}

static void *pummel_producer(void *arg) {
  (void)arg;
  peer_pummel_go();
  for (uint64_t k = 0; k < P.async_sends; k++)
    ev_async_send(loop, &pummel);
  peer_pummel_finish();
  ev_async_send(loop, &pummel);
  return NULL;
}

int peer_async_pummel(void) {
  if (loop_open() < 0)
    return -1;
  ev_async_init(&pummel, pummel_cb);
  ev_async_start(loop, &pummel);
  if (peer_thread(pummel_producer, NULL) < 0) {
    ev_loop_destroy(loop);
    return peer_fail("cannot start the producer");
  }
  ev_run(loop, 0);
  peer_join();
  int rc = peer_pummel_end();
  ev_loop_destroy(loop);
  return rc;
}

/* ping_pongs */

static ev_io listener;

static void conn_cb(struct ev_loop *l, ev_io *w, int revents) {
  (void)revents;
  if (peer_pp_echo(w->fd) < 0) {
    ev_io_stop(l, w);
    close(w->fd);
    free(w);
  }
}

static void accept_cb(struct ev_loop *l, ev_io *w, int revents) {
  (void)revents;
  int fd;
  while ((fd = peer_pp_accept(w->fd)) >= 0) {
    ev_io *c = malloc(sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    ev_io_init(c, conn_cb, fd, EV_READ);
    ev_io_start(l, c);
  }
  if (peer_pp_accepted())
    ev_io_stop(l, w);
}

int peer_ping_pongs(void) {
  if (loop_open() < 0)
    return -1;
  int fd = peer_pp_listen();
  if (fd < 0) {
    ev_loop_destroy(loop);
    return -1;
  }
  ev_io_init(&listener, accept_cb, fd, EV_READ);
  ev_io_start(loop, &listener);
  peer_pp_begin();
  ev_run(loop, 0);
  int rc = peer_pp_end();
  ev_loop_destroy(loop);
  return rc;
}

/* timer_start */

int peer_timer_start(void) {
  if (loop_open() < 0)
    return -1;
  ev_timer *active = malloc(P.ts_active * sizeof *active);
  ev_timer *fresh = malloc(P.ts_batch * sizeof *fresh);
  double *fresh_s = malloc(P.ts_batch * sizeof *fresh_s);
  if (!active || !fresh || !fresh_s) {
    free(active);
    free(fresh);
    free(fresh_s);
    ev_loop_destroy(loop);
    return peer_fail("out of memory");
  }
  for (uint32_t i = 0; i < P.ts_active; i++) {
    ev_timer_init(&active[i], never_cb, peer_ts_active_ms(i) * 1e-3, 0.);
    ev_timer_start(loop, &active[i]);
  }
  for (uint32_t j = 0; j < P.ts_batch; j++) {
    fresh_s[j] = peer_ts_fresh_ms[j] * 1e-3;
    ev_timer_init(&fresh[j], never_cb, fresh_s[j], 0.);
  }
  int bad = 0;
  for (int b = 0; b < P.ts_batches; b++) {
    peer_ts_begin();
    for (uint32_t j = 0; j < P.ts_batch; j++)
      ev_timer_start(loop, &fresh[j]);
    peer_ts_end();
    for (uint32_t j = 0; j < P.ts_batch; j++) {
      bad |= !ev_is_active(&fresh[j]);
      ev_timer_stop(loop, &fresh[j]);
      ev_timer_set(&fresh[j], fresh_s[j], 0.);
    }
  }
  int rc = bad ? peer_fail("a timer did not start") : peer_ts_report();
  for (uint32_t i = 0; i < P.ts_active; i++)
    ev_timer_stop(loop, &active[i]);
  ev_loop_destroy(loop);
  free(active);
  free(fresh);
  free(fresh_s);
  return rc;
}

/* async_send_pending */

static uint64_t asp_callbacks;

static void asp_cb(struct ev_loop *l, ev_async *w, int revents) {
  (void)l, (void)w, (void)revents;
  asp_callbacks++;
}

int peer_async_send_pending(void) {
  ev_async w;
  if (loop_open() < 0)
    return -1;
  ev_async_init(&w, asp_cb);
  ev_async_start(loop, &w);
  ev_async_send(loop, &w); /* now pending */
  peer_asp_begin();
  for (uint64_t k = 0; k < P.asp_sends; k++)
    ev_async_send(loop, &w);
  peer_asp_end();
  ev_run(loop, EVRUN_NOWAIT);
  ev_async_stop(loop, &w);
  ev_loop_destroy(loop);
  return peer_asp_report(asp_callbacks);
}

/* loop_pingpong: loop is a, lpp_b is b. */

static struct ev_loop *lpp_b;
static ev_async at_a, at_b;

static void at_b_cb(struct ev_loop *b, ev_async *w, int revents) {
  (void)revents;
  if (peer_lpp_stopping()) {
    ev_async_stop(b, w);
    return;
  }
  ev_async_send(loop, &at_a);
}

static void at_a_cb(struct ev_loop *a, ev_async *w, int revents) {
  (void)revents;
  if (peer_lpp_trip())
    ev_async_stop(a, w);
  ev_async_send(lpp_b, &at_b);
}

static void *run_b(void *arg) {
  (void)arg;
  ev_run(lpp_b, 0);
  return NULL;
}

int peer_loop_pingpong(void) {
  if (loop_open() < 0)
    return -1;
  lpp_b = ev_loop_new(EVFLAG_AUTO);
  if (!lpp_b) {
    ev_loop_destroy(loop);
    return peer_fail("ev_loop_new failed");
  }
  ev_async_init(&at_a, at_a_cb);
  ev_async_init(&at_b, at_b_cb);
  ev_async_start(loop, &at_a);
  ev_async_start(lpp_b, &at_b);
  if (peer_thread(run_b, NULL) < 0) {
    ev_loop_destroy(lpp_b);
    ev_loop_destroy(loop);
    return peer_fail("cannot start loop b's thread");
  }
  peer_lpp_begin();
  ev_async_send(lpp_b, &at_b);
  ev_run(loop, 0);
  peer_lpp_release();
  peer_join();
  int rc = peer_lpp_end();
  ev_loop_destroy(lpp_b);
  ev_loop_destroy(loop);
  return rc;
}
