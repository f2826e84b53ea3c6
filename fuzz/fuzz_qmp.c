/*
 * fuzz_qmp.c - the QMP client's line reader and router (adapters/qmp/qmp.c)
 * fed by a scripted server on the other end of a socketpair.
 *
 * The client gets one end through rx_qmp_connect_fd() and runs on a real
 * loop ($RX_BACKEND); the script plays the server on the other end, from
 * the test's thread between loop iterations. The first bytes choose the
 * client's options (a small line limit, so that the limit path runs; OOB
 * wanted or not). Then each operation is one of: queue a greeting (OOB
 * offered or not), the answer to qmp_capabilities (or its refusal), an
 * answer to a command the client sent (picked by the id read from the
 * socket, answered again or never: the return value or the error names a
 * unique token), an answer with an unknown, missing or ill-typed id, an
 * event (STOP, RESUME, RESET, JOB_STATUS_CHANGE, SHUTDOWN or a scripted
 * name, with a sequence number), garbage (bytes with no '{', so that every
 * JSON object the client reads was composed here), a huge line (an answer,
 * an event or blanks); write a scripted number of the queued bytes (lines
 * split anywhere); run the loop once; have the client execute a command
 * (plain, with a timeout, with a file descriptor, OOB); choose what the
 * next command callback does (execute another, disconnect, free the
 * client); disconnect; reconnect on a fresh socketpair; EOF (close the
 * server's end). At the end the server's end closes and the loop runs
 * until the client is idle, within a bound.
 *
 * The checks: every command accepted gets exactly one callback, with a
 * status among those rx/qmp.h names; status 0 and -EREMOTEIO carry a token
 * the server wrote for that very command; no callback after rx_qmp_free()
 * returns, none pending after rx_qmp_disconnect() returns; the ready
 * callback once per connect; a listener of every event sees the scripted
 * events in the order written (sequence numbers rising) with their names,
 * and a listener of STOP and RESUME sees exactly those of them; every
 * connection made publishes one RX_QMP_DISCONNECTED; the client ends idle
 * after EOF within a bounded number of iterations. ASan (libFuzzer build)
 * finds leaks and bad memory. Any mismatch aborts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "rx.h"
#include "rx/bus.h"
#include "rx/qmp.h"

#define NCMD 128          /* commands per input, at most */
#define NTOK 1024         /* answer tokens per input, at most */
#define NSEQ 1024         /* events per input, at most */
#define NIDS 256          /* ids read from the client, kept */
#define OUT_MAX (1 << 20) /* bytes the server queues per input, at most */

static rx_loop *loop;
static int devnull = -1;

/* The client. */
static rx_qmp *q;
static int gone;      /* rx_qmp_free() returned */
static int cb_action; /* what the next command callback does */
static int readies, connects;

/* The commands. */
struct cmd {
  int accepted, done;
};
static struct cmd cmds[NCMD];
static int ncmd;
static int tok_cmd[NTOK]; /* the command each token answered */
static int ntok;

/* The server's end. */
static int sfd = -1;
static char *out;
static size_t out_len, out_off, out_total;
static char in_buf[8192];
static size_t in_len;
static long long ids[NIDS]; /* ids the client sent, in order */
static int id_cmd[NIDS];    /* their command (-1: qmp_capabilities) */
static int nids;

/* The events. */
static const char *const ev_names[] = {"STOP", "RESUME", "RESET",
                                       "JOB_STATUS_CHANGE", "SHUTDOWN"};
static char seq_name[NSEQ][48];
static int nseq;
static int all_last, some_last; /* the last sequence number seen */
static int all_sr[NSEQ], some_sr[NSEQ];
static int n_all_sr, n_some_sr;
static int disconnects;

static void ensure(size_t more) {
  static size_t cap;
  if (out_len + more <= cap)
    return;
  size_t c = cap ? cap : 4096;
  while (c < out_len + more)
    c *= 2;
  out = realloc(out, c);
  FZ_CHECK(out != NULL);
  cap = c;
}

static void put(const char *s, size_t n) {
  if (n == 0 || out_total + n > OUT_MAX)
    return; /* n == 0: out may still be NULL */
  ensure(n);
  memcpy(out + out_len, s, n);
  out_len += n;
  out_total += n;
}

static void putf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void putf(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  FZ_CHECK(n > 0 && (size_t)n < sizeof buf);
  put(buf, (size_t)n);
}

/* Writes up to `n` queued bytes; what the socket refuses stays queued. */
static void flush(size_t n) {
  while (sfd >= 0 && n > 0 && out_off < out_len) {
    size_t len = out_len - out_off < n ? out_len - out_off : n;
    ssize_t w = send(sfd, out + out_off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w <= 0) {
      if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
        out_off = out_len; /* the client went: nothing more to say */
      return;
    }
    out_off += (size_t)w;
    n -= (size_t)w;
  }
  if (out_off == out_len)
    out_len = out_off = 0;
}

/* Reads what the client wrote: each line's command name and id. */
static void take_lines(void) {
  while (sfd >= 0) {
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(4 * sizeof(int))];
    } u;
    struct iovec iov = {.iov_base = in_buf + in_len,
                        .iov_len = sizeof in_buf - in_len};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.buf,
                        .msg_controllen = sizeof u.buf};
    ssize_t n = recvmsg(sfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n <= 0)
      return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
         c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
        continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        close(fd);
      }
    }
    in_len += (size_t)n;
    char *nl;
    while ((nl = memchr(in_buf, '\n', in_len)) != NULL) {
      size_t len = (size_t)(nl - in_buf);
      json_t *j = json_loadb(in_buf, len, 0, NULL);
      /* The client writes only whole JSON objects. */
      FZ_CHECK(json_is_object(j));
      const char *name = json_string_value(json_object_get(j, "execute"));
      if (name == NULL)
        name = json_string_value(json_object_get(j, "exec-oob"));
      json_t *id = json_object_get(j, "id");
      FZ_CHECK(name != NULL && json_is_integer(id));
      if (nids < NIDS) {
        ids[nids] = (long long)json_integer_value(id);
        id_cmd[nids] = strcmp(name, "qmp_capabilities") == 0 ? -1
                                                             : atoi(name + 1);
        nids++;
      }
      json_decref(j);
      memmove(in_buf, nl + 1, in_len - len - 1);
      in_len -= len + 1;
    }
    FZ_CHECK(in_len < sizeof in_buf); /* the client's lines are short */
  }
}

/* ---------------------------------------------------------------------------
 * The client's callbacks.
 */

static void submit(struct fz_input *in);

static void ready_cb(rx_qmp *c, int status, void *data) {
  (void)c;
  (void)data;
  FZ_CHECK(!gone);
  FZ_CHECK(status <= 0);
  readies++;
}

static void cmd_cb(rx_qmp *c, int status, json_t *value, void *data) {
  struct cmd *x = &cmds[(intptr_t)data];
  FZ_CHECK(!gone);
  FZ_CHECK(c == q);
  FZ_CHECK(x->accepted && x->done == 0);
  x->done = 1;
  if (status == 0 || status == -EREMOTEIO) {
    json_t *t = status == 0 ? value : json_object_get(value, "desc");
    if (json_is_object(t))
      t = json_object_get(t, "t");
    FZ_CHECK(status == 0 ? json_is_integer(t) : json_is_string(t));
    long long tok = status == 0 ? (long long)json_integer_value(t)
                                : atoll(json_string_value(t) + 1);
    FZ_CHECK(tok >= 0 && tok < ntok && tok_cmd[tok] == (intptr_t)data);
  } else {
    FZ_CHECK(value == NULL);
    FZ_CHECK(status == -ECONNRESET || status == -EMSGSIZE ||
             status == -ECANCELED || status == -ETIMEDOUT ||
             status == -EPROTO || status == -ENOMEM || status == -EPIPE);
  }
  int action = cb_action;
  cb_action = 0;
  if (action == 1) {
    submit(NULL);
  } else if (action == 2) {
    rx_qmp_disconnect(c);
  } else if (action == 3) {
    rx_qmp_free(c);
    gone = 1;
    q = NULL;
  }
}

static int seq_of(rx_event *ev) {
  json_t *d = json_object_get(rx_event_payload(ev), "data");
  json_t *s = json_object_get(d, "seq");
  FZ_CHECK(json_is_integer(s));
  int n = (int)json_integer_value(s);
  FZ_CHECK(n >= 0 && n < nseq);
  FZ_CHECK(strcmp(seq_name[n], rx_event_name(ev)) == 0);
  return n;
}

static int stop_or_resume(const char *name) {
  return strcmp(name, "STOP") == 0 || strcmp(name, "RESUME") == 0;
}

static void all_cb(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  (void)data;
  if (strcmp(rx_event_name(ev), RX_QMP_DISCONNECTED) == 0) {
    disconnects++;
    return;
  }
  int n = seq_of(ev);
  FZ_CHECK(n > all_last);
  all_last = n;
  if (stop_or_resume(rx_event_name(ev)))
    all_sr[n_all_sr++] = n;
}

static void some_cb(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  (void)data;
  FZ_CHECK(stop_or_resume(rx_event_name(ev)));
  int n = seq_of(ev);
  FZ_CHECK(n > some_last);
  some_last = n;
  some_sr[n_some_sr++] = n;
}

/* ---------------------------------------------------------------------------
 * The script.
 */

/* A command from the client: kind from the script, or plain (in = NULL). */
static void submit(struct fz_input *in) {
  if (q == NULL || ncmd >= NCMD)
    return;
  int k = ncmd++, r;
  char name[16];
  snprintf(name, sizeof name, "c%d", k);
  unsigned kind = in != NULL ? fz_below(in, 4) : 0;
  json_t *args = NULL;
  if (in != NULL && (fz_u8(in) & 1))
    args = json_pack("{s:i}", "k", k);
  void *data = (void *)(intptr_t)k;
  cmds[k].accepted = 1; /* before: the callback may run inside */
  switch (kind) {
  case 0:
    r = rx_qmp_execute(q, name, args, cmd_cb, data);
    break;
  case 1: /* 1 us to about 4 ms */
    r = rx_qmp_execute_timeout(q, name, args,
                               1000 * (int64_t)(1 + fz_magnitude(in, 12)),
                               cmd_cb, data);
    break;
  case 2:
    r = rx_qmp_execute_fd(q, name, args, devnull, cmd_cb, data);
    break;
  default:
    r = rx_qmp_execute_oob(q, name, args, cmd_cb, data);
    FZ_CHECK(r != -ENOTSUP || !rx_qmp_oob(q));
    break;
  }
  json_decref(args);
  if (r != 0) {
    FZ_CHECK(r == -ENOTCONN || r == -ENOTSUP || r == -ENOMEM);
    FZ_CHECK(cmds[k].done == 0);
    cmds[k].accepted = 0;
  }
}

static void answer(struct fz_input *in) {
  unsigned how = fz_below(in, 8);
  long long id;
  int cmd;
  if (how >= 6 || nids == 0) { /* an id the client never sent, or none */
    unsigned v = fz_below(in, 4);
    if (v == 0)
      putf("%s", "{\"return\": {}}\n");
    else if (v == 1)
      putf("{\"return\": {}, \"id\": \"%u\"}\n", fz_u8(in));
    else
      putf("{\"return\": 0, \"id\": %lld}\n",
           v == 2 ? -(long long)fz_u8(in) : 1000000 + (long long)fz_u8(in));
    return;
  }
  int i = (int)fz_below(in, (unsigned)nids);
  id = ids[i];
  cmd = id_cmd[i];
  if (cmd < 0) { /* qmp_capabilities */
    if (how == 0)
      putf("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, "
           "\"id\": %lld}\n",
           id);
    else
      putf("{\"return\": {}, \"id\": %lld}\r\n", id);
    return;
  }
  if (ntok >= NTOK)
    return;
  int tok = ntok++;
  tok_cmd[tok] = cmd;
  /* The shapes of QEMU's: an error, a query-status answer, a plain one. */
  if (how < 2)
    putf("{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", "
         "\"desc\": \"t%d\"}}\n",
         id, tok);
  else if (how == 2)
    putf("{\"return\": {\"status\": \"running\", \"singlestep\": false, "
         "\"running\": true, \"t\": %d}, \"id\": %lld}\n",
         tok, id);
  else
    putf("{\"return\": %d, \"id\": %lld}\n", tok, id);
}

static void event(struct fz_input *in) {
  if (nseq >= NSEQ)
    return;
  int n = nseq++;
  unsigned k = fz_below(in, 6);
  if (k < 5) {
    snprintf(seq_name[n], sizeof seq_name[n], "%s", ev_names[k]);
  } else { /* a name of the script's length */
    size_t len = fz_below(in, sizeof seq_name[n]);
    for (size_t i = 0; i < len; i++)
      seq_name[n][i] = (char)('A' + fz_below(in, 26));
    seq_name[n][len] = '\0';
  }
  /* As QEMU writes them, with a sequence number in the data. */
  static const char *const job[] = {"created", "running", "paused",
                                    "waiting", "pending", "concluded"};
  if (k == 3)
    putf("{\"timestamp\": {\"seconds\": 1796533269, \"microseconds\": %d}, "
         "\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"%s\", "
         "\"id\": \"j\", \"seq\": %d}}\n",
         n, job[fz_below(in, 6)], n);
  else
    putf("{\"timestamp\": {\"seconds\": 1796533269, \"microseconds\": %d}, "
         "\"event\": \"%s\", \"data\": {\"seq\": %d}}\n",
         n, seq_name[n], n);
}

static void garbage(struct fz_input *in) {
  size_t n = fz_below(in, 64);
  char buf[64];
  for (size_t i = 0; i < n; i++) {
    uint8_t c = fz_u8(in);
    buf[i] = c == '{' ? '[' : (char)c;
  }
  put(buf, n);
}

/* A line of about `len` bytes: an answer or an event whose string holds
 * it, or blanks. */
static void huge(struct fz_input *in) {
  size_t len = (size_t)fz_magnitude(in, 18);
  unsigned kind = fz_below(in, 3);
  if (out_total + len + 128 > OUT_MAX)
    return;
  if (kind == 0 && nids > 0) {
    int i = (int)fz_below(in, (unsigned)nids);
    if (id_cmd[i] < 0 || ntok >= NTOK)
      return;
    int tok = ntok++;
    tok_cmd[tok] = id_cmd[i];
    putf("{\"id\": %lld, \"error\": {\"desc\": \"t%d", ids[i], tok);
  } else if (kind == 1 && nseq < NSEQ) {
    int n = nseq++;
    strcpy(seq_name[n], "RESET");
    putf("{\"event\": \"RESET\", \"data\": {\"seq\": %d, \"pad\": \"", n);
  } else {
    ensure(len + 1);
    memset(out + out_len, ' ', len);
    out[out_len + len] = '\n';
    out_len += len + 1;
    out_total += len + 1;
    return;
  }
  ensure(len + 8);
  memset(out + out_len, 'x', len);
  out_len += len;
  out_total += len;
  put(kind == 0 ? "\"}}\n" : "\"}}\n", 4);
}

static void reconnect(void) {
  int sp[2];
  if (q == NULL || rx_qmp_state(q) != RX_QMP_IDLE)
    return;
  FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
  if (sfd >= 0)
    close(sfd);
  sfd = sp[1];
  out_len = out_off = in_len = 0;
  FZ_CHECK(rx_qmp_connect_fd(q, sp[0]) == 0);
  connects++;
}

static void settle(void) {
  for (int i = 0; i < 4; i++)
    rx_run(loop, RX_RUN_NOWAIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fz_input in;
  rx_bus *bus;
  rx_listener *all, *some;
  const char *some_names[] = {"STOP", "RESUME"};

  fz_init(&in, data, size);
  if (loop == NULL) {
    FZ_CHECK(rx_loop_new(&loop, NULL) == 0);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    FZ_CHECK(devnull >= 0);
  }
  memset(cmds, 0, sizeof cmds);
  ncmd = ntok = nseq = nids = 0;
  all_last = some_last = -1;
  n_all_sr = n_some_sr = disconnects = 0;
  gone = cb_action = readies = connects = 0;
  out_len = out_off = out_total = in_len = 0;

  FZ_CHECK(rx_bus_new(&bus, loop, NULL) == 0);
  struct rx_listener_options lo = {.capacity = NSEQ + 8, .cb = all_cb};
  FZ_CHECK(rx_listener_new(&all, &lo) == 0);
  lo.names = some_names;
  lo.n_names = 2;
  lo.cb = some_cb;
  FZ_CHECK(rx_listener_new(&some, &lo) == 0);
  FZ_CHECK(rx_bus_add(bus, all) == 0);
  FZ_CHECK(rx_bus_add(bus, some) == 0);

  uint8_t opt = fz_u8(&in);
  struct rx_qmp_options o = {.bus = bus, .ready = ready_cb, .oob = opt & 1};
  if (opt & 2) /* a small limit: 1 to about 4 KiB */
    o.line_limit = 1 + (size_t)fz_magnitude(&in, 12);
  FZ_CHECK(rx_qmp_new(&q, loop, &o) == 0);
  reconnect();

  for (int ops = 0; ops < 4000 && !fz_done(&in); ops++) {
    switch (fz_below(&in, 16)) {
    case 0: /* a greeting */
      /* QEMU 7.2's, with OOB offered or not. */
      putf("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
           "\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, "
           "\"capabilities\": [%s]}}\n",
           fz_u8(&in) & 1 ? "\"oob\"" : "");
      break;
    case 1:
    case 2:
      answer(&in);
      break;
    case 3:
    case 4:
      event(&in);
      break;
    case 5:
      garbage(&in);
      break;
    case 6:
      huge(&in);
      break;
    case 7: /* write some of what is queued */
    case 8:
      flush(1 + (size_t)fz_magnitude(&in, 20));
      break;
    case 9:
      flush(SIZE_MAX);
      /* fall through */
    case 10:
      rx_run(loop, RX_RUN_NOWAIT);
      break;
    case 11:
    case 12:
      submit(&in);
      break;
    case 13:
      cb_action = (int)fz_below(&in, 4);
      break;
    case 14:
      if (q != NULL) {
        int st = rx_qmp_state(q), r = rx_qmp_disconnect(q);
        FZ_CHECK(r == (st == RX_QMP_IDLE ? -ENOTCONN : 0));
        for (int k = 0; k < ncmd; k++)
          FZ_CHECK(!cmds[k].accepted || cmds[k].done);
      }
      break;
    default:
      if (fz_u8(&in) & 1) {
        reconnect();
      } else if (sfd >= 0) { /* EOF */
        close(sfd);
        sfd = -1;
      }
      break;
    }
    take_lines();
    FZ_CHECK(readies <= connects);
  }

  /* The end: what is queued goes, then EOF; the client ends idle. */
  for (int i = 0; i < 1000 && sfd >= 0 && out_len > out_off; i++) {
    flush(SIZE_MAX);
    rx_run(loop, RX_RUN_NOWAIT);
    take_lines();
  }
  if (sfd >= 0)
    close(sfd);
  sfd = -1;
  for (int i = 0; i < 10000 && q != NULL && rx_qmp_state(q) != RX_QMP_IDLE; i++)
    rx_run(loop, RX_RUN_NOWAIT);
  FZ_CHECK(q == NULL || rx_qmp_state(q) == RX_QMP_IDLE);
  for (int k = 0; k < ncmd; k++)
    FZ_CHECK(!cmds[k].accepted || cmds[k].done == 1);
  FZ_CHECK(readies == connects);
  if (q != NULL) {
    struct rx_qmp_metrics m;
    FZ_CHECK(rx_qmp_metrics(q, &m) == 0);
    if (getenv("FZ_TRACE") != NULL)
      fprintf(stderr,
              "fuzz_qmp: %d commands, %llu sent, %llu answered, %llu "
              "unknown, %llu bad lines, %llu events, %llu timeouts, %d "
              "connects, %d disconnects, longest line %zu: %s\n",
              ncmd, (unsigned long long)m.sent, (unsigned long long)m.answered,
              (unsigned long long)m.unknown, (unsigned long long)m.bad_lines,
              (unsigned long long)m.events, (unsigned long long)m.timeouts,
              connects, disconnects, m.longest_line, rx_qmp_error(q));
    FZ_CHECK(m.inflight == 0 && m.queued == 0);
    FZ_CHECK(m.connects == (uint64_t)connects);
    rx_qmp_free(q);
    gone = 1;
    q = NULL;
  }
  settle(); /* no callback now (cmd_cb checks), a timer included */
  FZ_CHECK(disconnects == connects);
  FZ_CHECK(n_all_sr == n_some_sr);
  FZ_CHECK(memcmp(all_sr, some_sr, (size_t)n_all_sr * sizeof(int)) == 0);
  rx_listener_free(all);
  rx_listener_free(some);
  FZ_CHECK(rx_bus_free(bus) == 0);
  return 0;
}
