#!/usr/bin/env bash
# t/root/store_full.sh: fail closed when the SQLite outbox's filesystem
# fills up (mod_eventtrigger_guard.c, lib/et_guard.c). Root only: it mounts
# a small tmpfs for the outbox and starts the system httpd as root (User
# www-data), with a recording console (t/bin/console.py --record) behind
# mod_proxy and a receiver (t/bin/receiver.py).
#   - parallel creates of large objects, and updates of a few objects,
#     until the filesystem is full and on for a while: every request the
#     console saw has its event stored and delivered, every other one got
#     503 (before the console saw it), no ET00032 (no event lost);
#   - the reserve given up (truncated, as a failed store does): the
#     dispatcher writes nothing until it is held again (ET01059, ET01060);
#   - space is freed (a file deleted): creates succeed again within a
#     second or so, with no restart, and the backlog is delivered, each
#     object's updates in order.
#   bash t/root/store_full.sh TREE     (TREE: a built checkout)
# Prints "ROOT <n> passed, <m> failed" last.
set -u
tree=${1:?usage: store_full.sh TREE}
module=$tree/.libs/mod_eventtrigger.so
user=www-data
port=${ET_ROOT_FULL_PORT:-9986}
cport=$((port + 1)) rport=$((port + 2))
pass=0 fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi; }
summary() { echo "ROOT $pass passed, $fail failed"; }

[ "$(id -u)" = 0 ] || { echo "run as root"; exit 2; }
[ -f "$module" ] || { echo "no $module (build first)"; exit 2; }
id "$user" >/dev/null 2>&1 || { echo "no user $user"; exit 2; }
for m in mpm_event authz_core proxy proxy_http; do
    [ -f "/usr/lib/apache2/modules/mod_$m.so" ] || { echo "no mod_$m"; exit 2; }
done
command -v sqlite3 >/dev/null || { echo "no sqlite3"; exit 2; }

sr=$(mktemp -d /tmp/et-full.XXXXXX)
chmod 755 "$sr"
mkdir -p "$sr/logs" "$sr/run" "$sr/fs"
pids=()
cleanup() {
    stop
    # ET_KEEP=DIR: keep the logs there
    [ -n "${ET_KEEP:-}" ] && rm -rf "$ET_KEEP" && cp -r "$sr/logs" "$ET_KEEP"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    umount "$sr/fs" 2>/dev/null
    rm -rf "$sr"
}
trap cleanup EXIT

# The outbox's filesystem: 6 MB, of which a 2 MB file is freed later.
if ! mount -t tmpfs -o size=6144k,mode=755 tmpfs "$sr/fs"; then
    echo "cannot mount a tmpfs (a container without CAP_SYS_ADMIN?)"
    ok 1 "mount a small tmpfs for the outbox"
    summary
    exit 1
fi
mkdir "$sr/fs/state"
chown "$user:" "$sr/fs/state"
dd if=/dev/zero of="$sr/fs/filler" bs=1k count=2048 status=none
db=$sr/fs/state/outbox.db

# the console and the receiver, as the user httpd runs as
runuser -u "$user" -- python3 "$tree/t/bin/console.py" --port "$cport" --quiet \
    --record "$sr/logs/console.jsonl" >"$sr/logs/console.out" 2>&1 &
pids+=($!)
runuser -u "$user" -- python3 "$tree/t/bin/receiver.py" --port "$rport" \
    --log "$sr/logs/receiver.jsonl" >"$sr/logs/receiver.out" 2>&1 &
pids+=($!)
chown "$user:" "$sr/logs"

cat >"$sr/httpd.conf" <<CONF
ServerRoot $sr
ServerName 127.0.0.1
PidFile $sr/run/httpd.pid
DefaultRuntimeDir $sr/run
Listen 127.0.0.1:$port
User $user
Group $user
ErrorLog $sr/logs/error.log
LogLevel warn eventtrigger:info
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
LoadModule eventtrigger_module $module
StartServers 2
ServerLimit 2
ThreadsPerChild 16
MaxRequestWorkers 32
EventTriggerStore sqlite3:$db
# 32 requests at once, each commit adding up to ~20 KB of pages to the
# write-ahead log while a checkpoint cannot run: the reserve covers them
EventTriggerStoreReserve 512K
EventTriggerPollInterval 200ms
# an outcome that could not be recorded while the disk was full is made
# again when its lease ends: short ones, for the test's deadline
EventTriggerConnectTimeout 2
EventTriggerTimeout 4
EventTriggerLease 5
EventTriggerSiteName full
EventTriggerEndpoint http://127.0.0.1:$rport/hooks/full
EventTriggerFormat json
ProxyPass /proxy/ http://127.0.0.1:$cport/proxy/
<Location /proxy/member>
    EventTrigger member
</Location>
<Location /et-status>
    SetHandler eventtrigger-status
</Location>
CONF
stop() {
    [ -s "$sr/run/httpd.pid" ] || return 0
    /usr/sbin/apache2 -d "$sr" -f "$sr/httpd.conf" -k stop >/dev/null 2>&1
    for _ in $(seq 100); do [ -e "$sr/run/httpd.pid" ] || break; sleep 0.1; done
}
/usr/sbin/apache2 -d "$sr" -f "$sr/httpd.conf" -k start
up=1
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/et-status?json" && { up=0; break; }
    sleep 0.1
done
ok $up "httpd starts with its outbox on a 6 MB tmpfs"
[ $up = 0 ] || { cat "$sr/logs/error.log"; summary; exit 1; }
ppid0=$(cat "$sr/run/httpd.pid")

# load.py PHASE SECONDS_AFTER_FULL: 16 threads; each creates 2 KB members
# and updates its own object (seq in the body), recording every answer;
# with SECONDS_AFTER_FULL, it stops that long after the first 503 (or
# after 60 s without one); without, it makes 2 requests per thread.
cat >"$sr/load.py" <<'PY'
import http.client, json, sys, threading, time
port, phase, after, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
big = "x" * 2048
lock = threading.Lock()
first_503 = [None]
rec = []
def worker(t):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    start = time.time()
    while True:
        n += 1
        if after == "-":
            if n > 2:
                break
        else:
            f = first_503[0]
            if (f and time.time() - f > float(after)) or time.time() - start > 60:
                break
        if n % 2:
            method, path, oid = "POST", "/proxy/member", "%s-c-%d-%d" % (phase, t, n)
            body = {"id": oid, "blob": big}
        else:
            oid = "%s-o-%d" % (phase, t)
            method, path = "PUT", "/proxy/member/" + oid
            body = {"id": oid, "seq": n, "blob": big}
        try:
            c.request(method, path, json.dumps(body),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            text = r.read()
            status = r.status
            retry = r.getheader("Retry-After")
        except Exception as e:
            status, text, retry = 0, str(e).encode(), None
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            if status == 503 and first_503[0] is None:
                first_503[0] = time.time()
            rec.append({"method": method, "id": oid, "seq": body.get("seq"),
                        "status": status, "retry": retry,
                        "body": text.decode("utf-8", "replace")[:300]})
ts = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
for t in ts: t.start()
for t in ts: t.join()
with open(out, "w") as f:
    for r in rec:
        f.write(json.dumps(r) + "\n")
PY

# 1. Fill it up.
python3 "$sr/load.py" "$port" full 3 "$sr/logs/full.jsonl"
read -r n2xx n503 nother < <(python3 - "$sr/logs/full.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(sum(200 <= r["status"] < 300 for r in rs), sum(r["status"] == 503 for r in rs),
      sum(not (200 <= r["status"] < 300 or r["status"] == 503) for r in rs))
PY
)
echo "# filling: $n2xx saved, $n503 refused, $nother other answers"
[ "${n2xx:-0}" -gt 50 ] && [ "${n503:-0}" -gt 0 ]
ok $? "parallel creates until the disk is full: some saved ($n2xx), then 503 ($n503)"
[ "${nother:-1}" = 0 ]
ok $? "  no answer but 2xx or 503"
df -k "$sr/fs" | tail -1 | sed 's/^/# /'
echo "# reserve after filling: $(stat -c %b "$db.reserve") blocks ($(stat -c %B "$db.reserve") bytes each; 0: given up to admitted events)"

# Every 503 is the module's (Retry-After, txn null) and the console never saw it.
python3 - "$sr/logs/full.jsonl" "$sr/logs/console.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
seen = [json.loads(l) for l in open(sys.argv[2])]
seen_ids = {}
for s in seen:
    seen_ids[(s["method"], s["id"])] = seen_ids.get((s["method"], s["id"]), 0) + 1
bad = [r for r in rs if r["status"] == 503
       and (r["retry"] is None or '"txn":null' not in r["body"])]
# creates: unique ids; updates: as many seen per object as answered 2xx
refused_seen = [r for r in rs if r["status"] == 503 and r["method"] == "POST"
                and ("POST", r["id"]) in seen_ids]
puts_ok = {}
for r in rs:
    if r["method"] == "PUT" and 200 <= r["status"] < 300:
        puts_ok[r["id"]] = puts_ok.get(r["id"], 0) + 1
put_mismatch = [o for o, n in puts_ok.items() if seen_ids.get(("PUT", o), 0) != n]
put_mismatch += [o for (m, o) in seen_ids if m == "PUT" and o not in puts_ok]
sys.exit(1 if bad or refused_seen or put_mismatch else 0)
PY
ok $? "every 503 is the module's (Retry-After, txn null) and the console saw none of them"

ok "$(grep -c ET00032 "$sr/logs/error.log" | sed 's/^0$/0/; t; s/.*/1/')" \
    "no event lost (0 ET00032)"
grep -q "ET00093: the outbox's disk is full" "$sr/logs/error.log"
ok $? "the refusal is logged with why (ET00093: disk full)"
grep -q "ET00095: refused [0-9]* write request" "$sr/logs/error.log"
ok $? "  and counted (ET00095)"
curl -s "http://127.0.0.1:$port/et-status?json" >"$sr/logs/status-full.json"
python3 - "$sr/logs/status-full.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
o = st["outbox"]
site = [s for s in st["sites"] if s["site"] == "full"][0]
ok = o["state"] == "full" and not o["writable"] and o["refusing_since"] > 0 \
     and site["refused"] > 0 and site["lost"] == 0 and o["lost"] == 0
sys.exit(0 if ok else 1)
PY
ok $? "the status page: outbox full, refusing since, refused counted, none lost"

# 1b. The reserve given up, as a writer whose store failed gives it up:
# its room is for admitted events, so the dispatcher writes nothing (no
# outcome, no claim) until it is held again; with this little room
# neither it nor the check can hold it again yet.
truncate -s 0 "$db.reserve"
held_back=1
for _ in $(seq 50); do
    grep -q "ET01059: the outbox's disk is full" "$sr/logs/error.log" && { held_back=0; break; }
    sleep 0.1
done
ok $held_back "the reserve given up: the dispatcher holds its writes back (ET01059)"
curl -s "http://127.0.0.1:$port/et-status?json" | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["outbox"]["deliveries_held_back"] is True else 1)'
ok $? "  and the status page says deliveries wait (deliveries_held_back)"

# 2. Room again: a file is deleted.
rm -f "$sr/fs/filler"
t0=$(date +%s.%N)
back=1
for i in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"id\":\"after-$i\"}" "http://127.0.0.1:$port/proxy/member")
    if [ "$code" = 201 ]; then back=0; break; fi
    sleep 0.05
done
t1=$(date +%s.%N)
took=$(python3 -c "print('%.2f' % ($t1 - $t0))")
ok $back "space freed: creates succeed again ($took s)"
python3 -c "import sys; sys.exit(0 if $took < 1.5 else 1)"
ok $? "  within a second or so"
[ "$(cat "$sr/run/httpd.pid")" = "$ppid0" ]
ok $? "  without a restart"
python3 "$sr/load.py" "$port" after - "$sr/logs/after.jsonl"
python3 - "$sr/logs/after.jsonl" <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if rs and all(200 <= r["status"] < 300 for r in rs) else 1)
PY
ok $? "  a second load: every request saved"

# 3. The backlog is delivered: everything the console saw, in order.
check_delivered() {
    python3 - "$sr/logs/console.jsonl" "$sr/logs/receiver.jsonl" "$sr/logs/full.jsonl" \
        "$sr/logs/after.jsonl" <<'PY'
import json, sys, urllib.parse
seen = [json.loads(l) for l in open(sys.argv[1])]
calls = []
for l in open(sys.argv[2]):
    if l.endswith("\n"):
        calls.append(json.loads(l))
sent = [json.loads(l) for f in sys.argv[3:] for l in open(f)]
got = {}
order = {}
for c in calls:
    oid = urllib.parse.unquote(c["path"].rsplit("/", 1)[-1])
    got[oid] = got.get(oid, 0) + 1
    try:
        b = json.loads(c["body"])
    except ValueError:
        continue
    if "seq" in b:
        order.setdefault(oid, []).append(b["seq"])
missing = [s["id"] for s in seen if s["id"] not in got]
want = {}
for r in sent:
    if r["method"] == "PUT" and 200 <= r["status"] < 300:
        want.setdefault(r["id"], []).append(r["seq"])
bad_order = [o for o, seqs in want.items()
             if sorted(set(order.get(o, []))) != sorted(seqs)
             or order.get(o, []) != sorted(order.get(o, []))]
if missing or bad_order:
    print("# missing %d, out of order or incomplete: %s" % (len(missing), bad_order[:5]))
    sys.exit(1)
PY
}
done_ok=1
for _ in $(seq 600); do
    check_delivered >/dev/null && { done_ok=0; break; }
    sleep 0.1
done
[ $done_ok = 0 ] || check_delivered
ok $done_ok "the backlog is delivered: every change the console saw, each object's updates in order"
for _ in $(seq 300); do
    n=$(sqlite3 -cmd '.timeout 5000' "$db" "SELECT count(*) FROM et_event WHERE state <> 1" 2>/dev/null)
    [ "$n" = 0 ] && break
    sleep 0.1
done
[ "$n" = 0 ]
ok $? "  and nothing is left undelivered in the outbox ($n)"
ok "$(grep -c ET00032 "$sr/logs/error.log" | sed 's/^0$/0/; t; s/.*/1/')" \
    "still no event lost (0 ET00032)"
grep -q "ET00094: the outbox is writable again" "$sr/logs/error.log"
ok $? "ET00094: writable again"
grep -q "ET01060: the outbox's reserve is held again" "$sr/logs/error.log"
ok $? "ET01060: the dispatcher writes again once the reserve is held"
curl -s "http://127.0.0.1:$port/et-status?json" | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["outbox"]["deliveries_held_back"] is False else 1)'
ok $? "  and the status page says so (deliveries_held_back false)"

if [ "$fail" != 0 ]; then
    echo "# error log:"; grep -E "ET0|AH" "$sr/logs/error.log" | tail -30 | sed 's/^/#   /'
fi
summary
[ "$fail" = 0 ]
