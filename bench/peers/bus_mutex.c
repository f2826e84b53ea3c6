/*
 * bench/peers/bus_mutex.c - the bus benchmark (bus.h) on the queue a
 * program writes for itself: a bounded ring of events (4096, by value: the
 * name, the timestamp, the packed producer, topic and sequence) under one
 * pthread mutex, with a condition variable for "not empty" and one for
 * "not full". Producers push one event per lock, and wait while the ring is
 * full. One consumer thread takes up to 64 events per lock, then runs each
 * through the three subscribers' name filters (strcmp against each of
 * their names) and calls bus_handle() for those that match. Each side
 * signals the other only when it is waiting.
 */
#include "bus.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char bus_library[] = "mutex";

#define RING 4096
#define BATCH 64

struct item {
  const char *name;
  uint64_t ts, word;
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  struct item ring[RING];
  size_t head, len;
  int consumer_waits, producers_wait;
} q = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .not_empty = PTHREAD_COND_INITIALIZER,
       .not_full = PTHREAD_COND_INITIALIZER};

const char *bus_setup(void) {
  return "futex";
}

void *bus_producer_open(int producer) {
  (void)producer;
  return &q;
}

int bus_publish(void *ctx, int topic, int producer, uint64_t seq, uint64_t ts) {
  (void)ctx;
  struct item it = {bus_topic[topic], ts, bus_pack(topic, producer, seq)};
  pthread_mutex_lock(&q.mu);
  while (q.len == RING) {
    q.producers_wait++;
    pthread_cond_wait(&q.not_full, &q.mu);
    q.producers_wait--;
  }
  q.ring[(q.head + q.len) % RING] = it;
  q.len++;
  if (q.consumer_waits)
    pthread_cond_signal(&q.not_empty);
  pthread_mutex_unlock(&q.mu);
  return 0;
}

void bus_producer_close(void *ctx) {
  (void)ctx;
}

static int matches(int sub, const char *name) {
  for (const char *const *t = bus_sub_topics[sub]; *t != NULL; t++)
    if (strcmp(*t, name) == 0)
      return 1;
  return 0;
}

static double consumer_ns; /* the consumer thread's CPU time */

static void *consumer_main(void *arg) {
  (void)arg;
  struct item batch[BATCH];
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  while (!bus_all_done()) {
    pthread_mutex_lock(&q.mu);
    while (q.len == 0) {
      q.consumer_waits = 1;
      pthread_cond_wait(&q.not_empty, &q.mu);
      q.consumer_waits = 0;
    }
    size_t n = q.len < BATCH ? q.len : BATCH;
    for (size_t i = 0; i < n; i++)
      batch[i] = q.ring[(q.head + i) % RING];
    q.head = (q.head + n) % RING;
    q.len -= n;
    if (q.producers_wait)
      pthread_cond_broadcast(&q.not_full);
    pthread_mutex_unlock(&q.mu);
    for (size_t i = 0; i < n; i++) {
      int topic, producer;
      uint64_t seq;
      bus_unpack(batch[i].word, &topic, &producer, &seq);
      for (int s = 0; s < BUS_SUBS; s++)
        if (matches(s, batch[i].name))
          bus_handle(s, topic, producer, seq, batch[i].ts);
    }
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  consumer_ns =
      (double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec);
  return NULL;
}

int bus_run(void) {
  pthread_t th;
  q.head = q.len = 0;
  if (pthread_create(&th, NULL, consumer_main, NULL) != 0)
    return bus_fail("pthread_create");
  if (bus_start_producers() < 0)
    return -1;
  pthread_join(th, NULL);
  int rc = bus_join_producers();
  fprintf(stderr, "bus_mutex: the consumer thread %.1f CPU ns per event\n",
          consumer_ns / (double)bus_events());
  return rc;
}
