#!/usr/bin/env bash
# bench/multi.sh: figure 14d, two machines on one PostgreSQL outbox.
#
# A PostgreSQL server of the bench's own (initdb, default settings but its
# port and socket) holds a backlog of ET_BENCH_MULTI_BACKLOG (default
# 20,000) pending events of distinct objects, captured by httpd itself
# (wrk PUTs, endpoint down; then pointed at nginx and their attempts and the
# pause reset) in a template database. Each run drains a copy of it into
# nginx: first one httpd instance (the baseline), then two instances side by
# side on the same copy, as two machines sharing the outbox would. The rate
# is the outbox's own: deliveries between its first and last done_at.
# Target: two instances drain at >= 0.9 of one (on 2 cores, where the
# second instance adds no CPU), and PostgreSQL's log says "deadlock
# detected" 0 times.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${ET_BENCH_MULTI_BACKLOG:-20000}
WORKERS=${ET_BENCH_WORKERS:-8}
P_PG=$((ET_BENCH_PORT + 30))
P_HTTPD2=$((ET_BENCH_PORT + 31))
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || die "PostgreSQL is missing: apt-get install -y postgresql"
ls /usr/lib/*/apr-util-1/apr_dbd_pgsql*.so >/dev/null 2>&1 \
    || die "APR-util's pgsql driver is missing: apt-get install -y libaprutil1-dbd-pgsql"
PG=$W/pg-14d
PGUSER_OS=postgres

pg() { runuser -u "$PGUSER_OS" -- env PGOPTIONS="-c client_min_messages=warning" "$@"; }
psql_q() {                            # DB SQL -> rows
    pg psql -h 127.0.0.1 -p "$P_PG" -U et -d "$1" -Atqc "$2"
}
pg_stop() { [ -d "$PG/data" ] && pg "$PGBIN/pg_ctl" -D "$PG/data" -m fast -w stop >/dev/null 2>&1 || true; }
NODES=()                              # "HT_DIR P_HTTPD" of the running instances
stop_nodes() {
    local n
    for n in "${NODES[@]}"; do
        HT_DIR=${n% *} P_HTTPD=${n#* } httpd_stop
    done
    NODES=()
}
cleanup() { set +e; stop_nodes; nginx_stop; pg_stop; }
trap cleanup EXIT

# node NAME PORT DB ENDPOINT_PORT: configure (not start) an instance on the
# PostgreSQL database DB; sets HT_DIR
node_conf() {
    local name=$1 port=$2 db=$3 ep=$4
    P_HTTPD=$port
    httpd_conf "$name" on "$ep" "EventTriggerWorkers $WORKERS" \
        "EventTriggerStore \"pgsql:host=127.0.0.1 port=$P_PG user=et dbname=$db\"" \
        "LogLevel warn eventtrigger:notice"
    # httpd.conf.in listens on @PORT@ (P_HTTPD): done by httpd_conf
}
node_start() {                        # NAME PORT DB ENDPOINT_PORT
    node_conf "$@"
    httpd_run
    NODES+=("$HT_DIR $P_HTTPD")
}

# --- PostgreSQL --------------------------------------------------------------
pg_stop
rm -rf "$PG"; mkdir -p "$PG"; chown "$PGUSER_OS" "$PG"
pg "$PGBIN/initdb" -D "$PG/data" -A trust -U et >"$PG/initdb.out" 2>&1 || { cat "$PG/initdb.out" >&2; die "initdb failed"; }
pg "$PGBIN/pg_ctl" -D "$PG/data" -l "$PG/log" -w \
    -o "-p $P_PG -k $PG -c listen_addresses=127.0.0.1" start >/dev/null || die "PostgreSQL did not start (see $PG/log)"
say "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on port $P_PG, default settings"
nginx_start

# --- the backlog, once, in the template database -----------------------------
psql_q postgres "CREATE DATABASE tpl"
node_start capture14d "$P_HTTPD" tpl "$P_CLOSED"
say "capturing a backlog of $N events (endpoint down)"
while [ "$(psql_q tpl "SELECT COUNT(*) FROM et_event")" -lt "$N" ]; do
    wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 8 3 >/dev/null 2>&1
done
stop_nodes
# exactly N, every one due now, unattempted, for nginx; no pause left
psql_q tpl "DELETE FROM et_event WHERE id > (SELECT id FROM et_event ORDER BY id OFFSET $((N - 1)) LIMIT 1)"
psql_q tpl "UPDATE et_event SET url = replace(url, ':$P_CLOSED/', ':$P_NGINX/'), attempts = 0,
            due = created, lease_until = 0, lease_owner = NULL, last_status = NULL,
            last_error = NULL; DELETE FROM et_circuit"
psql_q tpl "VACUUM ANALYZE et_event" >/dev/null 2>&1 || true
[ "$(psql_q tpl "SELECT COUNT(*) FROM et_event WHERE state = 0")" -eq "$N" ] || die "backlog is not $N pending events"

# drain DB NODES...: start the instances on a copy of the backlog, wait
# until every event is delivered; prints the rate (events/s between the
# first and the last done_at)
drain() {
    local db=$1; shift
    psql_q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
    psql_q postgres "CREATE DATABASE $db TEMPLATE tpl"
    local i=0 port
    for port in "$@"; do
        node_conf "d14d-$db-$i" "$port" "$db" "$P_NGINX"
        i=$((i + 1))
        NODE_DIRS+=("$HT_DIR")
    done
    i=0
    for port in "$@"; do         # as close together as they can be
        HT_DIR=${NODE_DIRS[$i]} P_HTTPD=$port httpd_run
        NODES+=("${NODE_DIRS[$i]} $port")
        i=$((i + 1))
    done
    NODE_DIRS=()
    local t0=$SECONDS
    until [ "$(psql_q "$db" "SELECT COUNT(*) FROM et_event WHERE state = 1")" -ge "$N" ]; do
        [ $((SECONDS - t0)) -lt "${ET_BENCH_DRAIN_MAX:-600}" ] || { say "gave up after ${ET_BENCH_DRAIN_MAX:-600}s"; break; }
        sleep 0.2
    done
    stop_nodes
    psql_q "$db" "SELECT (COUNT(*) - 1) / ((MAX(done_at) - MIN(done_at)) / 1e6)
                  FROM et_event WHERE state = 1"
}
NODE_DIRS=()
DL0=$(grep -c "deadlock detected" "$PG/log" || true)
say "one instance drains $N events (EventTriggerWorkers $WORKERS)"
ONE=$(drain one "$P_HTTPD")
say "  $(printf %.0f "$ONE") events/s"
DL1=$(grep -c "deadlock detected" "$PG/log" || true)
say "two instances drain the same $N events"
TWO=$(drain two "$P_HTTPD" "$P_HTTPD2")
say "  $(printf %.0f "$TWO") events/s"
DL2=$(grep -c "deadlock detected" "$PG/log" || true)
DEAD=$((DL2 - DL1))
RT=$(ratio "$TWO" "$ONE")
result "14d two instances, one PostgreSQL (ev/s)" "$(printf %.0f "$TWO")" "$(printf %.0f "$ONE")" "$RT" ">= 0.9" "$(verdict_ge "$RT" 0.9)" ""
result "14d deadlocks in PostgreSQL's log (two)" "$DEAD" "$((DL1 - DL0))" "-" "0" "$(verdict_le "$DEAD" 0)" ""
