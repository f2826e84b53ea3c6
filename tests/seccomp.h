/*
 * seccomp.h - refuses up to three syscalls by seccomp, for the tests that
 * run rx where a kernel or a sandbox refuses what rx would use:
 * seccomp-launcher.c installs it before running a test, test-async.c in a
 * child that already runs a loop.
 *
 * No libseccomp: a classic BPF filter, installed with PR_SET_NO_NEW_PRIVS
 * (so that no privilege is needed) and PR_SET_SECCOMP. The filter first
 * checks the architecture: a syscall number only means something for the
 * architecture it was compiled for, so a foreign one (an x32 or i386 call
 * on x86_64) is refused the same way. The filter is inherited across
 * execve() and fork().
 */
#ifndef RX_TESTS_SECCOMP_H
#define RX_TESTS_SECCOMP_H

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define RXT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define RXT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define RXT_ARCH AUDIT_ARCH_RISCV64
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RXT_ARCH AUDIT_ARCH_PPC64LE
#elif defined(__s390x__)
#define RXT_ARCH AUDIT_ARCH_S390X
#elif defined(__i386__)
#define RXT_ARCH AUDIT_ARCH_I386
#else
#error "seccomp.h: unknown architecture"
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
#ifndef __NR_membarrier
#define __NR_membarrier 324
#endif

/* Makes the syscalls nr[0..2] (repeat one to refuse fewer) return
 * `refuse` (SECCOMP_RET_ERRNO | errno, or SECCOMP_RET_KILL_PROCESS) for
 * this thread and its future children. 0, or -errno. */
static inline int rxt_seccomp_refuse(const unsigned nr[3], unsigned refuse) {
  struct sock_filter filter[] = {
    /* [0] a foreign architecture: refused */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RXT_ARCH, 1, 0),
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
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
    return -errno;
  return 0;
}

#endif
