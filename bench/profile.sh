#!/usr/bin/env bash
# bench/profile.sh: where the time goes (not part of run-all.sh; run it after
# a build: bench/build.sh). Writes $ET_BENCH_DIR/profile/*.txt:
#   capture-syscalls.txt   perf stat of the MPM children and the dispatcher
#                          under wrk -c16 (sleeps, fsyncs, futexes)
#   capture-perf.txt       perf report (dwarf call graphs) of the children
#   delivery-perf.txt      perf report of the dispatcher draining a backlog
#   claim-plan.txt         EXPLAIN QUERY PLAN and timings of the claim and
#                          next-due statements of lib/et_outbox_dbd.c as
#                          built (bench/stmt.py) at 100k and 1M pending, and
#                          the cost of a finish alone vs batched
#   commit-cost.txt        SQLite commits: one row per transaction (FULL) vs
#                          grouped, the ceiling of the capture path
#   latency-syscalls.txt   perf stat of children and dispatcher at figure
#                          3's steady 200 PUT/s (ET_BENCH_ONLY=latency)
#   whatif.txt             figure 2's drain with the outbox ANALYZEd (the
#                          claim walks id order): the claim's share, and
#                          the next bottleneck (ET_BENCH_ONLY=whatif)
# Needs linux-perf.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need perf linux-perf
PROF=$W/profile; mkdir -p "$PROF"
SECS=${ET_BENCH_SECONDS:-10}
ONLY=${ET_BENCH_ONLY:-capture delivery claim commit whatif latency}
SYSC='syscalls:sys_enter_clock_nanosleep,syscalls:sys_enter_nanosleep,syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fcntl,task-clock,context-switches'

children() {                          # MPM children (not the dispatcher)
    local ppid d=none; ppid=$(cat "$HT_DIR/run/httpd.pid")
    grep -q '^Define ET_MODULE' "$HT_DIR/conf/httpd.conf" && d=$(dispatcher_pid)
    pgrep -P "$ppid" | grep -vx "$d" | paste -sd,
}

prof_capture() {
    nginx_start
    for mode in nomodule on; do
        httpd_start "prof-$mode" "$mode" "$P_NGINX"
        wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 16 2 >/dev/null 2>&1
        local kids; kids=$(children)
        {
            echo "### module: $mode; MPM children $kids; wrk -c16 -d${SECS}s"
            perf stat -e "$SYSC" -p "$kids" -- sleep "$SECS" 2>&1 &
            local ps=$!
            wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 16 "$SECS" 2>&1
            wait $ps
            if [ "$mode" = on ]; then
                echo "### dispatcher $(dispatcher_pid), 5 s of the delivery that follows"
                perf stat -e "$SYSC" -p "$(dispatcher_pid)" -- sleep 5 2>&1
            fi
        } >>"$PROF/capture-syscalls.txt.new" 2>&1
        if [ "$mode" = on ]; then
            kids=$(children)
            perf record -q -F 499 --call-graph dwarf,16384 -o "$PROF/capture.data" -p "$kids" -- sleep 5 >/dev/null 2>&1 &
            local pr=$!
            wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 16 5 >/dev/null 2>&1
            wait $pr || true
            perf report -i "$PROF/capture.data" --no-children --percent-limit 1.5 --stdio \
                -g caller,0.5,callee,function,percent >"$PROF/capture-perf.txt" 2>/dev/null || true
            perf report -i "$PROF/capture.data" --no-children --sort dso,sym --stdio -g none \
                --percent-limit 0.5 >"$PROF/capture-perf-flat.txt" 2>/dev/null || true
        fi
        httpd_stop
    done
    mv "$PROF/capture-syscalls.txt.new" "$PROF/capture-syscalls.txt"
    nginx_stop
}

prof_delivery() {
    local db; db=$(backlog_db 100000)
    nginx_start
    httpd_conf prof-delivery on "$P_NGINX"
    install_outbox "$db"
    httpd_run
    sleep 2
    local d; d=$(dispatcher_pid)
    perf stat -e "$SYSC" -p "$d" -- sleep 5 >"$PROF/delivery-syscalls.txt" 2>&1
    perf record -q -F 499 --call-graph dwarf,16384 -o "$PROF/delivery.data" -p "$d" -- sleep 10 >/dev/null 2>&1 || true
    perf report -i "$PROF/delivery.data" --no-children --percent-limit 2 --stdio \
        -g caller,0.5,callee,function,percent >"$PROF/delivery-perf.txt" 2>/dev/null || true
    perf report -i "$PROF/delivery.data" --no-children --sort dso,sym --stdio -g none \
        --percent-limit 0.5 >"$PROF/delivery-perf-flat.txt" 2>/dev/null || true
    httpd_stop
    nginx_stop
}

# The module's own statements, as built ($W/build/lib/et_outbox_dbd.c),
# through bench/stmt.py: placeholders filled with site 'bench', a time after
# every due and lease, LIMIT 8.
SRC=$W/build/lib/et_outbox_dbd.c
sqltime() {                           # db sql... -> the Run Time lines
    local db=$1; shift
    { echo ".timer on"; for q in "$@"; do printf '%s;\n' "$q"; done; } \
        | sqlite3 "$db" | grep 'Run Time' || true
}

prof_claim() {
    local out=$PROF/claim-plan.txt
    local claim next; claim=$(python3 "$BENCH/stmt.py" "$SRC" ST_CLAIM)
    next=$(python3 "$BENCH/stmt.py" "$SRC" ST_NEXT_DUE)
    {
        echo "module $(cat "$W/built-rev")"
        echo "ST_CLAIM: $claim"
        echo "ST_NEXT_DUE: $next"
    } >"$out"
    for n in 100000 1000000; do
        local src; src=$(backlog_db "$n")
        local db=$W/claim-$n.db
        cp "$src" "$db"
        {
            echo "######## $n pending events"
            echo "--- EXPLAIN QUERY PLAN of ST_CLAIM"
            sqlite3 "$db" "EXPLAIN QUERY PLAN $claim;"
            echo "--- ST_CLAIM, 3 runs, each rolled back (sqlite3 .timer)"
            sqltime "$db" "BEGIN" "$claim" "ROLLBACK" "BEGIN" "$claim" "ROLLBACK" "BEGIN" "$claim" "ROLLBACK" \
                | awk 'NR % 3 == 2'
            echo "--- ST_NEXT_DUE"
            sqlite3 "$db" "EXPLAIN QUERY PLAN $next;"
            sqltime "$db" "$next"
            echo "--- finishes (ST_FINISH on the 200 oldest pending rows: state changes, so the indexes on state are rewritten), synchronous=FULL"
            python3 - "$db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA synchronous=FULL")
ids = [r[0] for r in c.execute("SELECT id FROM et_event WHERE state = 0 ORDER BY id LIMIT 400")]
SQL = ("UPDATE et_event SET state = 1, last_status = 200, last_error = NULL, due = 0,"
       " lease_until = 0, lease_owner = NULL, done_at = 1, latency = 1 WHERE id = ? AND lease_owner IS NULL")
t = time.perf_counter()
for i in ids[:200]:
    c.execute(SQL, (i,))
d = time.perf_counter() - t
print("%.3f ms per finish, each its own transaction (as et_outbox_finish)" % (d / 200 * 1000))
t = time.perf_counter()
c.execute("BEGIN")
for i in ids[200:]:
    c.execute(SQL, (i,))
c.execute("COMMIT")
d = time.perf_counter() - t
print("%.3f ms per finish, 200 in one transaction (batched acks)" % (d / 200 * 1000))
PY
        } >>"$out" 2>&1
        rm -f "$db" "$db-wal" "$db-shm"
    done
}

prof_commit() {
    local db=$W/commit.db
    rm -f "$db"*; cp "$(schema_db)" "$db"
    python3 - "$db" >"$PROF/commit-cost.txt" 2>&1 <<'PY'
import sqlite3, sys, time, os
db = sys.argv[1]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
SQL = ("INSERT INTO et_event (txn, site, object, event, oid, url, content_type, body, state, created, due, error)"
       " VALUES (?, 'bench', 'member', 'post-update', ?, ?, 'application/json', ?, 0, 1, 1, NULL)")
body = '{"username": "partner1_dev1", "email": "dev1@example.com", "phone": "+1 555 0100", "status": "active", "id": "x","object_type":"member"}'
def rows(n, k):
    return [(os.urandom(16).hex(), "c%d-%d" % (k, i), "http://127.0.0.1:10010/cb/v1/member/c%d?event=post-update" % i, body) for i in range(n)]
print("SQLite %s, one connection, the capture's INSERT (ST_INSERT)" % sqlite3.sqlite_version)
for sync in ("FULL", "NORMAL"):
    c.execute("PRAGMA synchronous=%s" % sync)
    for batch in (1, 4, 16, 64):
        n = 4000
        rs = rows(n, batch)
        t = time.perf_counter()
        for i in range(0, n, batch):
            c.execute("BEGIN IMMEDIATE")
            c.executemany(SQL, rs[i:i + batch])
            c.execute("COMMIT")
        d = time.perf_counter() - t
        print("synchronous=%-6s %3d rows per commit: %8.0f rows/s  (%.3f ms per commit)"
              % (sync, batch, n / d, d / (n / batch) * 1000))
PY
    rm -f "$db"*
}

# What-if, without touching the module: the same drain as figure 2, but the
# outbox was ANALYZEd (and has a partial index of the pending rows), so
# that SQLite's planner walks the claim in id order and stops at LIMIT
# instead of sorting the whole backlog. Shows what the claim costs and what
# the next bottleneck is (one fsync per finish under the outbox lock).
prof_whatif() {
    local src; src=$(backlog_db 100000)
    local db=$W/whatif.db
    cp "$src" "$db"
    sqlite3 "$db" "CREATE INDEX et_event_pending ON et_event (id) WHERE state = 0; ANALYZE;"
    local out=$PROF/whatif.txt
    nginx_start
    {
        echo "### ST_CLAIM's plan after ANALYZE"
        sqlite3 "$db" "EXPLAIN QUERY PLAN $(python3 "$BENCH/stmt.py" "$SRC" ST_CLAIM);"
        for mode in as-is analyzed; do
            httpd_conf "whatif-$mode" on "$P_NGINX"
            if [ "$mode" = as-is ]; then install_outbox "$src"; else install_outbox "$db"; fi
            local t0; t0=$(date +%s.%N)
            httpd_run
            sleep 10
            local d; d=$(dispatcher_pid)
            echo "### $mode: dispatcher, 10 s into the drain of a 100000 backlog"
            perf stat -e "$SYSC" -p "$d" -- sleep 10 2>&1
            ET_BENCH_DRAIN_MAX=30 drain_until 100000 "$t0"
            echo "### $mode: $DRAIN_DONE delivered in $(printf %.1f "$DRAIN_SECS") s: $(calc "round($DRAIN_DONE / $DRAIN_SECS)")/s"
            httpd_stop
        done
    } >"$out" 2>&1
    nginx_stop
    rm -f "$db"
}

# Figure 3's paced load (200 PUT/s for 20 s) with perf stat on the MPM
# children and on the dispatcher: who sleeps in SQLite's busy handler.
prof_latency() {
    nginx_start
    httpd_start prof-latency on "$P_NGINX_LOG"
    local kids d; kids=$(children); d=$(dispatcher_pid)
    {
        echo "### 200 PUT/s for 20 s; MPM children $kids"
        perf stat -e "$SYSC" -p "$kids" -- sleep 20 2>&1 &
        local a=$!
        echo "### dispatcher $d" >"$PROF/latency-dispatcher.tmp"
        perf stat -e "$SYSC" -p "$d" -- sleep 20 >>"$PROF/latency-dispatcher.tmp" 2>&1 &
        local b=$!
        python3 "$BENCH/pace.py" --url "http://127.0.0.1:$P_HTTPD/console/member/" \
            --rate 200 --seconds 20 --out "$PROF/latency-calls.txt"
        wait $a $b
        cat "$PROF/latency-dispatcher.tmp"; rm -f "$PROF/latency-dispatcher.tmp"
        echo "### console round trip: $(python3 "$BENCH/e2e.py" --rtt "$PROF/latency-calls.txt")"
    } >"$PROF/latency-syscalls.txt" 2>&1
    httpd_stop
    nginx_stop
}

for what in $ONLY; do
    say "profile: $what"
    "prof_$what"
done
say "profiles in $PROF"
