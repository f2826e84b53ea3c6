/*
 * http_server.h - the HTTP/1.1 server core of rx-http, on rx's completion
 * ops: one loop per thread, each with its own SO_REUSEPORT listening
 * socket, multishot accept, multishot recv into a buffer pool, and one send
 * per read carrying every response of the requests that read completed, in
 * request order. Routes for benchmarks: /plaintext, /json, /delay?ms=N;
 * 404 for the rest. docs/guide.md, "An HTTP server on rx", tells the whole
 * story.
 *
 * Lifecycle: http_server_start() binds and starts the threads and returns
 * once every loop listens; http_server_stop() (any thread, also more than
 * once) asks each loop to drain: stop accepting, finish the responses of
 * requests already read, close; http_server_wait() joins the threads and
 * frees the server.
 */
#ifndef RX_HTTP_SERVER_H
#define RX_HTTP_SERVER_H

#include <stdint.h>

struct http_server_config {
  const char *bind;       /* an IPv4 or IPv6 address; NULL: 127.0.0.1 */
  unsigned port;          /* 0: a free port (http_server_port() says which) */
  unsigned threads;       /* loops, one per thread; 0: one */
  unsigned max_conns;     /* connections at once, all threads; 0: no limit */
  int64_t header_timeout; /* ns from a request's first byte to its last
                             header; 0: the default, 10 s */
  int64_t idle_timeout;   /* ns a keep-alive connection may wait for its
                             next request; 0: the default, 60 s */
  int64_t collect;        /* ns each loop naps before a wait
                             (rx_set_io_collect_interval()); 0: none */
  const char *backend;    /* NULL: $RX_BACKEND, else io_uring or epoll */
};

struct http_server;

/* Binds, starts the loops and waits until each listens: 0, or a negative
 * errno (nothing left running); *what then names the step that failed. */
int http_server_start(struct http_server **srv,
                      const struct http_server_config *cfg, const char **what);
/* The port the server listens on. */
unsigned http_server_port(const struct http_server *srv);
/* The backend of the loops ("io_uring" or "epoll"). */
const char *http_server_backend(const struct http_server *srv);
/* Asks every loop to drain; thread-safe, but not from a signal handler. */
void http_server_stop(struct http_server *srv);
/* Joins the threads and frees the server: 0, or the first loop's error. */
int http_server_wait(struct http_server *srv);

#endif /* RX_HTTP_SERVER_H */
