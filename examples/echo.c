/*
 * echo.c - an echo server on N threads and its clients on the main thread.
 *
 * Each of --threads N server threads creates its own rx loop, runs it and
 * frees it, and accepts on its own listening socket; all N sockets are bound
 * to the same 127.0.0.1 port with SO_REUSEPORT, so the kernel spreads the
 * connections over them. The server echoes every byte back. The clients, on
 * the main thread's loop, each send a message, wait until the whole echo is
 * back, check every byte, count one round trip and send the next message.
 * After --seconds a repeating timer breaks the main loop; the main thread
 * then posts a stop task to every server loop (rx_loop_post, the cross-thread
 * entry point), joins the threads, and prints the backend, the round trips,
 * the rate and each server thread's share.
 *
 *   echo [--seconds S] [--conns N] [--size B] [--threads N]
 *        [--backend io_uring|epoll]
 *
 * It shows the patterns a server built on rx uses:
 *   - one loop per thread, created on the thread that runs it (an io_uring
 *     loop is bound to the first thread that runs it), and nothing of a
 *     loop touched from another thread but through rx_loop_post();
 *   - a non-blocking listening socket whose READ watcher accepts until
 *     EAGAIN (the watcher is level-triggered, so leaving some connections in
 *     the backlog would be harmless, but draining costs fewer wake-ups);
 *   - one READ and one WRITE watcher per connection, only one of them
 *     started at a time: a connection whose peer does not read fast enough
 *     stops reading until its unsent bytes are gone (backpressure), so
 *     memory per connection is bounded by one buffer;
 *   - every syscall checked, every rx error printed with rx_strerror();
 *   - a clean shutdown: stop the watchers, close the fds, free each loop on
 *     its own thread.
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

/* One accepted connection, owned by the server thread that accepted it.
 * Exactly one of its two watchers is active: `rd` while everything read has
 * been written back, `wr` while some of it is still waiting for room in the
 * socket's send buffer. */
struct server_conn {
  rx_io rd;
  rx_io wr;
  struct server *srv;
  struct server_conn *next, **pprev; /* the server's list of connections */
  uint64_t echoed;                   /* bytes written back so far */
  size_t off, len;                   /* unsent bytes are buf[off, len) */
  unsigned char buf[SERVER_BUF];
};

/* One server thread. Between pthread_create() and pthread_join() the
 * main thread reads only what server_ready() published under app->lock
 * (`loop`, `setup_rc`, `backend_name`, `why`, none written again), and
 * writes only `stop`, which it hands over with rx_loop_post(). The rest is
 * the server thread's until it has been joined. */
struct server {
  struct app *app;
  int index;
  pthread_t thread;
  bool started; /* pthread_create() succeeded: join it */
  /* Published to the main thread by server_ready(). */
  rx_loop *loop; /* created, run and freed by this thread */
  int setup_rc;
  bool ready;
  const char *backend_name; /* rx_backend_name() of `loop` */
  char why[160];            /* rx_backend_reason(), or see make_loop() */
  /* The server thread's own. */
  int listen_fd; /* made by main() before the thread starts */
  rx_io accept_w;
  struct server_conn *conns;
  bool stopped; /* server_shutdown() has run */
  int failed;
  rx_task failed_note; /* posted to the main loop by server_fail() */
  /* Posted by the main thread when the run is over. */
  rx_task stop;
  /* Results, read by the main thread after pthread_join(). */
  uint64_t accepted;
  uint64_t messages; /* whole messages echoed, counted as connections close */
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

/* The main thread's state. Options are written before any server thread
 * starts and only read afterwards. */
struct app {
  rx_loop *loop; /* the main thread's: clients and the stopwatch */
  /* Options. */
  int64_t duration; /* ns */
  int conns;
  size_t size;
  int nthreads;
  const char *backend; /* --backend, or NULL */
  /* The server threads. */
  struct server *servers;
  pthread_mutex_t lock; /* guards each server's `ready`, and stops_posted */
  pthread_cond_t cond;
  bool stops_posted; /* every running server loop has been sent its stop */
  /* The clients and the end of the run. */
  struct client *clients;
  rx_timer stopwatch;
  int64_t started, stopped; /* rx_now() at the start and at the break */
  uint64_t round_trips;
  uint64_t bytes_checked;
  int failed; /* set by fail(): the run is over and the exit status is 1 */
};

/* Ends the run with an error (main thread): the message is printed, the
 * loop stops once the callbacks already pending have run, and main() cleans
 * up. */
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
 * The server: one thread per loop, one loop per listening socket.
 */

static int make_loop(rx_loop **loop, const char *backend, char *why,
                     size_t whylen);

/* Runs on the main thread, posted by a server thread that failed: ends the
 * run as fail() does (the server thread has printed why). */
static void on_server_failed(rx_loop *loop, rx_task *task) {
  (void)loop;
  struct server *s = task->data;
  fail(s->app, NULL, 0);
}

/* Ends the run with an error, from a server thread: the message is printed
 * here, the server loop breaks, and the main loop is told through
 * rx_loop_post(), the one way to reach it from this thread. The server
 * thread then waits for its stop task before it frees its loop (see
 * server_thread()). */
static void server_fail(struct server *s, const char *what, int err) {
  if (s->failed)
    return;
  if (err != 0)
    fprintf(stderr, "echo: server thread %d: %s: %s\n", s->index, what,
            rx_strerror(err));
  else
    fprintf(stderr, "echo: server thread %d: %s\n", s->index, what);
  s->failed = 1;
  s->failed_note.fn = on_server_failed;
  s->failed_note.data = s;
  /* Cannot fail: the main loop is freed only after every server thread
   * has been joined. */
  (void)rx_loop_post(s->app->loop, &s->failed_note);
  rx_break(s->loop, RX_BREAK_ALL);
}

static void server_conn_close(struct server_conn *c) {
  struct server *s = c->srv;
  rx_io_stop(s->loop, &c->rd);
  rx_io_stop(s->loop, &c->wr);
  close(c->rd.fd);
  /* Clients send a message only once the previous one is back, so every
   * whole message echoed on this connection is a round trip (the last one
   * may still be on its way to the client when the run ends). */
  s->messages += c->echoed / s->app->size;
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
      c->echoed += (uint64_t)n;
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
  int rc = rx_io_start(c->srv->loop, to);
  if (rc < 0) {
    server_fail(c->srv, "rx_io_start", rc);
    return rc;
  }
  rx_io_stop(c->srv->loop, from);
  return 0;
}

/* RX_ERROR: rx found the fd invalid or closed and has stopped the watcher.
 * Nothing in this program closes a watched fd, so it is a bug somewhere. */
static void server_on_error(struct server_conn *c) {
  struct server *s = c->srv;
  server_conn_close(c);
  server_fail(s, "server connection: rx reported RX_ERROR", 0);
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
        continue; /* that one is gone; there may be others */
      /* EMFILE, ENFILE, ENOBUFS...: for a demo, a reason to stop. A real
       * server would stop accepting for a while and go on serving. */
      server_fail(s, "accept4", -errno);
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

/* A non-blocking TCP socket listening on 127.0.0.1 with SO_REUSEPORT, on
 * addr's port, or on a port the kernel chooses if that is 0; fills in
 * `addr` with the address to connect to. A port the kernel chooses is one
 * no socket uses, so the group this socket starts is ours alone; the other
 * server threads' sockets join it by binding the same port (the kernel
 * allows that to sockets of the same user that all set SO_REUSEPORT), and
 * the kernel hashes each new connection to one of them. */
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

/* Stops every watcher of the server loop and closes its fds; with nothing
 * left to watch, rx_run() on this thread returns 0. Runs on the server
 * thread: normally as the stop task, otherwise from server_thread(). */
static void server_shutdown(struct server *s) {
  if (s->stopped)
    return;
  s->stopped = true;
  while (s->conns != NULL)
    server_conn_close(s->conns);
  rx_io_stop(s->loop, &s->accept_w); /* stop, then close: see main() */
  if (s->listen_fd >= 0)
    close(s->listen_fd);
  s->listen_fd = -1;
}

/* The stop task: posted by the main thread with rx_loop_post(), run by rx
 * on this server's thread, between two waits of its loop. */
static void server_on_stop(rx_loop *loop, rx_task *task) {
  (void)loop;
  server_shutdown(task->data);
}

/* Tells the main thread that set-up is over, with its result. */
static void server_ready(struct server *s, int rc) {
  struct app *app = s->app;
  pthread_mutex_lock(&app->lock);
  s->setup_rc = rc;
  s->ready = true;
  pthread_cond_broadcast(&app->cond);
  pthread_mutex_unlock(&app->lock);
}

/* A server thread. The loop is created here, on the thread that runs it:
 * a loop belongs to one thread, and an io_uring loop set up for a single
 * issuer is bound to the first thread that runs it. */
static void *server_thread(void *arg) {
  struct server *s = arg;
  struct app *app = s->app;
  rx_loop *loop;
  int rc = make_loop(&loop, app->backend, s->why, sizeof(s->why));
  if (rc < 0) {
    fprintf(stderr, "echo: server thread %d: rx_loop_new: %s\n", s->index,
            rx_strerror(rc));
    server_ready(s, rc); /* s->loop stays NULL: nobody posts to it */
    return NULL;
  }
  s->loop = loop; /* published to the main thread by server_ready() */
  /* For the main thread to print: it must not ask the loop itself. */
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

  /* Until the stop task has stopped every watcher (rx_run() returns 0), or
   * an error broke the loop (1) or the backend failed (negative). */
  if (rc == 0) {
    rc = rx_run(loop, RX_RUN_DEFAULT);
    if (rc < 0)
      server_fail(s, "rx_run", rc);
  }

  /* Freeing a loop that another thread may still post to is a use after
   * free (rx.h, rx_loop_post). Unless the stop task has run, which means
   * the main thread's post to this loop is done, wait until the main
   * thread has posted it; rx_loop_free() then runs it (it runs every task
   * posted before it began), and server_shutdown() is a no-op for it if it
   * has already done its work here. */
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
 * The clients, all on the main thread's loop.
 *
 * Why not spread them over the server threads: a server thread then does
 * server work only, so its share of the round trips is exactly what the
 * kernel's SO_REUSEPORT hash gave it, and every round trip crosses from the
 * client thread to a server thread and back whatever --threads is, so runs
 * with different N measure the same thing. Clients on the server threads
 * would sometimes be hashed to their own thread's listener (a round trip
 * without a thread hop) and would mix client and server work in each
 * thread's numbers. The price, stated rather than hidden: one thread
 * drives all the load, so with more than a few server threads (or more
 * threads than CPUs) the client thread, not the server, limits the rate.
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
  /* Every client runs on the main thread, one callback at a time: shared. */
  static unsigned char buf[CLIENT_BUF];
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
  while ((opt = getopt_long(argc, argv, "s:c:b:t:B:h", longopts, NULL)) != -1) {
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
    case 't': {
      long n = strtol(optarg, &end, 10);
      if (errno != 0 || *end != '\0' || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "echo: --threads wants 1..%d\n", MAX_THREADS);
        return -1;
      }
      app->nthreads = (int)n;
      break;
    }
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

/* Each connection takes two fds (client and server side), each loop two
 * (its eventfd and its ring or epoll fd) and each server thread a listening
 * socket; raise the soft limit when the default 1024 is too few. */
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

/* Creates a loop on the calling thread, which will run it. io_uring may be
 * refused where the kernel lacks it or a seccomp profile (containers)
 * forbids it. rx falls back to epoll by itself only when no backend was
 * forced; when io_uring was asked for by name it reports the refusal
 * instead, and this demo falls back itself. `why` is then set to say so;
 * otherwise it is left empty and rx_backend_reason() says why. */
static int make_loop(rx_loop **loop, const char *backend, char *why,
                     size_t whylen) {
  struct rx_loop_options opts;
  memset(&opts, 0, sizeof(opts));
  opts.backend = backend; /* NULL: rx reads $RX_BACKEND */
  int rc = rx_loop_new(loop, &opts);
  const char *env = getenv("RX_BACKEND");
  const char *asked = backend != NULL ? backend : env;
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

/* Waits until every started server thread has finished its set-up. */
static void wait_servers_ready(struct app *app) {
  pthread_mutex_lock(&app->lock);
  for (int i = 0; i < app->nthreads; i++)
    while (app->servers[i].started && !app->servers[i].ready)
      pthread_cond_wait(&app->cond, &app->lock);
  pthread_mutex_unlock(&app->lock);
}

/* Makes the listening sockets, here on the main thread, so that all of
 * them listen on the one port before any client connects; then starts one
 * thread per socket and waits until each has its loop running set up.
 * Fills in `addr`. Errors are printed; stop_servers() cleans up. */
static int start_servers(struct app *app, struct sockaddr_in *addr) {
  app->servers = calloc((size_t)app->nthreads, sizeof(*app->servers));
  if (app->servers == NULL) {
    fprintf(stderr, "echo: calloc: %s\n", rx_strerror(-ENOMEM));
    return -ENOMEM;
  }
  for (int i = 0; i < app->nthreads; i++) {
    app->servers[i].app = app;
    app->servers[i].index = i;
    app->servers[i].listen_fd = -1;
  }
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

/* The end of the server threads, from the main thread: post each running
 * server loop its stop task, then join. The main loop has returned from
 * rx_run() by now, so this uses rx_loop_post(), which rings the server
 * loop's eventfd itself. rx_loop_post_from(app->loop, ...) would instead
 * queue an io_uring message that leaves only with the main loop's next
 * submission, which a loop that no longer runs never makes. Returns 0, or
 * the first error of a post. */
static int stop_servers(struct app *app) {
  if (app->servers == NULL)
    return 0;
  int err = 0;
  wait_servers_ready(app); /* a loop being set up cannot be posted to yet */
  for (int i = 0; i < app->nthreads; i++) {
    struct server *s = &app->servers[i];
    if (!s->started || s->loop == NULL)
      continue;
    s->stop.fn = server_on_stop;
    s->stop.data = s;
    int rc = rx_loop_post(s->loop, &s->stop);
    if (rc < 0) {
      fprintf(stderr, "echo: rx_loop_post to server thread %d: %s\n", i,
              rx_strerror(rc));
      if (err == 0)
        err = rc;
    }
  }
  /* Server threads that did not get as far as running the stop task (an
   * error broke their loop) wait for this before freeing their loop. */
  pthread_mutex_lock(&app->lock);
  app->stops_posted = true;
  pthread_cond_broadcast(&app->cond);
  pthread_mutex_unlock(&app->lock);
  for (int i = 0; i < app->nthreads; i++)
    if (app->servers[i].started)
      pthread_join(app->servers[i].thread, NULL);
  /* Sockets of threads that never started, or never made a loop. */
  for (int i = 0; i < app->nthreads; i++)
    if (app->servers[i].listen_fd >= 0)
      close(app->servers[i].listen_fd);
  return err;
}

/* After the joins: each server thread's share of the round trips. */
static void print_shares(const struct app *app, double secs) {
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
}

int main(int argc, char **argv) {
  static struct app app; /* zeroed: every fd and pointer "absent" */
  app.duration = RX_SEC(3);
  app.conns = 50;
  app.size = 64;
  app.nthreads = 1;
  if (parse_args(&app, argc, argv) < 0)
    return 2;

  const char *allocator = install_allocator(); /* before any loop exists */
  int status = 1;
  bool ran = false;
  int rc;
  char why[160] = "";
  if ((rc = raise_fd_limit(&app)) < 0) {
    fprintf(stderr, "echo: %d connections and %d threads need %llu fds: %s\n",
            app.conns, app.nthreads, (unsigned long long)fds_needed(&app),
            rx_strerror(rc));
    return 1;
  }
  if ((rc = make_loop(&app.loop, app.backend, why, sizeof(why))) < 0) {
    const char *env = getenv("RX_BACKEND");
    fprintf(stderr, "echo: rx_loop_new: %s%s\n", rx_strerror(rc),
            rc == -EINVAL && env != NULL && app.backend == NULL
                ? " (RX_BACKEND must be io_uring or epoll)"
                : "");
    return 1;
  }
  printf("backend: %s (%s)\n", rx_backend_name(app.loop),
         why[0] != '\0' ? why : rx_backend_reason(app.loop));
  printf("allocator: %s\n", allocator);
  pthread_mutex_init(&app.lock, NULL);
  pthread_cond_init(&app.cond, NULL);

  /* The server threads. */
  struct sockaddr_in addr;
  if (start_servers(&app, &addr) < 0)
    goto out;
  printf("server threads: %d (a loop and an SO_REUSEPORT listener each, "
         "127.0.0.1:%u); clients on the main thread; %ld CPUs\n",
         app.nthreads, (unsigned)ntohs(addr.sin_port),
         sysconf(_SC_NPROCESSORS_ONLN));
  for (int i = 0; i < app.nthreads; i++) {
    /* Written by the thread before it said it was ready. */
    const struct server *s = &app.servers[i];
    if (strcmp(s->backend_name, rx_backend_name(app.loop)) != 0)
      printf("  server thread %d: backend: %s (%s)\n", i, s->backend_name,
             s->why);
  }

  /* The clients. */
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
  ran = true;

out:
  /* Shutdown. The server threads first: each closes its connections and
   * its listening socket and frees its loop, on its own thread. */
  if (stop_servers(&app) < 0)
    ran = false;
  for (int i = 0; app.servers != NULL && i < app.nthreads; i++)
    if (app.servers[i].failed)
      ran = false; /* the thread said why */

  if (ran) {
    double secs = (double)(app.stopped - app.started) / 1e9;
    printf("connections: %d, message size: %zu bytes, %.2f s\n", app.conns,
           app.size, secs);
    printf("round trips: %llu (%.0f round trips/s)\n",
           (unsigned long long)app.round_trips, (double)app.round_trips / secs);
    print_shares(&app, secs);
    printf("verified: %llu echoed bytes, every one equal to the byte sent\n",
           (unsigned long long)app.bytes_checked);
    if (app.round_trips == 0)
      fprintf(stderr, "echo: no round trip completed\n");
    else
      status = 0;
  }

  /* Then the main loop: stop every watcher, then close its fd (closing
   * first would leave the backend watching a number that may be reused),
   * then free the loop. Stopping an inactive watcher is a no-op, so partial
   * set-ups are handled by the same code. */
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
  /* Nothing is left to run: one non-blocking iteration returns 0. (It
   * also runs a failure note a server thread posted after the main loop
   * had stopped; that thread has been joined, its note is harmless.) */
  rc = rx_run(app.loop, RX_RUN_NOWAIT);
  if (rc != 0) {
    fprintf(stderr, "echo: watchers still active after shutdown (%d)\n", rc);
    status = 1;
  }
  rx_loop_free(app.loop);
  free(app.servers);
  pthread_cond_destroy(&app.cond);
  pthread_mutex_destroy(&app.lock);
  return status;
}
