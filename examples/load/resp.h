/*
 * resp.h - rx-load's HTTP/1.1 response parser: strict, incremental, no
 * allocation.
 *
 * Bytes go in as they arrive, split anywhere; resp_feed() stops at the end
 * of each complete response, so the caller counts it and goes on with the
 * rest of the same buffer (pipelined responses). What it accepts
 * (RFC 9112): a status line "HTTP/1.x NNN reason" ending in CRLF, header
 * lines "name: value" (a token, a colon at once, no obs-fold, no control
 * characters), then a body framed by Transfer-Encoding: chunked (chunk
 * extensions and trailers are read and ignored), by Content-Length, by
 * nothing for 1xx, 204 and 304, or by the close of the connection. 1xx
 * responses (100 Continue, 103 Early Hints) are skipped: they are not a
 * response to count. Everything else is an error: a bare LF, a header line
 * over RESP_LINE_MAX or headers over RESP_HEAD_MAX, a Content-Length that is
 * not a number or two that differ, both framings at once, 101 (no protocol
 * switch is asked for).
 */
#ifndef RX_LOAD_RESP_H
#define RX_LOAD_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESP_LINE_MAX 8192  /* one header line, or a chunk-size line */
#define RESP_HEAD_MAX 65536 /* status line and headers together */

enum {
  RESP_MORE = 0, /* every byte taken: the response goes on */
  RESP_DONE = 1, /* a response ended: read status and keep_alive */
  /* errors: < 0 */
  RESP_EBADLINE = -1,   /* bare LF, control character, no colon... */
  RESP_ESTATUS = -2,    /* not an HTTP/1.x status line */
  RESP_ETOOLONG = -3,   /* a line or the headers too long */
  RESP_ELENGTH = -4,    /* bad or conflicting Content-Length */
  RESP_ECHUNK = -5,     /* bad chunk size or chunk end */
  RESP_ETRUNCATED = -6, /* the connection ended inside a response */
};

struct resp {
  /* The response that just ended (after RESP_DONE). */
  int status;
  bool keep_alive; /* the connection may carry the next response */
  /* Private. */
  uint8_t state;
  bool chunked, te, has_length, close, http10, keep_alive_hdr;
  uint64_t remaining; /* body or chunk bytes still to come */
  uint32_t head_bytes;
  uint32_t line_len; /* bytes of a line split across feeds */
  char line[RESP_LINE_MAX + 2];
};

/* Ready for the first response of a connection. */
void resp_init(struct resp *r);
/* Takes bytes from buf[0..len): returns RESP_DONE when a response ended
 * (*used: the bytes it took, the next response starts at buf + *used),
 * RESP_MORE when it took all of them, or an error (RESP_E*). After an
 * error the parser stays in it until resp_init(). */
int resp_feed(struct resp *r, const char *buf, size_t len, size_t *used);
/* The connection ended: RESP_DONE if that ended a response whose body ran
 * to the close, RESP_MORE if no response had begun, else
 * RESP_ETRUNCATED. */
int resp_eof(struct resp *r);
/* Whether a response has begun and not ended. */
bool resp_busy(const struct resp *r);
/* A short description of an error code. */
const char *resp_error(int code);

#endif /* RX_LOAD_RESP_H */
