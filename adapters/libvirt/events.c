/*
 * events.c - rx as libvirt's event loop (include/rx/libvirt.h).
 *
 * libvirt's six event functions have the signatures of rx/ids.h's, with a
 * process-wide loop instead of an rx_ids argument, -1 instead of a negative
 * errno and no result for the updates; libvirt's callback and free function
 * types are the same as rx/ids.h's, so they are passed on unchanged. What
 * libvirt relies on (ids never reused, ff run later from a clean stack,
 * calls from its own threads, removal from inside a callback, a timeout
 * updated to the same value restarting) is rx/ids.h's contract, tested in
 * tests/test-ids.c; tests/test-libvirt.c runs libvirt itself on it.
 *
 * The registered rx_ids is read by libvirt's threads at every call: an
 * atomic pointer, published with release order once the rx_ids is whole,
 * read with acquire order (libvirt's first call may come from any thread).
 */
#include "rx/libvirt.h"

#include <errno.h>
#include <stddef.h>

#include <libvirt/libvirt.h>

static rx_ids *registered;

static rx_ids *ids_now(void) {
  return __atomic_load_n(&registered, __ATOMIC_ACQUIRE);
}

static int add_handle(int fd, int events, virEventHandleCallback cb,
                      void *opaque, virFreeCallback ff) {
  int rc = rx_ids_add_handle(ids_now(), fd, events, cb, opaque, ff);
  return rc > 0 ? rc : -1;
}

static void update_handle(int watch, int events) {
  /* libvirt ignores an update of an unknown watch, as its own loops do. */
  (void)rx_ids_update_handle(ids_now(), watch, events);
}

static int remove_handle(int watch) {
  return rx_ids_remove_handle(ids_now(), watch) == 0 ? 0 : -1;
}

static int add_timeout(int ms, virEventTimeoutCallback cb, void *opaque,
                       virFreeCallback ff) {
  int rc = rx_ids_add_timeout(ids_now(), ms, cb, opaque, ff);
  return rc > 0 ? rc : -1;
}

static void update_timeout(int timer, int ms) {
  (void)rx_ids_update_timeout(ids_now(), timer, ms);
}

static int remove_timeout(int timer) {
  return rx_ids_remove_timeout(ids_now(), timer) == 0 ? 0 : -1;
}

int rx_libvirt_register(rx_loop *loop, rx_ids **out) {
  if (loop == NULL)
    return -EINVAL;
  if (ids_now() != NULL)
    return -EALREADY;
  rx_ids *ids;
  int rc = rx_ids_new(&ids, loop);
  if (rc != 0)
    return rc;
  rx_ids *none = NULL;
  /* Release: the rx_ids is whole before a libvirt thread can see it. */
  if (!__atomic_compare_exchange_n(&registered, &none, ids, 0, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED)) {
    rx_ids_free(ids);
    return -EALREADY;
  }
  virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout,
                       update_timeout, remove_timeout);
  if (out != NULL)
    *out = ids;
  return 0;
}

int rx_libvirt_unregister(void) {
  rx_ids *ids = __atomic_exchange_n(&registered, NULL, __ATOMIC_ACQ_REL);
  if (ids == NULL)
    return -ENOENT;
  return rx_ids_free(ids);
}
