/*
 * fuzz_bus.c - the event bus (services/bus.c) against a model, one thread.
 *
 * Four pull listeners, each remade by the script with its own names (a
 * subset of three, or none: every event), capacity (1 to 4), overflow
 * policy and history cap (0 to 3), and the bus's default listener (every
 * event, capacity 4, drop oldest), which the script turns off and on. The
 * operations: add, remove, remake (free and new) a listener, publish an
 * event of one of the three names, clear a listener, try_get from it, get
 * from it (answered from the loop's next pass), toggle the default
 * listener, run the loop once.
 *
 * The model keeps, per listener, whether it is on the bus, its FIFO of
 * event numbers and its history. The checks, after every operation: each
 * call returns what the model says (-EALREADY, -ENOENT, -ENOBUFS for a
 * full FAIL listener, -EAGAIN for a full BLOCK one, all or nothing); each
 * event taken out (try_get, get, clear) is the model's oldest; depth,
 * history and the drop counters match; an event's reference count is one
 * per FIFO and history slot holding it, plus the script's own. At the end
 * every listener and the bus are freed; ASan (libFuzzer build) finds a
 * reference never dropped. Any mismatch aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "rx.h"
#include "rx/bus.h"

#define NL 4    /* listeners */
#define NEV 256 /* events per input, at most */
#define MAXQ 8

static const char *const names[3] = {"a", "b", "c"};

struct model {
  rx_listener *l;
  int on;
  unsigned name_mask; /* 0: all */
  size_t cap, hist_cap;
  int policy;
  int q[MAXQ];
  size_t n;
  int hist[4];
  size_t nh;
  uint64_t dropped_oldest, dropped_new, failed, blocked;
};

static struct model m[NL + 1]; /* [NL]: the default listener */
static rx_event *ev_of[NEV];
static int ev_name[NEV];
static int nev;
static int default_on;
static rx_loop *loop;
static int got_id, got_calls;

#define CHECK(c)                                                        \
  do {                                                                  \
    if (!(c)) {                                                         \
      fprintf(stderr, "fuzz_bus: %s:%d: %s\n", __FILE__, __LINE__, #c); \
      abort();                                                          \
    }                                                                   \
  } while (0)

static int id_of(const rx_event *ev) {
  return (int)(uintptr_t)rx_event_payload(ev);
}

static void q_push(struct model *x, int id) {
  x->q[x->n++] = id;
}

static int q_pop(struct model *x) {
  int id = x->q[0];
  memmove(x->q, x->q + 1, (x->n - 1) * sizeof(int));
  x->n--;
  return id;
}

static void hist_add(struct model *x, int id) {
  if (x->hist_cap == 0)
    return;
  if (x->nh == x->hist_cap) {
    memmove(x->hist, x->hist + 1, (x->nh - 1) * sizeof(int));
    x->nh--;
  }
  x->hist[x->nh++] = id;
}

static int wants(const struct model *x, int name) {
  return x->name_mask == 0 || (x->name_mask & (1u << name)) != 0;
}

static void make(int i, struct fz_input *in) {
  struct model *x = &m[i];
  const char *ns[3];
  size_t nn = 0;
  x->name_mask = fz_u8(in) & 7;
  for (int k = 0; k < 3; k++)
    if (x->name_mask & (1u << k))
      ns[nn++] = names[k];
  struct rx_listener_options o = {0};
  o.names = ns;
  o.n_names = nn;
  o.capacity = 1 + fz_below(in, 4);
  o.policy = (int)fz_below(in, 4);
  o.history = fz_below(in, 4);
  CHECK(rx_listener_new(&x->l, &o) == 0);
  x->cap = o.capacity;
  x->policy = o.policy;
  x->hist_cap = o.history;
  x->on = 0;
  x->n = x->nh = 0;
  x->dropped_oldest = x->dropped_new = x->failed = x->blocked = 0;
}

static void check_all(void) {
  for (int i = 0; i <= NL; i++) {
    struct model *x = &m[i];
    struct rx_listener_metrics lm;
    CHECK(rx_listener_metrics(x->l, &lm) == 0);
    CHECK(lm.depth == x->n);
    CHECK(lm.dropped_oldest == x->dropped_oldest);
    CHECK(lm.dropped_new == x->dropped_new);
    CHECK(lm.failed == x->failed);
    CHECK(lm.blocked == x->blocked);
    CHECK(rx_listener_history_count(x->l) == x->nh);
    for (size_t k = 0; k < x->nh; k++)
      CHECK(id_of(rx_listener_history(x->l, k)) == x->hist[k]);
  }
  /* References: the script's one, plus one per FIFO and history slot. */
  for (int e = 0; e < nev; e++) {
    unsigned refs = 1;
    for (int i = 0; i <= NL; i++) {
      for (size_t k = 0; k < m[i].n; k++)
        refs += m[i].q[k] == e;
      for (size_t k = 0; k < m[i].nh; k++)
        refs += m[i].hist[k] == e;
    }
    CHECK(rx_event_refs(ev_of[e]) == refs);
  }
}

static void publish(rx_bus *bus, int name) {
  if (nev == NEV)
    return;
  int id = nev++;
  CHECK(rx_event_new(&ev_of[id], names[name], 1, (void *)(uintptr_t)id, NULL) ==
        0);
  ev_name[id] = name;
  struct model *fail = NULL, *block = NULL;
  for (int i = 0; i <= NL; i++) {
    struct model *x = &m[i];
    if (!x->on || !wants(x, name) || x->n < x->cap)
      continue;
    if (x->policy == RX_BUS_FAIL && fail == NULL)
      fail = x;
    if (x->policy == RX_BUS_BLOCK && block == NULL)
      block = x;
  }
  int want = fail != NULL ? -ENOBUFS : block != NULL ? -EAGAIN : 0;
  /* Every full listener that refuses counts it. */
  for (int i = 0; want != 0 && i <= NL; i++) {
    struct model *x = &m[i];
    if (!x->on || !wants(x, name) || x->n < x->cap)
      continue;
    if (want == -ENOBUFS && x->policy == RX_BUS_FAIL)
      x->failed++;
    if (want == -EAGAIN && x->policy == RX_BUS_BLOCK)
      x->blocked++;
  }
  CHECK(rx_bus_publish(bus, ev_of[id]) == want);
  if (want != 0)
    return;
  for (int i = 0; i <= NL; i++) {
    struct model *x = &m[i];
    if (!x->on || !wants(x, name))
      continue;
    if (x->n == x->cap) {
      if (x->policy == RX_BUS_DROP_NEW) {
        x->dropped_new++;
        continue;
      }
      q_pop(x);
      x->dropped_oldest++;
    }
    q_push(x, id);
    hist_add(x, id);
  }
}

static struct model *clearing;
static void on_cleared(rx_event *ev, void *arg) {
  (void)arg;
  CHECK(clearing->n > 0 && id_of(ev) == q_pop(clearing));
  rx_event_unref(ev);
}

static void on_got(rx_listener *l, rx_event *ev, int status, void *data) {
  (void)l;
  (void)data;
  got_calls++;
  got_id = -1;
  if (status == 0) {
    got_id = id_of(ev);
    rx_event_unref(ev);
  } else {
    CHECK(status == -ECANCELED);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct fz_input in;
  fz_init(&in, data, size);
  if (loop == NULL)
    CHECK(rx_loop_new(&loop, NULL) == 0);
  rx_bus *bus;
  struct rx_bus_options bo = {.default_capacity = 4, .default_history = 2};
  CHECK(rx_bus_new(&bus, loop, &bo) == 0);
  memset(m, 0, sizeof(m));
  nev = 0;
  default_on = 1;
  m[NL].l = rx_bus_default(bus);
  m[NL].on = 1;
  m[NL].cap = 4;
  m[NL].hist_cap = 2;
  m[NL].policy = RX_BUS_DROP_OLDEST;
  for (int i = 0; i < NL; i++)
    make(i, &in);
  int pending_get = -1; /* the listener with a get outstanding */
  for (int ops = 0; ops < 2000 && !fz_done(&in); ops++) {
    int op = fz_below(&in, 9);
    int i = (int)fz_below(&in, NL);
    struct model *x = &m[i];
    switch (op) {
    case 0: /* add */
      CHECK(rx_bus_add(bus, x->l) == (x->on ? -EALREADY : 0));
      x->on = 1;
      break;
    case 1: /* remove: clears */
      got_calls = 0;
      CHECK(rx_bus_remove(bus, x->l) == (x->on ? 0 : -ENOENT));
      if (x->on && pending_get == i) {
        CHECK(got_calls == 1 && got_id == -1);
        pending_get = -1;
      }
      x->on = 0;
      x->n = 0;
      break;
    case 2: /* remake */
      if (pending_get == i)
        pending_get = -1;
      rx_listener_free(x->l);
      make(i, &in);
      break;
    case 3:
      publish(bus, (int)fz_below(&in, 3));
      break;
    case 4: { /* clear hands back what it drained, oldest first */
      size_t n = x->n;
      clearing = x;
      CHECK(rx_listener_clear(x->l, on_cleared, NULL) == (long)n);
      CHECK(x->n == 0);
      break;
    }
    case 5: { /* try_get */
      rx_event *ev;
      if (x->n == 0) {
        CHECK(rx_listener_try_get(x->l, &ev) == -EAGAIN);
      } else {
        CHECK(rx_listener_try_get(x->l, &ev) == 0);
        CHECK(id_of(ev) == q_pop(x));
        rx_event_unref(ev);
      }
      break;
    }
    case 6: { /* get, answered from the next pass */
      int rc = rx_listener_get(x->l, on_got, NULL, 0);
      if (!x->on) {
        CHECK(rc == -ENOENT);
      } else if (pending_get == i) {
        CHECK(rc == -EBUSY);
      } else {
        CHECK(rc == 0);
        if (pending_get >= 0)
          CHECK(rx_listener_cancel_get(m[pending_get].l) == 0);
        pending_get = i;
      }
      break;
    }
    case 7:
      default_on = !default_on;
      CHECK(rx_bus_set_default(bus, default_on) == 0);
      m[NL].on = default_on;
      break;
    case 8: /* a pass of the loop: answers a get if there is an event */
      got_calls = 0;
      CHECK(rx_run(loop, RX_RUN_NOWAIT) >= 0);
      if (pending_get >= 0 && m[pending_get].n > 0) {
        CHECK(got_calls == 1 && got_id == q_pop(&m[pending_get]));
        pending_get = -1;
      } else {
        CHECK(got_calls == 0);
      }
      break;
    }
    check_all();
  }
  if (pending_get >= 0)
    rx_listener_cancel_get(m[pending_get].l);
  for (int i = 0; i < NL; i++)
    rx_listener_free(m[i].l);
  CHECK(rx_bus_free(bus) == 0);
  CHECK(rx_run(loop, RX_RUN_NOWAIT) >= 0);
  for (int e = 0; e < nev; e++) {
    CHECK(rx_event_refs(ev_of[e]) == 1);
    rx_event_unref(ev_of[e]);
  }
  return 0;
}
