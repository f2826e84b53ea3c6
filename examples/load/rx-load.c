/*
 * rx-load.c - an HTTP/1.1 load generator on rx's completion ops, with wrk's
 * flags and output, wrk2's open loop, and a latency per request.
 *
 *   rx-load -t2 -c64 -d10s [--timeout 2s] [-H 'K: V'] [--latency]
 *           [--pipeline N [--batch]] [--collect T] [-R RATE] [--json]
 *           [--progress]
 *           http://HOST[:PORT]/PATH
 *
 * Threads: one rx loop each, the connections split between them, each
 * thread with its own histograms (hist.h), counters and request-rate
 * samples, merged by the main thread once all have stopped. The main
 * thread only waits: for the end, for SIGINT or SIGTERM (which end the run
 * early, and the summary is still printed), and once a second to print the
 * live line.
 *
 * A connection is four ops and a timer: connect, send, a multishot recv
 * into the thread's buffer pool, close, and the timer of the open loop (or
 * of a pause before a reconnect). The request is formatted once at start,
 * `pipeline` copies end to end, so sending k requests is one send of the
 * first k copies. Each request's send time (and in the open loop its
 * planned time) goes into a ring of `pipeline` entries; each response
 * (resp.h parses them, split anywhere) takes the oldest entry and records
 * its latency: one sample per request, pipelined or not.
 *
 * Closed loop (no -R), as wrk: each connection keeps `pipeline` requests
 * outstanding, sending as many as came back, in one send; with --batch
 * only once all came back, as wrk's pipelining script does. --collect
 * sets the loop's io collect interval (a nap before each wait).
 *
 * Open loop (-R), as wrk2: connection i of C plans its k-th request at
 * origin + (i + k * C) / R, so the connections together send R a second,
 * evenly spread; the origin is when its first connect ended (so that the
 * setup of the threads and connections is not counted as a delay). A
 * request is sent when its planned time has come and fewer than `pipeline`
 * are outstanding; all that are due go in one send. Its latency is
 * recorded twice: from its planned time (corrected: the wait that a late
 * server imposes on the requests behind is counted, wrk2's answer to
 * coordinated omission) and from its actual send (uncorrected, what wrk
 * would show). A connection that closes puts its unanswered requests
 * back: they are sent again on the next connection, and still counted
 * from their planned times.
 *
 * Timeouts: at a tick of a tenth of --timeout (1 ms to 100 ms), each
 * thread looks at the oldest outstanding request of each connection. Once
 * that is older than --timeout, every request still outstanding on it is
 * recorded at its age then, counted as a timeout, and the connection is
 * closed and made again (an HTTP/1.1 connection cannot skip a response).
 * A response that comes after --timeout but before that look is recorded
 * at its real latency and counted as a timeout too. A connect that takes
 * longer than --timeout fails with a connect error.
 *
 * Exit status: 0 when at least one response came, 1 when none did or on an
 * error, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "allocator.h"
#include "hist.h"
#include "resp.h"
#include "rx.h"

#define MAX_HEADERS 64
#define MAX_PIPELINE 1024
#define RECV_SIZE 16384
#define SAMPLE_NS RX_MSEC(100)        /* the Req/Sec samples, as wrk's */
#define BACKOFF_NS RX_MSEC(10)        /* before a reconnect after a failure */
#define TIMER_TICK ((int64_t)1 << 13) /* 8 us: the open loop's grain */

/* ---------------------------------------------------------------------------
 * Options and shared state
 */

static struct {
  unsigned threads, conns, pipeline;
  bool batch;      /* closed loop: refill a pipeline only once all came back */
  int64_t collect; /* rx_set_io_collect_interval(), ns; 0: none */
  int64_t duration, timeout;
  double rate; /* requests/s, all threads; 0: closed loop */
  bool latency, json, progress;
  const char *url;
  const char *headers[MAX_HEADERS];
  unsigned nheaders;
} opt = {.threads = 2,
         .conns = 10,
         .pipeline = 1,
         .duration = RX_SEC(10),
         .timeout = RX_SEC(2)};

static struct sockaddr_storage addr;
static socklen_t addrlen;
static char *request; /* `pipeline` copies of the request, end to end */
static size_t request_len;
static char host[256], port[8], path[4096];

/* Set by the main thread on SIGINT or SIGTERM; each thread looks at it in
 * its sample timer. Relaxed: it carries no data, only "stop". */
static atomic_bool stop_early;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------------------
 * Per-thread state
 */

enum { C_CLOSED, C_BACKOFF, C_CONNECTING, C_OPEN, C_CLOSING };

struct worker;

struct conn {
  rx_op connect_op, send_op, recv_op, close_op; /* data: the conn */
  rx_timer timer; /* open loop: the next planned send; else the backoff */
  struct worker *w;
  int fd;
  uint8_t state;
  bool send_busy;
  bool backoff;         /* the last connect failed: pause before the next */
  uint32_t outstanding; /* sent (or in the send) and not answered */
  uint32_t head;        /* ring index of the oldest outstanding */
  int64_t *sent_at;     /* rings of ring_mask + 1 entries */
  int64_t *planned_at;
  uint64_t next_k; /* open loop: the next request to send */
  double first;    /* open loop: ns of request 0 after the origin */
  int64_t origin;  /* open loop: when the first connect ended; 0 before */
  struct resp parser;
};

struct errors {
  uint64_t connect, read, write, timeout, status, parse;
};

struct worker {
  unsigned index;
  pthread_t thread;
  rx_loop *loop;
  rx_pool *pool;
  struct conn *conns;
  unsigned nconns, first_conn; /* first_conn: global index of conns[0] */
  uint32_t ring_mask;
  rx_timer end_timer, sample_timer;
  int64_t start, end, last_sample;
  uint64_t last_requests;
  bool stopping;
  int error;          /* the first fatal error, negative errno */
  const char *failed; /* ... in what */
  /* Results. */
  uint64_t requests, bytes, sent, planned;
  uint64_t sends; /* send ops, each of one or more requests */
  struct errors err;
  struct hist *lat;   /* corrected (from the planned time) in the open loop */
  struct hist *unlat; /* open loop only: from the actual send */
  double *samples;    /* requests/s per SAMPLE_NS */
  size_t nsamples, samples_cap;
  /* Published at each sample for the live line, read by the main thread.
   * Relaxed: each is a counter read on its own, and a stale value only
   * makes the line a little behind. */
  _Atomic uint64_t pub_requests, pub_errors;
  /* Set by the thread when it is through (release), read by the main
   * thread (acquire) before it reads the results above. */
  atomic_bool done;
};

static struct worker *workers;
static pthread_barrier_t start_barrier;

static uint64_t errors_total(const struct errors *e) {
  return e->connect + e->read + e->write + e->timeout + e->parse;
}

/* The interval between two requests of one connection, in ns. */
static double interval_ns;

static int64_t planned_time(const struct conn *c, uint64_t k) {
  return c->origin + (int64_t)(c->first + (double)k * interval_ns);
}

static void conn_connect(struct conn *c);
static void conn_close(struct conn *c);
static void conn_pump(struct conn *c, int64_t now);

/* ---------------------------------------------------------------------------
 * Sending
 */

static void on_sent(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)flags;
  struct conn *c = op->data;
  c->send_busy = false;
  if (c->state != C_OPEN || c->w->stopping)
    return;
  if (res < 0) {
    c->w->err.write++;
    conn_close(c);
    return;
  }
  if (c->outstanding < opt.pipeline) /* else the next send waits anyway */
    conn_pump(c, mono_ns());
}

/* Sends n requests in one op; their times go into the ring. */
static void conn_send(struct conn *c, uint32_t n, int64_t now) {
  struct worker *w = c->w;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t slot = (c->head + c->outstanding + i) & w->ring_mask;
    c->sent_at[slot] = now;
    if (opt.rate > 0)
      c->planned_at[slot] = planned_time(c, c->next_k + i);
  }
  if (opt.rate > 0)
    c->next_k += n;
  c->outstanding += n;
  w->sent += n;
  w->sends++;
  int rc = rx_op_send(w->loop, &c->send_op, c->fd, request,
                      (unsigned)(n * request_len), MSG_NOSIGNAL, on_sent);
  if (rc < 0) {
    w->err.write++;
    conn_close(c);
    return;
  }
  c->send_busy = true;
}

static void on_timer(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  struct conn *c = t->data;
  if (c->w->stopping)
    return;
  if (c->state == C_BACKOFF)
    conn_connect(c);
  else if (c->state == C_OPEN)
    conn_pump(c, mono_ns());
}

/* Sends what may be sent now: in the closed loop, up to `pipeline`
 * outstanding; in the open loop, the requests whose time has come, and
 * the timer set for the next one. */
static void conn_pump(struct conn *c, int64_t now) {
  if (c->state != C_OPEN || c->send_busy)
    return;
  uint32_t room = opt.pipeline - c->outstanding;
  if (opt.rate <= 0) {
    if (room > 0 && (!opt.batch || c->outstanding == 0))
      conn_send(c, room, now);
    return;
  }
  uint32_t n = 0;
  while (n < room && planned_time(c, c->next_k + n) <= now)
    n++;
  if (n > 0)
    conn_send(c, n, now);
  if (c->state != C_OPEN || n == room)
    return; /* the next send waits for a response */
  int64_t after = planned_time(c, c->next_k) - rx_now(c->w->loop);
  rx_timer_stop(c->w->loop, &c->timer);
  rx_timer_set(&c->timer, after > 0 ? after : 0, 0);
  rx_timer_start(c->w->loop, &c->timer);
}

/* ---------------------------------------------------------------------------
 * Receiving
 */

/* One response ended: its latency, from the oldest ring entry. */
static void on_response(struct conn *c, int64_t now) {
  struct worker *w = c->w;
  if (c->outstanding == 0) { /* a response nobody asked for */
    w->err.parse++;
    conn_close(c);
    return;
  }
  uint32_t slot = c->head;
  c->head = (c->head + 1) & w->ring_mask;
  c->outstanding--;
  int64_t lat = now - c->sent_at[slot];
  if (opt.rate > 0) {
    hist_record(w->unlat, lat);
    lat = now - c->planned_at[slot];
  }
  hist_record(w->lat, lat);
  if (now - c->sent_at[slot] > opt.timeout)
    w->err.timeout++;
  w->requests++;
  if (c->parser.status >= 400)
    w->err.status++;
}

static void feed(struct conn *c, const char *p, size_t len, int64_t now) {
  while (len > 0 && c->state == C_OPEN) {
    size_t used;
    int rc = resp_feed(&c->parser, p, len, &used);
    p += used;
    len -= used;
    if (rc == RESP_DONE) {
      on_response(c, now);
      if (!c->parser.keep_alive && c->state == C_OPEN)
        conn_close(c); /* Connection: close, or HTTP/1.0 */
    } else if (rc < 0) {
      c->w->err.parse++;
      conn_close(c);
    }
  }
}

static void on_recv(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  struct conn *c = op->data;
  struct worker *w = c->w;
  if (flags & RX_OP_F_BUFFER) {
    unsigned id = RX_OP_BUFFER_ID(flags);
    if (res > 0 && c->state == C_OPEN && !w->stopping) {
      int64_t now = mono_ns();
      w->bytes += (uint64_t)res;
      feed(c, rx_pool_buffer(w->pool, id), (size_t)res, now);
      rx_pool_put(w->pool, id);
      conn_pump(c, now); /* the room the responses made */
    } else {
      rx_pool_put(w->pool, id);
    }
  }
  if (flags & RX_OP_F_MORE || c->state != C_OPEN || w->stopping)
    return;
  if (res > 0) { /* the kernel ended the multishot: go on */
    int rc =
        rx_op_recv_multishot(loop, &c->recv_op, c->fd, w->pool, 0, on_recv);
    if (rc == 0)
      return;
    w->err.read++;
  } else if (res == 0) { /* the server closed */
    int rc = resp_eof(&c->parser);
    if (rc == RESP_DONE)
      on_response(c, mono_ns());
    else if (rc < 0 || c->outstanding > 0)
      w->err.read++;
  } else {
    w->err.read++;
  }
  conn_close(c);
}

/* ---------------------------------------------------------------------------
 * Connecting and closing
 */

static void on_connected(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct conn *c = op->data;
  struct worker *w = c->w;
  if (c->state != C_CONNECTING || w->stopping)
    return;
  if (c->origin == 0) /* the schedule starts with the first connection */
    c->origin = mono_ns();
  if (res < 0) {
    w->err.connect++;
    conn_close(c);
    return;
  }
  c->state = C_OPEN;
  resp_init(&c->parser);
  int rc = rx_op_recv_multishot(loop, &c->recv_op, c->fd, w->pool, 0, on_recv);
  if (rc < 0) {
    w->err.read++;
    conn_close(c);
    return;
  }
  conn_pump(c, mono_ns());
}

static void conn_connect(struct conn *c) {
  struct worker *w = c->w;
  int fd =
      socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    w->err.connect++;
    if (w->error == 0 && errno != EMFILE && errno != ENFILE) {
      w->error = -errno;
      w->failed = "socket";
    }
    c->state = C_BACKOFF;
    rx_timer_set(&c->timer, BACKOFF_NS, 0);
    rx_timer_start(w->loop, &c->timer);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->fd = fd;
  c->state = C_CONNECTING;
  /* The deadline counts from the loop's time, which in an op's callback
   * on io_uring is still the time before the loop's last wait. */
  rx_now_update(w->loop);
  rx_op_deadline(&c->connect_op, opt.timeout);
  int rc = rx_op_connect(w->loop, &c->connect_op, fd,
                         (const struct sockaddr *)&addr, addrlen, on_connected);
  if (rc < 0) {
    w->err.connect++;
    conn_close(c);
  }
}

static void on_closed(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct conn *c = op->data;
  struct worker *w = c->w;
  if (res != -ECANCELED) /* else rx_loop_free() ended it: close() left */
    c->fd = -1;
  if (w->stopping)
    return;
  if (c->backoff) { /* after a failed connect, not at once */
    c->state = C_BACKOFF;
    rx_timer_set(&c->timer, BACKOFF_NS, 0);
    rx_timer_start(loop, &c->timer);
    return;
  }
  c->state = C_CLOSED;
  conn_connect(c);
}

/* Closes the connection (cancelling its ops) and makes it again. Requests
 * left unanswered: the open loop sends them again from their planned
 * times; the closed loop forgets them, as wrk does. */
static void conn_close(struct conn *c) {
  struct worker *w = c->w;
  if (c->state != C_CONNECTING && c->state != C_OPEN)
    return;
  rx_timer_stop(w->loop, &c->timer);
  if (opt.rate > 0) { /* sent again, from their planned times */
    c->next_k -= c->outstanding;
    w->sent -= c->outstanding;
  }
  c->outstanding = 0;
  c->head = 0;
  c->backoff = c->state == C_CONNECTING;
  c->state = C_CLOSING;
  int rc = rx_op_close(w->loop, &c->close_op, c->fd, on_closed);
  if (rc < 0) { /* only for a bad fd; then stop this connection */
    close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
  }
}

/* ---------------------------------------------------------------------------
 * The thread's timers: the end, and the tick: the timeout scan at each,
 * and every SAMPLE_NS the rate sample and the live counters.
 */

static void worker_stop(struct worker *w) {
  w->stopping = true;
  w->end = mono_ns();
  rx_timer_stop(w->loop, &w->sample_timer);
  rx_break(w->loop, RX_BREAK_ALL);
}

static void on_end(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  worker_stop(t->data);
}

/* Requests outstanding past --timeout: each recorded at its age now and
 * counted, and the connection made again. */
static void scan_timeouts(struct worker *w, int64_t now) {
  for (unsigned i = 0; i < w->nconns; i++) {
    struct conn *c = &w->conns[i];
    if (c->state != C_OPEN || c->outstanding == 0 ||
        now - c->sent_at[c->head] <= opt.timeout)
      continue;
    for (uint32_t j = 0; j < c->outstanding; j++) {
      uint32_t slot = (c->head + j) & w->ring_mask;
      int64_t lat = now - c->sent_at[slot];
      if (opt.rate > 0) {
        hist_record(w->unlat, lat);
        lat = now - c->planned_at[slot];
      }
      hist_record(w->lat, lat);
      w->err.timeout++;
    }
    c->outstanding = 0; /* recorded: not sent again */
    conn_close(c);
  }
}

static void on_sample(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  struct worker *w = t->data;
  int64_t now = mono_ns();
  scan_timeouts(w, now);
  if (now - w->last_sample < SAMPLE_NS - SAMPLE_NS / 100) {
    if (atomic_load_explicit(&stop_early, memory_order_relaxed))
      worker_stop(w);
    return;
  }
  if (w->nsamples == w->samples_cap) {
    size_t cap = w->samples_cap != 0 ? 2 * w->samples_cap : 256;
    double *s = realloc(w->samples, cap * sizeof(*s));
    if (s != NULL) {
      w->samples = s;
      w->samples_cap = cap;
    }
  }
  if (w->nsamples < w->samples_cap)
    w->samples[w->nsamples++] = (double)(w->requests - w->last_requests) * 1e9 /
                                (double)(now - w->last_sample);
  w->last_sample = now;
  w->last_requests = w->requests;
  atomic_store_explicit(&w->pub_requests, w->requests, memory_order_relaxed);
  atomic_store_explicit(&w->pub_errors, errors_total(&w->err),
                        memory_order_relaxed);
  if (atomic_load_explicit(&stop_early, memory_order_relaxed))
    worker_stop(w);
}

/* The thread: a loop, its connections, the run, then the counts of what was
 * planned and sent. */
static void *worker_main(void *arg) {
  struct worker *w = arg;
  /* RX_LOOP_DEFER: a response that arrives does not wake the thread while
   * it works or naps (--collect), and costs the server no wake-up. */
  struct rx_loop_options lo = {.timer_tick = TIMER_TICK,
                               .flags = RX_LOOP_DEFER};
  int rc = rx_loop_new(&w->loop, &lo);
  if (rc < 0) {
    w->error = rc;
    w->failed = "rx_loop_new";
  } else {
    if (opt.collect > 0)
      rx_set_io_collect_interval(w->loop, opt.collect);
    unsigned count = 64;
    while (count < 2 * w->nconns && count < 4096)
      count *= 2;
    rc = rx_pool_new(w->loop, &w->pool, count, RECV_SIZE);
    if (rc < 0) {
      w->error = rc;
      w->failed = "rx_pool_new";
    }
  }
  pthread_barrier_wait(&start_barrier);
  if (w->error != 0) {
    atomic_store_explicit(&w->done, true, memory_order_release);
    return NULL;
  }
  w->start = w->last_sample = mono_ns();
  rx_now_update(w->loop);
  rx_timer_init(&w->end_timer, on_end, opt.duration, 0);
  w->end_timer.data = w;
  /* A tenth of --timeout, so that a timeout is seen at most 10% late;
   * at most SAMPLE_NS, at least 1 ms. */
  int64_t tick = opt.timeout / 10;
  tick = tick > SAMPLE_NS ? SAMPLE_NS : tick < RX_MSEC(1) ? RX_MSEC(1) : tick;
  rx_timer_init(&w->sample_timer, on_sample, tick, tick);
  w->sample_timer.data = w;
  rx_timer_start(w->loop, &w->end_timer);
  rx_timer_start(w->loop, &w->sample_timer);
  for (unsigned i = 0; i < w->nconns; i++)
    conn_connect(&w->conns[i]);
  rc = rx_run(w->loop, RX_RUN_DEFAULT);
  if (rc < 0 && w->error == 0) {
    w->error = rc;
    w->failed = "rx_run";
  }
  if (!w->stopping)
    worker_stop(w);
  int64_t end = w->end;
  for (unsigned i = 0; i < w->nconns; i++) {
    struct conn *c = &w->conns[i];
    if (opt.rate > 0) {
      /* Planned by the end: k with first + k * interval < end - start. */
      double span = (double)(end - c->origin) - c->first;
      if (c->origin != 0 && span > 0)
        w->planned += (uint64_t)floor(span / interval_ns) + 1;
    }
  }
  rx_loop_free(w->loop); /* the ops' last callbacks: -ECANCELED */
  for (unsigned i = 0; i < w->nconns; i++)
    if (w->conns[i].fd >= 0) /* connecting, open, or its close cancelled */
      close(w->conns[i].fd);
  atomic_store_explicit(&w->pub_requests, w->requests, memory_order_relaxed);
  atomic_store_explicit(&w->done, true, memory_order_release);
  return NULL;
}

/* ---------------------------------------------------------------------------
 * Command line
 */

static void usage(FILE *to) {
  fprintf(
      to,
      "usage: rx-load [options] http://HOST[:PORT][/PATH]\n"
      "\n"
      "An HTTP/1.1 load generator with wrk's flags and summary, on rx's\n"
      "completion ops (io_uring, else epoll; RX_BACKEND=io_uring|epoll to\n"
      "choose).\n"
      "\n"
      "  -c, --connections N  connections to keep open, split between the\n"
      "                       threads (default 10; 1k means 1000)\n"
      "  -d, --duration T     how long to run (default 10s; 500ms, 30s, 2m, "
      "1h;\n"
      "                       a bare number is seconds)\n"
      "  -t, --threads N      threads, one rx loop each (default 2)\n"
      "  -H, --header 'K: V'  add a request header (repeatable; a Host header\n"
      "                       replaces the URL's)\n"
      "      --timeout T      a request outstanding longer is a timeout\n"
      "                       (default 2s)\n"
      "      --latency        print the latency distribution and the\n"
      "                       percentile spectrum\n"
      "      --pipeline N     requests outstanding per connection (default 1)\n"
      "      --batch          closed loop: send a connection's next N\n"
      "                       requests once all N are answered (wrk's\n"
      "                       pipelining), not as each comes back (h2load's)\n"
      "      --collect T      nap T (e.g. 50us) before each wait for the\n"
      "                       kernel, gathering completions: fewer wake-ups\n"
      "                       and less CPU per request, latency coarser by\n"
      "                       up to T (default 0: none)\n"
      "  -R, --rate RATE      open loop: RATE requests/s in all, on a fixed\n"
      "                       schedule (wrk2's -R); latency counted from each\n"
      "                       request's planned send time (corrected) and "
      "from\n"
      "                       its actual send (uncorrected)\n"
      "      --json           print the results as one JSON object instead\n"
      "      --progress       print the live line (each second, on stderr)\n"
      "                       even when stderr is not a terminal\n"
      "  -h, --help           this text\n"
      "  -v, --version        rx-load's and rx's version\n"
      "\n"
      "Without -R each connection sends its next requests as soon as the\n"
      "last come back (closed loop, as wrk). Errors counted: connect, read\n"
      "(including a connection closed with requests unanswered), write,\n"
      "timeout, malformed responses, and responses with status >= 400.\n"
      "SIGINT ends the run early; the summary is still printed. Exit status:\n"
      "0 when a response came, 1 when none did or on an error, 2 on a usage\n"
      "error. docs/guide.md, \"Reading rx-load's numbers\", explains the\n"
      "output.\n");
}

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "rx-load: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'rx-load --help'.\n");
  return 2;
}

/* A count with an optional k, M or G (x1000): 0 on success. */
static int parse_count(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || !(v >= 0) || isinf(v))
    return -1;
  if (*end == 'k' || *end == 'K')
    v *= 1e3, end++;
  else if (*end == 'M')
    v *= 1e6, end++;
  else if (*end == 'G')
    v *= 1e9, end++;
  if (*end != '\0')
    return -1;
  *out = v;
  return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *out) {
  double v;
  if (parse_count(s, &v) < 0 || v != floor(v) || v < 1 || v > max)
    return -1;
  *out = (unsigned)v;
  return 0;
}

/* A duration: a number and ns, us, ms, s, m or h (bare: seconds). */
static int parse_duration(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || !(v > 0))
    return -1;
  static const struct {
    const char *unit;
    double ns;
  } units[] = {{"", 1e9}, {"s", 1e9},  {"ms", 1e6},   {"us", 1e3},
               {"ns", 1}, {"m", 60e9}, {"min", 60e9}, {"h", 3600e9}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(end, units[i].unit) == 0) {
      double ns = v * units[i].ns;
      if (ns < 1 || ns > 1e9 * 86400 * 365)
        return -1;
      *out = (int64_t)ns;
      return 0;
    }
  }
  return -1;
}

/* http://HOST[:PORT][/PATH]: fills host, port, path; 0 or a message. */
static const char *parse_url(const char *url) {
  if (strncasecmp(url, "https://", 8) == 0)
    return "https is not supported: give an http:// URL";
  if (strncasecmp(url, "http://", 7) != 0)
    return "the URL must start with http://";
  const char *a = url + 7, *e = a + strcspn(a, "/?#");
  if (memchr(a, '@', (size_t)(e - a)) != NULL)
    return "user information in the URL is not supported";
  if (*a == '[')
    return "IPv6 literals are not supported: give an IPv4 address or a name";
  const char *colon = memchr(a, ':', (size_t)(e - a));
  const char *he = colon != NULL ? colon : e;
  if (he == a || (size_t)(he - a) >= sizeof(host))
    return "the URL has no host, or one too long";
  memcpy(host, a, (size_t)(he - a));
  host[he - a] = '\0';
  strcpy(port, "80");
  if (colon != NULL) {
    size_t n = (size_t)(e - colon - 1);
    char *end;
    char tmp[8] = {0};
    if (n == 0 || n > 5)
      return "the URL's port must be 1..65535";
    memcpy(tmp, colon + 1, n);
    long p = strtol(tmp, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535)
      return "the URL's port must be 1..65535";
    snprintf(port, sizeof(port), "%ld", p);
  }
  size_t plen = strcspn(e, "#");
  if (plen + 2 > sizeof(path))
    return "the URL's path is too long";
  snprintf(path, sizeof(path), "%s%.*s", *e == '/' ? "" : "/", (int)plen, e);
  for (const char *p = path; *p != '\0'; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f)
      return "the URL's path has a space or a control character";
  return NULL;
}

/* The request, `pipeline` times; NULL on a bad header. */
static const char *format_request(const char *authority, size_t alen) {
  bool has_host = false;
  size_t len = strlen("GET  HTTP/1.1\r\n\r\n") + strlen(path);
  for (unsigned i = 0; i < opt.nheaders; i++) {
    const char *h = opt.headers[i];
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h)
      return "a header must be 'Name: value'";
    for (const char *p = h; *p != '\0'; p++)
      if ((unsigned char)*p < ' ' && *p != '\t')
        return "a header has a control character";
    for (const char *p = h; p < colon; p++)
      if (*p == ' ' || *p == '\t')
        return "a header name has a space";
    if ((size_t)(colon - h) == 4 && strncasecmp(h, "host", 4) == 0)
      has_host = true;
    len += strlen(h) + 2;
  }
  if (!has_host)
    len += strlen("Host: \r\n") + alen;
  char *one = malloc(len + 1);
  request = malloc(len * opt.pipeline);
  if (one == NULL || request == NULL) {
    fprintf(stderr, "rx-load: out of memory\n");
    exit(1);
  }
  size_t n = (size_t)sprintf(one, "GET %s HTTP/1.1\r\n", path);
  if (!has_host)
    n += (size_t)sprintf(one + n, "Host: %.*s\r\n", (int)alen, authority);
  for (unsigned i = 0; i < opt.nheaders; i++)
    n += (size_t)sprintf(one + n, "%s\r\n", opt.headers[i]);
  n += (size_t)sprintf(one + n, "\r\n");
  request_len = n;
  for (unsigned i = 0; i < opt.pipeline; i++)
    memcpy(request + i * n, one, n);
  free(one);
  return NULL;
}

/* ---------------------------------------------------------------------------
 * Output: wrk's units and layout
 */

/* n in units of `base` (1000: "", k, M, G; 1024: "", K, M, G, T). */
static void fmt_scaled(char *out, size_t cap, double n, double base) {
  static const char *const si[] = {"", "k", "M", "G", "T"};
  static const char *const bin[] = {"", "K", "M", "G", "T"};
  int i = 0;
  while (n >= base && i < 4)
    n /= base, i++;
  snprintf(out, cap, "%.2f%s", n, base == 1024 ? bin[i] : si[i]);
}

/* ns as wrk shows time: us, ms, s, m, h. */
static void fmt_time(char *out, size_t cap, double ns) {
  double us = ns / 1e3;
  if (us < 1000)
    snprintf(out, cap, "%.2fus", us);
  else if (us < 1e6)
    snprintf(out, cap, "%.2fms", us / 1e3);
  else if (us < 60e6)
    snprintf(out, cap, "%.2fs", us / 1e6);
  else if (us < 3600e6)
    snprintf(out, cap, "%.2fm", us / 60e6);
  else
    snprintf(out, cap, "%.2fh", us / 3600e6);
}

/* wrk's print_units: right-aligned so that the numbers line up whatever
 * the length of the unit. */
static void print_units(const char *msg, int width) {
  size_t len = strlen(msg);
  int pad = 2;
  if (len > 0 && msg[len - 1] >= 'a')
    pad--;
  if (len > 1 && msg[len - 2] >= 'a')
    pad--;
  if (len > 0 && msg[len - 1] >= 'A' && msg[len - 1] <= 'Z')
    pad--;
  width -= pad;
  printf("%*.*s%.*s", width, width, msg, pad, "  ");
}

static void print_time(double ns, int width) {
  char buf[32];
  fmt_time(buf, sizeof(buf), ns);
  print_units(buf, width);
}

static void print_hist_row(const char *name, const struct hist *h) {
  double mean = hist_mean(h), sd = hist_stdev(h);
  printf("    %-10s", name);
  print_time(mean, 8);
  print_time(sd, 10);
  print_time((double)h->max, 9);
  printf("%8.2f%%\n", hist_within(h, mean - sd, mean + sd));
}

struct rates {
  double mean, sd, max, within;
};

static struct rates rate_stats(void) {
  struct rates r = {0};
  size_t n = 0;
  for (unsigned t = 0; t < opt.threads; t++)
    for (size_t i = 0; i < workers[t].nsamples; i++) {
      double v = workers[t].samples[i];
      r.mean += v;
      if (v > r.max)
        r.max = v;
      n++;
    }
  if (n == 0)
    return r;
  r.mean /= (double)n;
  for (unsigned t = 0; t < opt.threads; t++)
    for (size_t i = 0; i < workers[t].nsamples; i++) {
      double d = workers[t].samples[i] - r.mean;
      r.sd += d * d;
    }
  r.sd = n > 1 ? sqrt(r.sd / (double)(n - 1)) : 0;
  size_t in = 0;
  for (unsigned t = 0; t < opt.threads; t++)
    for (size_t i = 0; i < workers[t].nsamples; i++) {
      double v = workers[t].samples[i];
      in += v >= r.mean - r.sd && v <= r.mean + r.sd;
    }
  r.within = 100.0 * (double)in / (double)n;
  return r;
}

static const double dist_ps[] = {50, 75, 90, 99, 99.9, 99.99, 99.999, 100};
#define NDIST (sizeof(dist_ps) / sizeof(dist_ps[0]))

/* The percentile spectrum, as HdrHistogram's percentile iterator gives it
 * (wrk2's "Detailed Percentile spectrum"): 5 steps per halving of the
 * distance to 100%, in ms. */
static void print_spectrum(const char *title, const struct hist *h) {
  printf("  %s:\n", title);
  printf("       Value   Percentile   TotalCount 1/(1-Percentile)\n\n");
  double p = 0;
  for (;;) {
    int64_t v = hist_percentile(h, p);
    uint64_t count = hist_count_upto(h, v);
    if (p >= 100 || count >= h->total) {
      printf("%12.3f %12.6f %12llu\n", (double)h->max / 1e6, 1.0,
             (unsigned long long)h->total);
      break;
    }
    printf("%12.3f %12.6f %12llu %12.2f\n", (double)v / 1e6, p / 100,
           (unsigned long long)count, 1 / (1 - p / 100));
    double ticks = 5 * pow(2, floor(log2(100 / (100 - p))) + 1);
    p += 100 / ticks;
  }
  printf("#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", hist_mean(h) / 1e6,
         hist_stdev(h) / 1e6);
  printf("#[Max     = %12.3f, Total count    = %12llu]\n", (double)h->max / 1e6,
         (unsigned long long)h->total);
  printf("#[Buckets = %12d, SubBuckets     = %12u]\n", HIST_BUCKETS,
         HIST_SUB_COUNT);
  printf("----------------------------------------------------------\n");
}

struct totals {
  uint64_t requests, bytes, sent, planned, sends;
  struct errors err;
  struct hist *lat, *unlat;
  double seconds, cpu_user, cpu_sys;
};

static void print_text(const struct totals *t) {
  struct rates r = rate_stats();
  char buf[64], buf2[64];
  printf("  Thread Stats%6s%11s%8s%12s\n", "Avg", "Stdev", "Max", "+/- Stdev");
  print_hist_row("Latency", t->lat);
  if (opt.rate > 0)
    print_hist_row("Unc. Lat.", t->unlat);
  printf("    %-10s", "Req/Sec");
  fmt_scaled(buf, sizeof(buf), r.mean, 1000);
  print_units(buf, 8);
  fmt_scaled(buf, sizeof(buf), r.sd, 1000);
  print_units(buf, 10);
  fmt_scaled(buf, sizeof(buf), r.max, 1000);
  print_units(buf, 9);
  printf("%8.2f%%\n", r.within);
  if (opt.latency) {
    printf("  Latency Distribution%s\n",
           opt.rate > 0 ? " (corrected, uncorrected)" : "");
    for (size_t i = 0; i < NDIST; i++) {
      printf("%7g%%", dist_ps[i]);
      print_time((double)hist_percentile(t->lat, dist_ps[i]), 10);
      if (opt.rate > 0)
        print_time((double)hist_percentile(t->unlat, dist_ps[i]), 10);
      printf("\n");
    }
    printf("\n");
    print_spectrum(opt.rate > 0 ? "Detailed Percentile spectrum (corrected)"
                                : "Detailed Percentile spectrum",
                   t->lat);
    if (opt.rate > 0)
      print_spectrum("Uncorrected Percentile spectrum (from the actual send)",
                     t->unlat);
  }
  fmt_time(buf, sizeof(buf), t->seconds * 1e9);
  fmt_scaled(buf2, sizeof(buf2), (double)t->bytes, 1024);
  printf("  %llu requests in %s, %sB read\n", (unsigned long long)t->requests,
         buf, buf2);
  printf("  Socket errors: connect %llu, read %llu, write %llu, timeout %llu\n",
         (unsigned long long)t->err.connect, (unsigned long long)t->err.read,
         (unsigned long long)t->err.write, (unsigned long long)t->err.timeout);
  if (t->err.status != 0)
    printf("  Non-2xx or 3xx responses: %llu\n",
           (unsigned long long)t->err.status);
  if (t->err.parse != 0)
    printf("  Malformed responses: %llu\n", (unsigned long long)t->err.parse);
  if (t->lat->saturated != 0)
    printf("  Latencies beyond %.0f s, counted at that value: %llu\n",
           (double)HIST_MAX / 1e9, (unsigned long long)t->lat->saturated);
  double cpu = t->cpu_user + t->cpu_sys;
  printf("  Client CPU: %.2fs user, %.2fs sys, %.0f%% of one core", t->cpu_user,
         t->cpu_sys, 100 * cpu / t->seconds);
  if (t->requests != 0)
    printf(", %.2fus per request", cpu * 1e6 / (double)t->requests);
  printf("\n");
  if (opt.rate > 0) {
    double achieved = (double)t->requests / t->seconds;
    printf("  Rate: asked %.2f, achieved %.2f requests/s (%.1f%%)\n", opt.rate,
           achieved, 100 * achieved / opt.rate);
    if ((double)t->sent < 0.99 * (double)t->planned)
      printf("  Rate not held: %llu of %llu planned requests were sent "
             "(%.1f%%): the server, or this client, could not keep up; the "
             "corrected latency counts the wait of the rest\n",
             (unsigned long long)t->sent, (unsigned long long)t->planned,
             100.0 * (double)t->sent / (double)t->planned);
  }
  printf("Requests/sec: %9.2f\n", (double)t->requests / t->seconds);
  fmt_scaled(buf, sizeof(buf), (double)t->bytes / t->seconds, 1024);
  printf("Transfer/sec: %10sB\n", buf);
}

static void json_hist(const char *name, const struct hist *h) {
  printf("  \"%s\": {\"count\": %llu, \"min_us\": %.3f, \"mean_us\": %.3f, "
         "\"stdev_us\": %.3f, \"max_us\": %.3f, \"percentiles_us\": {",
         name, (unsigned long long)h->total,
         h->total != 0 ? (double)h->min / 1e3 : 0.0, hist_mean(h) / 1e3,
         hist_stdev(h) / 1e3, (double)h->max / 1e3);
  for (size_t i = 0; i < NDIST; i++)
    printf("%s\"%g\": %.3f", i != 0 ? ", " : "", dist_ps[i],
           (double)hist_percentile(h, dist_ps[i]) / 1e3);
  printf("}},\n");
}

static void print_json(const struct totals *t) {
  struct rates r = rate_stats();
  printf("{\n  \"url\": \"");
  for (const char *p = opt.url; *p != '\0'; p++)
    printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
  printf("\",\n  \"threads\": %u, \"connections\": %u, \"pipeline\": %u,\n",
         opt.threads, opt.conns, opt.pipeline);
  printf("  \"batch\": %s, \"collect_us\": %.3f,\n",
         opt.batch ? "true" : "false", (double)opt.collect / 1e3);
  printf("  \"duration_s\": %.6f, \"timeout_s\": %.6f, \"rate_asked\": %.3f,\n",
         t->seconds, (double)opt.timeout / 1e9, opt.rate);
  printf("  \"requests\": %llu, \"bytes\": %llu, \"requests_per_sec\": %.3f, "
         "\"bytes_per_sec\": %.3f,\n",
         (unsigned long long)t->requests, (unsigned long long)t->bytes,
         (double)t->requests / t->seconds, (double)t->bytes / t->seconds);
  printf("  \"sent\": %llu, \"sends\": %llu,\n", (unsigned long long)t->sent,
         (unsigned long long)t->sends);
  printf("  \"errors\": {\"connect\": %llu, \"read\": %llu, \"write\": %llu, "
         "\"timeout\": %llu, \"status\": %llu, \"malformed\": %llu},\n",
         (unsigned long long)t->err.connect, (unsigned long long)t->err.read,
         (unsigned long long)t->err.write, (unsigned long long)t->err.timeout,
         (unsigned long long)t->err.status, (unsigned long long)t->err.parse);
  json_hist("latency", t->lat);
  if (opt.rate > 0) {
    json_hist("latency_uncorrected", t->unlat);
    printf("  \"rate\": {\"asked\": %.3f, \"achieved\": %.3f, \"planned\": "
           "%llu, \"sent\": %llu, \"held\": %s},\n",
           opt.rate, (double)t->requests / t->seconds,
           (unsigned long long)t->planned, (unsigned long long)t->sent,
           (double)t->sent >= 0.99 * (double)t->planned ? "true" : "false");
  }
  printf("  \"req_per_sec_per_thread\": {\"mean\": %.3f, \"stdev\": %.3f, "
         "\"max\": %.3f},\n",
         r.mean, r.sd, r.max);
  double cpu = t->cpu_user + t->cpu_sys;
  printf("  \"cpu\": {\"user_s\": %.6f, \"sys_s\": %.6f, "
         "\"us_per_request\": %.4f}\n}\n",
         t->cpu_user, t->cpu_sys,
         t->requests != 0 ? cpu * 1e6 / (double)t->requests : 0.0);
}

static double tv_s(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---------------------------------------------------------------------------
 * main
 */

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"connections", required_argument, NULL, 'c'},
      {"duration", required_argument, NULL, 'd'},
      {"threads", required_argument, NULL, 't'},
      {"header", required_argument, NULL, 'H'},
      {"rate", required_argument, NULL, 'R'},
      {"script", required_argument, NULL, 's'},
      {"timeout", required_argument, NULL, 'T'},
      {"latency", no_argument, NULL, 'L'},
      {"pipeline", required_argument, NULL, 'P'},
      {"batch", no_argument, NULL, 'B'},
      {"collect", required_argument, NULL, 'C'},
      {"json", no_argument, NULL, 'J'},
      {"progress", no_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},
      {NULL, 0, NULL, 0},
  };
  int o;
  opterr = 0;
  while ((o = getopt_long(argc, argv, ":c:d:t:H:R:s:Lhv", longopts, NULL)) !=
         -1) {
    switch (o) {
    case 'c':
      if (parse_uint(optarg, 1000000, &opt.conns) < 0)
        return bad("-c/--connections wants a count from 1 to 1M, not '%s'",
                   optarg);
      break;
    case 't':
      if (parse_uint(optarg, 1024, &opt.threads) < 0)
        return bad("-t/--threads wants a count from 1 to 1024, not '%s'",
                   optarg);
      break;
    case 'B':
      opt.batch = true;
      break;
    case 'C':
      if (parse_duration(optarg, &opt.collect) < 0 || opt.collect > RX_SEC(1))
        return bad("--collect wants a time up to 1s such as 50us, not '%s'",
                   optarg);
      break;
    case 'P':
      if (parse_uint(optarg, MAX_PIPELINE, &opt.pipeline) < 0)
        return bad("--pipeline wants a depth from 1 to 1024, not '%s'", optarg);
      break;
    case 'd':
      if (parse_duration(optarg, &opt.duration) < 0)
        return bad("-d/--duration wants a time such as 10s, 500ms or 2m, "
                   "not '%s'",
                   optarg);
      break;
    case 'T':
      if (parse_duration(optarg, &opt.timeout) < 0)
        return bad("--timeout wants a time such as 2s or 500ms, not '%s'",
                   optarg);
      break;
    case 'R':
      if (parse_count(optarg, &opt.rate) < 0 || !(opt.rate > 0) ||
          opt.rate > 1e9)
        return bad("-R/--rate wants requests per second (> 0; 10k means "
                   "10000), not '%s'",
                   optarg);
      break;
    case 'H':
      if (opt.nheaders == MAX_HEADERS)
        return bad("%s", "at most 64 -H headers");
      opt.headers[opt.nheaders++] = optarg;
      break;
    case 's':
      return bad("-s/--script: rx-load runs no Lua scripts (wanted '%s')",
                 optarg);
    case 'L':
      opt.latency = true;
      break;
    case 'J':
      opt.json = true;
      break;
    case 'p':
      opt.progress = true;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'v':
      printf("rx-load %s (rx %s)\n", RX_VERSION_STRING, rx_version_string());
      return 0;
    case ':':
      return bad("option '%s' needs a value", argv[optind - 1]);
    default:
      return bad("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind == argc)
    return bad("%s", "no URL given");
  if (optind + 1 != argc)
    return bad("one URL only; '%s' is one too many", argv[optind + 1]);
  opt.url = argv[optind];
  if (opt.conns < opt.threads)
    return bad("%s", "-c/--connections must be at least -t/--threads");
  const char *msg = parse_url(opt.url);
  if (msg != NULL)
    return bad("%s", msg);
  const char *authority = opt.url + 7;
  if ((msg = format_request(authority, strcspn(authority, "/?#"))) != NULL)
    return bad("%s", msg);
  opt.progress = opt.progress || isatty(STDERR_FILENO);

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM},
                  *ai;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "rx-load: cannot resolve %s: %s\n", host, gai_strerror(rc));
    return 1;
  }
  memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
  addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);

  /* One fd per connection, and a few for the loops: raise the soft limit
   * up to the hard one if that is needed, or say what to do. */
  struct rlimit nofile;
  rlim_t need = (rlim_t)opt.conns + 16 + 8 * (rlim_t)opt.threads;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < need) {
    if (nofile.rlim_max != RLIM_INFINITY && nofile.rlim_max < need) {
      fprintf(stderr,
              "rx-load: %u connections need %llu open files, and the hard "
              "limit is %llu: raise it (ulimit -Hn) or use fewer\n",
              opt.conns, (unsigned long long)need,
              (unsigned long long)nofile.rlim_max);
      return 1;
    }
    nofile.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) {
      fprintf(stderr, "rx-load: setrlimit(RLIMIT_NOFILE, %llu): %s\n",
              (unsigned long long)need, strerror(errno));
      return 1;
    }
  }

  install_allocator();
  /* Threads inherit the mask: SIGINT and SIGTERM reach the main thread
   * alone, in sigtimedwait(). */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  if (opt.rate > 0)
    interval_ns = 1e9 * (double)opt.conns / opt.rate;
  uint32_t ring = 1;
  while (ring < opt.pipeline)
    ring *= 2;
  workers = calloc(opt.threads, sizeof(*workers));
  if (workers == NULL)
    goto oom;
  unsigned next_conn = 0;
  for (unsigned t = 0; t < opt.threads; t++) {
    struct worker *w = &workers[t];
    w->index = t;
    w->nconns = opt.conns / opt.threads + (t < opt.conns % opt.threads);
    w->first_conn = next_conn;
    next_conn += w->nconns;
    w->ring_mask = ring - 1;
    w->conns = calloc(w->nconns, sizeof(*w->conns));
    int64_t *times = calloc((size_t)w->nconns * ring * 2, sizeof(int64_t));
    w->lat = malloc(sizeof(*w->lat));
    w->unlat = malloc(sizeof(*w->unlat));
    if (w->conns == NULL || times == NULL || w->lat == NULL || w->unlat == NULL)
      goto oom;
    hist_init(w->lat);
    hist_init(w->unlat);
    for (unsigned i = 0; i < w->nconns; i++) {
      struct conn *c = &w->conns[i];
      c->w = w;
      c->fd = -1;
      c->sent_at = times + (size_t)i * ring * 2;
      c->planned_at = c->sent_at + ring;
      if (opt.rate > 0)
        c->first = (double)(w->first_conn + i) * 1e9 / opt.rate;
      rx_op_init(&c->connect_op);
      rx_op_init(&c->send_op);
      rx_op_init(&c->recv_op);
      rx_op_init(&c->close_op);
      c->connect_op.data = c->send_op.data = c->recv_op.data =
          c->close_op.data = c;
      rx_timer_init(&c->timer, on_timer, 0, 0);
      c->timer.data = c;
    }
  }

  char dbuf[32];
  fmt_time(dbuf, sizeof(dbuf), (double)opt.duration);
  if (!opt.json) {
    printf("Running %s test @ %s\n", dbuf, opt.url);
    printf("  %u threads and %u connections", opt.threads, opt.conns);
    if (opt.pipeline > 1)
      printf(", pipeline %u", opt.pipeline);
    if (opt.rate > 0)
      printf(", open loop at %.2f requests/s", opt.rate);
    printf("\n");
    fflush(stdout);
  }
  pthread_barrier_init(&start_barrier, NULL, opt.threads + 1);
  for (unsigned t = 0; t < opt.threads; t++) {
    if ((rc = pthread_create(&workers[t].thread, NULL, worker_main,
                             &workers[t])) != 0) {
      fprintf(stderr, "rx-load: pthread_create: %s\n", strerror(rc));
      return 1; /* the others wait at the barrier: exit ends them */
    }
  }
  pthread_barrier_wait(&start_barrier);
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);

  /* Wait: for the threads, a signal, and each second the live line. */
  int64_t t0 = mono_ns(), next_line = t0 + RX_SEC(1);
  uint64_t last_requests = 0;
  int64_t last_t = t0;
  for (;;) {
    bool all_done = true;
    for (unsigned t = 0; t < opt.threads; t++)
      all_done &= atomic_load_explicit(&workers[t].done, memory_order_acquire);
    if (all_done)
      break;
    struct timespec ts = {0, 50 * 1000 * 1000};
    int sig = sigtimedwait(&sigs, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM)
      atomic_store_explicit(&stop_early, true, memory_order_relaxed);
    int64_t now = mono_ns();
    if (opt.progress && now >= next_line) {
      uint64_t req = 0, errs = 0;
      for (unsigned t = 0; t < opt.threads; t++) {
        req += atomic_load_explicit(&workers[t].pub_requests,
                                    memory_order_relaxed);
        errs +=
            atomic_load_explicit(&workers[t].pub_errors, memory_order_relaxed);
      }
      fprintf(stderr,
              "rx-load: %4.0fs  %12llu requests  %10.0f/s  %llu errors\n",
              (double)(now - t0) / 1e9, (unsigned long long)req,
              (double)(req - last_requests) * 1e9 / (double)(now - last_t),
              (unsigned long long)errs);
      last_requests = req;
      last_t = now;
      next_line += RX_SEC(1);
    }
  }
  for (unsigned t = 0; t < opt.threads; t++)
    pthread_join(workers[t].thread, NULL);
  getrusage(RUSAGE_SELF, &ru1);

  struct totals tot = {.lat = workers[0].lat, .unlat = workers[0].unlat};
  int64_t start = INT64_MAX, end = INT64_MIN;
  int status = 0;
  for (unsigned t = 0; t < opt.threads; t++) {
    struct worker *w = &workers[t];
    if (w->error != 0) {
      fprintf(stderr, "rx-load: thread %u: %s: %s\n", t, w->failed,
              rx_strerror(w->error));
      status = 1;
      continue;
    }
    if (w->start < start)
      start = w->start;
    if (w->end > end)
      end = w->end;
    tot.requests += w->requests;
    tot.bytes += w->bytes;
    tot.sent += w->sent;
    tot.sends += w->sends;
    tot.planned += w->planned;
    tot.err.connect += w->err.connect;
    tot.err.read += w->err.read;
    tot.err.write += w->err.write;
    tot.err.timeout += w->err.timeout;
    tot.err.status += w->err.status;
    tot.err.parse += w->err.parse;
    if (t != 0) {
      hist_merge(tot.lat, w->lat);
      hist_merge(tot.unlat, w->unlat);
    }
  }
  if (status != 0)
    return status;
  tot.seconds = (double)(end - start) / 1e9;
  tot.cpu_user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
  tot.cpu_sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
  if (opt.json)
    print_json(&tot);
  else
    print_text(&tot);
  if (tot.requests == 0) {
    fprintf(stderr,
            "rx-load: no response came from %s (%llu connect "
            "errors): is the server there?\n",
            opt.url, (unsigned long long)tot.err.connect);
    status = 1;
  }
  for (unsigned t = 0; t < opt.threads; t++) {
    free(workers[t].conns != NULL ? workers[t].conns[0].sent_at : NULL);
    free(workers[t].conns);
    free(workers[t].lat);
    free(workers[t].unlat);
    free(workers[t].samples);
  }
  free(workers);
  free(request);
  return status;

oom:
  fprintf(stderr, "rx-load: out of memory for %u connections\n", opt.conns);
  return 1;
}
