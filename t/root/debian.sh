#!/usr/bin/env bash
# t/root/debian.sh: the Debian package, end to end, on this machine (issue
# 15). Apache::Test runs unprivileged and cannot install packages, so
# .ci/run runs this as root after the suite:
#   - a clean copy of TREE (no build products: the tree may be built, with
#     or without sanitizers) is built with dpkg-buildpackage -us -uc -b
#     (as nobody), and lintian reports no error;
#   - apt installs the .deb: the module, its .load/.conf, etctl and its man
#     page, /var/lib/apache2/eventtrigger for www-data; nothing enabled;
#   - a2enmod eventtrigger (and proxy, proxy_http for the console), one
#     example site (127.0.0.1, port ET_DEB_TEST_PORT or the next free one
#     from 8680) in front of the test console (t/bin/console.py) with an
#     endpoint at t/bin/receiver.py; apache2ctl configtest; apache2ctl
#     start: the system's httpd, as a Debian admin would run it;
#   - one admin change with curl, and its call at the receiver (path,
#     event, txn, body), and etctl's count of it;
#   - apt remove keeps the outbox and disables the module; apt purge
#     leaves nothing: no files, no links, no outbox, no a2enmod state, and
#     /etc/apache2 and /var/lib/apache2 are as they were before.
# It refuses to run if the package (or a source install of the module) is
# on the machine already, or if the system's httpd runs. Whatever happens,
# it stops what it started, purges the package and restores the apache2
# configuration and state it changed.
#   bash t/root/debian.sh TREE     (TREE: a checkout, built or not)
# Prints "ROOT <n> passed, <m> failed" last.
set -u
tree=$(cd "${1:?usage: debian.sh TREE}" && pwd)
pkg=libapache2-mod-eventtrigger
BASE_PORT=${ET_DEB_TEST_PORT:-8680}
wait_s=${ET_DEB_TEST_WAIT:-30}
apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
pass=0 fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi; }
die() { echo "debian.sh: $*"; echo "ROOT $pass passed, $((fail + 1)) failed"; exit 1; }
installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^[ih]i'; }
known() { dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^.[^n]'; }
# the system's httpd: the pid file of /etc/apache2/envvars, and its process
sys_pidfile=/var/run/apache2/apache2.pid
sys_running() { [ -s "$sys_pidfile" ] && kill -0 "$(cat "$sys_pidfile")" 2>/dev/null; }
# what /etc/apache2 and apache2's state directory hold (names, links,
# modes, owners), to see that nothing is left at the end
snapshot() {
    find /etc/apache2 /var/lib/apache2 -printf '%p -> %l %m %u:%g\n' 2>/dev/null | sort
}
# stop_pid, wait_port, port_free, pick_port
source "$tree/tools/local.sh"

[ "$(id -u)" = 0 ] || { echo "run as root"; exit 2; }
[ -f "$tree/debian/control" ] || { echo "$tree has no debian/"; exit 2; }
for c in dpkg-buildpackage lintian apt-get a2enmod apache2ctl curl python3; do
    command -v "$c" >/dev/null || { echo "no $c (apt-get install debhelper dpkg-dev lintian apache2 curl python3)"; exit 2; }
done
! known || die "$pkg is on this machine already (dpkg -l $pkg): this script would remove it"
[ ! -e /usr/lib/apache2/modules/mod_eventtrigger.so ] && [ ! -e /etc/apache2/mods-available/eventtrigger.load ] \
    || die "a source install of the module is there (make uninstall first)"
[ ! -e /var/lib/apache2/eventtrigger ] \
    || die "/var/lib/apache2/eventtrigger is there (an outbox?): the package's purge would delete it"
! sys_running || die "the system's httpd runs (apache2ctl stop first)"

w=$(mktemp -d /tmp/et-deb.XXXXXX)
chmod 755 "$w"
mkdir -p "$w/build/src" "$w/home" "$w/logs"
before=$(snapshot)
tar -C /var/lib/apache2 -cf "$w/apache2-state.tar" .
site=/etc/apache2/sites-available/eventtrigger-debtest.conf
site_added=0 httpd_started=0
console_pid= receiver_pid=

cleanup() {
    set +e
    if [ "$httpd_started" = 1 ] && sys_running; then
        apache2ctl stop >/dev/null 2>&1
        for _ in $(seq 100); do sys_running || break; sleep 0.1; done
    fi
    stop_pid "$console_pid"
    stop_pid "$receiver_pid"
    if [ "$site_added" = 1 ]; then
        a2dissite -q eventtrigger-debtest >/dev/null 2>&1
        rm -f "$site"
    fi
    for m in proxy_http proxy; do
        if grep -q " /etc/apache2/mods-enabled/$m.load -> " <<<"$before"; then :; else
            a2dismod -q -f "$m" >/dev/null 2>&1
        fi
    done
    if known; then
        DEBIAN_FRONTEND=noninteractive apt-get purge "${apt_opts[@]}" "$pkg" >/dev/null 2>&1
    fi
    # not there before (checked above): whatever a failed purge left
    rm -rf /var/lib/apache2/eventtrigger
    # a2enmod/a2dismod's markers: as they were
    rm -rf /var/lib/apache2/module /var/lib/apache2/site /var/lib/apache2/conf
    tar -C /var/lib/apache2 -xf "$w/apache2-state.tar"
    rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Build, from a clean copy. A git checkout: its files (as .ci/run
#    copies them); else (.ci/run's copy, which has no .git) the whole tree
#    but for the test suite's state, then distclean: the tree may hold an
#    in-place build, possibly with sanitizers, which must not be packaged.
src=$w/build/src
if git -C "$tree" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$tree" && git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - -cf -) | tar -xf - -C "$src"
else
    tar -C "$tree" --exclude=./t/logs --exclude=./t/state --exclude=./t/tmp \
        --exclude=./fuzz/work --exclude=./t/js/node_modules --exclude='./ci-*.log' \
        -cf - . 2>/dev/null | tar -xf - -C "$src"
fi
(cd "$src" || exit
 [ ! -f Makefile ] || make -s distclean >/dev/null 2>&1
 rm -rf .libs lib/.libs ./*.la ./*.lo ./*.slo ./*.o lib/*.lo lib/*.slo lib/*.o etctl)
chown -R nobody: "$w/build" "$w/home"
runuser -u nobody -- env HOME="$w/home" bash -c \
    "cd '$src' && dpkg-buildpackage -us -uc -b" >"$w/logs/build.log" 2>&1
ok $? "dpkg-buildpackage -us -uc -b builds the package"
deb=$(ls "$w/build/${pkg}_"*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { tail -40 "$w/logs/build.log"; die "no ${pkg}_*.deb"; }
echo "# $(basename "$deb")"

# errors fail (--fail-on error: so does lintian itself failing); the
# warnings and the rest are shown
runuser -u nobody -- env HOME="$w/home" lintian --fail-on error --display-info \
    "$w/build/${pkg}_"*.changes >"$w/logs/lintian.log" 2>&1
rc=$?
sed 's/^/# lintian: /' "$w/logs/lintian.log"
ok "$rc" "lintian: no errors"

# 2. Install: files where Debian puts them, nothing enabled.
DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$deb" \
    >"$w/logs/install.log" 2>&1
installed
ok $? "apt-get install ./$(basename "$deb")"
installed || { tail -20 "$w/logs/install.log"; die "not installed"; }
so=/usr/lib/apache2/modules/mod_eventtrigger.so
[ -f "$so" ] && [ -f /etc/apache2/mods-available/eventtrigger.conf ] \
    && grep -qx "LoadModule eventtrigger_module $so" /etc/apache2/mods-available/eventtrigger.load
ok $? "  the module in $(dirname "$so"), eventtrigger.load (loading it from there) and .conf in mods-available"
! { readelf -d "$so"; readelf --dyn-syms "$so"; } 2>/dev/null | grep -q -e libasan -e libubsan -e __asan_ -e __ubsan_
ok $? "  the module is no sanitizer build"
[ -x /usr/sbin/etctl ] && [ -f /usr/share/man/man8/etctl.8.gz ]
ok $? "  etctl in /usr/sbin, etctl(8)"
[ "$(stat -c '%U:%G %a' /var/lib/apache2/eventtrigger 2>/dev/null)" = "www-data:www-data 750" ]
ok $? "  /var/lib/apache2/eventtrigger is www-data's (mode 750)"
[ ! -e /etc/apache2/mods-enabled/eventtrigger.load ] && [ ! -e /etc/apache2/mods-enabled/eventtrigger.conf ] \
    && ! apache2ctl -M 2>/dev/null | grep -q eventtrigger_module
ok $? "  nothing is enabled"

# 3. Enable it, with an example site in front of the console.
pick_port; port=$PORT
pick_port; console_port=$PORT
pick_port; receiver_port=$PORT
echo "# ports: httpd $port, console $console_port, receiver $receiver_port"
python3 "$tree/t/bin/console.py" --port "$console_port" --quiet >"$w/logs/console.log" 2>&1 &
console_pid=$!
python3 "$tree/t/bin/receiver.py" --port "$receiver_port" --log "$w/logs/receiver.jsonl" \
    >"$w/logs/receiver.log" 2>&1 &
receiver_pid=$!
cat >"$site" <<CONF
# t/root/debian.sh: an admin console behind httpd (removed again)
Listen 127.0.0.1:$port
<VirtualHost 127.0.0.1:$port>
    ServerName 127.0.0.1
    EventTriggerSiteName debtest
    EventTriggerEndpoint http://127.0.0.1:$receiver_port/hooks
    ErrorLog $w/logs/error.log
    LogLevel warn eventtrigger:info
    CustomLog $w/logs/access.log "%h \"%r\" %>s txn=%{eventtrigger-txn}n"
    <Location /console/member>
        ProxyPass http://127.0.0.1:$console_port/console/member
        EventTrigger member
    </Location>
</VirtualHost>
CONF
site_added=1
a2enmod -q eventtrigger proxy proxy_http >/dev/null && a2ensite -q eventtrigger-debtest >/dev/null
ok $? "a2enmod eventtrigger proxy proxy_http, a2ensite (the example site)"
apache2ctl configtest >"$w/logs/configtest.log" 2>&1
rc=$?
ok "$rc" "apache2ctl configtest"
[ "$rc" = 0 ] || sed 's/^/# /' "$w/logs/configtest.log"
( wait_port "$console_port" console && wait_port "$receiver_port" receiver )
ok $? "the console and the receiver listen"
httpd_started=1
apache2ctl start >"$w/logs/start.log" 2>&1
( wait_port "$port" httpd )
up=$?
ok "$up" "apache2ctl start: the system's httpd listens on 127.0.0.1:$port"
[ "$up" = 0 ] || { cat "$w/logs/start.log"; tail -20 /var/log/apache2/error.log "$w/logs/error.log" 2>/dev/null; }

# 4. One admin change; its call arrives.
code=$(curl -sS -m 10 -o "$w/logs/answer" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' \
    --data-binary '{"id":"deb-1","username":"debtest","email":"deb@example.com"}' \
    "http://127.0.0.1:$port/console/member")
[ "$code" = 201 ]
ok $? "POST /console/member through httpd: 201 (got $code)"
deadline=$((SECONDS + wait_s))
until [ -s "$w/logs/receiver.jsonl" ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
txn=$(sed -n 's/.*"POST \/console\/member HTTP[^"]*" 201 txn=\([0-9a-f]*\)$/\1/p' "$w/logs/access.log" 2>/dev/null | head -1)
[ -n "$txn" ]
ok $? "  the access log has the txn of its event ($txn)"
python3 - "$w/logs/receiver.jsonl" "$txn" <<'EOF'
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()] \
    if __import__("os").path.exists(sys.argv[1]) else []
txn = sys.argv[2]
assert len(calls) == 1, "%d calls" % len(calls)
c = calls[0]
q = dict(kv.split("=", 1) for kv in c["query"].split("&"))
assert c["method"] == "PUT", c["method"]
assert c["path"] == "/hooks/v1/member/deb-1", c["path"]
assert q.get("event") == "post-create", q
assert txn and q.get("txn") == txn, (q, txn)
body = json.loads(c["body"])
assert body.get("id") == "deb-1" and body.get("username") == "debtest", body
EOF
ok $? "  the receiver got it within ${wait_s}s: PUT /hooks/v1/member/deb-1?event=post-create&txn=$txn, the member in the body"
# the outcome is written once the receiver has answered: polled too
delivered() { etctl stats 2>/dev/null | awk -F'\t' '$1 == "debtest" {print $5}'; }
until [ "$(delivered)" = 1 ] || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
[ "$(delivered)" = 1 ]
ok $? "  etctl stats (the package's default outbox): 1 delivered for site debtest"

apache2ctl stop >/dev/null 2>&1
for _ in $(seq 100); do sys_running || break; sleep 0.1; done
! sys_running
ok $? "apache2ctl stop"
httpd_started=0

# 5. remove: the outbox stays, the module goes and is disabled.
DEBIAN_FRONTEND=noninteractive apt-get remove "${apt_opts[@]}" "$pkg" >"$w/logs/remove.log" 2>&1
! installed
ok $? "apt-get remove $pkg"
[ -f /var/lib/apache2/eventtrigger/outbox.db ]
ok $? "  the outbox is kept (/var/lib/apache2/eventtrigger/outbox.db)"
[ ! -e "$so" ] && [ ! -e /usr/sbin/etctl ] && [ ! -L /etc/apache2/mods-enabled/eventtrigger.load ]
ok $? "  the module and etctl are gone, and it is disabled"

# 6. purge: nothing is left.
DEBIAN_FRONTEND=noninteractive apt-get purge "${apt_opts[@]}" "$pkg" >"$w/logs/purge.log" 2>&1
! known
ok $? "apt-get purge $pkg"
[ ! -e /var/lib/apache2/eventtrigger ]
ok $? "  the outbox directory is gone"
left=$(find /etc/apache2 /usr/lib/apache2 /usr/sbin /usr/share/man /usr/share/doc \
    /var/lib/apache2 -name '*eventtrigger*' ! -name 'eventtrigger-debtest*' 2>/dev/null)
[ -z "$left" ]
ok $? "  no file, link or a2enmod state of the module left${left:+: $left}"

# 7. And the configuration as it was.
trap - EXIT
cleanup
after=$(snapshot)
diff <(echo "$before") <(echo "$after") | sed 's/^/# /'
[ "$before" = "$after" ]
ok $? "/etc/apache2 and /var/lib/apache2 are as they were before"

echo "ROOT $pass passed, $fail failed"
[ "$fail" = 0 ]
