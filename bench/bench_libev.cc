/*
 * bench_libev.cc - the workloads of bench_rx.cc (see bench_common.h) on
 * libev, the reference rx measures itself against (libuv, in
 * bench_libuv.cc, is the other one for the cross-thread workloads).
 *
 * Loops are made with ev_loop_new(EVFLAG_AUTO), the way a libev user makes
 * one; libev 4.33 then picks epoll on Linux (its io_uring and linux-aio
 * backends are not among the recommended ones). The backend used is each
 * result's label. Durations are given to libev as double seconds, computed
 * from the same nanosecond streams rx gets, before timing starts.
 *
 * The binary links jemalloc when meson found it, so that libev's heap and
 * fd arrays come from the same malloc as rx's tables in bench_rx.
 */
#include "bench_common.h"

#include <ev.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using bench::Million;

namespace {

const char *backend_name(unsigned b) {
  switch (b) {
  case EVBACKEND_SELECT:
    return "select";
  case EVBACKEND_POLL:
    return "poll";
  case EVBACKEND_EPOLL:
    return "epoll";
  case EVBACKEND_LINUXAIO:
    return "linuxaio";
  case EVBACKEND_IOURING:
    return "io_uring";
  default:
    return "other";
  }
}

/* A loop for one benchmark run, destroyed at scope exit (after the watchers
 * declared before it are no longer touched: libev does not stop them). */
class Loop {
public:
  explicit Loop(benchmark::State &state) {
    loop_ = ev_loop_new(EVFLAG_AUTO);
    if (loop_ == nullptr) {
      state.SkipWithError("ev_loop_new failed");
      return;
    }
    state.SetLabel(backend_name(ev_backend(loop_)));
  }
  ~Loop() {
    if (loop_ != nullptr)
      ev_loop_destroy(loop_);
  }
  Loop(const Loop &) = delete;
  Loop &operator=(const Loop &) = delete;
  struct ev_loop *get() const {
    return loop_;
  }
  explicit operator bool() const {
    return loop_ != nullptr;
  }

private:
  struct ev_loop *loop_ = nullptr;
};

std::vector<double> seconds(const std::vector<int64_t> &ns) {
  std::vector<double> s(ns.size());
  for (size_t i = 0; i < ns.size(); i++)
    s[i] = (double)ns[i] * 1e-9;
  return s;
}

void timer_noop(struct ev_loop *, ev_timer *, int) {
}

void start_active(struct ev_loop *loop, std::vector<ev_timer> &timers,
                  const std::vector<double> &delays, bool repeating) {
  for (size_t i = 0; i < timers.size(); i++) {
    ev_timer_init(&timers[i], timer_noop, delays[i],
                  repeating ? delays[i] : 0.);
    ev_timer_start(loop, &timers[i]);
  }
}

bool all_active(const std::vector<ev_timer> &timers, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!ev_is_active(&timers[i]))
      return false;
  return true;
}

/* ---------------------------------------------------------------------------
 * loop_count
 */

void idle_count(struct ev_loop *loop, ev_idle *w, int) {
  auto *left = static_cast<int64_t *>(w->data);
  if (--*left == 0)
    ev_break(loop, EVBREAK_ONE);
}

void loop_count(benchmark::State &state) {
  ev_idle idle;
  Loop loop(state);
  if (!loop)
    return;
  int64_t left = 0;
  ev_idle_init(&idle, idle_count);
  idle.data = &left;
  ev_idle_start(loop.get(), &idle);
  unsigned first = ev_iteration(loop.get());
  while (state.KeepRunningBatch(bench::kLoopBatch)) {
    left = bench::kLoopBatch;
    ev_run(loop.get(), 0);
  }
  ev_idle_stop(loop.get(), &idle);
  /* ev_iteration() is an unsigned int: compare modulo 2^32. */
  if (ev_iteration(loop.get()) - first != (unsigned)state.iterations())
    state.SkipWithError("loop iterations differ from benchmark iterations");
  state.SetItemsProcessed(state.iterations());
}

/* ---------------------------------------------------------------------------
 * timer_start/N
 */

void timer_start(benchmark::State &state) {
  const size_t n = (size_t)state.range(0), batch = bench::kFreshBatch;
  const auto active_delay = seconds(
      bench::delays(n, bench::kSeedActive, bench::kTimerMin, bench::kTimerMax));
  const auto fresh_delay = seconds(bench::delays(
      batch, bench::kSeedFresh, bench::kTimerMin, bench::kTimerMax));
  std::vector<ev_timer> active(n), fresh(batch);
  Loop loop(state);
  if (!loop)
    return;
  start_active(loop.get(), active, active_delay, false);
  for (size_t i = 0; i < batch; i++)
    ev_timer_init(&fresh[i], timer_noop, fresh_delay[i], 0.);

  size_t i = 0;
  for (auto _ : state) {
    if (i == batch) {
      state.PauseTiming();
      for (size_t j = 0; j < batch; j++) {
        ev_timer_stop(loop.get(), &fresh[j]);
        ev_timer_set(&fresh[j], fresh_delay[j], 0.);
      }
      i = 0;
      state.ResumeTiming();
    }
    ev_timer_start(loop.get(), &fresh[i++]);
  }
  if (!all_active(fresh, i) || !all_active(active, n))
    state.SkipWithError("a timer did not start");
}

/* ---------------------------------------------------------------------------
 * timer_stop_start/N and timer_again/N
 */

void timer_stop_start(benchmark::State &state) {
  const size_t n = (size_t)state.range(0);
  const auto active_delay = seconds(
      bench::delays(n, bench::kSeedActive, bench::kTimerMin, bench::kTimerMax));
  const auto order = bench::shuffled(n, bench::kSeedOrder);
  const auto reset =
      seconds(bench::delays(bench::kResetDelays, bench::kSeedReset,
                            bench::kTimerMin, bench::kTimerMax));
  std::vector<ev_timer> active(n);
  Loop loop(state);
  if (!loop)
    return;
  start_active(loop.get(), active, active_delay, false);

  size_t i = 0, d = 0;
  for (auto _ : state) {
    ev_timer *w = &active[order[i]];
    ev_timer_stop(loop.get(), w);
    ev_timer_set(w, reset[d], 0.);
    ev_timer_start(loop.get(), w);
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
  const auto active_delay = seconds(
      bench::delays(n, bench::kSeedActive, bench::kTimerMin, bench::kTimerMax));
  const auto order = bench::shuffled(n, bench::kSeedOrder);
  const auto reset =
      seconds(bench::delays(bench::kResetDelays, bench::kSeedReset,
                            bench::kTimerMin, bench::kTimerMax));
  std::vector<ev_timer> active(n);
  Loop loop(state);
  if (!loop)
    return;
  start_active(loop.get(), active, active_delay, true);

  size_t i = 0, d = 0;
  for (auto _ : state) {
    ev_timer *w = &active[order[i]];
    w->repeat = reset[d];
    ev_timer_again(loop.get(), w);
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

void million_cb(struct ev_loop *loop, ev_timer *w, int) {
  static_cast<Million *>(ev_userdata(loop))->judge(w->data);
}

void million_timers(benchmark::State &state) {
  const auto delay_ns = bench::delays(bench::kMillion, bench::kSeedMillion,
                                      bench::kMillionMin, bench::kMillionMax);
  const auto delay = seconds(delay_ns);
  std::vector<ev_timer> timers(bench::kMillion);
  Loop loop(state);
  if (!loop)
    return;
  Million m;
  ev_set_userdata(loop.get(), &m);
  unsigned first = ev_iteration(loop.get());

  for (auto _ : state) {
    int64_t cpu0 = bench::clock_ns(CLOCK_THREAD_CPUTIME_ID);
    /* t0 is read before the loop's clock, as in bench_rx. */
    m.t0 = bench::mono_ns();
    ev_now_update(loop.get());
    for (size_t i = 0; i < bench::kMillion; i++) {
      ev_timer_init(&timers[i], million_cb, delay[i], 0.);
      timers[i].data = Million::pack(delay_ns[i]);
      ev_timer_start(loop.get(), &timers[i]);
    }
    m.start_cpu = bench::clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    ev_run(loop.get(), 0);
  }
  if (m.fired != (int64_t)bench::kMillion)
    state.SkipWithError("the loop returned before every timer fired");
  m.report(state, ev_iteration(loop.get()) - first);
}

/* ---------------------------------------------------------------------------
 * The cross-thread workloads, as in bench_rx.cc: a loop that another thread
 * runs is set up here before that thread starts, then run and destroyed by
 * it. ev_async_send() is libev's one thread-safe call.
 */

struct ev_loop *new_loop(benchmark::State &state, const char *how = nullptr) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  if (loop == nullptr) {
    state.SkipWithError("ev_loop_new failed");
    return nullptr;
  }
  std::string label = backend_name(ev_backend(loop));
  if (how != nullptr)
    label += std::string(", ") + how;
  state.SetLabel(label);
  return loop;
}

/* Breaks out of a loop whose workload has not ended after kWatchdog. */
struct Watchdog {
  ev_timer timer;
  bool fired = false; /* written by the loop's thread, read after the join */

  void arm(struct ev_loop *loop) {
    ev_timer_init(&timer, bark, (double)bench::kWatchdog * 1e-9, 0.);
    timer.data = this;
    ev_timer_start(loop, &timer);
  }
  void disarm(struct ev_loop *loop) {
    ev_timer_stop(loop, &timer);
  }
  static void bark(struct ev_loop *loop, ev_timer *w, int) {
    static_cast<Watchdog *>(w->data)->fired = true;
    ev_break(loop, EVBREAK_ALL);
  }
};

/* Runs a loop on a thread of its own until ev_run() returns, then destroys
 * it on that thread once join() is called. Declare it after every watcher
 * the loop holds. */
class LoopThread {
public:
  explicit LoopThread(struct ev_loop *loop)
      : loop_(loop), thread_([this] { body(); }) {
  }
  ~LoopThread() {
    if (thread_.joinable())
      join();
  }
  LoopThread(const LoopThread &) = delete;
  LoopThread &operator=(const LoopThread &) = delete;
  void join() {
    may_free_.open();
    thread_.join();
  }

private:
  void body() {
    ev_run(loop_, 0);
    may_free_.wait();
    ev_loop_destroy(loop_);
  }

  struct ev_loop *loop_;
  bench::Gate may_free_;
  std::thread thread_; /* last: starts once the rest is initialised */
};

/* ---------------------------------------------------------------------------
 * async_pummel
 */

struct Pummel {
  std::atomic<bool> last{false};
  int64_t callbacks = 0;
  bool after_last = false;
  Watchdog dog;
};

void pummel_cb(struct ev_loop *loop, ev_async *w, int) {
  auto *p = static_cast<Pummel *>(w->data);
  p->callbacks++;
  if (p->last.load(std::memory_order_acquire)) {
    p->after_last = true;
    ev_async_stop(loop, w);
    p->dog.disarm(loop);
  }
}

void async_pummel(benchmark::State &state) {
  ev_async async;
  Pummel p;
  struct ev_loop *loop = new_loop(state);
  if (loop == nullptr)
    return;
  ev_async_init(&async, pummel_cb);
  async.data = &p;
  ev_async_start(loop, &async);
  p.dog.arm(loop);
  LoopThread runner(loop);

  for (auto _ : state) {
    for (int64_t i = 0; i < bench::kPummelSends; i++)
      ev_async_send(loop, &async);
    p.last.store(true, std::memory_order_release);
    ev_async_send(loop, &async);
    runner.join();
  }
  if (p.dog.fired) {
    state.SkipWithError("watchdog: the workload did not finish");
    return;
  }
  state.SetItemsProcessed(bench::kPummelSends);
  state.counters["sends"] = (double)bench::kPummelSends;
  state.counters["callbacks"] = (double)p.callbacks;
  state.counters["after_last"] = p.after_last ? 1.0 : 0.0;
}

/* ---------------------------------------------------------------------------
 * async_send_pending
 */

void async_count(struct ev_loop *, ev_async *w, int) {
  ++*static_cast<int64_t *>(w->data);
}

void async_send_pending(benchmark::State &state) {
  ev_async async;
  Loop loop(state);
  if (!loop)
    return;
  int64_t callbacks = 0;
  ev_async_init(&async, async_count);
  async.data = &callbacks;
  ev_async_start(loop.get(), &async);
  ev_async_send(loop.get(), &async); /* now pending */
  for (auto _ : state)
    ev_async_send(loop.get(), &async);
  ev_run(loop.get(), EVRUN_NOWAIT);
  if (callbacks != 1)
    state.SkipWithError("not exactly one callback for the pending sends");
  ev_async_stop(loop.get(), &async);
}

/* ---------------------------------------------------------------------------
 * post_throughput/P: bench::TaskQueue woken with ev_async_send().
 */

struct PostQueue {
  bench::TaskQueue queue;
  ev_async async;
  struct ev_loop *loop = nullptr;
  int64_t expected = 0;
  int64_t count = 0; /* the loop's thread only */
  Watchdog dog;
};

void post_drain(struct ev_loop *, ev_async *w, int) {
  static_cast<PostQueue *>(w->data)->queue.drain();
}

void count_task(bench::QTask *task) {
  auto *q = static_cast<PostQueue *>(task->data);
  if (++q->count == q->expected) {
    ev_async_stop(q->loop, &q->async); /* the last task: let ev_run() return */
    q->dog.disarm(q->loop);
  }
}

void post_throughput(benchmark::State &state) {
  const int producers = (int)state.range(0);
  const int64_t n = bench::kPostTasks;
  PostQueue q;
  q.expected = n * producers;
  std::vector<std::vector<bench::QTask>> tasks((size_t)producers);
  for (auto &v : tasks) {
    v.resize((size_t)n);
    for (auto &t : v) {
      t.fn = count_task;
      t.data = &q;
    }
  }
  q.loop = new_loop(state, "mutex queue + ev_async_send");
  if (q.loop == nullptr)
    return;
  ev_async_init(&q.async, post_drain);
  q.async.data = &q;
  ev_async_start(q.loop, &q.async);
  q.dog.arm(q.loop);
  LoopThread runner(q.loop);

  bench::Gate go;
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; p++)
    threads.emplace_back([&, p] {
      go.wait();
      for (auto &t : tasks[(size_t)p]) {
        q.queue.push(&t);
        ev_async_send(q.loop, &q.async);
      }
    });
  for (auto _ : state) {
    go.open();
    for (auto &t : threads)
      t.join();
    runner.join();
  }
  go.open(); /* in case the timed loop did not run */
  for (auto &t : threads)
    if (t.joinable())
      t.join();
  if (q.dog.fired) {
    state.SkipWithError("watchdog: the workload did not finish");
    return;
  }
  if (q.count != q.expected) {
    state.SkipWithError("not every task ran");
    return;
  }
  state.SetItemsProcessed(q.expected);
  state.counters["tasks"] = (double)q.count;
}

/* ---------------------------------------------------------------------------
 * loop_pingpong: each loop's async watcher, sent to by the other loop.
 */

struct PingPong {
  struct ev_loop *a = nullptr, *b = nullptr;
  ev_async at_a, at_b;
  int64_t n = 0;
  int64_t trips = 0;              /* a's thread only */
  std::atomic<bool> stop{false}; /* set by a before its last send to b */
  Watchdog dog_a, dog_b;
};

void ping_at_b(struct ev_loop *b, ev_async *w, int) {
  auto *p = static_cast<PingPong *>(w->data);
  if (p->stop.load(std::memory_order_acquire)) {
    ev_async_stop(b, w);
    p->dog_b.disarm(b);
    return;
  }
  ev_async_send(p->a, &p->at_a);
}

void ping_at_a(struct ev_loop *a, ev_async *w, int) {
  auto *p = static_cast<PingPong *>(w->data);
  if (++p->trips == p->n) {
    p->stop.store(true, std::memory_order_release);
    ev_async_stop(a, w);
    p->dog_a.disarm(a);
  }
  ev_async_send(p->b, &p->at_b);
}

void loop_pingpong(benchmark::State &state) {
  PingPong p;
  Loop a(state);
  if (!a)
    return;
  p.b = new_loop(state);
  if (p.b == nullptr)
    return;
  p.a = a.get();
  p.n = bench::pingpongs();
  ev_async_init(&p.at_a, ping_at_a);
  ev_async_init(&p.at_b, ping_at_b);
  p.at_a.data = p.at_b.data = &p;
  ev_async_start(p.a, &p.at_a);
  ev_async_start(p.b, &p.at_b);
  p.dog_a.arm(p.a);
  p.dog_b.arm(p.b);
  LoopThread runner(p.b);

  for (auto _ : state) {
    ev_async_send(p.b, &p.at_b);
    ev_run(p.a, 0);
    runner.join();
  }
  if (p.dog_a.fired || p.dog_b.fired) {
    state.SkipWithError("watchdog: the workload did not finish");
    return;
  }
  if (p.trips != p.n) {
    state.SkipWithError("not every round trip was made");
    return;
  }
  state.SetItemsProcessed(p.trips);
  state.counters["round_trips"] = (double)p.trips;
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

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::AddCustomContext("library",
                              "libev " + std::to_string(ev_version_major()) +
                                  "." + std::to_string(ev_version_minor()));
  struct ev_loop *probe = ev_loop_new(EVFLAG_AUTO);
  if (probe != nullptr) {
    benchmark::AddCustomContext("backend", backend_name(ev_backend(probe)));
    ev_loop_destroy(probe);
  }
  benchmark::AddCustomContext("allocator", bench::malloc_name() + " (malloc)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
