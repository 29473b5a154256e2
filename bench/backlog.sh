#!/usr/bin/env bash
# bench/backlog.sh: figure 4, the cost of a backlog.
#
# (a) Memory: the sum of VmRSS over every process of the httpd instance
#     (parent, MPM children, dispatcher), receiver down (nginx stopped), with
#     ET_BENCH_BIG (default 1,000,000) pending events against an empty
#     outbox. Each instance: start, 5 s, wrk -c16 for 3 s on the console
#     (so every thread has used its outbox connection), 5 s, measure.
#     Target: at most 20 MB more.
# (b) Delivery rate into nginx with ET_BENCH_BIG pending against
#     ET_BENCH_SMALL (default 10,000) pending: the time from httpd's start
#     to the outbox's done_at of the ET_BENCH_SMALL-th delivery (at most
#     ET_BENCH_WINDOW seconds, default 60; the rate is then what was
#     delivered in the window), in ET_BENCH_ROUNDS_4B (default 3)
#     alternating rounds; the medians and their ratio. Target: >= 0.9.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need wrk wrk
BIG=${ET_BENCH_BIG:-1000000}
SMALL=${ET_BENCH_SMALL:-10000}
WINDOW=${ET_BENCH_WINDOW:-60}
ROUNDS4=${ET_BENCH_ROUNDS_4B:-3}
URL=http://127.0.0.1:$P_HTTPD/console/member/

DB_BIG=$(backlog_db "$BIG")
DB_SMALL=$(backlog_db "$SMALL")

proc_cpu() {                          # pid -> utime+stime in seconds
    awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"
}
mem_of() {                            # name db|- -> sets MEM_KB, prints details
    local name=$1 db=$2
    httpd_conf "mem-$name" on "$P_NGINX"
    [ "$db" = - ] || install_outbox "$db"
    httpd_run
    sleep 5
    wrk_put "$URL" 16 3 >/dev/null 2>&1
    sleep 5
    MEM_KB=$(rss_kb)
    local d; d=$(dispatcher_pid)
    local c0; c0=$(proc_cpu "$d"); sleep 5; local c1; c1=$(proc_cpu "$d")
    say "$name: RSS total $MEM_KB kB; per process: $(for p in $(httpd_pids); do printf '%s=%s ' "$p" "$(awk '/^VmRSS:/ {print $2}' /proc/$p/status)"; done)(dispatcher $d)"
    say "$name: dispatcher CPU while the receiver is down: $(calc "round(($c1 - $c0) / 5 * 100)")%"
    httpd_stop
}

nginx_stop
say "(a) memory, receiver down"
mem_of idle -; M_IDLE=$MEM_KB
mem_of "backlog-$BIG" "$DB_BIG"; M_BIG=$MEM_KB
ADDED_MB=$(calc "round(($M_BIG - $M_IDLE) / 1024, 1)")
result "4 backlog: RSS with ${BIG} pending (MB)" "$(calc "round($M_BIG/1024,1)")" "$(calc "round($M_IDLE/1024,1)")" "$(ratio "$M_BIG" "$M_IDLE")" "added <= 20 MB (+$ADDED_MB)" "$(verdict_le "$ADDED_MB" 20)" ""

say "(b) delivery rate, nginx up"
nginx_start
rate_of() {                           # name db -> sets RATE
    httpd_conf "rate-$1" on "$P_NGINX"
    install_outbox "$2"
    local t0; t0=$(date +%s.%N)
    httpd_run
    ET_BENCH_DRAIN_MAX=$WINDOW drain_until "$SMALL" "$t0"
    RATE=$(calc "$DRAIN_DONE / $DRAIN_SECS")
    say "$1: $DRAIN_DONE delivered in $(printf %.2f "$DRAIN_SECS") s from httpd's start: $(printf %.1f "$RATE")/s (first call after $(printf %.2f "$DRAIN_START") s; $(calc "round(($DRAIN_DONE - 1) / $DRAIN_RUN, 1)")/s from the first call on)"
    httpd_stop
}
# One run of each moves by a fifth between runs (the 10,000 baseline
# alone from 18,500 to 23,800 ev/s): ROUNDS4 alternating rounds, medians.
declare -a r_small r_big
for r in $(seq "$ROUNDS4"); do
    rate_of "backlog-$SMALL" "$DB_SMALL"; r_small+=("$RATE")
    rate_of "backlog-$BIG" "$DB_BIG"; r_big+=("$RATE")
    say "round $r: ratio $(ratio "$RATE" "${r_small[-1]}")"
done
R_SMALL=$(median "${r_small[@]}"); R_BIG=$(median "${r_big[@]}")
RT=$(ratio "$R_BIG" "$R_SMALL")
result "4 backlog: rate ${BIG} vs ${SMALL} (ev/s)" "$(printf %.1f "$R_BIG")" "$(printf %.1f "$R_SMALL")" "$RT" ">= 0.9" "$(verdict_ge "$RT" 0.9)" ""
