/*
 * bench_rx.cc - rx micro benchmarks. The workloads, their names and their
 * random streams are in bench_common.h; bench_libev.cc runs the same ones on
 * libev, bench_libuv.cc the cross-thread ones on libuv, and bench/run.sh
 * puts them side by side. loop_pingpong_eventfd is rx's alone: the
 * loop_pingpong of plain rx_loop_post(), to set against rx_loop_post_from().
 *
 * The backend is chosen the way an rx user chooses it: the loops are made
 * with default options, so $RX_BACKEND=io_uring|epoll forces one (and the
 * benchmark fails if it cannot be had) and, unset, io_uring is tried with
 * epoll as the fallback. Every result carries the backend actually used as
 * its label, and the context names it too.
 *
 * When meson found jemalloc, it is rx's allocator (mallocx, rallocx and the
 * sized sdallocx), as DESIGN.md says the benchmarks run; it is then also the
 * process's malloc, as it is in bench_libev.
 */
#include "bench_common.h"

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
  explicit LoopThread(rx_loop *loop) : loop_(loop), thread_([this] { body(); }) {
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
    state.SkipWithError("watchdog: the workload did not finish (lost wake-up?)");
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
  bool from = true;   /* rx_loop_post_from(), or plain rx_loop_post() */
  int64_t n = 0;      /* round trips to make */
  int64_t trips = 0;  /* a's thread only */
  bool stop = false;  /* written by a before its last post to b */
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
