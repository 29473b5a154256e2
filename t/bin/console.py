#!/usr/bin/env python3
"""A stand-in for an admin console's backend, for mod_eventtrigger's tests and demo.

httpd proxies the console's locations here (ProxyPass); mod_eventtrigger, in
httpd, watches the answers and turns every successful create, update and
delete into an Event Trigger call. The console is stateless: it answers each
request from the request alone, so any number of httpd children (and the
in-process twin, t/c-modules/et_console) agree on what "the saved object" is.

Requests (the path's first part, the "prefix", is free: /proxy/member,
/admin/v2/key, ...):

  POST   /<prefix>/<object>        JSON object in the body
         -> 201, the body with an "id" (kept if present, else assigned)
  PUT    /<prefix>/<object>/<id>   -> 200, the body with "id" (the body's id
  PATCH  /<prefix>/<object>/<id>      wins; else the last path segment, decoded)
  DELETE /<prefix>/<object>/<id>   -> 200, {"id": ...} (or the body, if any, with
                                      its id); with the query nobody=1: 204, no body
  GET    /<prefix>/<object>/<id>   -> 200, {"id": <id>}

An empty request body counts as {}. A body that is not a JSON object gets 400.

Test controls, as request headers:

  X-Console-Status: NNN   answer NNN with {"error": ...} instead
  X-Console-Chunked: 1    answer with Transfer-Encoding: chunked (in pieces)
  X-Console-Hold: PATH    with X-Console-Chunked: after the first piece, wait
                          until the file PATH exists (30 s at most): the
                          request is admitted and answering, its end held
  X-Console-Raw: 1        answer the request body verbatim, as
                          application/json, whatever it is (bad-input tests)
  X-Console-Shape: S      answer in another console's shape (issue 16):
                          empty    {} to an update or delete (json-server)
                          noid     the object without its "id"
                          wrap:K   {"K": object, "meta": {}} (JSON:API's
                                   "data", Rails' root)
                          html     an HTML page (text/html), same status
                          jsonrpc  the body is a JSON-RPC request or batch:
                                   OBJ.create/update answer params[0] as
                                   the result (create adds an "id" unless it
                                   has id, username or apikey), OBJ.delete
                                   true, OBJ.fetch {"id": params[0]}; a param
                                   with "fail": true or an unknown method
                                   gets an error (HTTP 200 all the same); a
                                   batch is answered in reverse order
  X-Console-Gzip: 1       gzip the answer (Content-Encoding: gzip) if the
                          request's Accept-Encoding allows it; "force": always
                          (only this console: httpd's own handlers leave
                          compression to mod_deflate)

Every answer carries X-Console-Body-Sha1 and X-Console-Body-Length, the
SHA-1 and length of the request body the console read.

With --record FILE, every create, update and delete it answers is appended
to FILE as one JSON line, {"method", "path", "id", "status"}, before the
answer is sent: what the console saw (the fail-closed tests compare it with
the outbox).

Usage: console.py --port N [--bind 127.0.0.1] [--quiet] [--record FILE]
"""

import argparse
import gzip
import hashlib
import itertools
import json
import os
import sys
import time
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ethttp import read_body, serve

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def _next_id(obj_name):
    with _counter_lock:
        n = next(_counter)
    return "%s-%d" % (obj_name or "obj", n)


class ConsoleHandler(BaseHTTPRequestHandler):
    """One console request; HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "EtConsole/1.0"
    quiet = False
    record = None
    record_lock = threading.Lock()

    # -- helpers ----------------------------------------------------------

    def _gzip_wanted(self):
        how = self.headers.get("X-Console-Gzip")
        if how == "force":
            return True
        accept = self.headers.get("Accept-Encoding", "")
        return how == "1" and any(
            c.split(";")[0].strip().lower() == "gzip" for c in accept.split(","))

    def _send(self, status, body, ctype="application/json"):
        chunked = self.headers.get("X-Console-Chunked") == "1"
        self.send_response(status)
        seen = getattr(self, "_body_read", b"")
        self.send_header("X-Console-Body-Sha1", hashlib.sha1(seen).hexdigest())
        self.send_header("X-Console-Body-Length", str(len(seen)))
        if body is None:
            if status != 204:
                self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Content-Type", ctype)
        if self._gzip_wanted():
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, len(body) // 3)
            hold = self.headers.get("X-Console-Hold")
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if hold:
                    self.wfile.flush()
                    deadline = time.time() + 30
                    while not os.path.exists(hold) and time.time() < deadline:
                        time.sleep(0.01)
                    hold = None
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _send_json(self, status, obj):
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"))

    def _record(self, status, oid):
        if not self.record:
            return
        line = json.dumps({"method": self.command, "path": self.path,
                           "id": oid, "status": status})
        with self.record_lock, open(self.record, "a") as f:
            f.write(line + "\n")

    def _path_parts(self):
        raw_path, _, query = self.path.partition("?")
        segs = [s for s in raw_path.split("/") if s]
        return segs, urllib.parse.parse_qs(query)

    # -- methods ----------------------------------------------------------

    def _send_shaped(self, status, data):
        shape = self.headers.get("X-Console-Shape", "")
        if shape == "empty" and self.command in ("PUT", "PATCH", "DELETE", "POST"):
            data = {}
        elif shape == "noid":
            data = {k: v for k, v in data.items() if k != "id"}
        elif shape.startswith("wrap:"):
            data = {shape[5:]: data, "meta": {}}
        elif shape == "html":
            page = "<!DOCTYPE html>\n<html><body><p>Saved %s</p></body></html>\n" % (
                json.dumps(data))
            self._send(status, page.encode("utf-8"), "text/html; charset=utf-8")
            return
        self._send_json(status, data)

    def _rpc_one(self, call):
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return {"result": None, "error": {"code": -32600,
                                              "message": "Invalid Request"},
                    "id": None}
        obj, _, op = call["method"].rpartition(".")
        params = call.get("params")
        first = (params[0] if isinstance(params, list) and params
                 else params if isinstance(params, dict) else None)
        answer = {"id": call.get("id")}
        if call.get("jsonrpc") == "2.0":
            answer["jsonrpc"] = "2.0"
        if isinstance(first, dict) and first.get("fail"):
            answer.update(result=None, error={"code": 1000, "message": "refused"})
        elif op in ("create", "update") and isinstance(first, dict):
            result = dict(first)
            if op == "create" and not any(k in result for k in ("id", "username", "apikey")):
                result["id"] = _next_id(obj)
            result["object_type"] = obj
            answer.update(result=result, error=None)
        elif op == "delete":
            answer.update(result=True, error=None)
        elif op == "fetch":
            answer.update(result={"id": first}, error=None)
        else:
            answer.update(result=None,
                          error={"code": -32601, "message": "Method not found"})
        if answer.get("jsonrpc") == "2.0":
            answer.pop("error" if answer["error"] is None else "result")
        return answer

    def _jsonrpc(self, body):
        try:
            req = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._send_json(200, {"result": None, "id": None,
                                  "error": {"code": -32700, "message": "Parse error"}})
            return
        if isinstance(req, list):
            answers = [self._rpc_one(c) for c in req
                       if not (isinstance(c, dict) and "id" not in c)]
            self._send_json(200, list(reversed(answers)))
        else:
            self._send_json(200, self._rpc_one(req))

    def _handle(self):
        body = read_body(self)
        self._body_read = body
        if self.headers.get("X-Console-Shape") == "jsonrpc":
            self._jsonrpc(body)
            return
        if self.headers.get("X-Console-Raw") == "1":
            self._send(200 if self.command != "POST" else 201, body)
            return
        forced = self.headers.get("X-Console-Status")
        if forced:
            status = int(forced)
            self._send_json(status, {"error": "forced status %d" % status})
            return

        segs, query = self._path_parts()
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError) as e:
            self._send_json(400, {"error": "bad JSON: %s" % e})
            return
        if not isinstance(data, dict):
            self._send_json(400, {"error": "a JSON object is expected"})
            return

        if self.command == "POST":
            if data.get("id") is None:
                data["id"] = _next_id(segs[-1] if segs else None)
            self._record(201, data["id"])
            self._send_shaped(201, data)
            return
        if not segs:
            self._send_json(404, {"error": "no object id in the path"})
            return
        path_id = urllib.parse.unquote(segs[-1], errors="surrogateescape")
        if data.get("id") is None:
            data["id"] = path_id
        if self.command == "DELETE" and query.get("nobody") == ["1"]:
            self._record(204, data["id"])
            self._send(204, None)
            return
        self._record(200, data["id"])
        self._send_shaped(200, data)

    do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def do_GET(self):
        forced = self.headers.get("X-Console-Status")
        if forced:
            self._send_json(int(forced), {"error": "forced status %s" % forced})
            return
        segs, _ = self._path_parts()
        oid = urllib.parse.unquote(segs[-1]) if segs else ""
        self._send_json(200, {"id": oid})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("console: %s - %s\n" % (self.address_string(), fmt % args))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--quiet", action="store_true", help="no access log on stderr")
    ap.add_argument("--record", help="append what it answered here (JSON lines)")
    args = ap.parse_args()
    ConsoleHandler.quiet = args.quiet
    ConsoleHandler.record = args.record
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((args.bind, args.port), ConsoleHandler)
    serve(server)


if __name__ == "__main__":
    main()
