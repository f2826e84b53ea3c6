/*
 * test-http.c - rx-http as a client sees it, on the backend $RX_BACKEND
 * names (meson runs it for io_uring and for epoll).
 *
 * Each case starts $RXT_HTTP with --port 0 (and the flags it is about),
 * reads the port from the startup line on stderr, talks to it over plain
 * blocking sockets, then stops it with SIGTERM by its pid and checks that it
 * exits with 0. Time bounds are generous (a busy machine, ASan): a deadline
 * must close a connection within 10 s of being due, and never early.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *server_path;
/* The server a case runs, so that a failed case's teardown stops it. */
static pid_t running_pid;

struct server {
  pid_t pid;
  int err; /* its stderr */
  unsigned port;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs rx-http with `args` (NULL-terminated) and --port 0; its stderr goes
 * to a pipe. */
static pid_t spawn(const char *const *args, int *err_fd, int *out_fd) {
  int ep[2], op[2];
  assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
  assert_int_equal(pipe2(op, O_CLOEXEC), 0);
  const char *argv[32];
  int n = 0;
  argv[n++] = server_path;
  for (; args != NULL && *args != NULL; args++)
    argv[n++] = *args;
  argv[n] = NULL;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(ep[1], 2);
    dup2(op[1], 1);
    execv(server_path, (char *const *)argv);
    _exit(127);
  }
  close(ep[1]);
  close(op[1]);
  *err_fd = ep[0];
  if (out_fd != NULL)
    *out_fd = op[0];
  else
    close(op[0]);
  return pid;
}

/* Reads fd until EOF or `timeout` s into buf (NUL-terminated). */
static size_t read_all(int fd, char *buf, size_t cap, double timeout) {
  size_t len = 0;
  double end = now_s() + timeout;
  while (len + 1 < cap) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)((end - now_s()) * 1000);
    if (left <= 0 || poll(&p, 1, left) <= 0)
      break;
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  return len;
}

static void server_start(struct server *s, const char *const *flags) {
  const char *args[24] = {"--port", "0"};
  int n = 2;
  for (; flags != NULL && *flags != NULL; flags++)
    args[n++] = *flags;
  args[n] = NULL;
  s->pid = spawn(args, &s->err, NULL);
  running_pid = s->pid;
  /* The startup line: "rx-http: listening on 127.0.0.1:PORT (...)". */
  char line[512];
  size_t len = 0;
  double end = now_s() + 30;
  for (;;) {
    struct pollfd p = {s->err, POLLIN, 0};
    int left = (int)((end - now_s()) * 1000);
    if (left <= 0 || poll(&p, 1, left) <= 0)
      fail_msg("rx-http did not print its startup line");
    ssize_t r = read(s->err, line + len, 1); /* one line, byte by byte */
    if (r <= 0)
      fail_msg("rx-http exited before listening");
    len++;
    line[len] = '\0';
    if (line[len - 1] == '\n')
      break;
    assert_true(len < sizeof(line) - 1);
  }
  const char *at = strstr(line, "rx-http: listening on 127.0.0.1:");
  if (at == NULL)
    fail_msg("startup line: %s", line);
  s->port = (unsigned)atoi(at + strlen("rx-http: listening on 127.0.0.1:"));
  assert_true(s->port > 0 && s->port < 65536);
  const char *be = getenv("RX_BACKEND");
  if (be != NULL && *be != '\0' && strstr(line, be) == NULL)
    fail_msg("startup line without the backend %s: %s", be, line);
}

/* SIGTERM, then the exit status (fails after 30 s). */
static int server_stop(struct server *s) {
  kill(s->pid, SIGTERM);
  double end = now_s() + 30;
  int status;
  for (;;) {
    pid_t r = waitpid(s->pid, &status, WNOHANG);
    if (r == s->pid) {
      running_pid = 0;
      break;
    }
    if (now_s() > end) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &status, 0);
      running_pid = 0;
      fail_msg("rx-http did not exit within 30 s of SIGTERM");
    }
    usleep(10000);
  }
  close(s->err);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void server_stop_ok(struct server *s) {
  int st = server_stop(s);
  if (st != 0)
    fail_msg("rx-http exited with %d", st);
}

static int connect_to(unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct timeval tv = {20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    fail_msg("connect: %s", strerror(errno));
  return fd;
}

static void send_str(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0)
      fail_msg("send: %s", strerror(errno));
    s += w;
    n -= (size_t)w;
  }
}

static void send_s(int fd, const char *s) {
  send_str(fd, s, strlen(s));
}

struct response {
  int status;
  char head[1024]; /* the header block, NUL-terminated */
  char body[256];
  size_t body_len;
};

/* A connection's bytes not yet taken as a response. */
struct reader {
  int fd;
  char buf[65536];
  size_t len;
};

/* The value of header `name` in r->head, copied to out; false if absent. */
static bool header(const struct response *r, const char *name, char *out,
                   size_t cap) {
  size_t n = strlen(name);
  for (const char *l = strstr(r->head, "\r\n"); l != NULL;
       l = strstr(l + 2, "\r\n")) {
    if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
      const char *v = l + 2 + n + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      size_t len = e ? (size_t)(e - v) : strlen(v);
      if (len >= cap)
        len = cap - 1;
      memcpy(out, v, len);
      out[len] = '\0';
      return true;
    }
  }
  return false;
}

/* Reads one response (HEAD's without a body when head_only): false on
 * EOF or an error before one was complete. */
static bool read_response(struct reader *rd, struct response *r,
                          bool head_only) {
  for (;;) {
    char *end = memmem(rd->buf, rd->len, "\r\n\r\n", 4);
    if (end != NULL) {
      size_t hl = (size_t)(end - rd->buf) + 2;
      assert_true(hl < sizeof(r->head));
      memcpy(r->head, rd->buf, hl);
      r->head[hl] = '\0';
      assert_int_equal(strncmp(r->head, "HTTP/1.1 ", 9), 0);
      r->status = atoi(r->head + 9);
      char cl[32];
      size_t blen = 0;
      if (!head_only && r->status != 100) {
        assert_true(header(r, "Content-Length", cl, sizeof(cl)));
        blen = (size_t)atol(cl);
      }
      size_t total = hl + 2 + blen;
      if (rd->len >= total) {
        assert_true(blen < sizeof(r->body));
        memcpy(r->body, rd->buf + hl + 2, blen);
        r->body[blen] = '\0';
        r->body_len = blen;
        memmove(rd->buf, rd->buf + total, rd->len - total);
        rd->len -= total;
        return true;
      }
    }
    assert_true(rd->len < sizeof(rd->buf));
    ssize_t n = recv(rd->fd, rd->buf + rd->len, sizeof(rd->buf) - rd->len, 0);
    if (n <= 0)
      return false;
    rd->len += (size_t)n;
  }
}

static void expect(struct reader *rd, int status, const char *body) {
  struct response r;
  if (!read_response(rd, &r, false))
    fail_msg("no response (wanted %d)", status);
  if (r.status != status)
    fail_msg("status %d, wanted %d:\n%s", r.status, status, r.head);
  if (body != NULL && strcmp(r.body, body) != 0)
    fail_msg("body '%s', wanted '%s'", r.body, body);
}

/* Waits for the server to close the connection (EOF or a reset), at most
 * `timeout` s; the seconds it took. Fails on data. */
static double wait_closed(int fd, double timeout) {
  double start = now_s();
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)((start + timeout - now_s()) * 1000);
    if (left <= 0 || poll(&p, 1, left) <= 0)
      fail_msg("the connection is still open after %.1f s", timeout);
    char c[4096];
    ssize_t n = recv(fd, c, sizeof(c), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return now_s() - start;
    if (n > 0)
      fail_msg("unexpected bytes: %.*s", (int)n, c);
  }
}

static struct reader *reader_new(unsigned port) {
  struct reader *rd = calloc(1, sizeof(*rd));
  assert_non_null(rd);
  rd->fd = connect_to(port);
  return rd;
}

static void reader_free(struct reader *rd) {
  close(rd->fd);
  free(rd);
}

/* --------------------------------------------------------------------------
 * TechEmpower's plaintext checks, /json, HEAD, 404.
 */

static bool is_imf_fixdate(const char *d) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  if (strlen(d) != 29)
    return false;
  const char *end = strptime(d, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == NULL || *end != '\0')
    return false;
  /* And exactly as written back (two-digit day, English names). */
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = timegm(&tm);
  struct tm g;
  gmtime_r(&t, &g);
  char back[64];
  snprintf(back, sizeof(back), "%s, %02d %s %04d %02d:%02d:%02d GMT",
           days[g.tm_wday], g.tm_mday, months[g.tm_mon], g.tm_year + 1900,
           g.tm_hour, g.tm_min, g.tm_sec);
  return strcmp(back, d) == 0 && llabs((long long)(t - time(NULL))) < 120;
}

static void test_plaintext(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *[]){"--threads", "2", NULL});
  struct reader *rd = reader_new(s.port);
  send_s(rd->fd, "GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
  struct response r;
  assert_true(read_response(rd, &r, false));
  assert_int_equal(r.status, 200);
  char v[128];
  assert_true(header(&r, "Server", v, sizeof(v)));
  assert_true(header(&r, "Content-Type", v, sizeof(v)));
  assert_string_equal(v, "text/plain");
  assert_true(header(&r, "Content-Length", v, sizeof(v)));
  assert_string_equal(v, "13");
  assert_false(header(&r, "Connection", v, sizeof(v)));
  assert_int_equal(r.body_len, 13);
  assert_string_equal(r.body, "Hello, World!");
  char date[128];
  assert_true(header(&r, "Date", date, sizeof(date)));
  if (!is_imf_fixdate(date))
    fail_msg("Date is no IMF-fixdate of now: '%s'", date);

  /* The Date moves on: within 10 s of polling, another value. */
  double end = now_s() + 10;
  for (;;) {
    send_s(rd->fd, "GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_true(read_response(rd, &r, false));
    assert_true(header(&r, "Date", v, sizeof(v)));
    assert_true(is_imf_fixdate(v));
    if (strcmp(v, date) != 0)
      break;
    if (now_s() > end)
      fail_msg("Date still '%s' after 10 s", date);
    usleep(200000);
  }

  send_s(rd->fd, "GET /json HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_true(read_response(rd, &r, false));
  assert_int_equal(r.status, 200);
  assert_true(header(&r, "Content-Type", v, sizeof(v)));
  assert_string_equal(v, "application/json");
  assert_string_equal(r.body, "{\"message\":\"Hello, World!\"}");

  /* HEAD: the headers of GET, no body. */
  send_s(rd->fd, "HEAD /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n"
                 "GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert_true(read_response(rd, &r, true));
  assert_int_equal(r.status, 200);
  assert_true(header(&r, "Content-Length", v, sizeof(v)));
  assert_string_equal(v, "13");
  expect(rd, 404, NULL);
  reader_free(rd);
  server_stop_ok(&s);
}

/* --------------------------------------------------------------------------
 * Pipelining.
 */

static const char *const pipe_paths[] = {"/plaintext", "/json", "/x"};
static const int pipe_status[] = {200, 200, 404};

/* 16 pipelined requests, written in two parts split at every byte
 * boundary, on one connection: 16 responses each time, in order; also
 * with the server napping before each wait (--collect). */
static void pipeline_split(const char *const *args) {
  struct server s;
  server_start(&s, args);
  char reqs[4096];
  size_t len = 0;
  for (int i = 0; i < 16; i++)
    len += (size_t)snprintf(reqs + len, sizeof(reqs) - len,
                            "GET %s HTTP/1.1\r\nHost: a\r\nX-N: %d\r\n\r\n",
                            pipe_paths[i % 3], i);
  struct reader *rd = reader_new(s.port);
  for (size_t cut = 0; cut <= len; cut++) {
    send_str(rd->fd, reqs, cut);
    if (cut > 0 && cut < len)
      usleep(300); /* mostly two reads; one also does */
    send_str(rd->fd, reqs + cut, len - cut);
    for (int i = 0; i < 16; i++) {
      struct response r;
      if (!read_response(rd, &r, false))
        fail_msg("cut %zu: response %d missing", cut, i);
      if (r.status != pipe_status[i % 3])
        fail_msg("cut %zu: response %d has status %d", cut, i, r.status);
      if (i % 3 == 1 && strstr(r.body, "message") == NULL)
        fail_msg("cut %zu: response %d out of order", cut, i);
    }
    assert_int_equal(rd->len, 0); /* nothing more than 16 */
  }
  reader_free(rd);
  server_stop_ok(&s);
}

static void test_pipeline_split(void **state) {
  (void)state;
  pipeline_split(NULL);
}

static void test_pipeline_split_collect(void **state) {
  (void)state;
  pipeline_split((const char *[]){"--collect", "200us", NULL});
}

/* /delay holds the responses after it: they come in request order. */
static void test_delay_order(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  struct reader *rd = reader_new(s.port);
  double t0 = now_s();
  send_s(rd->fd, "GET /delay?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /json HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /delay?ms=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  expect(rd, 200, "Hello, World!");
  assert_true(now_s() - t0 >= 0.29);
  expect(rd, 200, "{\"message\":\"Hello, World!\"}");
  expect(rd, 200, "Hello, World!");
  expect(rd, 404, NULL);
  send_s(rd->fd, "GET /delay?ms=x HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /delay HTTP/1.1\r\nHost: a\r\n\r\n");
  expect(rd, 400, NULL); /* a bad query: the connection stays */
  expect(rd, 200, "Hello, World!");
  reader_free(rd);
  server_stop_ok(&s);
}

/* --------------------------------------------------------------------------
 * Bad input.
 */

static void test_malformed(void **state) {
  (void)state;
  static const struct {
    const char *req;
    int status;
  } bad[] = {
      {"GET / HTTP/1.1\nHost: a\n\n", 400},
      {"GET /plaintext HTTP/1.1\r\n\r\n", 400}, /* no Host */
      {"GET /plaintext HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"POST /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
       "Transfer-Encoding: chunked\r\n\r\n",
       400},
      {"POST /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
       "Content-Length: 4\r\n\r\nabcd",
       400},
      {"POST /plaintext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
       "\r\nzz\r\n",
       400},
      {"GET /plaintext HTTP/3.0\r\nHost: a\r\n\r\n", 505},
      {"BREW /plaintext HTTP/1.1\r\nHost: a\r\n\r\n", 501},
      {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400}, /* TLS */
  };
  struct server s;
  server_start(&s, (const char *[]){"--threads", "2", NULL});
  struct reader *good[3];
  for (int i = 0; i < 3; i++)
    good[i] = reader_new(s.port);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct reader *b = reader_new(s.port);
    /* A valid request first: the bad one follows it in the same write. */
    char buf[512];
    snprintf(buf, sizeof(buf), "GET /json HTTP/1.1\r\nHost: a\r\n\r\n%s",
             bad[i].req);
    send_s(b->fd, buf);
    send_s(good[i % 3]->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
    expect(b, 200, NULL);
    struct response r;
    if (!read_response(b, &r, false))
      fail_msg("case %zu: no response", i);
    if (r.status != bad[i].status)
      fail_msg("case %zu: %d, wanted %d", i, r.status, bad[i].status);
    char v[64];
    assert_true(header(&r, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    wait_closed(b->fd, 10);
    reader_free(b);
    expect(good[i % 3], 200, "Hello, World!");
  }
  for (int i = 0; i < 3; i++) {
    send_s(good[i]->fd, "GET /json HTTP/1.1\r\nHost: a\r\n\r\n");
    expect(good[i], 200, NULL);
    reader_free(good[i]);
  }
  server_stop_ok(&s);
}

static void test_too_large(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  struct reader *rd = reader_new(s.port);
  static char big[20000];
  int n = snprintf(big, sizeof(big),
                   "GET /plaintext HTTP/1.1\r\nHost: a\r\n"
                   "Cookie: ");
  memset(big + n, 'c', 10000);
  strcpy(big + n + 10000, "\r\n\r\n");
  send_s(rd->fd, big);
  expect(rd, 431, NULL);
  wait_closed(rd->fd, 10);
  reader_free(rd);
  server_stop_ok(&s);
}

/* A body by Content-Length, then by chunks, each with the next request in
 * the same write and split: never eaten. */
static void test_bodies(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  struct reader *rd = reader_new(s.port);
  const char *reqs =
      "POST /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n\r\n"
      "GET /x HTTP/1"
      "GET /json HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /nothing HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nGET \r\n10;x=y\r\n/xx HTTP/1.1\r\n\r\n\r\n0\r\nT: 1\r\n\r\n"
      "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
  size_t len = strlen(reqs);
  for (size_t cut = 0; cut <= len; cut += 7) {
    send_str(rd->fd, reqs, cut);
    usleep(200);
    send_str(rd->fd, reqs + cut, len - cut);
    expect(rd, 405, NULL);
    expect(rd, 200, "{\"message\":\"Hello, World!\"}");
    expect(rd, 404, NULL);
    expect(rd, 200, "Hello, World!");
  }
  /* Expect: 100-continue gets its interim response. */
  send_s(rd->fd, "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                 "Content-Length: 2\r\n\r\n");
  expect(rd, 100, NULL);
  send_s(rd->fd, "ok");
  expect(rd, 404, NULL);
  reader_free(rd);
  server_stop_ok(&s);
}

static void test_connection_close(void **state) {
  (void)state;
  struct server s;
  server_start(&s, NULL);
  char v[64];
  struct response r;
  /* HTTP/1.1 with Connection: close; what follows is not answered. */
  struct reader *rd = reader_new(s.port);
  send_s(rd->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                 "\r\nGET /json HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_true(read_response(rd, &r, false));
  assert_true(header(&r, "Connection", v, sizeof(v)));
  assert_string_equal(v, "close");
  wait_closed(rd->fd, 10);
  reader_free(rd);
  /* HTTP/1.0: closes, unless keep-alive is asked. */
  rd = reader_new(s.port);
  send_s(rd->fd, "GET /json HTTP/1.0\r\n\r\n");
  assert_true(read_response(rd, &r, false));
  assert_int_equal(r.status, 200);
  wait_closed(rd->fd, 10);
  reader_free(rd);
  rd = reader_new(s.port);
  send_s(rd->fd, "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_true(read_response(rd, &r, false));
  assert_true(header(&r, "Connection", v, sizeof(v)));
  assert_string_equal(v, "keep-alive");
  send_s(rd->fd, "GET /plaintext HTTP/1.0\r\n\r\n");
  expect(rd, 200, "Hello, World!");
  wait_closed(rd->fd, 10);
  reader_free(rd);
  /* A client that half-closes after its requests gets every answer. */
  rd = reader_new(s.port);
  send_s(rd->fd, "GET /delay?ms=100 HTTP/1.1\r\nHost: a\r\n\r\n"
                 "GET /json HTTP/1.1\r\nHost: a\r\n\r\n");
  shutdown(rd->fd, SHUT_WR);
  expect(rd, 200, "Hello, World!");
  expect(rd, 200, NULL);
  wait_closed(rd->fd, 10);
  reader_free(rd);
  server_stop_ok(&s);
}

/* --------------------------------------------------------------------------
 * Deadlines.
 */

static void test_header_timeout(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *[]){"--header-timeout", "1s", "--idle-timeout",
                                    "60s", NULL});
  struct reader *rd = reader_new(s.port);
  /* A complete request first: a slow one after it is cut at its deadline,
   * though bytes keep trickling in. */
  double t0 = now_s(); /* before the server can have seen "GET /pl" */
  send_s(rd->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /pl");
  expect(rd, 200, NULL);
  for (int i = 0; i < 3; i++) {
    usleep(200000);
    send_s(rd->fd, "a");
  }
  wait_closed(rd->fd, 15);
  double since = now_s() - t0;
  if (since < 0.9)
    fail_msg("closed after %.2f s, before the 1 s header deadline", since);
  reader_free(rd);
  server_stop_ok(&s);
}

static void test_idle_timeout(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *[]){"--idle-timeout", "1s", NULL});
  struct reader *rd = reader_new(s.port);
  struct reader *fresh = reader_new(s.port); /* never sends a byte */
  double t0 = now_s();
  send_s(rd->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  expect(rd, 200, NULL);
  wait_closed(rd->fd, 15);
  wait_closed(fresh->fd, 15);
  if (now_s() - t0 < 0.9)
    fail_msg("closed after %.2f s, before the 1 s idle deadline", now_s() - t0);
  reader_free(rd);
  reader_free(fresh);
  server_stop_ok(&s);
}

/* --------------------------------------------------------------------------
 * --max-conns, SIGTERM, the command line.
 */

static void test_max_conns(void **state) {
  (void)state;
  struct server s;
  server_start(&s,
               (const char *[]){"--max-conns", "2", "--threads", "2", NULL});
  struct reader *a = reader_new(s.port), *b = reader_new(s.port);
  send_s(a->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  send_s(b->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  expect(a, 200, NULL);
  expect(b, 200, NULL);
  struct reader *c = reader_new(s.port);
  send_s(c->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  struct response r;
  assert_true(read_response(c, &r, false));
  assert_int_equal(r.status, 503);
  char v[64];
  assert_true(header(&r, "Connection", v, sizeof(v)));
  assert_string_equal(v, "close");
  wait_closed(c->fd, 10);
  reader_free(c);
  /* Once one goes, a new one is served (the count drops when the server
   * has closed its side: try for a while). */
  reader_free(a);
  double end = now_s() + 10;
  for (;;) {
    c = reader_new(s.port);
    send_s(c->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(read_response(c, &r, false));
    reader_free(c);
    if (r.status == 200)
      break;
    if (now_s() > end)
      fail_msg("still %d after a connection closed", r.status);
    usleep(50000);
  }
  reader_free(b);
  server_stop_ok(&s);
}

static void test_sigterm_drains(void **state) {
  (void)state;
  struct server s;
  server_start(&s, (const char *[]){"--threads", "2", NULL});
  struct reader *busy = reader_new(s.port), *idle = reader_new(s.port);
  send_s(idle->fd, "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  expect(idle, 200, NULL);
  /* Both requests in one write, so one read: the first one's answer says
   * that the /delay is under way. */
  send_s(busy->fd, "GET /json HTTP/1.1\r\nHost: a\r\n\r\n"
                   "GET /delay?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\n");
  expect(busy, 200, NULL);
  kill(s.pid, SIGTERM);
  /* The response under way is finished, and says the connection ends. */
  struct response r;
  assert_true(read_response(busy, &r, false));
  assert_int_equal(r.status, 200);
  char v[64];
  assert_true(header(&r, "Connection", v, sizeof(v)));
  assert_string_equal(v, "close");
  wait_closed(busy->fd, 10);
  wait_closed(idle->fd, 10);
  reader_free(busy);
  reader_free(idle);
  int status;
  double end = now_s() + 30;
  while (waitpid(s.pid, &status, WNOHANG) != s.pid) {
    if (now_s() > end) {
      kill(s.pid, SIGKILL);
      fail_msg("rx-http did not exit after draining");
    }
    usleep(10000);
  }
  running_pid = 0;
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  char err[4096];
  read_all(s.err, err, sizeof(err), 5);
  assert_non_null(strstr(err, "draining"));
  close(s.err);
}

/* Runs rx-http with args; its exit status, stdout and stderr. */
static int run(const char *const *args, char *out, char *err, size_t cap) {
  int efd, ofd;
  pid_t pid = spawn(args, &efd, &ofd);
  read_all(ofd, out, cap, 20);
  read_all(efd, err, cap, 20);
  int status;
  waitpid(pid, &status, 0);
  close(efd);
  close(ofd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_command_line(void **state) {
  (void)state;
  char out[8192], err[8192];
  assert_int_equal(run((const char *[]){"--help", NULL}, out, err, 8192), 0);
  assert_non_null(strstr(out, "usage: rx-http"));
  assert_non_null(strstr(out, "--header-timeout"));
  assert_int_equal(run((const char *[]){"--bogus", NULL}, out, err, 8192), 2);
  assert_non_null(strstr(err, "rx-http --help"));
  assert_int_equal(
      run((const char *[]){"--port", "70000", NULL}, out, err, 8192), 2);
  assert_non_null(strstr(err, "--port wants a number in 0..65535"));
  assert_int_equal(
      run((const char *[]){"--idle-timeout", "soon", NULL}, out, err, 8192), 2);
  assert_non_null(strstr(err, "--idle-timeout wants a duration"));
  assert_int_equal(
      run((const char *[]){"--collect", "2s", NULL}, out, err, 8192), 2);
  assert_non_null(strstr(err, "--collect wants a duration up to 1s"));
  assert_int_equal(
      run((const char *[]){"--collect", "50xs", NULL}, out, err, 8192), 2);
  assert_int_equal(
      run((const char *[]){"--threads", "0", NULL}, out, err, 8192), 2);
  assert_int_equal(run((const char *[]){"extra", NULL}, out, err, 8192), 2);
  assert_non_null(strstr(err, "unexpected argument 'extra'"));
  assert_int_equal(
      run((const char *[]){"--port", "0", "--bind", "nowhere", NULL}, out, err,
          8192),
      1);
  assert_non_null(strstr(err, "--bind"));
}

/* After each case: a server that a failure left running is killed by its
 * pid. */
static int teardown(void **state) {
  (void)state;
  if (running_pid > 0) {
    kill(running_pid, SIGKILL);
    waitpid(running_pid, NULL, 0);
    running_pid = 0;
  }
  return 0;
}

int main(void) {
  server_path = getenv("RXT_HTTP");
  if (server_path == NULL) {
    fprintf(stderr, "test-http: set RXT_HTTP to the rx-http program\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_plaintext, teardown),
      cmocka_unit_test_teardown(test_pipeline_split, teardown),
      cmocka_unit_test_teardown(test_pipeline_split_collect, teardown),
      cmocka_unit_test_teardown(test_delay_order, teardown),
      cmocka_unit_test_teardown(test_malformed, teardown),
      cmocka_unit_test_teardown(test_too_large, teardown),
      cmocka_unit_test_teardown(test_bodies, teardown),
      cmocka_unit_test_teardown(test_connection_close, teardown),
      cmocka_unit_test_teardown(test_header_timeout, teardown),
      cmocka_unit_test_teardown(test_idle_timeout, teardown),
      cmocka_unit_test_teardown(test_max_conns, teardown),
      cmocka_unit_test_teardown(test_sigterm_drains, teardown),
      cmocka_unit_test_teardown(test_command_line, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
