/*
 * bus-demo.c - the event bus end to end (docs/bus.md).
 *
 * A generator thread runs its own loop, driven by a timer (no polling):
 * each tick makes a "reading" event and posts it to the bus of the main
 * loop, sleeping in rx_bus_post_wait() when the bus has too many on their
 * way. On the main loop, a dispatcher runs the chain of "reading":
 * check() fails on a reading it cannot accept (the error handler counts
 * it), raise() publishes an "alert" for a high one and stops the chain,
 * and sum() adds the rest. Two listeners: one takes the alerts by
 * callback, the other pulls the last readings from its history at the end.
 * The generator's last event, "done", stops the main loop.
 *
 *   bus-demo [--events N] [--period-us P]
 *
 * Exits 0 when every reading was accounted for exactly once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx.h"
#include "rx/bus.h"

static long n_events = 2000;
static int64_t period = RX_USEC(200);

struct generator {
  rx_bus *bus;
  rx_loop *loop;
  rx_timer tick;
  long next;
  int rc;
};

static void on_tick(rx_loop *loop, rx_timer *w, int revents) {
  (void)revents;
  struct generator *g = w->data;
  int last = g->next == n_events;
  rx_event *ev;
  /* The payload is the reading itself: no allocation, no destructor. */
  g->rc = rx_event_new(&ev, last ? "done" : "reading", 0,
                       (void *)(uintptr_t)g->next, NULL);
  if (g->rc == 0) {
    g->rc = rx_bus_post_wait(g->bus, ev);
    rx_event_unref(ev);
  }
  g->next++;
  if (last || g->rc != 0)
    rx_timer_stop(loop, w);
}

static void *generator_main(void *arg) {
  struct generator *g = arg;
  rx_timer_init(&g->tick, on_tick, period, period);
  g->tick.data = g;
  rx_timer_start(g->loop, &g->tick);
  rx_run(g->loop, RX_RUN_DEFAULT);
  return NULL;
}

struct totals {
  long summed, alerts_raised, rejected, alerts_heard;
  rx_bus *bus;
};

static long reading(const rx_event *ev) {
  return (long)(uintptr_t)rx_event_payload(ev);
}

static int check(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)data;
  return reading(ev) % 97 == 13 ? -ERANGE : 1;
}

static int raise_alert(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  struct totals *t = data;
  if (reading(ev) % 10 != 9)
    return 1;
  rx_event *alert;
  if (rx_event_new(&alert, "alert", 0, rx_event_payload(ev), NULL) == 0) {
    if (rx_bus_publish(t->bus, alert) == 0)
      t->alerts_raised++;
    rx_event_unref(alert);
  }
  return 0; /* handled: sum() does not see it */
}

static int sum(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  (void)ev;
  ((struct totals *)data)->summed++;
  return 1;
}

static int on_error(rx_dispatcher *d, rx_event *ev, void *data) {
  (void)d;
  const struct rx_bus_error *e = rx_event_payload(ev);
  struct totals *t = data;
  t->rejected++;
  if (t->rejected <= 3)
    printf("rejected reading %ld: %s\n", reading(e->original),
           rx_strerror(e->error));
  return 0;
}

static void on_alert(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  (void)ev;
  ((struct totals *)data)->alerts_heard++;
}

static void on_done(rx_listener *l, rx_event *ev, void *data) {
  (void)l;
  (void)ev;
  rx_break(data, RX_BREAK_ALL);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--events") == 0)
      n_events = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--period-us") == 0)
      period = RX_USEC(atol(argv[i + 1]));
  }
  rx_loop *loop;
  rx_bus *bus;
  int rc = rx_loop_new(&loop, NULL);
  if (rc != 0 || (rc = rx_bus_new(&bus, loop, NULL)) != 0) {
    fprintf(stderr, "bus-demo: %s\n", rx_strerror(rc));
    return 1;
  }
  printf("bus-demo: %ld readings on %s\n", n_events, rx_backend_name(loop));
  struct totals t = {0};
  t.bus = bus;

  rx_dispatcher *d;
  rx_dispatcher_new(&d, bus, NULL);
  rx_dispatcher_on(d, "reading", check, &t);
  rx_dispatcher_on(d, "reading", raise_alert, &t);
  rx_dispatcher_on(d, "reading", sum, &t);
  rx_dispatcher_on_error(d, on_error, &t);
  rx_dispatcher_start(d);

  const char *alert[] = {"alert"}, *readings[] = {"reading"},
             *done[] = {"done"};
  struct rx_listener_options ao = {
      .names = alert, .n_names = 1, .cb = on_alert, .data = &t};
  struct rx_listener_options ro = {
      .names = readings, .n_names = 1, .capacity = 16, .history = 5};
  struct rx_listener_options doo = {
      .names = done, .n_names = 1, .cb = on_done, .data = loop};
  rx_listener *alerts, *recent, *end;
  rx_listener_new(&alerts, &ao);
  rx_listener_new(&recent, &ro);
  rx_listener_new(&end, &doo);
  rx_bus_add(bus, alerts);
  rx_bus_add(bus, recent);
  rx_bus_add(bus, end);

  struct generator g = {.bus = bus};
  if ((rc = rx_loop_new(&g.loop, NULL)) != 0) {
    fprintf(stderr, "bus-demo: %s\n", rx_strerror(rc));
    return 1;
  }
  pthread_t th;
  pthread_create(&th, NULL, generator_main, &g);
  rx_ref(loop); /* posts alone do not keep a loop running */
  rx_run(loop, RX_RUN_DEFAULT);
  rx_unref(loop);
  pthread_join(th, NULL);
  /* Handle what is still queued for the dispatcher, then run the loop
   * once for the alerts that raised. */
  rx_dispatcher_stop(d, 0, NULL, NULL);
  rx_run(loop, RX_RUN_NOWAIT);

  printf("last readings in history:");
  for (size_t i = 0; i < rx_listener_history_count(recent); i++)
    printf(" %ld", reading(rx_listener_history(recent, i)));
  printf("\n");
  struct rx_listener_metrics rm;
  rx_listener_metrics(recent, &rm);
  struct rx_dispatcher_metrics dm;
  rx_dispatcher_metrics(d, &dm);
  struct rx_bus_metrics bm;
  rx_bus_metrics(bus, &bm);
  printf("summed %ld, alerts %ld raised / %ld heard, rejected %ld\n", t.summed,
         t.alerts_raised, t.alerts_heard, t.rejected);
  printf("dispatcher: handled %llu, stopped %llu, failures %llu\n",
         (unsigned long long)dm.handled, (unsigned long long)dm.stopped,
         (unsigned long long)dm.failures);
  printf("recent (never read, capacity 16): depth %zu, dropped %llu\n",
         rm.depth, (unsigned long long)rm.dropped_oldest);
  printf("bus: posted %llu, sleeps %llu, wake-ups %llu\n",
         (unsigned long long)bm.posted, (unsigned long long)bm.post_sleeps,
         (unsigned long long)bm.post_wakeups);

  int ok = g.rc == 0 && t.summed + t.alerts_raised + t.rejected == n_events &&
           t.alerts_heard == t.alerts_raised &&
           dm.handled == (uint64_t)n_events;
  rx_dispatcher_free(d);
  rx_listener_free(alerts);
  rx_listener_free(recent);
  rx_listener_free(end);
  rx_bus_free(bus);
  rx_loop_free(loop);
  rx_loop_free(g.loop);
  printf("bus-demo: %s\n", ok ? "OK" : "MISMATCH");
  return ok ? 0 : 1;
}
