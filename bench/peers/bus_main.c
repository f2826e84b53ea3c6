/*
 * bench/peers/bus_main.c - the event bus benchmark's driver (bus.h): the
 * sizes, the producer threads, the handler every implementation calls, the
 * checks and the measurements. No implementation's code runs here but
 * bus_producer_open(), bus_publish() and bus_producer_close(), so every
 * implementation's figure includes the same extra work.
 */
#include "bus.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

struct bus_params B = {
    .events = 1000000,
    .rate = 100000,
    .seconds = 2.0,
};

static void quick(void) {
  B.events = 200000;
  B.seconds = 0.5;
}

const char *const bus_topic[BUS_TOPICS] = {"bus.ev0", "bus.ev1", "bus.ev2",
                                           "bus.ev3"};
static const char *const sub0[] = {"bus.ev0", NULL};
static const char *const sub1[] = {"bus.ev0", "bus.ev1", NULL};
static const char *const sub2[] = {"bus.ev1", "bus.ev2", "bus.ev3", NULL};
const char *const *const bus_sub_topics[BUS_SUBS] = {sub0, sub1, sub2};

static const char *backend_name;

static void report(const char *metric, double value, const char *unit) {
  printf("bus_4x3,%s,%s,%s,%.6g,%s\n", bus_library, backend_name, metric, value,
         unit);
}

int bus_fail(const char *what) {
  fprintf(stderr, "bus_%s bus_4x3: %s\n", bus_library, what);
  return -1;
}

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bus_now_ns(void) {
  return clock_ns(CLOCK_MONOTONIC);
}

int bus_wants(int sub, int topic) {
  for (const char *const *t = bus_sub_topics[sub]; *t != NULL; t++)
    if (strcmp(*t, bus_topic[topic]) == 0)
      return 1;
  return 0;
}

/* ---------------------------------------------------------------------------
 * The phase: what each subscriber is due, what it has had.
 */

static int latency_phase;
static uint64_t per_producer; /* events each producer publishes */
static uint64_t pace_ns;      /* latency phase: one producer's interval */

/* Each subscriber's state, on its own cache lines: with one thread per
 * subscriber, no false sharing between them. */
struct sub {
  _Alignas(64) uint64_t count, due;
  int64_t last[BUS_PRODUCERS];
  uint64_t bad;
  uint64_t *lat;
  int wants[BUS_TOPICS];
  char pad[64];
};
static struct sub subs[BUS_SUBS];
static atomic_int subs_done;
static uint64_t t_end, cpu_end;

/* Events of topic t among a producer's first n (event i has topic i % 4). */
static uint64_t topic_count(uint64_t n, int t) {
  return n / BUS_TOPICS + ((uint64_t)t < n % BUS_TOPICS);
}

static int phase_begin(int latency) {
  latency_phase = latency;
  per_producer = latency ? (uint64_t)(B.rate * B.seconds / BUS_PRODUCERS)
                         : B.events;
  pace_ns = (uint64_t)(1e9 * BUS_PRODUCERS / B.rate);
  atomic_store(&subs_done, 0);
  t_end = cpu_end = 0;
  for (int s = 0; s < BUS_SUBS; s++) {
    struct sub *u = &subs[s];
    free(u->lat);
    memset(u, 0, sizeof *u);
    for (int t = 0; t < BUS_TOPICS; t++) {
      u->wants[t] = bus_wants(s, t);
      if (u->wants[t])
        u->due += BUS_PRODUCERS * topic_count(per_producer, t);
    }
    for (int p = 0; p < BUS_PRODUCERS; p++)
      u->last[p] = -1;
    if (latency && (u->lat = malloc(u->due * sizeof *u->lat)) == NULL)
      return bus_fail("out of memory");
  }
  return 0;
}

int bus_handle(int sub, int topic, int producer, uint64_t seq, uint64_t ts) {
  struct sub *u = &subs[sub];
  if (latency_phase)
    u->lat[u->count < u->due ? u->count : 0] = bus_now_ns() - ts;
  if (!u->wants[topic] || (int64_t)seq <= u->last[producer])
    u->bad++; /* not its name, out of order or twice */
  u->last[producer] = (int64_t)seq;
  if (++u->count != u->due)
    return 0;
  if (atomic_fetch_add(&subs_done, 1) + 1 == BUS_SUBS) {
    t_end = bus_now_ns();
    cpu_end = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  }
  return 1;
}

uint64_t bus_events(void) {
  return BUS_PRODUCERS * per_producer;
}

int bus_all_done(void) {
  return atomic_load(&subs_done) == BUS_SUBS;
}

/* ---------------------------------------------------------------------------
 * The producers.
 */

static pthread_t producers[BUS_PRODUCERS];
static int producer_rc[BUS_PRODUCERS];
static pthread_barrier_t ready;
static _Atomic uint64_t t_start;
static uint64_t cpu_start;

static void *producer_main(void *arg) {
  int p = (int)(intptr_t)arg;
  /* The paced phase sleeps to absolute deadlines 40 us apart: without the
   * default 50 us of timer slack. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  void *ctx = bus_producer_open(p);
  pthread_barrier_wait(&ready);
  if (ctx == NULL) {
    producer_rc[p] = -1;
    return NULL;
  }
  uint64_t t0 = bus_now_ns(), expect = atomic_load(&t_start);
  while (t0 < expect && !atomic_compare_exchange_weak(&t_start, &expect, t0))
    ;
  /* Staggered: the producers' deadlines interleave evenly. */
  uint64_t next = t0 + 1000000 + (uint64_t)p * pace_ns / BUS_PRODUCERS;
  for (uint64_t seq = 0; seq < per_producer; seq++) {
    if (latency_phase) {
      struct timespec d = {(time_t)(next / 1000000000u),
                           (long)(next % 1000000000u)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL) != 0)
        ;
      next += pace_ns;
    }
    int topic = (int)(seq % BUS_TOPICS);
    if (bus_publish(ctx, topic, p, seq, latency_phase ? bus_now_ns() : t0) !=
        0) {
      producer_rc[p] = -1;
      break;
    }
  }
  bus_producer_close(ctx);
  return NULL;
}

int bus_start_producers(void) {
  atomic_store(&t_start, UINT64_MAX);
  pthread_barrier_init(&ready, NULL, BUS_PRODUCERS + 1);
  for (int p = 0; p < BUS_PRODUCERS; p++) {
    producer_rc[p] = 0;
    if (pthread_create(&producers[p], NULL, producer_main,
                       (void *)(intptr_t)p) != 0)
      return bus_fail("pthread_create"); /* fatal: the barrier never opens */
  }
  cpu_start = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  pthread_barrier_wait(&ready);
  return 0;
}

int bus_join_producers(void) {
  int rc = 0;
  for (int p = 0; p < BUS_PRODUCERS; p++) {
    pthread_join(producers[p], NULL);
    rc |= producer_rc[p];
  }
  pthread_barrier_destroy(&ready);
  return rc != 0 ? bus_fail("a producer failed") : 0;
}

/* ---------------------------------------------------------------------------
 * The phases' results.
 */

static int phase_check(void) {
  for (int s = 0; s < BUS_SUBS; s++) {
    if (subs[s].count != subs[s].due || subs[s].bad != 0) {
      fprintf(stderr,
              "bus_%s: subscriber %d had %llu events of %llu, %llu bad\n",
              bus_library, s, (unsigned long long)subs[s].count,
              (unsigned long long)subs[s].due, (unsigned long long)subs[s].bad);
      return -1;
    }
  }
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static int report_throughput(void) {
  uint64_t events = BUS_PRODUCERS * per_producer;
  double wall = (double)(t_end - atomic_load(&t_start));
  report("events_per_s", (double)events * 1e9 / wall, "events/s");
  report("cpu_ns_per_event", (double)(cpu_end - cpu_start) / (double)events,
         "ns");
  return 0;
}

static int report_latency(void) {
  uint64_t n = 0;
  for (int s = 0; s < BUS_SUBS; s++)
    n += subs[s].due;
  uint64_t *all = malloc(n * sizeof *all), k = 0;
  if (all == NULL)
    return bus_fail("out of memory");
  for (int s = 0; s < BUS_SUBS; s++) {
    memcpy(all + k, subs[s].lat, subs[s].due * sizeof *all);
    k += subs[s].due;
  }
  qsort(all, n, sizeof *all, cmp_u64);
  uint64_t p99 = (n * 99 + 99) / 100; /* ceil(0.99 n), 1-based */
  report("lat_p50_us", (double)all[(n - 1) / 2] / 1e3, "us");
  report("lat_p99_us", (double)all[p99 - 1] / 1e3, "us");
  report("lat_max_us", (double)all[n - 1] / 1e3, "us");
  free(all);
  return 0;
}

static void watchdog(int sig) {
  (void)sig;
  static const char msg[] = "bus: watchdog: the run hung (a lost event?)\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

int main(int argc, char **argv) {
  int have_workload = 0, first = 0, last = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0)
      quick();
    else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc &&
             atof(argv[i + 1]) >= 1000)
      B.rate = atof(argv[++i]);
    else if (strcmp(argv[i], "--throughput") == 0)
      last = 0; /* only the throughput phase (for profiles) */
    else if (strcmp(argv[i], "--latency") == 0)
      first = 1; /* only the paced phase */
    else if (strcmp(argv[i], "bus_4x3") == 0 && !have_workload)
      have_workload = 1;
    else
      have_workload = -1;
  }
  if (have_workload != 1 || first > last) {
    fprintf(stderr,
            "usage: bus_%s bus_4x3 [--quick] [--rate EVENTS_PER_S] "
            "[--throughput | --latency]\n",
            bus_library);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, watchdog);
  alarm(120);
  backend_name = bus_setup();
  if (backend_name == NULL)
    return 1;
  for (int latency = first; latency <= last; latency++) {
    if (phase_begin(latency) < 0 || bus_run() < 0 || phase_check() < 0)
      return 1;
    if ((latency ? report_latency() : report_throughput()) < 0)
      return 1;
  }
  for (int s = 0; s < BUS_SUBS; s++)
    free(subs[s].lat);
  fflush(stdout);
  return 0;
}
