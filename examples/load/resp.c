/*
 * resp.c - the HTTP/1.1 response parser of resp.h.
 *
 * Line-based where the protocol is (status line, headers, chunk sizes,
 * trailers) and counted where it is not (bodies). A line that lies whole in
 * the buffer is read in place, found with memchr(); only a line split
 * across two feeds is copied, into r->line, so the common case (a small
 * response in one recv) copies nothing. The parser keeps no pointer into
 * the caller's buffer between feeds.
 */
#include "resp.h"

#include <string.h>

enum {
  S_STATUS,     /* the status line, or nothing yet */
  S_HEADER,     /* header lines until the empty one */
  S_BODY,       /* `remaining` bytes of a Content-Length body */
  S_CHUNK_SIZE, /* a chunk-size line */
  S_CHUNK_DATA, /* `remaining` bytes of a chunk */
  S_CHUNK_END,  /* the CRLF after a chunk's data */
  S_TRAILER,    /* trailer lines until the empty one */
  S_UNTIL_EOF,  /* a body that runs to the close */
  S_ERROR,
};

static void next_response(struct resp *r) {
  r->state = S_STATUS;
  r->chunked = r->te = r->has_length = r->close = r->http10 = false;
  r->keep_alive_hdr = false;
  r->remaining = 0;
  r->head_bytes = 0;
  r->line_len = 0;
}

void resp_init(struct resp *r) {
  r->status = 0;
  r->keep_alive = false;
  next_response(r);
}

bool resp_busy(const struct resp *r) {
  return r->state != S_STATUS || r->line_len != 0;
}

const char *resp_error(int code) {
  switch (code) {
  case RESP_EBADLINE:
    return "malformed header line";
  case RESP_ESTATUS:
    return "malformed status line";
  case RESP_ETOOLONG:
    return "header line or headers too long";
  case RESP_ELENGTH:
    return "bad Content-Length";
  case RESP_ECHUNK:
    return "bad chunk framing";
  case RESP_ETRUNCATED:
    return "connection closed inside a response";
  default:
    return "no error";
  }
}

static int fail(struct resp *r, int code) {
  r->state = S_ERROR;
  r->remaining = (uint64_t)-code; /* kept for a later feed */
  return code;
}

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Whether s[0..n) is `word`, ignoring ASCII case. */
static bool caseeq(const char *s, size_t n, const char *word) {
  size_t i = 0;
  for (; i < n && word[i] != '\0'; i++)
    if (lower((unsigned char)s[i]) != word[i])
      return false;
  return i == n && word[i] == '\0';
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z'))
    return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values and reasons: HTAB, SP, VCHAR, obs-text; no other controls. */
static bool is_vchar(unsigned char c) {
  return c == '\t' || (c >= ' ' && c != 0x7f);
}

static int parse_status(struct resp *r, const char *s, size_t n) {
  /* "HTTP/1.1 200 OK": 12 bytes at least, the reason may be empty. */
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
      s[8] != ' ')
    return RESP_ESTATUS;
  int status = 0;
  for (int i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9')
      return RESP_ESTATUS;
    status = status * 10 + (s[i] - '0');
  }
  if (status < 100 || (n > 12 && s[12] != ' '))
    return RESP_ESTATUS;
  for (size_t i = 13; i < n; i++)
    if (!is_vchar((unsigned char)s[i]))
      return RESP_ESTATUS;
  r->status = status;
  r->http10 = s[7] == '0';
  return 0;
}

/* Each comma-separated token of a Connection value. */
static void parse_connection(struct resp *r, const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t start = i;
    while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
      i++;
    if (caseeq(v + start, i - start, "close"))
      r->close = true;
    else if (caseeq(v + start, i - start, "keep-alive"))
      r->keep_alive_hdr = true;
  }
}

/* A header line; a trailer line (trailer true) is only checked. */
static int parse_header(struct resp *r, const char *s, size_t n, bool trailer) {
  size_t colon = 0;
  while (colon < n && is_tchar((unsigned char)s[colon]))
    colon++;
  if (colon == 0 || colon == n || s[colon] != ':')
    return RESP_EBADLINE; /* also a leading SP: obs-fold */
  const char *v = s + colon + 1;
  size_t vn = n - colon - 1;
  for (size_t i = 0; i < vn; i++)
    if (!is_vchar((unsigned char)v[i]))
      return RESP_EBADLINE;
  while (vn > 0 && (v[0] == ' ' || v[0] == '\t'))
    v++, vn--;
  while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
    vn--;
  if (trailer)
    return 0;
  if (caseeq(s, colon, "content-length")) {
    if (vn == 0 || vn > 18)
      return RESP_ELENGTH;
    uint64_t len = 0;
    for (size_t i = 0; i < vn; i++) {
      if (v[i] < '0' || v[i] > '9')
        return RESP_ELENGTH;
      len = len * 10 + (uint64_t)(v[i] - '0');
    }
    if (r->has_length && len != r->remaining)
      return RESP_ELENGTH;
    r->has_length = true;
    r->remaining = len;
  } else if (caseeq(s, colon, "transfer-encoding")) {
    /* The last coding decides: chunked, or the body runs to the close. */
    size_t last = vn;
    while (last > 0 && v[last - 1] != ',' && v[last - 1] != ' ')
      last--;
    r->te = true;
    r->chunked = caseeq(v + last, vn - last, "chunked");
  } else if (caseeq(s, colon, "connection")) {
    parse_connection(r, v, vn);
  }
  return 0;
}

/* The empty line after the headers: how the body is framed. Returns
 * RESP_DONE for a response without a body, else 0. */
static int end_of_headers(struct resp *r) {
  if (r->status == 101)
    return RESP_ESTATUS;
  if (r->te && r->has_length)
    return RESP_ELENGTH;
  r->keep_alive = !r->close && (!r->http10 || r->keep_alive_hdr);
  if (r->status < 200) { /* 1xx: no body, and not the response */
    next_response(r);
    return 0;
  }
  if (r->status == 204 || r->status == 304) {
    r->state = S_STATUS;
    return RESP_DONE;
  }
  if (r->chunked) {
    r->state = S_CHUNK_SIZE;
  } else if (r->te || !r->has_length) {
    r->state = S_UNTIL_EOF;
    r->keep_alive = false;
  } else if (r->remaining == 0) {
    r->state = S_STATUS;
    return RESP_DONE;
  } else {
    r->state = S_BODY;
  }
  return 0;
}

static int parse_chunk_size(struct resp *r, const char *s, size_t n) {
  size_t i = 0;
  uint64_t size = 0;
  for (; i < n; i++) {
    int c = lower((unsigned char)s[i]), d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      break;
    if (i >= 15)
      return RESP_ECHUNK; /* 2^60 bytes is no chunk */
    size = size * 16 + (uint64_t)d;
  }
  if (i == 0)
    return RESP_ECHUNK;
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  if (i < n && s[i] != ';') /* a chunk extension, ignored */
    return RESP_ECHUNK;
  for (; i < n; i++)
    if (!is_vchar((unsigned char)s[i]))
      return RESP_ECHUNK;
  r->remaining = size;
  r->state = size == 0 ? S_TRAILER : S_CHUNK_DATA;
  return 0;
}

/* One whole line s[0..n), CRLF removed, in the current state. */
static int on_line(struct resp *r, const char *s, size_t n) {
  int rc;
  switch (r->state) {
  case S_STATUS:
    if ((rc = parse_status(r, s, n)) < 0)
      return rc;
    r->state = S_HEADER;
    return 0;
  case S_HEADER:
    return n == 0 ? end_of_headers(r) : parse_header(r, s, n, false);
  case S_CHUNK_SIZE:
    return parse_chunk_size(r, s, n);
  case S_CHUNK_END:
    if (n != 0)
      return RESP_ECHUNK;
    r->state = S_CHUNK_SIZE;
    return 0;
  case S_TRAILER:
    if (n == 0) {
      r->state = S_STATUS;
      return RESP_DONE;
    }
    return parse_header(r, s, n, true);
  default:
    return RESP_EBADLINE;
  }
}

int resp_feed(struct resp *r, const char *buf, size_t len, size_t *used) {
  size_t i = 0;
  while (i < len) {
    switch (r->state) {
    case S_ERROR:
      *used = i;
      return -(int)r->remaining;
    case S_BODY:
    case S_CHUNK_DATA: {
      size_t take = len - i;
      if (take > r->remaining)
        take = (size_t)r->remaining;
      i += take;
      r->remaining -= take;
      if (r->remaining == 0) {
        if (r->state == S_BODY) {
          next_response(r);
          *used = i;
          return RESP_DONE;
        }
        r->state = S_CHUNK_END;
      }
      continue;
    }
    case S_UNTIL_EOF:
      i = len;
      continue;
    default:
      break; /* a line */
    }
    const char *nl = memchr(buf + i, '\n', len - i);
    size_t avail = nl != NULL ? (size_t)(nl - (buf + i)) + 1 : len - i;
    if (r->state == S_STATUS || r->state == S_HEADER || r->state == S_TRAILER) {
      r->head_bytes +=
          (uint32_t)(avail < RESP_HEAD_MAX ? avail : RESP_HEAD_MAX);
      if (r->head_bytes > RESP_HEAD_MAX)
        return *used = i, fail(r, RESP_ETOOLONG);
    }
    if (r->line_len + avail > RESP_LINE_MAX + 2) /* + CRLF */
      return *used = i, fail(r, RESP_ETOOLONG);
    if (nl == NULL) { /* the line goes on in the next feed */
      memcpy(r->line + r->line_len, buf + i, avail);
      r->line_len += (uint32_t)avail;
      i = len;
      break;
    }
    const char *s = buf + i;
    size_t n = avail - 1;
    if (r->line_len != 0) {
      memcpy(r->line + r->line_len, buf + i, avail);
      s = r->line;
      n = r->line_len + avail - 1;
      r->line_len = 0;
    }
    i += avail;
    if (n == 0 || s[n - 1] != '\r') /* a bare LF */
      return *used = i, fail(r, RESP_EBADLINE);
    int rc = on_line(r, s, n - 1);
    if (rc < 0)
      return *used = i, fail(r, rc);
    if (rc == RESP_DONE) {
      next_response(r);
      *used = i;
      return RESP_DONE;
    }
  }
  *used = i;
  return RESP_MORE;
}

int resp_eof(struct resp *r) {
  if (r->state == S_UNTIL_EOF) {
    next_response(r);
    return RESP_DONE;
  }
  if (r->state == S_ERROR)
    return -(int)r->remaining;
  return resp_busy(r) ? RESP_ETRUNCATED : RESP_MORE;
}
