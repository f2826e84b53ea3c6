/*
 * bench/peers/bus.h - the event bus benchmark: the contract between its
 * driver (bus_main.c) and the one file per implementation of the same
 * topology (bus_rx.c: rx's event bus; bus_zmq.c: ZeroMQ inproc PUB/SUB;
 * bus_mutex.c: a mutex and condition variable queue). Each is its own
 * executable, bus_<library>, run by bench/peers/run.py like the peers:
 *
 *   bus_<library> bus_4x3 [--quick]
 *
 * prints CSV rows "bus_4x3,library,backend,metric,value,unit".
 *
 * The topology: BUS_PRODUCERS producer threads publish events named
 * "bus.ev0" .. "bus.ev3" (event i of a producer is named bus.ev<i % 4>),
 * each carrying its producer, its sequence number and a CLOCK_MONOTONIC
 * timestamp: in the paced phase read just before the publish; in the
 * throughput phase, the producer's start (read once: the clock would cost
 * every implementation the same 20 to 30 ns per event, which is not the
 * transport's). BUS_SUBS subscribers each take
 * a set of names: 0 takes bus.ev0 (1/4 of the events), 1 takes bus.ev0 and
 * bus.ev1 (1/2), 2 takes bus.ev1, bus.ev2 and bus.ev3 (3/4); every event
 * reaches 1.5 handlers on average. The handler is the driver's
 * (bus_handle()): it counts, checks that the subscriber wanted the name
 * and that each producer's events come in order, once, and in the paced
 * phase records the publish-to-handler latency. Nothing is dropped: a run
 * that loses, duplicates or reorders an event fails.
 *
 * Two phases, each on a fresh set-up:
 *   throughput  every producer publishes B.events events as fast as the
 *               implementation takes them. Metrics: events per second (wall
 *               time from the producers' start to the last handler call),
 *               process CPU ns per event (every thread).
 *   latency     the producers together publish B.rate events per second
 *               (each on its own absolute schedule, staggered) for
 *               B.seconds. Metrics: latency p50, p99 and max over every
 *               handler call, in microseconds.
 */
#ifndef RX_BENCH_BUS_H
#define RX_BENCH_BUS_H

#include <stdint.h>

#define BUS_PRODUCERS 4
#define BUS_SUBS 3
#define BUS_TOPICS 4

struct bus_params {
  uint64_t events; /* per producer, throughput phase */
  double rate;     /* events per second, all producers, latency phase */
  double seconds;  /* latency phase */
};
extern struct bus_params B;

/* The topic names, and each subscriber's (NULL-terminated). */
extern const char *const bus_topic[BUS_TOPICS];
extern const char *const *const bus_sub_topics[BUS_SUBS];

/* ---------------------------------------------------------------------------
 * What each implementation defines.
 */

extern const char bus_library[];

/* The kernel interface or transport its dispatch runs on ("io_uring",
 * "epoll", "inproc", ...), or NULL after printing why it cannot run. */
const char *bus_setup(void);

/* One phase: set up the subscribers, bus_start_producers(), deliver every
 * event to bus_handle() until it says all is done, bus_join_producers(),
 * tear down. 0, or -1 after printing what failed. */
int bus_run(void);

/* A producer's publish: the implementation's per-producer state (made by
 * bus_producer_open() on the producer's thread), the topic index, the
 * producer, its sequence number and the timestamp. 0 or -1. */
void *bus_producer_open(int producer);
int bus_publish(void *ctx, int topic, int producer, uint64_t seq, uint64_t ts);
void bus_producer_close(void *ctx);

/* ---------------------------------------------------------------------------
 * What the driver gives them.
 */

/* Starts the BUS_PRODUCERS threads (they publish once all are ready): 0 or
 * -1. bus_join_producers() waits for them; -1 if one failed. */
int bus_start_producers(void);
int bus_join_producers(void);

/* Subscriber `sub` handles one event. Returns 1 when `sub` has had every
 * event it is due in this phase, else 0. Called on one thread per
 * subscriber at a time. */
int bus_handle(int sub, int topic, int producer, uint64_t seq, uint64_t ts);
/* 1 once every subscriber has had all its events. */
int bus_all_done(void);
/* The events the producers publish in this phase, all together. */
uint64_t bus_events(void);

/* Payload packing shared by the implementations that carry one word. */
static inline uint64_t bus_pack(int topic, int producer, uint64_t seq) {
  return (seq << 5) | ((uint64_t)topic << 3) | (uint64_t)producer;
}
static inline void bus_unpack(uint64_t v, int *topic, int *producer,
                              uint64_t *seq) {
  *producer = (int)(v & 7);
  *topic = (int)((v >> 3) & 3);
  *seq = v >> 5;
}

/* 1 if subscriber `sub` takes topic `topic`. */
int bus_wants(int sub, int topic);
int bus_fail(const char *what);
uint64_t bus_now_ns(void);

#endif
