#!/usr/bin/env python3
"""bench/stmt.py SOURCE NAME: print the SQL of statement NAME (e.g. ST_CLAIM)
of lib/et_outbox_dbd.c's stmt_sql[] array, with its apr_dbd placeholders
filled so that SQLite can EXPLAIN and run it on a copy of an outbox:
%s -> 'bench' (the site), %lld -> 9000000000000000 (a time after every
row's due and lease), %d -> 8 (LIMIT: EventTriggerWorkers). The profile
thus follows the module's SQL as it is built, not a copy of it."""
import re
import sys


def main():
    src = open(sys.argv[1]).read()
    name = sys.argv[2]
    start = src.index("stmt_sql[ET_STMTS] = {")
    end = src.index("};", start)
    body = src[start:end]
    parts = re.split(r"/\*\s*(ST_[A-Z_]+)\b", body)
    # parts: [head, name1, chunk1, name2, chunk2, ...]
    for i in range(1, len(parts), 2):
        if parts[i] != name:
            continue
        chunk = parts[i + 1]
        chunk = re.sub(r"/\*.*?\*/", "", "/*" + chunk, flags=re.S)  # its own comment, and inner ones
        chunk = re.sub(r"/\*.*?\*/", "", chunk, flags=re.S)
        sql = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', chunk))
        sql = re.sub(r'" EV_COLS "', "", sql)
        if "RETURNING" in sql and sql.rstrip().endswith("RETURNING"):
            sql += " id"
        sql = sql.replace("%lld", "9000000000000000").replace("%d", "8").replace("%s", "'bench'")
        print(sql)
        return
    sys.exit("no statement %s in %s" % (name, sys.argv[1]))


if __name__ == "__main__":
    main()
