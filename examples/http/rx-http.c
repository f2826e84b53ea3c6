/*
 * rx-http.c - an HTTP/1.1 server for benchmarks, on rx's completion ops.
 *
 *   rx-http [--threads N] [--port N] [--bind ADDR] [--max-conns N]
 *           [--header-timeout DUR] [--idle-timeout DUR] [--collect DUR]
 *
 * Routes: /plaintext and /json (TechEmpower's), /delay?ms=N (answers after
 * N ms), 404 otherwise. One loop per thread (http_server.c); this file
 * reads the options, starts the server, prints
 *   rx-http: listening on ADDR:PORT (BACKEND, N threads)
 * on stderr once every loop listens, and on SIGTERM or SIGINT drains it
 * (stop accepting, finish the responses under way) and exits with 0.
 *
 * The signals are blocked in every thread and taken by sigwait() here, so
 * that no loop has to own them. Exit status: 0 after a signal, 1 when the
 * server could not start or failed, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../allocator.h"
#include "http_server.h"
#include "rx.h"

static void usage(FILE *to) {
  fprintf(
      to,
      "usage: rx-http [--threads N] [--port N] [--bind ADDR] [--max-conns N]\n"
      "               [--header-timeout DUR] [--idle-timeout DUR]\n"
      "               [--collect DUR]\n"
      "An HTTP/1.1 server for benchmarks, on rx (io_uring, else epoll).\n"
      "  --threads N          loops, one per thread, each with its own\n"
      "                       SO_REUSEPORT socket (default: every core)\n"
      "  --port N             TCP port (default 8080; 0: a free one)\n"
      "  --bind ADDR          IPv4 or IPv6 address (default 127.0.0.1)\n"
      "  --max-conns N        connections at once; more get 503 and a close\n"
      "                       (default: no limit)\n"
      "  --header-timeout DUR close a client whose request head is not in\n"
      "                       within DUR of its first byte (default 10s)\n"
      "  --idle-timeout DUR   close a keep-alive connection idle for DUR\n"
      "                       (default 60s)\n"
      "  --collect DUR        nap DUR (up to 1s, e.g. 50us) before each\n"
      "                       wait, so that requests gather and the clients'\n"
      "                       sends do not wake the server one by one\n"
      "                       (the loop's io collect interval; default none)\n"
      "  --help               this text\n"
      "DUR: a number with us, ms, s or m (a bare number is seconds).\n"
      "Routes: GET|HEAD /plaintext, /json, /delay?ms=N (after N ms); 404.\n"
      "The backend: $RX_BACKEND (io_uring or epoll), else io_uring falling\n"
      "back to epoll. SIGTERM or SIGINT drains the server and exits with 0.\n");
}

/* A count in [min, max]: 0, or -1 with a message. */
static int parse_count(const char *opt, const char *s, long min, long max,
                       long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "rx-http: %s wants a number in %ld..%ld, not '%s'\n", opt,
            min, max, s);
    return -1;
  }
  *out = v;
  return 0;
}

/* A duration such as 10s, 500ms, 50us, 2m or 3 (seconds), > 0 and at most
 * `max` ns: ns, or -1. */
static int64_t parse_duration(const char *opt, const char *s, double max) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  double scale = 1e9;
  if (end != s && strcmp(end, "ms") == 0)
    scale = 1e6;
  else if (end != s && strcmp(end, "us") == 0)
    scale = 1e3;
  else if (end != s && strcmp(end, "m") == 0)
    scale = 60e9;
  else if (end != s && *end != '\0' && strcmp(end, "s") != 0)
    end = (char *)s;
  if (errno != 0 || end == s || !(v > 0) || v * scale > max) {
    fprintf(stderr,
            "rx-http: %s wants a duration up to %gs such as 50us, 500ms or "
            "10s, not '%s'\n",
            opt, max / 1e9, s);
    return -1;
  }
  return (int64_t)(v * scale);
}

static unsigned cores(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return (unsigned)CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"threads", required_argument, NULL, 't'},
      {"port", required_argument, NULL, 'p'},
      {"bind", required_argument, NULL, 'b'},
      {"max-conns", required_argument, NULL, 'm'},
      {"header-timeout", required_argument, NULL, 'H'},
      {"idle-timeout", required_argument, NULL, 'I'},
      {"collect", required_argument, NULL, 'C'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  struct http_server_config cfg = {0};
  cfg.bind = "127.0.0.1";
  cfg.port = 8080;
  cfg.threads = cores();
  long v;
  int opt;
  while ((opt = getopt_long(argc, argv, "t:p:b:m:H:I:C:h", longopts, NULL)) !=
         -1) {
    switch (opt) {
    case 't':
      if (parse_count("--threads", optarg, 1, 1024, &v) < 0)
        return 2;
      cfg.threads = (unsigned)v;
      break;
    case 'p':
      if (parse_count("--port", optarg, 0, 65535, &v) < 0)
        return 2;
      cfg.port = (unsigned)v;
      break;
    case 'b':
      cfg.bind = optarg; /* checked when bound */
      break;
    case 'm':
      if (parse_count("--max-conns", optarg, 1, INT_MAX, &v) < 0)
        return 2;
      cfg.max_conns = (unsigned)v;
      break;
    case 'H':
    case 'I': {
      int64_t ns = parse_duration(
          opt == 'H' ? "--header-timeout" : "--idle-timeout", optarg, 86400e9);
      if (ns < 0)
        return 2;
      if (opt == 'H')
        cfg.header_timeout = ns;
      else
        cfg.idle_timeout = ns;
      break;
    }
    case 'C':
      if ((cfg.collect = parse_duration("--collect", optarg, 1e9)) < 0)
        return 2;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      fprintf(stderr, "rx-http: see rx-http --help\n");
      return 2;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "rx-http: unexpected argument '%s'; see rx-http --help\n",
            argv[optind]);
    return 2;
  }

  /* As many connections as the hard limit allows. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  install_allocator(); /* before any loop */

  /* Blocked before the threads start, so that each inherits the mask. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct http_server *srv;
  const char *what;
  int rc = http_server_start(&srv, &cfg, &what);
  if (rc < 0) {
    fprintf(stderr, "rx-http: %s: %s\n", what, rx_strerror(rc));
    if (rc == -EADDRINUSE)
      fprintf(stderr,
              "rx-http: port %u is taken; pick another with --port "
              "(0: any free one)\n",
              cfg.port);
    else if (rc == -EINVAL && strstr(what, "bind") == NULL)
      fprintf(stderr,
              "rx-http: $RX_BACKEND must be io_uring or epoll, or unset\n");
    return 1;
  }
  bool v6 = strchr(cfg.bind, ':') != NULL;
  fprintf(stderr, "rx-http: listening on %s%s%s:%u (%s, %u thread%s)\n",
          v6 ? "[" : "", cfg.bind, v6 ? "]" : "", http_server_port(srv),
          http_server_backend(srv), cfg.threads, cfg.threads == 1 ? "" : "s");

  int sig = 0;
  while (sigwait(&sigs, &sig) != 0)
    ;
  fprintf(stderr, "rx-http: %s: draining\n", strsignal(sig));
  http_server_stop(srv);
  rc = http_server_wait(srv);
  if (rc < 0) {
    fprintf(stderr, "rx-http: %s\n", rx_strerror(rc));
    return 1;
  }
  fprintf(stderr, "rx-http: stopped\n");
  return 0;
}
