#!/usr/bin/env python3
"""bench/pace.py: a paced (open-loop) load generator for the end-to-end
latency figure. wrk2 is not in Debian and wrk has no pacing, so this sends
PUT requests with a JSON body at a steady RATE per second for SECONDS, on
CONNS keep-alive connections (one thread each, RATE/CONNS per thread, start
times staggered), each to a fresh object id, and writes one line per call:

    <object id> <send time> <time the whole answer was read> <status>

(times: seconds since the epoch, CLOCK_REALTIME, as nginx's $msec). A call
that falls behind its schedule is sent at once (no catch-up burst is hidden:
the send time is recorded).

  pace.py --url http://127.0.0.1:10000/console/member/ --rate 200 \
          --seconds 20 --conns 4 --out calls.txt [--query '?x=y']
"""
import argparse
import http.client
import threading
import time
import urllib.parse

BODY = (b'{"username":"partner1_dev1","email":"dev1@example.com",'
        b'"phone":"+1 555 0100","status":"active"}')


def worker(idx, args, start, out, lock):
    u = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    interval = args.conns / args.rate
    n = int(args.seconds * args.rate / args.conns)
    lines = []
    hdrs = {"Content-Type": "application/json", "Accept": "application/json"}
    for i in range(n):
        due = start + idx * (1.0 / args.rate) + i * interval
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        oid = "p%d-%d" % (idx, i)
        t_send = time.time()
        conn.request("PUT", u.path + oid + args.query, body=BODY, headers=hdrs)
        resp = conn.getresponse()
        resp.read()
        t_done = time.time()
        lines.append("%s %.6f %.6f %d\n" % (oid, t_send, t_done, resp.status))
    conn.close()
    with lock:
        out.writelines(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--query", default="")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    lock = threading.Lock()
    start = time.time() + 0.2
    with open(args.out, "w") as out:
        ts = [threading.Thread(target=worker, args=(i, args, start, out, lock))
              for i in range(args.conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


if __name__ == "__main__":
    main()
