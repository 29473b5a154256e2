#!/usr/bin/env bash
# bench/before.sh: figure 5, before-save events.
#
# (a) The latency a before-save call adds: bench/pace.py sends PUTs at
#     ET_BENCH_RATE (200) per second for ET_BENCH_E2E_SECONDS (20) to the
#     in-process console, capture on; measured: the location guarded with
#     EventTriggerBefore update, the endpoint nginx answering
#     {"type":"proceed"}; baseline: the same requests, same httpd, not
#     guarded. Round trips p50 / p99; target: p99 added <= 2 ms.
# (b) An endpoint that hangs: wrk on an unguarded location while
#     ET_BENCH_HANG_CLIENTS (8) clients keep asking a guarded location of
#     another site whose endpoint accepts connections and never answers
#     (EventTriggerBeforeTimeout 2s, EventTriggerBeforeConcurrency
#     ET_BENCH_BEFORE_CONC, default 4, of the 16 threads per child);
#     baseline: the same wrk while the same clients ask a guarded site
#     whose endpoint answers at once (nginx, proceed): the same load
#     without the hang. Target: ratio >= 0.9. (The figure without any
#     guarded load is printed too, for the load generator's own cost.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'cleanup_all; [ -n "${HANG_PID:-}" ] && kill "$HANG_PID" 2>/dev/null; [ -n "${LOAD_PID:-}" ] && kill "$LOAD_PID" 2>/dev/null; true' EXIT
RATE=${ET_BENCH_RATE:-200}
SECS=${ET_BENCH_E2E_SECONDS:-20}
WSECS=${ET_BENCH_SECONDS:-10}
CLIENTS=${ET_BENCH_HANG_CLIENTS:-8}
OUT=$W/before; rm -rf "$OUT"; mkdir -p "$OUT"
P_GUARD=$((ET_BENCH_PORT + 2))     # httpd: the site whose endpoint hangs
P_GUARD_OK=$((ET_BENCH_PORT + 3))  # httpd: the same, endpoint answering
P_HANG=$((ET_BENCH_PORT + 21))     # accepts, never answers

nginx_start
# nginx answers {"type":"proceed"} under /before/ (see nginx.conf.in)

# -- (a) latency -----------------------------------------------------------
GUARD='<Location /console/member>
    EventTriggerBefore update
</Location>'
lat() {                                # NAME EXTRA -> round trip p50 / p99
    httpd_start "before-$1" on "$P_NGINX" "$2"
    # the endpoint is nginx's /before/: proceed to every pre-update
    python3 "$BENCH/pace.py" --url "http://127.0.0.1:$P_HTTPD/console/member/" \
        --rate "$RATE" --seconds "$SECS" --out "$OUT/$1.txt"
    httpd_stop
    python3 "$BENCH/e2e.py" --rtt "$OUT/$1.txt"
}
ROOT_BEFORE="EventTriggerEndpoint http://127.0.0.1:$P_NGINX/before"
say "baseline: $RATE PUT/s for ${SECS}s, not guarded"
BASE=$(lat plain "$ROOT_BEFORE")
say "  $BASE"
say "guarded: the same with EventTriggerBefore update (nginx answers proceed)"
GUARDED=$(lat guarded "$ROOT_BEFORE
$GUARD")
say "  $GUARDED"
# every guarded PUT must have been asked and let through (a 503 would mean
# the endpoint was not reached, and the figure would measure nothing)
BAD=$(awk '$4 < 200 || $4 > 299' "$OUT/guarded.txt" | wc -l)
[ "$BAD" = 0 ] || say "WARNING: $BAD guarded requests were not answered 2xx"
get() { sed -n "s/.* $1=\(-\{0,1\}[0-9.na]*\).*/\1/p" <<<"$2"; }
B50=$(get p50_ms "$BASE"); B99=$(get p99_ms "$BASE")
G50=$(get p50_ms "$GUARDED"); G99=$(get p99_ms "$GUARDED")
ADD99=$(calc "round($G99 - $B99, 3)")
result "5a before-save at ${RATE}/s: p50 (ms)" "$G50" "$B50" "$(ratio "$G50" "$B50")" "(info)" "-" ""
result "5a before-save at ${RATE}/s: p99 (ms)" "$G99" "$B99" "$(ratio "$G99" "$B99")" "added <= 2 ms (+$ADD99)" "$(verdict_le "$ADD99" 2)" ""

# -- (b) a hanging endpoint -------------------------------------------------------
python3 - "$P_HANG" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c)              # read nothing, answer nothing
PY
HANG_PID=$!
wait_port "$P_HANG" "the hanging endpoint"
guarded_site() {                       # PORT ENDPOINT
    printf '%s\n' "Listen 127.0.0.1:$1
<VirtualHost 127.0.0.1:$1>
    EventTriggerEndpoint $2
    EventTriggerBeforeTimeout 2s
    EventTriggerBeforeConcurrency ${ET_BENCH_BEFORE_CONC:-4}
    <Location /console/member>
        SetHandler et-console
        EventTrigger member
        EventTriggerBefore update
    </Location>
</VirtualHost>"
}
httpd_start hang on "$P_NGINX" "$(guarded_site "$P_GUARD" "http://127.0.0.1:$P_HANG/hooks")" \
    "$(guarded_site "$P_GUARD_OK" "http://127.0.0.1:$P_NGINX/before")"
guarded_load() {                       # PORT OUT: background clients
    python3 - "$1" "$CLIENTS" "$2" <<'PY' &
import http.client, sys, threading, time
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
def run(i):
    k = 0
    while True:
        k += 1
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        t0 = time.time()
        c.request("PUT", "/console/member/h%d-%d" % (i, k), body=b'{"a":1}',
                  headers={"Content-Type": "application/json"})
        st = c.getresponse().status
        c.close()
        with lock, open(out, "a") as f:
            f.write("%d %.3f\n" % (st, time.time() - t0))
        time.sleep(0.05)
for i in range(n):
    threading.Thread(target=run, args=(i,), daemon=True).start()
while True:
    time.sleep(1)
PY
    LOAD_PID=$!
    sleep 1
}
load_stop() { kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=; }
answers() {                            # FILE: what the guarded clients got
    python3 - "$1" <<'PY' >&2
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
st = {}
for s, _ in rows:
    st[s] = st.get(s, 0) + 1
mx = max((float(t) for _, t in rows), default=0)
print("==> guarded requests meanwhile: %d, by status %s, slowest %.2f s" % (len(rows), st, mx))
PY
}
say "wrk PUT on the unguarded site for ${WSECS}s, alone (info)"
wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 16 "$WSECS"
ALONE=$WRK_RPS
say "baseline: the same while $CLIENTS clients ask a guarded site whose endpoint answers"
guarded_load "$P_GUARD_OK" "$OUT/answered.txt"
wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 16 "$WSECS"
QUIET=$WRK_RPS
load_stop
answers "$OUT/answered.txt"
say "the same while they ask the guarded site whose endpoint hangs"
guarded_load "$P_GUARD" "$OUT/guarded-answers.txt"
wrk_put "http://127.0.0.1:$P_HTTPD/console/member/" 16 "$WSECS"
HUNG=$WRK_RPS
load_stop
httpd_stop
answers "$OUT/guarded-answers.txt"
result "5b unguarded rate, no guarded load (req/s, info)" "$ALONE" "-" "-" "(info)" "-" ""
result "5b unguarded rate while an endpoint hangs (req/s)" "$HUNG" "$QUIET" "$(ratio "$HUNG" "$QUIET")" ">= 0.9" "$(verdict_ge "$(ratio "$HUNG" "$QUIET")" 0.9)" ""
