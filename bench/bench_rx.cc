/*
 * bench_rx.cc - rx micro benchmarks. The workloads, their names and their
 * random streams are in bench_common.h; bench_libev.cc runs the same ones on
 * libev, and bench/run.sh puts the two side by side.
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

#include <cstdio>
#include <cstdlib>
#include <string>
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

} // namespace

BENCHMARK(loop_count);
BENCHMARK(timer_start)->Apply(bench::timer_sizes);
BENCHMARK(timer_stop_start)->Apply(bench::timer_sizes);
BENCHMARK(timer_again)->Apply(bench::timer_sizes);
BENCHMARK(million_timers)->Apply(bench::million_options);

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
