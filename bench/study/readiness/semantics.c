/* semantics.c - IORING_OP_EPOLL_WAIT edge cases on this kernel.
 * 1) nothing ready at submit: does it block in io-wq? wake latency?
 * 2) maxevents=0, bad fd (not an epoll fd), nonzero rw_flags
 * 3) spurious wake-ups: epfd becomes readable, the fd is drained before the
 *    ring's task work re-issues the request -> epoll_sendevents returns 0.
 *    Repeat N times: what completes (0? -EAGAIN?), any iou-wrk thread?
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OP_EPOLL_WAIT 59

static int sv[2], epfd;
static struct epoll_event out[8];

static uint64_t now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}
static int iou_threads(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  char p[300], c[64];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "/proc/self/task/%.200s/comm", e->d_name);
    FILE *f = fopen(p, "r");
    if (f && fgets(c, sizeof c, f) && !strncmp(c, "iou-", 4)) {
      n++;
      c[strcspn(c, "\n")] = 0;
      printf("    thread %s: %s\n", e->d_name, c);
    }
    if (f) fclose(f);
  }
  closedir(d);
  return n;
}
static void *writer(void *a) {
  usleep(20000);
  (void)a;
  send(sv[1], "x", 1, 0);
  return NULL;
}
static void prep_ew(struct io_uring *r, int fd, void *buf, unsigned n, unsigned rwf) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(r);
  io_uring_prep_rw(OP_EPOLL_WAIT, sqe, fd, buf, n, 0);
  sqe->rw_flags = rwf;
  sqe->user_data = 1;
}

static void run(unsigned flags, const char *name) {
  struct io_uring r;
  struct io_uring_params p = {.flags = flags};
  int rc = io_uring_queue_init_params(8, &r, &p);
  if (rc) { printf("%s: init %s\n", name, strerror(-rc)); return; }
  printf("== ring flags: %s\n", name);
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
  epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
  epoll_ctl(epfd, EPOLL_CTL_ADD, sv[0], &ev);
  struct io_uring_cqe *cqe;

  /* 1 */
  pthread_t t;
  pthread_create(&t, NULL, writer, NULL);
  prep_ew(&r, epfd, out, 8, 0);
  uint64_t t0 = now();
  rc = io_uring_submit_and_wait(&r, 1);
  uint64_t t1 = now();
  io_uring_peek_cqe(&r, &cqe);
  printf("1) empty set, writer after 20ms: submit_and_wait rc=%d, waited %.2f ms, cqe res=%d data=%llu\n",
         rc, (t1 - t0) / 1e6, cqe->res, (unsigned long long)out[0].data.u64);
  io_uring_cqe_seen(&r, cqe);
  pthread_join(t, NULL);
  printf("   iou threads after 1): %d\n", iou_threads());
  char ch;
  recv(sv[0], &ch, 1, 0);

  /* 2 */
  prep_ew(&r, epfd, out, 0, 0);
  io_uring_submit_and_wait(&r, 1);
  io_uring_peek_cqe(&r, &cqe);
  printf("2a) maxevents=0: res=%d (%s)\n", cqe->res, strerror(-cqe->res));
  io_uring_cqe_seen(&r, cqe);
  prep_ew(&r, sv[0], out, 8, 0);
  io_uring_submit_and_wait(&r, 1);
  io_uring_peek_cqe(&r, &cqe);
  printf("2b) fd is not an epoll fd: res=%d (%s)\n", cqe->res, strerror(-cqe->res));
  io_uring_cqe_seen(&r, cqe);
  prep_ew(&r, epfd, out, 8, 1);
  io_uring_submit_and_wait(&r, 1);
  io_uring_peek_cqe(&r, &cqe);
  printf("2c) rw_flags=1: res=%d (%s)\n", cqe->res, strerror(-cqe->res));
  io_uring_cqe_seen(&r, cqe);
  /* 2d: timeout via ext arg with nothing ready */
  prep_ew(&r, epfd, out, 8, 0);
  io_uring_submit(&r);
  struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 5000000};
  t0 = now();
  rc = io_uring_wait_cqe_timeout(&r, &cqe, &ts);
  printf("2d) nothing ready, wait 5ms: rc=%d (%s) after %.2f ms; request still pending\n", rc,
         strerror(-rc), (now() - t0) / 1e6);

  /* 3: spurious wake-ups on the pending request */
  int n = 0, done = 0;
  for (n = 1; n <= 300 && !done; n++) {
    send(sv[1], "x", 1, 0);
    if (!(flags & IORING_SETUP_DEFER_TASKRUN)) {
      /* task work runs on return to user space: drain straight away anyway */
    }
    recv(sv[0], &ch, 1, 0);
    io_uring_get_events(&r); /* run the task work: the re-issue finds 0 events */
    if (io_uring_peek_cqe(&r, &cqe) == 0) {
      printf("3) after %d spurious wake-ups: cqe res=%d (%s)\n", n, cqe->res,
             cqe->res < 0 ? strerror(-cqe->res) : "events");
      io_uring_cqe_seen(&r, cqe);
      done = 1;
    }
  }
  if (!done) printf("3) 300 spurious wake-ups: no CQE, request still pending (good)\n");
  usleep(10000);
  printf("   iou threads after 3): %d\n", iou_threads());
  /* a real event still completes it? */
  if (!done) {
    send(sv[1], "x", 1, 0);
    t0 = now();
    rc = io_uring_wait_cqe_timeout(&r, &cqe, &ts);
    if (rc == 0) {
      printf("   then a real event: res=%d after %.3f ms\n", cqe->res, (now() - t0) / 1e6);
      io_uring_cqe_seen(&r, cqe);
    } else
      printf("   then a real event: no CQE within 5ms (%s)\n", strerror(-rc));
    recv(sv[0], &ch, 1, 0);
  }
  close(sv[0]);
  close(sv[1]);
  close(epfd);
  io_uring_queue_exit(&r);
}

int main(void) {
  run(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      "SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG");
  run(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, "COOP_TASKRUN|TASKRUN_FLAG");
  run(0, "none");
  return 0;
}
