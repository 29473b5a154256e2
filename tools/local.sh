# tools/local.sh: shell helpers for the scripts that run a local httpd with
# the module and its stand-ins (demo/run.sh, bench/lib.sh, bench/soak.sh).
# Sourced, not run. The caller defines die (message, then exit).

# stop_pid PID: SIGTERM, up to 10 s for it to go, then SIGKILL.
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# wait_port PORT WHAT [SECONDS]: until 127.0.0.1:PORT accepts (default 20 s).
wait_port() {
    local deadline=$((SECONDS + ${3:-20}))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || die "$2 did not come up on port $1"
        sleep 0.1
    done
}

port_closed() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port: PORT = the next port from BASE_PORT on that can be bound
# (at most 100 tried).
port_free() {
    python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
pick_port() {
    : "${next_port:=$BASE_PORT}"
    while ! port_free "$next_port"; do
        next_port=$((next_port + 1))
        [ "$next_port" -lt $((BASE_PORT + 100)) ] || die "no free port in $BASE_PORT-$((BASE_PORT + 99))"
    done
    PORT=$next_port
    next_port=$((next_port + 1))
}

# run_user: RUN_USER and RUN_GROUP, whom httpd started as root drops to.
run_user() {
    if id www-data >/dev/null 2>&1; then
        RUN_USER=www-data RUN_GROUP=www-data
    else
        RUN_USER=nobody RUN_GROUP=nogroup
    fi
}
