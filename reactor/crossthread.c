/*
 * crossthread.c - what crosses threads into a loop: rx_loop_post's queue,
 * the doorbell that wakes a sleeping loop, and the sleep handshake every
 * cross-thread producer (rx_async_send(), signal handlers, posts) goes
 * through. The rx_async watcher itself is async.c's.
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
 * rx_loop_post pushes a caller-owned task on an intrusive Vyukov queue
 * (mpsc.h): wait-free for producers, no allocation, FIFO per producer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

/* Tasks run per iteration at most, so that a producer that never stops
 * cannot starve timers and io; the rest run in the next iteration, which
 * then does not block. */
#define POSTS_PER_ITERATION 4096

/* rx_task._queued while the task is on the queue (push_task()). */
#define RX__TASK_QUEUED 0x7a5c0e0du

int rx__cross_init(rx_loop *loop) {
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
 * whatever was posted (each task exactly once), close the doorbell. The
 * async watchers are stopped next (rx__async_free(), loop.c's table). */
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
  if (loop->wakefd >= 0)
    close(loop->wakefd);
  loop->wakefd = -1;
}

/* Tells the loop that an async watcher or a signal has something for it:
 * the producer half of the sleep handshake. Async-signal-safe. */
void rx__cross_notify(rx_loop *loop) {
  /* Seq_cst store and load, against rx__cross_may_sleep()'s pair. */
  __atomic_store_n(&loop->async_pending, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&loop->sleeping, __ATOMIC_SEQ_CST))
    rx__cross_ring(loop);
}

void rx__cross_ring(rx_loop *loop) {
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

/* Runs posted tasks and feeds sent async watchers; every iteration. */
void rx__cross_drain(rx_loop *loop) {
  /* The relaxed load keeps an iteration without sends at one plain read;
   * the exchange that follows is what orders the scan after the sends. */
  if (__atomic_load_n(&loop->async_pending, __ATOMIC_RELAXED) &&
      __atomic_exchange_n(&loop->async_pending, 0, __ATOMIC_ACQUIRE)) {
    rx__async_scan(loop);
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
    rx__cross_ring(loop);
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
     * rx__cross_ring() takes again. */
    if (from->depth == 0 || from->ops != to->ops || rx__fork_pending(from) ||
        from->ops->wake_from == NULL || from->ops->wake_from(from, to) != 0) {
      __atomic_store_n(&to->doorbell_rung, 0, __ATOMIC_RELEASE);
      rx__cross_ring(to);
    }
  }
  pushed(to);
  return 0;
}
