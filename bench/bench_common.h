/*
 * bench_common.h - what bench_rx.cc, bench_libev.cc and bench_libuv.cc
 * share, so that all run exactly the same workloads: the names (libuv's
 * canonical benchmark names, STYLE.md example 15), the sizes, the seeds, the
 * generators of the random deadlines and orders, and the task queue the
 * peers get for post_throughput. bench_libuv runs the cross-thread workloads
 * only.
 *
 * The workloads (each file's header says how it maps them onto its library):
 *
 *   loop_count        one loop iteration with an idle watcher active: the
 *                     loop is run in its default mode and the idle callback
 *                     breaks it after kLoopBatch iterations, so a benchmark
 *                     iteration is one real loop iteration (prepare, a
 *                     non-blocking backend wait, clock update, timers, idle
 *                     feed, callback) and rx_run()/ev_run()
 *                     entry and exit are amortised over the batch instead of
 *                     being counted once per iteration, as NOWAIT would.
 *                     items/s = loop iterations per CPU second.
 *   timer_start/N     one start of a fresh timer (deadline 1-60 s) on a loop
 *                     that already holds N active timers. The fresh timers
 *                     are stopped, with timing paused, every kFreshBatch
 *                     starts, so the loop holds N to N + 4096 timers. Pausing
 *                     reads the CPU clock (a syscall) four times, about
 *                     1.5 us on the reference VM: 0.4 ns per start, in both
 *                     libraries' numbers alike.
 *   timer_stop_start/N  stop, set a new delay (1-60 s) and start again one of
 *                     the N active timers, visited in a random order.
 *   timer_again/N     the same with rx_timer_again()/ev_timer_again(): a new
 *                     repeat (1-60 s), then again.
 *   million_timers    start 1,000,000 one-shot timers due in [1, 1000] ms
 *                     and run the loop until all have fired; CPU time (init,
 *                     start, dispatch, the wakeups in between) per fired
 *                     timer. Counters: fired, early (callback ran before
 *                     start time + delay by a fresh CLOCK_MONOTONIC read;
 *                     must be 0), max_late_us, wakeups (loop iterations),
 *                     start_ns (CPU ns per timer of init + start alone; the
 *                     rest of cpu_per_timer is the loop running them).
 *
 * The cross-thread workloads, each one run of the whole workload per
 * repetition:
 *
 *   async_pummel      one producer (the benchmark thread) sends kPummelSends
 *                     times to one async watcher of a loop that another
 *                     thread runs, then sets a flag and sends once more; the
 *                     callback stops the watcher when it sees the flag, so
 *                     the run ends only if a callback ran after the last
 *                     counted send (after_last = 1). items/s = sends per
 *                     wall second; counters: sends, callbacks (delivered).
 *   async_send_pending  one send to a watcher that is already pending, on a
 *                     loop that is not running, by the loop's own thread: a
 *                     send that only has to find the flag set. CPU ns/send.
 *   post_throughput/P P producer threads each post kPostTasks preallocated
 *                     tasks to a loop that another thread runs; a task only
 *                     counts, and the run ends when the loop has counted all
 *                     P * kPostTasks. items/s = tasks per wall second.
 *                     libev and libuv have no task queue: they get the one a
 *                     user of theirs writes (TaskQueue below: a mutex, an
 *                     intrusive list, and an async send to wake the loop,
 *                     which drains the list in the async callback), and say
 *                     so in the label.
 *   loop_pingpong     two loops on two threads (the benchmark thread runs
 *                     the first) bounce one message kPingPongs times: rx
 *                     posts a task with rx_loop_post_from() (a MSG_RING
 *                     between io_uring loops), libev and libuv send to the
 *                     other loop's async watcher. items/s = round trips per
 *                     wall second.
 *   loop_pingpong_eventfd  rx only: the same with plain rx_loop_post(), whose
 *                     wake-up is always the eventfd.
 *
 * The cross-thread workloads are timed in wall time (the producers and the
 * loop run at once) and report the process's CPU time beside it, all
 * threads together (MeasureProcessCPUTime). Threads are not pinned: on the
 * 2-vCPU reference VM, async_pummel, post_throughput/1 and loop_pingpong
 * have two busy threads for two CPUs, post_throughput/2 has three, and the
 * main thread of google-benchmark only waits. A loop's watchdog timer
 * (kWatchdog) ends a run whose wake-up was lost, as an error, instead of
 * hanging it.
 *
 * All other times are benchmark's CPU time (user + system of the process),
 * not wall time: the machine the numbers come from is a shared VM.
 */
#ifndef RX_BENCH_COMMON_H
#define RX_BENCH_COMMON_H

#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#if RX_BENCH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

namespace bench {

constexpr int64_t kLoopBatch = 10000;

constexpr int64_t kSec = 1000000000;
constexpr int64_t kMsec = 1000000;

/* timer_start, timer_stop_start, timer_again */
constexpr int64_t kTimerMin = 1 * kSec;
constexpr int64_t kTimerMax = 60 * kSec;
constexpr size_t kFreshBatch = 4096;      /* timer_start */
constexpr size_t kResetDelays = 1u << 16; /* new delays, used round robin */

/* million_timers */
constexpr size_t kMillion = 1000000;
constexpr int64_t kMillionMin = 1 * kMsec;
constexpr int64_t kMillionMax = 1000 * kMsec;

/* The cross-thread workloads. */
constexpr int64_t kPummelSends = 10000000; /* async_pummel */
constexpr int64_t kPostTasks = 2000000;    /* post_throughput, per producer */
constexpr int64_t kPingPongs = 200000;     /* loop_pingpong, round trips */
constexpr int64_t kWatchdog = 60 * kSec;   /* a run longer than this failed */

/* One fixed seed per random stream. */
constexpr uint64_t kSeedActive = 0x72785f6163746976u; /* the N active timers */
constexpr uint64_t kSeedFresh = 0x72785f6672657368u;  /* timer_start's fresh */
constexpr uint64_t kSeedOrder = 0x72785f6f72646572u;  /* visiting order */
constexpr uint64_t kSeedReset = 0x72785f7265736574u;  /* stop_start, again */
constexpr uint64_t kSeedMillion = 0x72785f6d696c6c69u;

/* splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014): tiny, fast and the same on every libc, which
 * rand() is not. */
class Rng {
public:
  explicit Rng(uint64_t seed) : s_(seed) {
  }
  uint64_t next() {
    uint64_t z = (s_ += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
  }
  /* Uniform in [lo, hi]; the modulo bias is below 2^-40 for these ranges. */
  int64_t uniform(int64_t lo, int64_t hi) {
    return lo + (int64_t)(next() % (uint64_t)(hi - lo + 1));
  }

private:
  uint64_t s_;
};

/* n delays in ns, uniform in [lo, hi]. */
inline std::vector<int64_t> delays(size_t n, uint64_t seed, int64_t lo,
                                   int64_t hi) {
  Rng rng(seed);
  std::vector<int64_t> v(n);
  for (auto &d : v)
    d = rng.uniform(lo, hi);
  return v;
}

/* A random permutation of 0..n-1 (Fisher-Yates). */
inline std::vector<uint32_t> shuffled(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; i++)
    v[i] = (uint32_t)i;
  for (size_t i = n - 1; i > 0; i--)
    std::swap(v[i], v[(size_t)(rng.next() % (i + 1))]);
  return v;
}

inline int64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * kSec + ts.tv_nsec;
}

inline int64_t mono_ns() {
  return clock_ns(CLOCK_MONOTONIC);
}

/* A "max" aggregate next to mean/median/stddev: `early` must be 0 in every
 * repetition, not only in the median one. */
inline double stat_max(const std::vector<double> &v) {
  return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
}

/* What million_timers' callback needs to judge a timer. Each timer carries
 * its own delay in its `data` pointer, so that judging it reads only memory
 * the loop has just touched to fire it. */
struct Million {
  int64_t t0 = 0; /* CLOCK_MONOTONIC just before the timers start */
  int64_t fired = 0;
  int64_t early = 0;
  int64_t max_late = 0;  /* ns */
  int64_t start_cpu = 0; /* CPU ns spent initialising and starting */

  static void *pack(int64_t delay) {
    return (void *)(intptr_t)delay;
  }

  void judge(const void *data) {
    int64_t late = mono_ns() - (t0 + (int64_t)(intptr_t)data);
    fired++;
    if (late < 0)
      early++;
    else if (late > max_late)
      max_late = late;
  }

  void report(benchmark::State &state, uint64_t wakeups) const {
    state.counters["fired"] = (double)fired;
    state.counters["early"] = (double)early;
    state.counters["max_late_us"] = (double)max_late / 1000.0;
    state.counters["wakeups"] = (double)wakeups;
    /* The part of cpu_per_timer spent before the loop runs. */
    state.counters["start_ns"] = fired ? (double)start_cpu / fired : 0.0;
    /* CPU seconds per fired timer: a rate over CPU time, inverted. */
    state.counters["cpu_per_timer"] =
        benchmark::Counter((double)fired, benchmark::Counter::kIsRate |
                                              benchmark::Counter::kInvert);
  }
};

/* The N of the timer benchmarks. */
inline void timer_sizes(benchmark::internal::Benchmark *b) {
  b->Arg(10000)->Arg(100000);
}

/* One run per repetition; how many repetitions is the caller's choice
 * (--benchmark_repetitions; bench/run.sh makes 5, one per pass). */
inline void million_options(benchmark::internal::Benchmark *b) {
  b->Iterations(1)
      ->ComputeStatistics("max", stat_max)
      ->Unit(benchmark::kMillisecond);
}

/* A count from the environment, or `dflt` when unset or not a positive
 * number: RX_BENCH_PINGPONG_N makes loop_pingpong shorter for the strace
 * run of bench/run.sh, which slows every syscall down. */
inline int64_t env_count(const char *name, int64_t dflt) {
  const char *s = std::getenv(name);
  if (s == nullptr || *s == '\0')
    return dflt;
  char *end;
  long long v = std::strtoll(s, &end, 10);
  return *end == '\0' && v > 0 ? (int64_t)v : dflt;
}

inline int64_t pingpongs() {
  return env_count("RX_BENCH_PINGPONG_N", kPingPongs);
}

inline double stat_min(const std::vector<double> &v) {
  return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

/* One run of the whole workload per repetition, in wall time, with the CPU
 * time of every thread beside it. With --benchmark_repetitions, the "min"
 * aggregate shows whether a counter such as after_last held in every
 * repetition (bench/run.sh, which runs one repetition per pass, checks every
 * run itself). */
inline void cross_options(benchmark::internal::Benchmark *b) {
  b->Iterations(1)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->ComputeStatistics("min", stat_min)
      ->Unit(benchmark::kMillisecond);
}

/* A one-shot gate: threads wait() until someone open()s it. A mutex and a
 * condition variable rather than a spin, so that waiting threads leave both
 * CPUs of a small machine to the ones at work. */
class Gate {
public:
  void open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

/* post_throughput for libraries without a task queue, written the way their
 * users write it: a task is an intrusive node; push() appends it under a
 * mutex (the caller then wakes the loop with an async send), and the async
 * callback takes the whole list in one locked swap and runs it unlocked.
 * Like rx_task, a task is caller-owned and may be pushed again once its fn
 * has started. */
struct QTask {
  QTask *next;
  void (*fn)(QTask *task);
  void *data;
};

class TaskQueue {
public:
  void push(QTask *t) {
    t->next = nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    *tail_ = t;
    tail_ = &t->next;
  }
  /* Takes every task pushed so far and runs them in push order. */
  void drain() {
    QTask *t;
    {
      std::lock_guard<std::mutex> lock(mu_);
      t = head_;
      head_ = nullptr;
      tail_ = &head_;
    }
    while (t != nullptr) {
      QTask *next = t->next; /* fn may push t again */
      t->fn(t);
      t = next;
    }
  }

private:
  std::mutex mu_;
  QTask *head_ = nullptr;
  QTask **tail_ = &head_;
};

/* The malloc this process runs on, for the report's context. Asking
 * jemalloc for its version also keeps the linker's --as-needed from dropping
 * it from bench_libev, which calls no jemalloc function otherwise. */
inline std::string malloc_name() {
#if RX_BENCH_JEMALLOC
  const char *version = nullptr;
  size_t len = sizeof(version);
  if (mallctl("version", &version, &len, nullptr, 0) == 0 && version != nullptr)
    return std::string("jemalloc ") + version;
  return "jemalloc";
#else
  return "libc";
#endif
}

} // namespace bench

#endif /* RX_BENCH_COMMON_H */
