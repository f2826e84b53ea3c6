#!/usr/bin/env python3
"""trickle.py - an HTTP/1.1 server for rx-load's tests that writes each
response with a send of its own, 1 ms apart, as nginx writes pipelined
responses one by one: a client then sees them arrive one at a time.
Listens on 127.0.0.1, a port the kernel picks, printed as
"trickle: listening on 127.0.0.1:PORT"; runs until killed."""

import socket
import socketserver
import sys
import time

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 13\r\n\r\nHello, World!")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            pending += data
            while b"\r\n\r\n" in pending:  # requests without bodies
                _, pending = pending.split(b"\r\n\r\n", 1)
                sock.sendall(RESPONSE)
                time.sleep(0.001)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


with Server(("127.0.0.1", 0), Handler) as server:
    print("trickle: listening on 127.0.0.1:%d" % server.server_address[1],
          file=sys.stderr, flush=True)
    server.serve_forever()
