/*
 * test-resp.c - examples/load/resp.c, rx-load's HTTP/1.1 response parser.
 *
 * A stream of pipelined responses in every framing (Content-Length,
 * chunked with extensions and trailers, 204, 304, a 100 Continue before
 * its response, Connection: close, HTTP/1.0) is fed whole, split at every
 * byte boundary, and one byte at a time: each way gives the same
 * responses, statuses and keep-alive flags. Then each malformed response
 * must give its error, and a body that runs to the close ends at EOF.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "resp.h"

static const char stream[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
    "HTTP/1.1 100 Continue\r\n\r\n"
    "HTTP/1.1 201 Created\r\ncontent-length:  3 \r\n\r\nabc"
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    "5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n"
    "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
    "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nz"
    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    "HTTP/1.1 200 OK\r\nConnection: Upgrade, close\r\nContent-Length: 2\r\n"
    "\r\nby";
static const int want_status[] = {200, 201, 200, 204, 304, 404, 200, 200, 200};
static const int want_keep[] = {1, 1, 1, 1, 1, 1, 1, 1, 0};
#define NWANT 9

/* Feeds stream[0..len) in pieces of `step` bytes (0: whole), after a first
 * piece of `first` bytes; returns the responses seen. */
static int run(size_t len, size_t first, size_t step) {
  struct resp r;
  resp_init(&r);
  int n = 0;
  size_t at = 0;
  while (at < len) {
    size_t piece = at == 0 && first != 0 ? first : step != 0 ? step : len;
    if (piece > len - at)
      piece = len - at;
    const char *p = stream + at;
    size_t left = piece;
    while (left > 0) {
      size_t used;
      int rc = resp_feed(&r, p, left, &used);
      CHECK(rc >= 0, "split %zu/%zu at %zu: %s", first, step, at,
            resp_error(rc));
      if (rc < 0)
        return -1;
      p += used;
      left -= used;
      if (rc == RESP_DONE) {
        CHECK(n < NWANT, "too many responses");
        if (n < NWANT) {
          CHECK(r.status == want_status[n], "response %d: status %d", n,
                r.status);
          CHECK(r.keep_alive == want_keep[n], "response %d: keep-alive %d", n,
                r.keep_alive);
        }
        n++;
      }
    }
    at += piece;
  }
  CHECK(!resp_busy(&r), "busy at the end");
  CHECK(resp_eof(&r) == RESP_MORE, "eof between responses");
  return n;
}

static int one(const char *text, bool eof) {
  struct resp r;
  resp_init(&r);
  size_t used;
  int rc = resp_feed(&r, text, strlen(text), &used);
  if (rc == RESP_MORE && eof)
    rc = resp_eof(&r);
  return rc;
}

int main(void) {
  size_t len = strlen(stream);
  CHECK(run(len, 0, 0) == NWANT, "whole");
  CHECK(run(len, 0, 1) == NWANT, "byte by byte");
  for (size_t first = 1; first < len; first++)
    if (run(len, first, 0) != NWANT)
      break;
  for (size_t step = 2; step < 64; step++)
    if (run(len, 0, step) != NWANT)
      break;

  static const struct {
    const char *text;
    int rc;
    bool eof;
  } bad[] = {
      {"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", RESP_EBADLINE, false},
      {"HTTP/2 200 OK\r\n\r\n", RESP_ESTATUS, false},
      {"HTTP/1.1 20 OK\r\n\r\n", RESP_ESTATUS, false},
      {"HTTP/1.1 200OK\r\n\r\n", RESP_ESTATUS, false},
      {"http/1.1 200 OK\r\n\r\n", RESP_ESTATUS, false},
      {"\r\nHTTP/1.1 200 OK\r\n\r\n", RESP_ESTATUS, false},
      {"HTTP/1.1 101 Switching\r\n\r\n", RESP_ESTATUS, false},
      {"HTTP/1.1 200 OK\r\nNo Colon\r\n\r\n", RESP_EBADLINE, false},
      {"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", RESP_EBADLINE, false},
      {"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", RESP_EBADLINE, false},
      {"HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n", RESP_EBADLINE, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", RESP_ELENGTH, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", RESP_ELENGTH, false},
      {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", RESP_ELENGTH, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       RESP_ELENGTH, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: "
       "chunked\r\n\r\n",
       RESP_ELENGTH, false},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       RESP_ECHUNK, false},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
       RESP_ECHUNK, false},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
       "fffffffffffffffff\r\n",
       RESP_ECHUNK, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", RESP_ETRUNCATED, true},
      {"HTTP/1.1 200 OK\r\nContent-Le", RESP_ETRUNCATED, true},
      {"HTTP/1.1 200 OK\r\n\r\nuntil the close", RESP_DONE, true},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = one(bad[i].text, bad[i].eof);
    CHECK(rc == bad[i].rc, "case %zu: %d (%s), want %d", i, rc, resp_error(rc),
          bad[i].rc);
  }

  /* A header line over RESP_LINE_MAX, fed in two pieces. */
  static char big[RESP_LINE_MAX + 64];
  struct resp r;
  resp_init(&r);
  size_t used;
  strcpy(big, "HTTP/1.1 200 OK\r\nX: ");
  memset(big + strlen(big), 'a', RESP_LINE_MAX);
  int rc = resp_feed(&r, big, RESP_LINE_MAX / 2, &used);
  CHECK(rc == RESP_MORE, "first half: %d", rc);
  rc = resp_feed(&r, big + RESP_LINE_MAX / 2, strlen(big) - RESP_LINE_MAX / 2,
                 &used);
  CHECK(rc == RESP_ETOOLONG, "long line: %d", rc);
  CHECK(resp_feed(&r, "x", 1, &used) == RESP_ETOOLONG, "error sticks");

  if (failures == 0)
    printf("test-resp: every split, %zu malformed responses\n",
           sizeof(bad) / sizeof(bad[0]));
  return failures != 0;
}
