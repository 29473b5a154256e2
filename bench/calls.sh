#!/usr/bin/env bash
# bench/calls.sh: why the dispatcher makes its calls on one thread
# (information, not one of the issue's figures; not in run-all.sh).
#
# bench/calls.c makes ET_BENCH_CALLS (default 200,000) PUT calls to nginx
# (200 to all), ET_BENCH_WORKERS (default 8) at a time, in two ways, three
# rounds alternating:
#   baseline: 8 threads, each call in curl_easy_perform() (the dispatcher's
#             apr_thread_pool workers until 2026-11-27)
#   multi:    one thread, 8 calls at once on a libcurl multi handle (the
#             dispatcher's calling thread now, lib/et_http_curl.c)
# and prints the medians side by side: calls per second, CPU per call and
# context switches per call (of the calling process), with the ratio.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
N=${ET_BENCH_CALLS:-200000}
WORKERS=${ET_BENCH_WORKERS:-8}
ROUNDS=${ET_BENCH_ROUNDS:-3}
RESULTS=$W/calls.tsv          # not the figures' table (run-all.sh)
BIN=$(calls_bin)
nginx_start
URL="http://127.0.0.1:$P_NGINX/cb/v1/member/123456?event=post-update&txn=0123456789abcdef0123456789abcdef"

declare -A rate cpu sw
for r in $(seq "$ROUNDS"); do
    for mode in threads multi; do
        line=$("$BIN" "$URL" "$N" "$WORKERS" "$mode") || die "calls failed: $line"
        say "round $r: $line"
        rate[$mode]+=" $(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")"
        cpu[$mode]+=" $(sed -n 's/.* cpu_us=\([0-9.]*\).*/\1/p' <<<"$line")"
        sw[$mode]+=" $(sed -n 's/.* switches=\([0-9.]*\).*/\1/p' <<<"$line")"
    done
done
for m in threads multi; do
    eval "R_$m=\$(median ${rate[$m]}) C_$m=\$(median ${cpu[$m]}) S_$m=\$(median ${sw[$m]})"
done
result "calls: $WORKERS at once, rate (calls/s)" "$(printf %.0f "$R_multi")" "$(printf %.0f "$R_threads")" "$(ratio "$R_multi" "$R_threads")" "(info)" "-" ""
result "calls: CPU per call (µs)" "$C_multi" "$C_threads" "$(ratio "$C_multi" "$C_threads")" "(info)" "-" ""
result "calls: context switches per call" "$S_multi" "$S_threads" "$(ratio "$S_multi" "$S_threads")" "(info)" "-" ""
