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
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_callbacks_as_default_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
