/*
 * bench_libev.cc - the workloads of bench_rx.cc (see bench_common.h) on
 * libev, the reference rx measures itself against.
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

#include <string>
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

} // namespace

BENCHMARK(loop_count);
BENCHMARK(timer_start)->Apply(bench::timer_sizes);
BENCHMARK(timer_stop_start)->Apply(bench::timer_sizes);
BENCHMARK(timer_again)->Apply(bench::timer_sizes);
BENCHMARK(million_timers)->Apply(bench::million_options);

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
