#!/usr/bin/env bash
# bench/latency.sh: figure 3, end-to-end latency at a steady rate.
#
# bench/pace.py sends PUTs at ET_BENCH_RATE (default 200) per second for
# ET_BENCH_E2E_SECONDS (default 20) to the in-process console with capture
# on; the receiver, bench/arrival.py, logs each call's arrival with
# microseconds (nginx's $msec has 1 ms resolution, too coarse: the p50 is
# well under 1 ms); bench/e2e.py matches them by object id: latency =
# arrival at the receiver - the moment the client had read the console's
# whole answer.
# Baseline: the wire's own latency, the same paced PUTs sent straight to
# nginx (round trip, same client). Target: p99 <= 5 ms.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
RATE=${ET_BENCH_RATE:-200}
SECS=${ET_BENCH_E2E_SECONDS:-20}
OUT=$W/latency; rm -rf "$OUT"; mkdir -p "$OUT"

nginx_start
: >"$NGX_DIR/logs/arrival.log"
say "baseline: $RATE PUT/s for ${SECS}s straight to nginx"
python3 "$BENCH/pace.py" --url "http://127.0.0.1:$P_NGINX/cb/v1/member/" \
    --query '?event=post-update&txn=0123456789abcdef0123456789abcdef' \
    --rate "$RATE" --seconds "$SECS" --out "$OUT/direct.txt"
BASE=$(python3 "$BENCH/e2e.py" --rtt "$OUT/direct.txt")
say "direct round trip: $BASE"

python3 "$BENCH/arrival.py" "$P_ARRIVAL" "$OUT/arrival.log" &
ARRIVAL_PID=$!
wait_port "$P_ARRIVAL" arrival.py
httpd_start latency on "$P_ARRIVAL"
say "$RATE admin PUT/s for ${SECS}s through httpd + capture, delivered to arrival.py"
python3 "$BENCH/pace.py" --url "http://127.0.0.1:$P_HTTPD/console/member/" \
    --rate "$RATE" --seconds "$SECS" --out "$OUT/calls.txt"
say "console round trip: $(python3 "$BENCH/e2e.py" --rtt "$OUT/calls.txt")"
N=$(wc -l <"$OUT/calls.txt")
ET_BENCH_DRAIN_MAX=30 drain_until "$N" "$(date +%s.%N)"
# the outbox's own view (dispatcher clock, µs): done_at - created
sqlite3 -readonly "$(OUTBOX)" "SELECT (done_at - created) FROM et_event WHERE state = 1" >"$OUT/outbox-ms.txt"
httpd_stop
nginx_stop
kill "$ARRIVAL_PID" 2>/dev/null; wait "$ARRIVAL_PID" 2>/dev/null
E2E=$(python3 "$BENCH/e2e.py" "$OUT/calls.txt" "$OUT/arrival.log")
say "end to end: $E2E"
python3 - "$OUT/outbox-ms.txt" <<'PY' >&2
import sys
xs = sorted(int(l) / 1000.0 for l in open(sys.argv[1]) if l.strip())
if xs:
    print("==> outbox done_at - created: n=%d p50=%.3f ms p99=%.3f ms max=%.3f ms"
          % (len(xs), xs[len(xs) // 2], xs[min(len(xs) - 1, int(len(xs) * 0.99))], xs[-1]))
PY
get() { sed -n "s/.* $1=\(-\{0,1\}[0-9.na]*\).*/\1/p" <<<"$2"; }
P50=$(get p50_ms "$E2E"); P99=$(get p99_ms "$E2E"); MISS=$(get missing "$E2E")
B50=$(get p50_ms "$BASE"); B99=$(get p99_ms "$BASE")
[ "$MISS" = 0 ] || say "WARNING: $MISS calls did not arrive"
result "3 end-to-end at ${RATE}/s: p50 (ms)" "$P50" "$B50" "$(ratio "$P50" "$B50")" "(info)" "-" ""
result "3 end-to-end at ${RATE}/s: p99 (ms)" "$P99" "$B99" "$(ratio "$P99" "$B99")" "<= 5 ms" "$(verdict_le "$P99" 5)" ""
