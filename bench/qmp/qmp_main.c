/*
 * qmp_main.c - the QMP client's CPU per message against a real QEMU.
 *
 *   qmp_rx stop_cont [--quick]     librx-qmp on rx ($RX_BACKEND picks the
 *                                  backend, as everywhere)
 *   qmp_block stop_cont [--quick]  a plain blocking client: one socket,
 *                                  jansson, read() and write(), no rx
 *
 * Each starts `qemu-system-x86_64 -machine none -display none -nodefaults
 * -qmp unix:DIR/qmp.sock,server=on,wait=off` with DIR a fresh temporary
 * directory, connects, negotiates, then pipelines 2,000 stop/cont pairs
 * (500 with --quick), at most 8 commands in flight (RX_QMP_MAX_INFLIGHT:
 * the rx client is given them all at once and keeps 8 in flight; the
 * blocking one writes while fewer than 8 are unanswered), until every
 * answer and every STOP and RESUME event has been read. QEMU is stopped by
 * its pid (SIGTERM, then waited for).
 *
 * Measured from the first command to the last message: the messages
 * (answers + STOP/RESUME events), the wall time, the client process's CPU
 * (user + system, getrusage) and per message, and QEMU's CPU over the same
 * span (/proc/PID/stat, in clock ticks) for scale. Rows
 * workload,library,backend,metric,value,unit on stdout, as bench/peers'.
 * Exit status 0; 77 when QEMU cannot be started (not installed); 1 on an
 * error; 3 from the watchdog (alarm) when a run hangs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef QMP_RX
#include "rx.h"
#include "rx/bus.h"
#include "rx/qmp.h"
#define LIBRARY "rx"
#else
#define LIBRARY "block"
#define RX_QMP_MAX_INFLIGHT 8
#endif

#define QEMU "qemu-system-x86_64"

static char dir[64], sock[128];
static pid_t qemu = -1;
static char backend[32] = "blocking";
static int pairs = 2000;

static void die(const char *what) {
  fprintf(stderr, "qmp: %s\n", what);
  if (qemu > 0)
    kill(qemu, SIGKILL);
  exit(1);
}

static void qemu_start(void) {
  int ex[2];
  strcpy(dir, "/tmp/rx-bench-qmp-XXXXXX");
  if (mkdtemp(dir) == NULL)
    die("mkdtemp");
  snprintf(sock, sizeof sock, "%s/qmp.sock", dir);
  if (pipe2(ex, O_CLOEXEC) < 0)
    die("pipe");
  qemu = fork();
  if (qemu < 0)
    die("fork");
  if (qemu == 0) {
    char qmp[160];
    int null = open("/dev/null", O_RDWR);
    snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", sock);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(null, 0);
    dup2(null, 1);
    execlp(QEMU, QEMU, "-machine", "none", "-display", "none", "-nodefaults",
           "-qmp", qmp, (char *)NULL);
    int e = errno;
    (void)!write(ex[1], &e, sizeof e);
    _exit(127);
  }
  close(ex[1]);
  int e;
  if (read(ex[0], &e, sizeof e) == sizeof e) { /* exec failed */
    waitpid(qemu, NULL, 0);
    qemu = -1;
    rmdir(dir);
    fprintf(stderr, "qmp: cannot run %s: %s (Debian: qemu-system-x86)\n", QEMU,
            strerror(e));
    exit(77);
  }
  close(ex[0]);
}

static void qemu_stop(void) {
  if (qemu > 0) {
    kill(qemu, SIGTERM);
    waitpid(qemu, NULL, 0);
  }
  qemu = -1;
  unlink(sock);
  rmdir(dir);
}

/* QEMU's CPU so far (user + system), in ns. */
static int64_t qemu_cpu(void) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)qemu);
  FILE *f = fopen(path, "r");
  if (f == NULL || fgets(buf, sizeof buf, f) == NULL)
    die("cannot read QEMU's /proc/PID/stat");
  fclose(f);
  char *p = strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  /* After ") ": state, then fields 4..13, then utime (14), stime (15). */
  if (p == NULL || sscanf(p + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                          "%*u %llu %llu",
                          &ut, &st) != 2)
    die("cannot parse QEMU's /proc/PID/stat");
  return (int64_t)(ut + st) * (1000000000 / sysconf(_SC_CLK_TCK));
}

static int64_t self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
         ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static int64_t wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void row(const char *metric, double value, const char *unit) {
  printf("qmp_stop_cont,%s,%s,%s,%.6g,%s\n", LIBRARY, backend, metric, value,
         unit);
}

static long answers, events;
static int64_t t0, c0, q0;

static void begin(void) {
  answers = events = 0;
  q0 = qemu_cpu();
  c0 = self_cpu();
  t0 = wall();
}

static void end(void) {
  int64_t t = wall() - t0, c = self_cpu() - c0, qc = qemu_cpu() - q0;
  double msgs = (double)(answers + events);
  if (answers != 2L * pairs || events != 2L * pairs)
    die("the run ended short of its messages");
  row("messages", msgs, "count");
  row("wall_ms", (double)t / 1e6, "ms");
  row("client_cpu_ms", (double)c / 1e6, "ms");
  row("cpu_ns_per_message", (double)c / msgs, "ns");
  row("qemu_cpu_ms", (double)qc / 1e6, "ms");
  row("qemu_cpu_ns_per_message", (double)qc / msgs, "ns");
}

static int is_stop_resume(const char *name) {
  return name != NULL &&
         (strcmp(name, "STOP") == 0 || strcmp(name, "RESUME") == 0);
}

#ifdef QMP_RX
/* ---------------------------------------------------------------------------
 * librx-qmp on rx.
 */

static rx_loop *loop;
static int ready_status = 1, failed;

static void ready(rx_qmp *q, int status, void *data) {
  (void)data;
  ready_status = status;
  if (status < 0)
    fprintf(stderr, "qmp: %s\n", rx_qmp_error(q));
  rx_break(loop, RX_BREAK_ALL);
}

static void answered(rx_qmp *q, int status, json_t *value, void *data) {
  (void)q;
  (void)value;
  (void)data;
  if (status != 0)
    failed = 1;
  answers++;
  if (answers == 2L * pairs && events == 2L * pairs)
    rx_break(loop, RX_BREAK_ALL);
}

static void on_event(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  (void)data;
  if (is_stop_resume(rx_event_name(ev)))
    events++;
  if (answers == 2L * pairs && events == 2L * pairs)
    rx_break(loop, RX_BREAK_ALL);
}

static void run(void) {
  rx_bus *bus;
  rx_listener *l;
  rx_qmp *q;
  const char *names[] = {"STOP", "RESUME"};
  struct rx_listener_options lo = {
      .names = names, .n_names = 2, .capacity = 1024, .cb = on_event};
  struct rx_qmp_options qo = {.path = sock, .ready = ready};

  if (rx_loop_new(&loop, NULL) < 0 || rx_bus_new(&bus, loop, NULL) < 0 ||
      rx_listener_new(&l, &lo) < 0 || rx_bus_add(bus, l) < 0)
    die("cannot make the loop and the bus");
  snprintf(backend, sizeof backend, "%s", rx_backend_name(loop));
  qo.bus = bus;
  if (rx_qmp_new(&q, loop, &qo) < 0 || rx_qmp_connect(q) < 0)
    die("cannot start the client");
  rx_run(loop, RX_RUN_DEFAULT);
  if (ready_status != 0)
    die("no connection");

  begin();
  for (int i = 0; i < pairs; i++)
    if (rx_qmp_execute(q, "stop", NULL, answered, NULL) < 0 ||
        rx_qmp_execute(q, "cont", NULL, answered, NULL) < 0)
      die("cannot execute");
  rx_run(loop, RX_RUN_DEFAULT);
  if (failed)
    die("a command failed");
  end();

  rx_qmp_free(q);
  rx_listener_free(l);
  rx_bus_free(bus);
  rx_loop_free(loop);
}

#else
/* ---------------------------------------------------------------------------
 * A plain blocking client: the floor.
 */

static int fd = -1;
static char *rbuf;
static size_t rcap = 1 << 16, rlen;

/* The next line, without its '\n', parsed; NULL at EOF. */
static json_t *next_msg(void) {
  for (;;) {
    char *nl = memchr(rbuf, '\n', rlen);
    if (nl != NULL) {
      size_t len = (size_t)(nl - rbuf);
      json_t *j = json_loadb(rbuf, len, 0, NULL);
      memmove(rbuf, nl + 1, rlen - len - 1);
      rlen -= len + 1;
      if (j == NULL)
        die("a line that is not JSON");
      return j;
    }
    if (rlen == rcap && (rbuf = realloc(rbuf, rcap *= 2)) == NULL)
      die("out of memory");
    ssize_t n = read(fd, rbuf + rlen, rcap - rlen);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return NULL;
    rlen += (size_t)n;
  }
}

static void write_all(const char *s, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, s, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      die("cannot write");
    s += n;
    len -= (size_t)n;
  }
}

/* Appends command `name` with `id`, serialised as the rx client does. */
static void add_cmd(char **buf, size_t *len, size_t *cap, const char *name,
                    json_int_t id) {
  json_t *o = json_pack("{s:s, s:I}", "execute", name, "id", id);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  size_t n;
  json_decref(o);
  if (s == NULL)
    die("out of memory");
  n = strlen(s);
  while (*len + n + 1 > *cap)
    if ((*buf = realloc(*buf, *cap *= 2)) == NULL)
      die("out of memory");
  memcpy(*buf + *len, s, n);
  (*buf)[*len + n] = '\n';
  *len += n + 1;
  free(s);
}

static void run(void) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  json_t *m;

  rbuf = malloc(rcap);
  if (out == NULL || rbuf == NULL)
    die("out of memory");
  strcpy(sa.sun_path, sock);
  for (int i = 0;; i++) { /* the socket appears in about 70 ms */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
      break;
    close(fd);
    if (i == 1000)
      die("cannot connect");
    usleep(10000);
  }
  m = next_msg();
  if (json_object_get(m, "QMP") == NULL)
    die("no greeting");
  json_decref(m);
  add_cmd(&out, &len, &cap, "qmp_capabilities", 0);
  write_all(out, len);
  len = 0;
  m = next_msg();
  if (json_object_get(m, "return") == NULL)
    die("negotiation refused");
  json_decref(m);

  begin();
  long sent = 0, total = 2L * pairs;
  while (answers < total || events < total) {
    /* Every command that fits under the in-flight limit, in one write. */
    while (sent < total && sent - answers < RX_QMP_MAX_INFLIGHT) {
      add_cmd(&out, &len, &cap, sent % 2 ? "cont" : "stop", sent + 1);
      sent++;
    }
    if (len > 0) {
      write_all(out, len);
      len = 0;
    }
    m = next_msg();
    if (m == NULL)
      die("QEMU closed");
    if (json_object_get(m, "event") != NULL) {
      if (is_stop_resume(json_string_value(json_object_get(m, "event"))))
        events++;
    } else if (json_object_get(m, "return") != NULL) {
      json_int_t id = json_integer_value(json_object_get(m, "id"));
      if (id < 1 || id > sent)
        die("an answer with an id not sent");
      answers++;
    } else {
      die("a command failed");
    }
    json_decref(m);
  }
  end();
  close(fd);
  free(out);
  free(rbuf);
}
#endif

static void watchdog(int sig) {
  (void)sig;
  static const char msg[] = "qmp: watchdog: the run hung\n";
  (void)!write(2, msg, sizeof msg - 1);
  if (qemu > 0)
    kill(qemu, SIGKILL);
  _exit(3);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "stop_cont") != 0) {
    fprintf(stderr, "usage: %s stop_cont [--quick]\n", argv[0]);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      pairs = 500;
    } else {
      fprintf(stderr, "%s: unknown argument %s\n", argv[0], argv[i]);
      return 2;
    }
  }
  signal(SIGALRM, watchdog);
  alarm(60);
  qemu_start();
  run();
  qemu_stop();
  return 0;
}
