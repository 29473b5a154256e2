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
# Information: libcurl alone making the same PUTs the same way, with nothing
# of the module around it (bench/calls.c), against the same baseline: the
# ceiling the client library sets; and the calling thread's CPU per call
# against libcurl's alone.
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
D_US=$(cpu_us "$DPID"); C_US=$(thread_cpu_us "$DPID" et-calls)
say "dispatcher CPU: $(calc "round($D_US / 1e6, 2)") s, of which the calling thread $(calc "round($C_US / 1e6, 2)") s"
httpd_stop

# The ceiling that libcurl sets: the same PUTs made by libcurl alone, as
# the calling thread makes them (one multi handle, WORKERS at once), with
# no outbox, no signing, nothing else (bench/calls.c).
say "libcurl alone: $N PUTs, $WORKERS at once (bench/calls.c multi)"
CALLS_BIN=$(calls_bin)
line=$("$CALLS_BIN" "${NGX_URL}w1-1?event=post-update&txn=$TXN" "$N" "$WORKERS" multi "$EVBODY") \
    || die "bench/calls.c failed: $line"
say "$line"
L_RATE=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
L_CPU=$(sed -n 's/.* cpu_us=\([0-9.]*\).*/\1/p' <<<"$line")

say "baseline again"
wrk_put "$NGX_URL" "$WORKERS" "$SECS" ET_QUERY="?event=post-update&txn=$TXN" ET_BODY="$EVBODY"
B2=$WRK_RPS
BASE=$(calc "($B1 + $B2) / 2")
RT=$(ratio "$RATE" "$BASE")
LABEL="2 delivery: rate, ${N} backlog (ev/s)"
[ "$DRAIN_DONE" -ge "$N" ] || LABEL="$LABEL [first $DRAIN_DONE in $(printf %.0f "$DRAIN_SECS") s]"
result "$LABEL" "$(printf %.0f "$RATE")" "$(printf %.0f "$BASE")" "$RT" ">= 0.5" "$(verdict_ge "$RT" 0.5)" ""
result "2 libcurl alone, same PUTs (calls/s)" "$(printf %.0f "$L_RATE")" "$(printf %.0f "$BASE")" "$(ratio "$L_RATE" "$BASE")" "(info: ceiling)" "-" ""
C_EV=$(calc "round($C_US / $DRAIN_DONE, 1)")
result "2 calling thread vs libcurl alone (µs CPU/call)" "$C_EV" "$L_CPU" "$(ratio "$C_EV" "$L_CPU")" "(info)" "-" ""
