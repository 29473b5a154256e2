#!/usr/bin/env bash
# bench/soak.sh: mod_eventtrigger under fire. Nothing lost, nothing out of
# order, while httpd's processes are killed and restarted.
#
#   bash bench/soak.sh [--ops N] [--clients N] [--objects N] [--faults F]
#                      [--mpm event|worker|prefork] [--dir DIR] [--port P] [--keep]
#
# It starts, all on 127.0.0.1 and in a directory of its own (DIR, default a
# new /tmp/et-soak.XXXXXX; /etc/apache2 is neither read nor changed):
#   - the stand-in console (t/bin/console.py) and receiver (t/bin/receiver.py,
#     which fails a share F of the calls: 503, 500, reset, garbage, a hang
#     past the timeout; default F = 0.05),
#   - httpd (the system's binary, with its own configuration: event MPM
#     unless --mpm says otherwise, MaxConnectionsPerChild 500) with the
#     module from this tree (built if missing), a short retry schedule and
#     timeouts, EventTriggerLease 5s,
# then makes N admin operations (default 10000: creates, updates, deletes)
# over K objects (default 300, the four kinds) from C concurrent clients
# (default 8; each object is changed by one client, one change after the
# other, each body carrying the object's change number "seq"), while it
#   - kills an httpd child with SIGKILL every 2 s,
#   - kills the dispatcher with SIGKILL every 5 s,
#   - runs `apache2 -k graceful` every 7 s
# (SOAK_KILL_CHILD, SOAK_KILL_DISPATCHER, SOAK_GRACEFUL: seconds, 0 = never).
# It then waits for the outbox to drain (SOAK_DRAIN seconds at most,
# default 600) and prints, from the clients' record, the receiver's record
# and the outbox (bench/soak_load.py report):
#   sent (operations the console answered 2xx), delivered, lost,
#   duplicates (same txn delivered twice), per-object order violations.
# Exit status: 0 when lost and order violations are 0, 1 otherwise.
#
# Runs as root (httpd's User is then www-data, or nobody) or as a normal
# user (httpd keeps that user). Needs apache2 (apache2-bin), the module's
# build dependencies, python3. Everything it started is stopped when it
# exits; logs, records and the outbox stay in DIR (removed unless --keep
# when nothing was lost).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OPS=${SOAK_OPS:-10000}
CLIENTS=${SOAK_CLIENTS:-8}
OBJECTS=${SOAK_OBJECTS:-300}
FAULTS=${SOAK_FAULTS:-0.05}
DIR=${SOAK_DIR:-}
BASE_PORT=${SOAK_PORT:-9850}
KILL_CHILD=${SOAK_KILL_CHILD:-2}
KILL_DISPATCHER=${SOAK_KILL_DISPATCHER:-5}
GRACEFUL=${SOAK_GRACEFUL:-7}
DRAIN=${SOAK_DRAIN:-600}
KEEP=${SOAK_KEEP:-0}
MPM=${SOAK_MPM:-event}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'soak: %s\n' "$*" >&2; exit 2; }
# stop_pid, wait_port, pick_port, run_user
source "$REPO/tools/local.sh"

while [ $# -gt 0 ]; do
    case $1 in
        --ops) OPS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --objects) OBJECTS=$2; shift 2 ;;
        --faults) FAULTS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --port) BASE_PORT=$2; shift 2 ;;
        --mpm) MPM=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,38p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

HTTPD=${HTTPD:-/usr/sbin/apache2}
APXS=${APXS:-/usr/bin/apxs}
MODDIR=$( { [ -x "$APXS" ] && "$APXS" -q LIBEXECDIR; } 2>/dev/null || echo /usr/lib/apache2/modules)
[ -x "$HTTPD" ] || die "$HTTPD is missing (apt-get install apache2-bin, or set HTTPD)"
command -v python3 >/dev/null || die "python3 is missing"
[ -f "$REPO/mod_eventtrigger.c" ] || die "$REPO is not a mod_eventtrigger checkout"

# --- the module ------------------------------------------------------------
MODULE=$REPO/.libs/mod_eventtrigger.so
if [ ! -f "$MODULE" ]; then
    say "building the module in $REPO"
    ( cd "$REPO" && { [ -x configure ] || autoreconf -fi; } \
        && { [ -f Makefile ] || ./configure --with-apxs="$APXS"; } && make ) >&2 \
        || die "the build failed"
fi

# --- directory, user, ports ------------------------------------------------
if [ -z "$DIR" ]; then
    DIR=$(mktemp -d /tmp/et-soak.XXXXXX)
else
    mkdir -p "$DIR"
fi
mkdir -p "$DIR"/{conf,logs,run,state}
chmod 755 "$DIR"
CONF=$DIR/conf/httpd.conf
RUN=soak$(date +%s)

USER_LINES=
if [ "$(id -u)" -eq 0 ]; then
    run_user
    USER_LINES="User $RUN_USER
Group $RUN_GROUP"
    WHO="root; httpd runs as $RUN_USER"
else
    WHO="$(id -un); httpd runs as $(id -un)"
fi

pick_port; HTTPD_PORT=$PORT
pick_port; CONSOLE_PORT=$PORT
pick_port; RECEIVER_PORT=$PORT

# --- stop everything on exit ---------------------------------------------------
CHAOS_PID= LOAD_PID= CONSOLE_PID= RECEIVER_PID= RESULT=2
cleanup() {
    set +e
    touch "$DIR/run/stop-chaos"
    stop_pid "$CHAOS_PID"
    stop_pid "$LOAD_PID"
    if [ -s "$DIR/run/httpd.pid" ]; then
        "$HTTPD" -d "$DIR" -f "$CONF" -k stop 2>/dev/null
        for _ in $(seq 150); do
            [ -e "$DIR/run/httpd.pid" ] || break
            sleep 0.1
        done
    fi
    stop_pid "$RECEIVER_PID"
    stop_pid "$CONSOLE_PID"
    if [ "$RESULT" -eq 0 ] && [ "$KEEP" != 1 ]; then
        rm -rf "$DIR"
    else
        say "logs, records and the outbox are in $DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- console, receiver ---------------------------------------------------------
python3 "$REPO/t/bin/console.py" --port "$CONSOLE_PORT" --quiet \
    >"$DIR/logs/console.log" 2>&1 &
CONSOLE_PID=$!
PLAN=$(python3 -c '
import json, sys
f = float(sys.argv[1])
print(json.dumps({"actions": [], "default": {"random": [
    [1 - f, 200], [f * 0.4, 503], [f * 0.2, 500], [f * 0.2, "reset"],
    [f * 0.1, "garbage"], [f * 0.1, {"hang": 3}]]}}))' "$FAULTS")
python3 "$REPO/t/bin/receiver.py" --port "$RECEIVER_PORT" --log "$DIR/logs/receiver.jsonl" \
    --plan "$PLAN" --seed 1 >"$DIR/logs/receiver.out" 2>&1 &
RECEIVER_PID=$!

# --- httpd -------------------------------------------------------------------------
cat >"$CONF" <<EOF
# generated by bench/soak.sh
ServerRoot "$DIR"
ServerName 127.0.0.1
DefaultRuntimeDir "$DIR/run"
PidFile "$DIR/run/httpd.pid"
$USER_LINES

LoadModule mpm_${MPM}_module $MODDIR/mod_mpm_${MPM}.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule authz_host_module $MODDIR/mod_authz_host.so
LoadModule proxy_module $MODDIR/mod_proxy.so
LoadModule proxy_http_module $MODDIR/mod_proxy_http.so
LoadModule eventtrigger_module "$MODULE"

Listen 127.0.0.1:$HTTPD_PORT
MaxConnectionsPerChild 500
<IfModule !mpm_prefork_module>
    StartServers 3
    ServerLimit 8
    ThreadsPerChild 16
    MaxRequestWorkers 96
    MinSpareThreads 16
    MaxSpareThreads 64
</IfModule>
<IfModule mpm_prefork_module>
    StartServers 8
    MinSpareServers 4
    MaxSpareServers 16
    MaxRequestWorkers 32
</IfModule>
ProxyTimeout 30

ErrorLog "$DIR/logs/error.log"
LogLevel warn eventtrigger:info
LogFormat "%h \"%r\" %>s %P txn=%{eventtrigger-txn}n" eventtrigger
CustomLog "$DIR/logs/access.log" eventtrigger

EventTriggerStore sqlite3:$DIR/state/outbox.db
EventTriggerPollInterval 200ms
EventTriggerWorkers 8
EventTriggerLease 5s
EventTriggerEndpoint http://127.0.0.1:$RECEIVER_PORT/soak
EventTriggerSiteName soak
EventTriggerRetry 0 200ms 500ms 1s 2s 3s 5s 5s 5s 5s 5s 5s
EventTriggerConnectTimeout 500ms
EventTriggerTimeout 2s
EventTriggerCircuitBreaker 10 500ms 2s

<Location /console/member>
    ProxyPass http://127.0.0.1:$CONSOLE_PORT/console/member
    EventTrigger member
</Location>
<Location /console/application>
    ProxyPass http://127.0.0.1:$CONSOLE_PORT/console/application
    EventTrigger application
</Location>
<Location /console/key>
    ProxyPass http://127.0.0.1:$CONSOLE_PORT/console/key
    EventTrigger key
</Location>
<Location /console/package_key>
    ProxyPass http://127.0.0.1:$CONSOLE_PORT/console/package_key
    EventTrigger package_key
</Location>
<Location /et-status>
    SetHandler eventtrigger-status
    Require local
</Location>
EOF

wait_port "$CONSOLE_PORT" "the console"
wait_port "$RECEIVER_PORT" "the receiver"
"$HTTPD" -d "$DIR" -f "$CONF" -t 2>"$DIR/logs/configtest.log" >/dev/null \
    || { cat "$DIR/logs/configtest.log" >&2; die "httpd refused the configuration"; }
"$HTTPD" -d "$DIR" -f "$CONF" -k start
wait_port "$HTTPD_PORT" "httpd"

say "soak: $OPS operations, $CLIENTS clients, $OBJECTS objects, receiver faults $FAULTS, MPM $MPM ($WHO)"
say "httpd :$HTTPD_PORT, console :$CONSOLE_PORT, receiver :$RECEIVER_PORT, in $DIR"
say "chaos: kill -9 a child every ${KILL_CHILD}s, the dispatcher every ${KILL_DISPATCHER}s, graceful restart every ${GRACEFUL}s"

# --- chaos ---------------------------------------------------------------------------
parent_pid() { cat "$DIR/run/httpd.pid" 2>/dev/null || true; }
ppid_of() { awk '{ print $4 }' "/proc/$1/stat" 2>/dev/null || true; }
dispatcher_pid() {                    # the live dispatcher (ET00045's pid, child of the parent)
    local parent=$1 pid
    for pid in $(grep -o 'ET00045: dispatcher started (pid [0-9]*' "$DIR/logs/error.log" \
                 | grep -o '[0-9]*$' | tac); do
        if [ "$(ppid_of "$pid")" = "$parent" ]; then
            echo "$pid"
            return 0
        fi
    done
}
chaos() {
    local t=0 parent disp kids victim
    local n_child=0 n_disp=0 n_grace=0
    while [ ! -e "$DIR/run/stop-chaos" ]; do
        sleep 1
        t=$((t + 1))
        parent=$(parent_pid)
        [ -n "$parent" ] || continue
        disp=$(dispatcher_pid "$parent")
        if [ "$KILL_CHILD" -gt 0 ] && [ $((t % KILL_CHILD)) -eq 0 ]; then
            kids=$(ps -o pid= --ppid "$parent" | tr -d ' ' | grep -vx "${disp:-0}" || true)
            victim=$(printf '%s\n' $kids | shuf -n 1 2>/dev/null || true)
            if [ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null; then
                n_child=$((n_child + 1))
                echo "$(date +%T.%N) kill -9 child $victim" >>"$DIR/logs/chaos.log"
            fi
        fi
        if [ "$KILL_DISPATCHER" -gt 0 ] && [ $((t % KILL_DISPATCHER)) -eq 0 ] && [ -n "$disp" ]; then
            if kill -KILL "$disp" 2>/dev/null; then
                n_disp=$((n_disp + 1))
                echo "$(date +%T.%N) kill -9 dispatcher $disp" >>"$DIR/logs/chaos.log"
            fi
        fi
        if [ "$GRACEFUL" -gt 0 ] && [ $((t % GRACEFUL)) -eq 0 ]; then
            if "$HTTPD" -d "$DIR" -f "$CONF" -k graceful 2>>"$DIR/logs/chaos.log"; then
                n_grace=$((n_grace + 1))
                echo "$(date +%T.%N) graceful restart" >>"$DIR/logs/chaos.log"
            fi
        fi
        echo "$n_child $n_disp $n_grace" >"$DIR/run/chaos.count"
    done
}
chaos &
CHAOS_PID=$!

# --- the load ----------------------------------------------------------------------------
T0=$SECONDS
python3 "$REPO/bench/soak_load.py" load --url "http://127.0.0.1:$HTTPD_PORT" \
    --ops "$OPS" --clients "$CLIENTS" --objects "$OBJECTS" --run "$RUN" \
    --out "$DIR/logs/ops.jsonl" &
LOAD_PID=$!
wait "$LOAD_PID" || die "the load failed"
LOAD_PID=
LOAD_S=$((SECONDS - T0))
touch "$DIR/run/stop-chaos"
wait "$CHAOS_PID" 2>/dev/null || true
CHAOS_PID=
read -r N_CHILD N_DISP N_GRACE <"$DIR/run/chaos.count" || { N_CHILD=0 N_DISP=0 N_GRACE=0; }
say "load done in ${LOAD_S}s; chaos: $N_CHILD children and $N_DISP dispatchers killed (SIGKILL), $N_GRACE graceful restarts"

# --- drain ------------------------------------------------------------------------------------
pending() {
    python3 - "$DIR/state/outbox.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=30)
print(db.execute("SELECT COUNT(*) FROM et_event WHERE state = 0").fetchone()[0])
EOF
}
say "waiting (up to ${DRAIN}s) for the outbox to drain"
deadline=$((SECONDS + DRAIN))
last=-1
while :; do
    n=$(pending)
    [ "$n" -eq 0 ] && break
    if [ $SECONDS -ge $deadline ]; then
        say "still $n pending after ${DRAIN}s"
        break
    fi
    if [ "$n" != "$last" ] && [ $((SECONDS % 10)) -eq 0 ]; then
        say "  $n pending"
        last=$n
    fi
    sleep 1
done
DRAIN_S=$((SECONDS - T0 - LOAD_S))
say "drained ${DRAIN_S}s after the load"

# --- figures ------------------------------------------------------------------------------------
set +e
python3 "$REPO/bench/soak_load.py" report --ops "$DIR/logs/ops.jsonl" \
    --calls "$DIR/logs/receiver.jsonl" --outbox "$DIR/state/outbox.db" --run "$RUN" \
    --root /soak | tee "$DIR/logs/report.txt"
RESULT=${PIPESTATUS[0]}
set -e
echo "  chaos             children killed $N_CHILD, dispatchers killed $N_DISP, graceful restarts $N_GRACE" \
    | tee -a "$DIR/logs/report.txt"
echo "  time              load ${LOAD_S}s, drain ${DRAIN_S}s" | tee -a "$DIR/logs/report.txt"
grep -c 'ET00043' "$DIR/logs/error.log" | sed 's/^/  ET00043 (dispatcher died, restarted): /'
grep -E 'ET0003[23]|ET01002|ET01003|ET01006' "$DIR/logs/error.log" | head -5 || true
exit "$RESULT"
