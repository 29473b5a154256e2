# bench/lib.sh: shared helpers for the benchmark scripts (sourced, not run).
#
# Everything runs on 127.0.0.1, ports ET_BENCH_PORT.. (default 10000-10100),
# in ET_BENCH_DIR (default /tmp/et-bench). Results go to
# $ET_BENCH_DIR/results.tsv, one line per figure:
#   figure<TAB>value<TAB>baseline<TAB>ratio<TAB>target<TAB>verdict<TAB>unit

set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
: "${ET_BENCH_DIR:=/tmp/et-bench}"
: "${ET_BENCH_PORT:=10000}"
W=$ET_BENCH_DIR
HTTPD=/usr/sbin/apache2
MODDIR=/usr/lib/apache2/modules
NGINX=/usr/sbin/nginx
RESULTS=$W/results.tsv

# ports (fixed offsets inside 10000-10100)
P_HTTPD=$((ET_BENCH_PORT + 0))      # httpd: console (capture on/off by config)
P_STATUS=$((ET_BENCH_PORT + 1))     # httpd: status page
P_NGINX=$((ET_BENCH_PORT + 10))     # nginx receiver
P_NGINX_LOG=$((ET_BENCH_PORT + 11)) # nginx receiver that logs $msec per call
P_ARRIVAL=$((ET_BENCH_PORT + 12))   # bench/arrival.py: arrival times in µs
P_CLOSED=$((ET_BENCH_PORT + 20))    # nothing listens: receiver down

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# stop_pid, wait_port, port_closed, run_user
source "$REPO/tools/local.sh"
run_user

need() {                              # command package
    command -v "$1" >/dev/null 2>&1 || die "$1 is missing: apt-get install -y $2"
}

# --- results -------------------------------------------------------------
# result FIGURE VALUE BASELINE RATIO TARGET VERDICT UNIT
result() {
    mkdir -p "$W"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
    printf 'RESULT %-40s %12s %12s %8s  %-14s %s\n' "$1" "$2 $7" "$3" "$4" "$5" "$6" >&2
}
# ratio A B -> A/B with 3 decimals
ratio() { python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); r=a/b if b else float("nan"); print("%.3f" % r if abs(r) >= 0.1 else "%.2g" % r)' "$1" "$2"; }
# ge A B -> "pass" if A >= B else "falls short"
verdict_ge() { python3 -c 'import sys; print("pass" if float(sys.argv[1]) >= float(sys.argv[2]) else "falls short")' "$1" "$2"; }
verdict_le() { python3 -c 'import sys; print("pass" if float(sys.argv[1]) <= float(sys.argv[2]) else "falls short")' "$1" "$2"; }
calc() { python3 -c "import sys; print($1)"; }

# --- build -----------------------------------------------------------------
# The module and the in-process console, built in $W/build (the repository's
# own tree is left alone: others build there) from ET_BENCH_REV (default
# HEAD, i.e. what is committed; ET_BENCH_REV=worktree takes the working tree
# as it is, uncommitted changes included). ET_BENCH_MODULE=/path/to/.so skips
# the module's build.
MODULE=${ET_BENCH_MODULE:-$W/build/.libs/mod_eventtrigger.so}
CONSOLE_SO=$W/build/t/c-modules/et_console/.libs/mod_et_console.so
: "${ET_BENCH_REV:=HEAD}"

build() {
    local b=$W/build log=$W/build.log
    rm -rf "$b"; mkdir -p "$b"
    : >"$log"
    if [ "$ET_BENCH_REV" = worktree ]; then
        # tracked and untracked-but-not-ignored files: the tree as it is now
        (cd "$REPO" && git ls-files -co --exclude-standard -z | \
            xargs -0 tar -cf - 2>/dev/null) | tar -C "$b" -xf -
        BUILT_REV="$(cd "$REPO" && git rev-parse --short HEAD) + working tree"
    else
        (cd "$REPO" && git archive "$ET_BENCH_REV") | tar -C "$b" -xf -
        BUILT_REV=$(cd "$REPO" && git rev-parse --short "$ET_BENCH_REV")
    fi
    echo "$BUILT_REV" >"$W/built-rev"
    if [ -z "${ET_BENCH_MODULE:-}" ]; then
        say "building mod_eventtrigger $BUILT_REV in $b (log: $log)"
        (cd "$b" && autoreconf -fi && ./configure --with-apxs=/usr/bin/apxs && make) \
            >>"$log" 2>&1 || { tail -n 30 "$log" >&2; die "module build failed"; }
    fi
    [ -f "$MODULE" ] || die "no module at $MODULE"
    say "building the in-process console (t/c-modules/et_console) with apxs"
    (cd "$b/t/c-modules/et_console" && apxs -c mod_et_console.c -ljansson) >>"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "console build failed"; }
    [ -f "$CONSOLE_SO" ] || die "no console at $CONSOLE_SO"
}

# --- nginx (the receiver) -------------------------------------------------
NGX_DIR=$W/nginx
nginx_start() {
    mkdir -p "$NGX_DIR"/{logs,tmp}
    sed -e "s|@DIR@|$NGX_DIR|g" -e "s|@PORT@|$P_NGINX|g" -e "s|@PORT_LOG@|$P_NGINX_LOG|g" \
        "$BENCH/nginx.conf.in" >"$NGX_DIR/nginx.conf"
    [ -s "$NGX_DIR/nginx.pid" ] && nginx_stop
    "$NGINX" -p "$NGX_DIR" -c "$NGX_DIR/nginx.conf" -e "$NGX_DIR/logs/error.log" \
        || die "nginx did not start"
    wait_port "$P_NGINX" nginx
}
nginx_stop() {
    [ -s "$NGX_DIR/nginx.pid" ] || return 0
    local pid; pid=$(cat "$NGX_DIR/nginx.pid")
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$NGINX" ]; then stop_pid "$pid"; fi
    rm -f "$NGX_DIR/nginx.pid"
}

# --- httpd -------------------------------------------------------------------
# httpd_start NAME CAPTURE(on|off|nomodule) ENDPOINT_PORT [extra directives...]
HT_DIR=
httpd_conf() {
    local name=$1 capture=$2 ep=$3; shift 3
    HT_DIR=$W/httpd-$name
    rm -rf "$HT_DIR"; mkdir -p "$HT_DIR"/{conf,logs,run,state,htdocs}
    chmod 755 "$HT_DIR"
    local defs=""
    case $capture in
        on) defs="ET_MODULE ET_CAPTURE" ;;
        off) defs="ET_MODULE" ;;
        nomodule) defs="" ;;
        *) die "capture must be on, off or nomodule" ;;
    esac
    {
        for d in $defs; do echo "Define $d"; done
        sed -e "s|@DIR@|$HT_DIR|g" -e "s|@MODDIR@|$MODDIR|g" -e "s|@MODULE@|$MODULE|g" \
            -e "s|@CONSOLE@|$CONSOLE_SO|g" -e "s|@USER@|$RUN_USER|g" -e "s|@GROUP@|$RUN_GROUP|g" \
            -e "s|@PORT@|$P_HTTPD|g" -e "s|@STATUS_PORT@|$P_STATUS|g" -e "s|@EP_PORT@|$ep|g" \
            "$BENCH/httpd.conf.in"
        for x in "$@"; do printf '%s\n' "$x"; done
    } >"$HT_DIR/conf/httpd.conf"
    chown -R "$RUN_USER:$RUN_GROUP" "$HT_DIR/state"
}
httpd_start() {
    httpd_conf "$@"
    "$HTTPD" -d "$HT_DIR" -f "$HT_DIR/conf/httpd.conf" -t >/dev/null 2>"$HT_DIR/logs/configtest.log" \
        || { cat "$HT_DIR/logs/configtest.log" >&2; die "httpd refused its configuration"; }
    httpd_run
}
httpd_run() {                         # start the configured instance $HT_DIR
    "$HTTPD" -d "$HT_DIR" -f "$HT_DIR/conf/httpd.conf" -k start || die "httpd did not start"
    # the listener is bound before httpd detaches: wait for the pid file too
    local deadline=$((SECONDS + 20))
    until [ -s "$HT_DIR/run/httpd.pid" ]; do
        [ $SECONDS -lt $deadline ] || die "httpd wrote no pid file"
        sleep 0.05
    done
    wait_port "$P_HTTPD" httpd
    # and until the MPM children (besides the dispatcher) are there
    for _ in $(seq 100); do
        [ "$(pgrep -c -P "$(cat "$HT_DIR/run/httpd.pid")")" -ge 2 ] && break
        sleep 0.05
    done
}
httpd_stop() {
    [ -n "$HT_DIR" ] && [ -s "$HT_DIR/run/httpd.pid" ] || return 0
    "$HTTPD" -d "$HT_DIR" -f "$HT_DIR/conf/httpd.conf" -k stop 2>/dev/null || true
    for _ in $(seq 150); do [ -e "$HT_DIR/run/httpd.pid" ] || break; sleep 0.1; done
    # wait for every process of this instance to be gone
    for _ in $(seq 100); do port_closed "$P_HTTPD" && break; sleep 0.1; done
}
httpd_pids() {                        # every process of the running instance
    local ppid; ppid=$(cat "$HT_DIR/run/httpd.pid")
    echo "$ppid"; pgrep -P "$ppid" || true
}
dispatcher_pid() {                    # the child that is not an MPM child
    # the MPM children listen; the dispatcher closed the listeners. The
    # dispatcher is the oldest child (forked in post_config).
    local ppid; ppid=$(cat "$HT_DIR/run/httpd.pid")
    pgrep -o -P "$ppid"
}
rss_kb() {                            # total RSS of the instance, kB
    local t=0 p r
    for p in $(httpd_pids); do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        t=$((t + ${r:-0}))
    done
    echo "$t"
}

# CPU used so far (user + system, every thread), in microseconds
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_us() {                            # PID... -> those processes' CPU
    local t=0 p v
    for p in "$@"; do
        v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || v=0
        t=$((t + ${v:-0}))
    done
    echo $((t * TICK_US))
}
thread_cpu_us() {                     # PID COMM -> CPU of PID's threads named COMM
    local t=0 d v
    for d in /proc/"$1"/task/*; do
        [ "$(cat "$d/comm" 2>/dev/null)" = "$2" ] || continue
        v=$(awk '{print $14 + $15}' "$d/stat" 2>/dev/null) || v=0
        t=$((t + ${v:-0}))
    done
    echo $((t * TICK_US))
}

# bench/calls.c (libcurl alone, no module), built once per work directory
calls_bin() {
    need curl-config libcurl4-openssl-dev
    local bin=$W/calls
    if [ ! -x "$bin" ] || [ "$BENCH/calls.c" -nt "$bin" ]; then
        mkdir -p "$W"
        gcc -O2 -Wall -Wextra -Werror -o "$bin" "$BENCH/calls.c" $(curl-config --libs) -lpthread \
            || die "cannot build bench/calls.c"
    fi
    echo "$bin"
}

OUTBOX() { echo "$HT_DIR/state/outbox.db"; }
# count of events in a state (0 pending, 1 delivered); read-only, WAL
ob_count() {
    sqlite3 -readonly "$(OUTBOX)" "PRAGMA busy_timeout=5000; SELECT COUNT(*) FROM et_event WHERE state = $1;" 2>/dev/null | tail -1
}

cleanup_all() {
    set +e
    httpd_stop
    nginx_stop
}

# --- wrk -------------------------------------------------------------------
# wrk_put URL CONNS SECONDS [env...] -> prints the WRK line; sets WRK_RPS, WRK_P50, WRK_P99 (µs)
wrk_put() {
    local url=$1 conns=$2 secs=$3; shift 3
    local threads=2; [ "$conns" -lt 2 ] && threads=1
    local out
    out=$(env "$@" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s \
          -s "$BENCH/put.lua" "$url" 2>&1) || { printf '%s\n' "$out" >&2; die "wrk failed"; }
    local line; line=$(grep '^WRK ' <<<"$out") || { printf '%s\n' "$out" >&2; die "wrk printed no result"; }
    printf '%s\n' "$line" >&2
    WRK_RPS=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
    WRK_P50=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
    WRK_P99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    local errs non2xx
    errs=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
    non2xx=$(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<<"$line")
    [ "$errs" = 0 ] && [ "$non2xx" = 0 ] || say "WARNING: wrk saw $errs socket errors and $non2xx non-2xx answers"
}
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# --- backlogs ----------------------------------------------------------------
# A fresh instance's outbox with N pending events: httpd made the schema
# once (schema_db), fill.sh appends rows; copies are cached per N.
schema_db() {                         # -> $W/schema.db (empty outbox)
    # made by the module just built; cached backlogs of another schema go
    local rev; rev=$(cat "$W/built-rev" 2>/dev/null || echo none)
    if [ -s "$W/schema.db" ] && [ "$(cat "$W/schema.rev" 2>/dev/null)" = "$rev" ]; then
        echo "$W/schema.db"; return
    fi
    local save=$HT_DIR
    httpd_start schema on "$P_CLOSED" >&2
    httpd_stop
    sqlite3 "$(OUTBOX)" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
    if [ ! -s "$W/schema.db" ] || [ "$(sqlite3 "$W/schema.db" .schema)" != "$(sqlite3 "$(OUTBOX)" .schema)" ]; then
        rm -f "$W"/backlog-*.db
    fi
    cp "$(OUTBOX)" "$W/schema.db"
    echo "$rev" >"$W/schema.rev"
    HT_DIR=$save
    echo "$W/schema.db"
}
backlog_db() {                        # N -> $W/backlog-N.db
    local n=$1 f=$W/backlog-$1.db
    local s; s=$(schema_db)           # drops cached backlogs of another schema
    if [ ! -s "$f" ]; then
        say "making a backlog of $n events ($f)"
        cp "$s" "$f.tmp"
        local t0=$SECONDS
        "$BENCH/fill.sh" "$f.tmp" "$n" "http://127.0.0.1:$P_NGINX/cb" >/dev/null
        mv "$f.tmp" "$f"
        say "made in $((SECONDS - t0)) s, $(du -h "$f" | cut -f1)"
    fi
    echo "$f"
}
# install_outbox FILE: into the (configured, stopped) instance $HT_DIR
install_outbox() {
    rm -f "$(OUTBOX)" "$(OUTBOX)-wal" "$(OUTBOX)-shm"
    cp "$1" "$(OUTBOX)"
    chown "$RUN_USER:$RUN_GROUP" "$(OUTBOX)"; chmod 640 "$(OUTBOX)"
}

# drain_time N_TARGET STATE_COUNT_FN: seconds from now until ob_count 1 >= N
# (polls every 0.2 s; ET_BENCH_DRAIN_MAX seconds at most, default 600).
# Sets DRAIN_SECS (float) and DRAIN_DONE (events delivered when it stopped).
drain_until() {
    local target=$1 t0=$2 max=${ET_BENCH_DRAIN_MAX:-600} n=0 now last_report=0
    while :; do
        n=$(ob_count 1); n=${n:-0}
        now=$(date +%s.%N)
        [ "$n" -ge "$target" ] && break
        if python3 -c "import sys; sys.exit(0 if $now - $t0 > $max else 1)"; then
            say "gave up after ${max}s with $n of $target delivered"; break
        fi
        if [ $((SECONDS - last_report)) -ge 10 ]; then
            say "  ... $n delivered"; last_report=$SECONDS
        fi
        sleep 0.2
    done
    DRAIN_SECS=$(calc "$now - $t0"); DRAIN_DONE=$n
    # The outbox's own finishing times, not the 0.2 s polling (whose count
    # query also takes longer on a bigger outbox): from t0 to the moment
    # the DRAIN_DONE-th call was recorded.
    # DRAIN_RUN: from the first call recorded to the DRAIN_DONE-th, the
    # delivery itself; DRAIN_START: from t0 to the first (httpd's start,
    # the dispatcher's fork and setup, the first claim).
    local first last
    read -r first last < <(sqlite3 -readonly -separator ' ' "$(OUTBOX)" "PRAGMA busy_timeout=5000; SELECT MIN(done_at), MAX(done_at) FROM (SELECT done_at FROM et_event WHERE state = 1 ORDER BY done_at LIMIT $DRAIN_DONE);" 2>/dev/null | tail -1)
    DRAIN_RUN=$DRAIN_SECS; DRAIN_START=0
    if [ -n "$last" ] && [ "$DRAIN_DONE" -gt 1 ]; then
        DRAIN_SECS=$(calc "$last / 1e6 - $t0")
        DRAIN_START=$(calc "$first / 1e6 - $t0")
        DRAIN_RUN=$(calc "($last - $first) / 1e6")
    fi
}
