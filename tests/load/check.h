/*
 * check.h - the plain test programs' CHECK(): a failed condition is
 * printed with its place and a message, and counted in `failures`, which
 * main() returns; after 20, the program gives up.
 */
#ifndef RX_TESTS_LOAD_CHECK_H
#define RX_TESTS_LOAD_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int failures;

#define CHECK(cond, ...)                                         \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                              \
      fputc('\n', stderr);                                       \
      if (++failures > 20)                                       \
        exit(1);                                                 \
    }                                                            \
  } while (0)

#endif
