/*
 * bench_libuv.cc - the cross-thread workloads of bench_rx.cc (see
 * bench_common.h) on libuv, the other reference: async_pummel,
 * async_send_pending, post_throughput/P and loop_pingpong.
 *
 * uv_async_send() is libuv's one thread-safe call; every send that finds the
 * handle idle writes the loop's eventfd, whether the loop sleeps or not, and
 * the loop reads it back (libuv 1.44 polls with epoll on Linux; its io_uring
 * use is for files and came later). post_throughput gets bench::TaskQueue,
 * the mutex-protected queue a libuv user pairs with an async handle, and its
 * label says so.
 *
 * Loops are caller-owned uv_loop_t values; one that another thread runs is
 * set up here before that thread starts, then run, closed and freed by it.
 * The binary links jemalloc when meson found it, as bench_rx and bench_libev
 * do.
 */
#include "bench_common.h"

#include <uv.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace {

/* libuv has no call that names its backend; on Linux it is epoll. */
constexpr const char *kBackend = "epoll";

/* Closes every handle still open, lets the closes finish, closes the loop. */
void close_loop(uv_loop_t *loop) {
  uv_walk(
      loop,
      [](uv_handle_t *h, void *) {
        if (!uv_is_closing(h))
          uv_close(h, nullptr);
      },
      nullptr);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
}

/* An initialised loop, closed at scope exit. Declare the handles before it:
 * closing the loop closes them, so they must still exist then. */
class Loop {
public:
  explicit Loop(benchmark::State &state, const char *how = nullptr) {
    int rc = uv_loop_init(&loop_);
    if (rc != 0) {
      std::string msg = std::string("uv_loop_init: ") + uv_strerror(rc);
      state.SkipWithError(msg.c_str());
      return;
    }
    ok_ = true;
    std::string label = kBackend;
    if (how != nullptr)
      label += std::string(", ") + how;
    state.SetLabel(label);
  }
  ~Loop() {
    if (ok_ && !handed_over_)
      close_loop(&loop_);
  }
  Loop(const Loop &) = delete;
  Loop &operator=(const Loop &) = delete;
  uv_loop_t *get() {
    return &loop_;
  }
  explicit operator bool() const {
    return ok_;
  }
  /* A LoopThread closes it instead. */
  void hand_over() {
    handed_over_ = true;
  }

private:
  uv_loop_t loop_;
  bool ok_ = false;
  bool handed_over_ = false;
};

/* Stops a loop whose workload has not ended after kWatchdog; the loop is
 * then closed with its handles still open, which close_loop() handles. */
struct Watchdog {
  uv_timer_t timer;
  bool fired = false; /* written by the loop's thread, read after the join */

  void arm(uv_loop_t *loop) {
    uv_timer_init(loop, &timer);
    timer.data = this;
    uv_timer_start(&timer, bark, (uint64_t)(bench::kWatchdog / bench::kMsec),
                   0);
  }
  void disarm() {
    uv_timer_stop(&timer);
  }
  static void bark(uv_timer_t *t) {
    static_cast<Watchdog *>(t->data)->fired = true;
    uv_stop(t->loop);
  }
};

/* Runs a loop on a thread of its own until uv_run() returns, then closes it
 * on that thread once join() is called. Declare it after every handle of the
 * loop. */
class LoopThread {
public:
  explicit LoopThread(Loop &loop)
      : loop_(loop.get()), thread_([this] { body(); }) {
    loop.hand_over();
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
    uv_run(loop_, UV_RUN_DEFAULT);
    may_free_.wait();
    close_loop(loop_);
  }

  uv_loop_t *loop_;
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

void pummel_cb(uv_async_t *w) {
  auto *p = static_cast<Pummel *>(w->data);
  p->callbacks++;
  if (p->last.load(std::memory_order_acquire)) {
    p->after_last = true;
    /* Closing is libuv's way to stop an async handle. A send that reaches
     * it afterwards (the final one may) is ignored by the loop; the loop
     * and its eventfd live until the producer has joined. */
    uv_close(reinterpret_cast<uv_handle_t *>(w), nullptr);
    p->dog.disarm();
  }
}

void async_pummel(benchmark::State &state) {
  uv_async_t async;
  Pummel p;
  Loop loop(state);
  if (!loop)
    return;
  uv_async_init(loop.get(), &async, pummel_cb);
  async.data = &p;
  p.dog.arm(loop.get());
  LoopThread runner(loop);

  int bad = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < bench::kPummelSends; i++)
      bad |= uv_async_send(&async);
    p.last.store(true, std::memory_order_release);
    bad |= uv_async_send(&async);
    runner.join();
  }
  if (bad != 0) {
    state.SkipWithError("uv_async_send failed");
    return;
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

void async_count(uv_async_t *w) {
  ++*static_cast<int64_t *>(w->data);
}

void async_send_pending(benchmark::State &state) {
  uv_async_t async;
  Loop loop(state);
  if (!loop)
    return;
  int64_t callbacks = 0;
  uv_async_init(loop.get(), &async, async_count);
  async.data = &callbacks;
  uv_async_send(&async); /* now pending */
  for (auto _ : state)
    benchmark::DoNotOptimize(uv_async_send(&async));
  uv_run(loop.get(), UV_RUN_NOWAIT);
  if (callbacks != 1)
    state.SkipWithError("not exactly one callback for the pending sends");
}

/* ---------------------------------------------------------------------------
 * post_throughput/P: bench::TaskQueue woken with uv_async_send().
 */

struct PostQueue {
  bench::TaskQueue queue;
  uv_async_t async;
  int64_t expected = 0;
  int64_t count = 0; /* the loop's thread only */
  Watchdog dog;
};

void post_drain(uv_async_t *w) {
  static_cast<PostQueue *>(w->data)->queue.drain();
}

void count_task(bench::QTask *task) {
  auto *q = static_cast<PostQueue *>(task->data);
  if (++q->count == q->expected) {
    /* The last task: let uv_run() return. */
    uv_close(reinterpret_cast<uv_handle_t *>(&q->async), nullptr);
    q->dog.disarm();
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
  Loop loop(state, "mutex queue + uv_async_send");
  if (!loop)
    return;
  uv_async_init(loop.get(), &q.async, post_drain);
  q.async.data = &q;
  q.dog.arm(loop.get());
  LoopThread runner(loop);

  bench::Gate go;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; p++)
    threads.emplace_back([&, p] {
      go.wait();
      int err = 0;
      for (auto &t : tasks[(size_t)p]) {
        q.queue.push(&t);
        err |= uv_async_send(&q.async);
      }
      if (err != 0)
        bad.store(1);
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
  if (bad.load() != 0) {
    state.SkipWithError("uv_async_send failed");
    return;
  }
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
 * loop_pingpong: each loop's async handle, sent to by the other loop. Loop
 * a runs on the benchmark thread, loop b on a LoopThread.
 */

struct PingPong {
  uv_async_t at_a, at_b;
  int64_t n = 0;
  int64_t trips = 0;              /* a's thread only */
  std::atomic<bool> stop{false}; /* set by a before its last send to b */
  Watchdog dog_a, dog_b;
};

void ping_at_b(uv_async_t *w) {
  auto *p = static_cast<PingPong *>(w->data);
  if (p->stop.load(std::memory_order_acquire)) {
    uv_close(reinterpret_cast<uv_handle_t *>(w), nullptr);
    p->dog_b.disarm();
    return;
  }
  uv_async_send(&p->at_a);
}

void ping_at_a(uv_async_t *w) {
  auto *p = static_cast<PingPong *>(w->data);
  if (++p->trips == p->n) {
    p->stop.store(true, std::memory_order_release);
    uv_close(reinterpret_cast<uv_handle_t *>(w), nullptr);
    p->dog_a.disarm();
  }
  uv_async_send(&p->at_b);
}

void loop_pingpong(benchmark::State &state) {
  PingPong p;
  Loop a(state), b(state);
  if (!a || !b)
    return;
  p.n = bench::pingpongs();
  uv_async_init(a.get(), &p.at_a, ping_at_a);
  uv_async_init(b.get(), &p.at_b, ping_at_b);
  p.at_a.data = p.at_b.data = &p;
  p.dog_a.arm(a.get());
  p.dog_b.arm(b.get());
  LoopThread runner(b);

  for (auto _ : state) {
    uv_async_send(&p.at_b);
    uv_run(a.get(), UV_RUN_DEFAULT);
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

BENCHMARK(async_pummel)->Apply(bench::cross_options);
BENCHMARK(async_send_pending);
BENCHMARK(post_throughput)->Arg(1)->Arg(2)->Apply(bench::cross_options);
BENCHMARK(loop_pingpong)->Apply(bench::cross_options);

int main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::AddCustomContext("library",
                              std::string("libuv ") + uv_version_string());
  benchmark::AddCustomContext("backend", kBackend);
  benchmark::AddCustomContext("allocator", bench::malloc_name() + " (malloc)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
