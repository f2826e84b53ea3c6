/*
 * epw.c - pipe_chain (libevent test/bench.c, as rx's bench/peers runs it)
 * under four minimal readiness loops:
 *   epoll  : level-triggered epoll set, epoll_wait() loop
 *   poll1  : io_uring one-shot IORING_OP_POLL_ADD, re-armed after each CQE,
 *            re-arms submitted with the next io_uring_enter (submit+wait)
 *   epw    : io_uring driving an epoll set: one IORING_OP_EPOLL_WAIT SQE per
 *            iteration, submitted and waited for in the same io_uring_enter
 *   pollm  : io_uring multishot POLL_ADD (IORING_POLL_ADD_MULTI), armed once
 *
 * usage: epw MODE [-p pipes] [-a active] [-w writes] [-r runs]
 *            [-f ringflags: d=DEFER_TASKRUN|SINGLE_ISSUER (default), c=COOP, 0=none]
 *            [-c]  (epw only: register the fds with IORING_OP_EPOLL_CTL SQEs)
 *            [-m maxevents]
 * prints one CSV line: mode,pipes,active,writes,runs,median_run_us,min,max,
 *   hops_per_run,waits_per_hop,syscalls_per_hop,cpu_ns_per_hop,
 *   events_per_wait,zero_cqes,eagain,iou_wrk_threads,setup_us
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <liburing.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* include/uapi/linux/io_uring.h, Linux 6.15+: ... RECV_ZC = 58, EPOLL_WAIT = 59 */
#ifndef IORING_OP_EPOLL_WAIT_NR
#define IORING_OP_EPOLL_WAIT_NR 59
#endif
#define IORING_OP_EPOLL_CTL_NR 29

static int P = 1000, ACTIVE = 100, WRITES = 1000, RUNS = 25, MAXEV = 256;
static int *fds;
static int pipe_count, pipe_fired, pipe_writes;
static uint64_t n_recv, n_send, n_wait, n_events, n_zero, n_eagain, n_other_err;

static uint64_t now_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}
static uint64_t ru_cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* peer_pipe_read() of bench/peers/peer_main.c, verbatim in behaviour */
static void pipe_read(int i) {
  char ch;
  n_recv++;
  if (recv(fds[2 * i], &ch, 1, 0) == 1)
    pipe_count++;
  if (pipe_writes > 0) {
    int w = i + 1 == P ? 0 : i + 1;
    n_send++;
    if (send(fds[2 * w + 1], "e", 1, MSG_NOSIGNAL) == 1) {
      pipe_writes--;
      pipe_fired++;
    }
  }
}

static int count_iou_wrk(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  char path[300], comm[64];
  if (!d) return -1;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (fgets(comm, sizeof comm, f) && strncmp(comm, "iou-", 4) == 0) n++;
    fclose(f);
  }
  closedir(d);
  return n;
}

/* ---------------- modes ---------------- */
enum { M_EPOLL, M_POLL1, M_EPW, M_POLLM };
static int mode, use_ctl_ring;
static char ringflags = 'd';
static int epfd;
static struct epoll_event *evs;
static struct io_uring ring;

static struct io_uring_sqe *get_sqe(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) {
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void ring_init(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = 8192;
  if (ringflags == 'd')
    p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
               IORING_SETUP_TASKRUN_FLAG;
  else if (ringflags == 'c')
    p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  int rc = io_uring_queue_init_params(256, &ring, &p);
  if (rc < 0) {
    fprintf(stderr, "io_uring_queue_init_params: %s\n", strerror(-rc));
    exit(1);
  }
}

static void arm_poll(int i) {
  struct io_uring_sqe *sqe = get_sqe();
  if (mode == M_POLLM)
    io_uring_prep_poll_multishot(sqe, fds[2 * i], POLLIN);
  else
    io_uring_prep_poll_add(sqe, fds[2 * i], POLLIN);
  io_uring_sqe_set_data64(sqe, (uint64_t)i);
}

static void setup(void) {
  if (mode == M_EPOLL || mode == M_EPW) {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    evs = calloc(MAXEV, sizeof *evs);
  }
  if (mode != M_EPOLL) ring_init();
  if (mode == M_EPW) {
    /* probe the opcode */
    struct io_uring_probe *pr = io_uring_get_probe_ring(&ring);
    if (pr) {
      fprintf(stderr, "probe: last_op=%u EPOLL_WAIT(59) supported=%d EPOLL_CTL(29) supported=%d\n",
              pr->last_op,
              pr->last_op >= 59 && (pr->ops[59].flags & IO_URING_OP_SUPPORTED),
              (pr->ops[29].flags & IO_URING_OP_SUPPORTED) != 0);
      io_uring_free_probe(pr);
    }
  }
  if (mode == M_EPOLL || (mode == M_EPW && !use_ctl_ring)) {
    for (int i = 0; i < P; i++) {
      struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fds[2 * i], &ev) < 0) {
        perror("epoll_ctl");
        exit(1);
      }
    }
  } else if (mode == M_EPW) {
    /* registrations as IORING_OP_EPOLL_CTL SQEs (fd=epfd, len=op, off=fd, addr=&ev) */
    struct epoll_event *regs = calloc(P, sizeof *regs);
    int done = 0, bad = 0;
    for (int i = 0; i < P; i++) {
      regs[i].events = EPOLLIN;
      regs[i].data.u32 = (uint32_t)i;
      struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
      if (!sqe) {
        io_uring_submit_and_wait(&ring, 0);
        sqe = io_uring_get_sqe(&ring);
      }
      io_uring_prep_rw(IORING_OP_EPOLL_CTL_NR, sqe, epfd, &regs[i], EPOLL_CTL_ADD,
                       (uint64_t)fds[2 * i]);
      io_uring_sqe_set_data64(sqe, (uint64_t)i);
      /* reap as we go so the CQ never overflows */
      struct io_uring_cqe *cqe;
      while (io_uring_peek_cqe(&ring, &cqe) == 0) {
        if (cqe->res < 0 && bad++ == 0)
          fprintf(stderr, "EPOLL_CTL cqe res=%d (%s)\n", cqe->res, strerror(-cqe->res));
        done++;
        io_uring_cqe_seen(&ring, cqe);
      }
    }
    while (done < P) {
      struct io_uring_cqe *cqe;
      io_uring_submit_and_wait(&ring, 1);
      while (io_uring_peek_cqe(&ring, &cqe) == 0) {
        if (cqe->res < 0 && bad++ == 0)
          fprintf(stderr, "EPOLL_CTL cqe res=%d (%s)\n", cqe->res, strerror(-cqe->res));
        done++;
        io_uring_cqe_seen(&ring, cqe);
      }
    }
    if (bad) {
      fprintf(stderr, "%d EPOLL_CTL failures\n", bad);
      exit(1);
    }
  } else {
    for (int i = 0; i < P; i++) arm_poll(i);
    io_uring_submit(&ring);
  }
}

/* one loop iteration; blocks until something is ready */
static void iterate(void) {
  if (mode == M_EPOLL) {
    n_wait++;
    int n = epoll_wait(epfd, evs, MAXEV, -1);
    if (n == 0) n_zero++;
    for (int k = 0; k < n; k++) pipe_read((int)evs[k].data.u32);
    if (n > 0) n_events += n;
    return;
  }
  if (mode == M_EPW) {
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_rw(IORING_OP_EPOLL_WAIT_NR, sqe, epfd, evs, (unsigned)MAXEV, 0);
    io_uring_sqe_set_data64(sqe, 0xE9);
    n_wait++;
    int rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0) { fprintf(stderr, "submit_and_wait: %s\n", strerror(-rc)); exit(1); }
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&ring, &cqe) == 0) {
      int res = cqe->res;
      io_uring_cqe_seen(&ring, cqe);
      if (res == 0) n_zero++;
      else if (res == -EAGAIN) n_eagain++;
      else if (res < 0) {
        fprintf(stderr, "EPOLL_WAIT cqe res=%d (%s)\n", res, strerror(-res));
        exit(2);
      }
      for (int k = 0; k < res; k++) pipe_read((int)evs[k].data.u32);
      if (res > 0) n_events += res;
    }
    return;
  }
  /* poll1 / pollm: submit pending re-arms and wait in one enter */
  n_wait++;
  int rc = io_uring_submit_and_wait(&ring, 1);
  if (rc < 0 && rc != -EINTR) { fprintf(stderr, "submit_and_wait: %s\n", strerror(-rc)); exit(1); }
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&ring, head, cqe) {
    int i = (int)cqe->user_data;
    int res = cqe->res;
    unsigned fl = cqe->flags;
    seen++;
    if (res < 0) {
      if (res == -EAGAIN) n_eagain++;
      else if (n_other_err++ == 0) fprintf(stderr, "poll cqe res=%d\n", res);
    }
    if (res > 0) {
      n_events++;
      pipe_read(i);
    } else if (res == 0) n_zero++;
    if (mode == M_POLL1 || !(fl & IORING_CQE_F_MORE)) arm_poll(i);
  }
  io_uring_cq_advance(&ring, seen);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: epw epoll|poll1|epw|pollm [-p P] [-a A] [-w W] [-r R] [-f d|c|0] [-c] [-m maxev]\n");
    return 1;
  }
  const char *m = argv[1];
  mode = !strcmp(m, "epoll") ? M_EPOLL : !strcmp(m, "poll1") ? M_POLL1
       : !strcmp(m, "epw") ? M_EPW : !strcmp(m, "pollm") ? M_POLLM : -1;
  if (mode < 0) { fprintf(stderr, "bad mode\n"); return 1; }
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "p:a:w:r:f:cm:")) != -1) {
    switch (opt) {
    case 'p': P = atoi(optarg); break;
    case 'a': ACTIVE = atoi(optarg); break;
    case 'w': WRITES = atoi(optarg); break;
    case 'r': RUNS = atoi(optarg); break;
    case 'f': ringflags = optarg[0]; break;
    case 'c': use_ctl_ring = 1; break;
    case 'm': MAXEV = atoi(optarg); break;
    default: return 1;
    }
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t need = (rlim_t)P * 2 + 64;
  if (rl.rlim_cur < need) {
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  fds = malloc(sizeof(int) * 2 * P);
  for (int i = 0; i < P; i++)
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, &fds[2 * i]) < 0) {
      perror("socketpair");
      return 1;
    }
  uint64_t s0 = now_ns(CLOCK_MONOTONIC);
  setup();
  uint64_t setup_ns = now_ns(CLOCK_MONOTONIC) - s0;

  uint64_t *run_ns = malloc(sizeof(uint64_t) * RUNS);
  uint64_t cpu_total = 0, hops_total = 0;
  uint64_t w0 = 0, r0 = 0, sd0 = 0;
  int space = P / ACTIVE;
  for (int r = -1; r < RUNS; r++) { /* run -1 warms up */
    if (r == 0) { w0 = n_wait; r0 = n_recv; sd0 = n_send; n_events = 0; n_zero = 0; n_eagain = 0; }
    pipe_fired = 0;
    for (int i = 0; i < ACTIVE; i++)
      if (send(fds[2 * (i * space) + 1], "e", 1, MSG_NOSIGNAL) == 1) pipe_fired++;
    pipe_count = 0;
    pipe_writes = WRITES;
    uint64_t c0 = ru_cpu_ns();
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    uint64_t spins = 0;
    do iterate();
    while (pipe_count != pipe_fired && ++spins < 10000000u);
    uint64_t t1 = now_ns(CLOCK_MONOTONIC);
    uint64_t c1 = ru_cpu_ns();
    if (pipe_count != pipe_fired) { fprintf(stderr, "chain stalled\n"); return 3; }
    if (r >= 0) {
      run_ns[r] = t1 - t0;
      cpu_total += c1 - c0;
      hops_total += pipe_fired;
    }
  }
  int wrk = count_iou_wrk();
  uint64_t waits = n_wait - w0, sysc = waits + (n_recv - r0) + (n_send - sd0);
  qsort(run_ns, RUNS, sizeof *run_ns, cmp_u64);
  uint64_t med = RUNS % 2 ? run_ns[RUNS / 2] : (run_ns[RUNS / 2 - 1] + run_ns[RUNS / 2]) / 2;
  printf("%s%s%s,%d,%d,%d,%d,%.1f,%.1f,%.1f,%.1f,%.4f,%.4f,%.0f,%.1f,%lu,%lu,%d,%.0f\n",
         m, mode != M_EPOLL ? (ringflags == 'd' ? "" : ringflags == 'c' ? "/coop" : "/plain") : "",
         use_ctl_ring ? "+ctl" : "",
         P, ACTIVE, WRITES, RUNS, med / 1e3, run_ns[0] / 1e3, run_ns[RUNS - 1] / 1e3,
         (double)hops_total / RUNS, (double)waits / hops_total, (double)sysc / hops_total,
         (double)cpu_total / hops_total, (double)n_events / (waits ? waits : 1),
         (unsigned long)n_zero, (unsigned long)n_eagain, wrk, setup_ns / 1e3);
  return 0;
}
