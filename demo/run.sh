#!/usr/bin/env bash
# mod_eventtrigger demo: build the module, run it in a throw-away httpd in
# front of a stand-in admin console, make a few admin changes with curl and
# show the Event Trigger calls the customer's endpoint receives.
#
#   sudo bash demo/run.sh
#
# Run as root on Debian 12 from a clone of the repository. It installs the
# build and run dependencies with apt-get (only if some are missing), builds
# in the clone, and runs everything on 127.0.0.1 from /tmp/et-demo (the
# system's /usr/sbin/apache2 binary with a configuration of its own, made
# from demo/httpd.conf.in; /etc/apache2 is neither read nor changed). All it
# starts is stopped again when it exits. It can be run again at once.
#
# Environment: ET_DEMO_DIR (default /tmp/et-demo), ET_DEMO_PORT (first port
# tried, default 8480; four free ones from there are used), ET_DEMO_WAIT
# (seconds to wait for the calls, default 30).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${ET_DEMO_DIR:-/tmp/et-demo}
BASE_PORT=${ET_DEMO_PORT:-8480}
WAIT=${ET_DEMO_WAIT:-30}
HTTPD=/usr/sbin/apache2
MODDIR=/usr/lib/apache2/modules

# apache2-bin is the server binary and its modules without Debian's service
# (installing "apache2" would also start a system httpd on port 80).
PACKAGES=(apache2-bin apache2-dev libaprutil1-dbd-sqlite3 libsqlite3-dev libjansson-dev
          libcurl4-openssl-dev libssl-dev pkg-config autoconf automake make
          gcc libc6-dev python3 curl sqlite3)

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
# stop_pid, wait_port, pick_port, run_user
source "$REPO/tools/local.sh"

[ "$(id -u)" -eq 0 ] || die "run me as root (sudo bash demo/run.sh): I install packages and start httpd, which then runs as www-data"
[ -f "$REPO/mod_eventtrigger.c" ] || die "$REPO is not a mod_eventtrigger checkout"

# --- 1. packages --------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y "${PACKAGES[@]}"
else
    say "packages: all there"
fi

# --- 2. a clean demo directory -----------------------------------------
# Stop what a previous run may have left (it stops everything on exit, but
# not if it was killed with SIGKILL).
if [ -d "$DEMO/run" ]; then
    for f in "$DEMO"/run/httpd.pid "$DEMO"/run/console.pid "$DEMO"/run/receiver.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        # only if it still is what we started
        if grep -qs -e "$DEMO" -e 'console.py' -e 'receiver.py' "/proc/$pid/cmdline" \
           || { [ "$f" = "$DEMO/run/httpd.pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$HTTPD" ]; }; then
            stop_pid "$pid"
        fi
    done
fi
rm -rf "$DEMO"
# no state/: the module makes the outbox's directory and gives it to User
mkdir -p "$DEMO"/{conf,logs,run,htdocs}
chmod 755 "$DEMO"

# --- 3. build -----------------------------------------------------------
say "building mod_eventtrigger in $REPO (output: $DEMO/logs/build.log)"
cd "$REPO"
build() {
    "$@" >>"$DEMO/logs/build.log" 2>&1 && return 0
    tail -n 30 "$DEMO/logs/build.log" >&2
    die "the build failed: $*"
}
# The usual three steps; an existing build is reused (make rebuilds what
# changed), except one configured with sanitizers, which httpd cannot load.
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
    build autoreconf -fi
fi
if [ ! -f Makefile ] || [ ! -x config.status ] || [ configure -nt config.status ] \
   || grep -q -- '--enable-sanitizers' <<<"$(./config.status --config)"; then
    build ./configure --with-apxs=/usr/bin/apxs
fi
build make
MODULE="$REPO/.libs/mod_eventtrigger.so"
[ -f "$MODULE" ] || die "the build did not produce $MODULE"

# --- 4. ports and user --------------------------------------------------
pick_port; HTTPD_PORT=$PORT
pick_port; CONSOLE_PORT=$PORT
pick_port; RECEIVER_PORT=$PORT
pick_port; FORM_PORT=$PORT

run_user

# --- 5. start console, receiver, httpd ----------------------------------
cleanup() {
    local rc=$?
    set +e
    if [ -s "$DEMO/run/httpd.pid" ]; then
        "$HTTPD" -d "$DEMO" -f "$DEMO/conf/httpd.conf" -k stop 2>/dev/null
        for _ in $(seq 100); do
            [ -e "$DEMO/run/httpd.pid" ] || break
            sleep 0.1
        done
    fi
    [ -n "${RECEIVER_PID:-}" ] && stop_pid "$RECEIVER_PID"
    [ -n "${CONSOLE_PID:-}" ] && stop_pid "$CONSOLE_PID"
    if [ "$rc" -ne 0 ] && [ -f "$DEMO/logs/error.log" ]; then
        printf '\n--- %s (last lines) ---\n' "$DEMO/logs/error.log" >&2
        tail -n 20 "$DEMO/logs/error.log" >&2
    fi
    [ "$rc" -eq 0 ] && say "stopped httpd, console and receiver; logs and outbox are in $DEMO"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting the console (:$CONSOLE_PORT), the receiver (:$RECEIVER_PORT) and httpd (:$HTTPD_PORT json, :$FORM_PORT form)"
python3 "$REPO/t/bin/console.py" --port "$CONSOLE_PORT" --quiet \
    >"$DEMO/logs/console.log" 2>&1 &
CONSOLE_PID=$!
echo "$CONSOLE_PID" >"$DEMO/run/console.pid"
python3 "$REPO/t/bin/receiver.py" --port "$RECEIVER_PORT" \
    --log "$DEMO/logs/receiver.jsonl" --print \
    >"$DEMO/logs/receiver.out" 2>&1 &
RECEIVER_PID=$!
echo "$RECEIVER_PID" >"$DEMO/run/receiver.pid"

sed -e "s|@DEMO@|$DEMO|g" -e "s|@MODDIR@|$MODDIR|g" -e "s|@MODULE@|$MODULE|g" \
    -e "s|@USER@|$RUN_USER|g" -e "s|@GROUP@|$RUN_GROUP|g" \
    -e "s|@HTTPD_PORT@|$HTTPD_PORT|g" -e "s|@FORM_PORT@|$FORM_PORT|g" \
    -e "s|@CONSOLE_PORT@|$CONSOLE_PORT|g" -e "s|@RECEIVER_PORT@|$RECEIVER_PORT|g" \
    "$REPO/demo/httpd.conf.in" >"$DEMO/conf/httpd.conf"

wait_port "$CONSOLE_PORT" "the console"
wait_port "$RECEIVER_PORT" "the receiver"

"$HTTPD" -d "$DEMO" -f "$DEMO/conf/httpd.conf" -t >/dev/null 2>"$DEMO/logs/configtest.log" \
    || { cat "$DEMO/logs/configtest.log" >&2; die "httpd refused the configuration"; }
"$HTTPD" -d "$DEMO" -f "$DEMO/conf/httpd.conf" -k start
wait_port "$HTTPD_PORT" "httpd"
wait_port "$FORM_PORT" "httpd"

# --- 6. the admin session -----------------------------------------------
SITE=http://127.0.0.1:$HTTPD_PORT
FORMSITE=http://127.0.0.1:$FORM_PORT
EXPECTED=0
admin() {                             # method, url, [json body]
    local method=$1 url=$2 body=${3:-} code out
    out=$(mktemp)
    if [ -n "$body" ]; then
        code=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" \
               -H 'Content-Type: application/json' --data-binary "$body" "$url")
    else
        code=$(curl -sS -o "$out" -w '%{http_code}' -X "$method" "$url")
    fi
    printf '%-6s %-52s -> %s %s\n' "$method" "${url#http://}" "$code" "$(head -c 90 "$out")"
    rm -f "$out"
    case $code in
        2??) EXPECTED=$((EXPECTED + 1)) ;;
        *) die "the console answered $code to $method $url" ;;
    esac
}

say "admin session on site demo-json (EventTriggerFormat json)"
admin POST  "$SITE/console/member" \
    '{"id":123456,"username":"partner1_dev1","email":"dev@example.com","phone":null}'
admin PUT   "$SITE/console/member/123456" \
    '{"username":"partner1_dev1","email":"dev1@example.com","phone":"+1 555 0100"}'
admin POST  "$SITE/console/application" \
    '{"id":7001,"name":"Demo app","username":"partner1_dev1"}'
admin POST  "$SITE/console/key" \
    '{"id":14398445,"apikey":"bs8ssd5wjeekc797t6ar47v2","status":"active","member":{"username":"partner1_dev1","email":"dev@example.com"},"application":{"id":7001,"name":"Demo app"},"limits":[{"period":"second","source":"plan","ceiling":2},{"period":"day","source":"plan","ceiling":5000}]}'
admin PATCH "$SITE/console/key/14398445" \
    '{"apikey":"bs8ssd5wjeekc797t6ar47v2","status":"disabled"}'
admin DELETE "$SITE/console/key/14398445?nobody=1"
admin DELETE "$SITE/console/member/123456"

say "admin session on site demo-form (EventTriggerFormat form)"
admin POST  "$FORMSITE/console/member" \
    '{"id":"dev2","username":"partner1_dev2","email":"dev2@example.com","phone":null,"verified":true}'
admin POST  "$FORMSITE/console/key" \
    '{"id":"k-2","apikey":"x7ckq9x2m3","member":{"username":"partner1_dev2"},"limits":[{"period":"second","ceiling":2},{"period":"day","ceiling":5000}],"rate":2.5}'
admin DELETE "$FORMSITE/console/member/dev2?nobody=1"

# --- 7. wait for the calls -----------------------------------------------
say "waiting (up to ${WAIT}s) for the $EXPECTED calls"
status_json() { curl -s "$SITE/et-status?json"; }
delivered() { status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["delivered"])' 2>/dev/null || echo 0; }
deadline=$((SECONDS + WAIT))
while :; do
    got=$(wc -l <"$DEMO/logs/receiver.jsonl")
    if [ "$got" -ge "$EXPECTED" ] && [ "$(delivered)" -ge "$EXPECTED" ]; then
        break
    fi
    if [ $SECONDS -ge $deadline ]; then
        cat "$DEMO/logs/receiver.out"
        printf 'status: %s\n' "$(status_json)"
        die "only $got of $EXPECTED calls arrived within ${WAIT}s"
    fi
    sleep 0.2
done

say "the receiver got $got calls ($DEMO/logs/receiver.jsonl has them in full)"
cat "$DEMO/logs/receiver.out"

say "one call in full: the key's post-create"
python3 - "$DEMO/logs/receiver.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    c = json.loads(line)
    if "/v1/key/" in c["path"] and "post-create" in c["query"] and "json" in c["headers"].get("content-type", ""):
        print("%s %s?%s" % (c["method"], c["path"], c["query"]))
        for k, v in c["headers"].items():
            print("%s: %s" % (k, v))
        print()
        print(json.dumps(json.loads(c["body"]), indent=2))
        break
EOF

say "httpd's access log: each admin request with the txn of its event"
grep '"[A-Z]* /console/' "$DEMO/logs/access.log"

say "the outbox ($DEMO/state/outbox.db; state 1 = delivered)"
sqlite3 -header -column "$DEMO/state/outbox.db" \
    "SELECT id, site, object, event, oid, state, attempts, last_status AS http FROM et_event ORDER BY id"

if [ -x "$REPO/etctl" ]; then
    say "etctl stats (the outbox from the command line)"
    "$REPO/etctl" -s "sqlite3:$DEMO/state/outbox.db" stats
fi

say "status page: $SITE/et-status?json"
status_json | python3 -m json.tool
