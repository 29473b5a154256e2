#!/usr/bin/env python3
"""The customer's Event Trigger endpoint, for mod_eventtrigger's tests and demo.

Records every request it gets as one JSON line, appended and flushed to the
--log file as soon as the request is read (before it is answered, so a call
that is then left hanging, reset or answered garbage is on record too):

  {"time": 1700000000.123, "method": "PUT",
   "path": "/hooks/json/v1/member/a%20b",   (raw, as sent: not decoded)
   "query": "event=post-create&txn=...",    (raw)
   "headers": {"content-type": "application/json", ...},   (names lowercased)
   "body": "...", "peer": "127.0.0.1:50312",
   "answer": "200"}                         (what it was given, see below)

and answers --status (default 200) with {"ok":true}, --delay seconds after
recording the call (a slow endpoint). With --print it also prints one
readable line per call on stdout (for a demo).

Fault injection: a "plan" says how the next calls are answered. Plans are
set at runtime through the control path /_plan (never recorded):

  PUT /_plan   {"actions": [A1, A2, ...], "default": A,     a global plan
                "path": "/hooks/x/v1/member/42"}            (or per path:
                                                             exact "path", or
                                                             "prefix")
               A bare JSON list is a global plan of actions (no default).
  GET /_plan   the plans and what is left of them
  DELETE /_plan  forget every plan (back to --status/--delay)

A call takes the first action left of the plan for its exact path, else of
the plan with the longest matching prefix, else of the global plan; a plan
whose actions are used up answers with its "default" (if it has one) or
leaves the call to the next, less specific plan. Actions are consumed in
arrival order, one per request, atomically.

An action is a status number (503), a string ("503", "reset", "garbage",
"hang:3", "301", "503:retry-after=2") or an object:

  {"status": 503, "retry_after": "2"}    answer 503 with Retry-After: 2 (any
                                          text: seconds or an HTTP-date)
  {"hang": 3}          wait 3 s before answering ("status", default 200);
                       longer than the caller's timeout, the caller gives up
  {"hang": 3, "close": true}   wait, then close without answering
  {"reset": true}      close the connection without answering, with
                       SO_LINGER 0 (the caller gets a TCP RST)
  {"garbage": true}    answer bytes that are not HTTP, then close
  {"status": 301, "location": "http://..."}   a redirect ("301" alone points
                       Location at /moved on this receiver)
  {"random": [[0.9, 200], [0.1, "reset"]]}    one of the actions, by weight
                       (seeded with --seed)

The record's "answer" says what was done: "200", "503 retry-after=2",
"hang 3s then 200", "hang 3s then close", "reset", "garbage",
"301 location=...".

Before-save events (POST ...?event=pre-create|pre-update|pre-delete), when
no plan says otherwise, are answered by what the object sent asks for in
its "before" field (JSON or form body):

  "proceed" or none   {"type": "proceed"}
  "enrich"            {"type": "proceed", "object": the object without
                       object_type and "before", plus "enriched_by":
                       "receiver" and "credit_limit": 500}
  "refuse"            {"type": "refuse", "message": "refused by the receiver"}
  "refuse:409"        the same with "status": 409

Usage: receiver.py --port N --log FILE [--print] [--status NNN] [--delay S]
                   [--bind ADDR] [--plan JSON] [--seed N]
"""

import argparse
import json
import urllib.parse
import random
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ethttp import read_body, serve

CONTROL_PATH = "/_plan"


class Plans:
    """The fault plans: global, per exact path, per path prefix."""

    def __init__(self, rnd):
        self.lock = threading.Lock()
        self.rnd = rnd
        self.clear()

    def clear(self):
        with self.lock:
            self.global_plan = None
            self.by_path = {}
            self.by_prefix = {}

    @staticmethod
    def _plan(spec):
        if isinstance(spec, list):
            spec = {"actions": spec}
        if not isinstance(spec, dict):
            raise ValueError("a plan is a JSON list or object")
        actions = spec.get("actions") or []
        if not isinstance(actions, list):
            raise ValueError("actions must be a list")
        for a in actions + ([spec["default"]] if "default" in spec else []):
            normalize(a)          # raises on a bad action
        return {"actions": list(actions), "default": spec.get("default"),
                "has_default": "default" in spec, "used": 0}

    def set(self, spec):
        plan = self._plan(spec)
        path = spec.get("path") if isinstance(spec, dict) else None
        prefix = spec.get("prefix") if isinstance(spec, dict) else None
        with self.lock:
            if path is not None:
                self.by_path[path] = plan
            elif prefix is not None:
                self.by_prefix[prefix] = plan
            else:
                self.global_plan = plan

    def describe(self):
        def one(p):
            return {"left": p["actions"], "default": p["default"],
                    "used": p["used"]}
        with self.lock:
            return {"global": one(self.global_plan) if self.global_plan else None,
                    "path": {k: one(v) for k, v in self.by_path.items()},
                    "prefix": {k: one(v) for k, v in self.by_prefix.items()}}

    def next_action(self, path):
        """The action for a call to @path, or None (the --status default)."""
        with self.lock:
            candidates = []
            if path in self.by_path:
                candidates.append(self.by_path[path])
            for prefix in sorted((p for p in self.by_prefix if path.startswith(p)),
                                 key=len, reverse=True):
                candidates.append(self.by_prefix[prefix])
            if self.global_plan:
                candidates.append(self.global_plan)
            for plan in candidates:
                if plan["actions"]:
                    plan["used"] += 1
                    return self._pick(plan["actions"].pop(0))
                if plan["has_default"]:
                    plan["used"] += 1
                    return self._pick(plan["default"])
            return None

    def _pick(self, action):
        a = normalize(action)
        while "random" in a:
            choices = a["random"]
            total = sum(w for w, _ in choices)
            x = self.rnd.random() * total
            for w, act in choices:
                x -= w
                if x < 0:
                    break
            a = normalize(act)
        return a


def normalize(action):
    """An action as a dict; raises ValueError on nonsense."""
    if isinstance(action, bool):
        raise ValueError("bad action %r" % (action,))
    if isinstance(action, int):
        return {"status": action}
    if isinstance(action, str):
        word, _, arg = action.partition(":")
        if word.isdigit():
            a = {"status": int(word)}
            if arg.startswith("retry-after="):
                a["retry_after"] = arg[len("retry-after="):]
            elif arg:
                raise ValueError("bad action %r" % action)
            return a
        if word == "hang":
            return {"hang": float(arg or 3600)}
        if word == "reset" and not arg:
            return {"reset": True}
        if word == "garbage" and not arg:
            return {"garbage": True}
        raise ValueError("bad action %r" % action)
    if isinstance(action, dict):
        if "random" in action:
            ch = action["random"]
            if (not isinstance(ch, list) or not ch
                    or not all(isinstance(c, list) and len(c) == 2 for c in ch)):
                raise ValueError("random: a list of [weight, action]")
            for _, a in ch:
                normalize(a)
            return dict(action)
        known = {"status", "retry_after", "hang", "close", "reset", "garbage",
                 "location", "body"}
        if set(action) - known:
            raise ValueError("unknown action keys: %s" % sorted(set(action) - known))
        return dict(action)
    raise ValueError("bad action %r" % (action,))


class ReceiverHandler(BaseHTTPRequestHandler):
    """One call from the dispatcher; HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "EtReceiver/1.0"
    log_file = None
    log_lock = threading.Lock()
    status = 200
    delay = 0.0
    print_calls = False
    plans = None

    def _send_simple(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _control(self, body):
        try:
            if self.command == "PUT" or self.command == "POST":
                self.plans.set(json.loads(body.decode("utf-8")))
            elif self.command == "DELETE":
                self.plans.clear()
            out = json.dumps(self.plans.describe()).encode("utf-8")
            self._send_simple(200, out)
        except (ValueError, TypeError, AttributeError) as e:
            self._send_simple(400, json.dumps({"error": str(e)}).encode("utf-8"))

    @staticmethod
    def _describe(a):
        if a is None:
            return None
        if a.get("reset"):
            return "reset"
        if a.get("garbage"):
            return "garbage"
        st = int(a.get("status", 200))
        text = str(st)
        if a.get("retry_after") is not None:
            text += " retry-after=%s" % a["retry_after"]
        if a.get("location") is not None or 300 <= st < 400:
            text += " location=%s" % a.get("location", "/moved")
        if a.get("hang") is not None:
            text = "hang %gs then %s" % (float(a["hang"]),
                                         "close" if a.get("close") else text)
        return text

    def _before(self, body):
        """The answer to a before-save event, as its object asks."""
        text = body.decode("utf-8", errors="replace")
        try:
            if "json" in self.headers.get("Content-Type", ""):
                obj = json.loads(text)
            else:
                obj = {k: v[0] for k, v in urllib.parse.parse_qs(text).items()}
        except ValueError:
            obj = {}
        ask = str(obj.get("before", "proceed")) if isinstance(obj, dict) else ""
        if ask == "enrich":
            out = {k: v for k, v in obj.items() if k not in ("object_type", "before")}
            out.update(enriched_by="receiver", credit_limit=500)
            return {"status": 200, "body": {"type": "proceed", "object": out}}
        if ask.startswith("refuse"):
            ans = {"type": "refuse", "message": "refused by the receiver"}
            if ":" in ask:
                ans["status"] = int(ask.split(":", 1)[1])
            return {"status": 200, "body": ans}
        return {"status": 200, "body": {"type": "proceed"}}

    def _reset(self):
        """Close without answering: SO_LINGER 0 makes close() send an RST."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _handle(self):
        body = read_body(self)
        path, _, query = self.path.partition("?")
        if path == CONTROL_PATH:
            self._control(body)
            return
        action = self.plans.next_action(path)
        if action is None and "event=pre-" in query:
            action = self._before(body)
        if action is None:
            action = {"status": self.status}
            if self.delay > 0:
                action["hang"] = self.delay
        rec = {
            "time": time.time(),
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", errors="replace"),
            "peer": "%s:%d" % self.client_address[:2],
            "answer": self._describe(action),
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
        try:
            self._answer(action)
        except OSError:
            # the caller gave up (timeout) or the socket was reset
            self.close_connection = True

    def _answer(self, a):
        if a.get("hang"):
            time.sleep(float(a["hang"]))
            if a.get("close"):
                self.close_connection = True
                return
        if a.get("reset"):
            self._reset()
            return
        if a.get("garbage"):
            self.wfile.write(b"\x00\x16\x03 this is not HTTP \xff\xfe\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        st = int(a.get("status", 200))
        headers = []
        if a.get("retry_after") is not None:
            headers.append(("Retry-After", str(a["retry_after"])))
        if a.get("location") is not None or 300 <= st < 400:
            headers.append(("Location", a.get("location", "/moved")))
        out = a.get("body")
        out = (json.dumps(out) if not isinstance(out, str) else out).encode(
            "utf-8") if out is not None else (
            b'{"ok":true}' if 200 <= st < 300 else
            json.dumps({"error": "injected %d" % st}).encode("utf-8"))
        self._send_simple(st, out, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # a connection we reset, or one the caller dropped: not news
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        super().handle_error(request, client_address)


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
    ap.add_argument("--plan", default=None,
                    help="a plan to start with (JSON, as PUT /_plan takes)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the random choices of plans")
    args = ap.parse_args()
    ReceiverHandler.log_file = open(args.log, "a", encoding="utf-8")
    ReceiverHandler.status = args.status
    ReceiverHandler.delay = args.delay
    ReceiverHandler.print_calls = args.print_calls
    ReceiverHandler.plans = Plans(random.Random(args.seed))
    if args.plan:
        try:
            ReceiverHandler.plans.set(json.loads(args.plan))
        except ValueError as e:
            ap.error("--plan: %s" % e)
    server = Server((args.bind, args.port), ReceiverHandler)
    serve(server)


if __name__ == "__main__":
    sys.exit(main())
