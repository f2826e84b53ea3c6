/*
 * bench/peers/bus_zmq.c - the bus benchmark (bus.h) on ZeroMQ: inproc
 * PUB/SUB with topic filtering, as ZeroMQ's guide builds it. Each producer
 * thread owns a publisher socket bound to its own inproc endpoint; each of
 * the three subscribers is a SUB socket on its own thread, connected to
 * the four publishers and subscribed to its names, and it calls
 * bus_handle() for every message it receives. ZeroMQ filters on the
 * publisher's side (the subscriptions travel up to it), so a producer
 * writes each message only into the pipes of the subscribers that want it.
 *
 * A message is one frame: the name (the topic prefix), then the timestamp
 * and the packed producer, topic and sequence, 23 bytes, small enough for
 * ZeroMQ to keep inside the message (no allocation). The high-water marks
 * are ZeroMQ's defaults (1000 messages a side). A plain PUB socket drops
 * what a full subscriber cannot take; the bus loses nothing, so the
 * publishers here are XPUB sockets with ZMQ_XPUB_NODROP, whose blocking
 * send waits for room instead (the same semantics as the bus's
 * RX_BUS_BLOCK listeners), and ZMQ_XPUB_VERBOSE, so that a producer can
 * count the six subscriptions it must hold before the phase starts (no
 * message is lost to a subscription still on its way).
 */
#include "bus.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

const char bus_library[] = "zmq";

#define NAME_LEN 7 /* "bus.evN" */
#define MSG_LEN (NAME_LEN + 16)

static void *zctx;
static void *pubs[BUS_PRODUCERS];
static void *subs_sock[BUS_SUBS];

const char *bus_setup(void) {
  static char name[32];
  int major, minor, patch;
  zmq_version(&major, &minor, &patch);
  snprintf(name, sizeof name, "inproc");
  fprintf(stderr, "bus_zmq: libzmq %d.%d.%d\n", major, minor, patch);
  return name;
}

static int zfail(const char *what) {
  char buf[160];
  snprintf(buf, sizeof buf, "%s: %s", what, zmq_strerror(zmq_errno()));
  return bus_fail(buf);
}

void *bus_producer_open(int producer) {
  return pubs[producer];
}

int bus_publish(void *ctx, int topic, int producer, uint64_t seq, uint64_t ts) {
  unsigned char msg[MSG_LEN];
  uint64_t word = bus_pack(topic, producer, seq);
  memcpy(msg, bus_topic[topic], NAME_LEN);
  memcpy(msg + NAME_LEN, &ts, 8);
  memcpy(msg + NAME_LEN + 8, &word, 8);
  return zmq_send(ctx, msg, MSG_LEN, 0) == MSG_LEN ? 0 : -1;
}

void bus_producer_close(void *ctx) {
  (void)ctx;
}

static int sub_rc[BUS_SUBS];

static void *sub_main(void *arg) {
  int s = (int)(intptr_t)arg;
  unsigned char msg[64];
  for (;;) {
    int n = zmq_recv(subs_sock[s], msg, sizeof msg, 0);
    if (n != MSG_LEN) {
      sub_rc[s] = zfail("zmq_recv");
      return NULL;
    }
    uint64_t ts, word, seq;
    int topic, producer;
    memcpy(&ts, msg + NAME_LEN, 8);
    memcpy(&word, msg + NAME_LEN + 8, 8);
    bus_unpack(word, &topic, &producer, &seq);
    if (bus_handle(s, topic, producer, seq, ts))
      return NULL;
  }
}

static int subscriptions(void) {
  int n = 0;
  for (int s = 0; s < BUS_SUBS; s++)
    for (const char *const *t = bus_sub_topics[s]; *t != NULL; t++)
      n++;
  return n;
}

int bus_run(void) {
  int one = 1, zero = 0;
  char ep[64];
  zctx = zmq_ctx_new();
  if (zctx == NULL)
    return zfail("zmq_ctx_new");
  for (int p = 0; p < BUS_PRODUCERS; p++) {
    pubs[p] = zmq_socket(zctx, ZMQ_XPUB);
    snprintf(ep, sizeof ep, "inproc://bus-%d", p);
    if (pubs[p] == NULL ||
        zmq_setsockopt(pubs[p], ZMQ_XPUB_NODROP, &one, sizeof one) != 0 ||
        zmq_setsockopt(pubs[p], ZMQ_XPUB_VERBOSE, &one, sizeof one) != 0 ||
        zmq_setsockopt(pubs[p], ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(pubs[p], ep) != 0)
      return zfail("publisher");
  }
  for (int s = 0; s < BUS_SUBS; s++) {
    subs_sock[s] = zmq_socket(zctx, ZMQ_SUB);
    if (subs_sock[s] == NULL ||
        zmq_setsockopt(subs_sock[s], ZMQ_LINGER, &zero, sizeof zero) != 0)
      return zfail("subscriber");
    for (const char *const *t = bus_sub_topics[s]; *t != NULL; t++)
      if (zmq_setsockopt(subs_sock[s], ZMQ_SUBSCRIBE, *t, strlen(*t)) != 0)
        return zfail("ZMQ_SUBSCRIBE");
    for (int p = 0; p < BUS_PRODUCERS; p++) {
      snprintf(ep, sizeof ep, "inproc://bus-%d", p);
      if (zmq_connect(subs_sock[s], ep) != 0)
        return zfail("zmq_connect");
    }
  }
  /* Every publisher holds every subscription before anything is sent. */
  for (int p = 0; p < BUS_PRODUCERS; p++) {
    char sub[64];
    for (int n = subscriptions(); n > 0; n--)
      if (zmq_recv(pubs[p], sub, sizeof sub, 0) < 1 || sub[0] != 1)
        return zfail("subscription");
  }
  pthread_t th[BUS_SUBS];
  for (int s = 0; s < BUS_SUBS; s++) {
    sub_rc[s] = 0;
    if (pthread_create(&th[s], NULL, sub_main, (void *)(intptr_t)s) != 0)
      return bus_fail("pthread_create");
  }
  if (bus_start_producers() < 0)
    return -1;
  int rc = 0;
  for (int s = 0; s < BUS_SUBS; s++) {
    pthread_join(th[s], NULL);
    rc |= sub_rc[s];
  }
  rc |= bus_join_producers();
  for (int p = 0; p < BUS_PRODUCERS; p++)
    zmq_close(pubs[p]);
  for (int s = 0; s < BUS_SUBS; s++)
    zmq_close(subs_sock[s]);
  zmq_ctx_term(zctx);
  return rc != 0 ? -1 : 0;
}
