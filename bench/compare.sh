#!/usr/bin/env bash
# bench/compare.sh REV_A REV_B: figure 1 (capture) for two builds of the
# module side by side, to see what a change buys when one run of
# capture.sh against the last table would drown it in the machine's noise.
#
# Builds both revisions (a git revision, or "worktree" for the tree as it
# is), then runs rounds of: httpd without the module (the baseline), A and
# B with delivery held (receiver down) and on (nginx), in that order, each
# wrk -c16 for ET_BENCH_SECONDS (default 8) after a 2 s warm-up. Prints
# every round, then the medians with their ratio to the baseline and B/A.
#   bash bench/compare.sh HEAD worktree
#   ET_BENCH_ROUNDS=5 bash bench/compare.sh b826e8e ea3f8bd
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need wrk wrk
[ $# -eq 2 ] || die "usage: bench/compare.sh REV_A REV_B"
ROUNDS=${ET_BENCH_ROUNDS:-3}
SECS=${ET_BENCH_SECONDS:-8}
URL=http://127.0.0.1:$P_HTTPD/console/member/
CMP=$W/compare
mkdir -p "$CMP"
chmod 755 "$W" "$CMP"

for side in A B; do
    rev=$1; shift
    ET_BENCH_REV=$rev build
    install -m 644 "$MODULE" "$CMP/$side.so"
    echo "$side: $(cat "$W/built-rev")"
done

nginx_start
declare -A runs
for r in $(seq "$ROUNDS"); do
    for what in off A-held A-on B-held B-on; do
        side=${what%%-*} mode=${what#*-}
        if [ "$what" = off ]; then
            httpd_start compare-off nomodule "$P_NGINX"
        else
            ep=$P_NGINX; [ "$mode" = held ] && ep=$P_CLOSED
            MODULE=$CMP/$side.so httpd_start "compare-$what" on "$ep"
        fi
        wrk_put "$URL" 16 2 >/dev/null 2>&1
        wrk_put "$URL" 16 "$SECS" >/dev/null
        printf 'round %d %-7s %9.1f req/s  p99 %6.3f ms\n' "$r" "$what" "$WRK_RPS" \
            "$(calc "$WRK_P99 / 1000")"
        runs[$what]+=" $WRK_RPS"
        httpd_stop
    done
done

off=$(median ${runs[off]})
printf '\n%-7s %10s %8s\n' "" "req/s" "/ off"
for what in off A-held B-held A-on B-on; do
    m=$(median ${runs[$what]})
    printf '%-7s %10.1f %8s\n' "$what" "$m" "$(ratio "$m" "$off")"
done
for mode in held on; do
    printf 'B / A, %s: %s\n' "$mode" \
        "$(ratio "$(median ${runs[B-$mode]})" "$(median ${runs[A-$mode]})")"
done
