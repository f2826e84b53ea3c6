/*
 * bench/peers/peer.h - the peer benchmark: the contract between the shared
 * driver (peer_main.c) and the one file per library that writes each
 * workload in that library's own idiom (peer_rx.c, peer_libev.c,
 * peer_libuv.c, peer_libevent.c). Each library is linked into its own
 * executable, peer_<library>: Debian's libev exports libevent's names too,
 * so libev and libevent cannot share a process.
 *
 *   peer_<library> <workload> [--quick]
 *
 * runs one workload once and prints its results on stdout as CSV rows
 *
 *   workload,library,backend,metric,value,unit
 *
 * (bench/peers/run.py runs every pair several times and makes the report).
 * Anything a library file needs beyond its own calls lives here, so that
 * every library gets the same sizes, seeds, random sequences, client code
 * and measurements:
 *
 *   loop_count      an idle watcher counts loop iterations; a timer ends the
 *                   run after P.loop_seconds. Metric: iterations per second.
 *   million_timers  P.timers one-shot timers due in [1, 1000] ms (whole
 *                   milliseconds, so that libuv's millisecond timers get the
 *                   same deadlines; fixed seed), run until all have fired.
 *                   Metrics: CPU ns per start (init + start of timers in
 *                   memory already touched), CPU ns per fired timer
 *                   (the loop from its start to its end, the wakeups in
 *                   between included), peak RSS, RSS per timer, mean and
 *                   max lateness and the number of early timers. Every
 *                   callback reads CLOCK_MONOTONIC (about 26 ns on the
 *                   reference VM, the same in every library's figure).
 *   timer_churn     P.churn_timers active timers due in 10-60 s, then
 *                   P.churn_rearms re-arms (stop + start, or the library's
 *                   one-call equivalent, to a new 10-60 s deadline) of timers
 *                   picked at random. Metric: CPU ns per re-arm.
 *   pipe_chain      libevent's test/bench.c: n socket pairs, each with a
 *                   persistent read watcher; 100 pairs spaced evenly get a
 *                   byte, and each read writes one byte to the next pair
 *                   until 1000 writes are done. A run re-registers every
 *                   watcher (stop + start, as bench.c's event_del +
 *                   event_set + event_add) and makes one non-blocking loop
 *                   iteration (which is when lazy libraries tell the
 *                   kernel); that is the setup, timed per watcher. Then the
 *                   first bytes go out and non-blocking iterations run until
 *                   every byte was read: the run, timed in microseconds.
 *                   Medians of P.pipe_runs runs after one warm-up run.
 *   async_pummel    a producer thread sends P.async_sends times to one
 *                   async watcher of a loop the main thread runs, then sets
 *                   a flag and sends once more; the callback counts and
 *                   stops the loop when it sees the flag, so a run ends only
 *                   if a callback ran after the last send. Metrics: sends
 *                   per second (wall, first send to the loop's end),
 *                   callbacks delivered.
 *   timer_start     P.ts_active active timers (--timers N) due in 1-60 s,
 *                   then P.ts_batches batches of P.ts_batch starts of fresh
 *                   timers (due in 1-60 s), each batch followed by untimed
 *                   stops, so the loop holds N to N + P.ts_batch timers.
 *                   Metric: ns per start, the median batch's wall time over
 *                   its starts (a batch's two clock reads weigh 0.01 ns per
 *                   start; a preempted batch falls outside the median).
 *   async_send_pending  one async watcher made pending by one send, then
 *                   P.asp_sends more sends by the loop's own thread on the
 *                   loop that does not run: each only finds the watcher
 *                   pending. The loop then runs once and must make exactly
 *                   one callback. Metric: thread CPU ns per send.
 *   loop_pingpong   two loops on two threads (the main thread runs a, a
 *                   helper thread runs b) bounce one message P.lpp_trips
 *                   times with the library's cross-thread wake-up. Metrics:
 *                   round trips per second (wall), process CPU ns per round
 *                   trip (both threads).
 *   ping_pongs      the main thread's loop is a TCP echo server with read
 *                   watchers (readiness: read, then write); a client thread
 *                   (the same epoll code for every library) keeps
 *                   P.pp_conns loopback connections bouncing P.pp_size-byte
 *                   messages for P.pp_seconds, then closes them. Metrics:
 *                   round trips per second, server thread CPU us per round
 *                   trip, and the server thread's system calls per round
 *                   trip (a perf counter on the raw_syscalls:sys_enter
 *                   tracepoint for that thread alone, when the kernel lets
 *                   the process open one; the metric is left out if not),
 *                   and the client thread's CPU us per round trip (the
 *                   same client for every server: what a faster server
 *                   cannot take off a round trip).
 *
 * --ops runs the completion-operation variant of a workload, in a library
 * that has one (rx: rx_op_*); the rows then name the library "<library>-ops"
 * (rx-ops), and the same client, chain and measurements apply:
 *
 *   ping_pongs      the server accepts with a multishot accept op and
 *                   echoes with recv and send ops: each completed recv
 *                   submits the send of what it read and the next recv,
 *                   into the connection's other buffer (a buffer is not
 *                   read into again before its send is done).
 *   pipe_chain      a recv op of one byte is kept submitted on every read
 *                   end; its completion calls peer_pipe_forward() and sends
 *                   the byte on with a send op. The setup cancels every
 *                   recv, waits for their final callbacks and submits them
 *                   again, then one non-blocking iteration: re-registering,
 *                   in ops.
 *
 * A library without ops fails on --ops (peer_main.c's weak defaults). The
 * raw liburing executable, peer_liburing, has only ping_pongs and
 * pipe_chain, written as rx's --ops variants are, with rx's ring setup
 * flags: the floor for them.
 *
 * A watchdog (alarm) ends a run that hangs, with exit status 3.
 */
#ifndef RX_BENCH_PEER_H
#define RX_BENCH_PEER_H

#include <stddef.h>
#include <stdint.h>

/* The sizes of one run; --quick scales them down (peer_main.c). */
struct peer_params {
  double loop_seconds;   /* loop_count */
  uint32_t timers;       /* million_timers */
  uint32_t max_delay_ms; /* million_timers: delays are 1..max_delay_ms */
  uint32_t churn_timers; /* timer_churn */
  uint64_t churn_rearms;
  int pipes; /* pipe_chain: socket pairs (--pipes N) */
  int pipe_active;
  int pipe_writes;
  int pipe_runs;
  uint64_t async_sends; /* async_pummel */
  uint32_t ts_active;   /* timer_start: active timers (--timers N) */
  uint32_t ts_batch;    /* fresh timers started per timed batch */
  int ts_batches;
  uint64_t asp_sends; /* async_send_pending */
  uint64_t lpp_trips; /* loop_pingpong: round trips */
  int pp_conns;       /* ping_pongs */
  int pp_size;
  double pp_seconds;
};
extern struct peer_params P;

/* ---------------------------------------------------------------------------
 * What each library file defines.
 */

/* The library's name as the report shows it: "rx", "libev", ... */
extern const char peer_library[];

/* Called once before the workload: sets the library up (allocator, thread
 * support) and returns the name of the kernel interface its loops use
 * ("io_uring", "epoll"), or NULL after printing why it cannot run. */
const char *peer_setup(void);

/* The workloads: 0 when done (results reported with peer_report), -1 after
 * printing what failed to stderr. */
int peer_loop_count(void);
int peer_million_timers(void);
int peer_timer_churn(void);
int peer_pipe_chain(void);
int peer_async_pummel(void);
int peer_ping_pongs(void);
int peer_timer_start(void);
int peer_async_send_pending(void);
int peer_loop_pingpong(void);
/* --ops: the completion-operation variants (peer_main.c has weak
 * definitions that fail, for the libraries without ops). */
int peer_ping_pongs_ops(void);
int peer_pipe_chain_ops(void);

/* ---------------------------------------------------------------------------
 * What the driver gives them.
 */

/* One CSV row for the current workload, library and backend. */
void peer_report(const char *metric, double value, const char *unit);
/* Prints "peer_<library> <workload>: <what>" to stderr; returns -1. */
int peer_fail(const char *what);

uint64_t peer_now_ns(void);        /* CLOCK_MONOTONIC */
uint64_t peer_cpu_ns(void);        /* the process's CPU time, all threads */
uint64_t peer_thread_cpu_ns(void); /* the calling thread's CPU time */

/* splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014): one multiply-xorshift chain per number, fast
 * enough to sit inside a timed loop, the same sequence everywhere. */
static inline uint64_t peer_rand(uint64_t *state) {
  uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}
#define PEER_SEED UINT64_C(20261122)

/* Starts fn(arg) on a new thread; 0 or -1. peer_join waits for it. */
int peer_thread(void *(*fn)(void *), void *arg);
void peer_join(void);

/* Zeroed memory a program already uses, its first page faults
 * taken before anything is timed. NULL when out of memory. */
void *peer_alloc(size_t size);

/* million_timers. peer_mt_delay_ms[i] is timer i's delay. The RSS baseline
 * is taken before peer_setup(). A library file:
 *   allocate its P.timers timers with peer_alloc (the RSS counts them,
 *   the start time does not)
 *   peer_mt_begin();      t0, CPU clock
 *   bring its clock up to date, init and start each timer
 *   peer_mt_started();    the start phase's CPU time
 *   run the loop; each callback calls peer_mt_fired(i)
 *   return peer_mt_end(); checks every timer fired once, reports
 * t0 is read before the library's clock is brought up to date, so a library
 * keeping its deadlines never fires a timer before t0 + delay (a timer that
 * does is counted as early). */
extern uint16_t *peer_mt_delay_ms; /* compact: the callbacks read it too */
void peer_mt_begin(void);
void peer_mt_started(void);
void peer_mt_fired(uint32_t i);
int peer_mt_end(void);

/* timer_churn: the initial deadline of timer i, then the next re-arm (timer
 * index and new delay in ms) from a generator seeded by peer_churn_begin.
 * peer_churn_begin() after the timers are started; peer_churn_end() after
 * the last re-arm reports ns per re-arm. */
uint32_t peer_churn_initial_ms(uint32_t i);
void peer_churn_begin(void);
static inline void peer_churn_next(uint64_t *state, uint32_t *idx,
                                   uint32_t *delay_ms) {
  uint64_t r = peer_rand(state);
  *idx = (uint32_t)((r & 0xffffffffu) % P.churn_timers);
  *delay_ms = 10000 + (uint32_t)((r >> 32) % 50001);
}
extern uint64_t peer_churn_state;
int peer_churn_end(void);

/* pipe_chain. peer_pipe_open() makes the P.pipes socket pairs: pair i's
 * read end is peer_pipe_fd[2 * i]. A read watcher's callback for pair i
 * calls peer_pipe_read(i). The library provides two functions:
 *   setup():   stop the watcher of every pair if it is active, set it up
 *              again on the same fd and start it; then one non-blocking loop
 *              iteration
 *   iterate(): one non-blocking loop iteration
 * and peer_pipe_drive(setup, iterate) times a warm-up run and P.pipe_runs
 * runs and reports. peer_pipe_close() closes the pairs. */
extern int *peer_pipe_fd;
int peer_pipe_open(void);
void peer_pipe_read(int i);
/* --ops: the byte of pair i was read (by the library's op): counts it and
 * returns the pair w to send one byte to (on peer_pipe_fd[2 * w + 1]; it
 * is counted as sent), or -1 when the run's writes are done. */
int peer_pipe_forward(int i);
int peer_pipe_drive(void (*setup)(void), void (*iterate)(void));
void peer_pipe_close(void);

/* async_pummel. The producer thread (the library's own function, started
 * with peer_thread) calls peer_pummel_go() once, sends P.async_sends times,
 * then peer_pummel_finish() and one more send. The callback calls
 * peer_pummel_callback(), which returns 1 when the loop should stop: the
 * flag, set after the last counted send, is seen. The final send may still
 * be under way then, so the callback only stops the watcher or the loop;
 * the main thread joins the producer before it frees anything, then calls
 * peer_pummel_end(). */
void peer_pummel_go(void);
void peer_pummel_finish(void);
int peer_pummel_callback(void);
int peer_pummel_end(void);

/* timer_start. peer_ts_active_ms(i) is active timer i's delay,
 * peer_ts_fresh_ms[j] fresh timer j's (j < P.ts_batch), both whole
 * milliseconds in [1000, 60000]. The library file starts its P.ts_active
 * timers, sets up the fresh ones (untimed: init and the delay, where its
 * start does not take the delay), then P.ts_batches times:
 *   peer_ts_begin();   start fresh timer 0 .. P.ts_batch - 1
 *   peer_ts_end();     then stop them (and set their delay again if a stop
 *                      loses it), untimed
 * and returns peer_ts_report(). */
uint32_t peer_ts_active_ms(uint32_t i);
extern uint32_t *peer_ts_fresh_ms;
void peer_ts_begin(void);
void peer_ts_end(void);
int peer_ts_report(void);

/* async_send_pending: after the first send, peer_asp_begin(); P.asp_sends
 * sends; peer_asp_end(); then one non-blocking loop run, and
 * peer_asp_report(callbacks) with the callbacks it made (must be 1). */
void peer_asp_begin(void);
void peer_asp_end(void);
int peer_asp_report(uint64_t callbacks);

/* loop_pingpong. Loop a is the main thread's, loop b runs on a helper
 * thread (peer_thread). The library posts or sends to b once, between
 * peer_lpp_begin() and running a. b's callback: if peer_lpp_stopping(), stop
 * (its loop then returns), else wake a. a's callback: peer_lpp_trip(), which
 * returns 1 on the last round trip (stop a's loop then), and wake b in any
 * case (the last wake-up tells b to stop). After a's loop returned:
 * peer_lpp_release(); peer_join(); return peer_lpp_end(). A library whose
 * loop must be freed on its own thread frees b after peer_lpp_wait(), which
 * returns once a's thread has released it: a has sent its last wake-up by
 * then. */
void peer_lpp_begin(void);
int peer_lpp_trip(void);
int peer_lpp_stopping(void);
void peer_lpp_release(void);
void peer_lpp_wait(void);
int peer_lpp_end(void);

/* ping_pongs. peer_pp_listen() returns a listening socket (non-blocking,
 * 127.0.0.1) and starts the client thread. The library watches it and, when
 * readable, calls peer_pp_accept(fd) until it returns -1, watching each
 * connection it returns (non-blocking) for reading; a connection's callback
 * calls peer_pp_echo(fd), and on a return of -1 (the client closed) stops
 * the watcher and closes fd. peer_pp_accepted() is 1 once all P.pp_conns
 * connections were accepted (stop watching the listener then), and the loop
 * ends by itself once every connection is closed. Around the run:
 *   peer_pp_begin();  the server thread's CPU clock
 *   run the loop
 *   return peer_pp_end();  joins the client, closes the listener, reports */
int peer_pp_listen(void);
int peer_pp_accept(int listen_fd);
/* --ops: a connection the library accepted itself (an accept op): counts
 * it as peer_pp_accept() does and sets TCP_NODELAY; returns fd. */
int peer_pp_adopt(int fd);
int peer_pp_accepted(void);
int peer_pp_echo(int fd);
void peer_pp_begin(void);
int peer_pp_end(void);

#endif
