#!/usr/bin/env bash
# bench/hot.sh: figure 14, per-object order at constant cost (issue 14).
#
# Backlogs are put straight into a fresh outbox (bench/fill.sh, sqlite3):
# 100,000 rows take ~2 s that way, while capturing them with wrk with the
# receiver down would take ~20 s for distinct objects and, for one hot
# object on a module whose claim walks the object's backlog, far longer.
# Event i of a backlog of K objects goes to member hot-(i % K): each
# object's events are spread over the whole backlog.
#
# (a) Capture while one object has a backlog. Receiver down (nothing
#     listens on the endpoint's port), default retry schedule. wrk -c16
#     for ET_BENCH_SECONDS (10) after a 2 s warm-up:
#       hot:    HOT_BACKLOG (100,000) pending events of member hot-0, and
#               every request updates hot-0 again (a script hammering one
#               object while the customer's endpoint is down);
#       spread: the same number pending over distinct members, every
#               request a new member (the baseline).
#     ET_BENCH_ROUNDS (3) alternating rounds, medians. Target: ratio >=
#     0.95. Then, with no load, the dispatcher process's CPU
#     (/proc/PID/stat utime + stime) over HOT_IDLE (10) seconds while hot-0's
#     head waits for its retry: target < 1% of a core (beside: the same
#     window of the spread case). The dispatcher's CPU under the wrk load
#     is printed for information.
# (b) One object's backlog of HOT_DRAIN (20,000) drained into nginx:
#     events/s from httpd's start to the last delivery's done_at (at most
#     HOT_DRAIN_MAX, 120 s: then what was delivered by then). Target >=
#     2,000/s. Beside it: the same number of distinct objects. The floor
#     of a chained drain is printed too: one call at a time by libcurl
#     alone (bench/calls.c, 1 connection) and one durable write (a WAL
#     commit with synchronous=FULL, as the module's, on this disk): one
#     object's events go one after the other, each a call and a finish.
# (c) HOT_OBJECTS (1,000) objects x HOT_PER (100) events against as many
#     distinct objects: drain rate ratio. Target >= 0.9. Two layouts:
#     each object's events interleaved with the others' (as objects
#     changed at the same time make them) and in a row (grouped).
#     ET_BENCH_ROUNDS rounds, medians of the ratios within each. Beside
#     each layout its floor, SQLite alone making the same rounds' writes
#     (bench/pages.py): the pages per event each layout costs; and the
#     grouped layout's floor with the outcomes alone (pages.py
#     --outcomes-only: each finish writes its row, nothing else), what
#     any outbox that keeps an event's outcome in its row pays there.
#
# Knobs: ET_BENCH_HOT_SCALE (divides every size below, e.g. 10 for a
# quick run), ET_BENCH_HOT_BACKLOG, ET_BENCH_HOT_DRAIN, ET_BENCH_HOT_OBJECTS,
# ET_BENCH_HOT_PER, ET_BENCH_HOT_IDLE, ET_BENCH_HOT_DRAIN_MAX,
# ET_BENCH_HOT_PARTS ("a b c"), ET_BENCH_SECONDS, ET_BENCH_ROUNDS,
# ET_BENCH_PERF (1: perf record of the dispatcher during each drain),
# ET_BENCH_HOT_ROUND (14c's floor: events a round, 32).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap cleanup_all EXIT
need wrk wrk
SCALE=${ET_BENCH_HOT_SCALE:-1}
HOT_BACKLOG=${ET_BENCH_HOT_BACKLOG:-$((100000 / SCALE))}
HOT_DRAIN=${ET_BENCH_HOT_DRAIN:-$((20000 / SCALE))}
HOT_OBJECTS=${ET_BENCH_HOT_OBJECTS:-$((1000 / SCALE))}
HOT_PER=${ET_BENCH_HOT_PER:-100}
HOT_IDLE=${ET_BENCH_HOT_IDLE:-10}
HOT_DRAIN_MAX=${ET_BENCH_HOT_DRAIN_MAX:-120}
PARTS=${ET_BENCH_HOT_PARTS:-a b c}
# KEY's figure in a "key=value ..." line of bench/pages.py or calls.c
field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }
ROUNDS=${ET_BENCH_ROUNDS:-3}
SECS=${ET_BENCH_SECONDS:-10}
CONNS=16
URL=http://127.0.0.1:$P_HTTPD/console/member/
NGX_URL=http://127.0.0.1:$P_NGINX/cb/v1/member/
EVBODY='{"username": "partner1_dev1", "email": "dev1@example.com", "phone": "+1 555 0100", "status": "active", "id": "hot-0","object_type":"member"}'

# hot_db N K [grouped] -> $W/hot-N-K[-grouped].db: N pending events over K
# objects (K = N: every event its own object), cached like backlog_db's.
hot_db() {
    local n=$1 k=$2 layout=${3:-interleaved} f=$W/hot-$1-$2${3:+-$3}.db
    local s; s=$(schema_db)
    if [ ! -s "$f" ] || [ "$s" -nt "$f" ]; then
        say "making a backlog of $n events over $k objects, $layout ($f)"
        cp "$s" "$f.tmp"
        local t0; t0=$(date +%s.%N)
        "$BENCH/fill.sh" "$f.tmp" "$n" "http://127.0.0.1:$P_NGINX/cb" "$k" "$layout" >/dev/null
        mv "$f.tmp" "$f"
        say "made in $(calc "round($(date +%s.%N) - $t0, 1)") s, $(du -h "$f" | cut -f1)"
    fi
    echo "$f"
}
threads_cpu() {                       # PID -> "comm=ticks ..." of its threads
    local d
    for d in /proc/"$1"/task/*; do
        printf '%s=%s ' "$(cat "$d/comm" 2>/dev/null)" "$(awk '{print $14 + $15}' "$d/stat" 2>/dev/null)"
    done
}
threads_delta() {                     # "before" "after" -> per thread name, ms
    python3 - "$1" "$2" <<'PY'
import sys, collections
def parse(s):
    t = collections.Counter()
    for kv in s.split():
        k, _, v = kv.rpartition("=")
        t[k] += int(v or 0)
    return t
a, b = parse(sys.argv[1]), parse(sys.argv[2])
print(" ".join("%s %d ms" % (k, (b[k] - a[k]) * 10) for k in sorted(b, key=lambda k: a[k] - b[k]) if b[k] > a[k]) or "none")
PY
}
pct_core() {                          # microseconds seconds -> % of a core
    calc "round($1 / 1e6 / $2 * 100, 2)"
}

# --- (a) ---------------------------------------------------------------------
part_a() {
    local db_hot db_spread
    db_hot=$(hot_db "$HOT_BACKLOG" 1)
    db_spread=$(hot_db "$HOT_BACKLOG" "$HOT_BACKLOG")
    nginx_stop                        # the receiver is down throughout (a)
    local -a rps_hot rps_spread
    local r mode dpid d0 d1 idle_hot=0 idle_spread=0 load_hot=0 load_spread=0
    for r in $(seq "$ROUNDS"); do
        for mode in spread hot; do
            httpd_conf "hot-a-$mode" on "$P_CLOSED"
            if [ "$mode" = hot ]; then install_outbox "$db_hot"; else install_outbox "$db_spread"; fi
            httpd_run
            dpid=$(dispatcher_pid)
            local env=()
            [ "$mode" = hot ] && env=(ET_ID=hot-0)
            wrk_put "$URL" "$CONNS" 2 "${env[@]}" >/dev/null 2>&1      # warm-up
            say "round $r, $mode: wrk -c$CONNS -d${SECS}s, $HOT_BACKLOG pending, receiver down"
            d0=$(cpu_us "$dpid"); local th0; th0=$(threads_cpu "$dpid")
            wrk_put "$URL" "$CONNS" "$SECS" "${env[@]}"
            d1=$(cpu_us "$dpid")
            say "$mode: the dispatcher's threads under load: $(threads_delta "$th0" "$(threads_cpu "$dpid")")"
            local load; load=$(pct_core "$((d1 - d0))" "$SECS")
            # no load: the dispatcher waits (hot: for hot-0's head's retry)
            d0=$(cpu_us "$dpid"); th0=$(threads_cpu "$dpid")
            sleep "$HOT_IDLE"; d1=$(cpu_us "$dpid")
            say "$mode: the dispatcher's threads idle: $(threads_delta "$th0" "$(threads_cpu "$dpid")")"
            local idle; idle=$(pct_core "$((d1 - d0))" "$HOT_IDLE")
            say "$mode: dispatcher CPU $load% of a core under load, $idle% idle (${HOT_IDLE} s); $(ob_count 0) pending"
            if [ "$mode" = hot ]; then
                rps_hot+=("$WRK_RPS"); idle_hot=$idle; load_hot=$load
                sqlite3 -readonly "$(OUTBOX)" "PRAGMA busy_timeout=5000; SELECT 'head of hot-0: attempts ' || attempts || ', due in ' || ((due - CAST(strftime('%s','now') AS INTEGER) * 1000000) / 1000000) || ' s' FROM et_event WHERE oid = 'hot-0' AND state = 0 ORDER BY id LIMIT 1;" 2>/dev/null | tail -1 >&2 || true
            else
                rps_spread+=("$WRK_RPS"); idle_spread=$idle; load_spread=$load
            fi
            httpd_stop
        done
    done
    say "rps spread: ${rps_spread[*]}  hot: ${rps_hot[*]}"
    local R_HOT R_SPREAD RT
    R_HOT=$(median "${rps_hot[@]}"); R_SPREAD=$(median "${rps_spread[@]}")
    RT=$(ratio "$R_HOT" "$R_SPREAD")
    result "14a capture, 1 object ${HOT_BACKLOG} pending (req/s)" "$(printf %.0f "$R_HOT")" "$(printf %.0f "$R_SPREAD")" "$RT" ">= 0.95" "$(verdict_ge "$RT" 0.95)" ""
    cpu_ratio() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print("%.3g" % (a / b) if b else "-")' "$1" "$2"; }
    result "14a dispatcher CPU, waiting for the head (% core)" "$idle_hot" "$idle_spread" "$(cpu_ratio "$idle_hot" "$idle_spread")" "< 1%" "$(python3 -c "import sys; print('pass' if float(sys.argv[1]) < 1 else 'falls short')" "$idle_hot")" ""
    result "14a dispatcher CPU under the load (% core)" "$load_hot" "$load_spread" "$(cpu_ratio "$load_hot" "$load_spread")" "(info)" "-" ""
}

# drain_of NAME DB N -> sets RATE (from httpd's start) and RUN_RATE (from
# the first call on)
drain_of() {
    local name=$1 db=$2 n=$3
    httpd_conf "hot-$name" on "$P_NGINX"
    install_outbox "$db"
    local t0; t0=$(date +%s.%N)
    httpd_run
    # ET_BENCH_PERF=1: the dispatcher's profile during the drain, for
    # perf report -i $W/perf-NAME.data (not a figure: perf costs CPU)
    local perf_pid=
    if [ -n "${ET_BENCH_PERF:-}" ]; then
        perf record -q -g -o "$W/perf-$name.data" -p "$(dispatcher_pid)" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    ET_BENCH_DRAIN_MAX=$HOT_DRAIN_MAX drain_until "$n" "$t0"
    [ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; }
    RATE=$(calc "$DRAIN_DONE / $DRAIN_SECS")
    RUN_RATE=$(calc "round(($DRAIN_DONE - 1) / $DRAIN_RUN, 1) if $DRAIN_RUN > 0 else 0")
    local dpid; dpid=$(dispatcher_pid)
    # what the dispatcher wrote (WAL frames, checkpoints), per event: the
    # pages a layout makes each finish dirty
    local wr; wr=$(awk '/^wchar:/ {print $2}' "/proc/$dpid/io" 2>/dev/null || echo 0)
    say "$name: $DRAIN_DONE of $n delivered in $(printf %.2f "$DRAIN_SECS") s from httpd's start: $(printf %.1f "$RATE")/s (first call after $(printf %.2f "$DRAIN_START") s; $RUN_RATE/s from the first call on); dispatcher CPU $(calc "round($(cpu_us "$dpid") / 1e6, 2)") s, wrote $(calc "round(${wr:-0} / 1024 / max($DRAIN_DONE, 1), 1)") KB/event"
    # per event, CPU of the claiming (main) and the calling thread: what
    # each costs beside the wall time an event takes
    local per=$((DRAIN_DONE > 0 ? DRAIN_DONE : 1))
    say "$name: per event $(calc "round($DRAIN_SECS * 1e6 / $per)") µs wall; CPU µs: claiming thread $(calc "round($(thread_cpu_us "$dpid" "$(cat /proc/"$dpid"/comm)") / $per)"), calling thread $(calc "round($(thread_cpu_us "$dpid" et-calls) / $per)"), checkpointer $(calc "round($(thread_cpu_us "$dpid" et-checkpoint) / $per)")"
    local chained; chained=$(grep -c ' chained=1' "$HT_DIR/logs/error.log" 2>/dev/null || true)
    [ "${chained:-0}" = 0 ] || say "$name: $chained chained calls logged"
    httpd_stop
}
drain_label() {                       # label -> label, with [first N in S s] if cut short
    if [ "$DRAIN_DONE" -lt "$2" ]; then
        echo "$1 [first $DRAIN_DONE in $(printf %.0f "$DRAIN_SECS") s]"
    else
        echo "$1"
    fi
}

# One durable write on this disk: a WAL commit of one UPDATE with
# synchronous=FULL (as lib/et_outbox_dbd.c opens the outbox), in µs: the
# median of 5 batches of 200 (others' disk writes move it a lot).
durable_write_us() {
    local db=$W/durable.db n=200 sql t0 t1 b
    local -a per
    rm -f "$db" "$db-wal" "$db-shm"
    sqlite3 "$db" 'PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 0);' >/dev/null
    sql=$(printf 'PRAGMA synchronous=FULL;\n'; for i in $(seq $n); do printf 'UPDATE t SET v = %d WHERE id = 1;\n' "$i"; done)
    for b in 1 2 3 4 5; do
        t0=$(date +%s%N); sqlite3 "$db" <<<"$sql" >/dev/null; t1=$(date +%s%N)
        per+=("$(calc "($t1 - $t0) / 1000 / $n")")
    done
    rm -f "$db" "$db-wal" "$db-shm"
    calc "round($(median "${per[@]}"), 1)"
}

# --- (b) ---------------------------------------------------------------------
part_b() {
    local db_hot db_spread
    db_hot=$(hot_db "$HOT_DRAIN" 1)
    db_spread=$(hot_db "$HOT_DRAIN" "$HOT_DRAIN")
    nginx_start
    drain_of b-spread "$db_spread" "$HOT_DRAIN"; local R_SPREAD=$RATE
    drain_of b-hot "$db_hot" "$HOT_DRAIN"; local R_HOT=$RATE
    local label; label=$(drain_label "14b drain, 1 object x ${HOT_DRAIN} (ev/s)" "$HOT_DRAIN")
    result "$label" "$(printf %.0f "$R_HOT")" "$(printf %.0f "$R_SPREAD")" "$(ratio "$R_HOT" "$R_SPREAD")" ">= 2000/s" "$(verdict_ge "$R_HOT" 2000)" ""
    # The ceiling of a chain (one object's events go one after the other):
    # libcurl alone making the same PUTs one at a time (curl_easy_perform,
    # bench/calls.c threads 1; its multi mode with one transfer at a time
    # is slower than the module's chains, so no ceiling). And one durable
    # write: a chain that committed each finish before its next call could
    # not go faster than one call plus one write per event.
    local bin line easy w calls=$((HOT_DRAIN < 20000 ? HOT_DRAIN : 20000))
    local u="${NGX_URL}hot-0?event=post-update&txn=0123456789abcdef0123456789abcdef"
    bin=$(calls_bin)
    line=$("$bin" "$u" "$calls" 1 threads "$EVBODY") || die "bench/calls.c failed: $line"
    say "libcurl alone, one call at a time (curl_easy_perform): $line"
    easy=$(field "$line" rate)
    w=$(durable_write_us)
    local ceil; ceil=$(calc "round(1e6 / (1e6 / $easy + $w))")
    say "one durable write (WAL commit, synchronous=FULL): $w µs; a call then a write, one after the other: $ceil/s"
    result "14b ceiling: 1 call at a time, libcurl alone (calls/s)" "$(printf %.0f "$easy")" "$(printf %.0f "$R_HOT")" "$(ratio "$easy" "$R_HOT")" "(info)" "-" ""
    result "14b one durable write (µs)" "$w" "-" "-" "(info: call+write $ceil/s)" "-" ""
}

# --- (c) ---------------------------------------------------------------------
# Two layouts of the same events: interleaved (event i of object i % K, as
# objects changed at the same time make them) and grouped (each object's
# events in a row: its blocked events come before the next object's head
# in the due order, which a claim that walks blocked events pays for).
# ROUNDS alternating rounds (baseline, interleaved, grouped), each ratio
# within its round; medians. Beside each, the floor: the same rounds'
# writes made by SQLite alone (bench/pages.py, rounds of HOT_ROUND events,
# on copies of the same backlogs), with the pages each event costs.
HOT_ROUND=${ET_BENCH_HOT_ROUND:-32}
# The grouped layout also beside its floor with the outcomes alone (see
# (c) at the top).
floor_of() {                          # DB [--outcomes-only] -> "rate pages split..." of bench/pages.py
    local copy=$W/pages.db
    cp "$1" "$copy"; rm -f "$copy-wal" "$copy-shm"
    python3 "$BENCH/pages.py" ${2:-} "$copy" "$HOT_ROUND" || die "bench/pages.py failed on $1"
    rm -f "$copy" "$copy-wal" "$copy-shm"
}
part_c() {
    local n=$((HOT_OBJECTS * HOT_PER)) db_spread layout r
    local -A rate ratio frate fratio fpages
    db_spread=$(hot_db "$n" "$n")
    for layout in interleaved grouped; do hot_db "$n" "$HOT_OBJECTS" "$layout" >/dev/null; done
    nginx_start
    for r in $(seq "$ROUNDS"); do
        say "14c round $r of $ROUNDS"
        drain_of c-spread "$db_spread" "$n"; local R_SPREAD=$RATE D_SPREAD=$DRAIN_DONE
        rate[spread]+=" $R_SPREAD"
        local fl; fl=$(floor_of "$db_spread") || exit 1; say "SQLite alone, distinct objects: $fl"
        local F_SPREAD; F_SPREAD=$(field "$fl" rate)
        frate[spread]+=" $F_SPREAD"
        fpages[spread]+=" $(field "$fl" pages)"
        fl=$(floor_of "$db_spread" --outcomes-only) || exit 1; say "SQLite alone, outcomes only, distinct objects: $fl"
        local O_SPREAD; O_SPREAD=$(field "$fl" rate)
        frate[o-spread]+=" $O_SPREAD"
        fpages[o-spread]+=" $(field "$fl" pages)"
        for layout in interleaved grouped; do
            local db; db=$(hot_db "$n" "$HOT_OBJECTS" "$layout")
            drain_of "c-$layout" "$db" "$n"
            [ "$D_SPREAD" -ge "$n" ] || say "baseline cut short: $D_SPREAD of $n"
            rate[$layout]+=" $RATE"
            ratio[$layout]+=" $(ratio "$RATE" "$R_SPREAD")"
            fl=$(floor_of "$db") || exit 1; say "SQLite alone, $layout: $fl"
            local F; F=$(field "$fl" rate)
            frate[$layout]+=" $F"
            fratio[$layout]+=" $(ratio "$F" "$F_SPREAD")"
            fpages[$layout]+=" $(field "$fl" pages)"
            [ "$layout" = grouped ] || continue
            fl=$(floor_of "$db" --outcomes-only) || exit 1; say "SQLite alone, outcomes only, grouped: $fl"
            F=$(field "$fl" rate)
            frate[o-grouped]+=" $F"
            fratio[o-grouped]+=" $(ratio "$F" "$O_SPREAD")"
            fpages[o-grouped]+=" $(field "$fl" pages)"
        done
    done
    for layout in interleaved grouped; do
        local RT FRT
        RT=$(median ${ratio[$layout]}); FRT=$(median ${fratio[$layout]})
        say "14c $layout: ratios per round:${ratio[$layout]}; SQLite alone:${fratio[$layout]}"
        result "14c drain, ${HOT_OBJECTS} objects x ${HOT_PER}, $layout (ev/s)" \
            "$(printf %.0f "$(median ${rate[$layout]})")" "$(printf %.0f "$(median ${rate[spread]})")" \
            "$(printf %.3f "$RT")" ">= 0.9" "$(verdict_ge "$RT" 0.9)" ""
        result "14c floor: SQLite alone, $layout (ev/s)" \
            "$(printf %.0f "$(median ${frate[$layout]})")" "$(printf %.0f "$(median ${frate[spread]})")" \
            "$(printf %.3f "$FRT")" "(info: pages/event $(median ${fpages[$layout]}) vs $(median ${fpages[spread]}))" "-" ""
    done
    say "14c grouped, outcomes only: SQLite alone per round:${fratio[o-grouped]}"
    result "14c floor: SQLite alone, outcomes only, grouped (ev/s)" \
        "$(printf %.0f "$(median ${frate[o-grouped]})")" "$(printf %.0f "$(median ${frate[o-spread]})")" \
        "$(printf %.3f "$(median ${fratio[o-grouped]})")" \
        "(info: pages/event $(median ${fpages[o-grouped]}) vs $(median ${fpages[o-spread]}))" "-" ""
}

for p in $PARTS; do
    case $p in
        a) part_a ;;
        b) part_b ;;
        c) part_c ;;
        *) die "ET_BENCH_HOT_PARTS: a, b or c, not $p" ;;
    esac
done
