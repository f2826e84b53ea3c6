/* proto.h - standalone timer-start prototypes (README.md). */
#ifndef PROTO_H
#define PROTO_H
#include <stdint.h>
#include <stddef.h>

#define PT_AT_BITS 58
#define PT_AT_MASK ((UINT64_C(1) << PT_AT_BITS) - 1)
#define PT_ACTIVE 0x08u
#define PT_PENDING 0x10u
#define PT_INVALID 0x20u
#define PT_BITS 6
#define PT_SLOTS 64
#define PT_LEVELS 6
#define PT_NSLOT (PT_LEVELS * PT_SLOTS) /* 384 wheel slots */
#define PT_OVERFLOW PT_NSLOT            /* 384 */
#define PT_EXPIRED (PT_NSLOT + 1)       /* 385 */
#define PT_INCOMING (PT_NSLOT + 2)      /* 386: variant "defer" only */
#define PT_NLISTS (PT_NSLOT + 3)
#define PT_IDX_BITS 23                  /* loc = where << 23 | index */
#define PT_IDX_MASK ((1u << PT_IDX_BITS) - 1)

struct pt_link { struct pt_link *next, *prev; };
struct pt_hnode { struct pt_hnode *next, **pprev; };

/* 48 bytes: callback, data, deadline/flags word, repeat, location. */
typedef struct pt_timer {
  void *data;
  void (*cb)(void *loop, struct pt_timer *t, int revents);
  uint64_t word;   /* low 58 bits: delay (stopped) / deadline rel. origin
                      (active); 6 flag bits above */
  int64_t repeat;
  union {
    struct { uint32_t loc; uint32_t spare0; uint64_t spare1; } a; /* arrays */
    struct pt_link link;   /* variant "list" */
    struct pt_hnode h;     /* variant "hlist" */
  } u;
} pt_timer;

struct pt_rec { uint64_t rel; pt_timer *t; };
struct pt_slot { struct pt_rec *v; uint32_t n, cap; };

typedef struct pt_loop {
  uint64_t now_rel;   /* loop time, ns since origin */
  unsigned shift;
  uint64_t round;
  uint64_t elapsed;   /* ticks processed */
  size_t count;       /* entries in the wheel */
  int activecnt;
  uint64_t overflow_tick;
  uint64_t occupied[PT_LEVELS];
  struct pt_slot slots[PT_NLISTS];        /* arr, defer */
  struct pt_link lheads[PT_NLISTS];       /* list */
  struct pt_hnode *hheads[PT_NLISTS];     /* hlist */
} pt_loop;

int pt_loop_init(pt_loop *L, unsigned shift);
void pt_timer_init(pt_timer *t, void *cb, int64_t after, int64_t repeat);
int pt_timer_set(pt_timer *t, int64_t after, int64_t repeat);

/* (4) floor: no placement at all */
int pt_floor_start(pt_loop *L, pt_timer *t);
int pt_floor_stop(pt_loop *L, pt_timer *t);
/* (3) per-slot growable arrays, swap-remove */
int pt_arr_start(pt_loop *L, pt_timer *t);
int pt_arr_stop(pt_loop *L, pt_timer *t);
/* (5a) rx-like doubly linked circular lists, minimal bookkeeping */
int pt_list_start(pt_loop *L, pt_timer *t);
int pt_list_stop(pt_loop *L, pt_timer *t);
/* (5b) Linux-style hlist: singly linked + pprev, push at head */
int pt_hlist_start(pt_loop *L, pt_timer *t);
int pt_hlist_stop(pt_loop *L, pt_timer *t);
/* (5c) deferred placement: append to one "incoming" array, placed at the
 * next advance (pt_defer_flush) */
int pt_defer_start(pt_loop *L, pt_timer *t);
int pt_defer_stop(pt_loop *L, pt_timer *t);
void pt_defer_flush(pt_loop *L);

int pt_arr_validate(pt_loop *L);

/* Lean variants: table-driven level, no wheel count (activecnt only). */
int pt_arrL_start(pt_loop *L, pt_timer *t);
int pt_listL_start(pt_loop *L, pt_timer *t);
int pt_hlistL_start(pt_loop *L, pt_timer *t);
#endif
/* Minimal variants: lean + compile-time tick shift (20) + occupancy bit set
 * only when the slot was empty (known from the push itself). */
int pt_arrM_start(pt_loop *L, pt_timer *t);
int pt_listM_start(pt_loop *L, pt_timer *t);
int pt_hlistM_start(pt_loop *L, pt_timer *t);
