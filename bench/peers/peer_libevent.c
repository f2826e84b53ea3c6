/*
 * bench/peers/peer_libevent.c - the peer benchmark's workloads on libevent
 * 2.1 (peer.h), each on an event_base of its own. libevent picks epoll on
 * Linux; peer_setup reports what event_base_get_method() names.
 *
 *   loop_count      libevent has no idle watcher: a timer with a zero
 *                   timeout, added again by its callback, runs once per
 *                   iteration (it is due at every poll, and a timer added
 *                   during the callbacks waits for the next one). An evtimer
 *                   of P.loop_seconds calls event_base_loopbreak.
 *   million_timers  struct event array, evtimer_assign + evtimer_add, from a
 *                   callback in the loop's first iteration (run_in_loop says
 *                   why) after event_base_update_cache_time(). libevent's
 *                   clock is CLOCK_MONOTONIC_COARSE (its default without
 *                   EVENT_BASE_FLAG_PRECISE_TIMER), which lags by up to a
 *                   kernel tick, so a timer can fire early by up to a tick.
 *   timer_churn     evtimer_add on the pending timer, libevent's one call for
 *                   a re-arm (it moves the timer in its heap), also from a
 *                   callback in the loop.
 *   pipe_chain      libevent's own test/bench.c: EV_READ | EV_PERSIST events;
 *                   a re-registration is event_del (once the event was
 *                   assigned) + event_assign + event_add, then
 *                   event_base_loop(EVLOOP_ONCE | EVLOOP_NONBLOCK). Without
 *                   EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST (off by default)
 *                   event_del and event_add each call epoll_ctl at once.
 *   async_pummel    libevent has no async watcher: the producer makes one
 *                   event with no fd active with event_active(), which is
 *                   thread-safe with evthread_use_pthreads() and wakes the
 *                   loop through the base's notification eventfd. The loop
 *                   runs with EVLOOP_NO_EXIT_ON_EMPTY, since that event is
 *                   never added; the callback calls event_base_loopbreak.
 *   ping_pongs      EV_READ | EV_PERSIST events on the listener and on each
 *                   connection.
 *   timer_start     evtimer_add of timers set up with evtimer_assign, from a
 *                   callback in the loop (run_in_loop); untimed evtimer_del
 *                   between batches.
 *   async_send_pending  event_active on an event already active, on a base
 *                   made thread-safe: libevent's cross-thread wake-up, as
 *                   in async_pummel.
 *   loop_pingpong   one event with no fd per base, made active from the
 *                   other base's thread; both bases thread-safe, run with
 *                   EVLOOP_NO_EXIT_ON_EMPTY; base b is freed on the main
 *                   thread once its thread ended.
 *
 * peer_setup turns on libevent's pthread locking, which async_pummel's
 * cross-thread event_active needs and which must come before the base is
 * made. Every other base is used by one thread only and is made with
 * EVENT_BASE_FLAG_NOLOCK, libevent's way of not paying for a lock there.
 */
#include "peer.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/thread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char peer_library[] = "libevent";

static struct event_base *base;

/* shared: another thread calls into the base (event_active). */
static int base_open(int shared) {
  struct event_config *cfg = event_config_new();
  if (!cfg)
    return peer_fail("event_config_new failed");
  if (!shared && event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK) < 0) {
    event_config_free(cfg);
    return peer_fail("event_config_set_flag failed");
  }
  base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  return base ? 0 : peer_fail("event_base_new_with_config failed");
}

static void base_close(void) {
  event_base_free(base);
  base = NULL;
}

static struct timeval ms_tv(uint32_t ms) {
  return (struct timeval){.tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000};
}

const char *peer_setup(void) {
  static char name[32];
  if (evthread_use_pthreads() < 0) {
    peer_fail("evthread_use_pthreads failed");
    return NULL;
  }
  atexit(libevent_global_shutdown); /* frees the global locks */
  if (base_open(1) < 0)
    return NULL;
  snprintf(name, sizeof name, "%s", event_base_get_method(base));
  base_close();
  return name;
}

/* loop_count */

static uint64_t iterations;
static const struct timeval zero_tv;

static void count_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  iterations++;
  evtimer_add((struct event *)arg, &zero_tv);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  event_base_loopbreak(base);
}

int peer_loop_count(void) {
  struct event count, stop;
  struct timeval stop_tv = ms_tv((uint32_t)(P.loop_seconds * 1e3));
  if (base_open(0) < 0)
    return -1;
  evtimer_assign(&count, base, count_cb, &count);
  evtimer_assign(&stop, base, stop_cb, NULL);
  if (evtimer_add(&count, &zero_tv) < 0 || evtimer_add(&stop, &stop_tv) < 0) {
    base_close();
    return peer_fail("evtimer_add failed");
  }
  uint64_t t0 = peer_now_ns();
  int rc = event_base_dispatch(base);
  uint64_t t1 = peer_now_ns();
  event_del(&count);
  event_del(&stop);
  base_close();
  if (rc < 0)
    return peer_fail("event_base_dispatch failed");
  peer_report("iterations_per_s", (double)iterations * 1e9 / (double)(t1 - t0),
              "it/s");
  return 0;
}

/* Timers are started from inside the loop, where a program starts them:
 * libevent caches its time while the loop runs, as the other libraries
 * always do, but outside it reads its clock at every evtimer_add, which
 * would give each timer its own idea of now and cost a clock read per start.
 * run_in_loop makes fn the callback of an event made active before the loop
 * runs, so fn runs in the loop's first iteration. */
static void (*in_loop_fn)(void);

static void in_loop_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  in_loop_fn();
}

static int run_in_loop(void (*fn)(void)) {
  struct event ev;
  in_loop_fn = fn;
  event_assign(&ev, base, -1, 0, in_loop_cb, NULL);
  event_active(&ev, 0, 0);
  int rc = event_base_dispatch(base);
  event_del(&ev); /* still active only if the loop failed before it ran */
  return rc;
}

/* million_timers */

static struct event *timers;
static int timer_error;

static void fired_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  peer_mt_fired((uint32_t)(uintptr_t)arg);
}

static void mt_start(void) {
  peer_mt_begin();
  event_base_update_cache_time(base);
  for (uint32_t i = 0; i < P.timers; i++) {
    struct timeval tv = ms_tv(peer_mt_delay_ms[i]);
    evtimer_assign(&timers[i], base, fired_cb, (void *)(uintptr_t)i);
    if (evtimer_add(&timers[i], &tv) < 0) {
      timer_error = 1;
      event_base_loopbreak(base);
      return;
    }
  }
  peer_mt_started();
}

int peer_million_timers(void) {
  if (base_open(0) < 0)
    return -1;
  timers = peer_alloc(P.timers * sizeof *timers);
  if (!timers) {
    base_close();
    return peer_fail("out of memory");
  }
  int rc = run_in_loop(mt_start) < 0 ? peer_fail("event_base_dispatch failed")
           : timer_error             ? peer_fail("evtimer_add failed")
                                     : peer_mt_end();
  base_close(); /* deletes the timers still pending after a failure */
  free(timers);
  return rc;
}

/* timer_churn */

static void never_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
}

static void churn(void) {
  int err = 0;
  for (uint32_t i = 0; i < P.churn_timers && !err; i++) {
    struct timeval tv = ms_tv(peer_churn_initial_ms(i));
    evtimer_assign(&timers[i], base, never_cb, NULL);
    err = evtimer_add(&timers[i], &tv);
  }
  peer_churn_begin();
  for (uint64_t k = 0; k < P.churn_rearms && !err; k++) {
    uint32_t i, ms;
    peer_churn_next(&peer_churn_state, &i, &ms);
    struct timeval tv = ms_tv(ms);
    err = evtimer_add(&timers[i], &tv);
  }
  if (!err)
    peer_churn_end();
  timer_error = err;
  event_base_loopbreak(base);
}

int peer_timer_churn(void) {
  if (base_open(0) < 0)
    return -1;
  timers = malloc(P.churn_timers * sizeof *timers);
  if (!timers) {
    base_close();
    return peer_fail("out of memory");
  }
  int rc = run_in_loop(churn) < 0 ? peer_fail("event_base_dispatch failed")
           : timer_error          ? peer_fail("evtimer_add failed")
                                  : 0;
  base_close(); /* deletes the timers still pending */
  free(timers);
  return rc;
}

/* pipe_chain */

static struct event *pipe_w;
static int pipe_error;

static void pipe_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  peer_pipe_read((int)(intptr_t)arg);
}

/* pipe_w is calloc'd, so event_initialized() is false until the first
 * event_assign. */
static void pipe_setup(void) {
  for (int i = 0; i < P.pipes; i++) {
    if (event_initialized(&pipe_w[i]))
      event_del(&pipe_w[i]);
    if (event_assign(&pipe_w[i], base, peer_pipe_fd[2 * i],
                     EV_READ | EV_PERSIST, pipe_cb, (void *)(intptr_t)i) < 0 ||
        event_add(&pipe_w[i], NULL) < 0)
      pipe_error = 1;
  }
  event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void pipe_iterate(void) {
  event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

int peer_pipe_chain(void) {
  if (base_open(0) < 0)
    return -1;
  pipe_w = calloc((size_t)P.pipes, sizeof *pipe_w);
  if (!pipe_w || peer_pipe_open() < 0) {
    free(pipe_w);
    base_close();
    return peer_fail("setup failed");
  }
  int rc = peer_pipe_drive(pipe_setup, pipe_iterate);
  if (rc == 0 && pipe_error)
    rc = peer_fail("event_assign or event_add failed");
  for (int i = 0; i < P.pipes; i++)
    if (event_initialized(&pipe_w[i]))
      event_del(&pipe_w[i]);
  base_close();
  peer_pipe_close();
  free(pipe_w);
  return rc;
}

/* async_pummel */

static struct event *pummel;

static void pummel_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  if (peer_pummel_callback())
    event_base_loopbreak(base);
}

static void *pummel_producer(void *arg) {
  (void)arg;
  peer_pummel_go();
  for (uint64_t k = 0; k < P.async_sends; k++)
    event_active(pummel, EV_READ, 0);
  peer_pummel_finish();
  event_active(pummel, EV_READ, 0);
  return NULL;
}

/* The event is freed only after the producer was joined: its last
 * event_active may come after the loop broke. */
int peer_async_pummel(void) {
  if (base_open(1) < 0)
    return -1;
  pummel = event_new(base, -1, 0, pummel_cb, NULL);
  if (!pummel) {
    base_close();
    return peer_fail("event_new failed");
  }
  if (peer_thread(pummel_producer, NULL) < 0) {
    event_free(pummel);
    base_close();
    return peer_fail("cannot start the producer");
  }
  int loop_rc = event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
  peer_join();
  int rc = loop_rc < 0 ? peer_fail("event_base_loop failed")
                       : peer_pummel_end();
  event_free(pummel);
  base_close();
  return rc;
}

/* ping_pongs */

/* The connections' events by accept order, NULL once closed, so that a
 * failed run can still close what is open. */
static struct event *listener, **conns;
static int nconns, pp_error;

static void pp_fail(void) {
  pp_error = 1;
  event_base_loopbreak(base);
}

static void conn_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  intptr_t i = (intptr_t)arg;
  if (peer_pp_echo(fd) < 0) {
    event_free(conns[i]);
    conns[i] = NULL;
    close(fd);
  }
}

static void accept_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what, (void)arg;
  int c;
  while ((c = peer_pp_accept(fd)) >= 0) {
    struct event *ev = NULL;
    if (nconns < P.pp_conns)
      ev = event_new(base, c, EV_READ | EV_PERSIST, conn_cb,
                     (void *)(intptr_t)nconns);
    if (!ev || event_add(ev, NULL) < 0) {
      if (ev)
        event_free(ev);
      close(c);
      pp_fail();
      continue;
    }
    conns[nconns++] = ev;
  }
  if (peer_pp_accepted())
    event_del(listener);
}

int peer_ping_pongs(void) {
  if (base_open(0) < 0)
    return -1;
  conns = calloc((size_t)P.pp_conns, sizeof *conns);
  int fd = conns ? peer_pp_listen() : peer_fail("out of memory");
  if (fd < 0) {
    free(conns);
    base_close();
    return -1;
  }
  listener = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, NULL);
  if (!listener || event_add(listener, NULL) < 0) {
    pp_error = 1;
  } else {
    peer_pp_begin();
    if (event_base_dispatch(base) < 0)
      pp_error = 1;
  }
  int rc;
  if (!pp_error) {
    rc = peer_pp_end();
  } else {
    for (int i = 0; i < nconns; i++) {
      if (conns[i]) {
        close(event_get_fd(conns[i]));
        event_free(conns[i]);
      }
    }
    close(fd);
    rc = peer_fail("libevent failed");
  }
  if (listener)
    event_free(listener);
  free(conns);
  base_close();
  return rc;
}

/* timer_start */

static struct event *ts_active, *ts_fresh;
static struct timeval *ts_fresh_tv;

static void ts_run(void) {
  int err = 0;
  for (uint32_t i = 0; i < P.ts_active && !err; i++) {
    struct timeval tv = ms_tv(peer_ts_active_ms(i));
    evtimer_assign(&ts_active[i], base, never_cb, NULL);
    err = evtimer_add(&ts_active[i], &tv);
  }
  for (uint32_t j = 0; j < P.ts_batch; j++) {
    ts_fresh_tv[j] = ms_tv(peer_ts_fresh_ms[j]);
    evtimer_assign(&ts_fresh[j], base, never_cb, NULL);
  }
  for (int b = 0; b < P.ts_batches && !err; b++) {
    peer_ts_begin();
    for (uint32_t j = 0; j < P.ts_batch; j++)
      err |= evtimer_add(&ts_fresh[j], &ts_fresh_tv[j]);
    peer_ts_end();
    for (uint32_t j = 0; j < P.ts_batch; j++)
      evtimer_del(&ts_fresh[j]);
  }
  timer_error = err;
  event_base_loopbreak(base);
}

int peer_timer_start(void) {
  if (base_open(0) < 0)
    return -1;
  ts_active = malloc(P.ts_active * sizeof *ts_active);
  ts_fresh = malloc(P.ts_batch * sizeof *ts_fresh);
  ts_fresh_tv = malloc(P.ts_batch * sizeof *ts_fresh_tv);
  int rc;
  if (!ts_active || !ts_fresh || !ts_fresh_tv)
    rc = peer_fail("out of memory");
  else
    rc = run_in_loop(ts_run) < 0 ? peer_fail("event_base_dispatch failed")
         : timer_error           ? peer_fail("evtimer_add failed")
                                 : peer_ts_report();
  base_close(); /* deletes the timers still pending */
  free(ts_active);
  free(ts_fresh);
  free(ts_fresh_tv);
  return rc;
}

/* async_send_pending */

static uint64_t asp_callbacks;

static void asp_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  asp_callbacks++;
}

int peer_async_send_pending(void) {
  struct event ev;
  if (base_open(1) < 0)
    return -1;
  event_assign(&ev, base, -1, 0, asp_cb, NULL);
  event_active(&ev, EV_READ, 0); /* now active */
  peer_asp_begin();
  for (uint64_t k = 0; k < P.asp_sends; k++)
    event_active(&ev, EV_READ, 0);
  peer_asp_end();
  int loop_rc = event_base_loop(base, EVLOOP_NONBLOCK);
  event_del(&ev);
  base_close();
  return loop_rc < 0 ? peer_fail("event_base_loop failed")
                     : peer_asp_report(asp_callbacks);
}

/* loop_pingpong: base is a, lpp_b is b. */

static struct event_base *lpp_b;
static struct event *at_a, *at_b;

static void at_b_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  if (peer_lpp_stopping()) {
    event_base_loopbreak(lpp_b);
    return;
  }
  event_active(at_a, EV_READ, 0);
}

static void at_a_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
  if (peer_lpp_trip())
    event_base_loopbreak(base);
  event_active(at_b, EV_READ, 0);
}

static int lpp_b_rc;

static void *run_b(void *arg) {
  (void)arg;
  lpp_b_rc = event_base_loop(lpp_b, EVLOOP_NO_EXIT_ON_EMPTY);
  return NULL;
}

int peer_loop_pingpong(void) {
  if (base_open(1) < 0)
    return -1;
  lpp_b = base;
  base = NULL;
  if (base_open(1) < 0) {
    event_base_free(lpp_b);
    return -1;
  }
  at_a = event_new(base, -1, 0, at_a_cb, NULL);
  at_b = event_new(lpp_b, -1, 0, at_b_cb, NULL);
  int rc;
  if (!at_a || !at_b) {
    rc = peer_fail("event_new failed");
  } else if (peer_thread(run_b, NULL) < 0) {
    rc = peer_fail("cannot start loop b's thread");
  } else {
    peer_lpp_begin();
    event_active(at_b, EV_READ, 0);
    int loop_rc = event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    peer_lpp_release();
    peer_join();
    rc = loop_rc < 0 || lpp_b_rc < 0 ? peer_fail("event_base_loop failed")
                                     : peer_lpp_end();
  }
  if (at_a)
    event_free(at_a);
  if (at_b)
    event_free(at_b);
  event_base_free(lpp_b);
  base_close();
  return rc;
}
