/*
 * list.h - the intrusive doubly linked list every rx queue is made of.
 *
 * A list is a circular ring of `struct rx__link` with one sentinel head that
 * holds no element. Elements embed a link and are found again with
 * rx__container_of(). An element that is not on any list has next == NULL,
 * so rx__list_unlink() is idempotent and rx__list_linked() is one load
 * (the same convention as h2o's linklist and libuv's queue.h).
 *
 * Functions, not macros, so that the compiler checks types and a debugger
 * can step through them.
 */
#ifndef RX_LIST_H
#define RX_LIST_H

#include <stddef.h>

#include "rx/layout.h"

#define rx__container_of(ptr, type, member) \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void rx__list_init(struct rx__link *head) {
  head->next = head;
  head->prev = head;
}

static inline int rx__list_empty(const struct rx__link *head) {
  return head->next == head;
}

static inline int rx__list_linked(const struct rx__link *node) {
  return node->next != NULL;
}

/* Appends `node`, which must be unlinked, at the tail of `head`. */
static inline void rx__list_push(struct rx__link *head, struct rx__link *node) {
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}

static inline void rx__list_unlink(struct rx__link *node) {
  if (node->next == NULL)
    return;
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->next = NULL;
  node->prev = NULL;
}

/* Removes and returns the first element, or NULL when the list is empty. */
static inline struct rx__link *rx__list_shift(struct rx__link *head) {
  struct rx__link *node = head->next;
  if (node == head)
    return NULL;
  rx__list_unlink(node);
  return node;
}

/* Moves every element of `from` to the tail of `to`, keeping their order;
 * `from` is left empty. O(1). */
static inline void rx__list_splice(struct rx__link *to, struct rx__link *from) {
  if (rx__list_empty(from))
    return;
  from->next->prev = to->prev;
  to->prev->next = from->next;
  from->prev->next = to;
  to->prev = from->prev;
  rx__list_init(from);
}

#endif /* RX_LIST_H */
