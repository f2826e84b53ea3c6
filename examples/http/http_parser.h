/*
 * http_parser.h - a strict, zero-copy HTTP/1.1 request parser (RFC 9112).
 *
 * Two parts, each usable on bytes as they arrive:
 *   - http_parse_head() reads a request's head (request line and header
 *     fields, up to and including the empty line) from the start of a
 *     buffer. It keeps no state between calls: given more bytes it is
 *     called again on the whole head so far, and says "need more" (0), the
 *     head's length (> 0), or a negative HTTP status (-400, -431, -501,
 *     -505). Every name and value it returns is a slice into the caller's
 *     buffer, valid while that buffer is.
 *   - http_body_feed() consumes the body that the head announced, by
 *     Content-Length or chunked, a piece at a time from any split: it keeps
 *     its state in a small struct and copies nothing, so the bytes after
 *     the body (the next pipelined request) are never taken.
 *
 * Strict means: CRLF line ends only (a bare LF or CR is 400), no whitespace
 * before a field's colon or at the start of a line (no obs-fold), tokens
 * and field values checked byte by byte, a version other than HTTP/1.x is
 * 505, an unknown method 501, and framing that two parties could read two
 * ways is 400: Content-Length with Transfer-Encoding, two Content-Length
 * values that differ, Transfer-Encoding twice, or not ending in chunked,
 * or in an HTTP/1.0 request, a bad chunk size. An HTTP/1.1 request needs
 * exactly one Host. The result for a byte stream does not depend on how it
 * was split: a prefix gives "need more" or the same answer as the whole
 * (fuzz/fuzz_http.c checks it).
 */
#ifndef RX_HTTP_PARSER_H
#define RX_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most header fields one request may carry (more: 431). */
enum { HTTP_MAX_HEADERS = 64 };

/* Results besides a length: "need more", or a negative status to answer. */
enum {
  HTTP_NEED_MORE = 0,
  HTTP_BAD_REQUEST = -400,
  HTTP_TOO_LARGE = -431, /* Request Header Fields Too Large */
  HTTP_NOT_IMPLEMENTED = -501,
  HTTP_BAD_VERSION = -505,
};

enum http_method {
  HTTP_GET = 1,
  HTTP_HEAD,
  HTTP_POST,
  HTTP_PUT,
  HTTP_DELETE,
  HTTP_OPTIONS,
  HTTP_PATCH,
  HTTP_TRACE,
};

/* A run of bytes in the caller's buffer. */
struct http_slice {
  const char *p;
  size_t n;
};

struct http_header {
  struct http_slice name;  /* a token, as sent (compare without case) */
  struct http_slice value; /* without leading and trailing whitespace */
};

struct http_request {
  struct http_slice method; /* as sent */
  struct http_slice target; /* as sent: origin-form, absolute-form or "*" */
  struct http_slice path;   /* target's path: up to '?', without scheme and
                               authority */
  struct http_slice query;  /* after '?' (n 0: none) */
  enum http_method method_id;
  int minor;               /* HTTP/1.minor: 0 or 1 (1.2-1.9 read as 1) */
  bool keep_alive;         /* the connection may serve another request */
  bool chunked;            /* Transfer-Encoding: chunked */
  bool expect_continue;    /* Expect: 100-continue */
  uint64_t content_length; /* 0 when absent (or chunked) */
  size_t nheaders;
  struct http_header headers[HTTP_MAX_HEADERS];
};

/* Parses the head at buf[0..len): its length (> 0, the empty line
 * included; CRLFs before the request line are skipped and counted),
 * HTTP_NEED_MORE, or a negative status. A head that has not ended within
 * `max_head` bytes (at most 1 MiB) is HTTP_TOO_LARGE. `req` is filled on
 * success and undefined otherwise. */
int http_parse_head(const char *buf, size_t len, size_t max_head,
                    struct http_request *req);

/* A body being consumed. */
struct http_body {
  uint64_t left;  /* bytes left of the body or of the current chunk */
  uint32_t state; /* private */
  uint32_t count; /* private: bytes of the current chunk-size or trailer */
};

/* Starts consuming the body `req` announces (none: already done). */
void http_body_init(struct http_body *b, const struct http_request *req);
/* Whether the whole body has been consumed. */
bool http_body_done(const struct http_body *b);
/* Consumes body bytes from buf[0..len): the count taken (<= len; less only
 * when the body ended there), or HTTP_BAD_REQUEST (a malformed chunk) or
 * HTTP_TOO_LARGE (chunk trailers beyond 8 KiB). */
long http_body_feed(struct http_body *b, const char *buf, size_t len);

/* The reason phrase of a status this server sends ("" for others). */
const char *http_reason(int status);

#endif /* RX_HTTP_PARSER_H */
