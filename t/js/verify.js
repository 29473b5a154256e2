#!/usr/bin/env node
// Verifies Standard Webhooks signatures with the `standardwebhooks` package
// from npm (an implementation independent of mod_eventtrigger), for
// t/api/sign.t. Install once with `npm ci` in this directory.
//
// Input: a file of JSON lines, one check each:
//   {"secret": "whsec_...", "headers": {"webhook-id": ..., ...},
//    "body_b64": "<the body's exact bytes, base64>"}
// Output: one line per check, in order: "ok" or "fail: <reason>".
//
// Usage: node t/js/verify.js CHECKS.jsonl
"use strict";

const fs = require("fs");
const { Webhook } = require("standardwebhooks");

const lines = fs.readFileSync(process.argv[2], "utf8").split("\n").filter((l) => l.trim());
for (const line of lines) {
    let result;
    try {
        const c = JSON.parse(line);
        const body = Buffer.from(c.body_b64, "base64");
        // jsonParse: false, so that form bodies verify too
        new Webhook(c.secret).verify(body, c.headers, { jsonParse: false });
        result = "ok";
    } catch (e) {
        result = "fail: " + (e && e.message ? e.message : String(e));
    }
    process.stdout.write(result.replace(/\n/g, " ") + "\n");
}
