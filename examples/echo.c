/*
 * echo.c - an echo server on readiness watchers (rx_io).
 *
 *   echo [--port P] [--threads N] [--backend io_uring|epoll]
 *
 * Listens on 127.0.0.1:P (by default a free port), prints
 *   echo: listening on 127.0.0.1:PORT (BACKEND: why)
 * and writes every byte it reads back to its sender, until SIGINT or
 * SIGTERM. Then it closes every connection, prints
 *   echo: C connections, B bytes echoed, E loop enters
 * (E: the loop's own syscalls, rx_loop_metrics()) and exits with 0.
 * examples/echo-ops.c is the same server on completion operations, and
 * examples/echo-client.c drives both (make demo).
 *
 * The patterns to copy: a listening socket whose READ watcher accepts until
 * EAGAIN; one READ and one WRITE watcher per connection, only one active at
 * a time, so that a client which stops reading is no longer read from
 * (backpressure); every watcher of an fd stopped before the fd is closed
 * (rx_io_close() does both); signals taken as watchers; every rx error
 * printed with rx_strerror().
 *
 * --threads N runs N loops, one per thread, each accepting on its own
 * SO_REUSEPORT socket bound to the same port, so the kernel spreads the
 * connections over them. Loop 0 is the main thread's and watches the
 * signals: on one, it stops its own server and posts each other loop a stop
 * task (rx_loop_post(), the one call that reaches another thread's loop).
 *
 * Exit status: 0 after a signal, 1 on an error, 2 on a usage error.
 */
#define _GNU_SOURCE /* accept4() */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "allocator.h"
#include "rx.h"

#define BUF_SIZE 16384
#define MAX_THREADS 64

/* An accepted connection: `rd` is active while everything read has been
 * written back, `wr` while buf[off, len) waits for room to be sent. */
struct conn {
  rx_io rd, wr;
  struct server *srv;
  struct conn *next, **pprev;
  size_t off, len;
  unsigned char buf[BUF_SIZE];
};

/* A loop, the thread that runs it, its listening socket and connections. */
struct server {
  rx_loop *loop;
  pthread_t thread;
  int listen_fd;
  rx_io accept_w;
  struct conn *conns;
  rx_task stop;   /* posted by the main thread... */
  sem_t posted;   /* ...which then posts this: the loop may be freed */
  rx_task failed; /* posted to the main thread on an error */
  bool has_failed;
  uint64_t accepted, echoed, enters;
};

static struct server servers[MAX_THREADS];
static int nservers = 1;
static rx_signal sigint_w, sigterm_w; /* on servers[0].loop */
static bool stopping;

static void stop_all(void);

/* Closes the connection: rx_io_close() stops both watchers first. */
static void conn_close(struct conn *c) {
  rx_io_close(c->srv->loop, c->rd.fd);
  *c->pprev = c->next;
  if (c->next != NULL)
    c->next->pprev = c->pprev;
  free(c);
}

/* Sends buf[off, len): 1 when all of it went, 0 when the socket's send
 * buffer is full, -1 when the client is gone. */
static int conn_flush(struct conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->rd.fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    c->off += (size_t)n;
    c->srv->echoed += (uint64_t)n;
  }
  return 1;
}

/* From one watcher of the fd to the other. Start before stop: the fd keeps
 * a watcher throughout, so the backend keeps its registration. */
static void conn_switch(struct conn *c, rx_io *from, rx_io *to) {
  int rc = rx_io_start(c->srv->loop, to);
  if (rc < 0) {
    fprintf(stderr, "echo: rx_io_start: %s\n", rx_strerror(rc));
    conn_close(c);
    return;
  }
  rx_io_stop(c->srv->loop, from);
}

/* RX_ERROR (rx found the fd closed under it) ends a connection too. One
 * recv per callback keeps the loop fair: the watcher is level-triggered, so
 * what is left calls again. */
static void on_read(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct conn *c = w->data;
  ssize_t n = -1;
  if (!(revents & RX_ERROR)) {
    n = recv(w->fd, c->buf, sizeof(c->buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return;
  }
  if (n <= 0) { /* end of stream, a reset, RX_ERROR: the client is gone */
    conn_close(c);
    return;
  }
  c->off = 0;
  c->len = (size_t)n;
  int rc = conn_flush(c);
  if (rc < 0)
    conn_close(c);
  else if (rc == 0)
    conn_switch(c, &c->rd, &c->wr); /* read again once this is out */
}

static void on_write(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  struct conn *c = w->data;
  int rc = revents & RX_ERROR ? -1 : conn_flush(c);
  if (rc < 0)
    conn_close(c);
  else if (rc > 0)
    conn_switch(c, &c->wr, &c->rd);
}

/* An error that ends the server: the main thread then stops them all. */
static void on_failed(rx_loop *loop, rx_task *task) {
  (void)loop;
  (void)task;
  stop_all();
}

static void server_fail(struct server *s, const char *what, int err) {
  fprintf(stderr, "echo: %s: %s\n", what, rx_strerror(err));
  if (s->has_failed)
    return; /* its task may still be posted */
  s->has_failed = true;
  if (s == &servers[0]) {
    stop_all();
  } else {
    s->failed = (rx_task){.fn = on_failed};
    rx_loop_post(servers[0].loop, &s->failed); /* it outlives this thread */
  }
}

static void on_accept(rx_loop *loop, rx_io *w, int revents) {
  struct server *s = w->data;
  if (revents & RX_ERROR) {
    server_fail(s, "the listening socket", -EBADF);
    return;
  }
  for (;;) {
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
      continue;
    if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return; /* the backlog is empty */
    if (fd < 0) {
      server_fail(s, "accept4", -errno); /* EMFILE...: time to stop */
      return;
    }
    struct conn *c = malloc(sizeof(*c));
    if (c == NULL) {
      fprintf(stderr, "echo: no memory for a connection\n");
      close(fd);
      continue;
    }
    c->srv = s;
    c->off = c->len = 0;
    rx_io_init(&c->rd, on_read, fd, RX_READ);
    rx_io_init(&c->wr, on_write, fd, RX_WRITE);
    c->rd.data = c->wr.data = c;
    c->next = s->conns;
    c->pprev = &s->conns;
    if (c->next != NULL)
      c->next->pprev = &c->next;
    s->conns = c;
    s->accepted++;
    int rc = rx_io_start(loop, &c->rd);
    if (rc < 0) {
      fprintf(stderr, "echo: rx_io_start: %s\n", rx_strerror(rc));
      conn_close(c);
    }
  }
}

/* Closes every fd of the server, which leaves its loop no active watcher:
 * rx_run() returns. On the server's thread; a second call does nothing. */
static void server_stop(struct server *s) {
  while (s->conns != NULL)
    conn_close(s->conns);
  if (s->listen_fd >= 0)
    rx_io_close(s->loop, s->listen_fd);
  s->listen_fd = -1;
}

static void on_stop(rx_loop *loop, rx_task *task) {
  (void)loop;
  server_stop(task->data);
}

/* On the main thread, on a signal or an error: every server stops. */
static void stop_all(void) {
  if (stopping)
    return;
  stopping = true;
  rx_signal_stop(servers[0].loop, &sigint_w);
  rx_signal_stop(servers[0].loop, &sigterm_w);
  server_stop(&servers[0]);
  for (int i = 1; i < nservers; i++) {
    struct server *s = &servers[i];
    s->stop = (rx_task){.fn = on_stop, .data = s};
    int rc = rx_loop_post(s->loop, &s->stop);
    if (rc < 0)
      fprintf(stderr, "echo: rx_loop_post: %s\n", rx_strerror(rc));
    sem_post(&s->posted);
  }
}

static void on_signal(rx_loop *loop, rx_signal *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  stop_all();
}

/* Runs a server until it stops, on the loop's thread. */
static void serve(struct server *s) {
  int rc = rx_io_start(s->loop, &s->accept_w);
  if (rc < 0)
    server_fail(s, "rx_io_start", rc);
  else if ((rc = rx_run(s->loop, RX_RUN_DEFAULT)) < 0)
    server_fail(s, "rx_run", rc);
}

/* Closes what an error left open and frees the loop, keeping its count of
 * syscalls. On the loop's thread, once nothing can post to it any more. */
static void server_free(struct server *s) {
  server_stop(s);
  struct rx_metrics m;
  rx_loop_metrics(s->loop, &m);
  s->enters = m.enters;
  rx_loop_free(s->loop);
}

static void *server_thread(void *arg) {
  struct server *s = arg;
  serve(s);
  sem_wait(&s->posted); /* rx_loop_free() runs a task posted meanwhile */
  server_free(s);
  return NULL;
}

/* A non-blocking socket listening on 127.0.0.1:port (0: a free one, then
 * written back), with SO_REUSEPORT for --threads. */
static int listen_on(in_port_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons(*port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(addr);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      (nservers > 1 &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
      bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
      listen(fd, 4096) < 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

static void usage(FILE *to) {
  fprintf(to, "usage: echo [--port P] [--threads N] "
              "[--backend io_uring|epoll]\n"
              "  --port P     listen on 127.0.0.1:P (default 0: a free port)\n"
              "  --threads N  N loops on N threads, each with its own "
              "SO_REUSEPORT socket\n"
              "               (default 1)\n"
              "  --backend B  force a backend (default: $RX_BACKEND, else "
              "io_uring,\n"
              "               falling back to epoll)\n"
              "Echoes until SIGINT or SIGTERM, then prints what it did.\n");
}

/* An integer option in [min, max], or -1 after saying what it wants. */
static long int_arg(const char *name, long min, long max) {
  char *end;
  errno = 0;
  long n = strtol(optarg, &end, 10);
  if (errno != 0 || end == optarg || *end != '\0' || n < min || n > max) {
    fprintf(stderr, "echo: --%s wants %ld..%ld\n", name, min, max);
    return -1;
  }
  return n;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"port", required_argument, NULL, 'p'},
      {"threads", required_argument, NULL, 't'},
      {"backend", required_argument, NULL, 'B'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct rx_loop_options opts = {0}; /* backend NULL: rx reads $RX_BACKEND */
  long port = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "p:t:B:h", longopts, NULL)) != -1) {
    if (opt == 'p' && (port = int_arg("port", 0, 65535)) < 0)
      return 2;
    if (opt == 't' && (nservers = (int)int_arg("threads", 1, MAX_THREADS)) < 0)
      return 2;
    if (opt == 'B')
      opts.backend = optarg; /* rx_loop_new() checks it */
    if (opt == 'h') {
      usage(stdout);
      return 0;
    }
    if (opt == '?') {
      usage(stderr);
      return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  install_allocator(); /* before any loop */

  /* Every socket and loop before any thread: a failure here is simple. */
  in_port_t bound = (in_port_t)port;
  for (int i = 0; i < nservers; i++) {
    struct server *s = &servers[i];
    int fd = listen_on(&bound); /* the first picks the port, the rest join */
    int rc = fd < 0 ? fd : rx_loop_new(&s->loop, &opts);
    if (fd < 0 || rc < 0) {
      fprintf(stderr, "echo: %s: %s\n",
              fd < 0 ? "listen on 127.0.0.1" : "rx_loop_new", rx_strerror(rc));
      if (fd >= 0 && rc == -EINVAL)
        fprintf(stderr, "echo: --backend or $RX_BACKEND: io_uring or epoll\n");
      return 1; /* the kernel closes what was opened */
    }
    s->listen_fd = fd;
    rx_io_init(&s->accept_w, on_accept, fd, RX_READ);
    s->accept_w.data = s;
    sem_init(&s->posted, 0, 0);
  }
  rx_loop *loop = servers[0].loop;
  printf("echo: listening on 127.0.0.1:%u (%s: %s)\n", (unsigned)bound,
         rx_backend_name(loop), rx_backend_reason(loop));
  fflush(stdout); /* a pipe would hold it: echo-client waits for this line */

  rx_signal_init(&sigint_w, on_signal, SIGINT);
  rx_signal_init(&sigterm_w, on_signal, SIGTERM);
  int rc;
  if ((rc = rx_signal_start(loop, &sigint_w)) < 0 ||
      (rc = rx_signal_start(loop, &sigterm_w)) < 0) {
    fprintf(stderr, "echo: rx_signal_start: %s\n", rx_strerror(rc));
    return 1;
  }
  for (int i = 1; i < nservers; i++) {
    if ((rc = pthread_create(&servers[i].thread, NULL, server_thread,
                             &servers[i])) != 0) {
      fprintf(stderr, "echo: pthread_create: %s\n", rx_strerror(-rc));
      return 1;
    }
  }
  serve(&servers[0]); /* until a signal or an error */
  stop_all();         /* done already, unless rx_run() failed */
  int status = 0;
  uint64_t conns = 0, echoed = 0, enters = 0;
  for (int i = 1; i < nservers; i++)
    pthread_join(servers[i].thread, NULL);
  server_free(&servers[0]); /* no thread is left to post to it */
  for (int i = 0; i < nservers; i++) {
    conns += servers[i].accepted;
    echoed += servers[i].echoed;
    enters += servers[i].enters;
    status |= servers[i].has_failed;
  }
  for (int i = 0; nservers > 1 && i < nservers; i++)
    printf("echo: thread %d: %llu connections, %.1f%% of the bytes\n", i,
           (unsigned long long)servers[i].accepted,
           echoed ? 100.0 * (double)servers[i].echoed / (double)echoed : 0);
  printf("echo: %llu connections, %llu bytes echoed, %llu loop enters\n",
         (unsigned long long)conns, (unsigned long long)echoed,
         (unsigned long long)enters);
  return status;
}
