/*
 * bench/peers/bus_rx.c - the bus benchmark (bus.h) on rx's event bus
 * (rx/bus.h, librx-services). The main thread runs the loop and its bus;
 * each producer thread makes an event (rx_event_new(): the name, the
 * timestamp, the packed producer, topic and sequence as the payload) and
 * hands it over with rx_bus_post_wait(), which sleeps while the post limit
 * (4096 events on their way) is reached. The three subscribers are
 * callback listeners with their names, policy RX_BUS_BLOCK (nothing is
 * dropped) and a FIFO of 4096; the default listener is off. Each callback
 * calls bus_handle(); the last one breaks the loop.
 *
 * The backend is rx's usual choice, which $RX_BACKEND overrides. The loop
 * keeps rx's default busy poll; BUS_RX_BUSY_POLL=<ns> sets it
 * (rx_set_busy_poll(), 0: off) for experiments, and stderr says how often
 * a producer slept in rx_bus_post_wait().
 */
#include "bus.h"
#include "rx.h"
#include "rx/bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

const char bus_library[] = "rx";

static rx_loop *loop;
static rx_bus *bus;

const char *bus_setup(void) {
  static char name[32];
  int rc = rx_loop_new(&loop, NULL);
  if (rc < 0) {
    fprintf(stderr, "rx_loop_new: %s\n", rx_strerror(rc));
    return NULL;
  }
  snprintf(name, sizeof name, "%s", rx_backend_name(loop));
  rx_loop_free(loop);
  loop = NULL;
  return name;
}

static void on_event(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  int topic, producer;
  uint64_t seq;
  bus_unpack((uint64_t)(uintptr_t)rx_event_payload(ev), &topic, &producer,
             &seq);
  bus_handle((int)(intptr_t)data, topic, producer, seq,
             (uint64_t)rx_event_time(ev));
  if (bus_all_done())
    rx_break(loop, RX_BREAK_ALL);
}

void *bus_producer_open(int producer) {
  (void)producer;
  return bus;
}

int bus_publish(void *ctx, int topic, int producer, uint64_t seq, uint64_t ts) {
  rx_event *ev;
  int rc = rx_event_new(&ev, bus_topic[topic], (int64_t)ts,
                        (void *)(uintptr_t)bus_pack(topic, producer, seq),
                        NULL);
  if (rc != 0)
    return -1;
  rc = rx_bus_post_wait(ctx, ev);
  rx_event_unref(ev);
  return rc == 0 ? 0 : -1;
}

void bus_producer_close(void *ctx) {
  (void)ctx;
}

int bus_run(void) {
  int rc = rx_loop_new(&loop, NULL);
  if (rc < 0)
    return bus_fail(rx_strerror(rc));
  if (getenv("BUS_RX_BUSY_POLL") != NULL)
    rx_set_busy_poll(loop, atoll(getenv("BUS_RX_BUSY_POLL")));
  if (rx_bus_new(&bus, loop, NULL) != 0)
    return bus_fail("rx_bus_new");
  rx_bus_set_default(bus, 0);
  rx_listener *l[BUS_SUBS];
  for (int s = 0; s < BUS_SUBS; s++) {
    struct rx_listener_options o = {0};
    o.names = bus_sub_topics[s];
    while (o.names[o.n_names] != NULL)
      o.n_names++;
    o.capacity = 4096;
    o.policy = RX_BUS_BLOCK;
    o.cb = on_event;
    o.data = (void *)(intptr_t)s;
    if (rx_listener_new(&l[s], &o) != 0 || rx_bus_add(bus, l[s]) != 0)
      return bus_fail("rx_listener_new");
  }
  rx_ref(loop); /* posts alone do not keep rx_run() going */
  if (bus_start_producers() < 0)
    return -1;
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  while (!bus_all_done())
    if (rx_run(loop, RX_RUN_DEFAULT) < 0)
      return bus_fail("rx_run");
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  rc = bus_join_producers();
  struct rx_bus_metrics m;
  rx_bus_metrics(bus, &m);
  fprintf(stderr,
          "bus_rx: posted %llu, post_wait slept %llu times, the loop's "
          "thread %.1f CPU ns per event\n",
          (unsigned long long)m.posted, (unsigned long long)m.post_sleeps,
          ((double)(c1.tv_sec - c0.tv_sec) * 1e9 +
           (double)(c1.tv_nsec - c0.tv_nsec)) /
              (double)bus_events());
  rx_unref(loop);
  rx_run(loop, RX_RUN_NOWAIT);
  for (int s = 0; s < BUS_SUBS; s++)
    rx_listener_free(l[s]);
  if (rx_bus_free(bus) != 0)
    rc = bus_fail("rx_bus_free");
  rx_loop_free(loop);
  return rc;
}
