#!/usr/bin/env bash
# bench/capture.sh: figure 1, capture overhead.
#
# wrk (16 connections, PUT with a JSON body, a new object id per request)
# against the in-process console (t/c-modules/et_console) in httpd:
#   baseline: httpd + console, mod_eventtrigger not loaded
#   module:   the same httpd + console, the module loaded and the location
#             mapped (EventTrigger member): every answer is captured and
#             committed to the SQLite outbox; delivery to nginx (200 to all)
#   held:     (information) the module capturing as above, but the endpoint
#             is down, so the dispatcher does not deliver while wrk runs:
#             what capture costs by itself, without delivery sharing the
#             2 cores
# Rounds alternate baseline/module/held (ET_BENCH_ROUNDS, default 3; each
# ET_BENCH_SECONDS, default 10, after a 2 s warm-up); the medians are compared.
# Targets: throughput ratio >= 0.95, p99 added <= 0.5 ms.
# Information: httpd's CPU (every process of the instance, from /proc) per
# request served, in each mode (medians): what the module adds per request.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need wrk wrk
ROUNDS=${ET_BENCH_ROUNDS:-3}
SECS=${ET_BENCH_SECONDS:-10}
CONNS=16
URL=http://127.0.0.1:$P_HTTPD/console/member/

nginx_start
declare -a rps_off rps_on p99_off p99_on rps_held p99_held cpu_off cpu_on cpu_held
for r in $(seq "$ROUNDS"); do
    for mode in off on held; do
        case $mode in
            off) httpd_start capture-off nomodule "$P_NGINX" ;;
            on) httpd_start capture-on on "$P_NGINX" ;;
            held) httpd_start capture-held on "$P_CLOSED" ;;
        esac
        wrk_put "$URL" "$CONNS" 2 >/dev/null 2>&1          # warm-up
        say "round $r, module $mode: wrk -c$CONNS -d${SECS}s"
        pids=$(httpd_pids); dpid=
        [ "$mode" = off ] || dpid=$(dispatcher_pid)
        c0=$(cpu_us $pids); d0=0; i0=0
        [ -z "$dpid" ] || { d0=$(cpu_us "$dpid"); i0=$(thread_cpu_us "$dpid" et-intake); }
        wrk_put "$URL" "$CONNS" "$SECS"
        c1=$(cpu_us $pids); d1=0; i1=0
        [ -z "$dpid" ] || { d1=$(cpu_us "$dpid"); i1=$(thread_cpu_us "$dpid" et-intake); }
        reqs=$(calc "$WRK_RPS * $SECS")
        cpu_req=$(calc "round(($c1 - $c0) / $reqs, 1)")
        say "httpd's CPU per request: $cpu_req µs: MPM children $(calc "round(($c1 - $c0 - $d1 + $d0) / $reqs, 1)"), intake $(calc "round(($i1 - $i0) / $reqs, 1)"), rest of the dispatcher $(calc "round(($d1 - $d0 - $i1 + $i0) / $reqs, 1)")"
        if [ "$mode" = off ]; then
            rps_off+=("$WRK_RPS"); p99_off+=("$WRK_P99"); cpu_off+=("$cpu_req")
        elif [ "$mode" = held ]; then
            rps_held+=("$WRK_RPS"); p99_held+=("$WRK_P99"); cpu_held+=("$cpu_req")
            say "outbox after the run: $(ob_count 0) pending (endpoint down)"
        else
            rps_on+=("$WRK_RPS"); p99_on+=("$WRK_P99"); cpu_on+=("$cpu_req")
            sleep 1
            say "outbox after the run: $(ob_count 1) delivered, $(ob_count 0) pending"
            grep -E 'ET000(3[123])' "$HT_DIR/logs/error.log" | head -3 >&2 || true
        fi
        httpd_stop
    done
done

R_OFF=$(median "${rps_off[@]}"); R_ON=$(median "${rps_on[@]}")
Q_OFF=$(calc "$(median "${p99_off[@]}")/1000"); Q_ON=$(calc "$(median "${p99_on[@]}")/1000")
R_HELD=$(median "${rps_held[@]}"); Q_HELD=$(calc "$(median "${p99_held[@]}")/1000")
say "rps  off: ${rps_off[*]}  on: ${rps_on[*]}  held: ${rps_held[*]}"
say "p99  off: ${p99_off[*]}  on: ${p99_on[*]}  held: ${p99_held[*]} (µs)"

RT=$(ratio "$R_ON" "$R_OFF")
result "1 capture: throughput (req/s)" "$(printf %.0f "$R_ON")" "$(printf %.0f "$R_OFF")" "$RT" ">= 0.95" "$(verdict_ge "$RT" 0.95)" ""
ADDED=$(calc "round($Q_ON - $Q_OFF, 3)")
result "1 capture: p99 latency (ms)" "$(printf %.3f "$Q_ON")" "$(printf %.3f "$Q_OFF")" "$(ratio "$Q_ON" "$Q_OFF")" "added <= 0.5 ms (+$ADDED)" "$(verdict_le "$ADDED" 0.5)" ""
RH=$(ratio "$R_HELD" "$R_OFF")
result "1 capture, delivery held: throughput (req/s)" "$(printf %.0f "$R_HELD")" "$(printf %.0f "$R_OFF")" "$RH" "(info)" "-" ""
result "1 capture, delivery held: p99 latency (ms)" "$(printf %.3f "$Q_HELD")" "$(printf %.3f "$Q_OFF")" "$(ratio "$Q_HELD" "$Q_OFF")" "(info)" "-" ""
# Why the throughput moves: wrk's 16 connections keep 2 cores busy, so
# what the module adds to httpd's CPU per request (all its processes: the
# children, the intake, the dispatcher) comes out of the requests served.
C_OFF=$(median "${cpu_off[@]}"); C_ON=$(median "${cpu_on[@]}"); C_HELD=$(median "${cpu_held[@]}")
result "1 httpd CPU per request, delivery held (µs)" "$C_HELD" "$C_OFF" "$(ratio "$C_HELD" "$C_OFF")" "(info)" "-" ""
result "1 httpd CPU per request, with delivery (µs)" "$C_ON" "$C_OFF" "$(ratio "$C_ON" "$C_OFF")" "(info)" "-" ""
