// test-header.cc - rx.h is C++-clean (STYLE.md 7): this translation unit
// includes it, uses the overloaded rx_is_active / rx_is_pending, makes a
// loop and runs a 0 ms timer. It fails to build if the header is not valid
// C++, and exits non-zero if the loop does not work from C++. The
// services' headers are included too (declarations only: not linked).
#include "rx.h"
#include "rx/ids.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

int failures = 0;

void expect(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "test-header: FAILED: %s\n", what);
    failures++;
  }
}

struct Fired {
  rx_timer timer;
  int calls = 0;
  bool active_inside = true;
};

extern "C" void on_timer(rx_loop *loop, rx_timer *w, int revents) {
  (void)loop;
  Fired *f = reinterpret_cast<Fired *>(w);
  f->calls++;
  f->active_inside = rx_is_active(w) != 0;
  expect(revents == RX_TIMER, "revents == RX_TIMER");
}

extern "C" void on_idle(rx_loop *loop, rx_idle *w, int revents) {
  (void)revents;
  rx_idle_stop(loop, w);
}

} // namespace

int main() {
  static_assert(sizeof(rx_timer) <= 64, "rx_timer stays small");

  rx_loop *loop = nullptr;
  rx_loop_options opts{};
  int rc = rx_loop_new(&loop, &opts);
  if (rc != 0) {
    std::fprintf(stderr, "rx_loop_new: %s\n", rx_strerror(rc));
    return 1;
  }
  std::printf("test-header: backend %s (%s)\n", rx_backend_name(loop),
              rx_backend_reason(loop));

  Fired f;
  rx_timer_init(&f.timer, on_timer, RX_MSEC(0), 0);
  const rx_timer *ct = &f.timer;
  expect(!rx_is_active(&f.timer), "timer inactive before start");
  expect(!rx_is_pending(ct), "timer not pending before start");
  expect(rx_timer_start(loop, &f.timer) == 0, "rx_timer_start");
  expect(rx_is_active(ct), "timer active after start");

  rx_idle idle;
  rx_idle_init(&idle, on_idle);
  expect(rx_idle_start(loop, &idle) == 0, "rx_idle_start");
  expect(rx_is_active(&idle), "idle active");
  expect(!rx_is_pending(&idle), "idle not pending");

  rx_io io;
  rx_io_init(&io, nullptr, 0, RX_READ);
  expect(!rx_is_active(&io) && rx_io_events(&io) == RX_READ, "rx_io overloads");
  rx_prepare p;
  rx_check c;
  rx_prepare_init(&p, nullptr);
  rx_check_init(&c, nullptr);
  expect(!rx_is_active(&p) && !rx_is_pending(&c), "prepare/check overloads");

  expect(rx_run(loop, RX_RUN_DEFAULT) == 0, "rx_run returns 0");
  expect(f.calls == 1, "the timer fired once");
  expect(!f.active_inside, "a one-shot timer is inactive in its callback");
  expect(!rx_is_active(&idle), "idle stopped itself");
  expect(std::strcmp(rx_strerror(-EINVAL), std::strerror(EINVAL)) == 0,
         "rx_strerror");
  rx_loop_free(loop);
  if (failures == 0)
    std::printf("test-header: ok\n");
  return failures == 0 ? 0 : 1;
}
