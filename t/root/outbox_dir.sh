#!/usr/bin/env bash
# t/root/outbox_dir.sh: what httpd started as root does with the sqlite3
# outbox's directory (mod_eventtrigger.c, prepare_outbox). Apache::Test
# runs unprivileged, so .ci/run runs this as root after the suite:
#   - the levels of the directory that are missing are made and given to
#     httpd's User (as mod_md does with its store);
#   - a directory that was there is never chowned (a relative
#     EventTriggerStore names ServerRoot: giving it to www-data would let
#     www-data rewrite httpd's configuration); if User cannot write in it,
#     httpd refuses to start and says so (ET00002).
#   bash t/root/outbox_dir.sh TREE     (TREE: a built checkout)
# Prints "ROOT <n> passed, <m> failed" last.
set -u
tree=${1:?usage: outbox_dir.sh TREE}
module=$tree/.libs/mod_eventtrigger.so
user=www-data
port=${ET_ROOT_TEST_PORT:-9981}
pass=0 fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi; }
owner() { stat -c %U "$1" 2>/dev/null; }

[ "$(id -u)" = 0 ] || { echo "run as root"; exit 2; }
[ -f "$module" ] || { echo "no $module (build first)"; exit 2; }
id "$user" >/dev/null 2>&1 || { echo "no user $user"; exit 2; }

sr=$(mktemp -d /tmp/et-root.XXXXXX)
chmod 755 "$sr"
mkdir -p "$sr/logs" "$sr/run"
trap 'stop; rm -rf "$sr"' EXIT

# httpd with the module and STORE as its EventTriggerStore
conf() {
    cat >"$sr/httpd.conf" <<CONF
ServerRoot $sr
ServerName 127.0.0.1
PidFile $sr/run/httpd.pid
DefaultRuntimeDir $sr/run
Listen 127.0.0.1:$port
User $user
Group $user
ErrorLog $sr/logs/error.log
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule eventtrigger_module $module
EventTriggerStore sqlite3:$1
EventTriggerEndpoint http://127.0.0.1:9/cb
CONF
    : >"$sr/logs/error.log"
}
start() { /usr/sbin/apache2 -d "$sr" -f "$sr/httpd.conf" -k start >/dev/null 2>&1; }
stop() {
    [ -s "$sr/run/httpd.pid" ] || return 0
    /usr/sbin/apache2 -d "$sr" -f "$sr/httpd.conf" -k stop >/dev/null 2>&1
    for _ in $(seq 300); do [ -e "$sr/run/httpd.pid" ] || break; sleep 0.1; done
    # and every process of the instance (children, the dispatcher): the
    # next case starts another on the same port and runtime directory
    for _ in $(seq 100); do pgrep -f "$sr/httpd.conf" >/dev/null || break; sleep 0.1; done
}
running() { # up to 10 s for the pid file; if not, say why
    for _ in $(seq 100); do [ -s "$sr/run/httpd.pid" ] && return 0; sleep 0.1; done
    echo "# httpd did not start; its error log:" >&2
    sed 's/^/#   /' "$sr/logs/error.log" >&2
    return 1
}

# 1. A relative store: its directory is ServerRoot, root's.
conf outbox.db
start
running 2>/dev/null; up=$?
stop
ok "$((up == 0))" "a store in ServerRoot (root's): httpd does not start"
grep -q "ET00002: the outbox directory $sr is not one that httpd's User ($user) may write in" \
    "$sr/logs/error.log"
ok $? "  and says why (ET00002)"
[ "$(owner "$sr")" = root ]
ok $? "  and ServerRoot is still root's"

# 2. Missing levels: made, and given to User, each of them.
conf "$sr/state/a/b/outbox.db"
start
running
ok $? "a store in directories that do not exist: httpd starts"
stop
for d in "$sr/state" "$sr/state/a" "$sr/state/a/b" "$sr/state/a/b/outbox.db"; do
    [ "$(owner "$d")" = "$user" ]
    ok $? "  ${d#$sr/} is $user's"
done

# 3. A directory that was there and is User's already: used as it is.
mkdir -p "$sr/theirs" && chown "$user:" "$sr/theirs" && chmod 700 "$sr/theirs"
conf "$sr/theirs/outbox.db"
start
running
ok $? "a store in an existing directory of $user's: httpd starts"
stop
[ "$(stat -c %a "$sr/theirs")" = 700 ]
ok $? "  and its mode is left alone"

echo "ROOT $pass passed, $fail failed"
[ "$fail" = 0 ]
