#!/usr/bin/env python3
"""bench/arrival.py PORT LOG: a receiver for figure 3 that answers 200 to
every call and logs "SECONDS METHOD URI STATUS" per call, SECONDS with
microseconds (time.time() when the request's head had been read). nginx's
$msec has 1 ms resolution, too coarse for latencies well under 1 ms.
Python's own parsing (about 0.1 ms) counts against the module, never
for it. Stops on SIGTERM."""
import http.server
import signal
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive, as libcurl uses it

    def handle_one_request(self):
        # time the arrival before the handler runs (the head is parsed)
        self._t = None
        super().handle_one_request()

    def parse_request(self):
        ok = super().parse_request()
        self._t = time.time()
        return ok

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with LOCK:
            LOG.write("%.6f %s %s 200\n" % (self._t, self.command, self.path))

    do_PUT = do_POST = do_DELETE = do_GET = _any

    def log_message(self, *args):
        pass


LOCK = threading.Lock()
LOG = open(sys.argv[2], "a", buffering=1)


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    srv.serve_forever()
    LOG.close()


if __name__ == "__main__":
    main()
