/*
 * echo.c - an echo server and its clients on one rx loop.
 *
 * The server listens on 127.0.0.1 (an ephemeral port) and echoes every byte
 * back; N clients in the same process each send a message, wait until the
 * whole echo is back, check every byte, count one round trip and send the
 * next message. After --seconds a repeating timer breaks the loop and the
 * program prints the backend, the number of round trips and the rate.
 *
 *   echo [--seconds S] [--conns N] [--size B] [--backend io_uring|epoll]
 *
 * It shows the patterns a server built on rx uses:
 *   - a non-blocking listening socket whose READ watcher accepts until
 *     EAGAIN (the watcher is level-triggered, so leaving some connections in
 *     the backlog would be harmless, but draining costs fewer wake-ups);
 *   - one READ and one WRITE watcher per connection, only one of them
 *     started at a time: a connection whose peer does not read fast enough
 *     stops reading until its unsent bytes are gone (backpressure), so
 *     memory per connection is bounded by one buffer;
 *   - every syscall checked, every rx error printed with rx_strerror();
 *   - a clean shutdown: stop the watchers, close the fds, free the loop.
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

/* One accepted connection. Exactly one of its two watchers is active: `rd`
 * while everything read has been written back, `wr` while some of it is
 * still waiting for room in the socket's send buffer. */
struct server_conn {
  rx_io rd;
  rx_io wr;
  struct app *app;
  struct server_conn *next, **pprev; /* the app's list of connections */
  size_t off, len;                   /* unsent bytes are buf[off, len) */
  unsigned char buf[SERVER_BUF];
};

/* One client. `rd` is always active; `wr` only while the socket is
 * connecting or a message did not fit in the send buffer at once. */
struct client {
  rx_io rd;
  rx_io wr;
  struct app *app;
  int fd;
  bool connected;
  uint64_t round; /* messages sent so far: seeds the next message */
  size_t sent;    /* bytes of msg written */
  size_t got;     /* bytes of msg echoed back and checked */
  unsigned char *msg;
};

struct app {
  rx_loop *loop;
  /* Options. */
  int64_t duration; /* ns */
  int conns;
  size_t size;
  /* The server. */
  int listen_fd;
  rx_io accept_w;
  struct server_conn *server_conns;
  /* The clients and the end of the run. */
  struct client *clients;
  rx_timer stopwatch;
  int64_t started, stopped; /* rx_now() at the start and at the break */
  uint64_t round_trips;
  uint64_t bytes_checked;
  int failed; /* set by fail(): the run is over and the exit status is 1 */
};

/* Ends the run with an error: the message is printed, the loop stops once
 * the callbacks already pending have run, and main() cleans up. */
static void fail(struct app *app, const char *what, int err) {
  if (app->failed)
    return; /* only the first error is worth reading */
  if (err != 0)
    fprintf(stderr, "echo: %s: %s\n", what, rx_strerror(err));
  else
    fprintf(stderr, "echo: %s\n", what);
  app->failed = 1;
  rx_break(app->loop, RX_BREAK_ALL);
}

/* ---------------------------------------------------------------------------
 * The allocator. rx allocates only for its internal tables (fd table,
 * change list, backend state); when the build found jemalloc, those
 * allocations go to it, as they would in a server linked with jemalloc.
 * rx passes the size of every block it frees or resizes, so the sized
 * entry points are used: sdallocx() skips the size lookup free() has to do.
 */
#ifdef RX_HAVE_JEMALLOC
/* The *allocx functions are undefined for size 0; rx never asks for 0 bytes,
 * but an allocator hook should not rely on that. */
static size_t nonzero(size_t size) {
  return size != 0 ? size : 1;
}

static void *je_alloc(void *ctx, size_t size) {
  (void)ctx;
  return mallocx(nonzero(size), 0);
}

static void *je_realloc(void *ctx, void *ptr, size_t old_size,
                        size_t new_size) {
  (void)ctx;
  (void)old_size;
  return rallocx(ptr, nonzero(new_size), 0);
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

/* ---------------------------------------------------------------------------
 * The server.
 */

static void server_conn_close(struct server_conn *c) {
  rx_io_stop(c->app->loop, &c->rd);
  rx_io_stop(c->app->loop, &c->wr);
  close(c->rd.fd);
  *c->pprev = c->next;
  if (c->next != NULL)
    c->next->pprev = c->pprev;
  free(c);
}

/* Writes buf[off, len) back. Returns 1 when all of it went out, 0 when the
 * socket's send buffer is full, -1 when the connection is gone (closed). */
static int server_flush(struct server_conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->rd.fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n >= 0) {
      c->off += (size_t)n;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return 0;
    } else if (errno != EINTR) {
      /* EPIPE / ECONNRESET: the client went away. Not an error of the
       * server; the run's end closes client sockets with data in flight. */
      server_conn_close(c);
      return -1;
    }
  }
  c->off = c->len = 0;
  return 1;
}

/* Switches a connection from one watcher to the other. The new one is
 * started before the old one is stopped, so the fd never has zero watchers
 * and the backend keeps its registration (a backend renews the kernel
 * registration of an fd that lost its last watcher: its number may have
 * been reused). */
static int server_switch(struct server_conn *c, rx_io *from, rx_io *to) {
  int rc = rx_io_start(c->app->loop, to);
  if (rc < 0) {
    fail(c->app, "rx_io_start", rc);
    return rc;
  }
  rx_io_stop(c->app->loop, from);
  return 0;
}

/* RX_ERROR: rx found the fd invalid or closed and has stopped the watcher.
 * Nothing in this program closes a watched fd, so it is a bug somewhere. */
static void server_on_error(struct server_conn *c) {
  struct app *app = c->app;
  server_conn_close(c);
  fail(app, "server connection: rx reported RX_ERROR", 0);
}

/* The connection is readable: read once, echo it back. One read per
 * callback keeps the loop fair between connections; the watcher is
 * level-triggered, so whatever is left in the socket calls us again. */
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
    return; /* spurious wake-up or a signal: try again next time */
  c->off = 0;
  c->len = (size_t)n;
  if (server_flush(c) == 0)
    server_switch(c, &c->rd, &c->wr); /* backpressure: stop reading */
}

/* Room in the send buffer again: send the rest, then read again. */
static void server_on_write(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct server_conn *c = w->data;
  if (revents & RX_ERROR) {
    server_on_error(c);
    return;
  }
  if (server_flush(c) == 1)
    server_switch(c, &c->wr, &c->rd);
}

static void server_accept(rx_loop *loop, rx_io *w, int revents) {
  struct app *app = w->data;
  if (revents & RX_ERROR) {
    fail(app, "listening socket: rx reported RX_ERROR", 0);
    return;
  }
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return; /* the backlog is empty */
      if (errno == EINTR || errno == ECONNABORTED)
        continue; /* that one is gone; there may be others */
      /* EMFILE, ENFILE, ENOBUFS...: for a demo, a reason to stop. A real
       * server would stop accepting for a while and go on serving. */
      fail(app, "accept4", -errno);
      return;
    }
    struct server_conn *c = malloc(sizeof(*c));
    if (c == NULL) {
      close(fd);
      fail(app, "malloc", -ENOMEM);
      return;
    }
    c->app = app;
    c->off = c->len = 0;
    rx_io_init(&c->rd, server_on_read, fd, RX_READ);
    rx_io_init(&c->wr, server_on_write, fd, RX_WRITE);
    c->rd.data = c->wr.data = c;
    c->next = app->server_conns;
    c->pprev = &app->server_conns;
    if (c->next != NULL)
      c->next->pprev = &c->next;
    app->server_conns = c;
    int rc = rx_io_start(loop, &c->rd);
    if (rc < 0) {
      server_conn_close(c);
      fail(app, "rx_io_start", rc);
      return;
    }
  }
}

/* A non-blocking TCP socket listening on 127.0.0.1, port chosen by the
 * kernel; fills in `addr` with the address to connect to. */
static int server_listen(struct sockaddr_in *addr, int backlog) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  memset(addr, 0, sizeof(*addr));
  addr->sin_family = AF_INET;
  addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr->sin_port = 0;
  socklen_t len = sizeof(*addr);
  if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0 ||
      listen(fd, backlog) < 0 ||
      getsockname(fd, (struct sockaddr *)addr, &len) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

/* ---------------------------------------------------------------------------
 * The clients.
 */

/* Fills the message of round `round` of client `id`: a cheap pseudo-random
 * stream (xorshift64 seeded through splitmix64's mixer), different for every
 * client and round, so that a byte echoed to the wrong client, twice, or out
 * of order is noticed. */
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

/* Writes what is left of the message. The WRITE watcher is active exactly
 * while something is left that the socket did not take. */
static void client_send(struct client *c) {
  struct app *app = c->app;
  while (c->sent < app->size) {
    ssize_t n =
        send(c->fd, c->msg + c->sent, app->size - c->sent, MSG_NOSIGNAL);
    if (n >= 0) {
      c->sent += (size_t)n;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int rc = rx_io_start(app->loop, &c->wr); /* no-op if already active */
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
  c->sent = 0;
  c->got = 0;
  client_send(c);
}

/* Writable: either the connection is now established, or there is room to
 * send the rest of the message. */
static void client_on_write(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct client *c = w->data;
  if (revents & RX_ERROR) {
    fail(c->app, "client: rx reported RX_ERROR", 0);
    return;
  }
  if (!c->connected) {
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
    return;
  }
  client_send(c);
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
  static unsigned char buf[CLIENT_BUF]; /* one thread, one loop: shared */
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
  /* The server can only echo what it received: more than was sent means
   * bytes came from somewhere else. */
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
  c->connected = false;
  c->round = 0;
  c->sent = c->got = 0;
  c->msg = malloc(app->size);
  if (c->msg == NULL)
    return -ENOMEM;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    return -errno;
  /* Small messages, one at a time: do not let Nagle hold them back. */
  int one = 1;
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
  /* The connection completes in the background; writable means done. */
  return rx_io_start(app->loop, &c->wr);
}

/* ---------------------------------------------------------------------------
 * The end of the run: a repeating timer every 100 ms (it keeps its phase,
 * so the ticks do not drift) that breaks the loop once the time is up.
 */

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
          "usage: echo [--seconds S] [--conns N] [--size B] "
          "[--backend io_uring|epoll]\n"
          "  --seconds S  run for S seconds (default 3, fractions allowed)\n"
          "  --conns N    client connections (default 50)\n"
          "  --size B     message size in bytes (default 64)\n"
          "  --backend B  force a backend (default: $RX_BACKEND, else "
          "io_uring falling back to epoll)\n");
}

static int parse_args(struct app *app, const char **backend, int argc,
                      char **argv) {
  static const struct option longopts[] = {
      {"seconds", required_argument, NULL, 's'},
      {"conns", required_argument, NULL, 'c'},
      {"size", required_argument, NULL, 'b'},
      {"backend", required_argument, NULL, 'B'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "s:c:b:B:h", longopts, NULL)) != -1) {
    char *end;
    errno = 0;
    switch (opt) {
    case 's': {
      double s = strtod(optarg, &end);
      if (errno != 0 || *end != '\0' || !(s > 0 && s <= 86400)) {
        fprintf(stderr, "echo: --seconds wants a number in (0, 86400]\n");
        return -1;
      }
      app->duration = (int64_t)(s * 1e9);
      break;
    }
    case 'c': {
      long n = strtol(optarg, &end, 10);
      if (errno != 0 || *end != '\0' || n < 1 || n > MAX_CONNS) {
        fprintf(stderr, "echo: --conns wants 1..%d\n", MAX_CONNS);
        return -1;
      }
      app->conns = (int)n;
      break;
    }
    case 'b': {
      long n = strtol(optarg, &end, 10);
      if (errno != 0 || *end != '\0' || n < 1 || n > MAX_SIZE) {
        fprintf(stderr, "echo: --size wants 1..%d\n", MAX_SIZE);
        return -1;
      }
      app->size = (size_t)n;
      break;
    }
    case 'B':
      if (strcmp(optarg, "io_uring") != 0 && strcmp(optarg, "epoll") != 0) {
        fprintf(stderr, "echo: --backend wants io_uring or epoll\n");
        return -1;
      }
      *backend = optarg;
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

/* Each connection takes two fds (client and server side); raise the soft
 * limit when the default 1024 is too few. */
static int raise_fd_limit(int conns) {
  struct rlimit rl;
  rlim_t need = (rlim_t)conns * 2 + 32;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return -errno;
  if (rl.rlim_cur >= need)
    return 0;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    return -EMFILE;
  rl.rlim_cur = need;
  return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0;
}

/* Creates the loop. io_uring may be refused where the kernel lacks it or a
 * seccomp profile (containers) forbids it. rx falls back to epoll by itself
 * only when no backend was forced; when io_uring was asked for by name it
 * reports the refusal instead, and this demo falls back itself. `why` is
 * then set to say so, in place of rx_backend_reason(). */
static int make_loop(struct app *app, const char *backend, char *why,
                     size_t whylen) {
  struct rx_loop_options opts;
  memset(&opts, 0, sizeof(opts));
  opts.backend = backend; /* NULL: rx reads $RX_BACKEND */
  int rc = rx_loop_new(&app->loop, &opts);
  const char *env = getenv("RX_BACKEND");
  const char *asked = backend != NULL ? backend : env;
  if ((rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -ENOMEM) &&
      asked != NULL && strcmp(asked, "io_uring") == 0) {
    snprintf(why, whylen,
             "io_uring, forced by %s, was refused: %s; falling back",
             backend != NULL ? "--backend" : "RX_BACKEND", rx_strerror(rc));
    opts.backend = "epoll";
    rc = rx_loop_new(&app->loop, &opts);
  }
  return rc;
}

int main(int argc, char **argv) {
  static struct app app; /* zeroed: every fd and pointer "absent" */
  app.duration = RX_SEC(3);
  app.conns = 50;
  app.size = 64;
  app.listen_fd = -1;
  const char *backend = NULL;
  if (parse_args(&app, &backend, argc, argv) < 0)
    return 2;

  const char *allocator = install_allocator();
  int status = 1;
  int rc;
  char why[160] = "";
  if ((rc = raise_fd_limit(app.conns)) < 0) {
    fprintf(stderr, "echo: %d connections need %d fds: %s\n", app.conns,
            app.conns * 2 + 32, rx_strerror(rc));
    return 1;
  }
  if ((rc = make_loop(&app, backend, why, sizeof(why))) < 0) {
    const char *env = getenv("RX_BACKEND");
    fprintf(stderr, "echo: rx_loop_new: %s%s\n", rx_strerror(rc),
            rc == -EINVAL && env != NULL && backend == NULL
                ? " (RX_BACKEND must be io_uring or epoll)"
                : "");
    return 1;
  }
  printf("backend: %s (%s)\n", rx_backend_name(app.loop),
         why[0] != '\0' ? why : rx_backend_reason(app.loop));
  printf("allocator: %s\n", allocator);

  /* The server. */
  struct sockaddr_in addr;
  app.listen_fd = server_listen(&addr, app.conns < 4096 ? 4096 : app.conns);
  if (app.listen_fd < 0) {
    fprintf(stderr, "echo: listen on 127.0.0.1: %s\n",
            rx_strerror(app.listen_fd));
    app.listen_fd = -1;
    goto out;
  }
  rx_io_init(&app.accept_w, server_accept, app.listen_fd, RX_READ);
  app.accept_w.data = &app;
  if ((rc = rx_io_start(app.loop, &app.accept_w)) < 0) {
    fprintf(stderr, "echo: rx_io_start: %s\n", rx_strerror(rc));
    goto out;
  }

  /* The clients. */
  app.clients = calloc((size_t)app.conns, sizeof(*app.clients));
  if (app.clients == NULL) {
    fprintf(stderr, "echo: calloc: %s\n", rx_strerror(-ENOMEM));
    goto out;
  }
  for (int i = 0; i < app.conns; i++)
    app.clients[i].fd = -1;
  app.started = rx_now(app.loop);
  for (int i = 0; i < app.conns; i++) {
    if ((rc = client_start(&app, &app.clients[i], &addr)) < 0) {
      fprintf(stderr, "echo: client %d: %s\n", i, rx_strerror(rc));
      goto out;
    }
  }

  /* The stopwatch. */
  rx_timer_init(&app.stopwatch, on_stopwatch, RX_MSEC(100), RX_MSEC(100));
  app.stopwatch.data = &app;
  if ((rc = rx_timer_start(app.loop, &app.stopwatch)) < 0) {
    fprintf(stderr, "echo: rx_timer_start: %s\n", rx_strerror(rc));
    goto out;
  }

  /* Run until the stopwatch (or an error) breaks the loop. It returns 1
   * then, because watchers are still active; 0 would mean every watcher
   * stopped by itself, which this program never does. */
  rc = rx_run(app.loop, RX_RUN_DEFAULT);
  if (rc < 0) {
    fprintf(stderr, "echo: rx_run: %s\n", rx_strerror(rc));
    goto out;
  }
  if (app.failed)
    goto out;
  if (app.stopped == 0) {
    fprintf(stderr, "echo: rx_run returned before the time was up\n");
    goto out;
  }

  double secs = (double)(app.stopped - app.started) / 1e9;
  printf("connections: %d, message size: %zu bytes, %.2f s\n", app.conns,
         app.size, secs);
  printf("round trips: %llu (%.0f round trips/s)\n",
         (unsigned long long)app.round_trips, (double)app.round_trips / secs);
  printf("verified: %llu echoed bytes, every one equal to the byte sent\n",
         (unsigned long long)app.bytes_checked);
  if (app.round_trips == 0) {
    fprintf(stderr, "echo: no round trip completed\n");
    goto out;
  }
  status = 0;

out:
  /* Shutdown: stop every watcher, then close its fd (closing first would
   * leave the backend watching a number that may be reused), then free the
   * loop. Stopping an inactive watcher is a no-op, so partial set-ups are
   * handled by the same code. */
  rx_timer_stop(app.loop, &app.stopwatch);
  if (app.clients != NULL) {
    for (int i = 0; i < app.conns; i++) {
      struct client *c = &app.clients[i];
      if (c->fd >= 0) {
        rx_io_stop(app.loop, &c->rd);
        rx_io_stop(app.loop, &c->wr);
        close(c->fd);
      }
      free(c->msg);
    }
    free(app.clients);
  }
  while (app.server_conns != NULL)
    server_conn_close(app.server_conns);
  if (app.listen_fd >= 0) {
    rx_io_stop(app.loop, &app.accept_w);
    close(app.listen_fd);
  }
  /* Nothing is left to run: one non-blocking iteration returns 0. */
  rc = rx_run(app.loop, RX_RUN_NOWAIT);
  if (rc != 0) {
    fprintf(stderr, "echo: watchers still active after shutdown (%d)\n", rc);
    status = 1;
  }
  rx_loop_free(app.loop);
  return status;
}
