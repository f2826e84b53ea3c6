/*
 * rx/ids.h - handles and timeouts by integer id on an rx loop: libvirt's
 * event API (virEventAddHandle and its five siblings) as a service of
 * librx-services (pkg-config rx-services), usable without libvirt.
 *
 * A handle watches an fd for RX_IDS_READ and/or RX_IDS_WRITE; a timeout
 * fires every `ms` milliseconds. Each add returns a positive id, never
 * reused within the life of the rx_ids, and takes an optional free function
 * `ff` that rx calls exactly once with the add's `opaque`: after the
 * remove, or when the rx_ids or its loop is freed, from the loop's thread,
 * outside any callback of the entry and with no lock of rx held (`ff` may
 * call these functions again). Handle and timeout ids are counted apart,
 * both from 1, as libvirt does.
 *
 * Threads: the six add/update/remove functions may be called from any
 * thread (not from a signal handler: they take a mutex), and from inside
 * any callback (an entry may remove itself). On
 * the loop's thread they take effect before the loop next waits; from
 * another thread they wake the loop. Either way the id is returned at once,
 * and once a remove has returned, the entry's callback is never started
 * again. rx_ids_new() and rx_ids_free() belong to the loop's thread.
 *
 * Handles: the same fd may be added several times, with interests that do
 * not overlap (each add is a watcher of its own). An update of the interest
 * is applied lazily, just before the loop waits: flipping it to 0 and back
 * between two waits costs nothing, not even a call into the loop.
 *
 * Timeouts: `ms` > 0 fires every `ms` milliseconds, measured from when the
 * timeout was added, updated or last fired (after its callback returned),
 * never earlier; 0 fires at every iteration of the loop; -1 disables it.
 * An update restarts the period, also to the same value. Add, update and
 * remove cost O(1): the timeouts are rx timers, on the loop's wheel.
 *
 * Errors are negative errno values: -EINVAL for a bad argument, -ENOENT for
 * an id that is not (or no longer) registered, such as a second remove,
 * -ENOMEM, -ESHUTDOWN once the rx_ids is being freed or its loop was,
 * -EOVERFLOW when INT_MAX ids have been handed out.
 */
#ifndef RX_IDS_H
#define RX_IDS_H

#include "rx.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RX_SERVICES_BUILDING) && defined(__GNUC__)
#define RX_IDS_EXPORT __attribute__((visibility("default")))
#else
#define RX_IDS_EXPORT
#endif

/* Handle events, libvirt's VIR_EVENT_HANDLE_* values. READ and WRITE are
 * interest and events; ERROR is reported when the fd is invalid or was
 * closed under the handle (the handle then stays silent until its next
 * update); a hang-up is reported as READ (and WRITE, if wanted), as the
 * loop sees it. ERROR and HANGUP are accepted in an interest and mean
 * nothing there (poll(2) reports them always). */
enum {
  RX_IDS_READ = 0x1,
  RX_IDS_WRITE = 0x2,
  RX_IDS_ERROR = 0x4,
  RX_IDS_HANGUP = 0x8,
};

typedef struct rx_ids rx_ids;

/* A handle's callback: its id, its fd, the events (RX_IDS_*), its opaque. */
typedef void (*rx_ids_handle_cb)(int id, int fd, int events, void *opaque);
/* A timeout's callback: its id and opaque. */
typedef void (*rx_ids_timeout_cb)(int id, void *opaque);
/* Frees an entry's opaque: called once per successful add (see above). */
typedef void (*rx_ids_free_fn)(void *opaque);

/* Makes the id tables of `loop`, on the loop's thread: 0, -EINVAL, -ENOMEM.
 * The loop's rx_loop_free() removes every entry (running each `ff`); the
 * rx_ids must still be freed after that, with rx_ids_free(). */
RX_IDS_EXPORT int rx_ids_new(rx_ids **ids, rx_loop *loop);
/* Removes every entry, running each `ff`, and frees `ids`: 0; -EINVAL for
 * NULL; -EBUSY, nothing done, from inside a callback or `ff` of `ids`. On
 * the loop's thread, after every other thread has stopped calling. */
RX_IDS_EXPORT int rx_ids_free(rx_ids *ids);

/* Watches `fd` for `events` (RX_IDS_*; 0 watches nothing until an update):
 * the new handle's id (> 0), or -EBADF for fd < 0, -EINVAL for a NULL `cb`
 * or unknown event bits, -ENOMEM, -ESHUTDOWN, -EOVERFLOW. */
RX_IDS_EXPORT int rx_ids_add_handle(rx_ids *ids, int fd, int events,
                                    rx_ids_handle_cb cb, void *opaque,
                                    rx_ids_free_fn ff);
/* Sets the handle's interest: 0, -EINVAL, -ENOENT, -ESHUTDOWN. */
RX_IDS_EXPORT int rx_ids_update_handle(rx_ids *ids, int id, int events);
/* Removes the handle: 0, -EINVAL, -ENOENT (also the second time),
 * -ESHUTDOWN. The fd is not closed; the caller may close it at once. */
RX_IDS_EXPORT int rx_ids_remove_handle(rx_ids *ids, int id);

/* Fires `cb` every `ms` milliseconds (>= -1, see above): the new timeout's
 * id (> 0), or -EINVAL for a NULL `cb` or ms < -1, -ENOMEM, -ESHUTDOWN,
 * -EOVERFLOW. */
RX_IDS_EXPORT int rx_ids_add_timeout(rx_ids *ids, int ms, rx_ids_timeout_cb cb,
                                     void *opaque, rx_ids_free_fn ff);
/* Sets the period and restarts it: 0, -EINVAL, -ENOENT, -ESHUTDOWN. */
RX_IDS_EXPORT int rx_ids_update_timeout(rx_ids *ids, int id, int ms);
/* Removes the timeout: 0, -EINVAL, -ENOENT (also the second time),
 * -ESHUTDOWN. */
RX_IDS_EXPORT int rx_ids_remove_timeout(rx_ids *ids, int id);

#ifdef __cplusplus
}
#endif

#endif /* RX_IDS_H */
