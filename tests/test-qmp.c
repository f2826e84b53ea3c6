/*
 * test-qmp.c - adapters/qmp/qmp.c (include/rx/qmp.h) against a real QEMU
 * and against a fake server, on the loop of $RX_BACKEND.
 *
 * QEMU is `qemu-system-x86_64 -machine none -display none -nodefaults`
 * with its QMP socket in a temporary directory, started per test (about
 * 70 ms) and stopped by pid. The tests cover: negotiation (OOB when
 * offered); stop, cont, query-status, system_reset, an unknown command and
 * quit, each answered as QEMU does, with every listener on the bus getting
 * exactly its events in order; a backup job between two null-co nodes and
 * its JOB_STATUS_CHANGE events, picked by a filter on the job's id;
 * query-qmp-schema (one line of about 200 KB); more commands than may be in
 * flight, all matched, plus an OOB one; SIGKILL with commands pending (every
 * one completes with an error, a waiting listener is woken by the disconnect);
 * a reconnect to a fresh QEMU that keeps the listeners. The fake server (a
 * thread on a unix socket) answers out of order, sends an unknown id, garbage,
 * a 12 MB line under the default limit, a line over a small limit, refuses the
 * negotiation, and answers twice in one write to a client that frees
 * itself in the first answer's callback. rx_qmp_connect_fd() runs against
 * QEMU given the other end of a socketpair (-chardev socket,fd=N), and
 * against a server played by the test on a socketpair: per-command
 * timeouts (in flight, waiting, pending at a disconnect) and a client
 * freed in a callback of its own disconnect.
 *
 * Without qemu-system-x86_64 (Debian: qemu-system-x86) the program exits 77
 * (SKIP) and names the package.
 */
#include "helpers.h"

#include <jansson.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "rx/bus.h"
#include "rx/qmp.h"

#define QEMU "qemu-system-x86_64"
#define LIMIT 5000000000LL /* ns a step may take on a busy machine */

/* ---------------------------------------------------------------------------
 * QEMU, by pid.
 */

struct qemu {
  char dir[64];
  char sock[128];
  pid_t pid;
};

static void qemu_start(struct qemu *e, int fresh_dir) {
  if (fresh_dir) {
    strcpy(e->dir, "/tmp/rxt-qmp-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->sock, sizeof e->sock, "%s/qmp.sock", e->dir);
  }
  char qmp[200];
  snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", e->sock);
  e->pid = fork();
  assert_true(e->pid >= 0);
  if (e->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no QEMU */
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execlp(QEMU, QEMU, "-machine", "none", "-display", "none", "-nodefaults",
           "-qmp", qmp, (char *)NULL);
    _exit(127);
  }
}

/* SIGKILL (if still running), reaped; the socket goes. */
static void qemu_kill(struct qemu *e) {
  if (e->pid > 0) {
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
  }
  unlink(e->sock);
}

static void qemu_stop(struct qemu *e) {
  qemu_kill(e);
  rmdir(e->dir);
}

/* ---------------------------------------------------------------------------
 * Recording.
 */

struct ans {
  int done;
  int status;
  json_t *value; /* a reference */
  int *order;    /* where to note the completion's rank, or NULL */
};
static int rank;

static void ans_cb(rx_qmp *q, int status, json_t *value, void *data) {
  struct ans *a = data;
  (void)q;
  a->done++;
  a->status = status;
  json_decref(a->value);
  a->value = json_incref(value);
  if (a->order != NULL)
    *a->order = rank++;
}

static void ans_clear(struct ans *a) {
  json_decref(a->value);
  memset(a, 0, sizeof *a);
}

static int ready_done, ready_status;
static void ready_cb(rx_qmp *q, int status, void *data) {
  (void)q;
  (void)data;
  ready_done = 1;
  ready_status = status;
}

static void connect_ready(rx_loop *loop, rx_qmp *q) {
  ready_done = 0;
  assert_int_equal(rx_qmp_connect(q), 0);
  assert_true(rxt_run_until(loop, &ready_done, LIMIT));
  if (ready_status != 0)
    fail_msg("connect: %s (%s)", strerror(-ready_status), rx_qmp_error(q));
  assert_int_equal(rx_qmp_state(q), RX_QMP_READY);
}

/* Runs `cmd` and waits for its answer; returns the status. */
static int run_cmd(rx_loop *loop, rx_qmp *q, const char *cmd, json_t *args,
                   struct ans *a) {
  ans_clear(a);
  assert_int_equal(rx_qmp_execute(q, cmd, args, ans_cb, a), 0);
  assert_true(rxt_run_until(loop, &a->done, LIMIT));
  assert_int_equal(a->done, 1);
  return a->status;
}

static rx_listener *listener(const char *const *names, size_t n) {
  struct rx_listener_options o = {.names = names, .n_names = n, .capacity = 64};
  rx_listener *l;
  assert_int_equal(rx_listener_new(&l, &o), 0);
  return l;
}

/* Takes every queued event of `l` and compares their names, in order, with
 * the space-separated `want`. */
static void expect_events(rx_listener *l, const char *want) {
  char got[512] = "";
  rx_event *ev;
  while (rx_listener_try_get(l, &ev) == 0) {
    if (got[0] != '\0')
      strcat(got, " ");
    strncat(got, rx_event_name(ev), sizeof got - strlen(got) - 2);
    /* Events carry QEMU's JSON, with the event's name in it. */
    json_t *p = rx_event_payload(ev);
    if (strcmp(rx_event_name(ev), RX_QMP_DISCONNECTED) == 0)
      assert_true(json_is_integer(json_object_get(p, "error")));
    else
      assert_string_equal(json_string_value(json_object_get(p, "event")),
                          rx_event_name(ev));
    rx_event_unref(ev);
  }
  assert_string_equal(got, want);
}

static int disc_done;
static void disc_get_cb(rx_listener *l, rx_event *ev, int status, void *data) {
  (void)l;
  (void)data;
  if (status == 0) {
    disc_done = strcmp(rx_event_name(ev), RX_QMP_DISCONNECTED) == 0 ? 1 : 2;
    rx_event_unref(ev);
  } else {
    disc_done = 3;
  }
}

/* ---------------------------------------------------------------------------
 * Against QEMU.
 */

/* The statuses of one job, in order. */
struct job_rec {
  char status[16][16];
  int n;
  int done; /* "null" seen */
};

static int job_filter(const rx_event *ev, void *data) {
  json_t *d = json_object_get(rx_event_payload(ev), "data");
  const char *id = json_string_value(json_object_get(d, "id"));
  return id != NULL && strcmp(id, data) == 0;
}

static void job_cb(rx_listener *l, rx_event *ev, void *data) {
  struct job_rec *r = data;
  (void)l;
  const char *st = json_string_value(
      json_object_get(json_object_get(rx_event_payload(ev), "data"), "status"));
  if (st == NULL || r->n == 16)
    return;
  snprintf(r->status[r->n++], sizeof r->status[0], "%s", st);
  if (strcmp(st, "null") == 0)
    r->done = 1;
}

static const char *const ALL[] = {"STOP", "RESUME", "RESET", "SHUTDOWN",
                                  RX_QMP_DISCONNECTED};
static const char *const STOPS[] = {"STOP"};
static const char *const RESETS[] = {"RESET", "SHUTDOWN"};

/* Negotiation; stop, cont, query-status, system_reset, an unknown command,
 * query-qmp-schema and quit; each listener's events. */
static void test_commands(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  struct qemu e;
  rx_bus *bus;
  rx_qmp *q;
  struct ans a = {0};

  qemu_start(&e, 1);
  assert_int_equal(rx_bus_new(&bus, loop, NULL), 0);
  rx_listener *all = listener(ALL, 5), *stops = listener(STOPS, 1),
              *resets = listener(RESETS, 2);
  assert_int_equal(rx_bus_add(bus, all), 0);
  assert_int_equal(rx_bus_add(bus, stops), 0);
  assert_int_equal(rx_bus_add(bus, resets), 0);
  struct rx_qmp_options o = {.path = e.sock, .bus = bus, .ready = ready_cb};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);

  /* A command before the connection is ready waits for it. */
  struct ans early = {0};
  assert_int_equal(rx_qmp_execute(q, "query-status", NULL, ans_cb, &early),
                   -ENOTCONN);
  assert_int_equal(rx_qmp_connect(q), 0);
  assert_int_equal(rx_qmp_connect(q), -EISCONN);
  assert_int_equal(rx_qmp_execute(q, "query-status", NULL, ans_cb, &early), 0);
  ready_done = 0;
  assert_true(rxt_run_until(loop, &ready_done, LIMIT));
  assert_int_equal(ready_status, 0);
  assert_int_equal(rx_qmp_oob(q), 0); /* not asked for */
  json_t *g = rx_qmp_greeting(q);
  assert_true(json_is_integer(json_object_get(
      json_object_get(json_object_get(g, "version"), "qemu"), "major")));
  assert_true(rxt_run_until(loop, &early.done, LIMIT));
  assert_int_equal(early.status, 0);
  assert_string_equal(json_string_value(json_object_get(early.value, "status")),
                      "running");
  ans_clear(&early);

  assert_int_equal(run_cmd(loop, q, "stop", NULL, &a), 0);
  assert_int_equal(run_cmd(loop, q, "query-status", NULL, &a), 0);
  assert_string_equal(json_string_value(json_object_get(a.value, "status")),
                      "paused");
  assert_int_equal(run_cmd(loop, q, "cont", NULL, &a), 0);
  assert_int_equal(run_cmd(loop, q, "system_reset", NULL, &a), 0);
  assert_int_equal(run_cmd(loop, q, "no-such-command", NULL, &a), -EREMOTEIO);
  assert_string_equal(json_string_value(json_object_get(a.value, "class")),
                      "CommandNotFound");
  assert_non_null(json_string_value(json_object_get(a.value, "desc")));

  /* Arguments, and an error QEMU gives for them. */
  json_t *args = json_pack("{s:s}", "name", "no-such-object");
  assert_int_equal(run_cmd(loop, q, "qom-list-types", NULL, &a), 0);
  assert_true(json_array_size(a.value) > 10);
  assert_int_equal(run_cmd(loop, q, "no-such-command", args, &a), -EREMOTEIO);
  json_decref(args);
  args = json_pack("[]");
  assert_int_equal(rx_qmp_execute(q, "stop", args, ans_cb, &a), -EINVAL);
  json_decref(args);
  assert_int_equal(rx_qmp_execute(q, "", NULL, ans_cb, &a), -EINVAL);
  assert_int_equal(rx_qmp_execute_oob(q, "stop", NULL, ans_cb, &a), -ENOTSUP);

  /* The schema: one line of about 200 KB. */
  assert_int_equal(run_cmd(loop, q, "query-qmp-schema", NULL, &a), 0);
  assert_true(json_array_size(a.value) > 100);
  struct rx_qmp_metrics m;
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_true(m.longest_line > 50000);

  /* A file descriptor passed with getfd (SCM_RIGHTS): QEMU knows it by its
   * name until closefd. */
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  args = json_pack("{s:s}", "fdname", "p0");
  assert_int_equal(rx_qmp_execute_fd(q, "getfd", args, -1, ans_cb, &a), -EBADF);
  ans_clear(&a);
  assert_int_equal(rx_qmp_execute_fd(q, "getfd", args, pfd[0], ans_cb, &a), 0);
  assert_true(rxt_run_until(loop, &a.done, LIMIT));
  assert_int_equal(a.status, 0);
  assert_int_equal(run_cmd(loop, q, "closefd", args, &a), 0);
  assert_int_equal(run_cmd(loop, q, "closefd", args, &a), -EREMOTEIO);
  assert_int_equal(run_cmd(loop, q, "getfd", args, &a), -EREMOTEIO); /* no fd */
  json_decref(args);
  close(pfd[0]);
  close(pfd[1]);

  /* A backup job between two null-co nodes: its JOB_STATUS_CHANGE events,
   * taken by a listener whose filter looks into the payload, from created
   * to null in order. */
  struct job_rec job = {0};
  struct rx_listener_options jo = {
      .names = (const char *const[]){"JOB_STATUS_CHANGE"},
      .n_names = 1,
      .filter = job_filter,
      .filter_data = "j1",
      .capacity = 64,
      .cb = job_cb,
      .data = &job};
  rx_listener *jobs;
  assert_int_equal(rx_listener_new(&jobs, &jo), 0);
  assert_int_equal(rx_bus_add(bus, jobs), 0);
  args = json_pack("{s:s, s:s, s:i}", "driver", "null-co", "node-name", "src",
                   "size", 1 << 20);
  assert_int_equal(run_cmd(loop, q, "blockdev-add", args, &a), 0);
  json_decref(args);
  args = json_pack("{s:s, s:s, s:i}", "driver", "null-co", "node-name", "dst",
                   "size", 1 << 20);
  assert_int_equal(run_cmd(loop, q, "blockdev-add", args, &a), 0);
  json_decref(args);
  args = json_pack("{s:s, s:s, s:s, s:s}", "job-id", "j1", "device", "src",
                   "target", "dst", "sync", "full");
  assert_int_equal(run_cmd(loop, q, "blockdev-backup", args, &a), 0);
  json_decref(args);
  assert_true(rxt_run_until(loop, &job.done, LIMIT));
  /* created running [paused running] waiting pending concluded null */
  assert_true(job.n >= 7);
  assert_string_equal(job.status[0], "created");
  assert_string_equal(job.status[1], "running");
  assert_string_equal(job.status[job.n - 4], "waiting");
  assert_string_equal(job.status[job.n - 3], "pending");
  assert_string_equal(job.status[job.n - 2], "concluded");
  assert_string_equal(job.status[job.n - 1], "null");
  rx_listener_free(jobs);

  /* quit: its answer, SHUTDOWN, then the end (EOF or ECONNRESET), which a
   * listener waiting for the disconnect hears. */
  rx_listener *disc = listener((const char *const[]){RX_QMP_DISCONNECTED}, 1);
  assert_int_equal(rx_bus_add(bus, disc), 0);
  disc_done = 0;
  assert_int_equal(rx_listener_get(disc, disc_get_cb, NULL, 0), 0);
  assert_int_equal(run_cmd(loop, q, "quit", NULL, &a), 0);
  assert_true(rxt_run_until(loop, &disc_done, LIMIT));
  assert_int_equal(disc_done, 1);
  assert_int_equal(rx_qmp_state(q), RX_QMP_IDLE);
  assert_non_null(strstr(rx_qmp_error(q), "peer closed"));
  assert_int_equal(rx_qmp_execute(q, "stop", NULL, ans_cb, &a), -ENOTCONN);
  assert_int_equal(rx_qmp_disconnect(q), -ENOTCONN);

  expect_events(all, "STOP RESUME RESET SHUTDOWN " RX_QMP_DISCONNECTED);
  expect_events(stops, "STOP");
  expect_events(resets, "RESET SHUTDOWN");
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.unknown, 0);
  assert_int_equal(m.bad_lines, 0);
  assert_int_equal(m.events, 4 + job.n + 1); /* + BLOCK_JOB_COMPLETED */
  assert_int_equal(m.inflight, 0);
  assert_true(m.buffer <= (1u << 20)); /* shrunk after the schema */

  ans_clear(&a);
  rx_qmp_free(q);
  rx_listener_free(all);
  rx_listener_free(stops);
  rx_listener_free(resets);
  rx_listener_free(disc);
  assert_int_equal(rx_bus_free(bus), 0);
  qemu_stop(&e);
}

/* More commands than may be in flight: all matched, 8 at most sent at a
 * time; an OOB one passes them. Then SIGKILL with commands pending, and a
 * reconnect to a fresh QEMU that keeps the listeners. */
static void test_inflight_kill_reconnect(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  struct qemu e;
  rx_bus *bus;
  rx_qmp *q;
  enum { N = 20 };
  struct ans a[N];
  int order[N];

  qemu_start(&e, 1);
  assert_int_equal(rx_bus_new(&bus, loop, NULL), 0);
  rx_listener *stops = listener(STOPS, 1);
  assert_int_equal(rx_bus_add(bus, stops), 0);
  rx_listener *disc = listener((const char *const[]){RX_QMP_DISCONNECTED}, 1);
  assert_int_equal(rx_bus_add(bus, disc), 0);
  struct rx_qmp_options o = {
      .path = e.sock, .bus = bus, .ready = ready_cb, .oob = 1};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  connect_ready(loop, q);
  assert_int_equal(rx_qmp_oob(q), 1); /* QEMU offers it */

  memset(a, 0, sizeof a);
  rank = 0;
  for (int i = 0; i < N; i++) {
    a[i].order = &order[i];
    assert_int_equal(rx_qmp_execute(q, i % 2 ? "query-name" : "query-status",
                                    NULL, ans_cb, &a[i]),
                     0);
  }
  struct rx_qmp_metrics m;
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.inflight, RX_QMP_MAX_INFLIGHT);
  assert_int_equal(m.queued, N - RX_QMP_MAX_INFLIGHT);
  /* OOB: sent at once past the limit. query-status cannot run out of band,
   * so QEMU refuses it, by id. */
  struct ans oob = {0};
  assert_int_equal(rx_qmp_execute_oob(q, "query-status", NULL, ans_cb, &oob),
                   0);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.inflight, RX_QMP_MAX_INFLIGHT + 1);
  assert_true(rxt_run_until(loop, &a[N - 1].done, LIMIT));
  assert_true(rxt_run_until(loop, &oob.done, LIMIT));
  assert_int_equal(oob.status, -EREMOTEIO);
  assert_non_null(
      strstr(json_string_value(json_object_get(oob.value, "desc")), "OOB"));
  ans_clear(&oob);
  for (int i = 0; i < N; i++) {
    assert_int_equal(a[i].done, 1);
    assert_int_equal(a[i].status, 0);
    if (i % 2)
      assert_true(json_is_object(a[i].value));
    else
      assert_non_null(json_object_get(a[i].value, "running"));
    ans_clear(&a[i]);
  }
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.inflight, 0);
  assert_int_equal(m.queued, 0);
  assert_int_equal(m.unknown, 0);

  /* SIGKILL with commands pending (QEMU stopped first so that none is
   * answered) and a listener waiting: every command completes with
   * -ECONNRESET, the listener hears the disconnect. */
  kill(e.pid, SIGSTOP);
  for (int i = 0; i < N; i++)
    assert_int_equal(rx_qmp_execute(q, "stop", NULL, ans_cb, &a[i]), 0);
  disc_done = 0;
  assert_int_equal(rx_listener_get(disc, disc_get_cb, NULL, 0), 0);
  qemu_kill(&e);
  assert_true(rxt_run_until(loop, &disc_done, LIMIT));
  assert_int_equal(disc_done, 1);
  for (int i = 0; i < N; i++) {
    assert_int_equal(a[i].done, 1);
    assert_int_equal(a[i].status, -ECONNRESET);
    assert_null(a[i].value);
  }
  assert_int_equal(rx_qmp_state(q), RX_QMP_IDLE);

  /* A fresh QEMU on the same path: one call reconnects, and the listener
   * added before hears its events. */
  qemu_start(&e, 0);
  connect_ready(loop, q);
  assert_int_equal(run_cmd(loop, q, "stop", NULL, &a[0]), 0);
  assert_int_equal(run_cmd(loop, q, "query-status", NULL, &a[0]), 0);
  /* STOP may come after the answer of stop, never after the next one. */
  expect_events(stops, "STOP");
  ans_clear(&a[0]);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.connects, 2);

  /* Freeing a connected client completes what is pending. */
  struct ans last = {0};
  kill(e.pid, SIGSTOP);
  assert_int_equal(rx_qmp_execute(q, "stop", NULL, ans_cb, &last), 0);
  rx_qmp_free(q);
  assert_int_equal(last.done, 1);
  assert_int_equal(last.status, -ECANCELED);
  expect_events(disc, RX_QMP_DISCONNECTED);

  rx_listener_free(stops);
  rx_listener_free(disc);
  assert_int_equal(rx_bus_free(bus), 0);
  qemu_stop(&e);
}

/* No socket: the connect timeout says so. */
static void test_connect_timeout(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  rx_qmp *q;
  struct rx_qmp_options o = {.path = "/tmp/rxt-qmp-no-such-dir/qmp.sock",
                             .ready = ready_cb,
                             .connect_timeout = 50000000,
                             .retry_interval = 5000000};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  ready_done = 0;
  assert_int_equal(rx_qmp_connect(q), 0);
  assert_int_equal(rx_qmp_state(q), RX_QMP_CONNECTING);
  assert_true(rxt_run_until(loop, &ready_done, LIMIT));
  assert_int_equal(ready_status, -ETIMEDOUT);
  assert_non_null(strstr(rx_qmp_error(q), "cannot connect"));
  rx_qmp_free(q);

  struct rx_qmp_options bad = {.path = ""};
  assert_int_equal(rx_qmp_new(&q, loop, &bad), -EINVAL);
  assert_null(q);
  bad.path = NULL;
  bad.connect_timeout = -1;
  assert_int_equal(rx_qmp_new(&q, loop, &bad), -EINVAL);
  assert_null(q);
  /* No path: only rx_qmp_connect_fd() connects it. */
  struct rx_qmp_options none = {0};
  assert_int_equal(rx_qmp_new(&q, loop, &none), 0);
  assert_int_equal(rx_qmp_connect(q), -EDESTADDRREQ);
  assert_int_equal(rx_qmp_connect_fd(q, -1), -EBADF);
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  assert_int_equal(rx_qmp_connect_fd(q, fd), -ENOTSOCK);
  close(fd);
  int dg[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg), 0);
  assert_int_equal(rx_qmp_connect_fd(q, dg[0]), -EPROTOTYPE);
  close(dg[0]);
  close(dg[1]);
  assert_int_equal(rx_qmp_state(q), RX_QMP_IDLE);
  rx_qmp_free(q);
}

/* ---------------------------------------------------------------------------
 * A fake server: a thread on a unix socket, running a script.
 */

struct fake {
  char dir[64], sock[128];
  int lfd;
  pthread_t thread;
  int script;
  int result; /* 0 when the script ran as planned */
};

static int read_line(int fd, char *buf, size_t cap) {
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, 1);
    if (r <= 0)
      return -1;
    if (buf[n] == '\n')
      break;
    n++;
  }
  buf[n] = '\0';
  return (int)n;
}

static json_int_t read_id(int fd, const char *want) {
  char line[4096];
  if (read_line(fd, line, sizeof line) < 0)
    return -1;
  json_t *j = json_loads(line, 0, NULL);
  const char *cmd = json_string_value(json_object_get(j, "execute"));
  json_int_t id = json_integer_value(json_object_get(j, "id"));
  if (cmd == NULL || strcmp(cmd, want) != 0)
    id = -1;
  json_decref(j);
  return id;
}

static int write_all(int fd, const char *s, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, s, len);
    if (n <= 0)
      return -1;
    s += n;
    len -= (size_t)n;
  }
  return 0;
}

static int write_str(int fd, const char *s) {
  return write_all(fd, s, strlen(s));
}

enum { BIG = 12000000 };

static void *fake_main(void *arg) {
  struct fake *f = arg;
  char buf[256];
  int fd = accept(f->lfd, NULL, NULL);
  f->result = -1;
  if (fd < 0)
    return NULL;
  /* The greeting offers nothing; the client asks for nothing. */
  if (write_str(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n"))
    goto out;
  json_int_t id = read_id(fd, "qmp_capabilities");
  if (id < 0)
    goto out;
  if (f->script == 2) {
    /* Negotiation refused; the client closes. */
    snprintf(buf, sizeof buf,
             "{\"error\": {\"class\": \"GenericError\", \"desc\": "
             "\"no\"}, \"id\": %lld}\n",
             (long long)id);
    if (write_str(fd, buf))
      goto out;
    f->result = read(fd, buf, sizeof buf) <= 0 ? 0 : -2;
    goto out;
  }
  snprintf(buf, sizeof buf, "{\"return\": {}, \"id\": %lld}\r\n",
           (long long)id);
  if (write_str(fd, buf))
    goto out;
  if (f->script == 3) {
    /* Two answers in one write; the client frees itself in the first. */
    json_int_t a = read_id(fd, "one"), b = read_id(fd, "two");
    if (a < 0 || b < 0)
      goto out;
    snprintf(buf, sizeof buf,
             "{\"return\": 1, \"id\": %lld}\n{\"return\": 2, \"id\": "
             "%lld}\n",
             (long long)a, (long long)b);
    if (write_str(fd, buf))
      goto out;
    f->result = read(fd, buf, sizeof buf) <= 0 ? 0 : -2;
    goto out;
  }
  if (f->script == 0) {
    /* Two commands answered in reverse order, between them an unknown id,
     * an answer without one, garbage and an empty line. */
    json_int_t a = read_id(fd, "first"), b = read_id(fd, "second");
    if (a < 0 || b < 0)
      goto out;
    snprintf(buf, sizeof buf,
             "{\"return\": 2, \"id\": %lld}\n{\"return\": 0, \"id\": 9999}\n"
             "{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\n"
             "not json\n\n[1]\n{\"return\": 1, \"id\": %lld}\n",
             (long long)b, (long long)a);
    if (write_str(fd, buf))
      goto out;
    /* A 12 MB line: an answer holding a string, written in pieces. */
    id = read_id(fd, "big");
    if (id < 0)
      goto out;
    char *line = malloc(BIG + 64);
    int n = snprintf(line, 64, "{\"id\": %lld, \"return\": \"", (long long)id);
    memset(line + n, 'x', BIG);
    memcpy(line + n + BIG, "\"}\n", 3);
    int r = write_all(fd, line, (size_t)n + BIG + 3);
    free(line);
    if (r)
      goto out;
    if (read_id(fd, "after") < 0)
      goto out;
    f->result = 0; /* then EOF, with "after" unanswered */
  } else {
    /* A line over the client's small limit, in answer to "big". */
    id = read_id(fd, "big");
    if (id < 0)
      goto out;
    char line[10000];
    memset(line, ' ', sizeof line);
    line[sizeof line - 1] = '\n';
    write_all(fd, line, sizeof line); /* the client may close first */
    /* The client closes: a read sees EOF. */
    f->result = read(fd, buf, sizeof buf) <= 0 ? 0 : -2; /* or ECONNRESET */
  }
out:
  close(fd);
  return NULL;
}

static void fake_start(struct fake *f, int script) {
  memset(f, 0, sizeof *f);
  strcpy(f->dir, "/tmp/rxt-qmpf-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->sock, sizeof f->sock, "%s/qmp.sock", f->dir);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, f->sock);
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(f->lfd >= 0);
  assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(f->lfd, 4), 0);
  f->script = script;
  assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f) {
  pthread_join(f->thread, NULL);
  close(f->lfd);
  unlink(f->sock);
  rmdir(f->dir);
  assert_int_equal(f->result, 0);
}

/* Answers by id in any order; unknown ids and garbage dropped and counted;
 * a 12 MB line under the default limit; EOF completes what is pending. */
static void test_fake_framing(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  struct fake f;
  rx_qmp *q;
  rx_bus *bus;
  struct ans a1 = {0}, a2 = {0}, big = {0}, after = {0};

  fake_start(&f, 0);
  assert_int_equal(rx_bus_new(&bus, loop, NULL), 0);
  struct rx_qmp_options o = {
      .path = f.sock, .bus = bus, .ready = ready_cb, .oob = 1};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  connect_ready(loop, q);
  assert_int_equal(rx_qmp_oob(q), 0); /* asked for, not offered */
  int o1 = -1, o2 = -1;
  a1.order = &o1;
  a2.order = &o2;
  rank = 0;
  assert_int_equal(rx_qmp_execute(q, "first", NULL, ans_cb, &a1), 0);
  assert_int_equal(rx_qmp_execute(q, "second", NULL, ans_cb, &a2), 0);
  assert_true(rxt_run_until(loop, &a1.done, LIMIT));
  assert_int_equal(a1.status, 0);
  assert_int_equal(json_integer_value(a1.value), 1);
  assert_int_equal(a2.status, 0);
  assert_int_equal(json_integer_value(a2.value), 2);
  assert_int_equal(o2, 0); /* answered first */
  assert_int_equal(o1, 1);
  struct rx_qmp_metrics m;
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.unknown, 2);   /* id 9999, no id */
  assert_int_equal(m.bad_lines, 2); /* not json, [1] */

  assert_int_equal(rx_qmp_execute(q, "big", NULL, ans_cb, &big), 0);
  assert_true(rxt_run_until(loop, &big.done, 4 * LIMIT));
  assert_int_equal(big.status, 0);
  assert_int_equal(json_string_length(big.value), BIG);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_true(m.longest_line > BIG);
  assert_true(m.buffer <= 2 * RX_QMP_LINE_LIMIT);

  assert_int_equal(rx_qmp_execute(q, "after", NULL, ans_cb, &after), 0);
  assert_true(rxt_run_until(loop, &after.done, LIMIT));
  assert_int_equal(after.status, -ECONNRESET);
  assert_non_null(strstr(rx_qmp_error(q), "peer closed"));
  fake_stop(&f);

  /* The default listener kept the disconnect. */
  rx_event *ev;
  assert_int_equal(rx_listener_try_get(rx_bus_default(bus), &ev), 0);
  assert_string_equal(rx_event_name(ev), RX_QMP_DISCONNECTED);
  assert_int_equal(
      json_integer_value(json_object_get(rx_event_payload(ev), "error")),
      ECONNRESET);
  rx_event_unref(ev);

  ans_clear(&a1);
  ans_clear(&a2);
  ans_clear(&big);
  ans_clear(&after);
  rx_qmp_free(q);
  assert_int_equal(rx_bus_free(bus), 0);
}

/* A line over a small limit: the command fails with -EMSGSIZE, the error
 * says why, the connection is closed, nothing crashes. */
static void test_fake_limit(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  struct fake f;
  rx_qmp *q;
  struct ans big = {0};

  fake_start(&f, 1);
  struct rx_qmp_options o = {
      .path = f.sock, .ready = ready_cb, .line_limit = 1000};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  connect_ready(loop, q);
  assert_int_equal(rx_qmp_execute(q, "big", NULL, ans_cb, &big), 0);
  assert_true(rxt_run_until(loop, &big.done, LIMIT));
  assert_int_equal(big.status, -EMSGSIZE);
  assert_non_null(strstr(rx_qmp_error(q), "over the limit of 1000 bytes"));
  assert_int_equal(rx_qmp_state(q), RX_QMP_IDLE);
  fake_stop(&f);
  ans_clear(&big);
  rx_qmp_free(q);
}

/* Negotiation refused: the ready callback says so, nothing is left. */
static void test_fake_refused(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  struct fake f;
  rx_qmp *q;
  struct ans a = {0};

  fake_start(&f, 2);
  struct rx_qmp_options o = {.path = f.sock, .ready = ready_cb};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  ready_done = 0;
  assert_int_equal(rx_qmp_connect(q), 0);
  assert_int_equal(rx_qmp_execute(q, "early", NULL, ans_cb, &a), 0);
  assert_true(rxt_run_until(loop, &ready_done, LIMIT));
  assert_int_equal(ready_status, -EPROTO);
  assert_non_null(strstr(rx_qmp_error(q), "negotiation refused: GenericError"));
  assert_int_equal(a.done, 1);
  assert_int_equal(a.status, -EPROTO);
  assert_int_equal(rx_qmp_state(q), RX_QMP_IDLE);
  fake_stop(&f);
  rx_qmp_free(q);
}

/* A client freed inside an answer's callback: the other pending command
 * completes with -ECANCELED inside the free, and the rest of the read is
 * not touched (ASan checks the memory). */
static int freed_in_cb;
static void free_cb(rx_qmp *q, int status, json_t *value, void *data) {
  (void)value;
  (void)data;
  freed_in_cb = status == 0 ? 1 : -1;
  rx_qmp_free(q);
}

static void test_fake_free_in_callback(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  struct fake f;
  rx_qmp *q;
  struct ans two = {0};

  fake_start(&f, 3);
  struct rx_qmp_options o = {.path = f.sock, .ready = ready_cb};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  connect_ready(loop, q);
  freed_in_cb = 0;
  assert_int_equal(rx_qmp_execute(q, "one", NULL, free_cb, NULL), 0);
  assert_int_equal(rx_qmp_execute(q, "two", NULL, ans_cb, &two), 0);
  assert_true(rxt_run_until(loop, &freed_in_cb, LIMIT));
  assert_int_equal(freed_in_cb, 1);
  assert_int_equal(two.done, 1);
  assert_int_equal(two.status, -ECANCELED);
  fake_stop(&f);
}

/* ---------------------------------------------------------------------------
 * A server on the other end of a socketpair (rx_qmp_connect_fd()), driven
 * from the test's own thread between loop iterations.
 */

/* The next line the client wrote on `fd`, when it is command `want`: its
 * id; -1 when none comes within about 5 s, or another command does. */
static json_int_t sp_read_id(rx_loop *loop, int fd, const char *want) {
  char line[4096];
  for (int i = 0; i < 5000; i++) {
    ssize_t n = recv(fd, line, sizeof line - 1, MSG_PEEK | MSG_DONTWAIT);
    char *nl = n > 0 ? memchr(line, '\n', (size_t)n) : NULL;
    if (nl == NULL) {
      rx_run(loop, RX_RUN_NOWAIT);
      usleep(1000);
      continue;
    }
    size_t len = (size_t)(nl - line) + 1;
    assert_int_equal(recv(fd, line, len, 0), (ssize_t)len);
    line[len - 1] = '\0';
    json_t *j = json_loads(line, 0, NULL);
    const char *cmd = json_string_value(json_object_get(j, "execute"));
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    if (cmd == NULL || strcmp(cmd, want) != 0)
      id = -1;
    json_decref(j);
    return id;
  }
  return -1;
}

static void sp_answer(int fd, json_int_t id, int value) {
  char buf[128];
  snprintf(buf, sizeof buf, "{\"return\": %d, \"id\": %lld}\n", value,
           (long long)id);
  assert_int_equal(write_str(fd, buf), 0);
}

/* Per-command timeouts: one in flight times out and its late answer is
 * dropped as unknown while the next is answered; one still waiting behind 8
 * in flight times out and is never sent; one pending at a disconnect ends
 * once, with -ECANCELED, and its timer never fires after. Also
 * rx_qmp_connect_fd() itself. */
static void test_fake_timeout(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  rx_qmp *q;
  int sp[2];
  struct rx_qmp_metrics m;

  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  struct rx_qmp_options o = {.ready = ready_cb};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  ready_done = 0;
  assert_int_equal(rx_qmp_connect_fd(q, sp[0]), 0);
  assert_int_equal(rx_qmp_connect_fd(q, sp[1]), -EISCONN);
  assert_int_equal(rx_qmp_state(q), RX_QMP_GREETING);
  assert_int_equal(
      write_str(sp[1], "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n"),
      0);
  json_int_t id = sp_read_id(loop, sp[1], "qmp_capabilities");
  assert_true(id >= 0);
  sp_answer(sp[1], id, 0);
  assert_true(rxt_run_until(loop, &ready_done, LIMIT));
  assert_int_equal(ready_status, 0);
  assert_int_equal(rx_qmp_state(q), RX_QMP_READY);

  /* In flight. */
  struct ans slow = {0}, fast = {0};
  assert_int_equal(rx_qmp_execute_timeout(q, "slow", NULL, -1, ans_cb, &slow),
                   -EINVAL);
  assert_int_equal(
      rx_qmp_execute_timeout(q, "slow", NULL, RX_MSEC(30), ans_cb, &slow), 0);
  assert_int_equal(rx_qmp_execute(q, "fast", NULL, ans_cb, &fast), 0);
  json_int_t a = sp_read_id(loop, sp[1], "slow");
  json_int_t b = sp_read_id(loop, sp[1], "fast");
  assert_true(a >= 0 && b >= 0);
  assert_true(rxt_run_until(loop, &slow.done, LIMIT));
  assert_int_equal(slow.status, -ETIMEDOUT);
  assert_null(slow.value);
  assert_int_equal(fast.done, 0);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.timeouts, 1);
  assert_int_equal(m.inflight, 1);
  sp_answer(sp[1], a, 1); /* late */
  sp_answer(sp[1], b, 2);
  assert_true(rxt_run_until(loop, &fast.done, LIMIT));
  assert_int_equal(fast.status, 0);
  assert_int_equal(json_integer_value(fast.value), 2);
  assert_int_equal(slow.done, 1);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.unknown, 1);
  assert_int_equal(m.answered, 2); /* qmp_capabilities, fast */

  /* Waiting behind RX_QMP_MAX_INFLIGHT commands. */
  struct ans w[RX_QMP_MAX_INFLIGHT], queued = {0};
  json_int_t wid[RX_QMP_MAX_INFLIGHT];
  memset(w, 0, sizeof w);
  for (int i = 0; i < RX_QMP_MAX_INFLIGHT; i++)
    assert_int_equal(rx_qmp_execute(q, "w", NULL, ans_cb, &w[i]), 0);
  assert_int_equal(
      rx_qmp_execute_timeout(q, "queued", NULL, RX_MSEC(30), ans_cb, &queued),
      0);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.queued, 1);
  for (int i = 0; i < RX_QMP_MAX_INFLIGHT; i++) {
    wid[i] = sp_read_id(loop, sp[1], "w");
    assert_true(wid[i] >= 0);
  }
  assert_true(rxt_run_until(loop, &queued.done, LIMIT));
  assert_int_equal(queued.status, -ETIMEDOUT);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.queued, 0);
  assert_int_equal(m.timeouts, 2);
  uint64_t sent = m.sent;
  for (int i = 0; i < RX_QMP_MAX_INFLIGHT; i++)
    sp_answer(sp[1], wid[i], i);
  assert_true(rxt_run_until(loop, &w[RX_QMP_MAX_INFLIGHT - 1].done, LIMIT));
  for (int i = 0; i < RX_QMP_MAX_INFLIGHT; i++) {
    assert_int_equal(w[i].done, 1);
    assert_int_equal(w[i].status, 0);
    ans_clear(&w[i]);
  }
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.sent, sent); /* "queued" never went out */
  char c;
  assert_int_equal(recv(sp[1], &c, 1, MSG_DONTWAIT), -1);

  /* Pending at a disconnect. */
  struct ans never = {0};
  int not_set = 0;
  assert_int_equal(
      rx_qmp_execute_timeout(q, "never", NULL, RX_MSEC(10), ans_cb, &never), 0);
  assert_int_equal(rx_qmp_disconnect(q), 0);
  assert_int_equal(never.done, 1);
  assert_int_equal(never.status, -ECANCELED);
  assert_false(rxt_run_until(loop, &not_set, RX_MSEC(40)));
  assert_int_equal(never.done, 1);
  assert_int_equal(rx_qmp_metrics(q, &m), 0);
  assert_int_equal(m.timeouts, 2);

  ans_clear(&slow);
  ans_clear(&fast);
  ans_clear(&queued);
  ans_clear(&never);
  close(sp[1]);
  rx_qmp_free(q);
}

/* rx_qmp_connect_fd() against QEMU itself: one end of a socketpair, the
 * other QEMU's monitor (-chardev socket,fd=N); negotiation, a command, and
 * the end when QEMU goes. */
static void test_qemu_connect_fd(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  rx_qmp *q;
  int sp[2];
  struct ans a = {0};

  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char chardev[64];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    int fd = dup(sp[1]); /* without FD_CLOEXEC */
    snprintf(chardev, sizeof chardev, "socket,id=mon0,fd=%d", fd);
    execlp(QEMU, QEMU, "-machine", "none", "-display", "none", "-nodefaults",
           "-chardev", chardev, "-mon", "chardev=mon0,mode=control",
           (char *)NULL);
    _exit(127);
  }
  close(sp[1]);
  struct rx_qmp_options o = {.ready = ready_cb};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  ready_done = 0;
  assert_int_equal(rx_qmp_connect_fd(q, sp[0]), 0);
  assert_true(rxt_run_until(loop, &ready_done, LIMIT));
  assert_int_equal(ready_status, 0);
  assert_non_null(rx_qmp_greeting(q));
  assert_int_equal(run_cmd(loop, q, "query-status", NULL, &a), 0);
  assert_string_equal(json_string_value(json_object_get(a.value, "status")),
                      "running");
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  assert_int_equal(run_cmd(loop, q, "query-status", NULL, &a), -ECONNRESET);
  assert_int_equal(rx_qmp_state(q), RX_QMP_IDLE);
  assert_int_equal(rx_qmp_connect(q), -EDESTADDRREQ);
  ans_clear(&a);
  rx_qmp_free(q);
}

/* A client freed in the callback of a command its disconnect ended: the
 * other ended command completes inside rx_qmp_free(), not after it. */
static int free_returned, late_cb;
static void free_in_teardown_cb(rx_qmp *q, int status, json_t *value,
                                void *data) {
  (void)value;
  (void)data;
  assert_int_equal(status, -ECANCELED);
  rx_qmp_free(q);
  free_returned = 1;
}
static void after_free_cb(rx_qmp *q, int status, json_t *value, void *data) {
  (void)q;
  (void)value;
  (void)data;
  assert_int_equal(status, -ECANCELED);
  late_cb += free_returned ? 100 : 1;
}

static void test_fake_free_in_teardown(void **state) {
  rx_loop *loop = ((struct rxt *)*state)->loop;
  rx_qmp *q;
  int sp[2];

  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  struct rx_qmp_options o = {0};
  assert_int_equal(rx_qmp_new(&q, loop, &o), 0);
  assert_int_equal(rx_qmp_connect_fd(q, sp[0]), 0);
  free_returned = late_cb = 0;
  assert_int_equal(rx_qmp_execute(q, "one", NULL, free_in_teardown_cb, NULL),
                   0);
  assert_int_equal(rx_qmp_execute(q, "two", NULL, after_free_cb, NULL), 0);
  assert_int_equal(rx_qmp_disconnect(q), 0); /* frees q */
  assert_int_equal(free_returned, 1);
  assert_int_equal(late_cb, 1);
  close(sp[1]);
}

int main(void) {
  const char *b = rxt_env_backend();
  char name[128];
  if (system("command -v " QEMU " >/dev/null 2>&1") != 0) {
    printf("SKIP: no %s: install qemu-system-x86 (scripts/deps.sh does as "
           "root)\n",
           QEMU);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      RXT_TEST(test_commands),        RXT_TEST(test_inflight_kill_reconnect),
      RXT_TEST(test_connect_timeout), RXT_TEST(test_qemu_connect_fd),
      RXT_TEST(test_fake_framing),    RXT_TEST(test_fake_limit),
      RXT_TEST(test_fake_refused),    RXT_TEST(test_fake_free_in_callback),
      RXT_TEST(test_fake_timeout),    RXT_TEST(test_fake_free_in_teardown),
  };
  snprintf(name, sizeof(name), "%s [%s]", __FILE__, b ? b : "default");
  return cmocka_run_group_tests_name(name, tests, NULL, NULL);
}
