/*
 * rx/libvirt.h - rx as libvirt's event loop: librx-libvirt (pkg-config
 * rx-libvirt), the only part of rx that links libvirt.
 *
 * libvirt asks its host program for an event loop through
 * virEventRegisterImpl(); rx_libvirt_register() hands it the six functions
 * of rx/ids.h on an rx loop, so that a program that runs an rx loop needs
 * no second loop (virEventRunDefaultImpl() in a thread) for libvirt's
 * connections, keepalive and domain events. docs/ids.md describes the
 * semantics libvirt gets.
 */
#ifndef RX_LIBVIRT_H
#define RX_LIBVIRT_H

#include "rx.h"
#include "rx/ids.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RX_LIBVIRT_BUILDING) && defined(__GNUC__)
#define RX_LIBVIRT_EXPORT __attribute__((visibility("default")))
#else
#define RX_LIBVIRT_EXPORT
#endif

/* Makes `loop` libvirt's event loop for the whole process: creates an
 * rx_ids on it and registers it with virEventRegisterImpl(). Call it on
 * the loop's thread before the first libvirt connection is opened, then run
 * the loop (rx_run()) for as long as connections are used: their events,
 * keepalive and close callbacks come from it. 0; -EINVAL for NULL;
 * -EALREADY when a loop is already registered; -ENOMEM. If `ids` is not
 * NULL it receives the rx_ids, which the program may use as well. */
RX_LIBVIRT_EXPORT int rx_libvirt_register(rx_loop *loop, rx_ids **ids);

/* Undoes rx_libvirt_register() once every libvirt connection is closed
 * and no other thread calls into libvirt: frees the rx_ids (running the
 * free functions libvirt gave it) on the loop's thread, before or after
 * rx_loop_free(). libvirt keeps the functions, which fail (-1) until a loop
 * is registered again. 0, or -ENOENT when none is registered. */
RX_LIBVIRT_EXPORT int rx_libvirt_unregister(void);

#ifdef __cplusplus
}
#endif

#endif /* RX_LIBVIRT_H */
