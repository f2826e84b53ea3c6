/*
 * http_server.c - the server core of http_server.h.
 *
 * A worker is a thread with its own loop, listening socket (SO_REUSEPORT:
 * the kernel spreads connections over the workers), buffer pool and Date
 * timer; workers share nothing but the connection count for --max-conns.
 *
 * A connection has four ops (recv, send, shutdown, close) and two timers
 * (its deadline and /delay's). Its recv is multishot into the worker's pool:
 * the kernel picks a buffer only when data arrives, so an idle connection
 * holds none. Each read is parsed where it lies; every request it completes
 * gets its response appended to the connection's output buffer, and after
 * the read one send carries them all. Bytes of a request that straddles
 * reads are the only ones copied, into the connection's input buffer, and
 * the buffer goes back to the pool before the callback returns. A body is
 * consumed by http_body_feed() as it passes, never copied.
 *
 * Order: one send at a time per connection, from a second buffer, so that
 * the responses of a read that comes while a send is in flight wait in the
 * first; a /delay request blocks the parsing of what follows it (kept in the
 * input buffer) until its timer has written its response.
 *
 * Deadlines are lazy: a read only stores the loop's time, and the one timer
 * of the connection, when it fires, works out the real deadline and starts
 * again if that is later (header deadline while a request is partial, idle
 * deadline otherwise).
 *
 * Ending: a bad request gets its status and "Connection: close"; so does the
 * last response of a connection asked to close or of a draining server.
 * Then, once all is sent, the write side is shut down and the input read
 * and dropped until the peer closes (at most LINGER): closing with unread
 * input would send a reset that can destroy the response before the client
 * reads it. A connection that fails (an error, a deadline) is closed with
 * rx_op_close() at once, which cancels its ops.
 */
#define _GNU_SOURCE
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_parser.h"
#include "rx.h"

enum {
  POOL_COUNT = 512,      /* buffers per worker's pool (a power of two) */
  POOL_SIZE = 8192,      /* bytes per buffer */
  MAX_HEAD = 8192,       /* a request head beyond this: 431 */
  IN_PAUSE = 64 * 1024,  /* input kept while blocked: stop reading beyond */
  IN_MAX = 1024 * 1024,  /* input kept at most: the connection is closed */
  OUT_BLOCK = 256 * 1024 /* output waiting: parse no more until sent */
};
#define LINGER RX_SEC(2)
#define DELAY_MAX_MS 3600000L

struct worker;

/* What a request whose body is still coming, or whose /delay is running,
 * will be answered with. */
struct pending {
  int route; /* ROUTE_* */
  int minor; /* HTTP/1.minor */
  long ms;   /* /delay's */
  bool head_only, keep_alive;
};

struct conn {
  struct worker *w;
  int fd;
  rx_op recv, send, shut, close; /* op.data: the conn */
  rx_timer deadline, delay;      /* data: the conn */
  struct conn *next, **pprev;
  int64_t last;       /* loop time of the last read or send */
  int64_t head_start; /* loop time of a partial head's first byte, or 0 */
  char *in;           /* bytes kept between reads */
  size_t in_len, in_cap;
  char *out; /* responses waiting for the send */
  size_t out_len, out_cap;
  char *sending; /* the responses of the send in flight */
  size_t sending_cap;
  struct http_body body;
  struct pending cur;
  bool in_body;     /* a request's body is being consumed */
  bool delayed;     /* a /delay timer runs for the oldest unanswered */
  bool close_after; /* answer nothing more; finish once all is sent */
  bool lingering;   /* write side shut: reading until EOF or LINGER */
  bool closing;     /* rx_op_close() submitted */
  bool paused;      /* recv cancelled until the input drains */
  bool counted;     /* holds one of --max-conns */
  bool eof;         /* the peer has finished sending */
};

struct worker {
  struct http_server *srv;
  pthread_t thread;
  rx_loop *loop;
  int lfd;
  rx_op accept, lclose;
  rx_timer date_timer, drain_timer, accept_retry;
  rx_pool *pool;
  rx_task stop_task;
  struct conn *conns, *spare; /* live connections; recycled ones */
  bool draining;
  bool running;  /* under srv->mu: the loop may be posted to */
  bool finished; /* rx_run() has returned */
  int err;
  /* The Date value, refreshed once a second, and the responses that embed
   * it: /plaintext and /json for a keep-alive HTTP/1.1 GET, whole. */
  char date[32];
  char plaintext[192], json[192];
  size_t plaintext_len, json_len;
};

struct http_server {
  struct http_server_config cfg;
  unsigned nworkers;
  struct worker *workers;
  unsigned port;
  const char *backend;
  atomic_uint conns; /* counted against cfg.max_conns */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned ready; /* workers that listen (or failed), under mu */
  atomic_bool stopped;
};

enum {
  ROUTE_PLAINTEXT,
  ROUTE_JSON,
  ROUTE_DELAY,
  ROUTE_NOT_FOUND,
  ROUTE_BAD_QUERY,
  ROUTE_NOT_ALLOWED,
};

static const char plaintext_body[] = "Hello, World!";
static const char json_body[] = "{\"message\":\"Hello, World!\"}";

static void on_recv(rx_loop *loop, rx_op *op, int res, unsigned flags);
static void conn_flush(struct conn *c);
static void conn_settle(struct conn *c);
static void worker_maybe_done(struct worker *w);

/* ---------------------------------------------------------------------------
 * Responses.
 */

/* An IMF-fixdate (RFC 9110 5.6.7) of `t`: 29 bytes and a NUL in buf[32]. */
static void imf_fixdate(char *buf, time_t t) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(buf, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
           tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
}

/* Writes a whole response into buf (room for 256 bytes plus the body):
 * its length. conn_hdr: NULL, "close" or "keep-alive". */
static size_t format_response(char *buf, const char *date, int status,
                              const char *ctype, const char *body,
                              size_t body_len, bool head_only,
                              const char *conn_hdr, const char *extra) {
  int n = sprintf(buf,
                  "HTTP/1.1 %d %s\r\nServer: rx\r\nDate: %s\r\n%s%s%s%s"
                  "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                  status, http_reason(status), date,
                  conn_hdr ? "Connection: " : "", conn_hdr ? conn_hdr : "",
                  conn_hdr ? "\r\n" : "", extra ? extra : "", ctype, body_len);
  if (!head_only) {
    memcpy(buf + n, body, body_len);
    n += (int)body_len;
  }
  return (size_t)n;
}

static void refresh_date(struct worker *w) {
  imf_fixdate(w->date, time(NULL));
  w->plaintext_len = format_response(w->plaintext, w->date, 200, "text/plain",
                                     plaintext_body, sizeof(plaintext_body) - 1,
                                     false, NULL, NULL);
  w->json_len = format_response(w->json, w->date, 200, "application/json",
                                json_body, sizeof(json_body) - 1, false, NULL,
                                NULL);
}

static void on_date(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  refresh_date(t->data);
}

/* Room for n more bytes of output: false when memory ran out. */
static bool out_reserve(struct conn *c, size_t n) {
  if (c->out_len + n <= c->out_cap)
    return true;
  size_t cap = c->out_cap ? c->out_cap : 4096;
  while (cap < c->out_len + n)
    cap *= 2;
  char *p = realloc(c->out, cap);
  if (p == NULL)
    return false;
  c->out = p;
  c->out_cap = cap;
  return true;
}

static void conn_abort(struct conn *c);

/* Appends the response of a request: `keep_alive` as the request allows. */
static void respond(struct conn *c, int route, bool head_only, bool keep_alive,
                    int minor) {
  struct worker *w = c->w;
  if (w->draining)
    keep_alive = false;
  if (!out_reserve(c, 512)) {
    conn_abort(c);
    return;
  }
  char *o = c->out + c->out_len;
  /* The benchmarks' case: one copy of a preformatted response. */
  if (keep_alive && minor == 1 && !head_only) {
    if (route == ROUTE_PLAINTEXT || route == ROUTE_DELAY) {
      memcpy(o, w->plaintext, w->plaintext_len);
      c->out_len += w->plaintext_len;
      return;
    }
    if (route == ROUTE_JSON) {
      memcpy(o, w->json, w->json_len);
      c->out_len += w->json_len;
      return;
    }
  }
  const char *conn_hdr = !keep_alive ? "close"
                                     : (minor == 0 ? "keep-alive" : NULL);
  switch (route) {
  case ROUTE_PLAINTEXT:
  case ROUTE_DELAY:
    c->out_len += format_response(o, w->date, 200, "text/plain", plaintext_body,
                                  sizeof(plaintext_body) - 1, head_only,
                                  conn_hdr, NULL);
    break;
  case ROUTE_JSON:
    c->out_len += format_response(o, w->date, 200, "application/json",
                                  json_body, sizeof(json_body) - 1, head_only,
                                  conn_hdr, NULL);
    break;
  case ROUTE_BAD_QUERY:
    c->out_len += format_response(o, w->date, 400, "text/plain",
                                  "delay: ms=0..3600000\n", 21, head_only,
                                  conn_hdr, NULL);
    break;
  case ROUTE_NOT_ALLOWED:
    c->out_len += format_response(o, w->date, 405, "text/plain",
                                  "Method Not Allowed\n", 19, head_only,
                                  conn_hdr, "Allow: GET, HEAD\r\n");
    break;
  default:
    c->out_len += format_response(o, w->date, 404, "text/plain", "Not Found\n",
                                  10, head_only, conn_hdr, NULL);
    break;
  }
  if (!keep_alive)
    c->close_after = true;
}

/* Appends an error status (400, 431, 501, 505, 503) and ends the
 * connection after it. */
static void respond_error(struct conn *c, int status) {
  if (!out_reserve(c, 512)) {
    conn_abort(c);
    return;
  }
  const char *reason = http_reason(status);
  char body[64];
  int n = snprintf(body, sizeof(body), "%s\n", reason);
  c->out_len += format_response(c->out + c->out_len, c->w->date, status,
                                "text/plain", body, (size_t)n, false, "close",
                                NULL);
  c->close_after = true;
}

/* The route of a parsed request; for /delay, *ms. */
static int route_of(const struct http_request *r, long *ms) {
  const struct http_slice *p = &r->path;
  int route;
  if (p->n == 10 && memcmp(p->p, "/plaintext", 10) == 0)
    route = ROUTE_PLAINTEXT;
  else if (p->n == 5 && memcmp(p->p, "/json", 5) == 0)
    route = ROUTE_JSON;
  else if (p->n == 6 && memcmp(p->p, "/delay", 6) == 0)
    route = ROUTE_DELAY;
  else
    return ROUTE_NOT_FOUND;
  if (r->method_id != HTTP_GET && r->method_id != HTTP_HEAD)
    return ROUTE_NOT_ALLOWED;
  if (route != ROUTE_DELAY)
    return route;
  /* ms=N among the query's &-separated parameters; absent: 0. */
  *ms = 0;
  const char *q = r->query.p, *end = q + r->query.n;
  while (q < end) {
    const char *e = memchr(q, '&', (size_t)(end - q));
    if (e == NULL)
      e = end;
    if (e - q > 3 && memcmp(q, "ms=", 3) == 0) {
      long v = 0;
      for (const char *d = q + 3; d < e; d++) {
        if (*d < '0' || *d > '9' || (v = v * 10 + (*d - '0')) > DELAY_MAX_MS)
          return ROUTE_BAD_QUERY;
      }
      *ms = v;
    } else if (e - q >= 2 && memcmp(q, "ms", 2) == 0 &&
               (e - q == 2 || q[2] == '=')) {
      return ROUTE_BAD_QUERY;
    }
    q = e < end ? e + 1 : e;
  }
  return ROUTE_DELAY;
}

/* ---------------------------------------------------------------------------
 * Requests.
 */

static void on_delay(rx_loop *loop, rx_timer *t, int revents);

/* Answers c->cur, the request whose head and body are in: now, or for a
 * /delay with ms > 0, when its timer fires. */
static void answer(struct conn *c) {
  if (c->cur.route == ROUTE_DELAY && c->cur.ms > 0) {
    c->delayed = true;
    rx_timer_set(&c->delay, RX_MSEC(c->cur.ms), 0);
    rx_timer_start(c->w->loop, &c->delay);
    return;
  }
  respond(c, c->cur.route, c->cur.head_only, c->cur.keep_alive, c->cur.minor);
}

/* Whether parsing must wait: a /delay runs, or too much output waits. */
static bool conn_blocked(const struct conn *c) {
  return c->delayed || c->out_len >= OUT_BLOCK;
}

/* Parses and answers the requests in buf[0..len): the bytes consumed. It
 * stops at a partial head (the caller keeps the rest), when blocked, or
 * when the connection is to answer nothing more. */
static size_t process(struct conn *c, const char *buf, size_t len) {
  size_t off = 0;
  while (off < len && !c->close_after && !c->closing && !conn_blocked(c)) {
    if (c->in_body) {
      long n = http_body_feed(&c->body, buf + off, len - off);
      if (n < 0) {
        respond_error(c, (int)-n);
        break;
      }
      off += (size_t)n;
      if (http_body_done(&c->body)) {
        c->in_body = false;
        answer(c);
      }
      continue;
    }
    struct http_request req;
    int n = http_parse_head(buf + off, len - off, MAX_HEAD, &req);
    if (n == HTTP_NEED_MORE)
      break;
    if (n < 0) {
      respond_error(c, -n);
      break;
    }
    off += (size_t)n;
    c->head_start = 0;
    long ms = 0;
    int route = route_of(&req, &ms);
    c->cur = (struct pending){route, req.minor, ms, req.method_id == HTTP_HEAD,
                              req.keep_alive};
    http_body_init(&c->body, &req);
    if (!http_body_done(&c->body)) {
      c->in_body = true;
      if (req.expect_continue && req.minor == 1 && out_reserve(c, 32)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        memcpy(c->out + c->out_len, cont, sizeof(cont) - 1);
        c->out_len += sizeof(cont) - 1;
      }
      continue;
    }
    answer(c);
  }
  return off;
}

/* Keeps buf[0..len) as the start of c->in: false when too much is kept or
 * memory ran out. */
static bool keep_input(struct conn *c, const char *buf, size_t len, size_t at) {
  if (at + len > c->in_cap) {
    if (at + len > IN_MAX)
      return false;
    size_t cap = c->in_cap ? c->in_cap : MAX_HEAD;
    while (cap < at + len)
      cap *= 2;
    char *p = realloc(c->in, cap);
    if (p == NULL)
      return false;
    c->in = p;
    c->in_cap = cap;
  }
  memmove(c->in + at, buf, len);
  c->in_len = at + len;
  return true;
}

/* Sets the header deadline for a partial head that has just begun. */
static void head_started(struct conn *c) {
  struct worker *w = c->w;
  int64_t limit = w->srv->cfg.header_timeout;
  c->head_start = rx_now(w->loop);
  if (rx_timer_remaining(w->loop, &c->deadline) > limit) {
    rx_timer_stop(w->loop, &c->deadline);
    rx_timer_set(&c->deadline, limit, 0);
    rx_timer_start(w->loop, &c->deadline);
  }
}

/* Parses what c->in holds (after a read, a send or a /delay). */
static void process_kept(struct conn *c) {
  size_t n = process(c, c->in, c->in_len);
  if (c->close_after || c->closing) {
    c->in_len = 0;
    return;
  }
  if (n > 0) {
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
  }
  if (c->in_len > 0 && !conn_blocked(c) && c->head_start == 0)
    head_started(c);
}

/* The bytes of one read. */
static void conn_input(struct conn *c, const char *buf, size_t len) {
  c->last = rx_now(c->w->loop);
  if (c->close_after || c->lingering || c->closing)
    return; /* read and dropped */
  if (c->in_len > 0 || conn_blocked(c)) {
    if (!keep_input(c, buf, len, c->in_len)) {
      conn_abort(c);
      return;
    }
    if (!conn_blocked(c))
      process_kept(c);
  } else {
    size_t n = process(c, buf, len);
    if (n < len && !c->close_after && !c->closing) {
      if (!keep_input(c, buf + n, len - n, 0)) {
        conn_abort(c);
        return;
      }
      if (!conn_blocked(c))
        head_started(c);
    }
  }
}

/* ---------------------------------------------------------------------------
 * Connections.
 */

static void conn_release(struct conn *c) {
  if (!c->closing || rx_op_active(&c->recv) || rx_op_active(&c->send) ||
      rx_op_active(&c->shut) || rx_op_active(&c->close))
    return;
  struct worker *w = c->w;
  rx_timer_stop(w->loop, &c->deadline);
  rx_timer_stop(w->loop, &c->delay);
  *c->pprev = c->next;
  if (c->next != NULL)
    c->next->pprev = c->pprev;
  if (c->counted)
    atomic_fetch_sub_explicit(&w->srv->conns, 1, memory_order_relaxed);
  c->next = w->spare;
  w->spare = c;
  worker_maybe_done(w);
}

static void on_op_end(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)res;
  (void)flags;
  conn_release(op->data);
}

/* Closes at once: rx_op_close() cancels the recv and any send. */
static void conn_abort(struct conn *c) {
  if (c->closing)
    return;
  struct worker *w = c->w;
  c->closing = true;
  rx_timer_stop(w->loop, &c->deadline);
  rx_timer_stop(w->loop, &c->delay);
  c->delayed = false;
  c->in_len = 0;
  c->out_len = 0;
  int rc = rx_op_close(w->loop, &c->close, c->fd, on_op_end);
  if (rc < 0) {
    close(c->fd); /* no op can be left: the fd was never refused before */
    c->closing = true;
  }
}

/* The polite end, all output sent: shut the write side down and read until
 * the peer closes, or close at once when it already has. */
static void conn_finish(struct conn *c) {
  struct worker *w = c->w;
  if (c->lingering || c->closing)
    return;
  if (!rx_op_active(&c->recv) && !c->paused) {
    conn_abort(c); /* EOF seen: nothing unread */
    return;
  }
  c->lingering = true;
  c->in_len = 0;
  if (rx_op_shutdown(w->loop, &c->shut, c->fd, SHUT_WR, on_op_end) < 0) {
    conn_abort(c);
    return;
  }
  if (c->paused && !rx_op_active(&c->recv)) {
    c->paused = false;
    if (rx_op_recv_multishot(w->loop, &c->recv, c->fd, w->pool, 0, on_recv) <
        0) {
      conn_abort(c);
      return;
    }
  }
  rx_timer_stop(w->loop, &c->deadline);
  rx_timer_set(&c->deadline, LINGER, 0);
  rx_timer_start(w->loop, &c->deadline);
}

static void on_sent(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct conn *c = op->data;
  if (c->closing) {
    conn_release(c);
    return;
  }
  if (res < 0) { /* -EPIPE, -ECONNRESET, -ETIMEDOUT */
    conn_abort(c);
    conn_release(c);
    return;
  }
  c->last = rx_now(loop);
  bool was_blocked = conn_blocked(c);
  conn_flush(c);
  if (was_blocked && !conn_blocked(c) && c->in_len > 0)
    process_kept(c);
  conn_settle(c);
}

/* Sends what waits in c->out, unless a send is in flight. */
static void conn_flush(struct conn *c) {
  if (c->out_len == 0 || rx_op_active(&c->send) || c->closing)
    return;
  char *b = c->sending;
  size_t cap = c->sending_cap;
  c->sending = c->out;
  c->sending_cap = c->out_cap;
  c->out = b;
  c->out_cap = cap;
  size_t len = c->out_len;
  c->out_len = 0;
  int rc = rx_op_send(c->w->loop, &c->send, c->fd, c->sending, (unsigned)len,
                      MSG_NOSIGNAL, on_sent);
  if (rc < 0)
    conn_abort(c);
}

/* After anything happened: send, resume reading, or finish. */
static void conn_settle(struct conn *c) {
  struct worker *w = c->w;
  if (c->closing || c->lingering)
    return;
  conn_flush(c);
  if (c->closing)
    return;
  bool busy = c->delayed || c->out_len > 0 || rx_op_active(&c->send);
  bool partial = c->in_body || c->in_len > 0;
  if (!busy && c->eof && partial && !c->close_after) {
    conn_abort(c); /* the peer stopped inside a request */
    return;
  }
  if (!busy && (c->close_after || c->eof || (w->draining && !partial))) {
    conn_finish(c);
    return;
  }
  /* Too much input kept while blocked: stop reading until it drains. */
  if (c->in_len >= IN_PAUSE && rx_op_active(&c->recv) && !c->paused) {
    c->paused = true;
    rx_op_cancel(w->loop, &c->recv);
  } else if (c->paused && !rx_op_active(&c->recv) && c->in_len < IN_PAUSE) {
    c->paused = false;
    if (rx_op_recv_multishot(w->loop, &c->recv, c->fd, w->pool, 0, on_recv) < 0)
      conn_abort(c);
  }
}

static void on_recv(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  struct conn *c = op->data;
  struct worker *w = c->w;
  if (flags & RX_OP_F_BUFFER) {
    unsigned id = RX_OP_BUFFER_ID(flags);
    if (res > 0)
      conn_input(c, rx_pool_buffer(w->pool, id), (size_t)res);
    rx_pool_put(w->pool, id);
  }
  if (flags & RX_OP_F_MORE) {
    conn_settle(c);
    return;
  }
  /* The recv has ended. */
  if (c->closing) {
    conn_release(c);
    return;
  }
  if (res > 0 || (res == -ECANCELED && c->paused)) {
    /* The kernel ended a multishot recv early, or a pause. */
    if (res > 0 && !c->paused &&
        rx_op_recv_multishot(loop, &c->recv, c->fd, w->pool, 0, on_recv) < 0)
      conn_abort(c);
    conn_settle(c);
    return;
  }
  if (res == 0 && !c->lingering) {
    /* The peer has finished sending: answer what is in, then close
     * (conn_settle() closes at once if a request was cut short). */
    c->eof = true;
    conn_settle(c);
    if (!c->closing && !c->lingering && !rx_op_active(&c->send) &&
        !c->delayed && c->out_len == 0)
      conn_abort(c);
    conn_release(c);
    return;
  }
  /* An error, EOF inside a request, or EOF while lingering. */
  conn_abort(c);
  conn_release(c);
}

/* The connection's one timer: linger's end, or a header or idle deadline
 * that may have moved since it was started. */
static void on_deadline(rx_loop *loop, rx_timer *t, int revents) {
  (void)revents;
  struct conn *c = t->data;
  struct worker *w = c->w;
  int64_t now = rx_now(loop);
  int64_t due;
  if (c->lingering)
    due = now;
  else if (c->head_start != 0)
    due = c->head_start + w->srv->cfg.header_timeout;
  else if (c->delayed)
    due = now + w->srv->cfg.idle_timeout; /* its timer answers */
  else
    due = c->last + w->srv->cfg.idle_timeout;
  if (due > now) {
    rx_timer_set(t, due - now, 0);
    rx_timer_start(loop, t);
    return;
  }
  conn_abort(c);
  conn_release(c);
}

static void on_delay(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  struct conn *c = t->data;
  c->delayed = false;
  respond(c, ROUTE_DELAY, c->cur.head_only, c->cur.keep_alive, c->cur.minor);
  if (c->in_len > 0)
    process_kept(c);
  conn_settle(c);
}

static struct conn *conn_new(struct worker *w, int fd) {
  struct conn *c = w->spare;
  if (c != NULL) {
    w->spare = c->next;
  } else {
    c = calloc(1, sizeof(*c));
    if (c == NULL)
      return NULL;
  }
  c->w = w;
  c->fd = fd;
  rx_op_init(&c->recv);
  rx_op_init(&c->send);
  rx_op_init(&c->shut);
  rx_op_init(&c->close);
  c->recv.data = c->send.data = c->shut.data = c->close.data = c;
  rx_timer_init(&c->deadline, on_deadline, w->srv->cfg.idle_timeout, 0);
  rx_timer_init(&c->delay, on_delay, 0, 0);
  c->deadline.data = c->delay.data = c;
  c->last = rx_now(w->loop);
  c->head_start = 0;
  c->in_len = c->out_len = 0;
  c->in_body = c->delayed = c->close_after = c->lingering = false;
  c->closing = c->paused = c->counted = c->eof = false;
  c->next = w->conns;
  c->pprev = &w->conns;
  if (c->next != NULL)
    c->next->pprev = &c->next;
  w->conns = c;
  return c;
}

static void conn_start(struct worker *w, int fd) {
  struct http_server *s = w->srv;
  bool refuse = false;
  if (s->cfg.max_conns > 0) {
    unsigned n =
        atomic_fetch_add_explicit(&s->conns, 1, memory_order_relaxed) + 1;
    if (n > s->cfg.max_conns) {
      atomic_fetch_sub_explicit(&s->conns, 1, memory_order_relaxed);
      refuse = true;
    }
  }
  struct conn *c = conn_new(w, fd);
  if (c == NULL) {
    if (!refuse && s->cfg.max_conns > 0)
      atomic_fetch_sub_explicit(&s->conns, 1, memory_order_relaxed);
    close(fd); /* no op has it yet */
    return;
  }
  c->counted = !refuse && s->cfg.max_conns > 0;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  rx_timer_start(w->loop, &c->deadline);
  if (rx_op_recv_multishot(w->loop, &c->recv, fd, w->pool, 0, on_recv) < 0) {
    conn_abort(c);
    return;
  }
  if (refuse) {
    respond_error(c, 503);
    conn_settle(c);
  }
}

/* ---------------------------------------------------------------------------
 * Workers.
 */

static void on_accept(rx_loop *loop, rx_op *op, int res, unsigned flags);

static int accept_start(struct worker *w) {
  return rx_op_accept_multishot(w->loop, &w->accept, w->lfd,
                                SOCK_NONBLOCK | SOCK_CLOEXEC, on_accept);
}

static void on_accept_retry(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  struct worker *w = t->data;
  if (!w->draining && accept_start(w) < 0)
    rx_timer_start(w->loop, t);
}

static void on_accept(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  struct worker *w = op->data;
  if (res >= 0) {
    if (w->draining)
      close(res);
    else
      conn_start(w, res);
  }
  if (flags & RX_OP_F_MORE || w->draining)
    return;
  if (res >= 0 || res == -ECONNABORTED || res == -EINTR) {
    if (accept_start(w) == 0)
      return;
  }
  /* EMFILE, ENFILE, ENOMEM: try again shortly instead of spinning. */
  rx_timer_start(w->loop, &w->accept_retry);
}

static void on_nothing(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)op;
  (void)res;
  (void)flags;
}

/* The loop has nothing left once the listener is closed and every
 * connection is gone: the timers stop and rx_run() returns. */
static void worker_maybe_done(struct worker *w) {
  if (!w->draining || w->conns != NULL)
    return;
  rx_timer_stop(w->loop, &w->date_timer);
  rx_timer_stop(w->loop, &w->drain_timer);
  rx_timer_stop(w->loop, &w->accept_retry);
}

/* The drain has taken too long: close what is left. */
static void on_drain_timeout(rx_loop *loop, rx_timer *t, int revents) {
  (void)loop;
  (void)revents;
  struct worker *w = t->data;
  for (struct conn *c = w->conns, *next; c != NULL; c = next) {
    next = c->next;
    conn_abort(c);
  }
}

static void on_stop(rx_loop *loop, rx_task *task) {
  struct worker *w = task->data;
  if (w->draining || w->finished)
    return;
  w->draining = true;
  rx_timer_stop(loop, &w->accept_retry);
  rx_op_close(loop, &w->lclose, w->lfd, on_nothing);
  w->lfd = -1;
  for (struct conn *c = w->conns, *next; c != NULL; c = next) {
    next = c->next;
    conn_settle(c);
  }
  rx_timer_start(loop, &w->drain_timer);
  worker_maybe_done(w);
}

/* A listening socket on the configured address: the fd, or -errno. */
static int listen_on(const struct http_server_config *cfg, unsigned port,
                     unsigned *bound) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  const char *addr = cfg->bind ? cfg->bind : "127.0.0.1";
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    len = sizeof(*a4);
  } else if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    len = sizeof(*a6);
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
      bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *bound = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
  return fd;
}

/* Sets a worker's loop up; 0 or -errno (what: the step). */
static int worker_setup(struct worker *w, const char **what) {
  struct rx_loop_options opts = {0};
  opts.backend = w->srv->cfg.backend;
  opts.ring_entries = 2048;
  /* A request that arrives does not wake the thread while it works or
   * naps (--collect): the client's send pays no wake-up. */
  opts.flags = RX_LOOP_DEFER;
  int rc = rx_loop_new(&w->loop, &opts);
  if (rc < 0) {
    *what = "rx_loop_new";
    w->loop = NULL;
    return rc;
  }
  if ((rc = rx_pool_new(w->loop, &w->pool, POOL_COUNT, POOL_SIZE)) < 0) {
    *what = "rx_pool_new";
    return rc;
  }
  if (w->srv->cfg.collect > 0)
    rx_set_io_collect_interval(w->loop, w->srv->cfg.collect);
  refresh_date(w);
  rx_timer_init(&w->date_timer, on_date, RX_SEC(1), RX_SEC(1));
  w->date_timer.data = w;
  rx_timer_init(&w->drain_timer, on_drain_timeout, w->srv->cfg.header_timeout,
                0);
  w->drain_timer.data = w;
  rx_timer_init(&w->accept_retry, on_accept_retry, RX_MSEC(100), 0);
  w->accept_retry.data = w;
  rx_op_init(&w->accept);
  rx_op_init(&w->lclose);
  w->accept.data = w;
  w->stop_task.fn = on_stop;
  w->stop_task.data = w;
  if ((rc = rx_timer_start(w->loop, &w->date_timer)) < 0) {
    *what = "rx_timer_start";
    return rc;
  }
  if ((rc = accept_start(w)) < 0) {
    *what = "rx_op_accept_multishot";
    return rc;
  }
  return 0;
}

static void worker_teardown(struct worker *w) {
  if (w->loop != NULL)
    rx_loop_free(w->loop); /* cancels what is left, frees the pool */
  w->loop = NULL;
  if (w->lfd >= 0)
    close(w->lfd);
  w->lfd = -1;
  for (struct conn *c = w->spare, *next; c != NULL; c = next) {
    next = c->next;
    free(c->in);
    free(c->out);
    free(c->sending);
    free(c);
  }
  w->spare = NULL;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct http_server *s = w->srv;
  const char *what = NULL;
  int rc = worker_setup(w, &what);
  pthread_mutex_lock(&s->mu);
  if (rc < 0) {
    w->err = rc;
    fprintf(stderr, "rx-http: %s: %s\n", what, rx_strerror(rc));
  } else {
    w->running = true;
    if (s->backend == NULL)
      s->backend = rx_backend_name(w->loop);
  }
  s->ready++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (rc == 0) {
    rc = rx_run(w->loop, RX_RUN_DEFAULT);
    if (rc < 0) {
      fprintf(stderr, "rx-http: rx_run: %s\n", rx_strerror(rc));
      w->err = rc;
    }
  }
  /* No post may reach the loop once it is being freed; one that came
   * just before finds `finished` set (rx_loop_free() runs it). */
  pthread_mutex_lock(&s->mu);
  w->running = false;
  pthread_mutex_unlock(&s->mu);
  w->finished = true;
  worker_teardown(w);
  return NULL;
}

int http_server_start(struct http_server **srvp,
                      const struct http_server_config *cfg, const char **what) {
  static const char *dummy;
  if (what == NULL)
    what = &dummy;
  *what = "arguments";
  if (srvp == NULL || cfg == NULL || cfg->port > 65535)
    return -EINVAL;
  struct http_server *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    *what = "calloc";
    return -ENOMEM;
  }
  s->cfg = *cfg;
  if (s->cfg.threads == 0)
    s->cfg.threads = 1;
  if (s->cfg.header_timeout <= 0)
    s->cfg.header_timeout = RX_SEC(10);
  if (s->cfg.idle_timeout <= 0)
    s->cfg.idle_timeout = RX_SEC(60);
  s->workers = calloc(s->cfg.threads, sizeof(*s->workers));
  if (s->workers == NULL) {
    free(s);
    *what = "calloc";
    return -ENOMEM;
  }
  atomic_init(&s->conns, 0);
  atomic_init(&s->stopped, false);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  for (unsigned i = 0; i < s->cfg.threads; i++)
    s->workers[i].lfd = -1;
  int rc = 0;
  unsigned port = cfg->port;
  for (unsigned i = 0; i < s->cfg.threads; i++) {
    struct worker *w = &s->workers[i];
    w->srv = s;
    w->lfd = listen_on(&s->cfg, port, &port);
    if (w->lfd < 0) {
      rc = w->lfd;
      *what = rc == -EINVAL ? "--bind (an IPv4 or IPv6 address)" : "listen";
      break;
    }
  }
  s->port = port;
  unsigned started = 0;
  for (unsigned i = 0; rc == 0 && i < s->cfg.threads; i++) {
    rc = -pthread_create(&s->workers[i].thread, NULL, worker_main,
                         &s->workers[i]);
    if (rc < 0)
      *what = "pthread_create";
    else
      started++;
  }
  s->nworkers = started;
  pthread_mutex_lock(&s->mu);
  while (s->ready < started)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  for (unsigned i = 0; rc == 0 && i < started; i++) {
    if (s->workers[i].err < 0) {
      rc = s->workers[i].err;
      *what = "a worker's loop";
    }
  }
  if (rc < 0) {
    for (unsigned i = started; i < s->cfg.threads; i++)
      if (s->workers[i].lfd >= 0)
        close(s->workers[i].lfd);
    http_server_stop(s);
    http_server_wait(s);
    return rc;
  }
  *srvp = s;
  return 0;
}

unsigned http_server_port(const struct http_server *s) {
  return s != NULL ? s->port : 0;
}

const char *http_server_backend(const struct http_server *s) {
  return s != NULL && s->backend != NULL ? s->backend : "?";
}

void http_server_stop(struct http_server *s) {
  if (s == NULL || atomic_exchange(&s->stopped, true))
    return;
  pthread_mutex_lock(&s->mu);
  for (unsigned i = 0; i < s->nworkers; i++) {
    struct worker *w = &s->workers[i];
    if (w->running)
      rx_loop_post(w->loop, &w->stop_task);
  }
  pthread_mutex_unlock(&s->mu);
}

int http_server_wait(struct http_server *s) {
  if (s == NULL)
    return -EINVAL;
  int rc = 0;
  for (unsigned i = 0; i < s->nworkers; i++) {
    pthread_join(s->workers[i].thread, NULL);
    if (rc == 0 && s->workers[i].err < 0)
      rc = s->workers[i].err;
  }
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->workers);
  free(s);
  return rc;
}
