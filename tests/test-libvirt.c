/*
 * test-libvirt.c - adapters/libvirt/events.c: libvirt itself on an rx loop
 * ($RX_BACKEND), against libvirt's own default loop.
 *
 * virEventRegisterImpl() is process-wide and cannot be undone, so each loop
 * runs in a child process of its own: one registers rx
 * (rx_libvirt_register()), the other virEventRegisterDefaultImpl(). Both
 * open the in-process test driver (test:///default), run the same script
 * of domain operations (suspend, resume, destroy, create, define, start,
 * shutdown, undefine), let the loop run after each until it has been quiet
 * for a while, and write every lifecycle callback they received, in order,
 * to a pipe. The two transcripts must be the same, and hold what the
 * script does.
 *
 * Then a throw-away libvirtd (its own configuration and unix socket in a
 * temporary directory, LIBVIRT_DRIVER_DIR at an empty directory so that
 * only the built-in test driver loads, stopped by pid) is reached by
 * test+unix:// from a child on rx: events arrive over the socket; with
 * keepalive (interval 1 s, count 3) an idle connection stays up for 10 s;
 * SIGSTOP on the daemon closes the connection for keepalive within 4 s plus
 * one interval; SIGTERM delivers the close callback. Without libvirtd
 * (Debian: libvirt-daemon) those tests skip.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "rx/libvirt.h"

enum { MODE_DEFAULT, MODE_RX };

static int64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------------------
 * The child: one loop, the script, the transcript.
 */

struct transcript {
  char text[8192];
  size_t len;
  int events;
  int wrong_thread; /* callbacks not on the loop's thread */
  int freed;        /* the callback's free function */
  pthread_t loop_thread;
};

static struct transcript tr;
static rx_loop *loop;
static int mode;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tr.text + tr.len, sizeof(tr.text) - tr.len, fmt, ap);
  va_end(ap);
  if (n > 0 && (size_t)n < sizeof(tr.text) - tr.len)
    tr.len += (size_t)n;
}

static int lifecycle(virConnectPtr conn, virDomainPtr dom, int event,
                     int detail, void *opaque) {
  (void)conn;
  (void)opaque;
  if (!pthread_equal(pthread_self(), tr.loop_thread))
    tr.wrong_thread++;
  tr.events++;
  note("%s %d %d\n", virDomainGetName(dom), event, detail);
  return 0;
}

static void lifecycle_free(void *opaque) {
  (void)opaque;
  tr.freed++;
}

static void tick(int timer, void *opaque) {
  (void)timer;
  (void)opaque;
}

/* One iteration of the loop under test; a 10 ms libvirt timeout, added
 * through libvirt and so on that loop, keeps it from blocking longer. */
static void iterate(void) {
  if (mode == MODE_RX)
    rx_run(loop, RX_RUN_ONCE);
  else
    virEventRunDefaultImpl();
}

/* Runs the loop until no callback has come for 300 ms (at most 10 s). */
static void settle(void) {
  int64_t end = clock_ns() + 10000000000;
  int64_t quiet = clock_ns();
  int seen = tr.events;
  while (clock_ns() < end && clock_ns() - quiet < 300000000) {
    iterate();
    if (tr.events != seen) {
      seen = tr.events;
      quiet = clock_ns();
    }
  }
}

static const char new_domain_xml[] = "<domain type='test'>"
                                     "<name>rx-test</name>"
                                     "<memory>8192</memory>"
                                     "<os><type>hvm</type></os>"
                                     "</domain>";

#define STEP(what)                                                  \
  do {                                                              \
    if ((what) < 0) {                                               \
      fprintf(stderr, "%s: %s\n", #what, virGetLastErrorMessage()); \
      return 1;                                                     \
    }                                                               \
    settle();                                                       \
  } while (0)

static int run_script(void) {
  tr.loop_thread = pthread_self();
  if (mode == MODE_RX) {
    int rc = rx_loop_new(&loop, NULL);
    if (rc != 0) {
      fprintf(stderr, "rx_loop_new: %s\n", rx_strerror(rc));
      return 1;
    }
    if ((rc = rx_libvirt_register(loop, NULL)) != 0) {
      fprintf(stderr, "rx_libvirt_register: %s\n", rx_strerror(rc));
      return 1;
    }
    if (rx_libvirt_register(loop, NULL) != -EALREADY) {
      fprintf(stderr, "a second rx_libvirt_register was not -EALREADY\n");
      return 1;
    }
  } else if (virEventRegisterDefaultImpl() < 0) {
    fprintf(stderr, "virEventRegisterDefaultImpl: %s\n",
            virGetLastErrorMessage());
    return 1;
  }
  int timer = virEventAddTimeout(10, tick, NULL, NULL);
  if (timer <= 0) {
    fprintf(stderr, "virEventAddTimeout failed\n");
    return 1;
  }
  virConnectPtr conn = virConnectOpen("test:///default");
  if (conn == NULL) {
    fprintf(stderr, "virConnectOpen(test:///default): %s\n",
            virGetLastErrorMessage());
    return 77;
  }
  int cb = virConnectDomainEventRegisterAny(
      conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      VIR_DOMAIN_EVENT_CALLBACK(lifecycle), NULL, lifecycle_free);
  if (cb < 0) {
    fprintf(stderr, "virConnectDomainEventRegisterAny: %s\n",
            virGetLastErrorMessage());
    return 1;
  }
  virDomainPtr dom = virDomainLookupByName(conn, "test");
  if (dom == NULL) {
    fprintf(stderr, "no domain 'test': %s\n", virGetLastErrorMessage());
    return 1;
  }
  STEP(virDomainSuspend(dom));
  STEP(virDomainResume(dom));
  STEP(virDomainDestroy(dom));
  STEP(virDomainCreate(dom));
  virDomainPtr added = virDomainDefineXML(conn, new_domain_xml);
  STEP(added != NULL ? 0 : -1);
  STEP(virDomainCreate(added));
  STEP(virDomainShutdown(added));
  STEP(virDomainUndefine(added));
  STEP(virConnectDomainEventDeregisterAny(conn, cb));
  virDomainFree(added);
  virDomainFree(dom);
  virConnectClose(conn);
  settle();
  virEventRemoveTimeout(timer);
  note("freed %d\n", tr.freed);
  if (tr.wrong_thread)
    note("%d callbacks off the loop's thread\n", tr.wrong_thread);
  if (mode == MODE_RX) {
    if (rx_libvirt_unregister() != 0 || rx_libvirt_unregister() != -ENOENT) {
      fprintf(stderr, "rx_libvirt_unregister\n");
      return 1;
    }
    rx_loop_free(loop);
  }
  return 0;
}

/* Runs the script in a child with the loop `m`: its exit status, and its
 * transcript in `out`. */
static int child(int m, char *out, size_t size) {
  int p[2];
  assert_int_equal(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    mode = m;
    int rc = run_script();
    if (write(p[1], tr.text, tr.len) != (ssize_t)tr.len)
      rc = 1;
    _exit(rc);
  }
  close(p[1]);
  size_t len = 0;
  ssize_t n;
  while ((n = read(p[0], out + len, size - 1 - len)) > 0)
    len += (size_t)n;
  out[len] = '\0';
  close(p[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---------------------------------------------------------------------------
 * The test.
 */

static char under_default[8192], under_rx[8192];

static void test_same_callbacks_as_default_loop(void **state) {
  (void)state;
  assert_int_equal(child(MODE_DEFAULT, under_default, sizeof(under_default)),
                   0);
  assert_int_equal(child(MODE_RX, under_rx, sizeof(under_rx)), 0);
  printf("under libvirt's default loop:\n%sunder rx:\n%s", under_default,
         under_rx);
  assert_string_equal(under_rx, under_default);
  /* What the script does, in order (libvirt-domain.h's event values). */
  static const char *const expected[] = {
      "test 3 0\n",    /* SUSPENDED PAUSED */
      "test 4 0\n",    /* RESUMED UNPAUSED */
      "test 5 1\n",    /* STOPPED DESTROYED */
      "test 2 0\n",    /* STARTED BOOTED */
      "rx-test 0 0\n", /* DEFINED ADDED */
      "rx-test 2 0\n", /* STARTED BOOTED */
      "rx-test 5 0\n", /* STOPPED SHUTDOWN */
      "rx-test 1 0\n", /* UNDEFINED REMOVED */
      "freed 1\n",
  };
  const char *at = under_rx;
  for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
    const char *found = strstr(at, expected[i]);
    if (found == NULL)
      fail_msg("'%.*s' missing, or out of order", (int)strlen(expected[i]) - 1,
               expected[i]);
    at = found + strlen(expected[i]);
  }
  assert_null(strstr(under_rx, "off the loop"));
}

/* ---------------------------------------------------------------------------
 * A throw-away libvirtd.
 */

#define LIBVIRTD "/usr/sbin/libvirtd"

static struct {
  char dir[64];
  char sock[96];
  char uri[160];
  pid_t pid;
} daemon_;

static void rm_tree(const char *dir) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

static int socket_ready(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  if (fd >= 0)
    close(fd);
  return ok;
}

static void daemon_launch(void);

/* Starts libvirtd; skips the test when it is not installed. */
static void daemon_start(void) {
  if (access(LIBVIRTD, X_OK) != 0) {
    printf("SKIP: no %s: install libvirt-daemon (scripts/deps.sh does as "
           "root)\n",
           LIBVIRTD);
    skip();
  }
  snprintf(daemon_.dir, sizeof(daemon_.dir), "/tmp/rx-libvirtd.XXXXXX");
  assert_non_null(mkdtemp(daemon_.dir));
  char conf[128], drivers[128], text[512];
  snprintf(conf, sizeof(conf), "%s/libvirtd.conf", daemon_.dir);
  snprintf(drivers, sizeof(drivers), "%s/drivers", daemon_.dir);
  assert_int_equal(mkdir(drivers, 0700), 0);
  snprintf(daemon_.sock, sizeof(daemon_.sock), "%s/libvirt-sock", daemon_.dir);
  snprintf(daemon_.uri, sizeof(daemon_.uri), "test+unix:///default?socket=%s",
           daemon_.sock);
  int n = snprintf(text, sizeof(text),
                   "unix_sock_dir = \"%s\"\n"
                   "unix_sock_rw_perms = \"0700\"\n"
                   "auth_unix_rw = \"none\"\n"
                   "auth_unix_ro = \"none\"\n"
                   "log_outputs = \"3:file:%s/log\"\n",
                   daemon_.dir, daemon_.dir);
  FILE *f = fopen(conf, "w");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  daemon_launch();
}

/* Starts libvirtd in the directory daemon_start() made (again, after it
 * was stopped: the same socket, the same URI) and waits for its socket. */
static void daemon_launch(void) {
  char conf[128], drivers[128];
  snprintf(conf, sizeof(conf), "%s/libvirtd.conf", daemon_.dir);
  snprintf(drivers, sizeof(drivers), "%s/drivers", daemon_.dir);
  unlink(daemon_.sock);
  fflush(NULL);
  daemon_.pid = fork();
  assert_true(daemon_.pid >= 0);
  if (daemon_.pid == 0) {
    char pidfile[128];
    snprintf(pidfile, sizeof(pidfile), "%s/pid", daemon_.dir);
    setenv("LIBVIRT_DRIVER_DIR", drivers, 1);
    if (chdir(daemon_.dir) != 0)
      _exit(127);
    execl(LIBVIRTD, "libvirtd", "--config", conf, "--pid-file", pidfile,
          (char *)NULL);
    _exit(127);
  }
  int64_t end = clock_ns() + 20000000000;
  while (!socket_ready(daemon_.sock)) {
    int status;
    if (waitpid(daemon_.pid, &status, WNOHANG) == daemon_.pid)
      fail_msg("libvirtd exited (status %d); see %s/log", status, daemon_.dir);
    if (clock_ns() > end)
      fail_msg("libvirtd's socket %s never answered", daemon_.sock);
    usleep(20000);
  }
}

static void daemon_stop(void) {
  if (daemon_.pid > 0) {
    kill(daemon_.pid, SIGCONT);
    kill(daemon_.pid, SIGKILL);
    waitpid(daemon_.pid, NULL, 0);
    daemon_.pid = 0;
  }
  if (daemon_.dir[0] != '\0') {
    rm_tree(daemon_.dir);
    daemon_.dir[0] = '\0';
  }
}

static int daemon_teardown(void **state) {
  (void)state;
  daemon_stop();
  return 0;
}

/* ---------------------------------------------------------------------------
 * Connections to it, from a child on rx.
 */

static struct {
  int closed; /* close callbacks */
  int reason; /* of the last one */
  int64_t closed_at;
} conn_state;

static void on_close(virConnectPtr conn, int reason, void *opaque) {
  (void)conn;
  (void)opaque;
  conn_state.closed++;
  conn_state.reason = reason;
  conn_state.closed_at = clock_ns();
}

static void stop_timer(rx_loop *l, rx_timer *w, int revents) {
  (void)l;
  (void)revents;
  *(int *)w->data = 1;
}

/* Runs the rx loop for `ms`, or until *until becomes non-zero. */
static void run_for(int ms, const int *until) {
  int expired = 0;
  rx_timer guard;
  rx_timer_init(&guard, stop_timer, RX_MSEC(ms), 0);
  guard.data = &expired;
  rx_now_update(loop);
  rx_timer_start(loop, &guard);
  while (!expired && (until == NULL || !*until))
    rx_run(loop, RX_RUN_ONCE);
  rx_timer_stop(loop, &guard);
}

/* Opens the daemon's URI on a fresh rx loop, with keepalive (1 s, 3) and
 * the close callback: the connection, or NULL with a message. */
static virConnectPtr open_on_rx(void) {
  tr.loop_thread = pthread_self();
  mode = MODE_RX;
  if (rx_loop_new(&loop, NULL) != 0 || rx_libvirt_register(loop, NULL) != 0)
    return NULL;
  virConnectPtr conn = virConnectOpen(daemon_.uri);
  if (conn == NULL) {
    fprintf(stderr, "virConnectOpen(%s): %s\n", daemon_.uri,
            virGetLastErrorMessage());
    return NULL;
  }
  if (virConnectSetKeepAlive(conn, 1, 3) != 0 ||
      virConnectRegisterCloseCallback(conn, on_close, NULL, NULL) != 0) {
    fprintf(stderr, "keepalive or close callback: %s\n",
            virGetLastErrorMessage());
    return NULL;
  }
  return conn;
}

/* Runs `scenario` in a child (libvirt's registration is per process). */
static void in_child(int (*scenario)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc = scenario();
    fflush(NULL);
    _exit(rc);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: %s failed (%s)\n", __FILE__, __LINE__, #cond, \
              virGetLastErrorMessage());                                    \
      return 1;                                                             \
    }                                                                       \
  } while (0)

static int events_over_socket(void) {
  virConnectPtr conn = open_on_rx();
  CHECK(conn != NULL);
  CHECK(virConnectDomainEventRegisterAny(
            conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            VIR_DOMAIN_EVENT_CALLBACK(lifecycle), NULL, NULL) >= 0);
  virDomainPtr dom = virDomainLookupByName(conn, "test");
  CHECK(dom != NULL);
  CHECK(virDomainSuspend(dom) == 0);
  CHECK(virDomainResume(dom) == 0);
  int two = 0;
  int64_t end = clock_ns() + 10000000000;
  while (tr.events < 2 && clock_ns() < end)
    run_for(50, &two);
  printf("over the socket:\n%s", tr.text);
  CHECK(strcmp(tr.text, "test 3 0\ntest 4 0\n") == 0);
  CHECK(tr.wrong_thread == 0);
  virDomainFree(dom);
  CHECK(virConnectClose(conn) >= 0);
  return 0;
}

static void test_events_over_socket(void **state) {
  (void)state;
  daemon_start();
  in_child(events_over_socket);
}

static int keepalive_idle(void) {
  virConnectPtr conn = open_on_rx();
  CHECK(conn != NULL);
  run_for(10000, &conn_state.closed);
  CHECK(conn_state.closed == 0);
  CHECK(virConnectIsAlive(conn) == 1);
  CHECK(virConnectClose(conn) >= 0);
  return 0;
}

static void test_keepalive_idle_stays_up(void **state) {
  (void)state;
  daemon_start();
  in_child(keepalive_idle);
}

static int keepalive_stopped_daemon(void) {
  virConnectPtr conn = open_on_rx();
  CHECK(conn != NULL);
  run_for(200, NULL);
  int64_t stopped = clock_ns();
  CHECK(kill(daemon_.pid, SIGSTOP) == 0);
  run_for(15000, &conn_state.closed);
  kill(daemon_.pid, SIGCONT);
  CHECK(conn_state.closed == 1);
  CHECK(conn_state.reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE);
  int64_t took = conn_state.closed_at - stopped;
  printf("closed for keepalive %.2f s after SIGSTOP\n", (double)took / 1e9);
  /* 4 s (interval 1 s x (count 3 + 1)) plus one interval; and one more
   * second for a busy machine. */
  CHECK(took <= 6000000000);
  virConnectClose(conn);
  return 0;
}

static void test_keepalive_closes_on_stopped_daemon(void **state) {
  (void)state;
  daemon_start();
  in_child(keepalive_stopped_daemon);
}

static int terminated_daemon(void) {
  virConnectPtr conn = open_on_rx();
  CHECK(conn != NULL);
  run_for(200, NULL);
  CHECK(kill(daemon_.pid, SIGTERM) == 0);
  run_for(10000, &conn_state.closed);
  CHECK(conn_state.closed == 1);
  printf("closed after SIGTERM, reason %d\n", conn_state.reason);
  /* libvirt reports a read error or the end of file, depending on how the
   * daemon's exit reaches the socket; not the keepalive. */
  CHECK(conn_state.reason == VIR_CONNECT_CLOSE_REASON_EOF ||
        conn_state.reason == VIR_CONNECT_CLOSE_REASON_ERROR);
  virConnectClose(conn);
  return 0;
}

static void test_close_callback_on_sigterm(void **state) {
  (void)state;
  daemon_start();
  in_child(terminated_daemon);
}

/* ---------------------------------------------------------------------------
 * examples/rx-virt-events against the daemon, which is stopped and started
 * again: it prints the events of both lives and reconnects in between.
 * Run by examples/meson.build, with the program's path in RXT_VIRT_EVENTS.
 */

/* How many times `what` occurs in the file `path`. */
static int occurrences(const char *path, const char *what) {
  static char buf[65536];
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  int count = 0;
  for (const char *p = buf; (p = strstr(p, what)) != NULL; p += strlen(what))
    count++;
  return count;
}

static int wait_for(const char *path, const char *what, int count) {
  int64_t end = clock_ns() + 20000000000;
  while (occurrences(path, what) < count && clock_ns() < end)
    usleep(20000);
  return occurrences(path, what) >= count;
}

/* Suspends the daemon's domain "test" from a child that runs no loop. */
static void suspend_test_domain(void) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    virConnectPtr c = virConnectOpen(daemon_.uri);
    virDomainPtr d = c != NULL ? virDomainLookupByName(c, "test") : NULL;
    int rc = d != NULL ? virDomainSuspend(d) : -1;
    if (rc < 0)
      fprintf(stderr, "suspend: %s\n", virGetLastErrorMessage());
    _exit(rc < 0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_example_reconnects(void **state) {
  (void)state;
  const char *prog = getenv("RXT_VIRT_EVENTS");
  if (prog == NULL)
    skip();
  daemon_start();
  char out[128], err[128];
  snprintf(out, sizeof(out), "%s/events.out", daemon_.dir);
  snprintf(err, sizeof(err), "%s/events.err", daemon_.dir);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (freopen(out, "w", stdout) == NULL || freopen(err, "w", stderr) == NULL)
      _exit(127);
    execl(prog, prog, "--interval", "1", "--count", "3", "--seconds", "60",
          daemon_.uri, (char *)NULL);
    _exit(127);
  }
  const char *suspended = "event 'lifecycle' for domain 'test': Suspended";
  int ok = wait_for(err, "connected to", 1);
  if (ok) {
    suspend_test_domain();
    ok = wait_for(out, suspended, 1);
  }
  if (ok) {
    /* The daemon's end, then a new one on the same socket. */
    kill(daemon_.pid, SIGTERM);
    waitpid(daemon_.pid, NULL, 0);
    daemon_.pid = 0;
    ok = wait_for(err, "connection closed", 1);
  }
  if (ok) {
    daemon_launch();
    ok = wait_for(err, "connected to", 2);
  }
  if (ok) {
    suspend_test_domain(); /* the new daemon's "test" runs again */
    ok = wait_for(out, suspended, 2);
  }
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  if (!ok) {
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "cat '%s' '%s'", out, err);
    if (system(cmd) != 0)
      fprintf(stderr, "cannot show %s\n", out);
    fail_msg("rx-virt-events did not see both lives of the daemon");
  }
}

int main(void) {
  /* The test driver is part of libvirt0 itself; nothing else is needed. */
  virConnectPtr probe = NULL;
  pid_t pid = fork();
  if (pid == 0) {
    probe = virConnectOpen("test:///default");
    _exit(probe != NULL ? 0 : 77);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    printf("SKIP: libvirt's test driver cannot be opened (install "
           "libvirt0 and libvirt-dev)\n");
    return 77;
  }
  if (getenv("RXT_VIRT_EVENTS") != NULL) {
    const struct CMUnitTest example[] = {
        cmocka_unit_test_teardown(test_example_reconnects, daemon_teardown),
    };
    return cmocka_run_group_tests(example, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_callbacks_as_default_loop),
      cmocka_unit_test_teardown(test_events_over_socket, daemon_teardown),
      cmocka_unit_test_teardown(test_keepalive_idle_stays_up, daemon_teardown),
      cmocka_unit_test_teardown(test_keepalive_closes_on_stopped_daemon,
                                daemon_teardown),
      cmocka_unit_test_teardown(test_close_callback_on_sigterm,
                                daemon_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
