/*
 * rx/qmp.h - a QMP (QEMU Machine Protocol) client on rx: a unix socket,
 * the greeting, capabilities negotiation, commands answered by id, and
 * QEMU's asynchronous events published to an event bus (rx/bus.h). Library
 * librx-qmp (pkg-config rx-qmp), which links jansson; rx and
 * librx-services never do. docs/qmp.md is the guide.
 *
 * Conventions are rx.h's: 0 on success, a negative errno on failure. A
 * client belongs to the thread that runs its loop. JSON values are
 * jansson's (json_t); the header only names the type.
 */
#ifndef RX_QMP_H
#define RX_QMP_H

#include <stddef.h>
#include <stdint.h>

#include "rx.h"
#include "rx/bus.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RX_QMP_BUILDING) && defined(__GNUC__)
#define RX_QMP_EXPORT __attribute__((visibility("default")))
#else
#define RX_QMP_EXPORT
#endif

struct json_t;
typedef struct rx_qmp rx_qmp;

/* The name of the event published on the bus when a connection that had
 * been made ends, for whatever reason (its payload: {"error": errno,
 * "reason": "..."}), so that no listener waits forever. */
#define RX_QMP_DISCONNECTED "rx.qmp.disconnected"

/* The default limit of one line (one JSON message) the client reads. */
#define RX_QMP_LINE_LIMIT ((size_t)16 << 20)
/* In-band commands sent and not yet answered, at most; more wait in the
 * client, in order. OOB commands do not count. */
#define RX_QMP_MAX_INFLIGHT 8

/* Called once per rx_qmp_connect() that returned 0: 0 when the connection is
 * ready for commands (greeting read, capabilities negotiated), else a negative
 * errno (rx_qmp_error() says what failed): -ETIMEDOUT (the connect timeout
 * passed: no socket, no greeting or no answer to qmp_capabilities), -EPROTO
 * (not a QMP greeting, or negotiation refused), -ECONNRESET (the peer closed),
 * -ECANCELED (rx_qmp_disconnect() or rx_qmp_free()), or the errno of
 * socket() or connect() on a retry. */
typedef void (*rx_qmp_ready_cb)(rx_qmp *q, int status, void *data);

/* A command's answer, exactly once per accepted command:
 *  - status 0: `value` is the answer's "return" value (borrowed; take
 *    json_incref() to keep it);
 *  - status -EREMOTEIO: QEMU answered with an error; `value` is the "error"
 *    object, with "class" (e.g. "CommandNotFound") and "desc";
 *  - another negative errno, `value` NULL: no answer will come: -ECONNRESET
 *    (the peer closed: EOF or ECONNRESET), -EMSGSIZE (a line over the
 *    limit closed the connection), -ECANCELED (rx_qmp_disconnect(),
 *    rx_qmp_free()), -ETIMEDOUT (the command's own timeout passed, or the
 *    connection never became ready), -EPROTO (the connection never became
 *    ready), -ENOMEM. */
typedef void (*rx_qmp_cb)(rx_qmp *q, int status, struct json_t *value,
                          void *data);

struct rx_qmp_options {
  const char *path;        /* the unix socket (copied); NULL: none, for a
                              client that only uses rx_qmp_connect_fd() */
  rx_bus *bus;             /* events are published here; NULL: dropped */
  int64_t connect_timeout; /* ns from rx_qmp_connect() to ready; 0: 5 s */
  int64_t retry_interval;  /* ns between attempts while the socket does not
                              exist or refuses; 0: 10 ms */
  size_t line_limit;       /* longest line read, in bytes; 0: 16 MiB */
  int oob;                 /* nonzero: enable OOB when the server offers it */
  rx_qmp_ready_cb ready;   /* may be NULL */
  void *data;              /* for `ready` and rx_qmp_data() */
};

/* Makes a client on `loop` (not yet connected). -EINVAL (an empty path, a
 * path too long for a unix socket, a negative time), -ENOMEM. */
RX_QMP_EXPORT int rx_qmp_new(rx_qmp **q, rx_loop *loop,
                             const struct rx_qmp_options *opts);
/* Disconnects (every pending command and a pending connect complete with
 * -ECANCELED; a made connection publishes RX_QMP_DISCONNECTED) and frees
 * the client. From inside one of its callbacks, the memory goes when the
 * callback returns; commands of a connection that had already ended and
 * whose callbacks had not yet run complete inside this call with that
 * connection's error: no callback comes after it returns. */
RX_QMP_EXPORT void rx_qmp_free(rx_qmp *q);

/* Starts connecting: the socket is tried every retry interval until it
 * accepts, then the greeting is read and the capabilities negotiated; the
 * ready callback says how it went. Also the one call that reconnects after
 * a disconnect (listeners on the bus are untouched by either). -EISCONN
 * while connecting or connected, -EINVAL, -ESHUTDOWN while being freed, or
 * the errno of a first socket() or connect() that no retry can mend (e.g.
 * -EACCES, -ENOTSOCK; ENOENT and ECONNREFUSED are retried): the ready
 * callback is not called then, and rx_qmp_error() says what failed. */
RX_QMP_EXPORT int rx_qmp_connect(rx_qmp *q);
/* The same from a socket already connected to a QMP server: `fd`, a
 * stream socket (one end of a socketpair() whose other end QEMU got as
 * `-chardev socket,fd=N`, or a socket connected elsewhere), is the client's
 * from a return of 0 on (made non-blocking, closed when the connection
 * ends); the greeting, negotiation and connect timeout are as above. On an
 * error the caller keeps `fd`: -EBADF, -ENOTSOCK, -EPROTOTYPE (not a stream
 * socket), -EISCONN, -ESHUTDOWN. (rx_qmp_connect() on a client made
 * without a path: -EDESTADDRREQ.) */
RX_QMP_EXPORT int rx_qmp_connect_fd(rx_qmp *q, int fd);
/* Closes the connection now (never half-closes it): pending commands
 * complete with -ECANCELED. 0, or -ENOTCONN when there was none. */
RX_QMP_EXPORT int rx_qmp_disconnect(rx_qmp *q);

/* Sends command `cmd` with arguments `args` (a JSON object, borrowed, or
 * NULL); `cb` (may be NULL) gets the answer. Commands given before the
 * connection is ready wait for it. 0; -EINVAL (no name, args not an
 * object), -ENOTCONN (neither connecting nor connected), -ESHUTDOWN,
 * -ENOMEM. */
RX_QMP_EXPORT int rx_qmp_execute(rx_qmp *q, const char *cmd,
                                 struct json_t *args, rx_qmp_cb cb, void *data);
/* The same, with a time limit: when no answer has come `timeout` ns
 * (> 0; 0: none) after the call, `cb` gets -ETIMEDOUT, whether the command
 * was still waiting in the client (then it is never sent) or in flight (its
 * late answer is then dropped and counted unknown in rx_qmp_metrics()); its
 * in-flight slot is free again. -EINVAL for a negative timeout. */
RX_QMP_EXPORT int rx_qmp_execute_timeout(rx_qmp *q, const char *cmd,
                                         struct json_t *args, int64_t timeout,
                                         rx_qmp_cb cb, void *data);
/* The same, passing file descriptor `fd` with the command (SCM_RIGHTS), as
 * QEMU's getfd and add-fd expect: the client sends a duplicate and closes
 * it once sent (or when the command ends unsent); the caller keeps `fd`.
 * -EBADF for a bad fd, or the error of duplicating it. */
RX_QMP_EXPORT int rx_qmp_execute_fd(rx_qmp *q, const char *cmd,
                                    struct json_t *args, int fd, rx_qmp_cb cb,
                                    void *data);
/* The same, out of band ("exec-oob"): sent at once, past the in-band
 * limit. -ENOTSUP unless OOB was negotiated (rx_qmp_oob()). */
RX_QMP_EXPORT int rx_qmp_execute_oob(rx_qmp *q, const char *cmd,
                                     struct json_t *args, rx_qmp_cb cb,
                                     void *data);

enum {
  RX_QMP_IDLE = 0,    /* never connected, or disconnected */
  RX_QMP_CONNECTING,  /* waiting for the socket */
  RX_QMP_GREETING,    /* connected, waiting for the greeting */
  RX_QMP_NEGOTIATING, /* qmp_capabilities sent */
  RX_QMP_READY,       /* commands flow */
};
RX_QMP_EXPORT int rx_qmp_state(const rx_qmp *q);
/* 1 when OOB was negotiated on the current connection. */
RX_QMP_EXPORT int rx_qmp_oob(const rx_qmp *q);
/* The server's greeting (its "QMP" object; borrowed), NULL before one. */
RX_QMP_EXPORT struct json_t *rx_qmp_greeting(const rx_qmp *q);
/* What failed last, in words ("" when nothing has). */
RX_QMP_EXPORT const char *rx_qmp_error(const rx_qmp *q);
RX_QMP_EXPORT void *rx_qmp_data(const rx_qmp *q);

struct rx_qmp_metrics {
  uint64_t sent;        /* commands written (qmp_capabilities included) */
  uint64_t answered;    /* answers matched to their command */
  uint64_t unknown;     /* answers with no id or an id not in flight: dropped */
  uint64_t events;      /* events published */
  uint64_t events_lost; /* events no bus took (none set, or refused) */
  uint64_t bad_lines;   /* lines that were not a JSON object: dropped */
  uint64_t connects;    /* connections made */
  uint64_t timeouts;    /* commands ended by their own timeout */
  size_t inflight;      /* commands sent, not answered (OOB included) */
  size_t queued;        /* commands waiting to be sent */
  size_t longest_line;  /* the longest line read, in bytes */
  size_t buffer;        /* the read buffer's size now */
};
RX_QMP_EXPORT int rx_qmp_metrics(const rx_qmp *q, struct rx_qmp_metrics *m);

#ifdef __cplusplus
}
#endif

#endif /* RX_QMP_H */
