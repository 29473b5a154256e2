#!/usr/bin/env python3
"""bench/pages.py [--outcomes-only] OUTBOX ROUND [LIMIT]: the floor of figure
14c, SQLite alone.

The writes that the dispatcher's rounds make, and nothing else (no call,
no module), on a copy of a backlog made by bench/fill.sh (the module's
schema and indexes): rounds of one transaction each (WAL,
synchronous=FULL, as lib/et_outbox_dbd.c opens the outbox) in which the
ROUND events claimed by the round before are finished, each finished
object's next pending event is marked as its head, then ROUND due heads
are leased, soonest due first. An object is in a round at most once: its
next event waits for its predecessor's outcome to be committed, as the
dispatcher's chained calls do. LIMIT events at most (all by default).

--outcomes-only: the finishes alone (each event's outcome written into its
row, rounds as above), no promotion and no lease: what any outbox that
keeps an event's outcome in its row writes at least, whatever its indexes
and its claims.

Prints "events=N secs=S rate=R pages=P [b-tree=pages ...]": P is the WAL
frames written per event (read from the WAL before each checkpoint), and
then the same split by the b-tree each frame belongs to (dbstat). The
ratio of two layouts' rates is what SQLite itself makes of their pages.
"""
import collections
import heapq
import os
import sqlite3
import struct
import sys
import time

args = sys.argv[1:]
outcomes_only = "--outcomes-only" in args
args = [a for a in args if a != "--outcomes-only"]
db, per_round = args[0], int(args[1])
limit = int(args[2]) if len(args) > 2 else None
con = sqlite3.connect(db, isolation_level=None)
con.execute("PRAGMA journal_mode = WAL")
con.execute("PRAGMA synchronous = FULL")
con.execute("PRAGMA wal_autocheckpoint = 0")   # done below, and counted
page = con.execute("PRAGMA page_size").fetchone()[0]
wal = db + "-wal"

# each object's pending events in id order (the module finds the next one
# with a seek in et_event_order; read here beforehand, outside the timing)
line = {}
for i, obj, oid in con.execute("SELECT id, object, oid FROM et_event"
                               " WHERE state = 0 ORDER BY id"):
    line.setdefault((obj, oid), []).append(i)
pos = dict.fromkeys(line, 0)
due_of = dict(con.execute("SELECT id, due FROM et_event WHERE state = 0"))
queue = [(due_of[i], i, (obj, oid)) for i, obj, oid in
         con.execute("SELECT id, object, oid FROM et_event"
                     " WHERE state = 0 AND head = 1")]
heapq.heapify(queue)


def owners():
    try:
        return {p: n for n, p in con.execute("SELECT name, pageno FROM dbstat")}
    except sqlite3.OperationalError:  # SQLite built without dbstat
        return {}


own = owners()
split = collections.Counter()


def checkpoint():
    """Count the WAL's frames by b-tree, then checkpoint (et-checkpoint's
    work, here in the same thread)."""
    global own
    if os.path.exists(wal):
        with open(wal, "rb") as f:
            data = f.read()
        off = 32
        while off + 24 <= len(data):
            split[own.get(struct.unpack(">I", data[off:off + 4])[0], "(new)")] += 1
            off += 24 + page
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    own = owners()


done, prev = 0, []
t0 = time.monotonic()
while queue or prev:
    now = int(time.time() * 1e6)
    con.execute("BEGIN IMMEDIATE")
    for _, i, key in prev:
        con.execute("UPDATE et_event SET state = 1, last_status = 200,"
                    " due = ?, lease_until = 0, lease_owner = NULL,"
                    " done_at = ?, latency = 1 WHERE id = ?", (now, now, i))
        pos[key] += 1
        if pos[key] < len(line[key]):
            n = line[key][pos[key]]
            if not outcomes_only:
                con.execute("UPDATE et_event SET head = 1 WHERE id = ?", (n,))
            heapq.heappush(queue, (due_of[n], n, key))
    done += len(prev)
    prev = []
    if limit is not None and done >= limit:
        queue = []                    # enough: the last round is finished
    prev = [heapq.heappop(queue) for _ in range(min(per_round, len(queue)))]
    for _, i, _ in ([] if outcomes_only else prev):
        con.execute("UPDATE et_event SET lease_owner = 'pages', lease_until = ?,"
                    " due = ?, attempts = attempts + 1 WHERE id = ?",
                    (now + 60000000, now + 60000000, i))
    con.execute("COMMIT")
    if done % 4096 < per_round:
        checkpoint()
checkpoint()
secs = time.monotonic() - t0
print("events=%d secs=%.2f rate=%.1f pages=%.2f %s" % (
    done, secs, done / secs, sum(split.values()) / max(done, 1),
    " ".join("%s=%.2f" % (k, v / max(done, 1)) for k, v in split.most_common())))
