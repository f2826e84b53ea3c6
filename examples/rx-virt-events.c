/*
 * rx-virt-events - prints every domain event of a libvirt connection, like
 * `virsh event --all --loop`, with libvirt running on an rx loop
 * (rx/libvirt.h): keepalive on, and a new connection whenever the old one
 * dies.
 *
 *   rx-virt-events [--interval S] [--count N] [--seconds S] URI
 *
 * --interval and --count set libvirt's keepalive (default 5 s, 3 probes: a
 * dead peer is noticed within about 20 s); --seconds stops after that long
 * (default: never). Each event is one line on stdout; what happens to the
 * connection goes to stderr.
 *
 * The shape of a program that uses libvirt on rx: register rx as libvirt's
 * loop before the first connection, and do from the loop what must not be
 * done inside libvirt's callbacks (here: closing the dead connection and
 * opening a new one, from an rx timer rather than the close callback).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "rx/libvirt.h"

static rx_loop *loop;
static const char *uri;
static int ka_interval = 5, ka_count = 3;
static virConnectPtr conn;
static rx_timer reconnect_timer;
static int64_t retry_delay = RX_SEC(1);

/* ---------------------------------------------------------------------------
 * The events: one callback per event id, each of the signature libvirt
 * gives that id, printing one line.
 */

static void line(virDomainPtr dom, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void line(virDomainPtr dom, const char *event, const char *fmt, ...) {
  printf("event '%s' for domain '%s'", event, virDomainGetName(dom));
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    fputs(": ", stdout);
    vprintf(fmt, ap);
    va_end(ap);
  }
  putchar('\n');
  fflush(stdout);
}

static const char *const lifecycle_names[] = {
    "Defined", "Undefined", "Started",     "Suspended", "Resumed",
    "Stopped", "Shutdown",  "PMSuspended", "Crashed",
};

static int on_lifecycle(virConnectPtr c, virDomainPtr dom, int event,
                        int detail, void *opaque) {
  (void)c, (void)opaque;
  int n = (int)(sizeof(lifecycle_names) / sizeof(lifecycle_names[0]));
  if (event >= 0 && event < n)
    line(dom, "lifecycle", "%s %d", lifecycle_names[event], detail);
  else
    line(dom, "lifecycle", "%d %d", event, detail);
  return 0;
}

#define PLAIN(fn, name)                                            \
  static int fn(virConnectPtr c, virDomainPtr dom, void *opaque) { \
    (void)c, (void)opaque;                                         \
    line(dom, name, NULL);                                         \
    return 0;                                                      \
  }
PLAIN(on_reboot, "reboot")
PLAIN(on_control_error, "control-error")
#undef PLAIN

static int on_rtc_change(virConnectPtr c, virDomainPtr dom, long long offset,
                         void *opaque) {
  (void)c, (void)opaque;
  line(dom, "rtc-change", "%lld", offset);
  return 0;
}

/* Events that carry one int (an action, a reason, an iteration). */
#define ONE_INT(fn, name)                                                 \
  static int fn(virConnectPtr c, virDomainPtr dom, int v, void *opaque) { \
    (void)c, (void)opaque;                                                \
    line(dom, name, "%d", v);                                             \
    return 0;                                                             \
  }
ONE_INT(on_watchdog, "watchdog")
ONE_INT(on_pmwakeup, "pm-wakeup")
ONE_INT(on_pmsuspend, "pm-suspend")
ONE_INT(on_pmsuspend_disk, "pm-suspend-disk")
ONE_INT(on_migration_iteration, "migration-iteration")
#undef ONE_INT

/* Events that carry a device alias. */
#define ALIAS(fn, name)                                               \
  static int fn(virConnectPtr c, virDomainPtr dom, const char *alias, \
                void *opaque) {                                       \
    (void)c, (void)opaque;                                            \
    line(dom, name, "%s", alias);                                     \
    return 0;                                                         \
  }
ALIAS(on_device_removed, "device-removed")
ALIAS(on_device_added, "device-added")
ALIAS(on_device_removal_failed, "device-removal-failed")
#undef ALIAS

static int on_io_error(virConnectPtr c, virDomainPtr dom, const char *src,
                       const char *dev, int action, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "io-error", "%s (%s) %d", src, dev, action);
  return 0;
}

static int on_io_error_reason(virConnectPtr c, virDomainPtr dom,
                              const char *src, const char *dev, int action,
                              const char *reason, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "io-error-reason", "%s (%s) %d: %s", src, dev, action, reason);
  return 0;
}

static int on_graphics(virConnectPtr c, virDomainPtr dom, int phase,
                       const virDomainEventGraphicsAddress *local,
                       const virDomainEventGraphicsAddress *remote,
                       const char *scheme,
                       const virDomainEventGraphicsSubject *subject,
                       void *opaque) {
  (void)c, (void)local, (void)subject, (void)opaque;
  line(dom, "graphics", "phase %d, %s from %s", phase, scheme,
       remote != NULL && remote->node != NULL ? remote->node : "?");
  return 0;
}

static int on_block_job(virConnectPtr c, virDomainPtr dom, const char *disk,
                        int type, int status, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "block-job", "%s type %d status %d", disk, type, status);
  return 0;
}

static int on_disk_change(virConnectPtr c, virDomainPtr dom, const char *old,
                          const char *new_, const char *alias, int reason,
                          void *opaque) {
  (void)c, (void)opaque;
  line(dom, "disk-change", "%s: %s -> %s (%d)", alias, old ? old : "",
       new_ ? new_ : "", reason);
  return 0;
}

static int on_tray_change(virConnectPtr c, virDomainPtr dom, const char *alias,
                          int reason, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "tray-change", "%s %d", alias, reason);
  return 0;
}

static int on_balloon_change(virConnectPtr c, virDomainPtr dom,
                             unsigned long long actual, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "balloon-change", "%llu KiB", actual);
  return 0;
}

static int on_params(virConnectPtr c, virDomainPtr dom,
                     virTypedParameterPtr params, int n, void *opaque) {
  (void)c, (void)params;
  line(dom, (const char *)opaque, "%d parameters", n);
  return 0;
}

static int on_agent_lifecycle(virConnectPtr c, virDomainPtr dom, int state,
                              int reason, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "agent-lifecycle", "%d %d", state, reason);
  return 0;
}

static int on_metadata_change(virConnectPtr c, virDomainPtr dom, int type,
                              const char *nsuri, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "metadata-change", "%d %s", type, nsuri ? nsuri : "");
  return 0;
}

static int on_block_threshold(virConnectPtr c, virDomainPtr dom,
                              const char *dev, const char *path,
                              unsigned long long threshold,
                              unsigned long long excess, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "block-threshold", "%s (%s) %llu +%llu", dev, path ? path : "",
       threshold, excess);
  return 0;
}

static int on_memory_failure(virConnectPtr c, virDomainPtr dom, int recipient,
                             int action, unsigned int flags, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "memory-failure", "%d %d %u", recipient, action, flags);
  return 0;
}

static int on_memory_device_size_change(virConnectPtr c, virDomainPtr dom,
                                        const char *alias,
                                        unsigned long long size, void *opaque) {
  (void)c, (void)opaque;
  line(dom, "memory-device-size-change", "%s %llu KiB", alias, size);
  return 0;
}

static const struct {
  int id;
  virConnectDomainEventGenericCallback cb;
  const char *opaque; /* for callbacks shared by two ids */
} events[] = {
#define E(id, fn) \
  { id, VIR_DOMAIN_EVENT_CALLBACK(fn), NULL }
    E(VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle),
    E(VIR_DOMAIN_EVENT_ID_REBOOT, on_reboot),
    E(VIR_DOMAIN_EVENT_ID_RTC_CHANGE, on_rtc_change),
    E(VIR_DOMAIN_EVENT_ID_WATCHDOG, on_watchdog),
    E(VIR_DOMAIN_EVENT_ID_IO_ERROR, on_io_error),
    E(VIR_DOMAIN_EVENT_ID_GRAPHICS, on_graphics),
    E(VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON, on_io_error_reason),
    E(VIR_DOMAIN_EVENT_ID_CONTROL_ERROR, on_control_error),
    E(VIR_DOMAIN_EVENT_ID_BLOCK_JOB, on_block_job),
    E(VIR_DOMAIN_EVENT_ID_DISK_CHANGE, on_disk_change),
    E(VIR_DOMAIN_EVENT_ID_TRAY_CHANGE, on_tray_change),
    E(VIR_DOMAIN_EVENT_ID_PMWAKEUP, on_pmwakeup),
    E(VIR_DOMAIN_EVENT_ID_PMSUSPEND, on_pmsuspend),
    E(VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE, on_balloon_change),
    E(VIR_DOMAIN_EVENT_ID_PMSUSPEND_DISK, on_pmsuspend_disk),
    E(VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_device_removed),
    E(VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, on_block_job),
    {VIR_DOMAIN_EVENT_ID_TUNABLE, VIR_DOMAIN_EVENT_CALLBACK(on_params),
     "tunable"},
    E(VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, on_agent_lifecycle),
    E(VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, on_device_added),
    E(VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, on_migration_iteration),
    {VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, VIR_DOMAIN_EVENT_CALLBACK(on_params),
     "job-completed"},
    E(VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED, on_device_removal_failed),
    E(VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, on_metadata_change),
    E(VIR_DOMAIN_EVENT_ID_BLOCK_THRESHOLD, on_block_threshold),
    E(VIR_DOMAIN_EVENT_ID_MEMORY_FAILURE, on_memory_failure),
    E(VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE,
      on_memory_device_size_change),
#undef E
};
#define NEVENTS (sizeof(events) / sizeof(events[0]))
static int callback_ids[NEVENTS];

/* ---------------------------------------------------------------------------
 * The connection: opened, watched, and opened again when it dies.
 */

static void schedule_reconnect(void) {
  rx_timer_stop(loop, &reconnect_timer);
  rx_timer_set(&reconnect_timer, retry_delay, 0);
  rx_now_update(loop);
  rx_timer_start(loop, &reconnect_timer);
}

/* libvirt's close callback: runs inside libvirt, which must not be asked
 * to close the connection from here; the timer does it from the loop. */
static void on_close(virConnectPtr c, int reason, void *opaque) {
  (void)c, (void)opaque;
  static const char *const reasons[] = {"error", "end of file", "keepalive",
                                        "client"};
  fprintf(stderr, "rx-virt-events: connection closed (%s); reconnecting\n",
          reason >= 0 && reason < 4 ? reasons[reason] : "?");
  retry_delay = RX_SEC(1);
  schedule_reconnect();
}

static void drop_connection(void) {
  if (conn == NULL)
    return;
  for (size_t i = 0; i < NEVENTS; i++) {
    if (callback_ids[i] >= 0)
      virConnectDomainEventDeregisterAny(conn, callback_ids[i]);
    callback_ids[i] = -1;
  }
  virConnectUnregisterCloseCallback(conn, on_close);
  virConnectClose(conn);
  conn = NULL;
}

static int connect_once(void) {
  conn = virConnectOpenAuth(uri, virConnectAuthPtrDefault, 0);
  if (conn == NULL)
    return -1;
  /* Fails, or returns 1, for a driver without keepalive: a local one,
   * which has no peer to lose. */
  int keepalive = virConnectSetKeepAlive(conn, ka_interval, (unsigned)ka_count);
  if (virConnectRegisterCloseCallback(conn, on_close, NULL, NULL) < 0) {
    drop_connection();
    return -1;
  }
  int registered = 0;
  for (size_t i = 0; i < NEVENTS; i++) {
    callback_ids[i] = virConnectDomainEventRegisterAny(
        conn, NULL, events[i].id, events[i].cb, (void *)events[i].opaque, NULL);
    registered += callback_ids[i] >= 0;
  }
  if (registered == 0) {
    drop_connection();
    return -1;
  }
  fprintf(stderr, "rx-virt-events: connected to %s (keepalive %s)\n", uri,
          keepalive == 0 ? "on" : "not supported by the driver");
  return 0;
}

static void on_reconnect(rx_loop *l, rx_timer *w, int revents) {
  (void)l, (void)w, (void)revents;
  drop_connection();
  if (connect_once() == 0)
    return;
  fprintf(stderr, "rx-virt-events: cannot connect to %s: %s; again in %d s\n",
          uri, virGetLastErrorMessage(), (int)(retry_delay / RX_SEC(1)));
  schedule_reconnect();
  if (retry_delay < RX_SEC(16))
    retry_delay *= 2;
}

static void on_deadline(rx_loop *l, rx_timer *w, int revents) {
  (void)w, (void)revents;
  rx_break(l, RX_BREAK_ALL);
}

/* libvirt prints every error by default; this program says what matters
 * itself, with virGetLastErrorMessage(). */
static void quiet(void *opaque, virErrorPtr err) {
  (void)opaque, (void)err;
}

static void usage(void) {
  fprintf(stderr, "usage: rx-virt-events [--interval S] [--count N] "
                  "[--seconds S] URI\n");
  exit(2);
}

int main(int argc, char **argv) {
  double seconds = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
      ka_interval = atoi(argv[++i]);
    else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
      ka_count = atoi(argv[++i]);
    else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (argv[i][0] == '-' || uri != NULL)
      usage();
    else
      uri = argv[i];
  }
  if (uri == NULL || ka_interval <= 0 || ka_count < 0 || seconds < 0)
    usage();
  virSetErrorFunc(NULL, quiet);
  for (size_t i = 0; i < NEVENTS; i++)
    callback_ids[i] = -1;
  int rc = rx_loop_new(&loop, NULL);
  if (rc == 0)
    rc = rx_libvirt_register(loop, NULL);
  if (rc != 0) {
    fprintf(stderr, "rx-virt-events: %s\n", rx_strerror(rc));
    return 1;
  }
  rx_timer_init(&reconnect_timer, on_reconnect, 0, 0);
  rx_timer deadline;
  if (seconds > 0) {
    rx_timer_init(&deadline, on_deadline, (int64_t)(seconds * 1e9), 0);
    rx_timer_start(loop, &deadline);
  }
  /* The first attempt at once, the rest from the reconnect timer. */
  rx_timer_start(loop, &reconnect_timer);
  /* The loop holds a reference while nothing else does (between a dead
   * connection and its successor, every handle may be gone). */
  rx_ref(loop);
  rc = rx_run(loop, RX_RUN_DEFAULT);
  rx_unref(loop);
  rx_timer_stop(loop, &reconnect_timer);
  drop_connection();
  rx_libvirt_unregister();
  rx_loop_free(loop);
  return rc < 0 ? 1 : 0;
}
