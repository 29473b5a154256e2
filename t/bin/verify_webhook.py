#!/usr/bin/env python3
"""A Standard Webhooks verifier written with Python's standard library only
(hmac, hashlib, base64), independent of mod_eventtrigger's C code and of the
npm package t/js/verify.js uses; for t/api/sign.t and as the example in
docs/security.md.

Input: a file of JSON lines, one check each:
  {"secret": "whsec_...", "headers": {"webhook-id": ..., ...},
   "body_b64": "<the body's exact bytes, base64>"}
Output: one line per check, in order: "ok" or "fail: <reason>".

Usage: verify_webhook.py CHECKS.jsonl [--tolerance SECONDS]
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time


def verify(secret, headers, body, tolerance=300, now=None):
    """Raise ValueError unless one v1 signature of the headers is the
    HMAC-SHA256 of "id.timestamp.body" under the secret."""
    headers = {k.lower(): v for k, v in headers.items()}
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not (msg_id and ts and sigs):
        raise ValueError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not ts.isdigit():
        raise ValueError("webhook-timestamp is not a number")
    now = time.time() if now is None else now
    if abs(now - int(ts)) > tolerance:
        raise ValueError("webhook-timestamp is too old or too new")
    if not secret.startswith("whsec_"):
        raise ValueError("secret without whsec_")
    key = base64.b64decode(secret[len("whsec_"):], validate=True)
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for sig in sigs.split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    raise ValueError("no matching signature")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checks")
    ap.add_argument("--tolerance", type=int, default=300)
    args = ap.parse_args()
    with open(args.checks, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                c = json.loads(line)
                verify(c["secret"], c["headers"], base64.b64decode(c["body_b64"]),
                       args.tolerance)
                print("ok")
            except Exception as e:  # one line per check, whatever went wrong
                print("fail: %s" % str(e).replace("\n", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
