/*
 * bench_rx.cc - rx's micro benchmarks (google-benchmark): the costs of rx's
 * own data structures and paths (the timer wheel, the async flag, the MPSC
 * task queue, the loop's iteration and its cross-thread wake-ups), on the
 * backend $RX_BACKEND names. bench/run.sh runs them on io_uring and on
 * epoll, interleaved, and bench/micro.py makes the table. Comparisons with
 * libev, libuv and libevent are bench/peers' (bench/peers/peer.h):
 * loop_count, timer_start, timer_churn (timer_stop_start), million_timers,
 * async_pummel, async_send_pending and loop_pingpong run there too.
 *
 * The backend is chosen the way an rx user chooses it: the loops are made
 * with default options, so $RX_BACKEND=io_uring|epoll forces one (and the
 * benchmark fails if it cannot be had) and, unset, io_uring is tried with
 * epoll as the fallback. Every result carries the backend actually used as
 * its label, and the context names it too.
 *
 * When meson found jemalloc, it is rx's allocator (mallocx, rallocx and the
 * sized sdallocx), as DESIGN.md says the benchmarks run; it is then also the
 * process's malloc.
 *
 * The workloads:
 *
 *   loop_count        one loop iteration with an idle watcher active: the
 *                     loop is run in its default mode and the idle callback
 *                     breaks it after kLoopBatch iterations, so a benchmark
 *                     iteration is one real loop iteration (prepare, a
 *                     non-blocking backend wait, clock update, timers, idle
 *                     feed, callback) and rx_run() entry and exit are
 *                     amortised over the batch instead of being counted once
 *                     per iteration, as NOWAIT would. items/s = loop
 *                     iterations per CPU second.
 *   timer_start/N     one start of a fresh timer (deadline 1-60 s) on a loop
 *                     that already holds N active timers. The fresh timers
 *                     are stopped, with timing paused, every kFreshBatch
 *                     starts, so the loop holds N to N + 4096 timers.
 *                     Pausing reads the CPU clock four times per batch, a
 *                     constant share of every figure (docs/benchmarks.md).
 *   timer_stop_start/N  stop, set a new delay (1-60 s) and start again one of
 *                     the N active timers, visited in a random order.
 *   timer_again/N     the same with rx_timer_again(): a new repeat (1-60 s),
 *                     then again.
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
 *   loop_pingpong     two loops on two threads (the benchmark thread runs
 *                     the first) bounce one task kPingPongs times with
 *                     rx_loop_post_from() (a MSG_RING between io_uring
 *                     loops). items/s = round trips per wall second.
 *   loop_pingpong_eventfd  the same with plain rx_loop_post(), whose wake-up
 *                     is always the eventfd.
 *
 * The cross-thread workloads are timed in wall time (the producers and the
 * loop run at once) and report the process's CPU time beside it, all
 * threads together (MeasureProcessCPUTime). Threads are not pinned: on a
 * 2-CPU machine, async_pummel, post_throughput/1 and loop_pingpong have two
 * busy threads for two CPUs, post_throughput/2 has three, and the main
 * thread of google-benchmark only waits. A loop's watchdog timer
 * (kWatchdog) ends a run whose wake-up was lost, as an error, instead of
 * hanging it.
 *
 * All other times are benchmark's CPU time (user + system of the process),
 * not wall time: the machine the numbers come from is a shared VM.
 */
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

/* The malloc this process runs on, for the report's context. */
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

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "rx.h"

using bench::Million;

namespace {

/* A loop for one benchmark run, freed at scope exit. Declare the watchers
 * before it: rx_loop_free() stops them, so they must still exist then. */
class Loop {
public:
  explicit Loop(benchmark::State &state) {
    int rc = rx_loop_new(&loop_, nullptr);
    if (rc != 0) {
      std::string msg = std::string("rx_loop_new: ") + rx_strerror(rc);
      state.SkipWithError(msg.c_str());
      loop_ = nullptr;
      return;
    }
    state.SetLabel(rx_backend_name(loop_));
  }
  ~Loop() {
    rx_loop_free(loop_);
  }
  Loop(const Loop &) = delete;
  Loop &operator=(const Loop &) = delete;
  rx_loop *get() const {
    return loop_;
  }
  explicit operator bool() const {
    return loop_ != nullptr;
  }

private:
  rx_loop *loop_ = nullptr;
};

void timer_noop(rx_loop *, rx_timer *, int) {
}

/* Starts n timers, each due `delays[i]` from now (one-shot, or repeating
 * with the same interval for timer_again). */
void start_active(rx_loop *loop, std::vector<rx_timer> &timers,
                  const std::vector<int64_t> &delays, bool repeating) {
  for (size_t i = 0; i < timers.size(); i++) {
    rx_timer_init(&timers[i], timer_noop, delays[i], repeating ? delays[i] : 0);
    rx_timer_start(loop, &timers[i]);
  }
}

bool all_active(const std::vector<rx_timer> &timers, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!rx_is_active(&timers[i]))
      return false;
  return true;
}

/* ---------------------------------------------------------------------------
 * loop_count
 */

void idle_count(rx_loop *loop, rx_idle *w, int) {
  auto *left = static_cast<int64_t *>(w->data);
  if (--*left == 0)
    rx_break(loop, RX_BREAK_ONE);
}

void loop_count(benchmark::State &state) {
  rx_idle idle;
  Loop loop(state);
  if (!loop)
    return;
  int64_t left = 0;
  rx_idle_init(&idle, idle_count);
  idle.data = &left;
  rx_idle_start(loop.get(), &idle);
  uint64_t first = rx_iteration(loop.get());
  while (state.KeepRunningBatch(bench::kLoopBatch)) {
    left = bench::kLoopBatch;
    int rc = rx_run(loop.get(), RX_RUN_DEFAULT);
    if (rc < 0) {
      state.SkipWithError(rx_strerror(rc));
      break;
    }
  }
  rx_idle_stop(loop.get(), &idle);
  if (rx_iteration(loop.get()) - first != (uint64_t)state.iterations())
    state.SkipWithError("loop iterations differ from benchmark iterations");
  state.SetItemsProcessed(state.iterations());
}

/* ---------------------------------------------------------------------------
 * timer_start/N
 */

void timer_start(benchmark::State &state) {
  const size_t n = (size_t)state.range(0), batch = bench::kFreshBatch;
  const auto active_delay =
      bench::delays(n, bench::kSeedActive, bench::kTimerMin, bench::kTimerMax);
  const auto fresh_delay = bench::delays(batch, bench::kSeedFresh,
                                         bench::kTimerMin, bench::kTimerMax);
  std::vector<rx_timer> active(n), fresh(batch);
  Loop loop(state);
  if (!loop)
    return;
  start_active(loop.get(), active, active_delay, false);
  for (size_t i = 0; i < batch; i++)
    rx_timer_init(&fresh[i], timer_noop, fresh_delay[i], 0);

  size_t i = 0;
  for (auto _ : state) {
    if (i == batch) {
      state.PauseTiming();
      for (size_t j = 0; j < batch; j++) {
        rx_timer_stop(loop.get(), &fresh[j]);
        rx_timer_set(&fresh[j], fresh_delay[j], 0);
      }
      i = 0;
      state.ResumeTiming();
    }
    rx_timer_start(loop.get(), &fresh[i++]);
  }
  if (!all_active(fresh, i) || !all_active(active, n))
    state.SkipWithError("a timer did not start");
}

/* ---------------------------------------------------------------------------
 * timer_stop_start/N and timer_again/N
 */

void timer_stop_start(benchmark::State &state) {
  const size_t n = (size_t)state.range(0);
  const auto active_delay =
      bench::delays(n, bench::kSeedActive, bench::kTimerMin, bench::kTimerMax);
  const auto order = bench::shuffled(n, bench::kSeedOrder);
  const auto reset = bench::delays(bench::kResetDelays, bench::kSeedReset,
                                   bench::kTimerMin, bench::kTimerMax);
  std::vector<rx_timer> active(n);
  Loop loop(state);
  if (!loop)
    return;
  start_active(loop.get(), active, active_delay, false);

  size_t i = 0, d = 0;
  for (auto _ : state) {
    rx_timer *w = &active[order[i]];
    rx_timer_stop(loop.get(), w);
    rx_timer_set(w, reset[d], 0);
    rx_timer_start(loop.get(), w);
    if (++i == n)
      i = 0;
    if (++d == bench::kResetDelays)
      d = 0;
  }
  if (!all_active(active, n))
    state.SkipWithError("a timer did not restart");
}

void timer_again(benchmark::State &state) {
  const size_t n = (size_t)state.range(0);
  const auto active_delay =
      bench::delays(n, bench::kSeedActive, bench::kTimerMin, bench::kTimerMax);
  const auto order = bench::shuffled(n, bench::kSeedOrder);
  const auto reset = bench::delays(bench::kResetDelays, bench::kSeedReset,
                                   bench::kTimerMin, bench::kTimerMax);
  std::vector<rx_timer> active(n);
  Loop loop(state);
  if (!loop)
    return;
  start_active(loop.get(), active, active_delay, true);

  size_t i = 0, d = 0;
  for (auto _ : state) {
    rx_timer *w = &active[order[i]];
    w->repeat = reset[d];
    rx_timer_again(loop.get(), w);
    if (++i == n)
      i = 0;
    if (++d == bench::kResetDelays)
      d = 0;
  }
  if (!all_active(active, n))
    state.SkipWithError("a timer did not restart");
}

/* ---------------------------------------------------------------------------
 * million_timers
 */

void million_cb(rx_loop *loop, rx_timer *w, int) {
  static_cast<Million *>(rx_loop_data(loop))->judge(w->data);
}

void million_timers(benchmark::State &state) {
  const auto delay = bench::delays(bench::kMillion, bench::kSeedMillion,
                                   bench::kMillionMin, bench::kMillionMax);
  std::vector<rx_timer> timers(bench::kMillion);
  Loop loop(state);
  if (!loop)
    return;
  Million m;
  rx_loop_set_data(loop.get(), &m);
  uint64_t first = rx_iteration(loop.get());
  int rc = 0;

  for (auto _ : state) {
    int64_t cpu0 = bench::clock_ns(CLOCK_THREAD_CPUTIME_ID);
    /* t0 is read before the loop's clock, so a timer due at the loop's
     * now + delay is never judged late for the wrong reason, nor early. */
    m.t0 = bench::mono_ns();
    rx_now_update(loop.get());
    for (size_t i = 0; i < bench::kMillion; i++) {
      rx_timer_init(&timers[i], million_cb, delay[i], 0);
      timers[i].data = Million::pack(delay[i]);
      rx_timer_start(loop.get(), &timers[i]);
    }
    m.start_cpu = bench::clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    rc = rx_run(loop.get(), RX_RUN_DEFAULT);
  }
  if (rc < 0) {
    state.SkipWithError(rx_strerror(rc));
    return;
  }
  if (rc != 0 || m.fired != (int64_t)bench::kMillion)
    state.SkipWithError("the loop returned before every timer fired");
  m.report(state, rx_iteration(loop.get()) - first);
}

/* ---------------------------------------------------------------------------
 * The cross-thread workloads. A loop that another thread runs is made here
 * and set up before that thread starts (a loop is bound to the first thread
 * that runs it); that thread then runs it and frees it.
 */

/* A new loop named in the label, or nullptr with the run marked failed. */
rx_loop *new_loop(benchmark::State &state) {
  rx_loop *loop;
  int rc = rx_loop_new(&loop, nullptr);
  if (rc != 0) {
    std::string msg = std::string("rx_loop_new: ") + rx_strerror(rc);
    state.SkipWithError(msg.c_str());
    return nullptr;
  }
  state.SetLabel(rx_backend_name(loop));
  return loop;
}

/* Breaks out of a loop whose workload has not ended kWatchdog after it
 * started: a lost wake-up then fails the run instead of hanging it. */
struct Watchdog {
  rx_timer timer;
  bool fired = false; /* written by the loop's thread, read after the join */

  void arm(rx_loop *loop) {
    rx_timer_init(&timer, bark, bench::kWatchdog, 0);
    timer.data = this;
    rx_timer_start(loop, &timer);
  }
  void disarm(rx_loop *loop) {
    rx_timer_stop(loop, &timer);
  }
  static void bark(rx_loop *loop, rx_timer *w, int) {
    static_cast<Watchdog *>(w->data)->fired = true;
    rx_break(loop, RX_BREAK_ALL);
  }
};

/* Runs a loop on a thread of its own until rx_run() returns, then frees it
 * on that thread once join() is called: producers must be done with the loop
 * by then. Declare it after every watcher the loop holds. */
class LoopThread {
public:
  explicit LoopThread(rx_loop *loop)
      : loop_(loop), thread_([this] { body(); }) {
  }
  ~LoopThread() {
    if (thread_.joinable())
      join();
  }
  LoopThread(const LoopThread &) = delete;
  LoopThread &operator=(const LoopThread &) = delete;
  /* Waits for the loop to return and be freed; rx_run()'s result. */
  int join() {
    may_free_.open();
    thread_.join();
    return rc_;
  }

private:
  void body() {
    rc_ = rx_run(loop_, RX_RUN_DEFAULT);
    may_free_.wait();
    rx_loop_free(loop_);
  }

  rx_loop *loop_;
  int rc_ = 0;
  bench::Gate may_free_;
  std::thread thread_; /* last: starts once the rest is initialised */
};

/* The common failure checks of a cross-thread run. */
bool cross_failed(benchmark::State &state, int rc, bool api_error,
                  bool watchdog) {
  if (rc < 0)
    state.SkipWithError(rx_strerror(rc));
  else if (api_error)
    state.SkipWithError("a send or post failed");
  else if (watchdog)
    state.SkipWithError(
        "watchdog: the workload did not finish (lost wake-up?)");
  else
    return false;
  return true;
}

/* ---------------------------------------------------------------------------
 * async_pummel
 */

struct Pummel {
  std::atomic<bool> last{false}; /* the counted sends are over */
  int64_t callbacks = 0;         /* the loop's thread only */
  bool after_last = false;
  Watchdog dog;
};

void pummel_cb(rx_loop *loop, rx_async *w, int) {
  auto *p = static_cast<Pummel *>(w->data);
  p->callbacks++;
  if (p->last.load(std::memory_order_acquire)) {
    p->after_last = true;
    rx_async_stop(loop, w);
    p->dog.disarm(loop);
  }
}

void async_pummel(benchmark::State &state) {
  rx_async async;
  Pummel p;
  rx_loop *loop = new_loop(state);
  if (loop == nullptr)
    return;
  rx_async_init(&async, pummel_cb);
  async.data = &p;
  rx_async_start(loop, &async);
  p.dog.arm(loop);
  LoopThread runner(loop);

  int bad = 0, rc = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < bench::kPummelSends; i++)
      bad |= rx_async_send(loop, &async);
    p.last.store(true, std::memory_order_release);
    bad |= rx_async_send(loop, &async);
    rc = runner.join();
  }
  if (cross_failed(state, rc, bad != 0, p.dog.fired))
    return;
  state.SetItemsProcessed(bench::kPummelSends);
  state.counters["sends"] = (double)bench::kPummelSends;
  state.counters["callbacks"] = (double)p.callbacks;
  state.counters["after_last"] = p.after_last ? 1.0 : 0.0;
}

/* ---------------------------------------------------------------------------
 * async_send_pending
 */

void async_count(rx_loop *, rx_async *w, int) {
  ++*static_cast<int64_t *>(w->data);
}

void async_send_pending(benchmark::State &state) {
  rx_async async;
  Loop loop(state);
  if (!loop)
    return;
  int64_t callbacks = 0;
  rx_async_init(&async, async_count);
  async.data = &callbacks;
  rx_async_start(loop.get(), &async);
  rx_async_send(loop.get(), &async); /* now pending */
  for (auto _ : state)
    benchmark::DoNotOptimize(rx_async_send(loop.get(), &async));
  /* Every send found the flag set: one callback for all of them. */
  int rc = rx_run(loop.get(), RX_RUN_NOWAIT);
  if (rc < 0)
    state.SkipWithError(rx_strerror(rc));
  else if (callbacks != 1)
    state.SkipWithError("not exactly one callback for the pending sends");
}

/* ---------------------------------------------------------------------------
 * post_throughput/P
 */

struct PostCount {
  int64_t expected = 0;
  int64_t count = 0;       /* the loop's thread only */
  uint64_t iterations = 0; /* loop iterations it took */
  Watchdog dog;
};

void count_task(rx_loop *loop, rx_task *task) {
  auto *c = static_cast<PostCount *>(task->data);
  if (++c->count == c->expected) {
    rx_unref(loop); /* the last task: let rx_run() return */
    c->dog.disarm(loop);
    c->iterations = rx_iteration(loop); /* a fresh loop starts at 0 */
  }
}

void post_throughput(benchmark::State &state) {
  const int producers = (int)state.range(0);
  const int64_t n = bench::kPostTasks;
  PostCount c;
  c.expected = n * producers;
  std::vector<std::vector<rx_task>> tasks((size_t)producers);
  for (auto &v : tasks) {
    v.resize((size_t)n);
    for (auto &t : v) {
      t.fn = count_task;
      t.data = &c;
    }
  }
  rx_loop *loop = new_loop(state);
  if (loop == nullptr)
    return;
  rx_ref(loop); /* posted tasks do not keep rx_run() from returning */
  c.dog.arm(loop);
  LoopThread runner(loop);

  bench::Gate go;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; p++)
    threads.emplace_back([&, p] {
      go.wait();
      int err = 0;
      for (auto &t : tasks[(size_t)p])
        err |= rx_loop_post(loop, &t);
      if (err != 0)
        bad.store(1);
    });
  int rc = 0;
  for (auto _ : state) {
    go.open();
    for (auto &t : threads)
      t.join();
    rc = runner.join();
  }
  go.open(); /* in case the timed loop did not run */
  for (auto &t : threads)
    if (t.joinable())
      t.join();
  if (cross_failed(state, rc, bad.load() != 0, c.dog.fired))
    return;
  if (c.count != c.expected) {
    state.SkipWithError("not every task ran");
    return;
  }
  state.SetItemsProcessed(c.expected);
  state.counters["tasks"] = (double)c.count;
  /* Tasks per loop iteration: few means the loop kept polling a queue the
   * producers had barely filled (a non-blocking io_uring wait costs no
   * syscall), or kept finding it empty, sleeping and being woken. */
  state.counters["loop_iterations"] = (double)c.iterations;
}

/* ---------------------------------------------------------------------------
 * loop_pingpong and loop_pingpong_eventfd
 *
 * Loop a runs on the benchmark thread, loop b on a LoopThread; one task goes
 * a -> b (to_b), the other b -> a (to_a), and a counts the round trips.
 */

struct PingPong {
  rx_loop *a = nullptr, *b = nullptr;
  rx_task to_a, to_b;
  bool from = true;  /* rx_loop_post_from(), or plain rx_loop_post() */
  int64_t n = 0;     /* round trips to make */
  int64_t trips = 0; /* a's thread only */
  bool stop = false; /* written by a before its last post to b */
  int bad_a = 0, bad_b = 0;
  Watchdog dog_a, dog_b;

  int post(rx_loop *self, rx_loop *to, rx_task *task) {
    return from ? rx_loop_post_from(self, to, task) : rx_loop_post(to, task);
  }
};

void ping_at_b(rx_loop *b, rx_task *task) {
  auto *p = static_cast<PingPong *>(task->data);
  if (p->stop) { /* published by the post, as any task payload */
    rx_unref(b);
    p->dog_b.disarm(b);
    return;
  }
  p->bad_b |= p->post(b, p->a, &p->to_a);
}

void ping_at_a(rx_loop *a, rx_task *task) {
  auto *p = static_cast<PingPong *>(task->data);
  if (++p->trips == p->n) {
    p->stop = true;
    rx_unref(a);
    p->dog_a.disarm(a);
  }
  /* The last one tells b to stop; rx_run() submits it as it returns. */
  p->bad_a |= p->post(a, p->b, &p->to_b);
}

void pingpong(benchmark::State &state, bool from) {
  PingPong p;
  Loop a(state);
  if (!a)
    return;
  rx_loop *b = new_loop(state);
  if (b == nullptr)
    return;
  p.a = a.get();
  p.b = b;
  p.from = from;
  p.n = bench::pingpongs();
  p.to_a.fn = ping_at_a;
  p.to_b.fn = ping_at_b;
  p.to_a.data = p.to_b.data = &p;
  rx_ref(p.a);
  rx_ref(b);
  p.dog_a.arm(p.a);
  p.dog_b.arm(b);
  LoopThread runner(b);

  int rc_a = 0, rc_b = 0;
  for (auto _ : state) {
    p.bad_a |= p.post(p.a, b, &p.to_b);
    rc_a = rx_run(p.a, RX_RUN_DEFAULT);
    rc_b = runner.join();
  }
  if (cross_failed(state, rc_a < 0 ? rc_a : rc_b, (p.bad_a | p.bad_b) != 0,
                   p.dog_a.fired || p.dog_b.fired))
    return;
  if (p.trips != p.n) {
    state.SkipWithError("not every round trip was made");
    return;
  }
  state.SetItemsProcessed(p.trips);
  state.counters["round_trips"] = (double)p.trips;
  struct rx_metrics ma, mb;
  rx_loop_metrics(p.a, &ma);
  rx_loop_metrics(b, &mb);
  state.counters["wakeups"] = (double)(ma.wakeups + mb.wakeups);
  state.counters["poll_hits"] = (double)(ma.poll_hits + mb.poll_hits);
  state.counters["poll_ms"] = (double)(ma.poll_ns + mb.poll_ns) / 1e6;
}

void loop_pingpong(benchmark::State &state) {
  pingpong(state, true);
}

void loop_pingpong_eventfd(benchmark::State &state) {
  pingpong(state, false);
}

} // namespace

BENCHMARK(loop_count);
BENCHMARK(timer_start)->Apply(bench::timer_sizes);
BENCHMARK(timer_stop_start)->Apply(bench::timer_sizes);
BENCHMARK(timer_again)->Apply(bench::timer_sizes);
BENCHMARK(million_timers)->Apply(bench::million_options);
BENCHMARK(async_pummel)->Apply(bench::cross_options);
BENCHMARK(async_send_pending);
BENCHMARK(post_throughput)->Arg(1)->Arg(2)->Apply(bench::cross_options);
BENCHMARK(loop_pingpong)->Apply(bench::cross_options);
BENCHMARK(loop_pingpong_eventfd)->Apply(bench::cross_options);

/* ---------------------------------------------------------------------------
 * main: the allocator has to be installed before the first loop exists.
 */

#if RX_BENCH_JEMALLOC
static void *je_alloc(void *, size_t size) {
  return mallocx(size ? size : 1, 0);
}
static void *je_realloc(void *, void *ptr, size_t, size_t new_size) {
  return rallocx(ptr, new_size ? new_size : 1, 0);
}
static void je_free(void *, void *ptr, size_t size) {
  sdallocx(ptr, size ? size : 1, 0);
}
#endif

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
#if RX_BENCH_JEMALLOC
  static const struct rx_allocator je = {je_alloc, je_realloc, je_free,
                                         nullptr};
  int rc = rx_set_allocator(&je);
  if (rc != 0) {
    std::fprintf(stderr, "rx_set_allocator: %s\n", rx_strerror(rc));
    return 1;
  }
  benchmark::AddCustomContext("allocator", bench::malloc_name() +
                                               " (rx_set_allocator, malloc)");
#else
  benchmark::AddCustomContext("allocator", bench::malloc_name());
#endif
  /* Name the backend a loop made with default options gets. */
  rx_loop *probe;
  int prc = rx_loop_new(&probe, nullptr);
  if (prc != 0) {
    std::fprintf(stderr, "rx_loop_new: %s\n", rx_strerror(prc));
    return 1;
  }
  benchmark::AddCustomContext("library", "rx");
  benchmark::AddCustomContext("backend", rx_backend_name(probe));
  benchmark::AddCustomContext("backend_reason", rx_backend_reason(probe));
  rx_loop_free(probe);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
