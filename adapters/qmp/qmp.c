/*
 * qmp.c - the QMP client (rx/qmp.h): a non-blocking unix socket watched
 * for readiness, incremental line framing into a buffer that doubles up to
 * the line limit, jansson for every message, answers matched by id, events
 * published to the caller's bus.
 *
 * Re-entrancy: user callbacks (ready, command answers) may call any
 * function here, rx_qmp_free() and rx_qmp_disconnect() included. Every
 * entry from the loop holds `busy`; a free inside it is finished when the
 * outermost entry returns. Each connection has an `epoch`: code that ran a
 * callback checks it before touching the connection's buffers again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "rx/qmp.h"

#define READ_MIN 4096          /* the first buffer, and the least free room */
#define READ_SHRINK (1u << 20) /* an empty buffer larger than this shrinks */
#define READS_PER_WAKE 64      /* reads per readiness callback, at most */

struct cmd {
  struct cmd *next;
  rx_qmp *q;
  rx_timer timer; /* the caller's timeout, when given */
  char *text;     /* the serialised command, '\n' included */
  size_t len;
  json_int_t id;
  int oob;
  int status; /* on q->ending: the error it completes with */
  int fd;     /* passed with the command (SCM_RIGHTS), or -1; ours */
  rx_qmp_cb cb;
  void *data;
};

struct rx_qmp {
  rx_loop *loop;
  rx_bus *bus;
  struct sockaddr_un addr; /* sun_path "" when none was given */
  char name[sizeof(struct sockaddr_un) + 16]; /* the path, or "fd N" */
  int64_t connect_timeout, retry_interval;
  size_t line_limit;
  int want_oob;
  rx_qmp_ready_cb ready;
  void *data;

  int state;
  int fd;
  int oob;
  int made; /* the socket connected on this connection */
  unsigned epoch;
  int busy, freeing;
  int last_errno; /* of the last connect() attempt */
  rx_io rio, wio;
  rx_timer retry, deadline;
  json_t *greeting;
  json_int_t next_id;

  char *rbuf;
  size_t rcap, rlen, rstart, rscan;
  char *wbuf;
  size_t wcap, wlen, woff;

  struct cmd *waiting, **waiting_tail; /* not yet sent, in order */
  struct cmd *inflight;                /* sent, not answered */
  struct cmd *ending, **ending_tail;   /* their connection ended */
  int ending_busy;                     /* end_commands() is running */
  size_t n_inband, n_waiting, n_inflight;
  size_t n_waiting_oob; /* of n_waiting */
  struct rx_qmp_metrics m;
  char err[512];
};

static void seterr(rx_qmp *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void seterr(rx_qmp *q, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q->err, sizeof q->err, fmt, ap);
  va_end(ap);
}

static void payload_free(void *p) {
  json_decref(p);
}

static void cmd_free(struct cmd *c) {
  rx_timer_stop(c->q->loop, &c->timer);
  if (c->fd >= 0)
    close(c->fd);
  free(c->text);
  free(c);
}

/* ---------------------------------------------------------------------------
 * Entering and leaving from the loop.
 */

static void really_free(rx_qmp *q) {
  free(q->rbuf);
  free(q->wbuf);
  free(q);
}

static void enter(rx_qmp *q) {
  q->busy++;
}
/* 1 when the client went away with this leave. */
static int leave(rx_qmp *q) {
  if (--q->busy == 0 && q->freeing) {
    really_free(q);
    return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------
 * Teardown: the one way a connection ends.
 */

static void publish_disconnect(rx_qmp *q, int error, const char *reason) {
  json_t *p = json_pack("{s:i, s:s}", "error", -error, "reason", reason);
  rx_event *ev;
  if (p == NULL) {
    q->m.events_lost++;
    return;
  }
  if (q->bus == NULL ||
      rx_event_new(&ev, RX_QMP_DISCONNECTED, 0, p, payload_free) < 0) {
    json_decref(p);
    q->m.events_lost++;
    return;
  }
  if (rx_bus_publish(q->bus, ev) < 0)
    q->m.events_lost++;
  rx_event_unref(ev);
}

/* Completes the commands of ended connections, oldest first. They stay on
 * q->ending until their callback runs, so that a callback that frees the
 * client completes the rest inside rx_qmp_free() (none after it returns);
 * a teardown inside a callback adds its commands to the same list. */
static void end_commands(rx_qmp *q) {
  struct cmd *c;

  if (q->ending_busy)
    return; /* the caller up the stack goes on */
  q->ending_busy = 1;
  while ((c = q->ending) != NULL) {
    q->ending = c->next;
    if (q->ending == NULL)
      q->ending_tail = &q->ending;
    if (c->cb != NULL)
      c->cb(q, c->status, NULL, c->data);
    cmd_free(c);
  }
  q->ending_busy = 0;
}

/* Ends the connection with `error` (q->err says why): stops everything,
 * closes the socket, then completes every command and a pending connect
 * with `error` and publishes the disconnect. Callbacks may reconnect. */
static void teardown(rx_qmp *q, int error) {
  int was = q->state, made = q->made;
  struct cmd *list, *c;
  char reason[sizeof q->err];

  if (was == RX_QMP_IDLE)
    return;
  rx_timer_stop(q->loop, &q->retry);
  rx_timer_stop(q->loop, &q->deadline);
  if (q->fd >= 0)
    rx_io_close(q->loop, q->fd); /* stops rio and wio, then closes */
  q->fd = -1;
  q->state = RX_QMP_IDLE;
  q->made = 0;
  q->oob = 0;
  q->epoch++;
  if (q->rcap > READ_SHRINK) {
    free(q->rbuf);
    q->rbuf = NULL;
    q->rcap = 0;
  }
  q->rlen = q->rstart = q->rscan = 0;
  q->wlen = q->woff = 0;

  /* Detach the commands first: their callbacks may start new ones. */
  list = q->inflight;
  q->inflight = NULL;
  if (list != NULL) {
    for (c = list; c->next != NULL; c = c->next)
      ;
    c->next = q->waiting;
  } else {
    list = q->waiting;
  }
  q->waiting = NULL;
  q->waiting_tail = &q->waiting;
  q->n_inband = q->n_waiting = q->n_inflight = q->n_waiting_oob = 0;
  for (c = list; c != NULL; c = c->next) {
    rx_timer_stop(q->loop, &c->timer); /* none fires during the callbacks */
    c->status = error;
  }
  *q->ending_tail = list;
  while (*q->ending_tail != NULL)
    q->ending_tail = &(*q->ending_tail)->next;
  snprintf(reason, sizeof reason, "%s", q->err);

  enter(q);
  if (made)
    publish_disconnect(q, error, reason);
  if (was != RX_QMP_READY && q->ready != NULL)
    q->ready(q, error, q->data);
  end_commands(q);
  leave(q);
}

/* ---------------------------------------------------------------------------
 * Writing.
 */

static void wio_cb(rx_loop *loop, rx_io *w, int revents);

/* Writes what is buffered; 0, or a negative errno after a teardown. A peer
 * that closed is left to the reader, which sees the answers it sent before
 * the EOF. */
static int flush_out(rx_qmp *q) {
  while (q->woff < q->wlen) {
    ssize_t n = send(q->fd, q->wbuf + q->woff, q->wlen - q->woff,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      q->woff += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      rx_io_start(q->loop, &q->wio);
      return 0;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      q->wlen = q->woff = 0; /* the reader will see the end */
      rx_io_stop(q->loop, &q->wio);
      return 0;
    }
    seterr(q, "cannot write to %s: %s", q->name, strerror(n < 0 ? errno : EIO));
    teardown(q, n < 0 ? -errno : -EIO);
    return -EIO;
  }
  q->wlen = q->woff = 0;
  rx_io_stop(q->loop, &q->wio);
  return 0;
}

static int append_out(rx_qmp *q, const char *s, size_t len) {
  if (q->woff > 0 && q->woff == q->wlen)
    q->wlen = q->woff = 0;
  if (q->wlen + len > q->wcap) {
    size_t cap = q->wcap ? q->wcap : READ_MIN;
    char *p;
    while (cap < q->wlen + len)
      cap *= 2;
    p = realloc(q->wbuf, cap);
    if (p == NULL)
      return -ENOMEM;
    q->wbuf = p;
    q->wcap = cap;
  }
  memcpy(q->wbuf + q->wlen, s, len);
  q->wlen += len;
  return 0;
}

static void pump(rx_qmp *q);
static void cmd_timeout_cb(rx_loop *loop, rx_timer *w, int revents);

static void wio_cb(rx_loop *loop, rx_io *w, int revents) {
  rx_qmp *q = w->data;
  (void)loop;
  (void)revents;
  enter(q);
  /* A command with an fd may wait for the buffer to be written. */
  if (flush_out(q) == 0 && q->woff == q->wlen && q->n_waiting > 0 &&
      !q->freeing)
    pump(q);
  leave(q);
}

/* Sends command `c` with its fd: the fd goes with the first byte, what the
 * socket does not take now is buffered. 1 sent, 0 try later, < 0 the
 * connection ended. */
static int send_fd(rx_qmp *q, struct cmd *c) {
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct iovec iov = {.iov_base = c->text, .iov_len = c->len};
  struct msghdr mh = {.msg_iov = &iov,
                      .msg_iovlen = 1,
                      .msg_control = u.buf,
                      .msg_controllen = sizeof u.buf};
  struct cmsghdr *cm;
  ssize_t n;

  memset(&u, 0, sizeof u);
  cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &c->fd, sizeof(int));
  do
    n = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    close(c->fd);
    c->fd = -1;
    if ((size_t)n < c->len && append_out(q, c->text + n, c->len - (size_t)n)) {
      seterr(q, "out of memory for a command to %s", q->name);
      teardown(q, -ENOMEM);
      return -ENOMEM;
    }
    return 1;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    rx_io_start(q->loop, &q->wio);
    return 0;
  }
  if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
    return 0; /* the reader will see the end */
  seterr(q, "cannot send a file descriptor to %s: %s", q->name,
         strerror(n < 0 ? errno : EIO));
  teardown(q, n < 0 ? -errno : -EIO);
  return -EIO;
}

/* Moves commands from waiting to in flight: every OOB one, in-band ones
 * while fewer than RX_QMP_MAX_INFLIGHT are. Only when ready. */
static void pump(rx_qmp *q) {
  struct cmd **pp = &q->waiting, *c;
  int wrote = 0;

  if (q->state != RX_QMP_READY)
    return;
  while ((c = *pp) != NULL) {
    if (!c->oob && q->n_inband >= RX_QMP_MAX_INFLIGHT) {
      if (q->n_waiting_oob == 0)
        break; /* not a walk of every waiting command per answer */
      pp = &c->next;
      continue;
    }
    if (c->fd >= 0) {
      /* What is buffered goes first; then the command with its fd. */
      unsigned epoch = q->epoch;
      if (q->woff < q->wlen && (flush_out(q) < 0 || q->epoch != epoch))
        return;
      wrote = 0;
      if (q->woff < q->wlen)
        return; /* wio_cb pumps again */
      int r = send_fd(q, c);
      if (r <= 0)
        return;
    } else if (append_out(q, c->text, c->len) < 0) {
      break; /* try again with the next answer */
    }
    *pp = c->next;
    if (q->waiting_tail == &c->next)
      q->waiting_tail = pp;
    q->n_waiting--;
    if (c->oob)
      q->n_waiting_oob--;
    free(c->text);
    c->text = NULL;
    c->next = q->inflight;
    q->inflight = c;
    q->n_inflight++;
    if (!c->oob)
      q->n_inband++;
    q->m.sent++;
    wrote = 1;
  }
  if (wrote)
    flush_out(q);
}

/* ---------------------------------------------------------------------------
 * Commands.
 */

/* Takes `c` out of the waiting or the in-flight list; 0 when in neither. */
static int unlink_cmd(rx_qmp *q, struct cmd *c) {
  struct cmd **pp;

  for (pp = &q->waiting; *pp != NULL; pp = &(*pp)->next) {
    if (*pp != c)
      continue;
    *pp = c->next;
    if (q->waiting_tail == &c->next)
      q->waiting_tail = pp;
    q->n_waiting--;
    if (c->oob)
      q->n_waiting_oob--;
    return 1;
  }
  for (pp = &q->inflight; *pp != NULL; pp = &(*pp)->next) {
    if (*pp != c)
      continue;
    *pp = c->next;
    q->n_inflight--;
    if (!c->oob)
      q->n_inband--;
    return 1;
  }
  return 0;
}

/* A command's own timeout: it completes with -ETIMEDOUT, waiting or in
 * flight; a late answer finds no command with its id (counted unknown). Its
 * in-band slot is free again. */
static void cmd_timeout_cb(rx_loop *loop, rx_timer *w, int revents) {
  struct cmd *c = w->data;
  rx_qmp *q = c->q;
  (void)loop;
  (void)revents;

  enter(q);
  if (unlink_cmd(q, c)) {
    q->m.timeouts++;
    if (c->cb != NULL)
      c->cb(q, -ETIMEDOUT, NULL, c->data);
    cmd_free(c);
    if (!q->freeing && q->n_waiting > 0)
      pump(q);
  }
  leave(q);
}

static struct cmd *make_cmd(rx_qmp *q, const char *name, json_t *args, int oob,
                            rx_qmp_cb cb, void *data) {
  struct cmd *c = calloc(1, sizeof *c);
  json_t *o;
  char *s;

  if (c == NULL)
    return NULL;
  c->q = q;
  c->fd = -1;
  rx_timer_init(&c->timer, cmd_timeout_cb, 0, 0);
  c->timer.data = c;
  c->id = ++q->next_id;
  o = json_pack("{s:s, s:I}", oob ? "exec-oob" : "execute", name, "id",
                (json_int_t)c->id);
  if (o == NULL || (args != NULL && json_object_set(o, "arguments", args))) {
    json_decref(o);
    free(c);
    return NULL;
  }
  s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s == NULL) {
    free(c);
    return NULL;
  }
  c->len = strlen(s);
  c->text = realloc(s, c->len + 2);
  if (c->text == NULL) {
    free(s);
    free(c);
    return NULL;
  }
  c->text[c->len++] = '\n';
  c->text[c->len] = '\0';
  c->oob = oob;
  c->cb = cb;
  c->data = data;
  return c;
}

static int submit(rx_qmp *q, const char *name, json_t *args, int oob, int fd,
                  int64_t timeout, rx_qmp_cb cb, void *data) {
  struct cmd *c;

  if (q == NULL || name == NULL || name[0] == '\0' ||
      (args != NULL && !json_is_object(args)) || timeout < 0)
    return -EINVAL;
  if (q->freeing)
    return -ESHUTDOWN;
  if (q->state == RX_QMP_IDLE)
    return -ENOTCONN;
  if (oob && !q->oob)
    return -ENOTSUP;
  c = make_cmd(q, name, args, oob, cb, data);
  if (c == NULL)
    return -ENOMEM;
  if (fd >= 0) {
    c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (c->fd < 0) {
      int e = errno;
      c->fd = -1;
      cmd_free(c);
      return -e;
    }
  }
  if (timeout > 0) {
    int r;
    rx_timer_set(&c->timer, timeout, 0);
    rx_now_update(q->loop); /* from the call, not from the loop's last wake */
    r = rx_timer_start(q->loop, &c->timer);
    if (r < 0) {
      cmd_free(c);
      return r;
    }
  }
  *q->waiting_tail = c;
  q->waiting_tail = &c->next;
  q->n_waiting++;
  if (oob)
    q->n_waiting_oob++;
  pump(q);
  return 0;
}

int rx_qmp_execute(rx_qmp *q, const char *cmd, json_t *args, rx_qmp_cb cb,
                   void *data) {
  return submit(q, cmd, args, 0, -1, 0, cb, data);
}

int rx_qmp_execute_timeout(rx_qmp *q, const char *cmd, json_t *args,
                           int64_t timeout, rx_qmp_cb cb, void *data) {
  return submit(q, cmd, args, 0, -1, timeout, cb, data);
}

int rx_qmp_execute_fd(rx_qmp *q, const char *cmd, json_t *args, int fd,
                      rx_qmp_cb cb, void *data) {
  if (fd < 0)
    return -EBADF;
  return submit(q, cmd, args, 0, fd, 0, cb, data);
}

int rx_qmp_execute_oob(rx_qmp *q, const char *cmd, json_t *args, rx_qmp_cb cb,
                       void *data) {
  return submit(q, cmd, args, 1, -1, 0, cb, data);
}

/* ---------------------------------------------------------------------------
 * Messages.
 */

static void negotiated(rx_qmp *q, int status, json_t *value, void *data) {
  (void)data;
  if (status == -EREMOTEIO) {
    seterr(q, "negotiation refused: %s: %s",
           json_string_value(json_object_get(value, "class")),
           json_string_value(json_object_get(value, "desc")));
    teardown(q, -EPROTO);
    return;
  }
  if (status < 0)
    return; /* the teardown that caused it calls ready */
  q->state = RX_QMP_READY;
  rx_timer_stop(q->loop, &q->deadline);
  q->err[0] = '\0';
  if (q->ready != NULL) {
    unsigned epoch = q->epoch;
    q->ready(q, 0, q->data);
    if (q->epoch != epoch || q->freeing)
      return;
  }
  pump(q);
}

static int greet(rx_qmp *q, json_t *msg) {
  json_t *qmp = json_object_get(msg, "QMP"), *caps, *args = NULL, *v;
  struct cmd *c;
  size_t i;
  int offered = 0;

  if (!json_is_object(qmp)) {
    seterr(q, "%s: the first message is not a QMP greeting", q->name);
    teardown(q, -EPROTO);
    return -EPROTO;
  }
  q->greeting = json_incref(qmp);
  caps = json_object_get(qmp, "capabilities");
  json_array_foreach(caps, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), "oob") == 0)
      offered = 1;
  }
  if (q->want_oob && offered) {
    args = json_pack("{s:[s]}", "enable", "oob");
    if (args == NULL)
      goto nomem;
  }
  c = make_cmd(q, "qmp_capabilities", args, 0, negotiated, NULL);
  json_decref(args);
  if (c == NULL)
    goto nomem;
  if (append_out(q, c->text, c->len) < 0) {
    cmd_free(c);
    goto nomem;
  }
  q->oob = args != NULL;
  free(c->text);
  c->text = NULL;
  c->next = q->inflight;
  q->inflight = c;
  q->n_inflight++;
  q->n_inband++;
  q->m.sent++;
  q->state = RX_QMP_NEGOTIATING;
  return flush_out(q);
nomem:
  seterr(q, "out of memory for qmp_capabilities");
  teardown(q, -ENOMEM);
  return -ENOMEM;
}

static void event(rx_qmp *q, json_t *msg) {
  const char *name = json_string_value(json_object_get(msg, "event"));
  rx_event *ev;

  if (name == NULL || name[0] == '\0' || strlen(name) > 255) {
    q->m.bad_lines++;
    return;
  }
  if (q->bus == NULL ||
      rx_event_new(&ev, name, 0, json_incref(msg), payload_free) < 0) {
    if (q->bus != NULL)
      json_decref(msg);
    q->m.events_lost++;
    return;
  }
  if (rx_bus_publish(q->bus, ev) < 0)
    q->m.events_lost++;
  else
    q->m.events++;
  rx_event_unref(ev);
}

static void answer(rx_qmp *q, json_t *msg) {
  json_t *id = json_object_get(msg, "id"),
         *ret = json_object_get(msg, "return");
  struct cmd **pp, *c;

  if (!json_is_integer(id))
    goto unknown;
  for (pp = &q->inflight; (c = *pp) != NULL; pp = &c->next)
    if (c->id == json_integer_value(id))
      break;
  if (c == NULL)
    goto unknown;
  *pp = c->next;
  q->n_inflight--;
  if (!c->oob)
    q->n_inband--;
  q->m.answered++;
  if (c->cb != NULL) {
    if (ret != NULL)
      c->cb(q, 0, ret, c->data);
    else
      c->cb(q, -EREMOTEIO, json_object_get(msg, "error"), c->data);
  }
  cmd_free(c);
  return;
unknown:
  q->m.unknown++;
}

/* One line, without its '\n'. */
static void message(rx_qmp *q, const char *line, size_t len) {
  json_error_t jerr;
  json_t *msg;

  while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
    len--;
  if (len == 0)
    return;
  msg = json_loadb(line, len, 0, &jerr);
  if (!json_is_object(msg)) {
    json_decref(msg);
    q->m.bad_lines++;
    return;
  }
  if (q->state == RX_QMP_GREETING)
    greet(q, msg);
  else if (json_object_get(msg, "event") != NULL)
    event(q, msg);
  else if (json_object_get(msg, "return") != NULL ||
           json_object_get(msg, "error") != NULL)
    answer(q, msg);
  else
    q->m.bad_lines++;
  json_decref(msg);
}

/* ---------------------------------------------------------------------------
 * Reading: incremental framing.
 */

static int over_limit(rx_qmp *q, size_t len, int partial) {
  seterr(q, "%s: a line of %s%zu bytes is over the limit of %zu bytes", q->name,
         partial ? "at least " : "", len, q->line_limit);
  teardown(q, -EMSGSIZE);
  return -EMSGSIZE;
}

/* Frames and handles every complete line; 0, or < 0 when the connection
 * ended (the buffers are gone then). */
static int lines(rx_qmp *q) {
  unsigned epoch = q->epoch;
  char *nl;

  while ((nl = memchr(q->rbuf + q->rscan, '\n', q->rlen - q->rscan)) != NULL) {
    size_t start = q->rstart, len = (size_t)(nl - (q->rbuf + start));
    if (len > q->line_limit)
      return over_limit(q, len, 0);
    if (len > q->m.longest_line)
      q->m.longest_line = len;
    q->rstart = q->rscan = start + len + 1;
    message(q, q->rbuf + start, len);
    if (q->epoch != epoch || q->freeing)
      return -ECANCELED;
  }
  q->rscan = q->rlen;
  if (q->rlen - q->rstart > q->line_limit)
    return over_limit(q, q->rlen - q->rstart, 1);
  if (q->rstart > 0) {
    memmove(q->rbuf, q->rbuf + q->rstart, q->rlen - q->rstart);
    q->rlen -= q->rstart;
    q->rscan -= q->rstart;
    q->rstart = 0;
  }
  return 0;
}

/* Room for at least READ_MIN more bytes (fewer near the limit: a line of
 * line_limit bytes and its '\n' fit). */
static int room(rx_qmp *q) {
  size_t max = q->line_limit + 1, cap;
  char *p;

  if (q->rcap - q->rlen >= READ_MIN || (q->rcap >= max && q->rlen < q->rcap))
    return 0;
  if (q->rcap >= max) /* full at the limit: lines() refused it already */
    return -EMSGSIZE;
  cap = q->rcap ? q->rcap * 2 : READ_MIN;
  if (cap > max)
    cap = max < READ_MIN ? READ_MIN : max;
  p = realloc(q->rbuf, cap);
  if (p == NULL)
    return -ENOMEM;
  q->rbuf = p;
  q->rcap = cap;
  return 0;
}

static void rio_cb(rx_loop *loop, rx_io *w, int revents) {
  rx_qmp *q = w->data;
  int i;
  (void)loop;
  (void)revents;

  enter(q);
  for (i = 0; i < READS_PER_WAKE; i++) {
    ssize_t n;
    if (room(q) < 0) {
      seterr(q, "out of memory for a line of %zu bytes from %s",
             q->rlen - q->rstart, q->name);
      teardown(q, -ENOMEM);
      break;
    }
    size_t want = q->rcap - q->rlen;
    n = read(q->fd, q->rbuf + q->rlen, want);
    if (n > 0) {
      q->rlen += (size_t)n;
      if (lines(q) < 0)
        break;
      /* A short read emptied the socket: the next would be EAGAIN, and
       * readiness says when more comes (an EOF included). */
      if ((size_t)n < want)
        break;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n == 0 || errno == ECONNRESET) {
      seterr(q, "%s: the peer closed the connection (%s)", q->name,
             n == 0 ? "EOF" : "ECONNRESET");
      teardown(q, -ECONNRESET);
    } else {
      int e = errno;
      seterr(q, "cannot read from %s: %s", q->name, strerror(e));
      teardown(q, -e);
    }
    break;
  }
  /* Answers made room: send what waits, in one write. */
  if (!q->freeing && q->n_waiting > 0)
    pump(q);
  leave(q);
}

/* ---------------------------------------------------------------------------
 * Connecting.
 */

/* One connect() attempt: 1 connected, 0 try again later, < 0 failed. */
static int attempt(rx_qmp *q) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    seterr(q, "cannot make a unix socket: %s", strerror(e));
    return -e;
  }
  if (connect(fd, (struct sockaddr *)&q->addr, sizeof q->addr) == 0 ||
      errno == EINPROGRESS) {
    q->fd = fd;
    return 1;
  }
  q->last_errno = errno;
  close(fd);
  if (q->last_errno == ENOENT || q->last_errno == ECONNREFUSED ||
      q->last_errno == EAGAIN || q->last_errno == EINTR)
    return 0;
  seterr(q, "cannot connect to %s: %s", q->name, strerror(q->last_errno));
  return -q->last_errno;
}

/* After an attempt `r` (attempt()): retry later, fail, or start reading. */
static void try_connect(rx_qmp *q, int r) {
  if (r == 0) {
    rx_timer_set(&q->retry, q->retry_interval, 0);
    rx_timer_start(q->loop, &q->retry);
    return;
  }
  if (r < 0) {
    teardown(q, r);
    return;
  }
  q->made = 1;
  q->m.connects++;
  q->state = RX_QMP_GREETING;
  rx_io_init(&q->rio, rio_cb, q->fd, RX_READ);
  rx_io_init(&q->wio, wio_cb, q->fd, RX_WRITE);
  q->rio.data = q->wio.data = q;
  if (rx_io_start(q->loop, &q->rio) < 0) {
    seterr(q, "cannot watch the socket of %s", q->name);
    teardown(q, -ENOMEM);
  }
}

static void retry_cb(rx_loop *loop, rx_timer *w, int revents) {
  rx_qmp *q = w->data;
  (void)loop;
  (void)revents;
  enter(q);
  try_connect(q, attempt(q));
  leave(q);
}

static void deadline_cb(rx_loop *loop, rx_timer *w, int revents) {
  rx_qmp *q = w->data;
  (void)loop;
  (void)revents;
  enter(q);
  if (q->state == RX_QMP_CONNECTING)
    seterr(q, "cannot connect to %s within %lld ms: %s", q->name,
           (long long)(q->connect_timeout / 1000000),
           strerror(q->last_errno ? q->last_errno : ETIMEDOUT));
  else
    seterr(q, "%s: no %s within %lld ms", q->name,
           q->state == RX_QMP_GREETING ? "greeting"
                                       : "answer to qmp_capabilities",
           (long long)(q->connect_timeout / 1000000));
  teardown(q, -ETIMEDOUT);
  leave(q);
}

int rx_qmp_connect(rx_qmp *q) {
  int r;

  if (q == NULL)
    return -EINVAL;
  if (q->freeing)
    return -ESHUTDOWN;
  if (q->state != RX_QMP_IDLE)
    return -EISCONN;
  if (q->addr.sun_path[0] == '\0')
    return -EDESTADDRREQ;
  json_decref(q->greeting);
  q->greeting = NULL;
  q->err[0] = '\0';
  q->last_errno = 0;
  strcpy(q->name, q->addr.sun_path);
  r = attempt(q);
  if (r < 0)
    return r; /* nothing started; rx_qmp_error() says what failed */
  q->state = RX_QMP_CONNECTING;
  q->epoch++;
  rx_timer_set(&q->deadline, q->connect_timeout, 0);
  rx_timer_start(q->loop, &q->deadline);
  enter(q);
  try_connect(q, r);
  leave(q); /* cannot free: rx_qmp_free() inside sets freeing, busy > 0 */
  return 0;
}

int rx_qmp_connect_fd(rx_qmp *q, int fd) {
  int type = 0, fl;
  socklen_t len = sizeof type;

  if (q == NULL)
    return -EINVAL;
  if (fd < 0)
    return -EBADF;
  if (q->freeing)
    return -ESHUTDOWN;
  if (q->state != RX_QMP_IDLE)
    return -EISCONN;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    return -errno;
  if (type != SOCK_STREAM)
    return -EPROTOTYPE;
  fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK)))
    return -errno;
  json_decref(q->greeting);
  q->greeting = NULL;
  q->err[0] = '\0';
  q->last_errno = 0;
  if (q->addr.sun_path[0] != '\0')
    strcpy(q->name, q->addr.sun_path);
  else
    snprintf(q->name, sizeof q->name, "fd %d", fd);
  q->fd = fd;
  q->state = RX_QMP_CONNECTING;
  q->epoch++;
  rx_timer_set(&q->deadline, q->connect_timeout, 0);
  rx_timer_start(q->loop, &q->deadline);
  enter(q);
  try_connect(q, 1);
  leave(q);
  return 0;
}

int rx_qmp_disconnect(rx_qmp *q) {
  if (q == NULL)
    return -EINVAL;
  if (q->state == RX_QMP_IDLE)
    return -ENOTCONN;
  seterr(q, "%s: disconnected by the client", q->name);
  teardown(q, -ECANCELED);
  return 0;
}

/* ---------------------------------------------------------------------------
 * Life.
 */

int rx_qmp_new(rx_qmp **qp, rx_loop *loop, const struct rx_qmp_options *o) {
  rx_qmp *q;

  if (qp == NULL)
    return -EINVAL;
  *qp = NULL;
  if (loop == NULL || o == NULL ||
      (o->path != NULL &&
       (o->path[0] == '\0' || strlen(o->path) >= sizeof q->addr.sun_path)) ||
      o->connect_timeout < 0 || o->retry_interval < 0)
    return -EINVAL;
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return -ENOMEM;
  q->loop = loop;
  q->bus = o->bus;
  q->addr.sun_family = AF_UNIX;
  if (o->path != NULL)
    strcpy(q->addr.sun_path, o->path);
  strcpy(q->name, q->addr.sun_path);
  q->connect_timeout = o->connect_timeout ? o->connect_timeout : 5000000000;
  q->retry_interval = o->retry_interval ? o->retry_interval : 10000000;
  q->line_limit = o->line_limit ? o->line_limit : RX_QMP_LINE_LIMIT;
  q->want_oob = o->oob != 0;
  q->ready = o->ready;
  q->data = o->data;
  q->fd = -1;
  q->waiting_tail = &q->waiting;
  q->ending_tail = &q->ending;
  rx_timer_init(&q->retry, retry_cb, 0, 0);
  rx_timer_init(&q->deadline, deadline_cb, 0, 0);
  q->retry.data = q->deadline.data = q;
  *qp = q;
  return 0;
}

void rx_qmp_free(rx_qmp *q) {
  if (q == NULL || q->freeing)
    return;
  q->freeing = 1;
  enter(q);
  if (q->state != RX_QMP_IDLE) {
    seterr(q, "%s: the client was freed", q->name);
    teardown(q, -ECANCELED);
  }
  /* Freed from a callback of an ending connection: the rest of its
   * commands complete now, with their connection's error. */
  q->ending_busy = 0;
  end_commands(q);
  json_decref(q->greeting);
  q->greeting = NULL;
  leave(q);
}

int rx_qmp_state(const rx_qmp *q) {
  return q ? q->state : -EINVAL;
}
int rx_qmp_oob(const rx_qmp *q) {
  return q ? q->oob : 0;
}
json_t *rx_qmp_greeting(const rx_qmp *q) {
  return q ? q->greeting : NULL;
}
const char *rx_qmp_error(const rx_qmp *q) {
  return q ? q->err : "";
}
void *rx_qmp_data(const rx_qmp *q) {
  return q ? q->data : NULL;
}

int rx_qmp_metrics(const rx_qmp *q, struct rx_qmp_metrics *m) {
  if (q == NULL || m == NULL)
    return -EINVAL;
  *m = q->m;
  m->inflight = q->n_inflight;
  m->queued = q->n_waiting;
  m->buffer = q->rcap;
  return 0;
}
