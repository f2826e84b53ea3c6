/*
 * rx-qmp - talks QMP to a QEMU over its unix socket, on an rx loop
 * (rx/qmp.h).
 *
 *   rx-qmp [--timeout MS] SOCKET ...   (default 5000: connect timeout)
 *   rx-qmp SOCKET CMD [JSON-ARGS]   runs one command, prints its answer
 *   rx-qmp SOCKET --events [NAME...]  prints events (all, or those named)
 *                                     as JSON lines until interrupted
 *   rx-qmp SOCKET --shell           reads "CMD [JSON-ARGS]" lines from
 *                                   stdin, prints each answer
 *
 * Answers go to stdout as one JSON line; errors to stderr, saying what
 * failed: the connection (cannot connect, negotiation refused, the peer
 * closed) or QEMU's error class and description. The exit status is 0 only
 * when every command succeeded (--events: when interrupted by SIGINT or
 * SIGTERM, 1 when QEMU went away; "connected" on stderr says when events
 * flow). QEMU serves one client per -qmp socket: give it one socket per
 * rx-qmp that runs at the same time.
 *
 * The shape of a program on librx-qmp: one loop, one bus, one client; the
 * ready callback starts the work, answers arrive by callback, events through
 * a listener on the bus.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "rx/bus.h"
#include "rx/qmp.h"

static rx_loop *loop;
static rx_qmp *qmp;
static int status = 1; /* the exit status */
static int mode;       /* 0: one command, 1: events, 2: shell */
static const char *cmd;
static json_t *cmd_args;

static void usage(FILE *f) {
  fprintf(f, "usage: rx-qmp [--timeout MS] SOCKET CMD [JSON-ARGS]\n"
             "       rx-qmp [--timeout MS] SOCKET --events [NAME...]\n"
             "       rx-qmp [--timeout MS] SOCKET --shell\n"
             "\n"
             "Talks QMP to the QEMU listening on the unix socket SOCKET.\n"
             "  CMD [JSON-ARGS]   run one command (arguments: a JSON object)\n"
             "                    and print its answer as a JSON line\n"
             "  --events [NAME]   print the events (all, or those named) as\n"
             "                    JSON lines until interrupted\n"
             "  --shell           read \"CMD [JSON-ARGS]\" lines from stdin\n"
             "  --timeout MS      give up connecting after MS ms (5000)\n"
             "  --help            this text\n"
             "Exit status 0 only when every command succeeded.\n");
}

static void print_json(json_t *v) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (s != NULL) {
    printf("%s\n", s);
    free(s);
  }
  fflush(stdout);
}

/* Prints a command's failure; 0 on success. */
static int report(const char *name, int st, json_t *value) {
  if (st == 0) {
    print_json(value);
    return 0;
  }
  if (st == -EREMOTEIO)
    fprintf(stderr, "rx-qmp: %s: %s: %s\n", name,
            json_string_value(json_object_get(value, "class")),
            json_string_value(json_object_get(value, "desc")));
  else
    fprintf(stderr, "rx-qmp: %s: no answer: %s (%s)\n", name, strerror(-st),
            rx_qmp_error(qmp));
  return 1;
}

/* ---------------------------------------------------------------------------
 * The shell: one line at a time, the next read when the answer is in.
 */

static char *line;
static size_t line_cap;
static char *line_cmd; /* the command of the line in flight */
static void next_line(void);

static void shell_answer(rx_qmp *q, int st, json_t *value, void *data) {
  (void)q;
  (void)data;
  if (report(line_cmd, st, value))
    status = 1;
  if (st != 0 && st != -EREMOTEIO) {
    rx_break(loop, RX_BREAK_ALL); /* the connection is gone */
    return;
  }
  next_line();
}

static void next_line(void) {
  for (;;) {
    if (isatty(0)) {
      fputs("(qmp) ", stderr);
      fflush(stderr);
    }
    ssize_t n = getline(&line, &line_cap, stdin);
    if (n < 0) {
      rx_break(loop, RX_BREAK_ALL); /* end of input */
      return;
    }
    char *p = line + strspn(line, " \t");
    p[strcspn(p, "\r\n")] = '\0';
    if (*p == '\0' || *p == '#')
      continue;
    char *rest = p + strcspn(p, " \t");
    if (*rest != '\0')
      *rest++ = '\0';
    json_t *args = NULL;
    rest += strspn(rest, " \t");
    if (*rest != '\0') {
      json_error_t err;
      args = json_loads(rest, 0, &err);
      if (!json_is_object(args)) {
        fprintf(stderr, "rx-qmp: %s: the arguments are not a JSON object: %s\n",
                p, args == NULL ? err.text : "not an object");
        json_decref(args);
        status = 1;
        continue;
      }
    }
    free(line_cmd);
    line_cmd = strdup(p);
    int r = rx_qmp_execute(qmp, p, args, shell_answer, NULL);
    json_decref(args);
    if (r == 0)
      return;
    fprintf(stderr, "rx-qmp: %s: cannot send: %s\n", p, strerror(-r));
    status = 1;
    rx_break(loop, RX_BREAK_ALL);
    return;
  }
}

/* ---------------------------------------------------------------------------
 * One command, events, and the connection.
 */

static void one_answer(rx_qmp *q, int st, json_t *value, void *data) {
  (void)q;
  (void)data;
  status = report(cmd, st, value);
  rx_break(loop, RX_BREAK_ALL);
}

static void ready(rx_qmp *q, int st, void *data) {
  (void)data;
  if (st < 0) {
    fprintf(stderr, "rx-qmp: %s\n", rx_qmp_error(q));
    status = 1;
    rx_break(loop, RX_BREAK_ALL);
    return;
  }
  if (mode == 0) {
    int r = rx_qmp_execute(q, cmd, cmd_args, one_answer, NULL);
    if (r < 0) {
      fprintf(stderr, "rx-qmp: %s: cannot send: %s\n", cmd, strerror(-r));
      rx_break(loop, RX_BREAK_ALL);
    }
  } else if (mode == 1) {
    fprintf(stderr, "rx-qmp: connected, printing events\n");
  } else if (mode == 2) {
    status = 0;
    next_line();
  }
}

static void on_event(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  (void)data;
  if (strcmp(rx_event_name(ev), RX_QMP_DISCONNECTED) == 0) {
    if (mode == 1) {
      fprintf(stderr, "rx-qmp: %s\n", rx_qmp_error(qmp));
      status = 1;
      rx_break(loop, RX_BREAK_ALL);
    }
    return;
  }
  if (mode == 1)
    print_json(rx_event_payload(ev));
}

static void on_signal(rx_loop *lp, rx_signal *w, int revents) {
  (void)w;
  (void)revents;
  status = 0;
  rx_break(lp, RX_BREAK_ALL);
}

int main(int argc, char **argv) {
  rx_bus *bus = NULL;
  rx_listener *listener = NULL;
  int r;

  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
  int64_t timeout_ms = 0;
  if (argc > 2 && strcmp(argv[1], "--timeout") == 0) {
    char *end;
    timeout_ms = strtoll(argv[2], &end, 10);
    if (*end != '\0' || timeout_ms <= 0) {
      fprintf(stderr, "rx-qmp: --timeout: not a positive number of ms\n");
      return 2;
    }
    argv += 2;
    argc -= 2;
  }
  if (argc < 3) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[2], "--events") == 0) {
    mode = 1;
  } else if (strcmp(argv[2], "--shell") == 0) {
    mode = 2;
    if (argc != 3) {
      usage(stderr);
      return 2;
    }
  } else {
    cmd = argv[2];
    if (argc > 4 || cmd[0] == '-') {
      usage(stderr);
      return 2;
    }
    if (argc == 4) {
      json_error_t err;
      cmd_args = json_loads(argv[3], 0, &err);
      if (!json_is_object(cmd_args)) {
        fprintf(stderr, "rx-qmp: %s: the arguments are not a JSON object: %s\n",
                cmd, cmd_args == NULL ? err.text : "not an object");
        return 2;
      }
    }
  }

  if ((r = rx_loop_new(&loop, NULL)) < 0 ||
      (r = rx_bus_new(&bus, loop, NULL)) < 0) {
    fprintf(stderr, "rx-qmp: cannot make the loop: %s\n", strerror(-r));
    return 1;
  }
  rx_bus_set_default(bus, 0);
  /* Events (all, or those named) and the disconnect. */
  const char **names = NULL;
  size_t n = 0;
  if (mode == 1 && argc > 3) {
    n = (size_t)argc - 3;
    names = calloc(n + 1, sizeof *names);
    if (names == NULL)
      return 1;
    for (size_t i = 0; i < n; i++)
      names[i] = argv[3 + i];
    names[n++] = RX_QMP_DISCONNECTED;
  }
  struct rx_listener_options lo = {
      .names = names, .n_names = n, .capacity = 4096, .cb = on_event};
  if ((r = rx_listener_new(&listener, &lo)) < 0 ||
      (r = rx_bus_add(bus, listener)) < 0) {
    fprintf(stderr, "rx-qmp: cannot listen: %s\n", strerror(-r));
    return 1;
  }
  free(names);

  rx_signal sigint, sigterm;
  if (mode == 1) {
    rx_signal_init(&sigint, on_signal, SIGINT);
    rx_signal_init(&sigterm, on_signal, SIGTERM);
    rx_signal_start(loop, &sigint);
    rx_signal_start(loop, &sigterm);
  }

  struct rx_qmp_options o = {.path = argv[1],
                             .bus = bus,
                             .ready = ready,
                             .connect_timeout = timeout_ms * 1000000};
  if ((r = rx_qmp_new(&qmp, loop, &o)) < 0) {
    fprintf(stderr, "rx-qmp: %s: %s\n", argv[1],
            r == -EINVAL ? "not a usable socket path" : strerror(-r));
    return 1;
  }
  if ((r = rx_qmp_connect(qmp)) < 0) {
    fprintf(stderr, "rx-qmp: %s\n", rx_qmp_error(qmp));
    return 1;
  }
  rx_run(loop, RX_RUN_DEFAULT);

  rx_qmp_free(qmp);
  if (mode == 1) {
    rx_signal_stop(loop, &sigint);
    rx_signal_stop(loop, &sigterm);
  }
  rx_listener_free(listener);
  rx_bus_free(bus);
  rx_loop_free(loop);
  json_decref(cmd_args);
  free(line);
  free(line_cmd);
  return status;
}
