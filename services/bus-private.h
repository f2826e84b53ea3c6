/*
 * bus-private.h - what bus.c lends the rest of librx-services; not
 * installed, not exported.
 */
#ifndef RX_SERVICES_BUS_PRIVATE_H
#define RX_SERVICES_BUS_PRIVATE_H

#include "rx/bus.h"

/* Counts a dispatcher attached to `bus` (delta +1) or detached (-1):
 * rx_bus_free() refuses while any is. */
void rx__bus_hold(rx_bus *bus, int delta);

#endif
