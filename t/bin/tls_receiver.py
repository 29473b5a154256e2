#!/usr/bin/env python3
"""A customer's Event Trigger endpoint over TLS, for mod_eventtrigger's tests
(t/api/tls.t): Python's ssl and http.server only.

Records every request as one JSON line in --log, in t/bin/receiver.py's
format ({"time", "method", "path", "query", "headers", "body", "peer"}),
plus "body_b64" (the exact bytes), "tls_version" and "client_cert" (the
subject of the client's certificate, or null). Every TLS handshake that
fails is recorded as one JSON line in --handshake-log (default: the log
with ".handshakes" appended): {"time", "peer", "error"}; a refused
certificate shows there as the client's alert ("unknown ca", "bad
certificate", "certificate expired", ...).

With --client-ca the receiver requires a client certificate that chains to
that CA (mutual TLS).

Usage: tls_receiver.py --port N --log FILE --cert PEM --key PEM
                       [--client-ca PEM] [--status NNN] [--bind ADDR]
                       [--handshake-log FILE]
"""

import argparse
import base64
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ethttp import read_body, serve


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EtTlsReceiver/1.0"

    def _handle(self):
        body = read_body(self)
        path, _, query = self.path.partition("?")
        cert = self.connection.getpeercert()
        subject = None
        if cert:
            subject = ",".join("%s=%s" % kv for rdn in cert.get("subject", ())
                               for kv in rdn)
        rec = {
            "time": time.time(),
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", errors="replace"),
            "body_b64": base64.b64encode(body).decode("ascii"),
            "peer": "%s:%d" % self.client_address[:2],
            "tls_version": self.connection.version(),
            "client_cert": subject,
        }
        self.server.record(self.server.log_file, rec)
        out = b'{"ok":true}'
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, fmt, *args):
        pass


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx, log_file, hs_file, status):
        self.ctx = ctx
        self.log_file = log_file
        self.hs_file = hs_file
        self.status = status
        self.lock = threading.Lock()
        super().__init__(addr, Handler)

    def record(self, f, rec):
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self.lock:
            f.write(line)
            f.flush()

    def finish_request(self, request, client_address):
        # The handshake runs in the connection's thread, so a client that
        # fails it is recorded and never blocks the others.
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.record(self.hs_file, {
                "time": time.time(),
                "peer": "%s:%d" % client_address[:2],
                "error": getattr(e, "reason", None) or str(e),
                "detail": str(e),
            })
            return
        try:
            Handler(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def shutdown_request(self, request):
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        request.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--log", required=True, help="JSON lines file, appended")
    ap.add_argument("--handshake-log")
    ap.add_argument("--cert", required=True, help="server certificate chain (PEM)")
    ap.add_argument("--key", required=True, help="its private key (PEM)")
    ap.add_argument("--client-ca", help="require a client certificate from this CA")
    ap.add_argument("--status", type=int, default=200)
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)
    log_file = open(args.log, "a", encoding="utf-8")
    hs_file = open(args.handshake_log or args.log + ".handshakes", "a",
                   encoding="utf-8")
    server = TLSServer((args.bind, args.port), ctx, log_file, hs_file,
                       args.status)
    serve(server)


if __name__ == "__main__":
    sys.exit(main())
