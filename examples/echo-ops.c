/*
 * echo-ops.c - the echo server of echo.c on completion operations (rx_op_*).
 *
 *   echo-ops [--port P] [--backend io_uring|epoll]
 *
 * It behaves and prints as echo does (one loop, no --threads): listens on
 * 127.0.0.1:P, prints "echo-ops: listening on 127.0.0.1:PORT (...)", echoes
 * until SIGINT or SIGTERM, then closes every connection and prints
 *   echo-ops: C connections, B bytes echoed, E loop enters
 *
 * Where echo waits for readiness and makes each call itself, here the
 * calls are ops that the loop completes: one multishot accept for the
 * listening socket, then per connection a buffer and three ops, recv, send
 * and close. A connection alternates recv and send: it reads again only
 * when what it read has been sent (a send completes when all of its bytes
 * are written), which is the backpressure echo gets by switching watchers.
 * On io_uring the kernel does the accept, the recvs and the sends, and the
 * ops submitted during an iteration go with its wait in one
 * io_uring_enter(); on epoll rx makes the same calls when the fd is ready.
 *
 * Ownership: an op is made ready by rx_op_init() before its first
 * submission, is the loop's from each submission to its final callback (a
 * callback without RX_OP_F_MORE, exactly one), and the program's again in
 * that callback. So a connection is freed only when none of its ops is
 * active. Closing is rx_op_close(): it cancels the fd's recv or send (whose
 * final callback then comes with -ECANCELED, or its result if it was done
 * first), and only then closes the fd.
 *
 * Exit status: 0 after a signal, 1 on an error, 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
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

struct conn {
  rx_op recv, send, close; /* op.data: the conn */
  int fd;
  bool closing;
  struct conn *next, **pprev;
  unsigned char buf[BUF_SIZE];
};

static rx_loop *loop;
static int listen_fd;
static rx_op accept_op, listen_close;
static rx_signal sigint_w, sigterm_w;
static struct conn *conns;
static bool stopping, failed;
static uint64_t accepted, echoed;

static void on_recv(rx_loop *loop, rx_op *op, int res, unsigned flags);
static void on_accept(rx_loop *loop, rx_op *op, int res, unsigned flags);

/* Frees the connection once none of its ops is the loop's any more. */
static void conn_release(struct conn *c) {
  if (rx_op_active(&c->recv) || rx_op_active(&c->send) ||
      rx_op_active(&c->close))
    return;
  *c->pprev = c->next;
  if (c->next != NULL)
    c->next->pprev = c->pprev;
  free(c);
}

static void on_closed(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)res;
  (void)flags;
  conn_release(op->data);
}

/* Cancels the connection's recv or send, then closes the fd. */
static void conn_close(struct conn *c) {
  if (c->closing)
    return;
  c->closing = true;
  int rc = rx_op_close(loop, &c->close, c->fd, on_closed);
  if (rc < 0)
    fprintf(stderr, "echo-ops: rx_op_close: %s\n", rx_strerror(rc));
}

/* The end of a connection, from the final callback of one of its ops. */
static void conn_end(struct conn *c) {
  conn_close(c);
  conn_release(c);
}

static void conn_recv(struct conn *c) {
  int rc =
      rx_op_recv(loop, &c->recv, c->fd, c->buf, sizeof(c->buf), 0, on_recv);
  if (rc < 0) {
    fprintf(stderr, "echo-ops: rx_op_recv: %s\n", rx_strerror(rc));
    conn_end(c);
  }
}

static void on_sent(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)flags;
  struct conn *c = op->data;
  if (res < 0 || c->closing) { /* -EPIPE, -ECONNRESET, -ECANCELED */
    conn_end(c);
    return;
  }
  echoed += (uint64_t)res;
  conn_recv(c);
}

static void on_recv(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)flags;
  struct conn *c = op->data;
  if (res <= 0 || c->closing) { /* 0: end of stream; or an error */
    conn_end(c);
    return;
  }
  int rc = rx_op_send(loop, &c->send, c->fd, c->buf, (unsigned)res,
                      MSG_NOSIGNAL, on_sent);
  if (rc < 0) {
    fprintf(stderr, "echo-ops: rx_op_send: %s\n", rx_strerror(rc));
    conn_end(c);
  }
}

static void on_done(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)op;
  (void)res;
  (void)flags;
}

/* On a signal or an error: closing the listening socket ends the accept,
 * and each connection is closed; rx_run() returns when no op is left. */
static void stop(void) {
  if (stopping)
    return;
  stopping = true;
  rx_signal_stop(loop, &sigint_w);
  rx_signal_stop(loop, &sigterm_w);
  int rc = rx_op_close(loop, &listen_close, listen_fd, on_done);
  if (rc < 0)
    fprintf(stderr, "echo-ops: rx_op_close: %s\n", rx_strerror(rc));
  for (struct conn *c = conns; c != NULL; c = c->next)
    conn_close(c); /* frees nothing yet: its close is in flight */
}

static void on_signal(rx_loop *loop, rx_signal *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  stop();
}

static int accept_start(void) {
  int rc = rx_op_accept_multishot(loop, &accept_op, listen_fd, SOCK_CLOEXEC,
                                  on_accept);
  if (rc < 0)
    fprintf(stderr, "echo-ops: rx_op_accept_multishot: %s\n", rx_strerror(rc));
  return rc;
}

/* One callback per connection, with RX_OP_F_MORE while the accept goes on.
 * Without it, the accept has ended: cancelled by stop(), or an error. */
static void on_accept(rx_loop *loop, rx_op *op, int res, unsigned flags) {
  (void)loop;
  (void)op;
  if (res >= 0) {
    struct conn *c = stopping ? NULL : malloc(sizeof(*c));
    if (c == NULL) {
      close(res); /* no op has it yet: a plain close */
    } else {
      c->fd = res;
      c->closing = false;
      rx_op_init(&c->recv);
      rx_op_init(&c->send);
      rx_op_init(&c->close);
      c->recv.data = c->send.data = c->close.data = c;
      c->next = conns;
      c->pprev = &conns;
      if (c->next != NULL)
        c->next->pprev = &c->next;
      conns = c;
      accepted++;
      conn_recv(c);
    }
  }
  if (flags & RX_OP_F_MORE || stopping)
    return;
  if (res >= 0 || res == -ECONNABORTED || res == -EINTR) {
    if (accept_start() == 0) /* the kernel may end one; start another */
      return;
  } else {
    fprintf(stderr, "echo-ops: accept: %s\n", rx_strerror(res));
  }
  failed = true; /* EMFILE...: time to stop */
  stop();
}

/* A socket listening on 127.0.0.1:port (0: a free one, written back). */
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
  fprintf(to, "usage: echo-ops [--port P] [--backend io_uring|epoll]\n"
              "  --port P     listen on 127.0.0.1:P (default 0: a free port)\n"
              "  --backend B  force a backend (default: $RX_BACKEND, else "
              "io_uring,\n"
              "               falling back to epoll)\n"
              "Echoes until SIGINT or SIGTERM, then prints what it did.\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"port", required_argument, NULL, 'p'},
      {"backend", required_argument, NULL, 'B'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct rx_loop_options opts = {0}; /* backend NULL: rx reads $RX_BACKEND */
  long port = 0;
  char *end;
  int opt;
  while ((opt = getopt_long(argc, argv, "p:B:h", longopts, NULL)) != -1) {
    if (opt == 'p') {
      errno = 0;
      port = strtol(optarg, &end, 10);
      if (errno != 0 || end == optarg || *end != '\0' || port < 0 ||
          port > 65535) {
        fprintf(stderr, "echo-ops: --port wants 0..65535\n");
        return 2;
      }
    } else if (opt == 'B') {
      opts.backend = optarg; /* rx_loop_new() checks it */
    } else if (opt == 'h') {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  install_allocator(); /* before any loop */

  in_port_t bound = (in_port_t)port;
  int rc = listen_fd = listen_on(&bound);
  if (rc < 0 || (rc = rx_loop_new(&loop, &opts)) < 0) {
    fprintf(stderr, "echo-ops: %s: %s\n",
            listen_fd < 0 ? "listen on 127.0.0.1" : "rx_loop_new",
            rx_strerror(rc));
    if (listen_fd >= 0 && rc == -EINVAL)
      fprintf(stderr,
              "echo-ops: --backend or $RX_BACKEND: io_uring or epoll\n");
    return 1;
  }
  printf("echo-ops: listening on 127.0.0.1:%u (%s: %s)\n", (unsigned)bound,
         rx_backend_name(loop), rx_backend_reason(loop));
  fflush(stdout); /* a pipe would hold it: echo-client waits for this line */

  rx_signal_init(&sigint_w, on_signal, SIGINT);
  rx_signal_init(&sigterm_w, on_signal, SIGTERM);
  if ((rc = rx_signal_start(loop, &sigint_w)) < 0 ||
      (rc = rx_signal_start(loop, &sigterm_w)) < 0) {
    fprintf(stderr, "echo-ops: rx_signal_start: %s\n", rx_strerror(rc));
    return 1;
  }
  rx_op_init(&accept_op);
  rx_op_init(&listen_close);
  if (accept_start() < 0)
    return 1;
  if ((rc = rx_run(loop, RX_RUN_DEFAULT)) < 0) { /* until stop() is done */
    fprintf(stderr, "echo-ops: rx_run: %s\n", rx_strerror(rc));
    failed = true;
  }

  struct rx_metrics m;
  rx_loop_metrics(loop, &m);
  printf("echo-ops: %llu connections, %llu bytes echoed, %llu loop enters\n",
         (unsigned long long)accepted, (unsigned long long)echoed,
         (unsigned long long)m.enters);
  rx_loop_free(loop); /* after an error: ends what is left */
  return failed;
}
