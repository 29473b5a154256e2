#!/usr/bin/env bash
# bench/delivery.sh: figure 2, delivery rate.
#
# A backlog of ET_BENCH_BACKLOG (default 100,000) pending events is put in a
# fresh outbox (bench/fill.sh, straight into SQLite); nginx (200 to all) is
# up; httpd starts and its dispatcher drains the backlog; the time from
# httpd's start to the last delivery (the outbox's done_at) gives the rate.
# Baseline: wrk's rate for the same PUT calls (same path shape, headers and
# body) to the same nginx at the same concurrency (EventTriggerWorkers,
# default 8), measured before and after the drain (mean of the two).
# Target: >= 0.5 of wrk's rate.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need wrk wrk
N=${ET_BENCH_BACKLOG:-100000}
WORKERS=${ET_BENCH_WORKERS:-8}
SECS=${ET_BENCH_SECONDS:-10}
TXN=0123456789abcdef0123456789abcdef
NGX_URL=http://127.0.0.1:$P_NGINX/cb/v1/member/
EVBODY='{"username": "partner1_dev1", "email": "dev1@example.com", "phone": "+1 555 0100", "status": "active", "id": "w1-1","object_type":"member"}'

DB=$(backlog_db "$N")
nginx_start

say "baseline: wrk -c$WORKERS -d${SECS}s PUT to nginx"
wrk_put "$NGX_URL" "$WORKERS" "$SECS" ET_QUERY="?event=post-update&txn=$TXN" ET_BODY="$EVBODY"
B1=$WRK_RPS

httpd_conf delivery on "$P_NGINX" "EventTriggerWorkers $WORKERS"
install_outbox "$DB"
say "draining $N events with EventTriggerWorkers $WORKERS"
T0=$(date +%s.%N)
httpd_run
drain_until "$N" "$T0"
RATE=$(calc "$DRAIN_DONE / $DRAIN_SECS")
say "delivered $DRAIN_DONE in $(printf %.1f "$DRAIN_SECS") s from httpd's start: $(printf %.0f "$RATE")/s (first call after $(printf %.2f "$DRAIN_START") s)"
DPID=$(dispatcher_pid)
say "dispatcher CPU (utime+stime): $(awk '{printf "%.1f s", ($14+$15)/100}' /proc/$DPID/stat)"
httpd_stop

say "baseline again"
wrk_put "$NGX_URL" "$WORKERS" "$SECS" ET_QUERY="?event=post-update&txn=$TXN" ET_BODY="$EVBODY"
B2=$WRK_RPS
BASE=$(calc "($B1 + $B2) / 2")
RT=$(ratio "$RATE" "$BASE")
LABEL="2 delivery: rate, ${N} backlog (ev/s)"
[ "$DRAIN_DONE" -ge "$N" ] || LABEL="$LABEL [first $DRAIN_DONE in $(printf %.0f "$DRAIN_SECS") s]"
result "$LABEL" "$(printf %.0f "$RATE")" "$(printf %.0f "$BASE")" "$RT" ">= 0.5" "$(verdict_ge "$RT" 0.5)" ""
