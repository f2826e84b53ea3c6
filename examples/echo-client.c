/*
 * echo-client.c - the load client of the echo servers, and make demo.
 *
 *   echo-client --port P [--seconds S] [--conns N] [--size B]
 *   echo-client --server CMD [--server CMD...] [--backends LIST]
 *               [--seconds S] [--conns N] [--size B]
 *
 * N connections to 127.0.0.1, each sending a B-byte message, checking
 * every byte of its echo and sending the next one, for S seconds, on one rx
 * loop (readiness watchers, as examples/echo.c). With --port it loads a
 * server already running there and prints the round trips.
 *
 * With --server it starts each server command itself (split at spaces),
 * once per backend of LIST (default io_uring,epoll; RX_BACKEND set for the
 * server), reads the port from its first line, loads it, sends it SIGTERM,
 * checks that it then closes every connection and exits with 0, and prints
 * one row of a table per run: the round trips per second, the server's
 * loop enters per round trip (the count its last line gives: io_uring_enter,
 * epoll_wait and epoll_ctl calls, not the recv and send that echo makes
 * itself, nor those rx makes for ops on epoll), and the server's CPU time
 * per round trip (user and system, all its threads, from wait4()).
 *
 * Exit status: 0 when every run went through and every echoed byte was the
 * byte sent, 1 otherwise, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocator.h"
#include "rx.h"

#define MAX_SERVERS 8
#define MAX_ARGS 16
#define DRAIN_LIMIT RX_SEC(10) /* after SIGTERM, for the server to close */

extern char **environ;

/* A connection: `rd` always active, `wr` while connecting or while the
 * message waits for room in the send buffer. */
struct client {
  rx_io rd, wr;
  int index;
  bool connected;
  uint64_t round;   /* messages sent: seeds the next one */
  size_t sent, got; /* bytes of msg sent, and echoed back and checked */
  unsigned char *msg;
};

static rx_loop *loop;
static struct client *clients;
static int nconns = 50;
static size_t msg_size = 64;
static int64_t duration = RX_SEC(3);
static enum { LOAD, DRAIN } phase;
static int open_conns;
static int64_t load_start;
static uint64_t round_trips, bytes_checked;
static bool failed;

static void fail(const char *what, int err) {
  if (failed)
    return; /* only the first error is worth reading */
  if (err != 0)
    fprintf(stderr, "echo-client: %s: %s\n", what, rx_strerror(err));
  else
    fprintf(stderr, "echo-client: %s\n", what);
  failed = true;
  rx_break(loop, RX_BREAK_ALL);
}

static void conn_close(struct client *c) {
  if (c->rd.fd >= 0)
    rx_io_close(loop, c->rd.fd); /* stops both watchers */
  c->rd.fd = -1;
}

/* After SIGTERM the server closes every connection (a reset, when it had
 * not read all that was sent): the drain ends when all are closed. */
static void conn_error(struct client *c, const char *what, int err) {
  if (phase == LOAD) {
    fail(what, err);
  } else {
    conn_close(c);
    if (--open_conns == 0)
      rx_break(loop, RX_BREAK_ALL);
  }
}

/* Message `round` of connection `index`: bytes from a xorshift generator,
 * so that a byte out of place cannot pass for the right one. */
static void fill_message(struct client *c) {
  uint64_t x = ((uint64_t)c->index << 32 | c->round) * 0x9e3779b97f4a7c15u;
  for (size_t i = 0; i < msg_size; i++) {
    if (i % 8 == 0) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    c->msg[i] = (unsigned char)(x >> (i % 8 * 8));
  }
}

static void client_send(struct client *c) {
  while (c->sent < msg_size) {
    ssize_t n =
        send(c->rd.fd, c->msg + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
    if (n >= 0) {
      c->sent += (size_t)n;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int rc = rx_io_start(loop, &c->wr); /* nothing if active */
      if (rc < 0)
        fail("rx_io_start", rc);
      return;
    } else if (errno != EINTR) {
      conn_error(c, "send", -errno);
      return;
    }
  }
  rx_io_stop(loop, &c->wr);
}

static void next_message(struct client *c) {
  fill_message(c);
  c->round++;
  c->sent = c->got = 0;
  client_send(c);
}

/* Writable: connected, or room for the rest of the message. */
static void on_write(rx_loop *loop, rx_io *w, int revents) {
  struct client *c = w->data;
  if (revents & RX_ERROR) {
    fail("rx reported RX_ERROR", 0);
  } else if (phase == DRAIN) {
    rx_io_stop(loop, w); /* no more sending */
  } else if (c->connected) {
    client_send(c);
  } else {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail("connect", -err);
      return;
    }
    c->connected = true;
    next_message(c);
  }
}

/* Readable: check what came back against what was sent. */
static void on_read(rx_loop *loop, rx_io *w, int revents) {
  (void)loop;
  static unsigned char buf[65536]; /* one callback at a time */
  struct client *c = w->data;
  if (revents & RX_ERROR) {
    fail("rx reported RX_ERROR", 0);
    return;
  }
  ssize_t n = recv(w->fd, buf, sizeof(buf), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    conn_error(c, n == 0 ? "the server closed a connection" : "recv",
               n == 0 ? 0 : -errno);
    return;
  }
  if (c->got + (size_t)n > c->sent) {
    fail("received more bytes than were sent", 0);
    return;
  }
  if (memcmp(buf, c->msg + c->got, (size_t)n) != 0) {
    size_t i = 0;
    while (buf[i] == c->msg[c->got + i])
      i++;
    fprintf(stderr,
            "echo-client: connection %d, message %llu, byte %zu: sent "
            "0x%02x, got 0x%02x\n",
            c->index, (unsigned long long)c->round - 1, c->got + i,
            c->msg[c->got + i], buf[i]);
    fail("an echoed byte differs from the byte sent", 0);
    return;
  }
  c->got += (size_t)n;
  bytes_checked += (uint64_t)n;
  if (c->got == msg_size && phase == LOAD) {
    round_trips++;
    next_message(c);
  }
}

/* The end of the load, or of the drain's patience. A load with no round
 * trip yet goes on, up to DRAIN_LIMIT: a busy machine is no failure. */
static void on_timer(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  if (phase == DRAIN) {
    fail("the server left connections open 10 s after SIGTERM", 0);
  } else if (round_trips == 0 && rx_now(loop) - load_start < DRAIN_LIMIT) {
    rx_timer_set(w, duration, 0); /* an expired timer has no time left */
    int rc = rx_timer_start(loop, w);
    if (rc < 0)
      fail("rx_timer_start", rc);
    return;
  }
  rx_break(loop, RX_BREAK_ALL);
}

static int client_start(struct client *c, in_port_t port) {
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  rx_io_init(&c->rd, on_read, fd, RX_READ);
  rx_io_init(&c->wr, on_write, fd, RX_WRITE);
  c->rd.data = c->wr.data = c;
  int one = 1; /* one small message at a time: no Nagle */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 &&
      errno != EINPROGRESS)
    return -errno;
  int rc = rx_io_start(loop, &c->rd);
  return rc < 0 ? rc : rx_io_start(loop, &c->wr); /* writable: connected */
}

/* One run against 127.0.0.1:port for `duration`; then, if `server` is not
 * 0, its SIGTERM and the drain. Returns the seconds of load, or -1. */
static double run_load(in_port_t port, pid_t server) {
  rx_timer timer;
  clients = calloc((size_t)nconns, sizeof(*clients));
  phase = LOAD;
  round_trips = 0;
  rx_break(loop, RX_BREAK_CANCEL); /* one a failed run may have left */
  for (int i = 0; clients != NULL && i < nconns; i++) {
    clients[i].rd.fd = -1;
    clients[i].index = i;
    if ((clients[i].msg = malloc(msg_size)) == NULL)
      fail("malloc", -ENOMEM);
  }
  if (clients == NULL)
    fail("calloc", -ENOMEM);
  rx_now_update(loop);
  load_start = rx_now(loop);
  rx_timer_init(&timer, on_timer, duration, 0);
  int rc = rx_timer_start(loop, &timer);
  if (rc < 0)
    fail("rx_timer_start", rc);
  for (int i = 0; !failed && i < nconns; i++)
    if ((rc = client_start(&clients[i], port)) < 0)
      fail("connect to 127.0.0.1", rc);
  if (!failed && (rc = rx_run(loop, RX_RUN_DEFAULT)) < 0)
    fail("rx_run", rc);
  double secs = (double)(rx_now(loop) - load_start) / 1e9;
  if (!failed && round_trips == 0)
    fail("no round trip completed", 0);

  if (!failed && server > 0) {
    phase = DRAIN;
    open_conns = nconns;
    kill(server, SIGTERM);
    rx_timer_set(&timer, DRAIN_LIMIT, 0);
    if ((rc = rx_timer_start(loop, &timer)) < 0 ||
        (rc = rx_run(loop, RX_RUN_DEFAULT)) < 0)
      fail("the drain", rc);
  }
  rx_timer_stop(loop, &timer);
  for (int i = 0; clients != NULL && i < nconns; i++) {
    conn_close(&clients[i]);
    free(clients[i].msg);
  }
  free(clients);
  return failed ? -1 : secs;
}

/* A server process, RX_BACKEND=backend, its stdout on a pipe. */
struct server {
  pid_t pid;
  FILE *out;
  in_port_t port;
};

static int server_start(struct server *s, char *const argv[],
                        const char *backend) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    return -errno;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  setenv("RX_BACKEND", backend, 1); /* for the server: this loop is made */
  int rc = posix_spawnp(&s->pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return -rc;
  }
  s->out = fdopen(fds[0], "r");
  char line[512];
  while (s->out != NULL && fgets(line, sizeof(line), s->out) != NULL) {
    char *at = strstr(line, "listening on 127.0.0.1:");
    if (at != NULL) {
      s->port = (in_port_t)atoi(at + strlen("listening on 127.0.0.1:"));
      return 0;
    }
  }
  return -EPIPE; /* it said why on stderr, and it is reaped later */
}

/* Reads the server's last lines (its totals), reaps it and prints the row.
 * Returns 0 if it exited with 0 and printed its totals. */
static int server_finish(struct server *s, const char *backend,
                         const char *label, double secs) {
  char line[512], more[4096] = "";
  unsigned long long conns, echoed, enters;
  bool totals = false;
  while (s->out != NULL && fgets(line, sizeof(line), s->out) != NULL) {
    if (sscanf(line, "%*s %llu connections, %llu bytes echoed, %llu loop",
               &conns, &echoed, &enters) == 3)
      totals = true;
    else if (strlen(more) + strlen(line) + 4 < sizeof(more))
      strcat(strcat(more, "    "), line);
  }
  if (s->out != NULL)
    fclose(s->out);
  int status;
  struct rusage ru;
  while (wait4(s->pid, &status, 0, &ru) < 0 && errno == EINTR)
    ;
  if (secs < 0)
    return -1;
  if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "echo-client: %s on %s: %s %d after SIGTERM\n", label,
            backend, WIFSIGNALED(status) ? "killed by signal" : "exit status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return -1;
  }
  if (!totals) {
    fprintf(stderr, "echo-client: %s printed no totals\n", label);
    return -1;
  }
  double rt = round_trips > 0 ? (double)round_trips : 1;
  double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  printf("%-9s %-24s %10.0f %11.2f %11.2f\n%s", backend, label,
         (double)round_trips / secs, (double)enters / rt, cpu / rt, more);
  fflush(stdout);
  return 0;
}

/* Runs the server command on a backend: one row. */
static int run_server(const char *cmd, const char *backend) {
  char copy[512], *argv[MAX_ARGS + 1], *save = NULL;
  int argc = 0;
  snprintf(copy, sizeof(copy), "%s", cmd);
  for (char *a = strtok_r(copy, " ", &save); a != NULL && argc < MAX_ARGS;
       a = strtok_r(NULL, " ", &save))
    argv[argc++] = a;
  argv[argc] = NULL;
  if (argc == 0)
    return -1;
  /* The row's label: the program's name and its arguments. */
  char label[64];
  const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1
                                           : argv[0];
  snprintf(label, sizeof(label), "%s%s", name, cmd + strlen(argv[0]));

  struct server s = {0};
  int rc = server_start(&s, argv, backend);
  if (rc < 0 && s.pid == 0) {
    fprintf(stderr, "echo-client: cannot start %s: %s\n", argv[0],
            rx_strerror(rc));
    return -1;
  }
  double secs = rc == 0 ? run_load(s.port, s.pid) : -1;
  if (secs < 0) /* no port, or the run failed: its exit proves nothing */
    kill(s.pid, SIGKILL);
  failed = false; /* the next run starts afresh */
  return server_finish(&s, backend, label, secs);
}

static void usage(FILE *to) {
  fprintf(to,
          "usage: echo-client --port P [options]\n"
          "       echo-client --server CMD [--server CMD...] [--backends LIST] "
          "[options]\n"
          "  --port P        load the server listening on 127.0.0.1:P\n"
          "  --server CMD    start CMD (split at spaces) on each backend, load "
          "it, stop it\n"
          "                  with SIGTERM and print a row for it (up to 8)\n"
          "  --backends L    io_uring,epoll (the default), io_uring or epoll\n"
          "  --seconds S     load each server for S seconds (default 3)\n"
          "  --conns N       connections (default 50)\n"
          "  --size B        message size in bytes (default 64)\n");
}

/* A number option in (0, max], whole but for --seconds, or -1 after
 * saying what it wants. */
static double num_arg(const char *name, double max) {
  char *end;
  errno = 0;
  double n = strtod(optarg, &end);
  bool whole = strcmp(name, "seconds") != 0;
  if (errno != 0 || end == optarg || *end != '\0' || !(n > 0 && n <= max) ||
      (whole && n != (double)(long)n)) {
    fprintf(stderr, "echo-client: --%s wants %s in (0, %.0f]\n", name,
            whole ? "an integer" : "a number", max);
    return -1;
  }
  return n;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"port", required_argument, NULL, 'p'},
      {"server", required_argument, NULL, 'S'},
      {"backends", required_argument, NULL, 'B'},
      {"seconds", required_argument, NULL, 's'},
      {"conns", required_argument, NULL, 'c'},
      {"size", required_argument, NULL, 'b'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *servers[MAX_SERVERS], *backends = "io_uring,epoll";
  int nservers = 0, opt;
  double port = 0, n = 0;
  while ((opt = getopt_long(argc, argv, "p:S:B:s:c:b:h", longopts, NULL)) !=
         -1) {
    if ((opt == 'p' && (port = num_arg("port", 65535)) < 0) ||
        (opt == 's' && (n = num_arg("seconds", 86400)) < 0) ||
        (opt == 'c' && (n = num_arg("conns", 100000)) < 0) ||
        (opt == 'b' && (n = num_arg("size", 64 << 20)) < 0))
      return 2;
    if (opt == 's')
      duration = (int64_t)(n * 1e9);
    if (opt == 'c')
      nconns = (int)n;
    if (opt == 'b')
      msg_size = (size_t)n;
    if (opt == 'S' && nservers == MAX_SERVERS) {
      fprintf(stderr, "echo-client: at most %d servers\n", MAX_SERVERS);
      return 2;
    }
    if (opt == 'S')
      servers[nservers++] = optarg;
    if (opt == 'B')
      backends = optarg;
    if (opt == 'h') {
      usage(stdout);
      return 0;
    }
    if (opt == '?')
      return usage(stderr), 2;
  }
  if (optind != argc || (port > 0) == (nservers > 0)) {
    fprintf(stderr, "echo-client: give --port or --server\n");
    usage(stderr);
    return 2;
  }

  /* Two fds a connection (the server's end, if it is ours), and some. */
  struct rlimit rl;
  rlim_t need = (rlim_t)nconns * 2 + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  install_allocator();
  int rc = rx_loop_new(&loop, NULL); /* $RX_BACKEND, else the default */
  if (rc == -EPERM || rc == -ENOSYS || rc == -EACCES || rc == -ENOMEM) {
    fprintf(stderr, "echo-client: rx_loop_new: %s; the client uses epoll\n",
            rx_strerror(rc));
    rc = rx_loop_new(&loop, &(struct rx_loop_options){.backend = "epoll"});
  }
  if (rc < 0) {
    fprintf(stderr, "echo-client: rx_loop_new: %s\n", rx_strerror(rc));
    return 1;
  }
  printf("echo-client: %d connections, %zu-byte messages, %.1f s a run; "
         "client loop on %s\n",
         nconns, msg_size, (double)duration / 1e9, rx_backend_name(loop));
  int status = 0;
  if (port > 0) {
    double secs = run_load((in_port_t)port, 0);
    if (secs < 0)
      status = 1;
    else
      printf("echo-client: %llu round trips (%.0f/s)\n",
             (unsigned long long)round_trips, (double)round_trips / secs);
  }

  /* Each backend in turn, each server on it. */
  bool header = false;
  char list[64], *save = NULL;
  snprintf(list, sizeof(list), "%s", backends);
  for (char *be = nservers > 0 ? strtok_r(list, ",", &save) : NULL; be != NULL;
       be = strtok_r(NULL, ",", &save)) {
    rx_loop *probe;
    struct rx_loop_options opts = {.backend = be};
    if ((rc = rx_loop_new(&probe, &opts)) < 0) {
      fprintf(stderr, "echo-client: %s: %s%s\n", be, rx_strerror(rc),
              rc == -EINVAL ? " (the backends are io_uring and epoll)"
                            : "; skipped");
      status |= rc == -EINVAL;
      continue;
    }
    rx_loop_free(probe);
    if (!header)
      printf("%-9s %-24s %10s %11s %11s\n", "backend", "server", "requests/s",
             "enters/req", "CPU us/req");
    header = true;
    for (int i = 0; i < nservers; i++)
      if (run_server(servers[i], be) < 0)
        status = 1;
  }
  if (status == 0)
    printf("echo-client: every echoed byte was the byte sent (%llu in all)\n",
           (unsigned long long)bytes_checked);
  rx_loop_free(loop);
  return status;
}
