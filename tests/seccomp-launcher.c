/*
 * seccomp-launcher.c - runs a command with a syscall rx uses blocked by
 * seccomp, the way the environments rx must survive block it:
 *
 *   seccomp-launcher eperm COMMAND [ARGS...]
 *       io_uring_setup, io_uring_enter and io_uring_register fail with
 *       EPERM (Docker's and podman's default profiles, and most container
 *       runtimes since 2023);
 *   seccomp-launcher kill COMMAND [ARGS...]
 *       they kill the process with SIGSYS (Android's app filter);
 *   seccomp-launcher nopidfd COMMAND [ARGS...]
 *       io_uring is allowed, and pidfd_open fails with ENOSYS, as on a
 *       kernel before 5.3 or under a filter written before pidfds existed;
 *   seccomp-launcher nomembarrier COMMAND [ARGS...]
 *       membarrier fails with EPERM, as under a filter that does not list
 *       it (rx_async sends then always take their atomic).
 *
 * The filter (seccomp.h) is inherited across execve() and fork(), so the
 * command and its children run under it.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "seccomp.h"

static int usage(void) {
  fprintf(stderr, "usage: seccomp-launcher eperm|kill|nopidfd|nomembarrier "
                  "COMMAND [ARGS...]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return usage();
  unsigned refuse;
  /* The three io_uring calls, or another call thrice. */
  unsigned nr[3] = {__NR_io_uring_setup, __NR_io_uring_enter,
                    __NR_io_uring_register};
  if (strcmp(argv[1], "eperm") == 0)
    refuse = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  else if (strcmp(argv[1], "kill") == 0)
    refuse = SECCOMP_RET_KILL_PROCESS;
  else if (strcmp(argv[1], "nopidfd") == 0) {
    refuse = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);
    nr[0] = nr[1] = nr[2] = __NR_pidfd_open;
  } else if (strcmp(argv[1], "nomembarrier") == 0) {
    refuse = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
    nr[0] = nr[1] = nr[2] = __NR_membarrier;
  } else
    return usage();

  int rc = rxt_seccomp_refuse(nr, refuse);
  if (rc != 0) {
    fprintf(stderr, "seccomp-launcher: %s\n", strerror(-rc));
    return 1;
  }
  execvp(argv[2], argv + 2);
  fprintf(stderr, "seccomp-launcher: %s: %s\n", argv[2], strerror(errno));
  return 127;
}
