#!/usr/bin/env bash
# bench/fill.sh OUTBOX N [ENDPOINT [OBJECTS [grouped]]]: append N pending events to an
# existing outbox (the schema of lib/et_outbox_dbd.c, made by httpd at
# startup), as the capture filter would have written them: PUT (post-update)
# of member "fN", JSON body, a fresh txn each. Direct insertion is only for
# making backlogs; capture is measured by capture.sh.
# OBJECTS (default: N, every event its own object): the events go to that
# many members "hot-K" in turn (event i to hot-(i % OBJECTS)), so each
# object's events are spread over the whole backlog (figure 14); with
# "grouped", each object's events are in a row (event i to
# hot-((i - 1) / (N / OBJECTS))): its later events come before the next
# object's first in the due order.
set -euo pipefail
DB=$1 N=$2 EP=${3:-http://127.0.0.1:10010/cb} K=${4:-} LAYOUT=${5:-interleaved}
[ -f "$DB" ] || { echo "fill.sh: no outbox at $DB" >&2; exit 1; }
# HEAD: is event i its object's first (the outbox starts with none of
# these objects pending)
if [ -n "$K" ] && [ "$K" != "$N" ] && [ "$LAYOUT" = grouped ]; then
    OID="'hot-' || ((i - 1) / ($N / $K))" HEAD="(i - 1) % ($N / $K) = 0"
elif [ -n "$K" ] && [ "$K" != "$N" ]; then
    OID="'hot-' || (i % $K)" HEAD="i <= $K"
else
    OID="'f' || i || '-' || lower(hex(randomblob(3)))" HEAD=1
fi
# An outbox with the head column (issue 14: only an object's first pending
# event is a claim candidate) gets it set as the module would.
HEADCOL= HEADVAL=
if [ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM pragma_table_info('et_event') WHERE name = 'head'")" = 1 ]; then
    HEADCOL=", head" HEADVAL=", CASE WHEN $HEAD THEN 1 ELSE 0 END"
fi
NOW=$(python3 -c 'import time; print(int(time.time()*1e6))')
sqlite3 "$DB" <<SQL
PRAGMA busy_timeout = 10000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA cache_size = -200000;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N),
     r(i, txn, oid) AS (SELECT i, lower(hex(randomblob(16))),
                               $OID FROM n)
INSERT INTO et_event (txn, site, object, event, oid, url, content_type, body,
                      state, created, due, error$HEADCOL)
SELECT txn, 'bench', 'member', 'post-update', oid,
       '$EP/v1/member/' || oid || '?event=post-update&txn=' || txn,
       'application/json',
       '{"username": "partner1_dev1", "email": "dev1@example.com", "phone": "+1 555 0100", "status": "active", "id": "' || oid || '","object_type":"member"}',
       0, $NOW + i, $NOW + i, NULL$HEADVAL
  FROM r;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
