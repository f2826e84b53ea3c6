/*
 * rx/layout.h - not API, layout only: the private building blocks that the
 * public watcher structs of rx.h embed by value.
 *
 * Watchers are caller-owned, so rx.h must give them a size, and with it the
 * types of their private fields. Those types live here, once, for rx.h and
 * for the library's own data structures built on them (reactor/list.h,
 * reactor/timerwheel.h, reactor/mpsc.h), which include this header rather
 * than all of rx.h. Every name is rx__ or RX__: private, and free to change
 * in any release. A program includes <rx.h>, never this file.
 */
#ifndef RX_LAYOUT_H
#define RX_LAYOUT_H

#include <stdint.h>

/* A link of an intrusive, circular, doubly linked list (reactor/list.h). */
struct rx__link {
  struct rx__link *next; /* NULL while unlinked */
  struct rx__link *prev;
};

/* A timer wheel entry: a link and one word holding the deadline, relative to
 * the wheel's origin, in its low 58 bits (9 years), and 6 bits the wheel's
 * user owns above them. One word, always read and written whole (no
 * bit-fields: a byte store followed by a word load of the same word stalls
 * store forwarding), is how the entry stays at 24 bytes. */
struct rx__tw_entry {
  struct rx__link link;
  uint64_t word;
};
#define RX__TW_AT_BITS 58
#define RX__TW_AT_MASK ((UINT64_C(1) << RX__TW_AT_BITS) - 1)

/* A node of the loop's lock-free queue (reactor/mpsc.h); only ever accessed
 * with atomic builtins. */
struct rx__mpsc_node {
  struct rx__mpsc_node *next;
};

#endif /* RX_LAYOUT_H */
