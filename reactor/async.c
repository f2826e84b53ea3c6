/*
 * async.c - everything that crosses threads: rx_async, rx_loop_post and the
 * doorbell that wakes a sleeping loop.
 *
 * The sleep handshake (a Dekker pair, as in libuv's uv_async_send and
 * Vyukov's eventcount): before blocking, the loop stores `sleeping = 1` and
 * then looks at its queues; a producer publishes its work and then loads
 * `sleeping`. All four accesses are seq_cst, so in their single total order
 * either the loop sees the work (and does not block) or the producer sees
 * the loop asleep (and rings the doorbell). A producer never rings a loop
 * that is awake, and of several producers only the first rings
 * (`doorbell_rung`), so a burst of posts costs one eventfd write.
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
 *
 * rx_loop_post pushes a caller-owned task on an intrusive Vyukov queue
 * (mpsc.h): wait-free for producers, no allocation, FIFO per producer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* Tasks run per iteration at most, so that a producer that never stops
 * cannot starve timers and io; the rest run in the next iteration, which
 * then does not block. */
#define POSTS_PER_ITERATION 4096

/* rx_task._queued while the task is on the queue (push_task()). */
#define RX__TASK_QUEUED 0x7a5c0e0du

int rx__cross_init(rx_loop *loop) {
  rx__list_init(&loop->asyncs);
  rx__mpsc_init(&loop->posts);
  /* Blocking, so that io_uring can keep a READ on it in flight; the epoll
   * backend reads only after the fd polled readable. */
  loop->wakefd = eventfd(0, EFD_CLOEXEC);
  if (loop->wakefd < 0)
    return -errno;
  int rc = loop->ops->doorbell(loop);
  if (rc != 0) {
    close(loop->wakefd);
    loop->wakefd = -1;
  }
  return rc;
}

/* In a forked child: the inherited eventfd is the parent's doorbell too.
 * It is closed first, so that a child with no fd to spare gets its number
 * back; on failure (-EMFILE) the loop has no doorbell until the next try,
 * and nothing rings it meanwhile (loop.c holds `doorbell_rung` set). */
int rx__cross_fork(rx_loop *loop) {
  if (loop->wakefd >= 0)
    close(loop->wakefd);
  loop->wakefd = eventfd(0, EFD_CLOEXEC);
  return loop->wakefd >= 0 ? 0 : -errno;
}

/* The task of a popped node, which may be posted again from now on.
 * Release: the pop's reads of the node happen before a new push's writes
 * (push_task()'s acquire exchange). */
static rx_task *task_popped(struct rx__mpsc_node *n) {
  rx_task *task = rx__container_of(n, rx_task, _node);
  __atomic_store_n(&task->_queued, 0, __ATOMIC_RELEASE);
  return task;
}

/* Called by rx_loop_free(): refuse new posts, wait for those under way, run
 * whatever was posted (each task exactly once), close the doorbell. */
void rx__cross_free(rx_loop *loop) {
  __atomic_store_n(&loop->closing, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&loop->posting, __ATOMIC_SEQ_CST) != 0)
    sched_yield();
  struct rx__mpsc_node *n;
  while (!rx__mpsc_empty(&loop->posts)) {
    if ((n = rx__mpsc_pop(&loop->posts)) != NULL) {
      rx_task *task = task_popped(n);
      task->fn(loop, task);
    }
  }
  while (!rx__list_empty(&loop->asyncs))
    rx_async_stop(loop, rx__container_of(loop->asyncs.next, rx_async, _active));
  if (loop->wakefd >= 0)
    close(loop->wakefd);
  loop->wakefd = -1;
}

static void ring(rx_loop *loop);

/* Tells the loop that an async watcher or a signal has something for it:
 * the producer half of the sleep handshake. Async-signal-safe. */
void rx__cross_notify(rx_loop *loop) {
  /* Seq_cst store and load, against rx__cross_may_sleep()'s pair. */
  __atomic_store_n(&loop->async_pending, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&loop->sleeping, __ATOMIC_SEQ_CST))
    ring(loop);
}

static void ring(rx_loop *loop) {
  /* Acquire-release: the first ringer since the loop last woke writes; the
   * others see the flag and leave. A plain load first: while the flag is
   * set, producers read the line instead of taking it exclusive each time. */
  if (__atomic_load_n(&loop->doorbell_rung, __ATOMIC_RELAXED) ||
      __atomic_exchange_n(&loop->doorbell_rung, 1, __ATOMIC_ACQ_REL))
    return;
  uint64_t one = 1;
  /* Cannot fail but for a counter at its maximum, which the flag rules out;
   * write() is async-signal-safe. */
  (void)!write(loop->wakefd, &one, sizeof(one));
}

/* The loop is about to block: announce it, then look once more. Returns
 * false if cross-thread work is waiting, in which case it must not block. */
bool rx__cross_may_sleep(rx_loop *loop) {
  /* A plain look first: while work keeps coming, the loop does not write
   * `sleeping`, a line every producer reads on every post. */
  if (__atomic_load_n(&loop->async_pending, __ATOMIC_RELAXED) ||
      !rx__mpsc_empty(&loop->posts))
    return false;
  __atomic_store_n(&loop->sleeping, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&loop->async_pending, __ATOMIC_SEQ_CST) ||
      !rx__mpsc_empty(&loop->posts)) {
    __atomic_store_n(&loop->sleeping, 0, __ATOMIC_RELAXED);
    return false;
  }
  return true;
}

/* The loop is back from a blocking wait. A producer that still sees
 * `sleeping` rings for nothing, which is harmless. */
void rx__cross_awake(rx_loop *loop) {
  __atomic_store_n(&loop->sleeping, 0, __ATOMIC_RELAXED);
}

/* Cross-thread work is waiting: a send, a signal, or a post. Relaxed is
 * enough for a look; the work itself is taken with the queue's and the
 * flags' own orders. */
static bool cross_waiting(rx_loop *loop) {
  return __atomic_load_n(&loop->async_pending, __ATOMIC_RELAXED) ||
         rx__mpsc_peek(&loop->posts);
}

/* Busy-polls for cross-thread work for at most `limit` ns, `sleeping` left
 * 0 so that producers neither ring nor send a ring-to-ring message: a
 * hand-off then costs the two threads no syscall and no context switch.
 * The loop gives the CPU up every POLL_YIELD_NS with sched_yield(), so that
 * a partner the scheduler woke onto this CPU runs instead of waiting out
 * the poll; with nothing else to run, sched_yield() returns at once.
 * Returns true when work arrived. */
#define POLL_YIELD_NS 2000
bool rx__cross_poll(rx_loop *loop, int64_t limit) {
  int64_t start = rx__clock_now(), now = start,
          yield_at = start + POLL_YIELD_NS;
  bool hit = false;
  while (!(hit = cross_waiting(loop)) && now - start < limit) {
    for (int i = 0; i < 8; i++)
      rx__cpu_relax();
    now = rx__clock_now();
    if (now >= yield_at) {
      sched_yield();
      yield_at = now + POLL_YIELD_NS;
    }
  }
  loop->m.poll_ns += rx__clock_now() - start;
  loop->m.poll_hits += hit;
  return hit;
}

/* The backend has drained the doorbell (read the eventfd, or reaped the
 * message). Only now may the next producer ring again: `doorbell_rung`
 * means "written and not yet drained", and resetting it anywhere else could
 * leave it set over an empty eventfd, silencing every later ring. A
 * producer that finds it set has already pushed its work, which this
 * iteration's drain, or the next sleep's check, will see. */
void rx__doorbell(rx_loop *loop) {
  __atomic_store_n(&loop->doorbell_rung, 0, __ATOMIC_SEQ_CST);
  loop->m.wakeups++;
}

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

static void scan_asyncs(rx_loop *loop) {
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

/* Runs posted tasks and feeds sent async watchers; every iteration. */
void rx__cross_drain(rx_loop *loop) {
  /* The relaxed load keeps an iteration without sends at one plain read;
   * the exchange that follows is what orders the scan after the sends. */
  if (__atomic_load_n(&loop->async_pending, __ATOMIC_RELAXED) &&
      __atomic_exchange_n(&loop->async_pending, 0, __ATOMIC_ACQUIRE)) {
    scan_asyncs(loop);
    if (loop->nsignals > 0)
      rx__signal_scan(loop);
  }
  struct rx__mpsc_node *n;
  for (int i = 0; i < POSTS_PER_ITERATION; i++) {
    if ((n = rx__mpsc_pop(&loop->posts)) == NULL)
      break;
    rx_task *task = task_popped(n);
    loop->m.cross_events++;
    task->fn(loop, task);
  }
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
  int rc = rx__listed_start(loop, rx__w(w),
                            w ? &w->_active : NULL,
                            loop ? &loop->asyncs : NULL);
  if (rc == 0 && fresh) {
    fence_setup();
    __atomic_store_n(&w->_loop, loop, __ATOMIC_RELAXED);
  }
  return rc;
}

int rx_async_stop(rx_loop *loop, rx_async *w) {
  int rc = rx__listed_stop(loop, rx__w(w),
                           w ? &w->_active : NULL);
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

/* ---------------------------------------------------------------------------
 * rx_loop_post
 */

/* Pushes `task` unless the loop is closing or the task is queued already.
 * `posting` counts producers inside, so that rx_loop_free() can wait for
 * them before it frees. */
static int push_task(rx_loop *loop, rx_task *task) {
  if (loop == NULL || task == NULL || task->fn == NULL)
    return -EINVAL;
  __atomic_fetch_add(&loop->posting, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&loop->closing, __ATOMIC_SEQ_CST)) {
    __atomic_fetch_sub(&loop->posting, 1, __ATOMIC_RELEASE);
    return -ESHUTDOWN;
  }
  /* A node pushed twice would link the queue into a cycle (mpsc.h's
   * contract), and rx_loop_free() would run it forever. The exchange lets
   * one of two racing posts through. A magic value rather than a flag, so
   * that a task whose memory was never zeroed is not taken for queued.
   * Acquire: pairs with task_popped()'s release, so that the consumer's
   * last reads of the node come before this push rewrites it. */
  if (__atomic_exchange_n(&task->_queued, RX__TASK_QUEUED, __ATOMIC_ACQUIRE) ==
      RX__TASK_QUEUED) {
    __atomic_fetch_sub(&loop->posting, 1, __ATOMIC_RELEASE);
    return -EBUSY;
  }
  rx__mpsc_push(&loop->posts, &task->_node); /* seq_cst exchange */
  return 0;
}

static void pushed(rx_loop *loop) {
  /* Release: rx_loop_free() may free the loop once it reads zero. */
  __atomic_fetch_sub(&loop->posting, 1, __ATOMIC_RELEASE);
}

int rx_loop_post(rx_loop *loop, rx_task *task) {
  int rc = push_task(loop, task);
  if (rc != 0)
    return rc;
  if (__atomic_load_n(&loop->sleeping, __ATOMIC_SEQ_CST))
    ring(loop);
  pushed(loop);
  return 0;
}

int rx_loop_post_from(rx_loop *from, rx_loop *to, rx_task *task) {
  if (from == NULL)
    return -EINVAL;
  int rc = push_task(to, task);
  if (rc != 0)
    return rc;
  if (__atomic_load_n(&to->sleeping, __ATOMIC_SEQ_CST) &&
      !__atomic_exchange_n(&to->doorbell_rung, 1, __ATOMIC_ACQ_REL)) {
    /* The ring-to-ring message when both loops can and `from` is running
     * (its submission at the latest when rx_run() returns carries the
     * message); otherwise the eventfd, after giving back the flag that
     * ring() takes again. */
    if (from->depth == 0 || from->ops != to->ops || rx__fork_pending(from) ||
        from->ops->wake_from == NULL || from->ops->wake_from(from, to) != 0) {
      __atomic_store_n(&to->doorbell_rung, 0, __ATOMIC_RELEASE);
      ring(to);
    }
  }
  pushed(to);
  return 0;
}
