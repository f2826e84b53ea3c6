/*
 * http_parser.c - the request parser of http_parser.h.
 *
 * The head is read left to right, once per call, with one table lookup per
 * byte (the character classes of RFC 9110 5.6.2 and 5.5). Running out of
 * bytes anywhere is "need more", unless `max_head` bytes have been read,
 * which is 431; any byte that cannot start or continue what is expected is
 * an error at once. Since a decision never looks past the bytes it has
 * read, a prefix of a stream gives either "need more" or the answer the
 * whole gives: the property a pipelined server relies on when a request
 * straddles reads.
 *
 * The body is a small state machine over bytes (chunked) or a countdown
 * (Content-Length); it consumes body bytes in bulk and never copies them.
 */
#include "http_parser.h"

#include <string.h>

/* Character classes: T a token char (tchar), V a field-value byte (VCHAR,
 * obs-text, SP, HTAB), U a request-target byte (VCHAR), H a hex digit. */
enum { C_T = 1, C_V = 2, C_U = 4, C_H = 8 };

static const unsigned char cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0, 0, 0, 0, 0, 0, /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, 0, 0, 0, 0, 0, /* 0x10 */
    2,  7,  6,  7,  7,  7,  7,  7,  6,  6,  7, 7, 6, 7, 7, 6, /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6, 6, 6, 6, 6, 6, /* 0x30 */
    6,  15, 15, 15, 15, 15, 15, 7,  7,  7,  7, 7, 7, 7, 7, 7, /* 0x40 */
    7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, 6, 6, 6, 7, 7, /* 0x50 */
    7,  15, 15, 15, 15, 15, 15, 7,  7,  7,  7, 7, 7, 7, 7, 7, /* 0x60 */
    7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, 6, 7, 6, 7, 0, /* 0x70 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0x80 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0x90 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0xa0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0xb0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0xc0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0xd0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0xe0 */
    2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, 2, 2, 2, 2, 2, /* 0xf0 */
};

/* Whether the n bytes at a equal the lower-case `lower`, without case. */
static bool ieq(const char *a, size_t n, const char *lower) {
  size_t i = 0;
  for (; i < n && lower[i] != '\0'; i++) {
    unsigned char c = (unsigned char)a[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c + ('a' - 'A'));
    if (c != (unsigned char)lower[i])
      return false;
  }
  return i == n && lower[i] == '\0';
}

static enum http_method method_of(const char *m, size_t n) {
  /* Methods are case-sensitive (RFC 9110 9.1). */
  static const struct {
    const char *name;
    size_t n;
    enum http_method id;
  } known[] = {
      {"GET", 3, HTTP_GET},       {"HEAD", 4, HTTP_HEAD},
      {"POST", 4, HTTP_POST},     {"PUT", 3, HTTP_PUT},
      {"DELETE", 6, HTTP_DELETE}, {"OPTIONS", 7, HTTP_OPTIONS},
      {"PATCH", 5, HTTP_PATCH},   {"TRACE", 5, HTTP_TRACE},
  };
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (known[i].n == n && memcmp(known[i].name, m, n) == 0)
      return known[i].id;
  return 0;
}

/* The next comma-separated element of a list value at *p (< end), OWS
 * trimmed; *p moves past it and its comma. */
static struct http_slice list_next(const char **p, const char *end) {
  const char *s = *p;
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  const char *e = s;
  while (e < end && *e != ',')
    e++;
  *p = e < end ? e + 1 : e;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
    e--;
  return (struct http_slice){s, (size_t)(e - s)};
}

/* What the parse of the head has seen of the framing headers. */
struct seen {
  int content_length; /* how many Content-Length fields */
  int transfer_encoding;
  int host;
  bool close, keep_alive;
};

/* Acts on one header field: 0, or a negative status. */
static int on_field(struct http_request *r, struct seen *s,
                    const struct http_header *h) {
  const char *v = h->value.p, *end = v + h->value.n;
  switch (h->name.n) {
  case 14:
    if (!ieq(h->name.p, 14, "content-length"))
      return 0;
    {
      /* 1*DIGIT, no list, no sign; a second one must say the same. */
      uint64_t n = 0;
      if (v == end)
        return HTTP_BAD_REQUEST;
      for (const char *q = v; q < end; q++) {
        if (*q < '0' || *q > '9' || n > (UINT64_C(1) << 58))
          return HTTP_BAD_REQUEST;
        n = n * 10 + (uint64_t)(*q - '0');
      }
      if (s->content_length++ > 0 && n != r->content_length)
        return HTTP_BAD_REQUEST;
      r->content_length = n;
    }
    return 0;
  case 17:
    if (!ieq(h->name.p, 17, "transfer-encoding"))
      return 0;
    {
      /* chunked, last and once; a coding before it that we do not
       * decode is 501, a list not ending in chunked 400 (RFC 9112 6.3). */
      if (s->transfer_encoding++ > 0)
        return HTTP_BAD_REQUEST;
      int codings = 0;
      bool last_chunked = false, chunked_before = false;
      const char *q = v;
      while (q < end) {
        struct http_slice c = list_next(&q, end);
        if (c.n == 0)
          return HTTP_BAD_REQUEST;
        chunked_before |= last_chunked;
        last_chunked = ieq(c.p, c.n, "chunked");
        codings++;
      }
      if (codings == 0 || !last_chunked || chunked_before)
        return HTTP_BAD_REQUEST;
      if (codings > 1)
        return HTTP_NOT_IMPLEMENTED;
      r->chunked = true;
    }
    return 0;
  case 10:
    if (!ieq(h->name.p, 10, "connection"))
      return 0;
    for (const char *q = v; q < end;) {
      struct http_slice c = list_next(&q, end);
      if (ieq(c.p, c.n, "close"))
        s->close = true;
      else if (ieq(c.p, c.n, "keep-alive"))
        s->keep_alive = true;
    }
    return 0;
  case 4:
    if (ieq(h->name.p, 4, "host") && s->host++ > 0)
      return HTTP_BAD_REQUEST;
    return 0;
  case 6:
    if (ieq(h->name.p, 6, "expect") && ieq(v, h->value.n, "100-continue"))
      r->expect_continue = true;
    return 0;
  default:
    return 0;
  }
}

/* The path of a target: origin-form as is; absolute-form without its
 * scheme and authority ("/" when it has no path); "*" and the rest as is. */
static void split_target(struct http_request *r) {
  const char *t = r->target.p, *end = t + r->target.n;
  const char *p = t;
  if (*t != '/') {
    const char *colon = memchr(t, ':', r->target.n);
    if (colon != NULL && end - colon >= 3 && colon[1] == '/' &&
        colon[2] == '/') {
      p = colon + 3;
      while (p < end && *p != '/' && *p != '?')
        p++;
    }
  }
  const char *q = p;
  while (q < end && *q != '?')
    q++;
  if (p == q && p != t) /* absolute-form without a path */
    r->path = (struct http_slice){"/", 1};
  else
    r->path = (struct http_slice){p, (size_t)(q - p)};
  r->query = q < end ? (struct http_slice){q + 1, (size_t)(end - q - 1)}
                     : (struct http_slice){end, 0};
}

int http_parse_head(const char *buf, size_t len, size_t max_head,
                    struct http_request *r) {
  if (max_head > (1u << 20))
    max_head = 1u << 20;
  const unsigned char *start = (const unsigned char *)buf;
  const unsigned char *p = start;
  const unsigned char *end = start + (len < max_head ? len : max_head);
  /* Out of bytes: 431 when the limit cut them short, else "need more". */
  const int out = len >= max_head ? HTTP_TOO_LARGE : HTTP_NEED_MORE;
  struct seen s = {0, 0, 0, false, false};

  /* RFC 9112 2.2: empty lines before the request line are ignored. */
  for (;;) {
    if (p == end)
      return out;
    if (*p != '\r')
      break;
    if (p + 1 == end)
      return out;
    if (p[1] != '\n')
      return HTTP_BAD_REQUEST;
    p += 2;
  }

  /* method SP request-target SP HTTP-version CRLF */
  const unsigned char *m = p;
  while (p < end && (cls[*p] & C_T))
    p++;
  if (p == end)
    return out;
  if (*p != ' ' || p == m)
    return HTTP_BAD_REQUEST;
  r->method = (struct http_slice){(const char *)m, (size_t)(p - m)};
  r->method_id = method_of(r->method.p, r->method.n);
  if (r->method_id == 0)
    return HTTP_NOT_IMPLEMENTED;
  const unsigned char *t = ++p;
  while (p < end && (cls[*p] & C_U))
    p++;
  if (p == end)
    return out;
  if (*p != ' ' || p == t)
    return HTTP_BAD_REQUEST;
  r->target = (struct http_slice){(const char *)t, (size_t)(p - t)};
  p++;
  static const char proto[] = "HTTP/";
  for (int i = 0; i < 5; i++, p++) {
    if (p == end)
      return out;
    if (*p != (unsigned char)proto[i])
      return HTTP_BAD_REQUEST;
  }
  /* DIGIT "." DIGIT CRLF */
  if (end - p < 5) {
    /* Check what is there before asking for more. */
    static const unsigned char shape[] = {'0', '.', '0', '\r', '\n'};
    for (const unsigned char *q = p; q < end; q++) {
      unsigned char c = *q, want = shape[q - p];
      if (want == '0' ? (c < '0' || c > '9') : c != want)
        return HTTP_BAD_REQUEST;
    }
    return out;
  }
  if (p[0] < '0' || p[0] > '9' || p[1] != '.' || p[2] < '0' || p[2] > '9' ||
      p[3] != '\r' || p[4] != '\n')
    return HTTP_BAD_REQUEST;
  if (p[0] != '1')
    return HTTP_BAD_VERSION;
  r->minor = p[2] == '0' ? 0 : 1;
  p += 5;

  /* *( field-name ":" OWS field-value OWS CRLF ) CRLF */
  r->chunked = false;
  r->expect_continue = false;
  r->content_length = 0;
  r->nheaders = 0;
  for (;;) {
    if (p == end)
      return out;
    if (*p == '\r') {
      if (p + 1 == end)
        return out;
      if (p[1] != '\n')
        return HTTP_BAD_REQUEST;
      p += 2;
      break;
    }
    const unsigned char *n = p;
    while (p < end && (cls[*p] & C_T))
      p++;
    if (p == end)
      return out;
    if (*p != ':' || p == n) /* also SP before the colon, and obs-fold */
      return HTTP_BAD_REQUEST;
    const unsigned char *ne = p++;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    const unsigned char *v = p;
    while (p < end && (cls[*p] & C_V))
      p++;
    if (p == end)
      return out;
    if (*p != '\r')
      return HTTP_BAD_REQUEST;
    if (p + 1 == end)
      return out;
    if (p[1] != '\n')
      return HTTP_BAD_REQUEST;
    const unsigned char *ve = p;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
      ve--;
    p += 2;
    if (r->nheaders == HTTP_MAX_HEADERS)
      return HTTP_TOO_LARGE;
    struct http_header *h = &r->headers[r->nheaders++];
    h->name = (struct http_slice){(const char *)n, (size_t)(ne - n)};
    h->value = (struct http_slice){(const char *)v, (size_t)(ve - v)};
    int rc = on_field(r, &s, h);
    if (rc < 0)
      return rc;
  }

  /* Framing two parties could read two ways (RFC 9112 6.1, 6.3). */
  if (r->chunked && (s.content_length > 0 || r->minor == 0))
    return HTTP_BAD_REQUEST;
  if (r->minor == 1 && s.host != 1)
    return HTTP_BAD_REQUEST;
  r->keep_alive = !s.close && (r->minor == 1 || s.keep_alive);
  split_target(r);
  return (int)(p - start);
}

/* Body states: a countdown, or the chunked grammar (RFC 9112 7.1):
 * chunk-size [ chunk-ext ] CRLF chunk-data CRLF ... 0 CRLF trailers CRLF. */
enum {
  B_DONE,
  B_LENGTH,     /* Content-Length bytes left */
  B_SIZE_FIRST, /* the first hex digit of a chunk-size */
  B_SIZE,       /* more hex digits, ';' or CR */
  B_EXT,        /* a chunk extension, up to CR */
  B_SIZE_LF,    /* LF after the chunk-size line */
  B_DATA,       /* chunk-data bytes left */
  B_DATA_CR,    /* CR after chunk-data */
  B_DATA_LF,
  B_TRAILER,       /* the start of a trailer line, or the final CRLF */
  B_TRAILER_NAME,  /* a trailer field's name, up to ':' */
  B_TRAILER_VALUE, /* its value, up to CR */
  B_TRAILER_LF,
  B_END_LF, /* LF of the final CRLF */
};

enum { MAX_EXT = 4096, MAX_TRAILER = 8192 };

void http_body_init(struct http_body *b, const struct http_request *req) {
  b->count = 0;
  b->left = 0;
  if (req->chunked) {
    b->state = B_SIZE_FIRST;
  } else if (req->content_length > 0) {
    b->state = B_LENGTH;
    b->left = req->content_length;
  } else {
    b->state = B_DONE;
  }
}

bool http_body_done(const struct http_body *b) {
  return b->state == B_DONE;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  return (c | 0x20) - 'a' + 10;
}

long http_body_feed(struct http_body *b, const char *buf, size_t len) {
  const unsigned char *p = (const unsigned char *)buf, *end = p + len;
  while (p < end && b->state != B_DONE) {
    unsigned char c = *p;
    switch (b->state) {
    case B_LENGTH:
    case B_DATA: {
      size_t n = (size_t)(end - p);
      if (n > b->left)
        n = (size_t)b->left;
      p += n;
      b->left -= n;
      if (b->left == 0)
        b->state = b->state == B_LENGTH ? B_DONE : B_DATA_CR;
      continue;
    }
    case B_SIZE_FIRST:
      if (!(cls[c] & C_H))
        return HTTP_BAD_REQUEST;
      b->left = (uint64_t)hexval(c);
      b->state = B_SIZE;
      break;
    case B_SIZE:
      if (cls[c] & C_H) {
        if (b->left >> 58)
          return HTTP_BAD_REQUEST; /* no chunk of 2^62 bytes */
        b->left = b->left << 4 | (uint64_t)hexval(c);
      } else if (c == ';') {
        b->state = B_EXT;
        b->count = 0;
      } else if (c == '\r') {
        b->state = B_SIZE_LF;
      } else {
        return HTTP_BAD_REQUEST; /* also whitespace before ';' */
      }
      break;
    case B_EXT:
      if (c == '\r')
        b->state = B_SIZE_LF;
      else if (!(cls[c] & C_V) || ++b->count > MAX_EXT)
        return HTTP_BAD_REQUEST;
      break;
    case B_SIZE_LF:
      if (c != '\n')
        return HTTP_BAD_REQUEST;
      if (b->left == 0) {
        b->state = B_TRAILER;
        b->count = 0;
      } else {
        b->state = B_DATA;
      }
      break;
    case B_DATA_CR:
      if (c != '\r')
        return HTTP_BAD_REQUEST;
      b->state = B_DATA_LF;
      break;
    case B_DATA_LF:
      if (c != '\n')
        return HTTP_BAD_REQUEST;
      b->state = B_SIZE_FIRST;
      break;
    case B_TRAILER:
      if (c == '\r') {
        b->state = B_END_LF;
        break;
      }
      if (!(cls[c] & C_T))
        return HTTP_BAD_REQUEST;
      b->state = B_TRAILER_NAME;
      if (++b->count > MAX_TRAILER)
        return HTTP_TOO_LARGE;
      break;
    case B_TRAILER_NAME:
    case B_TRAILER_VALUE:
      /* A field line, checked as a header is, then dropped. */
      if (b->state == B_TRAILER_NAME && c == ':')
        b->state = B_TRAILER_VALUE;
      else if (b->state == B_TRAILER_VALUE && c == '\r')
        b->state = B_TRAILER_LF;
      else if (!(cls[c] & (b->state == B_TRAILER_NAME ? C_T : C_V)))
        return HTTP_BAD_REQUEST;
      if (++b->count > MAX_TRAILER)
        return HTTP_TOO_LARGE;
      break;
    case B_TRAILER_LF:
      if (c != '\n')
        return HTTP_BAD_REQUEST;
      b->state = B_TRAILER;
      break;
    case B_END_LF:
      if (c != '\n')
        return HTTP_BAD_REQUEST;
      b->state = B_DONE;
      break;
    default:
      return HTTP_BAD_REQUEST;
    }
    p++;
  }
  return (long)(p - (const unsigned char *)buf);
}

const char *http_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 431:
    return "Request Header Fields Too Large";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  case 505:
    return "HTTP Version Not Supported";
  default:
    return "";
  }
}
