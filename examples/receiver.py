#!/usr/bin/env python3
"""An example Event Trigger receiver for mod_eventtrigger (Python 3, standard
library only). Copy it and replace apply_change() with your own system.

What it does with each call (see docs/receiver.md):

  PUT    {prefix}/v1/{object}/{id}?event=post-create|post-update&txn={txn}
  DELETE {prefix}/v1/{object}/{id}?event=post-delete&txn={txn}

  1. checks the request (object, event, txn);
  2. verifies the Standard Webhooks signature (webhook-id,
     webhook-timestamp, webhook-signature) when it has a secret: 401 if no
     signature matches or the timestamp is more than 5 minutes off;
  3. decodes the body: JSON, or application/x-www-form-urlencoded in
     bracket notation (form_decode() below);
  4. in ONE SQLite transaction: records the txn as seen (a txn seen before
     is answered 200 without being applied again) and applies the change
     (upsert or delete of the row (object, id) in the table "objects");
  5. answers 200 {"ok":true}, and logs one line.

Before-save events (POST {prefix}/v1/{object}[/{id}]?event=pre-create|
pre-update|pre-delete&txn=..., where the operator set EventTriggerBefore)
are verified the same way and answered at once, from decide() below:
{"type":"refuse","status":422,...} for a member whose email is in a
--refuse-domain, else {"type":"proceed"} - with the object and the
--enrich NAME=VALUE pairs added, when there are any. Nothing is stored.

Answers: 2xx = done (never sent again); 400/401/404 = refused for good (the
sender keeps it as a dead letter); 503 = try again later (the sender
retries, honouring Retry-After).

Usage:
  receiver.py [--port 8482] [--bind 127.0.0.1] [--db receiver.db]
              [--prefix /masherycallbacks] [--secret whsec_... ...]
              [--refuse-domain example.org ...] [--enrich crm=on ...]

Secrets: each --secret (repeat it during a key rotation), or the
environment variable EVENTTRIGGER_SECRET (several separated by spaces or
commas). Without a secret, calls are accepted unsigned: do not do that on
a network you do not control.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OBJECTS = {"member", "application", "key", "package_key"}
EVENTS = {"PUT": {"post-create", "post-update"}, "DELETE": {"post-delete"},
          "POST": {"pre-create", "pre-update", "pre-delete"}}
TXN_RE = re.compile(r"\A[0-9a-f]{32}\Z")
TOLERANCE = 300                 # seconds between webhook-timestamp and our clock
MAX_BODY = 10 * 1024 * 1024     # refuse larger bodies (413)


class Refused(Exception):
    """Answer the call with this status and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# -- signatures (Standard Webhooks) -------------------------------------------

def secret_key(secret):
    """The HMAC key of a "whsec_<base64>" secret."""
    if not secret.startswith("whsec_"):
        raise ValueError("a secret starts with whsec_")
    return base64.b64decode(secret[len("whsec_"):], validate=True)


def verify_signature(keys, headers, body, now=None):
    """Raise Refused(401) unless one of the signatures in webhook-signature
    is HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}") for one
    of our keys, and the timestamp is within TOLERANCE of our clock.
    body: the raw bytes received (verify before decoding anything)."""
    msg_id = headers.get("webhook-id", "")
    ts = headers.get("webhook-timestamp", "")
    sigs = headers.get("webhook-signature", "")
    if not msg_id or not ts or not sigs:
        raise Refused(401, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not ts.isdigit() or abs((now or time.time()) - int(ts)) > TOLERANCE:
        raise Refused(401, "webhook-timestamp too old or too new")
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    for key in keys:
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        for sig in sigs.split(" "):          # one "v1,<base64>" per sender secret
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return
    raise Refused(401, "no matching signature")


# -- bodies --------------------------------------------------------------------

def form_decode(text):
    """Decode an application/x-www-form-urlencoded body in bracket notation
    into nested dicts and lists:

        member[username]=dev&limits[0][period]=second&limits[0][ceiling]=2
        -> {"member": {"username": "dev"},
            "limits": [{"period": "second", "ceiling": "2"}]}

    Every value stays a string ("2", "2.5", "true"; "" for null): convert
    what you need. A dict whose keys are exactly "0".."n-1" becomes a list.
    Empty objects and arrays are not sent by mod_eventtrigger, so they are
    simply absent."""
    root = {}
    for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True,
                                              strict_parsing=False):
        # "a[b][0]" -> ["a", "b", "0"]
        head, _, rest = name.partition("[")
        parts = [head] + (re.findall(r"([^\[\]]*)\]", "[" + rest) if rest else [])
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and sorted(node) == sorted(str(i) for i in range(len(node))):
        return [node[str(i)] for i in range(len(node))]
    return node


def decode_body(content_type, body):
    """The saved object, from a JSON or form body."""
    ctype = content_type.split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            data = json.loads(body.decode("utf-8"))
        elif ctype == "application/x-www-form-urlencoded":
            data = form_decode(body.decode("utf-8"))
        else:
            raise Refused(415, "unsupported Content-Type %r" % ctype)
    except (UnicodeDecodeError, ValueError) as e:
        raise Refused(400, "undecodable body: %s" % e)
    if not isinstance(data, dict):
        raise Refused(400, "the body is not an object")
    return data


# -- the store: seen txns and the objects (a stand-in for your system) ---------

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_txn (
    txn      TEXT PRIMARY KEY,      -- the event's id (query txn = webhook-id)
    object   TEXT NOT NULL,
    id       TEXT NOT NULL,
    event    TEXT NOT NULL,
    received REAL NOT NULL          -- keep rows 30 days or more (see docs)
);
CREATE TABLE IF NOT EXISTS objects (
    object   TEXT NOT NULL,         -- member, application, key, package_key
    id       TEXT NOT NULL,
    body     TEXT NOT NULL,         -- the decoded object, as JSON
    txn      TEXT NOT NULL,         -- the event that wrote it last
    updated  REAL NOT NULL,
    PRIMARY KEY (object, id)
);
"""


def connect(path):
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def apply_change(db, obj, obj_id, event, txn, data):
    """Replace this with your own system. Updates are upserts: an update may
    arrive for an object whose create became a dead letter."""
    if event == "post-delete":
        db.execute("DELETE FROM objects WHERE object = ? AND id = ?", (obj, obj_id))
    else:
        db.execute(
            "INSERT INTO objects (object, id, body, txn, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (object, id) DO UPDATE SET"
            " body = excluded.body, txn = excluded.txn, updated = excluded.updated",
            (obj, obj_id, json.dumps(data, sort_keys=True), txn, time.time()))


def process(db_path, obj, obj_id, event, txn, data):
    """Record the txn and apply the change in one transaction. Returns
    "applied" or "repeat" (a txn seen before: nothing done)."""
    db = connect(db_path)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO seen_txn (txn, object, id, event, received)"
                " VALUES (?, ?, ?, ?, ?)", (txn, obj, obj_id, event, time.time()))
            if cur.rowcount == 0:
                db.execute("ROLLBACK")
                return "repeat"
            apply_change(db, obj, obj_id, event, txn, data)
            db.execute("COMMIT")
            return "applied"
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()


def decide(cfg, obj, event, data):
    """A before-save event's answer: your policy goes here. It must be
    quick: the admin waits for it."""
    email = data.get("email") if isinstance(data, dict) else None
    if obj == "member" and event != "pre-delete" and isinstance(email, str):
        domain = email.rpartition("@")[2].lower()
        if domain in cfg.refuse_domains:
            return {"type": "refuse", "status": 422,
                    "message": "members from %s are not allowed" % domain}
    if cfg.enrich and event != "pre-delete" and isinstance(data, dict):
        enriched = {k: v for k, v in data.items() if k != "object_type"}
        enriched.update(cfg.enrich)
        return {"type": "proceed", "object": enriched}
    return {"type": "proceed"}


# -- HTTP ----------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive, as the sender prefers
    server_version = "EventTriggerReceiver/1.0"

    def do_PUT(self):
        self.handle_call()

    def do_DELETE(self):
        self.handle_call()

    def do_POST(self):
        self.handle_call()

    def handle_call(self):
        cfg = self.server.cfg
        started = time.time()
        outcome, txn = "", "-"
        try:
            body = self.read_body()
            url = urllib.parse.urlsplit(self.path)
            obj, obj_id = self.parse_path(cfg.prefix, url.path,
                                          self.command == "POST")
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            event, txn = query.get("event", ""), query.get("txn", "")
            if event not in EVENTS[self.command]:
                raise Refused(400, "event %r does not go with %s" % (event, self.command))
            if not TXN_RE.match(txn):
                raise Refused(400, "bad txn")
            headers = {k.lower(): v for k, v in self.headers.items()}
            if cfg.keys:
                verify_signature(cfg.keys, headers, body)
                if headers["webhook-id"] != txn:
                    raise Refused(401, "webhook-id is not the txn")
            data = decode_body(headers.get("content-type", ""), body)
            if self.command == "POST":
                decision = decide(cfg, obj, event, data)
                outcome = decision["type"] + (" (enriched)" if "object" in decision else "")
                self.answer(200, decision)
            else:
                outcome = process(cfg.db, obj, obj_id, event, txn, data)
                self.answer(200, {"ok": True})
        except Refused as e:
            outcome = "refused: %s" % e.message
            self.answer(e.status, {"ok": False, "error": e.message})
        except sqlite3.Error as e:
            # a temporary problem on our side: the sender retries later
            outcome = "store error: %s" % e
            self.answer(503, {"ok": False, "error": "try again"}, {"Retry-After": "30"})
        sys.stderr.write("%s %s %s txn=%s -> %s (%.1f ms)\n" % (
            time.strftime("%Y-%m-%dT%H:%M:%S"), self.command, self.path.split("?")[0],
            txn, outcome, (time.time() - started) * 1000))
        sys.stderr.flush()

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise Refused(411, "Content-Length required")
        if int(length) > MAX_BODY:
            self.close_connection = True
            raise Refused(413, "body too large")
        return self.rfile.read(int(length))

    @staticmethod
    def parse_path(prefix, path, before=False):
        """{prefix}/v1/{object}/{id} -> (object, id); the id is one
        percent-encoded segment, decoded once. A before-save create has no
        id: {prefix}/v1/{object} -> (object, None)."""
        head = prefix + "/v1/"
        if not path.startswith(head):
            raise Refused(404, "not an Event Trigger path")
        parts = path[len(head):].split("/")
        if before and len(parts) == 1 and parts[0] in OBJECTS:
            return parts[0], None
        if len(parts) != 2 or parts[0] not in OBJECTS or not parts[1]:
            raise Refused(404, "unknown object or id")
        return parts[0], urllib.parse.unquote(parts[1], errors="surrogateescape")

    def answer(self, status, data, headers=None):
        out = json.dumps(data, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        pass                            # handle_call() logs one line per call


def main():
    ap = argparse.ArgumentParser(description="Example Event Trigger receiver")
    ap.add_argument("--port", type=int, default=8482)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--db", default="receiver.db", help="SQLite file (created)")
    ap.add_argument("--prefix", default="",
                    help="path before /v1/ (the endpoint's path), e.g. /masherycallbacks")
    ap.add_argument("--secret", action="append", default=[],
                    help="whsec_... signing secret; repeat for a rotation")
    ap.add_argument("--refuse-domain", action="append", default=[],
                    help="before-save: refuse members with an email in this domain")
    ap.add_argument("--enrich", action="append", default=[],
                    help="before-save: NAME=VALUE added to objects that proceed")
    cfg = ap.parse_args()
    cfg.refuse_domains = {d.lower() for d in cfg.refuse_domain}
    try:
        cfg.enrich = dict(e.split("=", 1) for e in cfg.enrich)
    except ValueError:
        ap.error("--enrich takes NAME=VALUE")
    cfg.prefix = cfg.prefix.rstrip("/")
    secrets = cfg.secret or re.split(r"[\s,]+", os.environ.get("EVENTTRIGGER_SECRET", "").strip())
    try:
        cfg.keys = [secret_key(s) for s in secrets if s]
    except ValueError as e:
        ap.error("bad secret: %s" % e)
    if not cfg.keys:
        sys.stderr.write("warning: no secret, unsigned calls are accepted\n")

    db = connect(cfg.db)
    db.executescript(SCHEMA)
    db.close()

    server = ThreadingHTTPServer((cfg.bind, cfg.port), Handler)
    server.daemon_threads = True
    server.cfg = cfg
    sys.stderr.write("listening on http://%s:%d%s/v1/{object}/{id}, store %s\n"
                     % (cfg.bind, cfg.port, cfg.prefix, cfg.db))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
