#!/usr/bin/env python3
"""bench/e2e.py CALLS ARRIVALS: match pace.py's calls (by object id) with
the receiver's arrival log ("SECONDS METHOD URI STATUS", bench/arrival.py)
and print
  matched=N missing=M p50_ms=.. p99_ms=.. max_ms=..
for (arrival - time the console's answer was read). With --rtt, print the
same for the calls' own round trip (answer read - sent) instead."""
import re
import sys


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def main():
    rtt = "--rtt" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--rtt"]
    calls = {}
    for line in open(args[0]):
        oid, t_send, t_done, status = line.split()
        calls[oid] = (float(t_send), float(t_done), int(status))
    if rtt:
        lat = [(d - s) * 1000 for s, d, st in calls.values()]
        missing = 0
    else:
        arr = {}
        rx = re.compile(r"^(\d+\.\d+) \S+ /\S*/member/([^?\s]+)")
        for line in open(args[1]):
            m = rx.match(line)
            if m and m.group(2) not in arr:
                arr[m.group(2)] = float(m.group(1))
        lat = [(arr[o] - c[1]) * 1000 for o, c in calls.items() if o in arr]
        missing = sum(1 for o in calls if o not in arr)
    print("matched=%d missing=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f"
          % (len(lat), missing, pct(lat, 50), pct(lat, 99), max(lat) if lat else float("nan")))


if __name__ == "__main__":
    main()
