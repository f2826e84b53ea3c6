/*
 * allocator.h - rx's own allocations through jemalloc, when the build found
 * it (meson defines RX_HAVE_JEMALLOC), as a server would run; libc
 * otherwise. rx passes the size of every block it frees, which is what
 * jemalloc's sized deallocation (sdallocx) wants.
 *
 * install_allocator() must run before any loop exists; it returns the
 * allocator's name.
 */
#ifndef RX_EXAMPLES_ALLOCATOR_H
#define RX_EXAMPLES_ALLOCATOR_H

#include <stdio.h>

#include "rx.h"

#ifdef RX_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

static size_t je_size(size_t size) { /* *allocx(0) is undefined */
  return size != 0 ? size : 1;
}
static void *je_alloc(void *ctx, size_t size) {
  (void)ctx;
  return mallocx(je_size(size), 0);
}
static void *je_realloc(void *ctx, void *ptr, size_t old, size_t size) {
  (void)ctx;
  (void)old;
  return rallocx(ptr, je_size(size), 0);
}
static void je_free(void *ctx, void *ptr, size_t size) {
  (void)ctx;
  sdallocx(ptr, je_size(size), 0);
}

static const char *install_allocator(void) {
  static const struct rx_allocator je = {je_alloc, je_realloc, je_free, NULL};
  int rc = rx_set_allocator(&je);
  if (rc < 0) {
    fprintf(stderr, "rx_set_allocator: %s\n", rx_strerror(rc));
    return "libc";
  }
  return "jemalloc";
}
#else
static const char *install_allocator(void) {
  return "libc";
}
#endif

#endif /* RX_EXAMPLES_ALLOCATOR_H */
