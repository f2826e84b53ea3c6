/*
 * fuzz_http.c - examples/http/http_parser.c, the request parser of rx-http,
 * read as a pipelined server reads it.
 *
 * The input: byte 0 picks the head limit (64..4096 bytes, so that 431 is
 * reached by small inputs), byte 1 a count k of split points (0..15), then
 * k two-byte split offsets, then the stream of bytes a client sends. The
 * stream goes through the same loop the server runs (http_server.c's
 * process() and conn_input()): parse a head where the bytes lie, consume its
 * body with http_body_feed(), again, until an error or the end; a partial
 * head is copied to an accumulation buffer and parsed there once more bytes
 * came. It runs twice: the whole stream in one piece, and cut at the split
 * points. Both must give the same requests (every field, as offsets into
 * the stream), the same body lengths, the same final error or the same
 * bytes left over. Any difference aborts.
 *
 * Invariants checked on every parsed head: it ends with CRLF CRLF; every
 * slice lies inside it (or is the literal "/" of an absolute-form target);
 * header names are non-empty tokens and values hold no CR, LF or leading or
 * trailing whitespace; chunked comes without a Content-Length; a body
 * never takes more than it was offered, nor a Content-Length body more or
 * less than its length.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

#define MAX_EVENTS 256

struct event {
  size_t head_at, head_len; /* stream offsets */
  int method_id, minor;
  int keep_alive, chunked, expect_continue;
  uint64_t content_length;
  size_t target_at, target_len, path_at, path_len, query_at, query_len;
  size_t nheaders;
  uint64_t fields; /* a hash of the header slices' offsets and lengths */
  uint64_t body;   /* body bytes consumed */
};

struct run {
  size_t max_head;
  char *acc; /* a partial head, and what came after it */
  size_t acc_len;
  size_t base;   /* stream offset of the first byte not yet consumed */
  int in_body;   /* a body is being consumed */
  int end;       /* 0, or the error that ended the stream */
  size_t nevent; /* events[nevent - 1]: the current request */
  struct http_body body;
  struct event events[MAX_EVENTS];
};

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                              \
    }                                                                       \
  } while (0)

/* The slice s, inside head[0..len): its offset from the head. */
static size_t inside(const char *head, size_t len, struct http_slice s) {
  CHECK(s.p >= head && s.n <= len && (size_t)(s.p - head) <= len - s.n);
  return (size_t)(s.p - head);
}

static int is_ws(char c) {
  return c == ' ' || c == '\t';
}

/* Checks a parsed head at buf[0..n) and records it. */
static void on_head(struct run *r, const char *buf, size_t n,
                    const struct http_request *q) {
  CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
  CHECK(r->nevent < MAX_EVENTS);
  struct event *e = &r->events[r->nevent++];
  memset(e, 0, sizeof(*e));
  e->head_at = r->base;
  e->head_len = n;
  inside(buf, n, q->method);
  CHECK(q->method.n > 0);
  e->method_id = q->method_id;
  e->minor = q->minor;
  CHECK(q->minor == 0 || q->minor == 1);
  e->keep_alive = q->keep_alive;
  e->chunked = q->chunked;
  e->expect_continue = q->expect_continue;
  e->content_length = q->content_length;
  CHECK(!q->chunked || q->content_length == 0);
  e->target_at = inside(buf, n, q->target);
  e->target_len = q->target.n;
  CHECK(q->target.n > 0);
  if (q->path.n == 1 && q->path.p[0] == '/' &&
      (q->path.p < buf || q->path.p >= buf + n)) {
    e->path_at = SIZE_MAX; /* the literal "/" */
  } else {
    e->path_at = inside(buf, n, q->path);
    CHECK(e->path_at >= e->target_at &&
          e->path_at + q->path.n <= e->target_at + e->target_len);
  }
  e->path_len = q->path.n;
  e->query_at = inside(buf, n, q->query);
  e->query_len = q->query.n;
  e->nheaders = q->nheaders;
  CHECK(q->nheaders <= HTTP_MAX_HEADERS);
  uint64_t h = 1469598103934665603u;
  for (size_t i = 0; i < q->nheaders; i++) {
    const struct http_header *f = &q->headers[i];
    size_t at = inside(buf, n, f->name);
    CHECK(f->name.n > 0);
    for (size_t j = 0; j < f->name.n; j++)
      CHECK(f->name.p[j] > ' ' && f->name.p[j] != ':' && f->name.p[j] < 127);
    CHECK(f->name.p[f->name.n] == ':');
    size_t vat = inside(buf, n, f->value);
    for (size_t j = 0; j < f->value.n; j++)
      CHECK(f->value.p[j] != '\r' && f->value.p[j] != '\n');
    CHECK(f->value.n == 0 ||
          (!is_ws(f->value.p[0]) && !is_ws(f->value.p[f->value.n - 1])));
    h = (h ^ at ^ (uint64_t)f->name.n << 20 ^ (uint64_t)vat << 32 ^
         (uint64_t)f->value.n << 48) *
        1099511628211u;
  }
  e->fields = h;
}

/* process() of http_server.c: the bytes consumed from buf[0..len). */
static size_t process(struct run *r, const char *buf, size_t len) {
  size_t off = 0;
  while (off < len && r->end == 0) {
    if (r->in_body) {
      long n = http_body_feed(&r->body, buf + off, len - off);
      struct event *e = &r->events[r->nevent - 1];
      if (n < 0) {
        CHECK(n == HTTP_BAD_REQUEST || n == HTTP_TOO_LARGE);
        r->end = (int)n;
        /* Where in the body it failed depends on the pieces fed before
         * (a failed feed says nothing of what it took): both runs forget
         * the body. */
        e->body = 0;
        r->base = e->head_at + e->head_len;
        break;
      }
      CHECK((size_t)n <= len - off);
      e->body += (uint64_t)n;
      off += (size_t)n;
      r->base += (size_t)n;
      if (http_body_done(&r->body)) {
        r->in_body = 0;
        CHECK(e->chunked || e->body == e->content_length);
      } else {
        CHECK(off == len); /* only the end of the bytes stops a body */
      }
      continue;
    }
    struct http_request q;
    int n = http_parse_head(buf + off, len - off, r->max_head, &q);
    if (n == HTTP_NEED_MORE) {
      CHECK(len - off < r->max_head);
      break;
    }
    if (n < 0) {
      CHECK(n == HTTP_BAD_REQUEST || n == HTTP_TOO_LARGE ||
            n == HTTP_NOT_IMPLEMENTED || n == HTTP_BAD_VERSION);
      r->end = n;
      break;
    }
    CHECK((size_t)n <= len - off && (size_t)n <= r->max_head);
    on_head(r, buf + off, (size_t)n, &q);
    off += (size_t)n;
    r->base += (size_t)n;
    http_body_init(&r->body, &q);
    r->in_body = !http_body_done(&r->body);
    if (r->nevent == MAX_EVENTS)
      r->end = 1; /* enough: both runs stop at the same request */
  }
  return off;
}

/* conn_input() of http_server.c: the bytes of one read. */
static void feed(struct run *r, const char *buf, size_t len) {
  if (r->end != 0)
    return;
  if (r->acc_len > 0) {
    memcpy(r->acc + r->acc_len, buf, len);
    r->acc_len += len;
    size_t n = process(r, r->acc, r->acc_len);
    memmove(r->acc, r->acc + n, r->acc_len - n);
    r->acc_len -= n;
  } else {
    size_t n = process(r, buf, len);
    memcpy(r->acc, buf + n, len - n);
    r->acc_len = len - n;
  }
}

static struct run *run_new(size_t max_head, size_t size) {
  struct run *r = calloc(1, sizeof(*r));
  CHECK(r != NULL);
  r->acc = malloc(size + 1);
  CHECK(r->acc != NULL);
  r->max_head = max_head;
  return r;
}

static void run_free(struct run *r) {
  free(r->acc);
  free(r);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t max_head = 64 + (size_t)data[0] * 16;
  size_t k = data[1] & 15;
  if (size < 2 + 2 * k)
    return 0;
  size_t cuts[16];
  const uint8_t *p = data + 2;
  const char *stream = (const char *)(data + 2 + 2 * k);
  size_t len = size - 2 - 2 * k;
  for (size_t i = 0; i < k; i++)
    cuts[i] = len == 0 ? 0 : (size_t)(p[2 * i] | p[2 * i + 1] << 8) % len;
  qsort(cuts, k, sizeof(cuts[0]), cmp_size);

  struct run *whole = run_new(max_head, len);
  struct run *split = run_new(max_head, len);
  feed(whole, stream, len);
  size_t at = 0;
  for (size_t i = 0; i <= k; i++) {
    size_t to = i < k ? cuts[i] : len;
    if (to > at) {
      feed(split, stream + at, to - at);
      at = to;
    }
  }
  CHECK(whole->end == split->end);
  CHECK(whole->nevent == split->nevent);
  CHECK(whole->base == split->base);
  CHECK(whole->in_body == split->in_body);
  if (whole->end == 0)
    CHECK(whole->acc_len == split->acc_len &&
          whole->base + whole->acc_len == len);
  for (size_t i = 0; i < whole->nevent; i++)
    CHECK(memcmp(&whole->events[i], &split->events[i], sizeof(struct event)) ==
          0);
  run_free(whole);
  run_free(split);
  return 0;
}
