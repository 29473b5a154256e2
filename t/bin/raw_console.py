#!/usr/bin/env python3
"""A console that breaks its answers, for t/api/bad_input.t: what a backend
that crashes or is cut off mid-answer looks like to httpd (mod_proxy).

Every request is answered from the request itself: the request body is the
start of the answer's body, and a header says how the answer breaks:

  X-Raw-Declare: N      Content-Length: N, but only the request body is sent
                        (N is larger), then the connection is closed
  X-Raw-Chunked: cut    Transfer-Encoding: chunked, the request body as one
                        chunk, then the connection is closed without the
                        last (empty) chunk
  X-Raw-Status: NNN     the status (default 201)

Usage: raw_console.py --port N [--bind 127.0.0.1]
"""

import argparse
import socket
import socketserver
import sys
from ethttp import serve


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(65536)
        if not line:
            return
        headers = {}
        while True:
            h = self.rfile.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        n = int(headers.get("content-length") or 0)
        if n:
            body = self.rfile.read(n)
        status = int(headers.get("x-raw-status") or 201)
        head = "HTTP/1.1 %d Broken\r\nContent-Type: application/json\r\n" % status
        if headers.get("x-raw-chunked") == "cut":
            head += "Transfer-Encoding: chunked\r\n\r\n"
            out = head.encode() + b"%x\r\n" % len(body) + body + b"\r\n"
        else:
            declared = int(headers.get("x-raw-declare") or len(body))
            head += "Content-Length: %d\r\n\r\n" % declared
            out = head.encode() + body
        self.wfile.write(out)
        self.wfile.flush()
        # close at once: no keep-alive, no rest of the body
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    args = ap.parse_args()
    server = Server((args.bind, args.port), Handler)
    serve(server)


if __name__ == "__main__":
    sys.exit(main())
