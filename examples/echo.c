/*
 * echo.c - an echo server on N threads and its clients on the main thread.
 *
 *   echo [--seconds S] [--conns N] [--size B] [--threads N]
 *        [--backend io_uring|epoll]
 *
 * Each of the N server threads creates, runs and frees its own loop and
 * accepts on its own listening socket; all of them are bound to one
 * 127.0.0.1 port with SO_REUSEPORT, so the kernel spreads the connections
 * over them. The clients, on the main thread's loop, each send a message,
 * check every byte of the echo, count a round trip and send the next one.
 * When the time is up the main thread posts each server loop a stop task
 * (rx_loop_post(), the one call that reaches another thread's loop), joins
 * the threads and prints the backend, the round trips and each server
 * thread's share.
 *
 * The patterns to copy: one loop per thread, made on the thread that runs
 * it; a listening socket whose READ watcher accepts until EAGAIN; one READ
 * and one WRITE watcher per connection, only one started at a time, so a
 * connection whose peer does not read stops reading (backpressure); every
 * rx error printed with rx_strerror(); watchers stopped before their fds
 * are closed, and each loop freed on its own thread.
 *
 * Exit status: 0 on success, 1 on an error or when an echoed byte differs
 * from the byte sent, 2 on a usage error.
 */
#define _GNU_SOURCE /* accept4() */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rx.h"

#ifdef RX_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#define SERVER_BUF 16384 /* bytes a server connection reads at a time */
#define CLIENT_BUF 65536 /* bytes a client reads at a time */
#define MAX_CONNS 100000
#define MAX_SIZE (64 << 20)
#define MAX_THREADS 256

/* An accepted connection. `rd` is active while everything read has been
 * written back, `wr` while some of it waits for room in the send buffer. */
struct server_conn {
  rx_io rd, wr;
  struct server *srv;
  struct server_conn *next, **pprev; /* the server's connections */
  uint64_t echoed;                   /* bytes written back */
  size_t off, len;                   /* unsent bytes: buf[off, len) */
  unsigned char buf[SERVER_BUF];
};

/* A server thread. The main thread reads `loop`, `setup_rc`,
 * `backend_name` and `why` once `ready` is set under app->lock, posts
 * `stop`, and reads the results after pthread_join(). */
struct server {
  struct app *app;
  int index;
  pthread_t thread;
  bool started, ready, stopped;
  rx_loop *loop;
  int setup_rc;
  const char *backend_name;
  char why[160];
  int listen_fd;
  rx_io accept_w;
  struct server_conn *conns;
  int failed;
  rx_task failed_note, stop;
  uint64_t accepted, messages; /* results */
};

/* A client: `rd` always active, `wr` while connecting or while a message
 * did not fit in the send buffer. */
struct client {
  rx_io rd, wr;
  struct app *app;
  int fd;
  bool connected;
  uint64_t round;   /* messages sent: seeds the next one */
  size_t sent, got; /* bytes of msg written, and echoed back and checked */
  unsigned char *msg;
};

struct app {
  rx_loop *loop; /* the main thread's: clients and the stopwatch */
  int64_t duration;
  int conns, nthreads;
  size_t size;
  const char *backend; /* --backend, or NULL */
  struct server *servers;
  pthread_mutex_t lock; /* each server's `ready`, and stops_posted */
  pthread_cond_t cond;
  bool stops_posted;
  struct client *clients;
  rx_timer stopwatch;
  int64_t started, stopped;
  uint64_t round_trips, bytes_checked;
  int failed;
};

/* Ends the run with an error, on the main thread. */
static void fail(struct app *app, const char *what, int err) {
  if (app->failed)
    return; /* only the first error is worth reading */
  if (what != NULL && err != 0)
    fprintf(stderr, "echo: %s: %s\n", what, rx_strerror(err));
  else if (what != NULL)
    fprintf(stderr, "echo: %s\n", what);
  app->failed = 1;
  rx_break(app->loop, RX_BREAK_ALL);
}

/* rx's own allocations go to jemalloc when the build found it, through the
 * sized entry points (rx passes the size of every block it frees). */
#ifdef RX_HAVE_JEMALLOC
static size_t nonzero(size_t size) { /* *allocx(0) is undefined */
  return size != 0 ? size : 1;
}
static void *je_alloc(void *ctx, size_t size) {
  (void)ctx;
  return mallocx(nonzero(size), 0);
}
static void *je_realloc(void *ctx, void *ptr, size_t old, size_t size) {
  (void)ctx;
  (void)old;
  return rallocx(ptr, nonzero(size), 0);
}
static void je_free(void *ctx, void *ptr, size_t size) {
  (void)ctx;
  sdallocx(ptr, nonzero(size), 0);
}
static const char *install_allocator(void) {
  static const struct rx_allocator je = {je_alloc, je_realloc, je_free, NULL};
  int rc = rx_set_allocator(&je); /* before any loop exists */
  if (rc < 0) {
    fprintf(stderr, "echo: rx_set_allocator: %s\n", rx_strerror(rc));
    return "libc";
  }
  return "jemalloc";
}
#else
static const char *install_allocator(void) {
  return "libc";
}
#endif

/* A loop for the calling thread. rx falls back from io_uring to epoll by
 * itself unless io_uring was forced; then this demo falls back, and says
 * so in `why` (left empty otherwise: rx_backend_reason() says why). */
static int make_loop(rx_loop **loop, const char *backend, char *why,
                     size_t whylen) {
  struct rx_loop_options opts;
  memset(&opts, 0, sizeof(opts));
  opts.backend = backend; /* NULL: rx reads $RX_BACKEND */
  int rc = rx_loop_new(loop, &opts);
  const char *asked = backend != NULL ? backend : getenv("RX_BACKEND");
  if ((rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -ENOMEM) &&
      asked != NULL && strcmp(asked, "io_uring") == 0) {
    snprintf(why, whylen,
             "io_uring, forced by %s, was refused: %s; falling back",
             backend != NULL ? "--backend" : "RX_BACKEND", rx_strerror(rc));
    opts.backend = "epoll";
    rc = rx_loop_new(loop, &opts);
  }
  return rc;
}

/* ---------------------------------------------------------------------------
 * The server threads.
 */

static void on_server_failed(rx_loop *loop, rx_task *task) {
  (void)loop;
  fail(((struct server *)task->data)->app, NULL, 0);
}

/* An error on a server thread: printed here, the server loop breaks, and
 * the main loop is told with rx_loop_post(). */
static void server_fail(struct server *s, const char *what, int err) {
  if (s->failed)
    return;
  if (err != 0)
    fprintf(stderr, "echo: server thread %d: %s: %s\n", s->index, what,
            rx_strerror(err));
  else
    fprintf(stderr, "echo: server thread %d: %s\n", s->index, what);
  s->failed = 1;
  s->failed_note = (rx_task){.fn = on_server_failed, .data = s};
  /* The main loop is freed only after every server thread is joined. */
  (void)rx_loop_post(s->app->loop, &s->failed_note);
  rx_break(s->loop, RX_BREAK_ALL);
}

static void server_conn_close(struct server_conn *c) {
  struct server *s = c->srv;
  rx_io_stop(s->loop, &c->rd); /* stop, then close */
  rx_io_stop(s->loop, &c->wr);
  close(c->rd.fd);
  /* A client sends a message only once the last one is back: each whole
   * message echoed here is a round trip. */
  s->messages += c->echoed / s->app->size;
  *c->pprev = c->next;
  if (c->next != NULL)
    c->next->pprev = c->pprev;
  free(c);
}

/* Writes buf[off, len) back: 1 when all went out, 0 when the send buffer
 * is full, -1 when the client has gone (the connection is closed). */
static int server_flush(struct server_conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->rd.fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n >= 0) {
      c->off += (size_t)n;
      c->echoed += (uint64_t)n;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return 0;
    } else if (errno != EINTR) {
      server_conn_close(c); /* EPIPE, ECONNRESET: the run's end */
      return -1;
    }
  }
  c->off = c->len = 0;
  return 1;
}

/* From one watcher to the other: start before stop, so that the fd always
 * has a watcher and the backend keeps its registration. */
static void server_switch(struct server_conn *c, rx_io *from, rx_io *to) {
  int rc = rx_io_start(c->srv->loop, to);
  if (rc < 0)
    server_fail(c->srv, "rx_io_start", rc);
  else
    rx_io_stop(c->srv->loop, from);
}

/* RX_ERROR: rx found the fd closed and stopped the watcher; nothing here
 * closes a watched fd, so it is a bug. */
static void server_on_error(struct server_conn *c) {
  struct server *s = c->srv;
  server_conn_close(c);
  server_fail(s, "server connection: rx reported RX_ERROR", 0);
}

/* One read per callback keeps the loop fair; the watcher is
 * level-triggered, so what is left calls again. */
static void server_on_read(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct server_conn *c = w->data;
  if (revents & RX_ERROR) {
    server_on_error(c);
    return;
  }
  ssize_t n = recv(w->fd, c->buf, sizeof(c->buf), 0);
  if (n == 0 ||
      (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    server_conn_close(c); /* end of stream or reset: the client is done */
    return;
  }
  if (n < 0)
    return;
  c->off = 0;
  c->len = (size_t)n;
  if (server_flush(c) == 0)
    server_switch(c, &c->rd, &c->wr); /* backpressure: stop reading */
}

static void server_on_write(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct server_conn *c = w->data;
  if (revents & RX_ERROR)
    server_on_error(c);
  else if (server_flush(c) == 1)
    server_switch(c, &c->wr, &c->rd);
}

static void server_accept(rx_loop *loop, rx_io *w, int revents) {
  struct server *s = w->data;
  if (revents & RX_ERROR) {
    server_fail(s, "listening socket: rx reported RX_ERROR", 0);
    return;
  }
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return; /* the backlog is empty */
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      server_fail(s, "accept4", -errno); /* EMFILE...: the demo stops */
      return;
    }
    struct server_conn *c = malloc(sizeof(*c));
    if (c == NULL) {
      close(fd);
      server_fail(s, "malloc", -ENOMEM);
      return;
    }
    c->srv = s;
    c->echoed = 0;
    c->off = c->len = 0;
    rx_io_init(&c->rd, server_on_read, fd, RX_READ);
    rx_io_init(&c->wr, server_on_write, fd, RX_WRITE);
    c->rd.data = c->wr.data = c;
    c->next = s->conns;
    c->pprev = &s->conns;
    if (c->next != NULL)
      c->next->pprev = &c->next;
    s->conns = c;
    s->accepted++;
    int rc = rx_io_start(loop, &c->rd);
    if (rc < 0) {
      server_conn_close(c);
      server_fail(s, "rx_io_start", rc);
      return;
    }
  }
}

/* A non-blocking socket listening on 127.0.0.1 with SO_REUSEPORT, on
 * addr's port, or on a free one if that is 0; fills in `addr`. */
static int server_listen(struct sockaddr_in *addr, int backlog) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  in_port_t port = addr->sin_port;
  memset(addr, 0, sizeof(*addr));
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr->sin_port = port;
  socklen_t len = sizeof(*addr);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
      bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0 ||
      listen(fd, backlog) < 0 ||
      getsockname(fd, (struct sockaddr *)addr, &len) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

/* Stops every watcher and closes every fd of the server: rx_run() on its
 * thread then returns 0. */
static void server_shutdown(struct server *s) {
  if (s->stopped)
    return;
  s->stopped = true;
  while (s->conns != NULL)
    server_conn_close(s->conns);
  rx_io_stop(s->loop, &s->accept_w);
  if (s->listen_fd >= 0)
    close(s->listen_fd);
  s->listen_fd = -1;
}

/* The stop task, posted by the main thread, run on this one. */
static void server_on_stop(rx_loop *loop, rx_task *task) {
  (void)loop;
  server_shutdown(task->data);
}

static void server_ready(struct server *s, int rc) {
  pthread_mutex_lock(&s->app->lock);
  s->setup_rc = rc;
  s->ready = true;
  pthread_cond_broadcast(&s->app->cond);
  pthread_mutex_unlock(&s->app->lock);
}

static void *server_thread(void *arg) {
  struct server *s = arg;
  struct app *app = s->app;
  rx_loop *loop;
  int rc = make_loop(&loop, app->backend, s->why, sizeof(s->why));
  if (rc < 0) {
    fprintf(stderr, "echo: server thread %d: rx_loop_new: %s\n", s->index,
            rx_strerror(rc));
    server_ready(s, rc); /* no loop: nobody posts to it */
    return NULL;
  }
  s->loop = loop;
  s->backend_name = rx_backend_name(loop);
  if (s->why[0] == '\0')
    snprintf(s->why, sizeof(s->why), "%s", rx_backend_reason(loop));
  rx_io_init(&s->accept_w, server_accept, s->listen_fd, RX_READ);
  s->accept_w.data = s;
  rc = rx_io_start(loop, &s->accept_w);
  if (rc < 0)
    fprintf(stderr, "echo: server thread %d: rx_io_start: %s\n", s->index,
            rx_strerror(rc));
  server_ready(s, rc);
  if (rc == 0 && (rc = rx_run(loop, RX_RUN_DEFAULT)) < 0)
    server_fail(s, "rx_run", rc);
  /* A loop another thread may still post to must not be freed: unless the
   * stop task has run, wait until it has been posted (rx_loop_free() runs
   * it). */
  if (!s->stopped) {
    pthread_mutex_lock(&app->lock);
    while (!app->stops_posted)
      pthread_cond_wait(&app->cond, &app->lock);
    pthread_mutex_unlock(&app->lock);
    server_shutdown(s);
  }
  rx_loop_free(loop);
  return NULL;
}

/* ---------------------------------------------------------------------------
 * The clients, all on the main thread's loop, so that every round trip
 * crosses to a server thread and back whatever --threads is.
 */

/* Message `round` of client `id`: xorshift64 seeded through splitmix64's
 * mixer, so that a byte echoed to the wrong client, twice or out of order
 * is noticed. */
static void fill_message(unsigned char *msg, size_t size, int id,
                         uint64_t round) {
  uint64_t x = (uint64_t)id << 40 ^ round;
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  x = (x ^ (x >> 31)) | 1; /* xorshift's state must not be 0 */
  for (size_t i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    msg[i] = (unsigned char)x;
  }
}

/* Writes what is left of the message; `wr` is active while some is. */
static void client_send(struct client *c) {
  struct app *app = c->app;
  while (c->sent < app->size) {
    ssize_t n =
        send(c->fd, c->msg + c->sent, app->size - c->sent, MSG_NOSIGNAL);
    if (n >= 0) {
      c->sent += (size_t)n;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int rc = rx_io_start(app->loop, &c->wr); /* no-op if active */
      if (rc < 0)
        fail(app, "rx_io_start", rc);
      return;
    } else if (errno != EINTR) {
      fail(app, "client send", -errno);
      return;
    }
  }
  rx_io_stop(app->loop, &c->wr);
}

static void client_next_message(struct client *c) {
  fill_message(c->msg, c->app->size, (int)(c - c->app->clients), c->round++);
  c->sent = c->got = 0;
  client_send(c);
}

/* Writable: connected, or room for the rest of the message. */
static void client_on_write(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct client *c = w->data;
  if (revents & RX_ERROR) {
    fail(c->app, "client: rx reported RX_ERROR", 0);
    return;
  }
  if (c->connected) {
    client_send(c);
    return;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err != 0) {
    fail(c->app, "connect", -err);
    return;
  }
  c->connected = true;
  client_next_message(c);
}

/* Readable: check what came back against what was sent. */
static void client_on_read(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct client *c = w->data;
  struct app *app = c->app;
  if (revents & RX_ERROR) {
    fail(app, "client: rx reported RX_ERROR", 0);
    return;
  }
  static unsigned char buf[CLIENT_BUF]; /* one callback at a time */
  size_t want = app->size - c->got;
  ssize_t n = recv(c->fd, buf, want < sizeof(buf) ? want : sizeof(buf), 0);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      fail(app, "client recv", -errno);
    return;
  }
  if (n == 0) {
    fail(app, "the server closed a connection", 0);
    return;
  }
  if (c->got + (size_t)n > c->sent) {
    fail(app, "received more bytes than were sent", 0);
    return;
  }
  if (memcmp(buf, c->msg + c->got, (size_t)n) != 0) {
    if (app->failed)
      return;
    size_t i = 0;
    while (buf[i] == c->msg[c->got + i])
      i++;
    fprintf(stderr,
            "echo: client %d, message %llu, byte %zu: sent 0x%02x, "
            "got 0x%02x\n",
            (int)(c - app->clients), (unsigned long long)(c->round - 1),
            c->got + i, c->msg[c->got + i], buf[i]);
    fail(app, "an echoed byte differs from the byte sent", 0);
    return;
  }
  c->got += (size_t)n;
  app->bytes_checked += (uint64_t)n;
  if (c->got == app->size) {
    app->round_trips++;
    client_next_message(c);
  }
}

static int client_start(struct app *app, struct client *c,
                        const struct sockaddr_in *addr) {
  c->app = app;
  c->msg = malloc(app->size);
  if (c->msg == NULL)
    return -ENOMEM;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    return -errno;
  int one = 1; /* small messages, one at a time: no Nagle */
  if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
    return -errno;
  rx_io_init(&c->rd, client_on_read, c->fd, RX_READ);
  rx_io_init(&c->wr, client_on_write, c->fd, RX_WRITE);
  c->rd.data = c->wr.data = c;
  int rc = rx_io_start(app->loop, &c->rd);
  if (rc < 0)
    return rc;
  if (connect(c->fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0) {
    c->connected = true;
    client_next_message(c);
    return 0;
  }
  if (errno != EINPROGRESS)
    return -errno;
  return rx_io_start(app->loop, &c->wr); /* writable: connected */
}

/* Every 100 ms (a repeating timer keeps its phase): is the time up? */
static void on_stopwatch(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  struct app *app = w->data;
  if (rx_now(loop) - app->started >= app->duration) {
    app->stopped = rx_now(loop);
    rx_break(loop, RX_BREAK_ALL);
  }
}

/* ---------------------------------------------------------------------------
 * Set-up, run, shutdown.
 */

static void usage(FILE *to) {
  fprintf(to,
          "usage: echo [--seconds S] [--conns N] [--size B] [--threads N] "
          "[--backend io_uring|epoll]\n"
          "  --seconds S  run for S seconds (default 3, fractions allowed)\n"
          "  --conns N    client connections (default 50)\n"
          "  --size B     message size in bytes (default 64)\n"
          "  --threads N  server threads, each with its own loop and "
          "SO_REUSEPORT\n"
          "               listener (default 1); the clients run on the main "
          "thread\n"
          "  --backend B  force a backend (default: $RX_BACKEND, else "
          "io_uring falling back to epoll)\n");
}

/* An integer option in [1, max], or -1 after saying what it wants. */
static long int_arg(const char *name, long max) {
  char *end;
  errno = 0;
  long n = strtol(optarg, &end, 10);
  if (errno != 0 || *end != '\0' || n < 1 || n > max) {
    fprintf(stderr, "echo: --%s wants 1..%ld\n", name, max);
    return -1;
  }
  return n;
}

static int parse_args(struct app *app, int argc, char **argv) {
  static const struct option longopts[] = {
      {"seconds", required_argument, NULL, 's'},
      {"conns", required_argument, NULL, 'c'},
      {"size", required_argument, NULL, 'b'},
      {"threads", required_argument, NULL, 't'},
      {"backend", required_argument, NULL, 'B'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int opt;
  long n = 0;
  while ((opt = getopt_long(argc, argv, "s:c:b:t:B:h", longopts, NULL)) != -1) {
    switch (opt) {
    case 's': {
      char *end;
      errno = 0;
      double s = strtod(optarg, &end);
      if (errno != 0 || *end != '\0' || !(s > 0 && s <= 86400)) {
        fprintf(stderr, "echo: --seconds wants a number in (0, 86400]\n");
        return -1;
      }
      app->duration = (int64_t)(s * 1e9);
      break;
    }
    case 'c':
      if ((n = int_arg("conns", MAX_CONNS)) < 0)
        return -1;
      app->conns = (int)n;
      break;
    case 'b':
      if ((n = int_arg("size", MAX_SIZE)) < 0)
        return -1;
      app->size = (size_t)n;
      break;
    case 't':
      if ((n = int_arg("threads", MAX_THREADS)) < 0)
        return -1;
      app->nthreads = (int)n;
      break;
    case 'B':
      if (strcmp(optarg, "io_uring") != 0 && strcmp(optarg, "epoll") != 0) {
        fprintf(stderr, "echo: --backend wants io_uring or epoll\n");
        return -1;
      }
      app->backend = optarg;
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      return -1;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return -1;
  }
  return 0;
}

/* Two fds a connection, two a loop, one a listener: raise the soft limit
 * when the default 1024 is too few. */
static rlim_t fds_needed(const struct app *app) {
  return (rlim_t)app->conns * 2 + (rlim_t)app->nthreads * 3 + 32;
}

static int raise_fd_limit(const struct app *app) {
  struct rlimit rl;
  rlim_t need = fds_needed(app);
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return -errno;
  if (rl.rlim_cur >= need)
    return 0;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    return -EMFILE;
  rl.rlim_cur = need;
  return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

static void wait_servers_ready(struct app *app) {
  pthread_mutex_lock(&app->lock);
  for (int i = 0; i < app->nthreads; i++)
    while (app->servers[i].started && !app->servers[i].ready)
      pthread_cond_wait(&app->cond, &app->lock);
  pthread_mutex_unlock(&app->lock);
}

/* The listening sockets first, all on one port before any client
 * connects; then a thread each, waited for until set up. */
static int start_servers(struct app *app, struct sockaddr_in *addr) {
  app->servers = calloc((size_t)app->nthreads, sizeof(*app->servers));
  if (app->servers == NULL) {
    fprintf(stderr, "echo: calloc: %s\n", rx_strerror(-ENOMEM));
    return -ENOMEM;
  }
  for (int i = 0; i < app->nthreads; i++)
    app->servers[i] = (struct server){.app = app, .index = i, .listen_fd = -1};
  int backlog = app->conns < 4096 ? 4096 : app->conns;
  addr->sin_port = 0; /* the first socket gets a free port, the rest join */
  for (int i = 0; i < app->nthreads; i++) {
    int fd = server_listen(addr, backlog);
    if (fd < 0) {
      fprintf(stderr, "echo: listen on 127.0.0.1 (SO_REUSEPORT): %s\n",
              rx_strerror(fd));
      return fd;
    }
    app->servers[i].listen_fd = fd;
  }
  for (int i = 0; i < app->nthreads; i++) {
    struct server *s = &app->servers[i];
    int rc = pthread_create(&s->thread, NULL, server_thread, s);
    if (rc != 0) {
      fprintf(stderr, "echo: pthread_create: %s\n", rx_strerror(-rc));
      return -rc;
    }
    s->started = true;
  }
  wait_servers_ready(app);
  for (int i = 0; i < app->nthreads; i++)
    if (app->servers[i].setup_rc < 0)
      return app->servers[i].setup_rc; /* the thread said why */
  return 0;
}

/* Posts each server loop its stop task and joins the threads. The main
 * loop no longer runs, so rx_loop_post(), which rings the server loop
 * itself (rx_loop_post_from() would wait for the main loop's next
 * submission). Returns 0 or the first error of a post. */
static int stop_servers(struct app *app) {
  if (app->servers == NULL)
    return 0;
  int err = 0;
  wait_servers_ready(app); /* a loop being set up cannot be posted to */
  for (int i = 0; i < app->nthreads; i++) {
    struct server *s = &app->servers[i];
    if (!s->started || s->loop == NULL)
      continue;
    s->stop = (rx_task){.fn = server_on_stop, .data = s};
    int rc = rx_loop_post(s->loop, &s->stop);
    if (rc < 0) {
      fprintf(stderr, "echo: rx_loop_post to server thread %d: %s\n", i,
              rx_strerror(rc));
      if (err == 0)
        err = rc;
    }
  }
  pthread_mutex_lock(&app->lock);
  app->stops_posted = true; /* see server_thread() */
  pthread_cond_broadcast(&app->cond);
  pthread_mutex_unlock(&app->lock);
  for (int i = 0; i < app->nthreads; i++)
    if (app->servers[i].started)
      pthread_join(app->servers[i].thread, NULL);
  for (int i = 0; i < app->nthreads; i++) /* threads that never started */
    if (app->servers[i].listen_fd >= 0)
      close(app->servers[i].listen_fd);
  return err;
}

static void print_results(const struct app *app) {
  double secs = (double)(app->stopped - app->started) / 1e9;
  printf("connections: %d, message size: %zu bytes, %.2f s\n", app->conns,
         app->size, secs);
  printf("round trips: %llu (%.0f round trips/s)\n",
         (unsigned long long)app->round_trips, (double)app->round_trips / secs);
  uint64_t total = 0;
  for (int i = 0; i < app->nthreads; i++)
    total += app->servers[i].messages;
  for (int i = 0; i < app->nthreads; i++) {
    const struct server *s = &app->servers[i];
    double share = total > 0 ? (double)s->messages / (double)total : 0;
    printf("  server thread %d: %llu connections, %.1f%% of round trips "
           "(%.0f/s)\n",
           i, (unsigned long long)s->accepted, share * 100,
           share * (double)app->round_trips / secs);
  }
  printf("verified: %llu echoed bytes, every one equal to the byte sent\n",
         (unsigned long long)app->bytes_checked);
}

int main(int argc, char **argv) {
  static struct app app; /* zeroed: every fd and pointer "absent" */
  app.duration = RX_SEC(3);
  app.conns = 50;
  app.size = 64;
  app.nthreads = 1;
  if (parse_args(&app, argc, argv) < 0)
    return 2;

  const char *allocator = install_allocator();
  int status = 1, rc;
  bool ran = false;
  char why[160] = "";
  if ((rc = raise_fd_limit(&app)) < 0) {
    fprintf(stderr, "echo: %d connections and %d threads need %llu fds: %s\n",
            app.conns, app.nthreads, (unsigned long long)fds_needed(&app),
            rx_strerror(rc));
    return 1;
  }
  if ((rc = make_loop(&app.loop, app.backend, why, sizeof(why))) < 0) {
    fprintf(stderr, "echo: rx_loop_new: %s%s\n", rx_strerror(rc),
            rc == -EINVAL && getenv("RX_BACKEND") != NULL && app.backend == NULL
                ? " (RX_BACKEND must be io_uring or epoll)"
                : "");
    return 1;
  }
  printf("backend: %s (%s)\n", rx_backend_name(app.loop),
         why[0] != '\0' ? why : rx_backend_reason(app.loop));
  printf("allocator: %s\n", allocator);
  pthread_mutex_init(&app.lock, NULL);
  pthread_cond_init(&app.cond, NULL);

  struct sockaddr_in addr;
  if (start_servers(&app, &addr) < 0)
    goto out;
  printf("server threads: %d (a loop and an SO_REUSEPORT listener each, "
         "127.0.0.1:%u); clients on the main thread; %ld CPUs\n",
         app.nthreads, (unsigned)ntohs(addr.sin_port),
         sysconf(_SC_NPROCESSORS_ONLN));
  for (int i = 0; i < app.nthreads; i++) {
    const struct server *s = &app.servers[i];
    if (strcmp(s->backend_name, rx_backend_name(app.loop)) != 0)
      printf("  server thread %d: backend: %s (%s)\n", i, s->backend_name,
             s->why);
  }

  app.clients = calloc((size_t)app.conns, sizeof(*app.clients));
  if (app.clients == NULL) {
    fprintf(stderr, "echo: calloc: %s\n", rx_strerror(-ENOMEM));
    goto out;
  }
  for (int i = 0; i < app.conns; i++)
    app.clients[i].fd = -1;
  rx_now_update(app.loop); /* the cached time is from before the threads */
  app.started = rx_now(app.loop);
  for (int i = 0; i < app.conns; i++) {
    if ((rc = client_start(&app, &app.clients[i], &addr)) < 0) {
      fprintf(stderr, "echo: client %d: %s\n", i, rx_strerror(rc));
      goto out;
    }
  }
  rx_timer_init(&app.stopwatch, on_stopwatch, RX_MSEC(100), RX_MSEC(100));
  app.stopwatch.data = &app;
  if ((rc = rx_timer_start(app.loop, &app.stopwatch)) < 0) {
    fprintf(stderr, "echo: rx_timer_start: %s\n", rx_strerror(rc));
    goto out;
  }

  /* Until the stopwatch or an error breaks the loop. */
  if ((rc = rx_run(app.loop, RX_RUN_DEFAULT)) < 0) {
    fprintf(stderr, "echo: rx_run: %s\n", rx_strerror(rc));
    goto out;
  }
  if (app.failed)
    goto out;
  if (app.stopped == 0) {
    fprintf(stderr, "echo: rx_run returned before the time was up\n");
    goto out;
  }
  ran = true;

out:
  /* The server threads first: each closes its fds and frees its loop. */
  if (stop_servers(&app) < 0)
    ran = false;
  for (int i = 0; app.servers != NULL && i < app.nthreads; i++)
    if (app.servers[i].failed)
      ran = false; /* the thread said why */
  if (ran) {
    print_results(&app);
    if (app.round_trips == 0)
      fprintf(stderr, "echo: no round trip completed\n");
    else
      status = 0;
  }

  /* Then the main loop: stop each watcher, close its fd, free the loop
   * (stopping an inactive watcher is a no-op: partial set-ups too). */
  rx_timer_stop(app.loop, &app.stopwatch);
  for (int i = 0; app.clients != NULL && i < app.conns; i++) {
    struct client *c = &app.clients[i];
    if (c->fd >= 0) {
      rx_io_stop(app.loop, &c->rd);
      rx_io_stop(app.loop, &c->wr);
      close(c->fd);
    }
    free(c->msg);
  }
  free(app.clients);
  /* Nothing left: one iteration returns 0 (and runs a failure note a
   * server thread may have posted late). */
  if ((rc = rx_run(app.loop, RX_RUN_NOWAIT)) != 0) {
    fprintf(stderr, "echo: watchers still active after shutdown (%d)\n", rc);
    status = 1;
  }
  rx_loop_free(app.loop);
  free(app.servers);
  pthread_cond_destroy(&app.cond);
  pthread_mutex_destroy(&app.lock);
  return status;
}
