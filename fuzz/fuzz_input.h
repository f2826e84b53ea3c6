/*
 * fuzz_input.h - reading a fuzz input as a script, shared by the targets.
 *
 * Every target interprets its bytes as a sequence of small operations. The
 * reader hands out bytes and little-endian words until the input runs out,
 * then zeros, and says when it has run out so that a script ends cleanly
 * instead of repeating its last operation on zeros. Header-only and static
 * inline, like the data structures in reactor/ (STYLE.md 8).
 */
#ifndef RX_FUZZ_INPUT_H
#define RX_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

/* FZ_ASAN: 1 in an AddressSanitizer build (gcc says so with a macro, clang
 * with __has_feature), for the targets that check freed memory. */
#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif
#ifndef FZ_ASAN
#define FZ_ASAN 0
#endif

struct fz_input {
  const uint8_t *data;
  size_t size;
  size_t pos;
};

static inline void fz_init(struct fz_input *in, const uint8_t *data,
                           size_t size) {
  in->data = data;
  in->size = size;
  in->pos = 0;
}

static inline int fz_done(const struct fz_input *in) {
  return in->pos >= in->size;
}

static inline uint8_t fz_u8(struct fz_input *in) {
  return in->pos < in->size ? in->data[in->pos++] : 0;
}

/* `n` bytes (at most 8), little-endian. */
static inline uint64_t fz_bytes(struct fz_input *in, unsigned n) {
  uint64_t v = 0;
  if (n > 8)
    n = 8;
  for (unsigned i = 0; i < n; i++)
    v |= (uint64_t)fz_u8(in) << (8 * i);
  return v;
}

/* A value in [0, n), n > 0, from one byte (two when n > 256). */
static inline unsigned fz_below(struct fz_input *in, unsigned n) {
  uint64_t v = n > 256 ? fz_bytes(in, 2) : fz_u8(in);
  return (unsigned)(v % n);
}

/* A value in [0, 2^bits): a byte says how many of the bits to fill from the
 * next bytes, so that small and huge values are both a few bytes away. */
static inline uint64_t fz_magnitude(struct fz_input *in, unsigned bits) {
  unsigned b = fz_u8(in) % (bits + 1);
  uint64_t v = fz_bytes(in, (b + 7) / 8);
  return b >= 64 ? v : v & ((UINT64_C(1) << b) - 1);
}

/* Aborts with a message: a fuzz target's way to fail. */
#define FZ_CHECK(cond)                                                         \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

#endif /* RX_FUZZ_INPUT_H */
