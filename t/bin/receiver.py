#!/usr/bin/env python3
"""The customer's Event Trigger endpoint, for mod_eventtrigger's tests and demo.

Records every request it gets as one JSON line, appended and flushed to the
--log file as soon as the request is read:

  {"time": 1700000000.123, "method": "PUT",
   "path": "/hooks/json/v1/member/a%20b",   (raw, as sent: not decoded)
   "query": "event=post-create&txn=...",    (raw)
   "headers": {"content-type": "application/json", ...},   (names lowercased)
   "body": "...", "peer": "127.0.0.1:50312"}

and answers --status (default 200) with {"ok":true}, --delay seconds after
recording the call (a slow endpoint). With --print it also prints one
readable line per call on stdout (for a demo).

Usage: receiver.py --port N --log FILE [--print] [--status NNN] [--delay S]
                   [--bind ADDR]
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ReceiverHandler(BaseHTTPRequestHandler):
    """One call from the dispatcher; HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "EtReceiver/1.0"
    log_file = None
    log_lock = threading.Lock()
    status = 200
    delay = 0.0
    print_calls = False

    def _read_body(self):
        # The dispatcher sends Content-Length; a chunked body is read too,
        # so that a wrong framing shows as a wrong body, not a hang.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self):
        body = self._read_body()
        path, _, query = self.path.partition("?")
        rec = {
            "time": time.time(),
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", errors="replace"),
            "peer": "%s:%d" % self.client_address[:2],
        }
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self.log_lock:
            self.log_file.write(line)
            self.log_file.flush()
        if self.print_calls:
            print("%s %s %s%s  %s  %s" % (
                time.strftime("%H:%M:%S"), self.command, path,
                "?" + query if query else "",
                self.headers.get("Content-Type", "-"),
                rec["body"] if len(rec["body"]) <= 300 else rec["body"][:300] + "..."),
                flush=True)
        if self.delay > 0:
            time.sleep(self.delay)
        out = b'{"ok":true}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--log", required=True, help="JSON lines file, appended")
    ap.add_argument("--print", dest="print_calls", action="store_true",
                    help="print one line per call on stdout")
    ap.add_argument("--status", type=int, default=200, help="status to answer")
    ap.add_argument("--delay", type=float, default=0.0,
                    help="seconds to wait before answering")
    args = ap.parse_args()
    ReceiverHandler.log_file = open(args.log, "a", encoding="utf-8")
    ReceiverHandler.status = args.status
    ReceiverHandler.delay = args.delay
    ReceiverHandler.print_calls = args.print_calls
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((args.bind, args.port), ReceiverHandler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
