#!/usr/bin/env bash
# bench/run-all.sh: build, run every figure, print the table.
#
#   bash bench/run-all.sh            (as root, on 127.0.0.1 ports 10000-10100)
#
# Needs (Debian): apache2-bin apache2-dev libaprutil1-dbd-sqlite3 libsqlite3-dev
# libjansson-dev libcurl4-openssl-dev libssl-dev pkg-config autoconf automake
# make gcc sqlite3 python3 wrk nginx-light. ET_BENCH_INSTALL=1 installs them.
# Work files: ET_BENCH_DIR (default /tmp/et-bench); backlogs are cached there.
# Knobs (environment): ET_BENCH_SECONDS (wrk runs, 10), ET_BENCH_ROUNDS
# (capture rounds, 3), ET_BENCH_BACKLOG (figure 2, 100000),
# ET_BENCH_DRAIN_MAX (figure 2's longest drain, 120 s), ET_BENCH_WORKERS (8),
# ET_BENCH_RATE (200), ET_BENCH_E2E_SECONDS (20), ET_BENCH_BIG (1000000),
# ET_BENCH_SMALL (10000), ET_BENCH_WINDOW (60), ET_BENCH_ROUNDS_4B (3),
# ET_BENCH_HOT_SCALE (figure 14a-c's sizes divided by it, 1; see
# bench/hot.sh for its other knobs), ET_BENCH_ONLY="1 3" (figures; 14:
# 14a-c, bench/hot.sh; 14d: two instances on one PostgreSQL,
# bench/multi.sh, ET_BENCH_MULTI_BACKLOG events, 20000),
# ET_BENCH_REV (what to build: HEAD by default, a commit, or worktree).
# Every figure is measured beside its baseline in the same run, as a ratio.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "run as root (httpd drops to www-data)"
PKGS=(apache2-bin apache2-dev libaprutil1-dbd-sqlite3 libsqlite3-dev libjansson-dev
      libcurl4-openssl-dev libssl-dev pkg-config autoconf automake make gcc
      sqlite3 python3 wrk nginx-light)
if [ "${ET_BENCH_INSTALL:-0}" = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${PKGS[@]}" >/dev/null
fi
need wrk wrk; need nginx nginx-light; need sqlite3 sqlite3; need apxs apache2-dev
ONLY=${ET_BENCH_ONLY:-1 2 3 4 5 14 14d}
mkdir -p "$W"
: >"$RESULTS"
LOG=$W/run-all.log
{
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%d MB", $2/1024}' /proc/meminfo)"
    echo "# $($HTTPD -v | head -1 | sed 's/Server version: //'), nginx $($NGINX -v 2>&1 | sed 's/.*nginx\///'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}'), SQLite $(sqlite3 --version | awk '{print $1}'), $(curl-config --version 2>/dev/null || echo libcurl)"
} | tee "$LOG" >&2
uptime >&2
"$BENCH/build.sh"
echo "# module built from: $(cat "$W/built-rev") (ET_BENCH_REV=$ET_BENCH_REV)" | tee -a "$LOG" >&2
for f in $ONLY; do
    case $f in
        1) "$BENCH/capture.sh" ;;
        2) ET_BENCH_DRAIN_MAX=${ET_BENCH_DRAIN_MAX:-120} "$BENCH/delivery.sh" ;;
        3) "$BENCH/latency.sh" ;;
        4) "$BENCH/backlog.sh" ;;
        5) "$BENCH/before.sh" ;;
        14) "$BENCH/hot.sh" ;;
        14d) "$BENCH/multi.sh" ;;
    esac 2>&1 | tee -a "$LOG" >&2
done
uptime >&2
echo
python3 - "$RESULTS" <<'PY' | tee -a "$LOG"
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
head = ["figure", "value", "baseline", "ratio", "target", "result"]
rows = [r[:6] for r in rows]
w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
fmt = "| " + " | ".join("%%-%ds" % x for x in w) + " |"
print(fmt % tuple(head))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(fmt % tuple(r))
PY
