/*
 * test-http-parser.c - examples/http/http_parser.c: the request head, the
 * framing rules and the body decoder, each answer pinned, and for every
 * valid input, every prefix "need more".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http_parser.h"

/* http_parse_head() on a string. */
static int head(const char *s, struct http_request *r) {
  return http_parse_head(s, strlen(s), 8192, r);
}

/* The head of `s` parses to its whole length, and each prefix is "need
 * more". */
static void assert_head_ok(const char *s, struct http_request *r) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(http_parse_head(s, i, 8192, r), HTTP_NEED_MORE);
  assert_int_equal(http_parse_head(s, n, 8192, r), (int)n);
}

static bool slice_is(struct http_slice s, const char *want) {
  return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static void test_get(void **state) {
  (void)state;
  struct http_request r;
  const char *s = "GET /plaintext HTTP/1.1\r\nHost: x\r\n"
                  "Accept: text/plain , */* \r\n\r\n";
  assert_head_ok(s, &r);
  assert_int_equal(r.method_id, HTTP_GET);
  assert_true(slice_is(r.method, "GET"));
  assert_true(slice_is(r.target, "/plaintext"));
  assert_true(slice_is(r.path, "/plaintext"));
  assert_int_equal(r.query.n, 0);
  assert_int_equal(r.minor, 1);
  assert_true(r.keep_alive);
  assert_false(r.chunked);
  assert_int_equal(r.content_length, 0);
  assert_int_equal(r.nheaders, 2);
  assert_true(slice_is(r.headers[0].name, "Host"));
  assert_true(slice_is(r.headers[0].value, "x"));
  assert_true(slice_is(r.headers[1].value, "text/plain , */*"));
  /* Zero-copy: the slices point into the input. */
  assert_ptr_equal(r.target.p, s + 4);
}

static void test_pipelined_and_leading_crlf(void **state) {
  (void)state;
  struct http_request r;
  const char *s = "\r\n\r\nHEAD /delay?ms=5 HTTP/1.1\r\nHost: x\r\n\r\nGET /";
  int n = head(s, &r);
  assert_int_equal(n, (int)(strlen(s) - 5)); /* the next request is left */
  assert_int_equal(r.method_id, HTTP_HEAD);
  assert_true(slice_is(r.path, "/delay"));
  assert_true(slice_is(r.query, "ms=5"));
}

static void test_version_and_connection(void **state) {
  (void)state;
  struct http_request r;
  assert_true(head("GET / HTTP/1.0\r\n\r\n", &r) > 0);
  assert_int_equal(r.minor, 0);
  assert_false(r.keep_alive); /* no Host needed in 1.0 */
  assert_true(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r) > 0);
  assert_true(r.keep_alive);
  assert_true(
      head("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", &r) >
      0);
  assert_false(r.keep_alive);
  assert_true(
      head("GET / HTTP/1.1\r\nHost: a\r\nconnection: upgrade\r\n\r\n", &r) > 0);
  assert_true(r.keep_alive);
  assert_int_equal(head("GET / HTTP/2.0\r\n\r\n", &r), HTTP_BAD_VERSION);
  assert_int_equal(head("GET / HTTP/0.9\r\n\r\n", &r), HTTP_BAD_VERSION);
  assert_int_equal(head("GET / HTTP/1.x\r\n\r\n", &r), HTTP_BAD_REQUEST);
  assert_int_equal(head("GET / HTTP/11\r\n\r\n", &r), HTTP_BAD_REQUEST);
  assert_int_equal(head("GET / http/1.1\r\n\r\n", &r), HTTP_BAD_REQUEST);
  /* A bad byte is an error before the head is complete. */
  assert_int_equal(head("GET / HTTP/1.", &r), HTTP_NEED_MORE);
  assert_int_equal(head("GET / HTTP/1.1\n", &r), HTTP_BAD_REQUEST);
  assert_int_equal(head("GET / HTTX", &r), HTTP_BAD_REQUEST);
}

static void test_absolute_form(void **state) {
  (void)state;
  struct http_request r;
  assert_true(head("GET http://h:1/json?a HTTP/1.1\r\nHost: h\r\n\r\n", &r) >
              0);
  assert_true(slice_is(r.path, "/json"));
  assert_true(slice_is(r.query, "a"));
  assert_true(head("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", &r) > 0);
  assert_true(slice_is(r.path, "/"));
  assert_true(head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &r) > 0);
  assert_true(slice_is(r.path, "*"));
}

static void test_malformed(void **state) {
  (void)state;
  struct http_request r;
  static const char *bad[] = {
      "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",            /* two spaces */
      " GET / HTTP/1.1\r\nHost: a\r\n\r\n",            /* leading space */
      "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",         /* CTL in target */
      "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",          /* space in target */
      "GET / HTTP/1.1\nHost: a\n\n",                   /* bare LF */
      "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",           /* bare CR */
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",            /* space before colon */
      "GET / HTTP/1.1\r\n Host: a\r\n\r\n",            /* leading whitespace */
      "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  /* obs-fold */
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", /* DEL in a value */
      "GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",  /* NUL in a value */
      "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n",      /* empty name */
      "GET / HTTP/1.1\r\nHost: a\r\nX(: a\r\n\r\n",    /* separator in name */
      "GET / HTTP/1.1\r\n\r\n",                        /* no Host */
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  /* two Hosts */
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
      "Transfer-Encoding: chunked\r\n\r\n", /* CL and TE */
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
      "Content-Length: 2\r\n\r\n", /* CLs differ */
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", /* list */
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n"
      "\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n"
      "\r\n",
      "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
      "\r\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    /* Some of them hold a NUL: the length is up to the final CRLFCRLF. */
    size_t n = strlen(bad[i]);
    if (i == 10)
      n = sizeof("GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n") - 1;
    int rc = http_parse_head(bad[i], n, 8192, &r);
    if (rc != HTTP_BAD_REQUEST)
      fail_msg("case %zu: %d, not 400", i, rc);
  }
  /* A duplicate Content-Length with the same value is one. */
  assert_true(head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                   "content-length: 3\r\n\r\n",
                   &r) > 0);
  assert_int_equal(r.content_length, 3);
}

static void test_not_implemented(void **state) {
  (void)state;
  struct http_request r;
  assert_int_equal(head("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", &r),
                   HTTP_NOT_IMPLEMENTED);
  assert_int_equal(head("get / HTTP/1.1\r\nHost: a\r\n\r\n", &r),
                   HTTP_NOT_IMPLEMENTED);
  assert_int_equal(
      head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n"
           "\r\n",
           &r),
      HTTP_NOT_IMPLEMENTED);
}

static void test_too_large(void **state) {
  (void)state;
  struct http_request r;
  char big[9000];
  int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
  memset(big + n, 'a', sizeof(big) - (size_t)n);
  /* Without an end within 8192 bytes: 431, as soon as 8192 are in. */
  assert_int_equal(http_parse_head(big, 8191, 8192, &r), HTTP_NEED_MORE);
  assert_int_equal(http_parse_head(big, 8192, 8192, &r), HTTP_TOO_LARGE);
  assert_int_equal(http_parse_head(big, sizeof(big), 8192, &r), HTTP_TOO_LARGE);
  /* 65 fields: too many. */
  char many[4096];
  size_t len = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 65; i++)
    len += (size_t)snprintf(many + len, sizeof(many) - len, "H%d: v\r\n", i);
  len += (size_t)snprintf(many + len, sizeof(many) - len, "\r\n");
  assert_int_equal(http_parse_head(many, len, 8192, &r), HTTP_TOO_LARGE);
}

/* Feeds `body` to a decoder one split at a time: the bytes it took. */
static long feed_split(const struct http_request *r, const char *body,
                       size_t len, size_t step, bool *done) {
  struct http_body b;
  http_body_init(&b, r);
  size_t off = 0;
  while (off < len && !http_body_done(&b)) {
    size_t n = len - off < step ? len - off : step;
    long rc = http_body_feed(&b, body + off, n);
    if (rc < 0)
      return rc;
    off += (size_t)rc;
  }
  *done = http_body_done(&b);
  return (long)off;
}

static void test_body_length(void **state) {
  (void)state;
  struct http_request r;
  assert_true(
      head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", &r) > 0);
  const char *rest = "helloGET / HTTP/1.1\r\n";
  for (size_t step = 1; step <= 8; step++) {
    bool done;
    assert_int_equal(feed_split(&r, rest, strlen(rest), step, &done), 5);
    assert_true(done);
  }
}

static void test_body_chunked(void **state) {
  (void)state;
  struct http_request r;
  assert_true(head("POST / HTTP/1.1\r\nHost: a\r\n"
                   "Transfer-Encoding: Chunked\r\n\r\n",
                   &r) > 0);
  assert_true(r.chunked);
  const char *body = "5;ext=\"a b\"\r\nhello\r\n1A\r\n"
                     "abcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
  char buf[256];
  snprintf(buf, sizeof(buf), "%sGET /next", body);
  for (size_t step = 1; step <= strlen(buf); step++) {
    bool done;
    assert_int_equal(feed_split(&r, buf, strlen(buf), step, &done),
                     (long)strlen(body));
    assert_true(done);
  }
  static const char *bad[] = {
      "x\r\n",                    /* not hex */
      "5 \r\nhello\r\n0\r\n\r\n", /* whitespace after the size */
      "\r\n",                     /* no size */
      "5\nhello\r\n",             /* bare LF */
      "5\r\nhelloX\r\n",          /* no CRLF after the data */
      "fffffffffffffffff\r\n",    /* too large */
      "0\r\nbad trailer\r\n\r\n",
      "1;\x01\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    bool done;
    long rc = feed_split(&r, bad[i], strlen(bad[i]), 1, &done);
    if (rc != HTTP_BAD_REQUEST)
      fail_msg("chunked case %zu: %ld, not 400", i, rc);
  }
}

static void test_no_body(void **state) {
  (void)state;
  struct http_request r;
  struct http_body b;
  assert_true(head("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &r) > 0);
  http_body_init(&b, &r);
  assert_true(http_body_done(&b));
  assert_int_equal(http_body_feed(&b, "GET", 3), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get),
      cmocka_unit_test(test_pipelined_and_leading_crlf),
      cmocka_unit_test(test_version_and_connection),
      cmocka_unit_test(test_absolute_form),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_not_implemented),
      cmocka_unit_test(test_too_large),
      cmocka_unit_test(test_body_length),
      cmocka_unit_test(test_body_chunked),
      cmocka_unit_test(test_no_body),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
