/*
 * seccomp-launcher.c - runs a command with io_uring blocked by seccomp, the
 * way the environments rx must survive block it:
 *
 *   seccomp-launcher eperm COMMAND [ARGS...]
 *       io_uring_setup, io_uring_enter and io_uring_register fail with
 *       EPERM (Docker's and podman's default profiles, and most container
 *       runtimes since 2023);
 *   seccomp-launcher kill COMMAND [ARGS...]
 *       they kill the process with SIGSYS (Android's app filter);
 *   seccomp-launcher nopidfd COMMAND [ARGS...]
 *       io_uring is allowed, and pidfd_open fails with ENOSYS, as on a
 *       kernel before 5.3 or under a filter written before pidfds existed.
 *
 * No libseccomp: a classic BPF filter, installed with PR_SET_NO_NEW_PRIVS
 * (so that no privilege is needed) and PR_SET_SECCOMP. The filter first
 * checks the architecture: a syscall number only means something for the
 * architecture it was compiled for, so a foreign one (an x32 or i386 call
 * on x86_64) is refused the same way. The filter is inherited across
 * execve() and fork(), so the command and its children run under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define ARCH AUDIT_ARCH_RISCV64
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARCH AUDIT_ARCH_PPC64LE
#elif defined(__s390x__)
#define ARCH AUDIT_ARCH_S390X
#elif defined(__i386__)
#define ARCH AUDIT_ARCH_I386
#else
#error "seccomp-launcher: unknown architecture"
#endif

/* The io_uring syscalls have the same numbers on every architecture (they
 * came after the syscall table unification), but take them from the
 * headers anyway. */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

static int usage(void) {
  fprintf(stderr,
          "usage: seccomp-launcher eperm|kill|nopidfd COMMAND [ARGS...]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return usage();
  unsigned refuse;
  /* The three io_uring calls, or pidfd_open thrice. */
  unsigned nr[3] = {__NR_io_uring_setup, __NR_io_uring_enter,
                    __NR_io_uring_register};
  if (strcmp(argv[1], "eperm") == 0)
    refuse = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  else if (strcmp(argv[1], "kill") == 0)
    refuse = SECCOMP_RET_KILL_PROCESS;
  else if (strcmp(argv[1], "nopidfd") == 0) {
    refuse = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);
    nr[0] = nr[1] = nr[2] = __NR_pidfd_open;
  } else
    return usage();

  struct sock_filter filter[] = {
      /* [0] a foreign architecture: refused */
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, refuse),
      /* [3] the syscall number */
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
      /* x32 calls share the architecture, with bit 30 set in the number */
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 4, 0),
#endif
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr[0], 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr[1], 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr[2], 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, refuse),
  };
  struct sock_fprog prog = {
      .len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
      .filter = filter,
  };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    perror("seccomp-launcher: PR_SET_NO_NEW_PRIVS");
    return 1;
  }
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
    perror("seccomp-launcher: PR_SET_SECCOMP");
    return 1;
  }
  execvp(argv[2], argv + 2);
  fprintf(stderr, "seccomp-launcher: %s: %s\n", argv[2], strerror(errno));
  return 127;
}
