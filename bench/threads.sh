#!/usr/bin/env bash
# bench/threads.sh: where figure 1's CPU goes, thread by thread (info).
#
# The same httpd and wrk load as figure 1 (capture.sh; -c16 for
# ET_BENCH_SECONDS, default 8, after a 2 s warm-up), three ways: module
# off (the baseline), capture with delivery held (receiver down), capture
# and delivery. For each, the CPU (utime + stime, from
# /proc/PID/task/TID/stat before and after) per request of:
#   children       every MPM child, all threads
#   et-intake      the dispatcher's intake (the children's events)
#   claim_loop     the dispatcher's main thread (claims, outcomes)
#   et-calls       the dispatcher's calling thread (libcurl)
#   et-checkpoint  the dispatcher's checkpointer
# and the children's figure beside the module-off one (a ratio).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need wrk wrk
SECS=${ET_BENCH_SECONDS:-8}
URL=http://127.0.0.1:$P_HTTPD/console/member/

build
nginx_start

# ticks per thread of PIDS: "name ticks" lines (name: the thread's comm, or
# "children" for an MPM child's threads)
ticks() {
    local disp=$1 pid t s rest
    shift
    for pid in "$@"; do
        for t in /proc/"$pid"/task/*; do
            s=$(cat "$t/stat" 2>/dev/null) || continue
            rest=${s#*) }
            set -- $rest
            if [ "$pid" = "$disp" ]; then
                name=$(cat "$t/comm" 2>/dev/null)
                [ "$name" = et-intake ] || [ "$name" = et-calls ] \
                    || [ "$name" = et-checkpoint ] || name=claim_loop
            else
                name=children
            fi
            echo "$name $(( ${12} + ${13} ))"
        done
    done
}
sum_by_name() { awk '{t[$1] += $2} END {for (k in t) print k, t[k]}'; }

declare -A per
for mode in off held on; do
    case $mode in
        off) httpd_start threads-off nomodule "$P_NGINX" ;;
        held) httpd_start threads-held on "$P_CLOSED" ;;
        on) httpd_start threads-on on "$P_NGINX" ;;
    esac
    wrk_put "$URL" 16 2 >/dev/null 2>&1
    disp=0
    [ "$mode" = off ] || disp=$(dispatcher_pid)
    mapfile -t pids < <(pgrep -P "$(cat "$HT_DIR/run/httpd.pid")")
    before=$(ticks "$disp" "${pids[@]}" | sum_by_name)
    wrk_put "$URL" 16 "$SECS" >/dev/null
    after=$(ticks "$disp" "${pids[@]}" | sum_by_name)
    hz=$(getconf CLK_TCK)
    while read -r name b; do
        a=$(awk -v n="$name" '$1 == n {print $2}' <<<"$after")
        per[$mode,$name]=$(calc "(${a:-$b} - $b) * 1e6 / $hz / $WRK_RPS / $SECS")
    done <<<"$before"
    say "$mode: $WRK_RPS req/s"
    httpd_stop
done

printf '\n%-14s %12s %12s %12s\n' "CPU µs/request" "module off" "held" "on"
for name in children et-intake claim_loop et-calls et-checkpoint; do
    printf '%-14s' "$name"
    for mode in off held on; do
        v=${per[$mode,$name]:-}
        if [ -n "$v" ]; then printf ' %12.1f' "$v"; else printf ' %12s' -; fi
    done
    printf '\n'
done
for mode in held on; do
    printf 'children %s / off: %s\n' "$mode" \
        "$(ratio "${per[$mode,children]}" "${per[off,children]}")"
done
