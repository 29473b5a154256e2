#!/usr/bin/env python3
"""The admin side and the accounting of bench/soak.sh (see there).

  soak_load.py load --url http://127.0.0.1:PORT --ops N --clients C
                    --objects K --run RUN --out OPS.jsonl
      C client threads make N admin operations in all through httpd's
      console locations (/console/<object>): creates, updates (PUT and
      PATCH) and deletes over K objects of the four kinds. Each object
      belongs to one client, which changes it one operation after the
      other, so the order of its operations is the order the console
      saw them (and the capture order). Every body carries the object's
      "seq" (its operation number). One JSON line per operation:
      {"oid", "object", "seq", "op", "code", "t"}; code 0 is a request
      that got no answer (its httpd child was killed, say).

  soak_load.py report --ops OPS.jsonl --calls RECEIVER.jsonl
                      --outbox OUTBOX.db --run RUN [--root /soak]
      Prints: sent (operations answered 2xx: their events must arrive),
      delivered, lost, duplicates (same txn delivered twice), per-object
      order violations, and the details behind them. Exit status 1 when
      anything was lost or out of order.
"""

import argparse
import http.client
import json
import random
import sqlite3
import sys
import threading
import time
import urllib.parse

OBJECTS = ("member", "application", "key", "package_key")


# -- load -----------------------------------------------------------------

class Client(threading.Thread):
    def __init__(self, n, host, port, objs, ops, out, lock, rnd, timeout):
        super().__init__(daemon=True)
        self.n, self.host, self.port = n, host, port
        self.objs = objs            # [(object, oid)]
        self.ops = ops
        self.out, self.lock = out, lock
        self.rnd = rnd
        self.timeout = timeout
        self.seq = {}               # oid -> next seq
        self.alive = {}             # oid -> exists at the console
        self.done = 0
        self.errors = 0

    def _request(self, method, path, body):
        """The status, or 0 when the request got no answer.

        A new connection per request: a refused connection (httpd between
        two children, say) is surely not a request and is tried again; any
        other error after connecting may have reached the console (a child
        killed while it handled the request), so it is not repeated.
        """
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Connection": "close"}
        for _ in range(100):
            conn = http.client.HTTPConnection(self.host, self.port,
                                              timeout=self.timeout)
            try:
                conn.connect()
            except ConnectionRefusedError:
                conn.close()
                time.sleep(0.05)
                continue
            except OSError:
                conn.close()
                return 0
            try:
                conn.request(method, path, body=data, headers=headers)
                res = conn.getresponse()
                res.read()
                return res.status
            except (OSError, http.client.HTTPException):
                return 0
            finally:
                conn.close()
        return 0

    def run(self):
        for _ in range(self.ops):
            obj, oid = self.objs[self.rnd.randrange(len(self.objs))]
            seq = self.seq.get(oid, 0)
            self.seq[oid] = seq + 1
            base = "/console/%s" % obj
            qid = urllib.parse.quote(oid, safe="")
            if not self.alive.get(oid):
                op, method, path = "create", "POST", base
            else:
                r = self.rnd.random()
                if r < 0.10:
                    op, method, path = "delete", "DELETE", "%s/%s" % (base, qid)
                elif r < 0.55:
                    op, method, path = "update", "PUT", "%s/%s" % (base, qid)
                else:
                    op, method, path = "update", "PATCH", "%s/%s" % (base, qid)
            body = {"id": oid, "seq": seq, "client": self.n, "op": op,
                    "name": "soak %s %d" % (oid, seq)}
            code = self._request(method, path, body)
            if 200 <= code < 300:
                self.alive[oid] = op != "delete"
            else:
                self.errors += 1
            rec = {"oid": oid, "object": obj, "seq": seq, "op": op,
                   "code": code, "t": time.time()}
            with self.lock:
                self.out.write(json.dumps(rec) + "\n")
            self.done += 1


def cmd_load(a):
    u = urllib.parse.urlsplit(a.url)
    rnd = random.Random(a.seed)
    objs = [(OBJECTS[k % len(OBJECTS)], "%s-%s-%d" % (a.run, OBJECTS[k % len(OBJECTS)], k))
            for k in range(a.objects)]
    per_client = [objs[i::a.clients] for i in range(a.clients)]
    ops = [a.ops // a.clients + (1 if i < a.ops % a.clients else 0)
           for i in range(a.clients)]
    lock = threading.Lock()
    with open(a.out, "a", encoding="utf-8", buffering=1) as out:
        clients = [Client(i, u.hostname, u.port, per_client[i], ops[i], out, lock,
                          random.Random(rnd.random()), a.timeout)
                   for i in range(a.clients)]
        t0 = time.time()
        for c in clients:
            c.start()
        last = 0
        while any(c.is_alive() for c in clients):
            time.sleep(0.5)
            done = sum(c.done for c in clients)
            if a.progress and time.time() - last >= a.progress:
                last = time.time()
                print("load: %d/%d operations, %d without a 2xx, %.0f/s"
                      % (done, a.ops, sum(c.errors for c in clients),
                         done / max(time.time() - t0, 0.001)), file=sys.stderr,
                      flush=True)
        for c in clients:
            c.join()
    print("load: %d operations in %.1fs" % (sum(c.done for c in clients),
                                            time.time() - t0), file=sys.stderr)


# -- report ---------------------------------------------------------------

def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                out.append(json.loads(line))
    return out


def cmd_report(a):
    ops = read_jsonl(a.ops)
    calls = read_jsonl(a.calls)
    db = sqlite3.connect("file:%s?mode=ro" % a.outbox, uri=True, timeout=30)
    rows = db.execute(
        "SELECT id, txn, oid, object, event, state, attempts, body, last_error"
        " FROM et_event WHERE oid LIKE ? ORDER BY id", (a.run + "-%",)).fetchall()

    # the operations
    confirmed = {}                     # (oid, seq) -> op
    unconfirmed = {}
    for o in ops:
        key = (o["oid"], o["seq"])
        if 200 <= o["code"] < 300:
            confirmed[key] = o
        else:
            unconfirmed[key] = o

    # the outbox: what was captured
    stored = {}                        # (oid, seq) -> row
    by_txn = {}
    capture_bad = 0
    last_seq = {}
    states = {0: 0, 1: 0, 2: 0, 3: 0}
    for (rid, txn, oid, obj, ev, state, attempts, body, err) in rows:
        try:
            seq = json.loads(body)["seq"]
        except (ValueError, KeyError, TypeError):
            seq = None
        states[state] = states.get(state, 0) + 1
        stored[(oid, seq)] = (rid, txn, state, attempts, err)
        by_txn[txn] = (oid, seq)
        if seq is not None and oid in last_seq and seq < last_seq[oid]:
            capture_bad += 1
        last_seq[oid] = seq

    # the receiver: every call, in arrival order
    root = a.root.rstrip("/") + "/v1/"
    delivered_txn = {}                 # txn -> times answered 2xx
    attempts_seen = 0
    max_seq = {}                       # oid -> highest seq called so far
    max_del = {}
    violations = []                    # calls that went back in an object's order
    del_violations = 0
    slow = {}
    dup_after_timeout = 0
    for c in calls:
        if not c["path"].startswith(root):
            continue
        q = urllib.parse.parse_qs(c["query"])
        txn = q.get("txn", [""])[0]
        oid = urllib.parse.unquote(c["path"].rsplit("/", 1)[-1])
        if not oid.startswith(a.run + "-"):
            continue
        attempts_seen += 1
        try:
            seq = json.loads(c["body"])["seq"]
        except (ValueError, KeyError, TypeError):
            seq = -1
        ok = (c.get("answer") or "200").split()[-1].startswith("2")
        if seq < max_seq.get(oid, -1):
            violations.append((oid, seq, max_seq[oid], c["time"], txn, c.get("answer")))
        max_seq[oid] = max(max_seq.get(oid, -1), seq)
        if ok:
            if txn in delivered_txn and slow.get(txn):
                dup_after_timeout += 1
            delivered_txn[txn] = delivered_txn.get(txn, 0) + 1
            # a receiver that answered after the dispatcher's timeout did
            # the work, but the dispatcher will call again
            if (c.get("answer") or "").startswith("hang"):
                slow[txn] = True
            if seq < max_del.get(oid, -1):
                del_violations += 1
            max_del[oid] = max(max_del.get(oid, -1), seq)

    delivered_keys = {by_txn[t] for t in delivered_txn if t in by_txn}
    lost = sorted(k for k in confirmed if k not in delivered_keys)
    unconfirmed_stored = [k for k in unconfirmed if k in stored]
    unconfirmed_delivered = [k for k in unconfirmed if k in delivered_keys]
    duplicates = sum(n - 1 for n in delivered_txn.values() if n > 1)
    dup_txns = sum(1 for n in delivered_txn.values() if n > 1)
    unknown = [t for t in delivered_txn if t not in by_txn]

    fig = [
        ("operations", len(ops)),
        ("sent", len(confirmed)),
        ("unconfirmed", len(unconfirmed)),
        ("stored", len(rows)),
        ("delivered", len(delivered_txn)),
        ("lost", len(lost)),
        ("duplicates", duplicates),
        ("order_violations", len(violations)),
    ]
    print("soak: " + " ".join("%s=%d" % f for f in fig))
    print()
    print("  operations        %7d  admin operations made" % len(ops))
    print("  sent              %7d  answered 2xx by the console: their events must arrive"
          % len(confirmed))
    print("  unconfirmed       %7d  no 2xx (child killed, restart): %d of them stored,"
          " %d delivered" % (len(unconfirmed), len(unconfirmed_stored),
                             len(unconfirmed_delivered)))
    print("  stored            %7d  events in the outbox (pending %d, delivered %d,"
          " dead %d, failed %d)" % (len(rows), states.get(0, 0), states.get(1, 0),
                                    states.get(2, 0), states.get(3, 0)))
    print("  delivered         %7d  distinct txns answered 2xx by the receiver"
          " (%d calls in all)" % (len(delivered_txn), attempts_seen))
    print("  lost              %7d  sent but never delivered" % len(lost))
    print("  duplicates        %7d  extra deliveries of a txn already delivered"
          " (%d txns; %d after the receiver answered past the timeout, the"
          " others after a kill or restart)" % (duplicates, dup_txns, dup_after_timeout))
    print("  order violations  %7d  calls of an earlier change after a later one"
          " of the same object (%d among deliveries)" % (len(violations),
                                                         del_violations))
    print("  capture order     %7d  objects whose outbox order differs from the"
          " console's" % capture_bad)
    if unknown:
        print("  unknown txns      %7d  delivered, not in the outbox" % len(unknown))
    for k in lost[:20]:
        row = stored.get(k)
        print("  lost: %s seq %s (%s): %s" % (
            k[0], k[1], confirmed[k]["op"],
            "not in the outbox" if not row else
            "outbox id %d txn %s state %d attempts %d error %s" % row))
    for v in violations[:20]:
        print("  out of order: %s seq %d after seq %d at %.3f txn %s (%s)" % v)
    return 1 if lost or violations else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    l.add_argument("--url", required=True)
    l.add_argument("--ops", type=int, default=10000)
    l.add_argument("--clients", type=int, default=8)
    l.add_argument("--objects", type=int, default=300)
    l.add_argument("--run", required=True, help="prefix of the object ids")
    l.add_argument("--out", required=True)
    l.add_argument("--seed", type=int, default=1)
    l.add_argument("--timeout", type=float, default=60.0)
    l.add_argument("--progress", type=float, default=10.0)
    r = sub.add_parser("report")
    r.add_argument("--ops", required=True)
    r.add_argument("--calls", required=True)
    r.add_argument("--outbox", required=True)
    r.add_argument("--run", required=True)
    r.add_argument("--root", default="/soak")
    a = ap.parse_args()
    return cmd_load(a) if a.cmd == "load" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
