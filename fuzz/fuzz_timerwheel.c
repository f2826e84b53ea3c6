/*
 * fuzz_timerwheel.c - reactor/timerwheel.c against a reference model.
 *
 * The input is a script. Byte 0 picks the tick (shift 10..30), byte 1 the
 * origin and whether the wheel is `exact` (the manual clock's mode). Then
 * each operation is an opcode byte and its arguments: add an entry of a
 * pool of 64 with a deadline of some kind (already due, in the current
 * tick, on a tick boundary, any level, the overflow, far or clamped, a tie
 * with a live entry), delete one, or advance the clock (by nothing, a
 * little, to a tick boundary or one ns short, by a big jump, to where
 * rx__tw_next() says, or backwards).
 *
 * The model is a plain array of (deadline, insertion number). It mirrors
 * the two facts that decide the partial tick (timerwheel.c's header: whole
 * ticks up to now, the partial one too after an entry was added already
 * due or with `exact`), so after each advance it knows exactly which
 * entries must come out: those due by now whose tick was reached; none
 * early, in (deadline, insertion) order. It also checks rx__tw_count(),
 * rx__tw_validate() after every operation, and that rx__tw_next() neither
 * spins nor sleeps past an entry's tick boundary. Any mismatch aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "rx.h" /* RX_SEC */
#include "timerwheel.h"

#define POOL 64
#define MAX_OPS 400
#define MAX_REL ((UINT64_C(1) << 58) - 1)
/* The clock stays this far inside the 2^58 ns the wheel expresses, so that
 * the final sweep past the last possible deadline is always possible. */
#define CLOCK_SPAN (UINT64_C(1) << 57)

struct item {
  struct rx__tw_entry ent;
  int live;       /* in the wheel, per the model */
  int out;        /* handed out by the advance being checked */
  uint64_t rel;   /* the deadline relative to origin, clamped */
  uint64_t seq;   /* insertion number, for ties */
  unsigned flags; /* the user's 6 bits, which the wheel must not touch */
};

struct model {
  struct rx__tw tw;
  struct item items[POOL];
  uint64_t seq;
  int64_t now;
  uint64_t elapsed; /* last tick processed */
  uint64_t reached; /* highest relative now advanced to */
  int due_added;    /* an entry was added already due since then */
  int exact;
};

static struct model m;

static uint64_t tick_of(uint64_t rel) {
  return (rel + (UINT64_C(1) << m.tw.shift) - 1) >> m.tw.shift;
}

static uint64_t rel_of(int64_t at) {
  uint64_t rel;
  if (at <= m.tw.origin)
    return 0;
  rel = (uint64_t)at - (uint64_t)m.tw.origin;
  return rel > MAX_REL ? MAX_REL : rel;
}

static int64_t abs_of(uint64_t rel) {
  return (int64_t)((uint64_t)m.tw.origin + rel);
}

static unsigned ent_flags(const struct rx__tw_entry *e) {
  return (unsigned)(e->word >> RX__TW_AT_BITS);
}

static size_t nlive(void) {
  size_t n = 0;
  for (int i = 0; i < POOL; i++)
    n += m.items[i].live;
  return n;
}

/* a + b, saturated: deadlines are computed in int64_t around now. */
static int64_t sat_add(int64_t a, uint64_t b) {
  if (b > (uint64_t)INT64_MAX || a > INT64_MAX - (int64_t)b)
    return INT64_MAX;
  return a + (int64_t)b;
}

static int64_t sat_sub(int64_t a, uint64_t b) {
  if (b > (uint64_t)INT64_MAX || a < INT64_MIN + (int64_t)b)
    return INT64_MIN;
  return a - (int64_t)b;
}

static void model_add(struct item *it, int64_t at, unsigned flags) {
  FZ_CHECK(!it->live && !rx__list_linked(&it->ent.link));
  it->ent.word = (uint64_t)(flags & 0x3f) << RX__TW_AT_BITS;
  it->flags = flags & 0x3f;
  it->rel = rel_of(at);
  it->seq = m.seq++;
  it->live = 1;
  if (it->rel <= m.reached)
    m.due_added = 1;
  rx__tw_add(&m.tw, &it->ent, at);
  FZ_CHECK((uint64_t)rx__tw_at(&m.tw, &it->ent) == (uint64_t)abs_of(it->rel));
}

/* A deadline of one of several kinds, around now. */
static int64_t pick_deadline(struct fz_input *in) {
  uint64_t tick = UINT64_C(1) << m.tw.shift;
  int64_t now = m.now;
  unsigned kind = fz_u8(in) % 10;

  switch (kind) {
  case 0: /* already due, perhaps before origin */
    return sat_sub(now, fz_magnitude(in, 40));
  case 1: /* in the current tick */
    return sat_add(now, fz_bytes(in, 4) % tick);
  case 2: { /* on a tick boundary, or a ns either side */
    uint64_t rel = now > m.tw.origin ? (uint64_t)(now - m.tw.origin) : 0;
    int64_t b = abs_of(tick_of(rel) << m.tw.shift);
    uint8_t v = fz_u8(in);
    int64_t at = sat_add(b, (uint64_t)(v >> 2) * tick);
    return (v & 3) == 0 ? sat_sub(at, 1) : sat_add(at, (v & 3) - 1);
  }
  case 3: /* level 0 */
    return sat_add(now, fz_bytes(in, 2) % (tick * 64));
  case 4: /* any level, by magnitude */
    return sat_add(now, fz_magnitude(in, m.tw.shift + 36));
  case 5: { /* the overflow, or just short of it */
    uint64_t span = m.tw.shift + 36 >= 58 ? MAX_REL : tick << 36;
    uint64_t v = fz_magnitude(in, m.tw.shift + 40);
    return fz_u8(in) & 1 ? sat_add(now, span + v)
                         : sat_add(now, span - 1 - (v % span));
  }
  case 6: /* far, or past the wheel's range: clamped */
    return fz_u8(in) & 1 ? INT64_MAX : sat_add(now, fz_magnitude(in, 60));
  default: { /* a tie with a live entry, or close to one */
    unsigned i = fz_below(in, POOL);
    for (unsigned k = 0; k < POOL; k++) {
      struct item *it = &m.items[(i + k) % POOL];
      if (it->live)
        return abs_of(it->rel) + (kind == 7 ? 0 : kind == 8 ? 1 : -1);
    }
    return sat_add(now, fz_bytes(in, 2));
  }
  }
}

static void check_next(int64_t now, uint64_t least) {
  int64_t next = rx__tw_next(&m.tw);
  if (nlive() == 0) {
    FZ_CHECK(next == INT64_MAX);
    return;
  }
  /* Only meaningful at the newest time: after the clock went back, the
   * wheel still answers for the time it had reached. */
  if (now < m.tw.origin || (uint64_t)(now - m.tw.origin) < m.reached)
    return;
  if (m.due_added) {
    FZ_CHECK(next <= now);
  } else {
    FZ_CHECK(next > now); /* no spinning */
    if (least != UINT64_MAX)
      FZ_CHECK(next <= abs_of(least << m.tw.shift)); /* no oversleeping */
  }
}

/* Advances the wheel to `now` and checks the output against the model.
 * Some of what comes out is added again, as a repeating timer is. */
static void model_advance(struct fz_input *in, int64_t now) {
  struct rx__link out, *link;
  struct item *prev = NULL;
  uint64_t rel, target, e_new, least = UINT64_MAX;

  rx__list_init(&out);
  rx__tw_advance(&m.tw, now, &out);
  if (now < m.tw.origin) {
    FZ_CHECK(rx__list_empty(&out)); /* nothing is due before origin */
    m.now = now;
    return;
  }
  rel = (uint64_t)now - (uint64_t)m.tw.origin;
  target = rel >> m.tw.shift;
  if (m.due_added || m.exact)
    target = tick_of(rel);
  e_new = target > m.elapsed ? target : m.elapsed;

  for (link = out.next; link != &out; link = link->next) {
    struct item *it = rx__container_of(link, struct item, ent.link);
    FZ_CHECK(it >= m.items && it < m.items + POOL);
    FZ_CHECK(it->live && !it->out); /* once, and only what was added */
    FZ_CHECK(it->rel <= rel);       /* never early */
    FZ_CHECK(prev == NULL || prev->rel < it->rel ||
             (prev->rel == it->rel && prev->seq < it->seq));
    FZ_CHECK(ent_flags(&it->ent) == it->flags);
    it->out = 1;
    prev = it;
  }
  for (int i = 0; i < POOL; i++) {
    struct item *it = &m.items[i];
    int want;
    if (!it->live)
      continue;
    want = it->rel <= rel && tick_of(it->rel) <= e_new;
    if (want != it->out) {
      fprintf(stderr, "entry %d (rel %llu seq %llu) %s at rel %llu, shift %u\n",
              i, (unsigned long long)it->rel, (unsigned long long)it->seq,
              want ? "missing" : "extra", (unsigned long long)rel, m.tw.shift);
      abort();
    }
    if (!want && tick_of(it->rel) < least)
      least = tick_of(it->rel);
  }
  m.elapsed = e_new;
  if (rel >= m.reached) {
    m.reached = rel;
    m.due_added = 0;
  }
  m.now = now;

  while ((link = rx__list_shift(&out)) != NULL) {
    struct item *it = rx__container_of(link, struct item, ent.link);
    uint8_t again = fz_u8(in);
    it->out = 0;
    it->live = 0;
    if (again & 1) {
      /* Re-armed from the output: the old deadline plus a period, which
       * may already be due again. */
      uint64_t period = fz_magnitude(in, m.tw.shift + 12);
      model_add(it, abs_of(it->rel) + (int64_t)period, again >> 1);
      if (tick_of(it->rel) < least)
        least = tick_of(it->rel);
    }
  }
  FZ_CHECK(rx__tw_count(&m.tw) == nlive());
  check_next(now, least);
}

/* How far to move the clock: a jump of some kind, possibly backwards. */
static int64_t pick_now(struct fz_input *in) {
  uint64_t tick = UINT64_C(1) << m.tw.shift, rel, jump;
  int64_t next;
  unsigned kind = fz_u8(in) % 9;

  rel = m.now > m.tw.origin ? (uint64_t)(m.now - m.tw.origin) : 0;
  switch (kind) {
  case 0:
    jump = 0;
    break;
  case 1:
    jump = fz_bytes(in, 4) % tick;
    break;
  case 2: /* to the next tick boundary, or one ns short of it */
    jump = ((tick_of(rel + 1) << m.tw.shift) - rel) - (fz_u8(in) & 1);
    break;
  case 3:
    jump = fz_bytes(in, 2) % (tick * 64);
    break;
  case 4:
    jump = fz_bytes(in, 3) % (tick * 8192);
    break;
  case 5: /* a big jump */
    jump = fz_magnitude(in, m.tw.shift + 40);
    break;
  case 6:
  case 7: /* where the wheel says to go next */
    next = rx__tw_next(&m.tw);
    jump = next == INT64_MAX || next <= m.now ? 0 : (uint64_t)(next - m.now);
    break;
  default: /* backwards: nothing may come out early */
    return sat_sub(m.now, fz_magnitude(in, m.tw.shift + 8));
  }
  if (m.now < m.tw.origin)
    return m.tw.origin + (int64_t)(jump % CLOCK_SPAN);
  if (jump > CLOCK_SPAN - rel)
    jump = CLOCK_SPAN - rel;
  return m.now + (int64_t)jump;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int64_t origins[] = {0, RX_SEC(12345), -RX_SEC(5),
                                    INT64_C(1) << 61};
  struct fz_input in;
  unsigned shift;
  uint8_t b1;

  fz_init(&in, data, size);
  shift = 10 + fz_u8(&in) % 21;
  b1 = fz_u8(&in);
  memset(&m, 0, sizeof(m));
  rx__tw_init(&m.tw, origins[b1 & 3] + (int64_t)(b1 >> 3), shift);
  FZ_CHECK(m.tw.shift == shift);
  m.exact = (b1 >> 2) & 1;
  m.tw.exact = m.exact;
  /* Three times in four, stage the next rotation a few entries per advance
   * (the default, 1024, takes this pool whole), so that promotions find it
   * half staged. The bits also move the origin; no byte more is read. */
  if ((b1 >> 3) & 3)
    m.tw.stage_min = m.tw.stage_rate = (b1 >> 3) & 3;
  m.now = m.tw.origin;

  for (int op = 0; op < MAX_OPS && !fz_done(&in); op++) {
    uint8_t code = fz_u8(&in);
    switch (code % 8) {
    case 0:
    case 1:
    case 2: { /* add */
      struct item *it = &m.items[fz_below(&in, POOL)];
      int64_t at = pick_deadline(&in);
      if (!it->live)
        model_add(it, at, code >> 3);
      break;
    }
    case 3: { /* a burst of adds: slots holding many entries */
      unsigned n = 1 + fz_u8(&in) % 16;
      int64_t at = pick_deadline(&in);
      for (unsigned k = 0; k < n; k++) {
        struct item *it = &m.items[fz_below(&in, POOL)];
        if (!it->live)
          model_add(it, sat_add(at, k % 3), k);
      }
      break;
    }
    case 4: { /* del, also of an entry not in the wheel */
      struct item *it = &m.items[fz_below(&in, POOL)];
      rx__tw_del(&m.tw, &it->ent);
      FZ_CHECK(!rx__list_linked(&it->ent.link));
      FZ_CHECK(ent_flags(&it->ent) == it->flags);
      it->live = 0;
      break;
    }
    default: /* advance */
      model_advance(&in, pick_now(&in));
      break;
    }
    FZ_CHECK(rx__tw_count(&m.tw) == nlive());
    FZ_CHECK(rx__tw_validate(&m.tw) == 0);
  }
  /* Past the last deadline the wheel can hold, everything comes out; the
   * input is used up, so nothing is added again. */
  in.pos = in.size;
  model_advance(&in, m.tw.origin + (int64_t)MAX_REL + (INT64_C(1) << shift));
  FZ_CHECK(rx__tw_validate(&m.tw) == 0);
  FZ_CHECK(rx__tw_count(&m.tw) == 0 && nlive() == 0);
  return 0;
}
