/*
 * bench/peers/peer_main.c - the peer benchmark's driver: parses the command
 * line, runs one workload of the library this executable was linked with,
 * and holds everything the workloads share (peer.h): sizes, random
 * sequences, measurements and the ping_pongs client. No library's code is
 * called from here, so every library's figure includes exactly the same
 * extra work.
 */
#include "peer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct peer_params P = {
    .loop_seconds = 1.0,
    .timers = 1000000,
    .max_delay_ms = 1000,
    .churn_timers = 100000,
    .churn_rearms = 10000000,
    .pipes = 1000,
    .pipe_active = 100,
    .pipe_writes = 1000,
    .pipe_runs = 25,
    .async_sends = 10000000,
    .ts_active = 10000,
    .ts_batch = 4096,
    .ts_batches = 200,
    .asp_sends = 20000000,
    .lpp_trips = 100000,
    .pp_conns = 100,
    .pp_size = 64,
    .pp_seconds = 3.0,
};

/* --quick: the same workloads, smaller, for `make bench QUICK=1`. */
static void quick(void) {
  P.loop_seconds = 0.3;
  P.timers = 200000;
  P.churn_rearms = 2000000;
  P.pipe_runs = 5;
  P.async_sends = 1000000;
  P.ts_batches = 50;
  P.asp_sends = 5000000;
  P.lpp_trips = 20000;
  P.pp_seconds = 1.0;
}

static const char *workload_name;
static char workload_label[64];
static const char *backend_name;
/* peer_library, or "<peer_library>-ops" with --ops. */
static char library_name[64];

void peer_report(const char *metric, double value, const char *unit) {
  printf("%s,%s,%s,%s,%.6g,%s\n", workload_label, library_name, backend_name,
         metric, value, unit);
}

int peer_fail(const char *what) {
  fprintf(stderr, "peer_%s %s: %s\n", library_name, workload_label, what);
  return -1;
}

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t peer_now_ns(void) {
  return clock_ns(CLOCK_MONOTONIC);
}
uint64_t peer_cpu_ns(void) {
  return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}
uint64_t peer_thread_cpu_ns(void) {
  return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* One helper thread at a time is all any workload needs. */
static pthread_t helper;

int peer_thread(void *(*fn)(void *), void *arg) {
  return pthread_create(&helper, NULL, fn, arg) == 0 ? 0 : -1;
}

void peer_join(void) {
  pthread_join(helper, NULL);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static uint64_t median(uint64_t *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_u64);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The resident set now, in bytes (/proc/self/statm's second field). */
static uint64_t rss_now(void) {
  unsigned long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---------------------------------------------------------------------------
 * million_timers
 */

uint16_t *peer_mt_delay_ms;
static uint64_t *mt_seen; /* a bit per timer, set when it fires */
static uint64_t mt_t0, mt_cpu0, mt_cpu1, mt_rss0;
static uint64_t mt_late_sum, mt_late_max, mt_run0, mt_late_steady;
static uint64_t mt_wake_late;

/* The machine's own share of lateness: the worst overshoot of a plain
 * sleep of rx's default tick (2^19 ns), 1,000 times, in this process just
 * before the workload. No loop that sleeps can wake more punctually. */
static void mt_wake_floor(void) {
  for (int i = 0; i < 1000; i++) {
    struct timespec d = {0, 1 << 19};
    uint64_t t = peer_now_ns();
    nanosleep(&d, NULL);
    uint64_t late = peer_now_ns() - t - (1u << 19);
    if (late > mt_wake_late)
      mt_wake_late = late;
  }
}
static uint32_t mt_fired, mt_early, mt_twice;

/* The delays and the fired-once bits exist before the baseline, so only
 * the library's own memory counts as the timers' RSS. Both are kept small
 * (2 and 0.125 bytes per timer), so that the work every callback does here
 * stays in cache and weighs little beside the library's own. */
static int mt_prepare(void) {
  uint64_t s = PEER_SEED;
  peer_mt_delay_ms = malloc(P.timers * sizeof *peer_mt_delay_ms);
  mt_seen = calloc(P.timers / 64 + 1, sizeof *mt_seen);
  if (!peer_mt_delay_ms || !mt_seen)
    return -1;
  for (uint32_t i = 0; i < P.timers; i++) {
    peer_mt_delay_ms[i] = (uint16_t)(1 + peer_rand(&s) % P.max_delay_ms);
  }
  mt_wake_floor();
  mt_rss0 = rss_now();
  return 0;
}

/* The volatile stores keep the compiler from turning malloc + memset into
 * calloc, which would leave fresh pages untouched. */
void *peer_alloc(size_t size) {
  volatile char *p = malloc(size);
  if (!p)
    return NULL;
  for (size_t i = 0; i < size; i += 4096)
    p[i] = 0;
  return memset((char *)p, 0, size);
}

void peer_mt_begin(void) {
  mt_t0 = peer_now_ns();
  mt_cpu0 = peer_cpu_ns();
}

/* Timers due while the program was still starting them cannot fire on
 * time, and the first iterations fire that backlog. The steady lateness
 * counts only timers due this long after the loop began to run. */
#define MT_STEADY_NS (100 * UINT64_C(1000000))

void peer_mt_started(void) {
  mt_cpu1 = peer_cpu_ns();
  mt_run0 = peer_now_ns();
}

void peer_mt_fired(uint32_t i) {
  uint64_t now = peer_now_ns();
  uint64_t due = mt_t0 + (uint64_t)peer_mt_delay_ms[i] * 1000000u;
  if (now < due) {
    mt_early++;
  } else {
    mt_late_sum += now - due;
    if (now - due > mt_late_max)
      mt_late_max = now - due;
    if (due >= mt_run0 + MT_STEADY_NS && now - due > mt_late_steady)
      mt_late_steady = now - due;
  }
  if (mt_seen[i / 64] & (UINT64_C(1) << (i % 64)))
    mt_twice++;
  mt_seen[i / 64] |= UINT64_C(1) << (i % 64);
  mt_fired++;
}

int peer_mt_end(void) {
  uint64_t cpu2 = peer_cpu_ns();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  if (mt_twice)
    return peer_fail("a timer fired twice");
  for (uint32_t i = 0; i < P.timers; i++)
    if (!(mt_seen[i / 64] & (UINT64_C(1) << (i % 64))))
      return peer_fail("a timer never fired");
  uint64_t peak = (uint64_t)ru.ru_maxrss * 1024;
  uint32_t on_time = P.timers - mt_early;
  peer_report("start_ns", (double)(mt_cpu1 - mt_cpu0) / P.timers, "ns");
  peer_report("cpu_per_fire_ns", (double)(cpu2 - mt_cpu1) / mt_fired, "ns");
  peer_report("peak_rss_mb", (double)peak / (1024 * 1024), "MB");
  peer_report("rss_per_timer_b",
              peak > mt_rss0 ? (double)(peak - mt_rss0) / P.timers : 0, "B");
  peer_report("late_mean_us",
              on_time ? (double)mt_late_sum / on_time / 1000 : 0, "us");
  peer_report("late_max_us", (double)mt_late_max / 1000, "us");
  peer_report("late_max_steady_us", (double)mt_late_steady / 1000, "us");
  peer_report("wake_late_max_us", (double)mt_wake_late / 1000, "us");
  peer_report("early", mt_early, "timers");
  return 0;
}

/* ---------------------------------------------------------------------------
 * timer_churn
 */

uint64_t peer_churn_state;
static uint64_t churn_cpu0;

uint32_t peer_churn_initial_ms(uint32_t i) {
  uint64_t s = PEER_SEED ^ i;
  return 10000 + (uint32_t)(peer_rand(&s) % 50001);
}

void peer_churn_begin(void) {
  peer_churn_state = PEER_SEED;
  churn_cpu0 = peer_thread_cpu_ns();
}

int peer_churn_end(void) {
  uint64_t cpu = peer_thread_cpu_ns() - churn_cpu0;
  peer_report("rearm_ns", (double)cpu / (double)P.churn_rearms, "ns");
  return 0;
}

/* ---------------------------------------------------------------------------
 * pipe_chain
 */

int *peer_pipe_fd;
static int pipe_count, pipe_fired, pipe_writes;

int peer_pipe_open(void) {
  struct rlimit rl;
  rlim_t need = (rlim_t)P.pipes * 2 + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
      return peer_fail("RLIMIT_NOFILE's hard limit is too low for --pipes");
  }
  peer_pipe_fd = malloc((size_t)P.pipes * 2 * sizeof *peer_pipe_fd);
  if (!peer_pipe_fd)
    return peer_fail("out of memory");
  for (int i = 0; i < P.pipes; i++) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   &peer_pipe_fd[2 * i]) < 0) {
      while (i-- > 0) {
        close(peer_pipe_fd[2 * i]);
        close(peer_pipe_fd[2 * i + 1]);
      }
      free(peer_pipe_fd);
      peer_pipe_fd = NULL;
      return peer_fail("socketpair failed");
    }
  }
  return 0;
}

void peer_pipe_read(int i) {
  char ch;
  if (recv(peer_pipe_fd[2 * i], &ch, 1, 0) == 1)
    pipe_count++;
  if (pipe_writes > 0) {
    int w = i + 1 == P.pipes ? 0 : i + 1;
    if (send(peer_pipe_fd[2 * w + 1], "e", 1, MSG_NOSIGNAL) == 1) {
      pipe_writes--;
      pipe_fired++;
    }
  }
}

/* The same steps with the read and the write left to the library's ops. A
 * send op that fails leaves its byte unread, and the run ends as stalled. */
int peer_pipe_forward(int i) {
  (void)i;
  pipe_count++;
  if (pipe_writes <= 0)
    return -1;
  pipe_writes--;
  pipe_fired++;
  return i + 1 == P.pipes ? 0 : i + 1;
}

/* A run takes about P.pipe_writes / P.pipe_active iterations; this many
 * without the last byte read means one was lost (or the library's setup
 * failed), and the run ends as a failure instead of spinning until the
 * watchdog. */
#define PIPE_MAX_ITERATIONS 10000000u

int peer_pipe_drive(void (*setup)(void), void (*iterate)(void)) {
  int runs = P.pipe_runs, space = P.pipes / P.pipe_active;
  uint64_t *setup_ns = malloc((size_t)runs * sizeof *setup_ns);
  uint64_t *run_ns = malloc((size_t)runs * sizeof *run_ns);
  if (!setup_ns || !run_ns) {
    free(setup_ns);
    free(run_ns);
    return peer_fail("out of memory");
  }
  for (int r = -1; r < runs; r++) { /* run -1 warms up */
    uint64_t t0 = peer_now_ns();
    setup();
    uint64_t t1 = peer_now_ns();
    pipe_fired = 0;
    for (int i = 0; i < P.pipe_active; i++)
      if (send(peer_pipe_fd[2 * (i * space) + 1], "e", 1, MSG_NOSIGNAL) == 1)
        pipe_fired++;
    pipe_count = 0;
    pipe_writes = P.pipe_writes;
    uint64_t t2 = peer_now_ns(), spins = 0;
    do
      iterate();
    while (pipe_count != pipe_fired && ++spins < PIPE_MAX_ITERATIONS);
    uint64_t t3 = peer_now_ns();
    if (pipe_count != pipe_fired) {
      free(setup_ns);
      free(run_ns);
      return peer_fail("the chain stalled: a byte was never read");
    }
    if (r >= 0) {
      setup_ns[r] = t1 - t0;
      run_ns[r] = t3 - t2;
    }
  }
  peer_report("setup_ns_per_watcher", (double)median(setup_ns, runs) / P.pipes,
              "ns");
  peer_report("run_us", (double)median(run_ns, runs) / 1000, "us");
  free(setup_ns);
  free(run_ns);
  return 0;
}

void peer_pipe_close(void) {
  for (int i = 0; peer_pipe_fd && i < 2 * P.pipes; i++)
    close(peer_pipe_fd[i]);
  free(peer_pipe_fd);
  peer_pipe_fd = NULL;
}

/* ---------------------------------------------------------------------------
 * async_pummel
 */

static atomic_int pummel_done;
static uint64_t pummel_t0, pummel_callbacks;

void peer_pummel_go(void) {
  pummel_t0 = peer_now_ns();
}

void peer_pummel_finish(void) {
  atomic_store_explicit(&pummel_done, 1, memory_order_release);
}

int peer_pummel_callback(void) {
  pummel_callbacks++;
  return atomic_load_explicit(&pummel_done, memory_order_acquire);
}

/* Called after the producer was joined, so pummel_t0 is visible. The loop
 * ended only because a callback saw the flag, which was set after the last
 * counted send: nothing was lost. */
int peer_pummel_end(void) {
  uint64_t t1 = peer_now_ns();
  if (!atomic_load(&pummel_done) || pummel_callbacks == 0)
    return peer_fail("the loop ended before the last send was seen");
  peer_report("sends_per_s",
              (double)P.async_sends * 1e9 / (double)(t1 - pummel_t0),
              "sends/s");
  peer_report("callbacks", (double)pummel_callbacks, "callbacks");
  return 0;
}

/* ---------------------------------------------------------------------------
 * timer_start
 */

uint32_t *peer_ts_fresh_ms;
static uint64_t *ts_batch_ns, ts_t0;
static int ts_done;

#define TS_SEED_ACTIVE UINT64_C(0x72785f6163746976)
#define TS_SEED_FRESH UINT64_C(0x72785f6672657368)

static uint32_t ts_delay_ms(uint64_t seed) {
  return 1000 + (uint32_t)(peer_rand(&seed) % 59001);
}

uint32_t peer_ts_active_ms(uint32_t i) {
  return ts_delay_ms(TS_SEED_ACTIVE ^ i);
}

static int ts_prepare(void) {
  peer_ts_fresh_ms = malloc(P.ts_batch * sizeof *peer_ts_fresh_ms);
  ts_batch_ns = malloc((size_t)P.ts_batches * sizeof *ts_batch_ns);
  if (!peer_ts_fresh_ms || !ts_batch_ns)
    return -1;
  for (uint32_t j = 0; j < P.ts_batch; j++)
    peer_ts_fresh_ms[j] = ts_delay_ms(TS_SEED_FRESH ^ j);
  return 0;
}

void peer_ts_begin(void) {
  ts_t0 = peer_now_ns();
}

void peer_ts_end(void) {
  uint64_t t1 = peer_now_ns();
  if (ts_done < P.ts_batches)
    ts_batch_ns[ts_done++] = t1 - ts_t0;
}

int peer_ts_report(void) {
  if (ts_done != P.ts_batches)
    return peer_fail("not every batch was timed");
  peer_report("start_ns", (double)median(ts_batch_ns, ts_done) / P.ts_batch,
              "ns");
  return 0;
}

/* ---------------------------------------------------------------------------
 * async_send_pending
 */

static uint64_t asp_cpu0, asp_cpu;

void peer_asp_begin(void) {
  asp_cpu0 = peer_thread_cpu_ns();
}

void peer_asp_end(void) {
  asp_cpu = peer_thread_cpu_ns() - asp_cpu0;
}

int peer_asp_report(uint64_t callbacks) {
  if (callbacks != 1)
    return peer_fail("not exactly one callback for the pending sends");
  peer_report("send_ns", (double)asp_cpu / (double)P.asp_sends, "ns");
  return 0;
}

/* ---------------------------------------------------------------------------
 * loop_pingpong
 */

static uint64_t lpp_t0, lpp_t1, lpp_cpu0, lpp_trips;
static atomic_int lpp_stop;
static pthread_mutex_t lpp_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lpp_cv = PTHREAD_COND_INITIALIZER;
static int lpp_released;

void peer_lpp_begin(void) {
  lpp_t0 = peer_now_ns();
  lpp_cpu0 = peer_cpu_ns();
}

int peer_lpp_trip(void) {
  if (++lpp_trips != P.lpp_trips)
    return 0;
  lpp_t1 = peer_now_ns();
  atomic_store_explicit(&lpp_stop, 1, memory_order_release);
  return 1;
}

int peer_lpp_stopping(void) {
  return atomic_load_explicit(&lpp_stop, memory_order_acquire);
}

void peer_lpp_release(void) {
  pthread_mutex_lock(&lpp_mu);
  lpp_released = 1;
  pthread_cond_signal(&lpp_cv);
  pthread_mutex_unlock(&lpp_mu);
}

void peer_lpp_wait(void) {
  pthread_mutex_lock(&lpp_mu);
  while (!lpp_released)
    pthread_cond_wait(&lpp_cv, &lpp_mu);
  pthread_mutex_unlock(&lpp_mu);
}

int peer_lpp_end(void) {
  uint64_t cpu = peer_cpu_ns() - lpp_cpu0;
  if (lpp_trips != P.lpp_trips || lpp_t1 <= lpp_t0)
    return peer_fail("not every round trip was made");
  peer_report("round_trips_per_s",
              (double)lpp_trips * 1e9 / (double)(lpp_t1 - lpp_t0), "trips/s");
  peer_report("cpu_ns_per_trip", (double)cpu / (double)lpp_trips, "ns");
  return 0;
}

/* ---------------------------------------------------------------------------
 * ping_pongs: the server side helpers, then the client thread.
 */

static int pp_listen_fd = -1, pp_accepted, pp_sysfd = -1;
static uint16_t pp_port;
static uint64_t pp_cpu0, pp_trips, pp_elapsed_ns, pp_sys0, pp_client_cpu;
static const char *pp_error;

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int peer_pp_adopt(int fd) {
  if (fd >= 0) {
    nodelay(fd);
    pp_accepted++;
  }
  return fd;
}

int peer_pp_accept(int listen_fd) {
  return peer_pp_adopt(
      accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

/* The calling thread's system calls: a counting perf event on the
 * raw_syscalls:sys_enter tracepoint, for this thread only (pid 0, any CPU,
 * not inherited by threads it starts). -1 when the kernel or its
 * perf_event_paranoid setting refuses, or tracefs is not mounted. */
static int syscall_counter(void) {
  static const char *const ids[] = {
      "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
      "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
  };
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
    FILE *f = fopen(ids[i], "r");
    unsigned long long id;
    if (!f)
      continue;
    int got = fscanf(f, "%llu", &id);
    fclose(f);
    if (got != 1)
      continue;
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.size = sizeof attr;
    attr.config = id;
    attr.sample_period = 0;
    return (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1,
                        PERF_FLAG_FD_CLOEXEC);
  }
  return -1;
}

static uint64_t counter_read(int fd) {
  uint64_t n = 0;
  if (fd < 0 || read(fd, &n, sizeof n) != (ssize_t)sizeof n)
    return 0;
  return n;
}

int peer_pp_accepted(void) {
  return pp_accepted >= P.pp_conns;
}

int peer_pp_echo(int fd) {
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  if (n > 0)
    return send(fd, buf, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  return -1;
}

/* The client: every connection has one message in flight; a reply that is
 * complete counts a round trip and, until the time is up, sends the next.
 * The time is read once per epoll_wait batch. */
static void *pp_client(void *arg) {
  (void)arg;
  int n = P.pp_conns, ep = epoll_create1(EPOLL_CLOEXEC), outstanding = 0;
  int *fds = calloc((size_t)n, sizeof *fds);
  int *got = calloc((size_t)n, sizeof *got);
  char msg[4096], buf[4096];
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons(pp_port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (ep < 0 || !fds || !got || P.pp_size > (int)sizeof msg) {
    pp_error = "client setup failed";
    goto out;
  }
  memset(msg, 'p', sizeof msg);
  for (int i = 0; i < n; i++)
    fds[i] = -1;
  for (int i = 0; i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof sa) < 0) {
      pp_error = "client connect failed";
      goto out;
    }
    nodelay(fds[i]);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
  }
  uint64_t start = peer_now_ns(), end = start + (uint64_t)(P.pp_seconds * 1e9);
  uint64_t now = start, trips = 0, cpu0 = peer_thread_cpu_ns();
  for (int i = 0; i < n; i++)
    if (send(fds[i], msg, (size_t)P.pp_size, MSG_NOSIGNAL) == P.pp_size)
      outstanding++;
  int sending = 1;
  while (outstanding > 0) {
    struct epoll_event evs[128];
    int k = epoll_wait(ep, evs, 128, 10000);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      pp_error = k == 0 ? "no reply for 10 s: a lost event" : "epoll_wait";
      goto out;
    }
    if (sending && (now = peer_now_ns()) >= end) {
      sending = 0;
      pp_trips = trips;
      pp_elapsed_ns = now - start;
      pp_client_cpu = peer_thread_cpu_ns() - cpu0;
    }
    for (int j = 0; j < k; j++) {
      int i = (int)evs[j].data.u32;
      ssize_t r = recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN)
          continue;
        pp_error = "the server closed a connection";
        goto out;
      }
      got[i] += (int)r;
      if (got[i] < P.pp_size)
        continue;
      got[i] = 0;
      trips++;
      outstanding--;
      if (sending) {
        if (send(fds[i], msg, (size_t)P.pp_size, MSG_NOSIGNAL) != P.pp_size) {
          pp_error = "client send failed";
          goto out;
        }
        outstanding++;
      }
    }
  }
out:
  for (int i = 0; fds && i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  if (ep >= 0)
    close(ep);
  free(fds);
  free(got);
  return NULL;
}

int peer_pp_listen(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(fd, 1024) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    if (fd >= 0)
      close(fd);
    return peer_fail("cannot listen on 127.0.0.1");
  }
  pp_listen_fd = fd;
  pp_port = ntohs(sa.sin_port);
  if (peer_thread(pp_client, NULL) < 0) {
    close(fd);
    return peer_fail("cannot start the client thread");
  }
  return fd;
}

void peer_pp_begin(void) {
  pp_sysfd = syscall_counter();
  pp_sys0 = counter_read(pp_sysfd);
  pp_cpu0 = peer_thread_cpu_ns();
}

int peer_pp_end(void) {
  uint64_t cpu = peer_thread_cpu_ns() - pp_cpu0;
  /* The read of the count is one syscall less than the count itself. */
  uint64_t sys = counter_read(pp_sysfd) - pp_sys0 - 1;
  peer_join();
  close(pp_listen_fd);
  if (pp_error)
    return peer_fail(pp_error);
  if (pp_trips == 0 || pp_elapsed_ns == 0)
    return peer_fail("no round trip was made");
  peer_report("round_trips_per_s",
              (double)pp_trips * 1e9 / (double)pp_elapsed_ns, "trips/s");
  peer_report("server_cpu_us_per_trip", (double)cpu / 1000 / (double)pp_trips,
              "us");
  /* The two threads pass the messages back and forth: the rate is at most
   * 1 / (server + client CPU per trip) when neither waits for the other
   * to be scheduled. */
  peer_report("client_cpu_us_per_trip",
              (double)pp_client_cpu / 1000 / (double)pp_trips, "us");
  if (pp_sysfd >= 0) {
    peer_report("server_syscalls_per_trip", (double)sys / (double)pp_trips,
                "syscalls");
    close(pp_sysfd);
  }
  return 0;
}

/* ---------------------------------------------------------------------------
 * --ops in a library that has no completion operations: a clear failure
 * (peer_rx.c defines the real ones).
 */

__attribute__((weak)) int peer_ping_pongs_ops(void) {
  return peer_fail("this library has no completion operations (--ops)");
}

__attribute__((weak)) int peer_pipe_chain_ops(void) {
  return peer_fail("this library has no completion operations (--ops)");
}

/* ---------------------------------------------------------------------------
 * main
 */

static void watchdog(int sig) {
  (void)sig;
  static const char msg[] = "peer: watchdog: the run hung (a lost event?)\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

static const struct {
  const char *name;
  int (*run)(void);
} workloads[] = {
    {"loop_count", peer_loop_count},
    {"million_timers", peer_million_timers},
    {"timer_churn", peer_timer_churn},
    {"pipe_chain", peer_pipe_chain},
    {"async_pummel", peer_async_pummel},
    {"ping_pongs", peer_ping_pongs},
    {"timer_start", peer_timer_start},
    {"async_send_pending", peer_async_send_pending},
    {"loop_pingpong", peer_loop_pingpong},
};

static int usage(void) {
  fprintf(stderr,
          "usage: peer_%s <workload> [--quick] [--ops] [--pipes N] "
          "[--timers N]\n"
          "workloads:",
          peer_library);
  for (size_t i = 0; i < sizeof workloads / sizeof *workloads; i++)
    fprintf(stderr, " %s", workloads[i].name);
  fprintf(stderr, "\n--ops (completion operations): pipe_chain, ping_pongs\n");
  return 2;
}

int main(int argc, char **argv) {
  int (*run)(void) = NULL;
  int ops = 0;
  snprintf(library_name, sizeof library_name, "%s", peer_library);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick();
    } else if (strcmp(argv[i], "--ops") == 0) {
      ops = 1;
    } else if (strcmp(argv[i], "--pipes") == 0 && i + 1 < argc) {
      P.pipes = atoi(argv[++i]);
      if (P.pipes < P.pipe_active)
        return usage();
    } else if (strcmp(argv[i], "--timers") == 0 && i + 1 < argc) {
      long n = atol(argv[++i]);
      if (n < 1 || n > 10000000)
        return usage();
      P.ts_active = (uint32_t)n;
    } else if (!workload_name) {
      workload_name = argv[i];
    } else {
      return usage();
    }
  }
  for (size_t i = 0; workload_name && i < sizeof workloads / sizeof *workloads;
       i++)
    if (strcmp(workload_name, workloads[i].name) == 0)
      run = workloads[i].run;
  if (!run)
    return usage();
  if (ops) {
    /* Only these workloads have a completion-operation variant. */
    if (run == peer_ping_pongs)
      run = peer_ping_pongs_ops;
    else if (run == peer_pipe_chain)
      run = peer_pipe_chain_ops;
    else
      return usage();
    snprintf(library_name, sizeof library_name, "%s-ops", peer_library);
  }
  if (run == peer_pipe_chain || run == peer_pipe_chain_ops)
    snprintf(workload_label, sizeof workload_label, "pipe_chain_%d", P.pipes);
  else if (run == peer_timer_start)
    snprintf(workload_label, sizeof workload_label, "timer_start_%u",
             P.ts_active);
  else
    snprintf(workload_label, sizeof workload_label, "%s", workload_name);

  /* Transparent huge pages make the RSS jump by 2 MiB at a time, depending
   * on what khugepaged did lately: every run counts 4 KiB pages instead. */
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, watchdog);
  alarm(120);
  if (run == peer_million_timers && mt_prepare() < 0)
    return peer_fail("out of memory"), 1;
  if (run == peer_timer_start && ts_prepare() < 0)
    return peer_fail("out of memory"), 1;
  backend_name = peer_setup();
  if (!backend_name)
    return 1;
  int rc = run();
  fflush(stdout);
  free(peer_mt_delay_ms);
  free(mt_seen);
  free(peer_ts_fresh_ms);
  free(ts_batch_ns);
  return rc == 0 ? 0 : 1;
}
