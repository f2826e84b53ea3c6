/*
 * async.c - rx_async: a watcher that any thread wakes (rx_async_send()).
 * The wake-up goes through crossthread.c's sleep handshake and doorbell.
 *
 * rx_async coalesces with a per-watcher `_sent` word: the first send after
 * the loop looked notifies it, later ones only mark. The loop scans its
 * async watchers only when `async_pending` says a send happened, as libev
 * does. A send publishes the caller's earlier writes to the callback that
 * follows it, which takes a StoreLoad barrier between those writes and the
 * send's look at `_sent` (the store-buffering pattern, rx_async_send()).
 * Each send pays for it with an atomic, unless the watcher is "light":
 * after enough sends since the loop last looked, the sends that follow
 * only load, and the loop, when it takes the light word, pays the barrier
 * for all of them at once with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED),
 * which runs a full barrier on every CPU that runs a thread of this
 * process. That is the asymmetric-fence technique of userspace RCU and of
 * folly's asymmetricHeavyBarrier; membarrier(2) states the guarantee.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* ---------------------------------------------------------------------------
 * Light sends: the asymmetric barrier.
 *
 * `_sent` holds SENT_ONE times the sends that took an atomic since the loop
 * last looked, and the LIGHT bit. The send that brings the count to
 * `light_after` sets LIGHT in the same compare-and-swap; a send that finds
 * LIGHT set returns after that one load. The loop takes the word with an
 * exchange, and if LIGHT was in it, issues the process-wide barrier before
 * any callback runs. Why that is enough: a send that saw LIGHT read the
 * word before the exchange overwrote it, so it was past its look, and so
 * past the caller's writes, when the barrier interrupted its CPU (or when
 * its thread was last switched out); the barrier drains those writes before
 * membarrier() returns. The send's look itself cannot move before the
 * caller's writes without the compiler's help, which a signal fence denies.
 *
 * A barrier is a system call that interrupts every other CPU running a
 * thread of this process and waits for them: about 1 us when none does,
 * about 45 us on the reference VM when one does. So a watcher turns light
 * only after as many atomic sends as the last barrier cost in atomics: the
 * loop pays at most as much again as the sends saved, and a watcher sent a
 * few times per iteration never turns light. */
#define SENT_ONE 2u
#define LIGHT 1u
#define RMW_NS 4            /* about what a send's atomic costs */
#define LIGHT_AFTER_MIN 64u /* sends before a watcher turns light */
#define LIGHT_AFTER_MAX (1u << 20)

/* 1: membarrier is registered for this process; -1: it is not available
 * (an old kernel, a seccomp filter, a ThreadSanitizer build, which cannot
 * see the barrier); 0: not asked yet. Registration survives fork(). */
static int fence_state;
static unsigned light_after = 4096; /* relaxed: a heuristic */

static long membarrier(int cmd) {
  return syscall(__NR_membarrier, cmd, 0, 0);
}

/* Called on the loop's thread when an async watcher starts. */
static void fence_setup(void) {
  if (__atomic_load_n(&fence_state, __ATOMIC_ACQUIRE) != 0)
    return;
  int state = -1;
#ifndef RX__HAS_TSAN
  long cmds = membarrier(MEMBARRIER_CMD_QUERY);
  if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
      membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
    state = 1;
#endif
  __atomic_store_n(&fence_state, state, __ATOMIC_RELEASE);
}

/* The barrier for light sends. False if the kernel refused it, as a
 * seccomp filter installed after setup would: light sends are then over
 * for this process. */
static bool heavy_fence(rx_loop *loop) {
  int64_t start = rx__clock_now();
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
    __atomic_store_n(&fence_state, -1, __ATOMIC_RELAXED);
    return false;
  }
  loop->m.async_fences++;
  uint64_t cost = (uint64_t)(rx__clock_now() - start) / RMW_NS;
  if (cost < LIGHT_AFTER_MIN)
    cost = LIGHT_AFTER_MIN;
  if (cost > LIGHT_AFTER_MAX)
    cost = LIGHT_AFTER_MAX;
  /* Written only when it moves by a quarter, so that senders, which read
   * it, keep their copy of the line. */
  unsigned now = __atomic_load_n(&light_after, __ATOMIC_RELAXED);
  if (cost > now + now / 4 || cost < now - now / 4)
    __atomic_store_n(&light_after, (unsigned)cost, __ATOMIC_RELAXED);
  return true;
}

/* Feeds the async watchers that were sent to; crossthread.c's drain calls
 * it when `async_pending` says a send happened. */
void rx__async_scan(rx_loop *loop) {
  unsigned light = 0;
  for (struct rx__link *n = loop->asyncs.next; n != &loop->asyncs;
       n = n->next) {
    rx_async *w = rx__container_of(n, rx_async, _active);
    /* Clear before the callback runs: a send from now on must bring
     * another callback ("at least one after the last send"). */
    unsigned sent;
    if (__atomic_load_n(&w->_sent, __ATOMIC_RELAXED) &&
        (sent = __atomic_exchange_n(&w->_sent, 0, __ATOMIC_ACQ_REL)) != 0) {
      light |= sent & LIGHT;
      rx__feed(loop, rx__w(w), RX_ASYNC);
      loop->m.cross_events++;
    }
  }
  if (light == 0 || heavy_fence(loop))
    return;
  /* No barrier: a light send's writes may not be visible yet. Every
   * callback just fed runs once more in the next iteration, by when they
   * are in practice (a store buffer drains in well under a microsecond);
   * from now on every send takes its atomic. */
  for (struct rx__link *n = loop->asyncs.next; n != &loop->asyncs;
       n = n->next) {
    rx_async *w = rx__container_of(n, rx_async, _active);
    if (w->_w.flags & RX__F_PENDING)
      __atomic_fetch_or(&w->_sent, SENT_ONE, __ATOMIC_RELAXED);
  }
  __atomic_store_n(&loop->async_pending, 1, __ATOMIC_SEQ_CST);
}

/* ---------------------------------------------------------------------------
 * rx_async
 */

void rx_async_init(rx_async *w, rx_async_cb cb) {
  if (w == NULL)
    return;
  w->cb = cb;
  rx__head_init(&w->_w, RX__KIND_ASYNC);
  w->_active.next = NULL;
  w->_active.prev = NULL;
  w->_sent = 0;
  w->_loop = NULL;
}

int rx_async_start(rx_loop *loop, rx_async *w) {
  bool fresh = w != NULL && !(w->_w.flags & RX__F_ACTIVE);
  if (fresh)
    __atomic_store_n(&w->_sent, 0, __ATOMIC_RELAXED);
  int rc = rx__listed_start(loop, rx__w(w), w ? &w->_active : NULL,
                            loop ? &loop->asyncs : NULL);
  if (rc == 0 && fresh) {
    fence_setup();
    __atomic_store_n(&w->_loop, loop, __ATOMIC_RELAXED);
  }
  return rc;
}

int rx_async_stop(rx_loop *loop, rx_async *w) {
  int rc = rx__listed_stop(loop, rx__w(w), w ? &w->_active : NULL);
  if (rc == 0)
    __atomic_store_n(&w->_loop, NULL, __ATOMIC_RELAXED);
  return rc;
}

int rx_async_set_priority(rx_async *w, int priority) {
  return rx__head_set_priority(rx__w(w), priority);
}

int rx_async_send(rx_loop *loop, rx_async *w) {
  if (loop == NULL || w == NULL)
    return -EINVAL;
  /* A send for another loop's watcher would wake the wrong loop and leave
   * `_sent` set where no scan looks: every later send would then coalesce
   * into it, and the callback never run again. Relaxed: the start that set
   * it happens before the send, by the caller's own means. */
  rx_loop *owner = __atomic_load_n(&w->_loop, __ATOMIC_RELAXED);
  if (owner != NULL && owner != loop)
    return -EBUSY;
  /* The caller's writes stay before the look (for the compiler; the CPU is
   * the loop's barrier's business, see "Light sends" above). */
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  unsigned sent = __atomic_load_n(&w->_sent, __ATOMIC_RELAXED);
  if (sent & LIGHT)
    return 0;
  /* Otherwise an atomic read-modify-write, also when the word says sent:
   * with a plain load there (libuv's uv_async_send does one, see libuv pull
   * request 349), a send that coalesces can find the word set while the
   * caller's last write still sits in this CPU's store buffer; the loop
   * clears the word and runs the callback, which misses that write, and no
   * callback follows. bench/peers async_pummel hung on it about once in
   * 200 runs. As an RMW the look reads the word's latest value: set, and
   * the loop's clearing exchange comes after it and sees what came before;
   * clear, and this send notifies the loop itself. */
  if (__atomic_load_n(&fence_state, __ATOMIC_RELAXED) <= 0) {
    if (__atomic_fetch_or(&w->_sent, SENT_ONE, __ATOMIC_SEQ_CST) != 0)
      return 0;
  } else {
    /* Count the send; the one that reaches light_after sets LIGHT in the
     * same step, so LIGHT is never set on a word the loop has cleared. */
    unsigned limit = __atomic_load_n(&light_after, __ATOMIC_RELAXED) * SENT_ONE,
             next;
    for (;;) {
      next = sent + SENT_ONE;
      if (next >= limit)
        next |= LIGHT;
      if (__atomic_compare_exchange_n(&w->_sent, &sent, next, true,
                                      __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        break;
      if (sent & LIGHT) /* another send turned it light meanwhile */
        return 0;
    }
    if (sent != 0)
      return 0;
  }
  rx__cross_notify(loop);
  return 0;
}

int rx_async_pending(const rx_async *w) {
  return w != NULL && __atomic_load_n(&w->_sent, __ATOMIC_RELAXED) != 0;
}

/* The loop's share (loop.c's table of kinds). */
int rx__async_loop_init(rx_loop *loop) {
  rx__list_init(&loop->asyncs);
  return 0;
}

void rx__async_free(rx_loop *loop) {
  while (!rx__list_empty(&loop->asyncs))
    rx_async_stop(loop, rx__container_of(loop->asyncs.next, rx_async, _active));
}
