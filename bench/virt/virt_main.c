/*
 * bench/virt/virt_main.c - libvirt's event API through libvirt's public
 * functions (virEventAddHandle() and its five siblings), on rx and on
 * libvirt's default implementation. One source, two executables, because
 * libvirt's registration is for the whole process and cannot be undone:
 *
 *   virt_rx       rx_libvirt_register() on an rx loop run by rx_run()
 *                 ($RX_BACKEND picks the backend, as everywhere)
 *   virt_libvirt  virEventRegisterDefaultImpl() run by
 *                 virEventRunDefaultImpl() (libvirt 9.0: a GLib main loop)
 *
 *   virt_<impl> update|timers [--quick]
 *
 * runs one workload once and prints CSV rows
 * workload,library,backend,metric,value,unit on stdout, as the executables
 * of bench/peers do (bench/peers/run.py runs both several times and puts
 * them side by side). Both workloads first register, through libvirt's
 * functions, N_HANDLES handles (eventfds that never become readable,
 * watched for VIR_EVENT_HANDLE_READABLE) and N_TIMEOUTS timeouts, and all
 * the work is done on the loop's thread, from a timeout's callback, while
 * the loop runs.
 *
 *   update  the timeouts' periods are 30-60 s (none fires). A driver
 *           timeout of DRIVER_MS runs a sequence of rounds: an idle round
 *           (nothing), a handle round (every handle's events flipped to 0,
 *           then every handle back to READABLE: libvirt's RPC client does
 *           that about twice per call), an idle round, a timeout round
 *           (every timeout updated to a new period, then every timeout
 *           updated to that same period again, which restarts it: the
 *           keepalive does that on every message), and again. A round's
 *           calls are timed together, with CLOCK_MONOTONIC around the
 *           batch: update_handle_ns and update_timeout_ns are the median
 *           round's ns per call. A loop may defer work to its next
 *           iteration (rx applies interest changes lazily, before it waits;
 *           libvirt's GLib loop unrefs the old sources from idle
 *           callbacks), so the loop thread's CPU time from one driver
 *           callback to the next is measured too: *_loop_ns is the median
 *           update round's CPU time less the median idle round's, per call
 *           (the call and everything the loop did because of it).
 *           idle_round_us is the median idle round's CPU time: one wait
 *           and wake-up of a loop holding the 2,000 entries.
 *   timers  the timeouts' periods are 1-100 ms (whole ms, fixed seed) and
 *           they run for TIMERS_SECONDS. Each callback reads
 *           CLOCK_MONOTONIC; a fire's lateness is that time less the
 *           previous fire's (or, for the first, the time read just before
 *           the add) less the period. A negative lateness is an early
 *           fire: counted in `early`, and the earliest in early_max_us.
 *           Metrics: fires, late_p50_us, late_p99_us, late_max_us, early,
 *           early_max_us.
 *
 * A watchdog (alarm) ends a hung run with exit status 3, as bench/peers'.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#ifdef VIRT_RX
#include "rx/libvirt.h"
#endif

enum {
  N_HANDLES = 1000,
  N_TIMEOUTS = 1000,
  DRIVER_MS = 20, /* the driver timeout's period in the update workload */
};

static int rounds = 40;             /* update: handle and timeout rounds */
static double timers_seconds = 4.0; /* timers: how long they run */
static const char *workload = "";
static char backend[32] = "glib";

#ifdef VIRT_RX
static const char library[] = "rx";
static rx_loop *loop;
#else
static const char library[] = "libvirt";
#endif
static int done;

static void report(const char *metric, double value, const char *unit) {
  printf("virt_%s,%s,%s,%s,%.6g,%s\n", workload, library, backend, metric,
         value, unit);
}

static int fail(const char *what) {
  fprintf(stderr, "virt_%s %s: %s\n", library, workload, what);
  return -1;
}

static int64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void) {
  return clock_ns(CLOCK_MONOTONIC);
}

static int64_t cpu_ns(void) {
  return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* splitmix64: the same sequence for both implementations. */
static uint64_t seed = 0x9e3779b97f4a7c15u;
static uint64_t next_random(void) {
  uint64_t z = (seed += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of v[0..n-1] (sorts v). */
static double median(int64_t *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_i64);
  return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static double median_double(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ---------------------------------------------------------------------------
 * The implementation: registering it, running it, stopping it.
 */

static int impl_register(void) {
  if (virInitialize() < 0)
    return fail("virInitialize failed");
#ifdef VIRT_RX
  int rc = rx_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "rx_loop_new: %s\n", rx_strerror(rc));
    return -1;
  }
  snprintf(backend, sizeof backend, "%s", rx_backend_name(loop));
  rc = rx_libvirt_register(loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "rx_libvirt_register: %s\n", rx_strerror(rc));
    return -1;
  }
#else
  if (virEventRegisterDefaultImpl() < 0)
    return fail("virEventRegisterDefaultImpl failed");
#endif
  return 0;
}

static void impl_run(void) {
#ifdef VIRT_RX
  rx_run(loop, RX_RUN_DEFAULT);
#else
  while (!done)
    virEventRunDefaultImpl();
#endif
}

/* From a callback: impl_run() returns once the callback has. */
static void impl_stop(void) {
  done = 1;
#ifdef VIRT_RX
  rx_break(loop, RX_BREAK_ALL);
#endif
}

/* ---------------------------------------------------------------------------
 * The entries every workload registers.
 */

static int handle_fd[N_HANDLES];
static int handle_id[N_HANDLES];
static int timeout_id[N_TIMEOUTS];
static long handle_fires;

static void on_handle(int watch, int fd, int events, void *opaque) {
  (void)watch, (void)fd, (void)events, (void)opaque;
  handle_fires++; /* never: the eventfds stay at 0 */
}

static int add_handles(void) {
  for (int i = 0; i < N_HANDLES; i++) {
    handle_fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (handle_fd[i] < 0)
      return fail("eventfd failed");
    handle_id[i] = virEventAddHandle(handle_fd[i], VIR_EVENT_HANDLE_READABLE,
                                     on_handle, NULL, NULL);
    if (handle_id[i] <= 0)
      return fail("virEventAddHandle failed");
  }
  return 0;
}

/* ---------------------------------------------------------------------------
 * update
 */

enum { KIND_WARM, KIND_IDLE, KIND_HANDLES, KIND_TIMEOUTS, KIND_END };

static int period_ms[N_TIMEOUTS];
static int step, steps;
static int last_kind = -1;
static int64_t last_cpu;
/* Per round: ns per call (the calls alone) and the CPU time from the
 * round's driver callback to the next. */
static double *call_ns[KIND_END];
static int64_t *round_cpu[KIND_END];
static int n_call[KIND_END], n_round[KIND_END];

static void on_idle_timeout(int timer, void *opaque) {
  (void)timer, (void)opaque;
}

/* The kind of step s: a few warm-up rounds, then idle, handles, idle,
 * timeouts, and again. */
static int kind_of(int s) {
  static const int cycle[4] = {KIND_IDLE, KIND_HANDLES, KIND_IDLE,
                               KIND_TIMEOUTS};
  return s < 4 ? KIND_WARM : cycle[(s - 4) % 4];
}

static void handle_round(void) {
  int64_t t0 = now_ns();
  for (int i = 0; i < N_HANDLES; i++)
    virEventUpdateHandle(handle_id[i], 0);
  for (int i = 0; i < N_HANDLES; i++)
    virEventUpdateHandle(handle_id[i], VIR_EVENT_HANDLE_READABLE);
  int64_t t1 = now_ns();
  call_ns[KIND_HANDLES][n_call[KIND_HANDLES]++] =
      (double)(t1 - t0) / (2 * N_HANDLES);
}

static void timeout_round(int parity) {
  /* A new period (alternately 1 s more and back), then the same again. */
  int64_t t0 = now_ns();
  for (int i = 0; i < N_TIMEOUTS; i++)
    virEventUpdateTimeout(timeout_id[i], period_ms[i] + parity * 1000);
  for (int i = 0; i < N_TIMEOUTS; i++)
    virEventUpdateTimeout(timeout_id[i], period_ms[i] + parity * 1000);
  int64_t t1 = now_ns();
  call_ns[KIND_TIMEOUTS][n_call[KIND_TIMEOUTS]++] =
      (double)(t1 - t0) / (2 * N_TIMEOUTS);
}

static void on_driver(int timer, void *opaque) {
  (void)timer, (void)opaque;
  int64_t cpu = cpu_ns();
  if (last_kind >= 0 && last_kind != KIND_WARM)
    round_cpu[last_kind][n_round[last_kind]++] = cpu - last_cpu;
  if (step == steps) {
    impl_stop();
    return;
  }
  int kind = kind_of(step);
  if (kind == KIND_HANDLES)
    handle_round();
  else if (kind == KIND_TIMEOUTS)
    timeout_round(n_call[KIND_TIMEOUTS] % 2 == 0);
  last_kind = kind;
  last_cpu = cpu;
  step++;
}

static int run_update(void) {
  if (add_handles() < 0)
    return -1;
  for (int i = 0; i < N_TIMEOUTS; i++) {
    period_ms[i] = 30000 + (int)(next_random() % 30000);
    timeout_id[i] =
        virEventAddTimeout(period_ms[i], on_idle_timeout, NULL, NULL);
    if (timeout_id[i] <= 0)
      return fail("virEventAddTimeout failed");
  }
  steps = 4 + 4 * rounds;
  for (int k = 0; k < KIND_END; k++) {
    call_ns[k] = calloc((size_t)steps, sizeof(double));
    round_cpu[k] = calloc((size_t)steps, sizeof(int64_t));
    if (call_ns[k] == NULL || round_cpu[k] == NULL)
      return fail("out of memory");
  }
  if (virEventAddTimeout(DRIVER_MS, on_driver, NULL, NULL) <= 0)
    return fail("virEventAddTimeout failed");
  impl_run();
  if (handle_fires != 0)
    return fail("a handle fired: its eventfd was never written");
  if (n_round[KIND_IDLE] < 2 || n_round[KIND_HANDLES] < 1 ||
      n_round[KIND_TIMEOUTS] < 1)
    return fail("the rounds did not run");

  double idle = median(round_cpu[KIND_IDLE], n_round[KIND_IDLE]);
  double handles = median(round_cpu[KIND_HANDLES], n_round[KIND_HANDLES]);
  double timeouts = median(round_cpu[KIND_TIMEOUTS], n_round[KIND_TIMEOUTS]);
  report("update_handle_ns",
         median_double(call_ns[KIND_HANDLES], n_call[KIND_HANDLES]), "ns/call");
  report("update_timeout_ns",
         median_double(call_ns[KIND_TIMEOUTS], n_call[KIND_TIMEOUTS]),
         "ns/call");
  report("update_handle_loop_ns", (handles - idle) / (2 * N_HANDLES),
         "ns/call");
  report("update_timeout_loop_ns", (timeouts - idle) / (2 * N_TIMEOUTS),
         "ns/call");
  report("idle_round_us", idle / 1e3, "us");
  return 0;
}

/* ---------------------------------------------------------------------------
 * timers
 */

static int64_t period_ns[N_TIMEOUTS];
static int64_t last_fire[N_TIMEOUTS];
static int64_t *late;
static size_t n_late, max_late;

static void on_tick(int timer, void *opaque) {
  (void)timer;
  int64_t now = now_ns();
  size_t i = (size_t)(uintptr_t)opaque;
  if (n_late < max_late)
    late[n_late++] = now - last_fire[i] - period_ns[i];
  last_fire[i] = now;
}

static void on_end(int timer, void *opaque) {
  (void)timer, (void)opaque;
  impl_stop();
}

static int64_t quantile(const int64_t *sorted, size_t n, double q) {
  size_t k = (size_t)(q * (double)(n - 1) + 0.5);
  return sorted[k < n ? k : n - 1];
}

static int run_timers(void) {
  if (add_handles() < 0)
    return -1;
  /* Every fire is stored: at most seconds / period + 1 per timeout. */
  max_late = 0;
  for (int i = 0; i < N_TIMEOUTS; i++) {
    int ms = 1 + (int)(next_random() % 100);
    period_ns[i] = (int64_t)ms * 1000000;
    max_late += (size_t)(timers_seconds * 1000 / ms) + 2;
  }
  late = malloc(max_late * sizeof *late);
  if (late == NULL)
    return fail("out of memory");
  for (int i = 0; i < N_TIMEOUTS; i++) {
    last_fire[i] = now_ns();
    timeout_id[i] = virEventAddTimeout((int)(period_ns[i] / 1000000), on_tick,
                                       (void *)(uintptr_t)i, NULL);
    if (timeout_id[i] <= 0)
      return fail("virEventAddTimeout failed");
  }
  if (virEventAddTimeout((int)(timers_seconds * 1000), on_end, NULL, NULL) <= 0)
    return fail("virEventAddTimeout failed");
  impl_run();
  if (n_late == 0)
    return fail("no timeout fired");

  size_t early = 0;
  for (size_t k = 0; k < n_late; k++)
    early += late[k] < 0;
  qsort(late, n_late, sizeof *late, cmp_i64);
  report("fires", (double)n_late, "fires");
  report("late_p50_us", quantile(late, n_late, 0.50) / 1e3, "us");
  report("late_p99_us", quantile(late, n_late, 0.99) / 1e3, "us");
  report("late_max_us", late[n_late - 1] / 1e3, "us");
  report("early", (double)early, "fires");
  report("early_max_us", late[0] < 0 ? -late[0] / 1e3 : 0.0, "us");
  return 0;
}

/* ---------------------------------------------------------------------------
 * main
 */

static void watchdog(int sig) {
  (void)sig;
  static const char msg[] = "virt: watchdog: the run hung\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s update|timers [--quick]\n", argv0);
}

int main(int argc, char **argv) {
  int (*run)(void) = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      rounds = 10;
      timers_seconds = 1.0;
    } else if (strcmp(argv[i], "update") == 0) {
      run = run_update;
      workload = argv[i];
    } else if (strcmp(argv[i], "timers") == 0) {
      run = run_timers;
      workload = argv[i];
    } else {
      usage(argv[0]);
      return 2;
    }
  }
  if (run == NULL) {
    usage(argv[0]);
    return 2;
  }
  signal(SIGALRM, watchdog);
  alarm(60);
  if (impl_register() < 0)
    return 1;
  int rc = run();
  fflush(stdout);
  return rc < 0 ? 1 : 0;
}
