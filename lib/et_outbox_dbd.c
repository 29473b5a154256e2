/* Licensed under the Apache License, Version 2.0. */
/*
 * The outbox over apr_dbd. SQLite (WAL) is the embedded default; the SQL is
 * kept to what SQLite >= 3.35 and PostgreSQL both understand (UPDATE ...
 * RETURNING), with the schema the only per-driver text.
 *
 * Times are stored as integer microseconds (apr_time_t).
 */

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr_base64.h>
#include <apr_dbd.h>
#include <apr_strings.h>
#include <apr_file_info.h>
#include <apr_hash.h>

#include <jansson.h>
#include <sqlite3.h>

#include "et_outbox.h"

enum {
    ST_INSERT = 0, ST_LEASE_FRESH, ST_LAST_ID, ST_CLAIM, ST_CLAIM_NEXT,
    ST_FINISH, ST_PROMOTE, ST_RELEASE, ST_NEXT_DUE, ST_UNCLAIM,
    ST_CIRCUIT_SET, ST_CIRCUITS, ST_REPLAY_TXN, ST_REPLAY_SINCE,
    ST_HEAD_DOWN, ST_HEAD_UP, ST_LIST, ST_SHOW, ST_SITE_COUNTS, ST_RECENT_ERRORS,
    ST_LATENCIES, ST_PRUNE, ST_PENDING_SITES, ST_SITES, ET_STMTS
};

/* The columns every event read back carries, in row_to_event's order. */
#define EV_COLS "id, txn, site, object, event, oid, url, content_type, body," \
                " attempts, created, state, last_status, last_error, error," \
                " due, done_at, traceparent, tracestate, headers"

struct et_outbox_t {
    apr_pool_t *pool;
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db;
    const char *file;                 /* sqlite3 only */
    int is_pgsql;
    /* pgsql: the connection's one transaction object, made at open and
     * reused by every BEGIN. APR-util's pgsql driver writes through a NULL
     * one when a BEGIN fails with a result (a connection the server
     * closed): a crash instead of an error. */
    apr_dbd_transaction_t *trans;
    /* pgsql: one object's events are stored one at a time, machines
     * included (see lock_objects) */
    apr_dbd_prepared_t *st_lock;
    apr_dbd_prepared_t *st_finish;    /* pgsql: pgsql_finish */
    apr_dbd_prepared_t *st_finish_batch; /* pgsql: pgsql_finish_batch */
    /* an endpoint's probe, taken by one dispatcher of all (circuit_take) */
    apr_dbd_prepared_t *st_circuit_take;
    int in_txn;                       /* in et_outbox_begin's transaction */
    apr_dbd_prepared_t *st[ET_STMTS];
    char last_error[256];             /* fixed: errors must not grow a pool */
    int last_rc;                      /* the driver's code of that error */
    int migrated_from;                /* open: the version migrated, or 0 */
};

/* One schema for both drivers; only the key and time types differ. */
#define ET_SCHEMA(PK, TIME) {                                           \
    "CREATE TABLE IF NOT EXISTS et_event ("                             \
    " id " PK ","                                                       \
    " txn TEXT NOT NULL UNIQUE,"                                        \
    " site TEXT NOT NULL,"                                              \
    " object TEXT NOT NULL,"                                            \
    " event TEXT NOT NULL,"                                             \
    " oid TEXT NOT NULL,"                                               \
    " url TEXT,"                                                        \
    " content_type TEXT,"                                               \
    " body TEXT,"                                                       \
    " state INTEGER NOT NULL DEFAULT 0,"                                \
    " attempts INTEGER NOT NULL DEFAULT 0,"                             \
    " created " TIME " NOT NULL,"                                       \
    " due " TIME " NOT NULL,"                                           \
    " lease_until " TIME " NOT NULL DEFAULT 0,"                         \
    " lease_owner TEXT,"                                                \
    " last_status INTEGER,"                                             \
    " last_error TEXT,"                                                 \
    " error TEXT,"                                                      \
    " done_at " TIME ","                                                \
    " latency " TIME ","                                                \
    " traceparent TEXT,"                                                \
    " tracestate TEXT,"                                                 \
    " headers TEXT,"                                                    \
    " head INTEGER NOT NULL DEFAULT 0)",                                \
    /* each object's line, every event in it: the next event after a  \
     * head is a seek from that head (finished events before it are     \
     * never read), and a finish leaves the index alone - a round       \
     * finishing 32 objects' events wrote 32 of its pages when it held  \
     * pending events only (et_event_order, dropped here, as is the     \
     * still earlier et_event_object; figure 14c) */                    \
    "DROP INDEX IF EXISTS et_event_object",                             \
    "DROP INDEX IF EXISTS et_event_order",                              \
    "CREATE INDEX IF NOT EXISTS et_event_line"                          \
    " ON et_event (site, object, oid, id)",                             \
    /* the leases a dispatcher holds (its release at stop): only rows \
     * in flight are in it, so it stays small and hot. It replaces an  \
     * index on (state, due) that every claim and finish had to move   \
     * entries in. */                                                   \
    "CREATE INDEX IF NOT EXISTS et_event_leased ON et_event (lease_owner)" \
    " WHERE lease_owner IS NOT NULL",                                   \
    "DROP INDEX IF EXISTS et_event_due",                                \
    /* one site's finished events by state and time: retention,        \
     * latencies. Finished ones only, so that a claim (which moves due) \
     * and a finish (which moves state) do not also move an entry of a  \
     * pending event: a page less in each commit, and no page of it    \
     * per object when a round finishes many objects' events stored in  \
     * a row (figures 14b, 14c). A delivery adds an entry (room of its  \
     * own): the dispatcher writes nothing while the reserve kept for   \
     * admitted events is given up (et_dispatch.c, room_to_write).      \
     * Statements that read it say "state <> 0" (SQLite uses a partial  \
     * index only for a WHERE that names its condition). Earlier        \
     * outboxes had every event in et_event_claim (site, state, due),   \
     * dropped at open. */                                              \
    "DROP INDEX IF EXISTS et_event_claim",                              \
    "CREATE INDEX IF NOT EXISTS et_event_done"                          \
    " ON et_event (site, state, due) WHERE state <> 0",                 \
    /* paused endpoints: the claim skips their sites until open_until */ \
    "CREATE TABLE IF NOT EXISTS et_circuit ("                           \
    " site TEXT PRIMARY KEY,"                                           \
    " state INTEGER NOT NULL,"                                          \
    " failures INTEGER NOT NULL,"                                       \
    " open_until " TIME " NOT NULL,"                                    \
    " changed " TIME " NOT NULL,"                                       \
    " last_error TEXT)",                                                \
    /* the schema's version (ET_SCHEMA_VERSION), for migrations */       \
    "CREATE TABLE IF NOT EXISTS et_meta ("                              \
    " name TEXT PRIMARY KEY,"                                           \
    " value TEXT NOT NULL)",                                            \
    NULL                                                                \
}

/*
 * The version of the schema this code writes. 1: any outbox made before
 * the version was recorded (no et_meta row). 2: the head column - an
 * object's first pending event is marked, and only marked events are
 * claimed (see ST_CLAIM); an outbox of version 1 gets its heads marked
 * when it is opened with create (migrate).
 */
#define ET_SCHEMA_VERSION 2

/* Made once the columns are there (an older outbox gets head first). */
static const char *const schema_late[] = {
    /* the claim's candidates: each object's first pending event, and
     * nothing else - however many wait behind it (issue 14) */
    "CREATE INDEX IF NOT EXISTS et_event_head ON et_event (site, due)"
    " WHERE state = 0 AND head = 1",
    /* the same heads by object: an object has pending events exactly
     * when it has a head, so "is anything of it pending" (the store's
     * check) is one seek here, not a walk of its line */
    "CREATE INDEX IF NOT EXISTS et_event_head_object"
    " ON et_event (site, object, oid) WHERE state = 0 AND head = 1",
    NULL
};

/* Columns added to et_event since its first schema. CREATE TABLE IF NOT
 * EXISTS leaves an outbox made before them as it was: they are added at
 * open (et_outbox_open with create, as httpd's startup does). Their rows
 * keep NULL there: events without trace context or headers. */
static const struct {
    const char *name, *type;
} added_columns[] = {
    { "traceparent", "TEXT" }, { "tracestate", "TEXT" }, { "headers", "TEXT" },
    { "head", "INTEGER NOT NULL DEFAULT 0" }, { NULL, NULL }
};

static const char *const schema_sqlite[] =
    ET_SCHEMA("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER");
static const char *const schema_pgsql[] =
    ET_SCHEMA("BIGSERIAL PRIMARY KEY", "BIGINT");

/* The distinct sites of the events that meet COND (the condition of a
 * partial index whose key starts with the site): one seek per site in
 * that index (a DISTINCT would read every row). */
#define ET_SITES_CTE(COND)                                              \
    "WITH RECURSIVE s(site) AS ("                                       \
    " SELECT (SELECT MIN(site) FROM et_event WHERE " COND ")"           \
    " UNION ALL SELECT (SELECT MIN(e.site) FROM et_event e"             \
    "  WHERE e.site > s.site AND " COND ")"                             \
    " FROM s WHERE s.site IS NOT NULL) "

/* Where a claim's subquery locks the rows it picks on PostgreSQL
 * (prepare_stmt puts PGSQL_SKIP_LOCKED there); a comment to SQLite, whose
 * writers are serialised anyway. */
#define ET_SKIP_LOCKED " /*skip locked*/"
#define PGSQL_SKIP_LOCKED " FOR UPDATE SKIP LOCKED"
/* Where the heads are read (claim, next due): SQLite is told to use
 * et_event_head (prepare_stmt). Left to itself, without statistics, it
 * prefers et_event_claim (site, state, due), whose range holds every
 * pending event of the site, a hot object's backlog included - the walk
 * the head mark is there to avoid. PostgreSQL picks et_event_head by
 * itself (its partial index is the smaller one), with or without
 * statistics. */
#define ET_HEAD_INDEX " /*indexed by et_event_head*/"
#define SQLITE_HEAD_INDEX " INDEXED BY et_event_head"
/* Likewise where an object's line is read: SQLite chose a range of the
 * primary key for "a later one of this object" (id > ?), every event
 * stored after it, once per claimed head. */
#define ET_LINE_INDEX " /*indexed by et_event_line*/"
#define SQLITE_LINE_INDEX " INDEXED BY et_event_line"
/* And where an object's head is looked for. */
#define ET_HEAD_OBJECT_INDEX " /*indexed by et_event_head_object*/"
#define SQLITE_HEAD_OBJECT_INDEX " INDEXED BY et_event_head_object"

/* apr_dbd placeholders: every argument is passed as text (apr_dbd_pvquery). */
/* ST_LAST_ID on PostgreSQL: the session's last nextval(), the id's */
static const char pgsql_last_id[] = "SELECT lastval()";
/* PostgreSQL: objects' locks until the transaction ends (lock_objects),
 * taken in the order given, in one statement: a comma-separated list of
 * keys in base64 (no comma in it, whatever the ids hold) */
static const char pgsql_object_lock[] =
    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM"
    " (SELECT k FROM unnest(string_to_array(%s, ',')) WITH ORDINALITY"
    " AS u(k, n) ORDER BY n) s";
/* A round's outcomes in one statement on PostgreSQL (et_outbox_finish_batch):
 * the finishes, then the promotion of each finished head's next event -
 * a seek from the head in its object's line to the first pending event
 * that is not among this statement's finished rows, which its subqueries
 * still see pending (they see the rows as they were before the
 * statement). Answers the ids it finished (a lease that expired
 * meanwhile is not among them). */
static const char pgsql_finish_batch[] =
    "WITH v AS (SELECT * FROM json_to_recordset(%s::json) AS v(id bigint,"
    " state int, status int, error text, due bigint, done bigint,"
    " latency bigint, lease bigint)),"
    " f AS (UPDATE et_event e SET state = v.state, last_status = v.status,"
    " last_error = v.error, due = v.due, lease_until = 0, lease_owner = NULL,"
    " done_at = v.done, latency = v.latency,"
    /* a retry that is the first event left after its object's head ends
     * in this statement is the head now: marked here, as a row is
     * updated once per statement (n leaves it alone) */
    " head = CASE WHEN v.state = 0 AND e.head = 0 AND e.id = (SELECT p.id"
    " FROM et_event h, et_event p WHERE h.site = e.site"
    " AND h.object = e.object AND h.oid = e.oid AND h.state = 0"
    " AND h.head = 1 AND h.id IN (SELECT w.id FROM v w WHERE w.state <> 0)"
    " AND p.site = e.site AND p.object = e.object AND p.oid = e.oid"
    " AND p.id > h.id AND p.state = 0"
    " AND p.id NOT IN (SELECT w.id FROM v w WHERE w.state <> 0)"
    " ORDER BY p.id LIMIT 1) THEN 1 ELSE e.head END"
    " FROM v WHERE e.id = v.id"
    " AND e.lease_owner = %s AND e.lease_until = v.lease"
    " RETURNING e.id, e.site, e.object, e.oid, e.state, e.head),"
    " n AS (UPDATE et_event SET head = 1 WHERE head = 0 AND id IN"
    " (SELECT (SELECT p.id FROM et_event p WHERE p.site = f.site"
    " AND p.object = f.object AND p.oid = f.oid AND p.id > f.id"
    " AND p.state = 0 AND p.id NOT IN (SELECT id FROM f WHERE state <> 0)"
    " ORDER BY p.id LIMIT 1)"
    " FROM f WHERE f.state <> 0 AND f.head = 1)"
    " AND id NOT IN (SELECT id FROM f) RETURNING id)"
    " SELECT id FROM f";

/* ST_FINISH and ST_PROMOTE in one statement on PostgreSQL (a round trip
 * each would double a round's): the promotion's subquery sees the rows
 * as they were before the statement, so the finished row itself, still
 * pending there, is left out by its id. Answers the finish's row count. */
static const char pgsql_finish[] =
    "WITH f AS (UPDATE et_event SET state = %d, last_status = %d,"
    " last_error = %s, due = %lld, lease_until = 0, lease_owner = NULL,"
    " done_at = %lld, latency = %lld"
    " WHERE id = %lld AND lease_owner = %s AND lease_until = %lld"
    " RETURNING id, site, object, oid, state, head),"
    " n AS (UPDATE et_event SET head = 1 WHERE id = (SELECT p.id"
    " FROM et_event p, f WHERE f.state <> 0 AND f.head = 1"
    " AND p.site = f.site AND p.object = f.object AND p.oid = f.oid"
    " AND p.id > f.id AND p.state = 0 ORDER BY p.id LIMIT 1)"
    " AND head = 0 RETURNING id)"
    " SELECT (SELECT COUNT(*) FROM f), (SELECT COUNT(*) FROM n)";

/* Take the probe of a pause that is over: one dispatcher among all that
 * share the outbox wins it (PostgreSQL re-checks the WHERE on the row
 * version a concurrent winner committed; SQLite has one writer at a
 * time), and holds it until the new open_until, its probe's lease. A
 * probe whose lease ran out (its dispatcher died) may be taken again. */
static const char circuit_take_sql[] =
    "UPDATE et_circuit SET state = %d, open_until = %lld, changed = %lld"
    " WHERE site = %s AND state <> 0 AND open_until <= %lld";

static const char *const stmt_sql[ET_STMTS] = {
    /* ST_INSERT: an event is its object's head if nothing of its object
     * is pending, that is if the object has no head. One statement:
     * SQLite takes its writer's lock before reading, and PostgreSQL's
     * writers of one object hold its lock (lock_objects), so no other
     * writer comes between the check and the row. */
    "INSERT INTO et_event (txn, site, object, event, oid, url, content_type,"
    " body, state, created, due, error, traceparent, tracestate, headers,"
    " head)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %d, %lld, %lld, %s, %s, %s,"
    " %s, CASE WHEN CAST(%d AS INTEGER) = 0 AND NOT EXISTS (SELECT 1"
    " FROM et_event p" ET_HEAD_OBJECT_INDEX
    " WHERE p.site = %s AND p.object = %s AND p.oid = %s AND p.state = 0"
    " AND p.head = 1) THEN 1 ELSE 0 END)"
    " ON CONFLICT (txn) DO NOTHING",
    /* ST_LEASE_FRESH: a fresh event leased to the intake's dispatcher if
     * it is its object's head and no claim took it meanwhile; its
     * attempt counted (as ST_CLAIM does) */
    "UPDATE et_event SET lease_owner = %s, lease_until = %lld, due = %lld,"
    " attempts = 1 WHERE txn = %s AND head = 1 AND state = 0"
    " AND lease_owner IS NULL AND attempts = 0",
    /* ST_LAST_ID: the row just inserted (PostgreSQL: pgsql_last_id) */
    "SELECT last_insert_rowid()",
    /* ST_CLAIM: one site's due, unleased heads (each object's first
     * pending event: the partial index et_event_head holds nothing
     * else, so the events waiting behind them cost nothing here),
     * soonest due first. Attempts are counted at claim time so that a
     * dispatcher dying mid-call still uses one up (a crash loop cannot
     * retry forever); due moves to the lease's end, so a claimed event
     * leaves the due range the claim scans. PostgreSQL: rows another
     * dispatcher is claiming are skipped, not waited for (no deadlock,
     * no queue of machines behind one lock). The candidates are
     * MATERIALIZED, read once: PostgreSQL may run an IN subquery again
     * per row updated, and SKIP LOCKED then skips the rows this very
     * statement has just updated and takes more than LIMIT. */
    "WITH c AS MATERIALIZED (SELECT e.id,"
    /* and the id of the next event behind it (a seek from the head in
     * its line: the events before it are finished, and a head has
     * pending events right behind it, except after a replay), so that
     * only heads with a line cost a chained claim (et_outbox_claim_next);
     * here, not in RETURNING, where SQLite scans the whole index for it */
    "  (SELECT n.id FROM et_event n" ET_LINE_INDEX
    "  WHERE n.site = e.site AND n.object = e.object AND n.oid = e.oid"
    "  AND n.id > e.id AND n.state = 0 ORDER BY n.id LIMIT 1) AS followed"
    "  FROM et_event e" ET_HEAD_INDEX
    "  WHERE e.site = %s AND e.state = 0 AND e.head = 1 AND e.due <= %lld"
    "  AND e.lease_until < %lld ORDER BY e.due LIMIT %d" ET_SKIP_LOCKED ")"
    " UPDATE et_event SET lease_owner = %s, lease_until = %lld, due = %lld,"
    " attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM c)"
    /* again on the row itself: PostgreSQL re-checks these (not the
     * subquery) when another dispatcher claimed the row meanwhile. The
     * unary + keeps SQLite from driving the UPDATE through an index on
     * state (testing every pending row against the IN list). */
    " AND +state = 0 AND +head = 1 AND +lease_until < %lld"
    " RETURNING " EV_COLS ", (SELECT c.followed FROM c"
    " WHERE c.id = et_event.id)",
    /* ST_CLAIM_NEXT: the events after a claimed head, leased with it so
     * that the calling thread makes them one after the other as each
     * call succeeds (chained delivery): a seek from the head in
     * et_event_line */
    "WITH c AS MATERIALIZED (SELECT e.id FROM et_event e" ET_LINE_INDEX
    "  WHERE e.site = %s AND e.object = %s AND e.oid = %s AND e.state = 0"
    "  AND e.id > %lld ORDER BY e.id LIMIT %d" ET_SKIP_LOCKED ")"
    " UPDATE et_event SET lease_owner = %s, lease_until = %lld, due = %lld,"
    " attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM c)"
    " AND +state = 0 AND +lease_until < %lld"
    " RETURNING " EV_COLS,
    /* ST_FINISH: only the lease holder may write the outcome, and only
     * for the lease it holds: a lease that ran out and was claimed again
     * by the same owner (a clock that jumped, a call that overran) is not
     * the job's any more. A finished event's due is its finishing time:
     * (site, state, due) then lists a site's latest deliveries too.
     * done_at stays NULL while pending. */
    "UPDATE et_event SET state = %d, last_status = %d, last_error = %s,"
    " due = %lld, lease_until = 0, lease_owner = NULL, done_at = %lld,"
    " latency = %lld"
    " WHERE id = %lld AND lease_owner = %s AND lease_until = %lld",
    /* ST_PROMOTE: an object's head finished (delivered or dead): its next
     * pending event becomes the head, in the same transaction: a seek
     * from the finished event in its object's line (every pending event
     * of an object comes after its head). A finished event that was not
     * the head (one a replay put a dead letter before) passes nothing
     * on; a finish leaves the head mark of its row as it was. */
    "UPDATE et_event SET head = 1 WHERE id = (SELECT p.id"
    " FROM et_event p" ET_LINE_INDEX " WHERE p.site = %s AND p.object = %s"
    " AND p.oid = %s AND p.id > %lld AND p.state = 0 ORDER BY p.id LIMIT 1)"
    " AND head = 0 AND (SELECT f.head FROM et_event f WHERE f.id = %lld) = 1",
    /* ST_RELEASE */
    "UPDATE et_event SET lease_until = 0, lease_owner = NULL, due = %lld,"
    " attempts = attempts - 1"
    " WHERE lease_owner = %s AND state = 0",
    /* ST_NEXT_DUE: per site with heads, the first head in et_event_head
     * that is due after now (one that is due already but was not claimed
     * waits for its endpoint's pause) */
    ET_SITES_CTE("state = 0 AND head = 1")
    "SELECT MIN((SELECT MIN(p.due) FROM et_event p" ET_HEAD_INDEX
    " WHERE p.site = s.site AND p.state = 0 AND p.head = 1"
    " AND p.due > %lld))"
    " FROM s WHERE s.site IS NOT NULL",
    /* ST_UNCLAIM: give one back untried (its endpoint is paused) */
    "UPDATE et_event SET lease_until = 0, lease_owner = NULL, due = %lld,"
    " attempts = attempts - 1 WHERE id = %lld AND lease_owner = %s"
    " AND lease_until = %lld",
    /* ST_CIRCUIT_SET */
    "INSERT INTO et_circuit (site, state, failures, open_until, changed,"
    " last_error) VALUES (%s, %d, %d, %lld, %lld, %s)"
    " ON CONFLICT (site) DO UPDATE SET state = excluded.state,"
    " failures = excluded.failures, open_until = excluded.open_until,"
    " changed = excluded.changed, last_error = excluded.last_error",
    /* ST_CIRCUITS */
    "SELECT site, state, failures, open_until, changed, last_error"
    " FROM et_circuit ORDER BY site",
    /* ST_REPLAY_TXN: a dead letter goes back in line, txn kept; its
     * object's head is marked again (et_outbox_replay) */
    "UPDATE et_event SET state = 0, attempts = 0, due = %lld,"
    " lease_until = 0, lease_owner = NULL, done_at = NULL"
    " WHERE txn = %s AND state = 2 RETURNING site, object, oid",
    /* ST_REPLAY_SINCE */
    "UPDATE et_event SET state = 0, attempts = 0, due = %lld,"
    " lease_until = 0, lease_owner = NULL, done_at = NULL"
    " WHERE state = 2 AND created >= %lld RETURNING site, object, oid",
    /* ST_HEAD_DOWN, ST_HEAD_UP: one object's first pending event is its
     * head, and only it, after dead letters of it came back in line (they
     * go before what it captured since): the walk of its line up to that
     * event is the operator's replay's, not a hot path's */
    "UPDATE et_event SET head = 0 WHERE id IN (SELECT h.id FROM et_event h"
    ET_HEAD_OBJECT_INDEX " WHERE h.site = %s AND h.object = %s"
    " AND h.oid = %s AND h.state = 0 AND h.head = 1)",
    "UPDATE et_event SET head = 1 WHERE id = (SELECT p.id FROM et_event p"
    ET_LINE_INDEX " WHERE p.site = %s AND p.object = %s AND p.oid = %s"
    " AND p.state = 0 ORDER BY p.id LIMIT 1)",
    /* ST_LIST: newest first; state -1 lists all */
    "SELECT " EV_COLS " FROM et_event WHERE (CAST(%d AS INTEGER) = -1 OR state = %d)"
    " ORDER BY id DESC LIMIT %d",
    /* ST_SHOW */
    "SELECT " EV_COLS " FROM et_event WHERE txn = %s",
    /* ST_SITE_COUNTS */
    "SELECT site, state, COUNT(*), MIN(created),"
    " SUM(CASE WHEN state = 0 AND lease_until > %lld THEN 1 ELSE 0 END),"
    " SUM(CASE WHEN state = 0 AND attempts > 0 AND lease_until <= %lld"
    "  THEN 1 ELSE 0 END)"
    " FROM et_event GROUP BY site, state ORDER BY site",
    /* ST_RECENT_ERRORS: the last attempts that did not deliver */
    "SELECT " EV_COLS " FROM et_event WHERE last_error IS NOT NULL"
    " OR error IS NOT NULL ORDER BY COALESCE(done_at, due, created) DESC,"
    " id DESC LIMIT %d",
    /* ST_LATENCIES */
    "SELECT site, done_at - created, latency FROM et_event"
    " WHERE site = %s AND state = 1 AND state <> 0 ORDER BY due DESC"
    " LIMIT %d",
    /* ST_PRUNE: one site's old finished events, through et_event_done
     * (a finished event's due is the time it finished) */
    "DELETE FROM et_event WHERE id IN (SELECT id FROM et_event"
    " WHERE site = %s AND state = 1 AND state <> 0 AND due < %lld"
    " UNION ALL SELECT id FROM et_event"
    " WHERE site = %s AND state IN (2, 3) AND state <> 0 AND due < %lld"
    " LIMIT %d)",
    /* ST_PENDING_SITES: through et_event_head (a site with pending
     * events has heads) */
    ET_SITES_CTE("state = 0 AND head = 1")
    "SELECT s.site FROM s WHERE s.site IS NOT NULL",
    /* ST_SITES: the sites with finished events (retention) */
    ET_SITES_CTE("state <> 0")
    "SELECT s.site FROM s WHERE s.site IS NOT NULL"
};

static apr_status_t set_error(et_outbox_t *ob, int rv, const char *what)
{
    const char *msg = rv && ob->db ? apr_dbd_error(ob->drv, ob->db, rv) : NULL;

    ob->last_rc = rv;
    apr_snprintf(ob->last_error, sizeof(ob->last_error), "%s: %s", what,
                 msg ? msg : "database error");
    return APR_EGENERAL;
}

void *et_outbox_native(et_outbox_t *ob)
{
    return apr_dbd_native_handle(ob->drv, ob->db);
}

const char *et_outbox_error(et_outbox_t *ob)
{
    return ob->last_error[0] ? ob->last_error : "no error";
}

static apr_status_t close_cleanup(void *data)
{
    et_outbox_t *ob = data;

    if (ob->db) {
        apr_dbd_close(ob->drv, ob->db);
        ob->db = NULL;
    }
    return APR_SUCCESS;
}

void et_outbox_close(et_outbox_t *ob)
{
    if (ob) {
        apr_pool_cleanup_run(ob->pool, ob, close_cleanup);
    }
}

int et_outbox_full(et_outbox_t *ob)
{
    /* the sqlite3 driver hands sqlite3_step's code on (an extended one's
     * low byte is its primary code); its message, in case a driver
     * version maps the code */
    return ob && !ob->is_pgsql
           && ((ob->last_rc & 0xff) == SQLITE_FULL
               || strstr(ob->last_error, "database or disk is full"));
}

/*
 * An unprepared select (SQL text): the first column of its first row in
 * @a *val unless @a val is NULL (NULL if no row - or if that value is SQL
 * NULL: callers select values that are never NULL), every row read (a
 * result must be read to its end). Random access: see select_one. On
 * error the outbox's last error says what @a doing failed.
 */
static apr_status_t select_text(et_outbox_t *ob, apr_pool_t *p,
                                const char *sql, const char *doing,
                                const char **val)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;        /* pgsql reuses a non-NULL row */
    int rv;

    if (val) {
        *val = NULL;
    }
    rv = apr_dbd_select(ob->drv, p, ob->db, &res, sql, 1);
    if (rv) {
        return set_error(ob, rv, doing);
    }
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        if (val && !*val) {
            *val = apr_pstrdup(p, apr_dbd_get_entry(ob->drv, row, 0));
        }
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_writable(et_outbox_t *ob)
{
    apr_pool_t *p;
    apr_status_t st;
    const char *val;

    if (!ob->is_pgsql) {
        return et_outbox_ping(ob);
    }
    apr_pool_create(&p, ob->pool);
    /* a standby (failover under way) or a read-only default answers
     * without a row */
    st = select_text(ob, p, "SELECT 1 WHERE NOT pg_is_in_recovery() AND "
                     "current_setting('default_transaction_read_only') "
                     "= 'off'", "reaching the database", &val);
    if (st == APR_SUCCESS && !val) {
        apr_cpystrn(ob->last_error, "the database is read-only",
                    sizeof(ob->last_error));
        st = APR_EACCES;
    }
    apr_pool_destroy(p);
    return st;
}

apr_status_t et_outbox_ping(et_outbox_t *ob)
{
    apr_pool_t *p;
    apr_status_t st;

    apr_pool_create(&p, ob->pool);
    st = select_text(ob, p, "SELECT 1", "reaching the database", NULL);
    apr_pool_destroy(p);
    return st;
}

/* A statement that answers with a row (PRAGMA): apr_dbd_query treats a
 * row as an error with the sqlite3 driver, so go through select. */
static apr_status_t run_pragma(et_outbox_t *ob, apr_pool_t *p, const char *sql)
{
    return select_text(ob, p, sql, sql, NULL);
}

/*
 * Add what added_columns lists to an outbox made before them. Looked up
 * first: on PostgreSQL even an ALTER that finds its column there waits for
 * an exclusive lock of the table (behind every other machine's claim);
 * IF NOT EXISTS is for two machines starting at once.
 */
static apr_status_t add_columns(et_outbox_t *ob, apr_pool_t *p)
{
    int i;

    for (i = 0; added_columns[i].name; i++) {
        const char *col = added_columns[i].name, *found;
        apr_status_t st;
        int nrows = 0, rv;

        st = select_text(ob, p, ob->is_pgsql
                         ? apr_psprintf(p, "SELECT 1 FROM "
                                        "information_schema.columns WHERE "
                                        "table_schema = current_schema() "
                                        "AND table_name = 'et_event' AND "
                                        "column_name = '%s'", col)
                         : apr_psprintf(p, "SELECT 1 FROM "
                                        "pragma_table_info('et_event') "
                                        "WHERE name = '%s'", col),
                         "reading the outbox schema", &found);
        if (st != APR_SUCCESS) {
            return st;
        }
        if (found) {
            continue;
        }
        rv = apr_dbd_query(ob->drv, ob->db, &nrows,
                           apr_psprintf(p, "ALTER TABLE et_event ADD COLUMN "
                                        "%s%s %s", ob->is_pgsql
                                        ? "IF NOT EXISTS " : "", col,
                                        added_columns[i].type));
        if (rv) {
            return set_error(ob, rv, apr_psprintf(p, "adding the column %s "
                                                  "to the outbox", col));
        }
    }
    return APR_SUCCESS;
}

static int begin(et_outbox_t *ob, apr_pool_t *p,
                 apr_dbd_transaction_t **trans);

/* @a sql with every marker @a mark (a comment) replaced by @a text. */
static const char *put_in(apr_pool_t *p, const char *sql, const char *mark,
                          const char *text)
{
    const char *at;

    while ((at = strstr(sql, mark)) != NULL) {
        sql = apr_pstrcat(p, apr_pstrmemdup(p, sql, at - sql), text,
                          at + strlen(mark), NULL);
    }
    return sql;
}

/* A statement's text for the outbox's driver: its markers put in. */
static const char *driver_sql(et_outbox_t *ob, apr_pool_t *p, const char *sql)
{
    if (ob->is_pgsql) {
        return put_in(p, sql, ET_SKIP_LOCKED, PGSQL_SKIP_LOCKED);
    }
    sql = put_in(p, sql, ET_HEAD_INDEX, SQLITE_HEAD_INDEX);
    sql = put_in(p, sql, ET_HEAD_OBJECT_INDEX, SQLITE_HEAD_OBJECT_INDEX);
    return put_in(p, sql, ET_LINE_INDEX, SQLITE_LINE_INDEX);
}

/* The schema version recorded in et_meta, 1 if none (see
 * ET_SCHEMA_VERSION), -1 on error. */
static int schema_version(et_outbox_t *ob, apr_pool_t *p)
{
    const char *val;

    if (select_text(ob, p, "SELECT value FROM et_meta WHERE name = 'schema'",
                    "reading the outbox's schema version", &val)
        != APR_SUCCESS) {
        return -1;
    }
    return val ? atoi(val) : 1;
}

/* Version 1 -> 2: every object's first pending event is its head, and
 * only it. One pass over the outbox (grouped), once, at startup. */
static const char *const migrate_heads[] = {
    "UPDATE et_event SET head = 0 WHERE state = 0 AND head = 1 AND id NOT IN"
    " (SELECT MIN(id) FROM et_event WHERE state = 0"
    " GROUP BY site, object, oid)",
    "UPDATE et_event SET head = 1 WHERE state = 0 AND head = 0 AND id IN"
    " (SELECT MIN(id) FROM et_event WHERE state = 0"
    " GROUP BY site, object, oid)",
    NULL
};

/*
 * Bring an outbox of an earlier version up to ET_SCHEMA_VERSION, in one
 * transaction (on PostgreSQL under a lock of its own, so that machines
 * starting at once migrate once). 1 -> 2: mark every object's first
 * pending event as its head; the events stay in line as they were
 * (capture order per object). An outbox newer than this code is refused:
 * its claims would not be this code's.
 */
static apr_status_t migrate(et_outbox_t *ob, apr_pool_t *p, int *from)
{
    apr_dbd_transaction_t *trans = NULL;
    apr_status_t st = APR_SUCCESS;
    int v, dbrv, nrows = 0;

    *from = 0;
    if ((dbrv = begin(ob, p, &trans)) != 0) {
        st = set_error(ob, dbrv, "starting the outbox's migration");
        if (trans) {
            apr_dbd_transaction_end(ob->drv, p, trans);
        }
        return st;
    }
    if (ob->is_pgsql) {
        st = select_text(ob, p, "SELECT pg_advisory_xact_lock("
                         "hashtextextended('et_meta', 0))",
                         "locking the outbox's schema", NULL);
    }
    if (st == APR_SUCCESS && (v = schema_version(ob, p)) < 0) {
        st = APR_EGENERAL;
    }
    else if (st == APR_SUCCESS && v > ET_SCHEMA_VERSION) {
        apr_snprintf(ob->last_error, sizeof(ob->last_error),
                     "the outbox's schema is version %d, newer than this "
                     "module's (%d): a newer release wrote it", v,
                     ET_SCHEMA_VERSION);
        st = APR_EGENERAL;
    }
    else if (st == APR_SUCCESS && v < ET_SCHEMA_VERSION) {
        int k;

        *from = v;
        for (k = 0; migrate_heads[k] && st == APR_SUCCESS; k++) {
            if ((dbrv = apr_dbd_query(ob->drv, ob->db, &nrows,
                                      migrate_heads[k])) != 0) {
                st = set_error(ob, dbrv, "marking the outbox's heads");
            }
        }
        if (st == APR_SUCCESS
            && (dbrv = apr_dbd_query(ob->drv, ob->db, &nrows, apr_psprintf(
                    p, "INSERT INTO et_meta (name, value) VALUES ('schema',"
                    " '%d') ON CONFLICT (name) DO UPDATE SET value ="
                    " excluded.value", ET_SCHEMA_VERSION))) != 0) {
            st = set_error(ob, dbrv, "recording the outbox's version");
        }
    }
    if (st != APR_SUCCESS) {
        apr_dbd_transaction_mode_set(ob->drv, trans,
                                     APR_DBD_TRANSACTION_ROLLBACK);
    }
    dbrv = apr_dbd_transaction_end(ob->drv, p, trans);
    if (st == APR_SUCCESS && dbrv) {
        st = set_error(ob, dbrv, "committing the outbox's migration");
    }
    return st;
}

static apr_status_t open_driver(et_outbox_t *ob, const char *spec,
                                const char **err)
{
    const char *colon = strchr(spec, ':');
    const char *name, *params;
    apr_status_t rv;

    if (!colon || colon == spec || !colon[1]) {
        *err = "outbox must be given as sqlite3:PATH or pgsql:CONNINFO";
        return APR_EINVAL;
    }
    name = apr_pstrmemdup(ob->pool, spec, colon - spec);
    params = colon + 1;
    if (strcmp(name, "sqlite3") == 0) {
        ob->file = params;
    }
    else if (strcmp(name, "pgsql") == 0) {
        ob->is_pgsql = 1;
    }
    else {
        *err = apr_psprintf(ob->pool, "unknown outbox driver '%s' "
                            "(use sqlite3 or pgsql)", name);
        return APR_EINVAL;
    }

    rv = apr_dbd_init(ob->pool);
    if (rv == APR_SUCCESS) {
        rv = apr_dbd_get_driver(ob->pool, name, &ob->drv);
    }
    if (rv != APR_SUCCESS) {
        *err = apr_psprintf(ob->pool, "cannot load the apr_dbd driver '%s' "
                            "(is libaprutil1-dbd-%s installed?)", name,
                            ob->is_pgsql ? "pgsql" : "sqlite3");
        return rv;
    }
    rv = apr_dbd_open_ex(ob->drv, ob->pool, params, &ob->db, err);
    if (rv != APR_SUCCESS || !ob->db) {
        /* the conninfo may hold a password: name the driver, not params */
        *err = apr_psprintf(ob->pool, "cannot open the %s outbox%s%s%s", name,
                            ob->file ? " " : "", ob->file ? ob->file : "",
                            (*err && !ob->is_pgsql)
                            ? apr_pstrcat(ob->pool, ": ", *err, NULL) : "");
        ob->db = NULL;
        return rv ? rv : APR_EGENERAL;
    }
    apr_pool_cleanup_register(ob->pool, ob, close_cleanup,
                              apr_pool_cleanup_null);
    return APR_SUCCESS;
}

apr_status_t et_outbox_checkpoint(et_outbox_t *ob)
{
    sqlite3 *db;
    int rc;

    if (!ob->file) {
        return APR_SUCCESS;           /* PostgreSQL checkpoints itself */
    }
    /* Straight to SQLite, not through apr_dbd: its sqlite3 driver holds
     * one mutex of the whole process (apr_dbd_mutex_lock) across every
     * statement, so a checkpoint's fsync of the database file (over
     * 100 ms with a large backlog) stopped the intake and the claim loop
     * as well. SQLite's own locks let them go on meanwhile. PASSIVE:
     * copies what no reader still needs, never waits for or blocks a
     * writer. */
    db = apr_dbd_native_handle(ob->drv, ob->db);
    rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                   NULL, NULL);
    if (rc == SQLITE_OK || rc == SQLITE_BUSY) {
        return APR_SUCCESS;           /* BUSY: another one is under way */
    }
    apr_snprintf(ob->last_error, sizeof(ob->last_error),
                 "checkpoint: %s", sqlite3_errmsg(db));
    return APR_EGENERAL;
}

apr_status_t et_outbox_cache(et_outbox_t *ob, int kib)
{
    apr_pool_t *p;
    apr_status_t rv;

    if (!ob->file) {
        return APR_SUCCESS;           /* PostgreSQL caches server-side */
    }
    apr_pool_create(&p, ob->pool);
    /* cache_size < 0 counts KiB; a page is allocated only once read */
    rv = run_pragma(ob, p, apr_psprintf(p, "PRAGMA cache_size = -%d", kib));
    apr_pool_destroy(p);
    return rv;
}

apr_status_t et_outbox_open(et_outbox_t **pob, apr_pool_t *p, const char *spec,
                            int create, const char **err)
{
    et_outbox_t *ob = apr_pcalloc(p, sizeof(*ob));
    apr_pool_t *ptemp;
    apr_status_t rv;
    int i, nrows;

    *pob = NULL;
    *err = NULL;
    ob->pool = p;
    if ((rv = open_driver(ob, spec, err)) != APR_SUCCESS) {
        return rv;
    }

    apr_pool_create(&ptemp, p);
    if (ob->file) {
        /* Wait for a writer rather than fail: SQLite serialises writers. */
        if ((rv = run_pragma(ob, ptemp, "PRAGMA busy_timeout = 10000"))) {
            goto fail;
        }
        if (create
            && (rv = run_pragma(ob, ptemp, "PRAGMA journal_mode = WAL"))) {
            goto fail;
        }
        /* WAL + NORMAL survives a crash of any process; FULL also a power
         * cut. Events are the customer's data: keep FULL. */
        if ((rv = run_pragma(ob, ptemp, "PRAGMA synchronous = FULL"))) {
            goto fail;
        }
        /* Checkpoints are the dispatcher's checkpointer's job
         * (et_outbox_checkpoint): SQLite's default of 1000 pages made
         * whichever commit crossed it copy them into the file, a stall
         * of tens of ms for that request or round. This is the safety
         * net for when no dispatcher runs (40 MB of WAL). */
        if ((rv = run_pragma(ob, ptemp, "PRAGMA wal_autocheckpoint = 10000"))) {
            goto fail;
        }
    }
    if (create) {
        const char *const *schema = ob->is_pgsql ? schema_pgsql : schema_sqlite;

        for (i = 0; schema[i]; i++) {
            int dbrv = apr_dbd_query(ob->drv, ob->db, &nrows, schema[i]);
            if (dbrv) {
                rv = set_error(ob, dbrv, "creating the outbox schema");
                goto fail;
            }
        }
        if ((rv = add_columns(ob, ptemp)) != APR_SUCCESS) {
            goto fail;
        }
        for (i = 0; schema_late[i]; i++) {
            int dbrv = apr_dbd_query(ob->drv, ob->db, &nrows,
                                     schema_late[i]);
            if (dbrv) {
                rv = set_error(ob, dbrv, "creating the outbox schema");
                goto fail;
            }
        }
    }
    for (i = 0; i < ET_STMTS; i++) {
        const char *sql = i == ST_LAST_ID && ob->is_pgsql ? pgsql_last_id
                                                         : stmt_sql[i];
        sql = driver_sql(ob, ptemp, sql);
        int dbrv = apr_dbd_prepare(ob->drv, p, ob->db, sql, NULL,
                                   &ob->st[i]);
        if (dbrv) {
            rv = set_error(ob, dbrv, create ? "preparing the outbox statements"
                           : "preparing the outbox statements (is the "
                             "schema there?)");
            goto fail;
        }
    }
    {
        int dbrv = apr_dbd_prepare(ob->drv, p, ob->db, circuit_take_sql,
                                   NULL, &ob->st_circuit_take);

        if (dbrv) {
            rv = set_error(ob, dbrv, "preparing the outbox statements");
            goto fail;
        }
    }
    if (ob->is_pgsql) {
        int dbrv = apr_dbd_prepare(ob->drv, p, ob->db, pgsql_object_lock,
                                   NULL, &ob->st_lock);

        if (!dbrv) {
            dbrv = apr_dbd_prepare(ob->drv, p, ob->db, pgsql_finish, NULL,
                                   &ob->st_finish);
        }
        if (!dbrv) {
            dbrv = apr_dbd_prepare(ob->drv, p, ob->db, pgsql_finish_batch,
                                   NULL, &ob->st_finish_batch);
        }
        if (dbrv) {
            rv = set_error(ob, dbrv, "preparing the outbox statements");
            goto fail;
        }
        /* The driver's NULL transaction (above) again, for this first
         * BEGIN: a session that already answered makes its failure as
         * unlikely as it can be made through apr_dbd. */
        if ((rv = et_outbox_ping(ob)) != APR_SUCCESS) {
            goto fail;
        }
        dbrv = apr_dbd_transaction_start(ob->drv, p, ob->db, &ob->trans);

        if (!dbrv && ob->trans) {
            dbrv = apr_dbd_transaction_end(ob->drv, p, ob->trans);
        }
        if (dbrv || !ob->trans) {
            rv = set_error(ob, dbrv, "starting a transaction");
            goto fail;
        }
    }
    if (create) {
        int from;

        if ((rv = migrate(ob, ptemp, &from)) != APR_SUCCESS) {
            goto fail;
        }
        ob->migrated_from = from;
    }
    apr_pool_destroy(ptemp);
    *pob = ob;
    return APR_SUCCESS;

fail:
    *err = apr_pstrdup(p, ob->last_error);
    apr_pool_destroy(ptemp);
    et_outbox_close(ob);
    return rv ? rv : APR_EGENERAL;
}

static const char *i64(apr_pool_t *p, apr_int64_t v)
{
    return apr_psprintf(p, "%" APR_INT64_T_FMT, v);
}

static const char *itoa_p(apr_pool_t *p, int v)
{
    return apr_itoa(p, v);
}

/* The const char * arguments of @a ap up to the NULL sentinel. */
static const char **arg_list(apr_pool_t *p, va_list ap, int *n)
{
    const char **args;
    va_list count;
    int i;

    *n = 0;
    va_copy(count, ap);
    while (va_arg(count, const char *)) {
        ++*n;
    }
    va_end(count);
    args = apr_palloc(p, (*n + 1) * sizeof(*args));
    for (i = 0; i < *n; i++) {
        args[i] = va_arg(ap, const char *);
    }
    return args;
}

/* The first column of the first row of a one-row select (NULL if none),
 * every row read (a result must be read to its end). */
static const char *select_one(et_outbox_t *ob, apr_pool_t *p, int st,
                              int *rv, ...)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;        /* pgsql reuses a non-NULL row */
    const char *v = NULL;
    const char **args;
    va_list ap;
    int n;

    va_start(ap, rv);
    args = arg_list(p, ap, &n);
    va_end(ap);
    /* random access: the pgsql driver reports a sequential select's
     * error only as the end of its rows, which would read as "none" */
    *rv = apr_dbd_pselect(ob->drv, p, ob->db, &res, ob->st[st], 1, n, args);
    while (*rv == 0 && apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        if (!v) {
            v = apr_pstrdup(p, apr_dbd_get_entry(ob->drv, row, 0));
        }
    }
    return v;
}

/* An event's object name, as stored ("" for none). */
static const char *object_of(const et_event_t *ev)
{
    return et_object_name(ev->object) ? et_object_name(ev->object) : "";
}

/*
 * Store @a ev; for a fresh pending event with ev->lease_owner, lease it to
 * that owner as well if it is its object's head (nothing of its object
 * pending before it). 1 if it was leased (ev->rowid set), 0 if stored
 * plainly, 2 if its txn is stored already (so nothing is to be done),
 * -1 on error.
 */
static int insert_row(et_outbox_t *ob, apr_pool_t *p, et_event_t *ev)
{
    apr_time_t created = ev->created ? ev->created : apr_time_now();
    const char *site = ev->site ? ev->site : "";
    const char *oid = ev->oid ? ev->oid : "";
    const char *object = object_of(ev), *st = itoa_p(p, ev->state), *id;
    int nrows = 0, rv;

    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_INSERT],
                         ev->txn, site, object, et_event_name(ev->event), oid,
                         ev->url, ev->content_type, ev->body, st,
                         i64(p, created), i64(p, ev->due ? ev->due : created),
                         ev->error, ev->traceparent, ev->tracestate,
                         ev->headers, st, site, object, oid);
    if (rv || nrows > 1) {
        set_error(ob, rv, "storing an event");
        return -1;
    }
    if (nrows == 0) {
        return 2;                     /* handed over twice, kept once */
    }
    if (!ev->lease_owner || ev->state != ET_ST_PENDING || ev->error) {
        return 0;
    }
    /* Leased apart from the insert: one INSERT that leases only a head
     * would repeat the check per leased column. A claim that took the
     * fresh head in between keeps it (nrows 0). */
    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_LEASE_FRESH],
                         ev->lease_owner, i64(p, ev->lease_until),
                         i64(p, ev->lease_until), ev->txn);
    if (rv) {
        set_error(ob, rv, "leasing a stored event");
        return -1;
    }
    if (nrows == 0) {
        return 0;                     /* its object's turn comes first */
    }
    id = select_one(ob, p, ST_LAST_ID, &rv, NULL);
    if (rv || !id) {
        set_error(ob, rv, "reading a stored event's id");
        return -1;
    }
    ev->rowid = apr_atoi64(id);
    ev->attempts = 1;
    ev->due = ev->lease_until;
    return 1;
}

static apr_status_t insert_one(et_outbox_t *ob, et_event_t *ev)
{
    apr_pool_t *p;
    int rc;

    apr_pool_create(&p, ob->pool);
    rc = insert_row(ob, p, ev);
    apr_pool_destroy(p);
    if (rc != 1) {
        /* on an error the lease is kept for the caller's next try */
        if (rc >= 0) {
            ev->lease_owner = NULL;
        }
    }
    return rc < 0 ? APR_EGENERAL : APR_SUCCESS;
}

/* BEGIN on the connection; *trans is set even if it failed (then end it:
 * the driver may have marked the connection as in a transaction). */
static int begin(et_outbox_t *ob, apr_pool_t *p, apr_dbd_transaction_t **trans)
{
    *trans = ob->trans;               /* NULL for sqlite3: made per BEGIN */
    if (*trans) {
        /* a reused one keeps the mode a failed batch set */
        apr_dbd_transaction_mode_set(ob->drv, *trans,
                                     APR_DBD_TRANSACTION_COMMIT);
    }
    return apr_dbd_transaction_start(ob->drv, p, ob->db, trans);
}

/* End @a trans: COMMIT, or ROLLBACK if a statement in it failed; the
 * error recorded if that fails. SQLite may leave a transaction open
 * after a COMMIT that failed (a full disk, a busy database) while
 * apr_dbd forgets it: rolled back here (once the error is recorded), or
 * the connection's next BEGIN would fail. */
static apr_status_t end_txn(et_outbox_t *ob, apr_pool_t *p,
                            apr_dbd_transaction_t *trans)
{
    int dbrv = apr_dbd_transaction_end(ob->drv, p, trans);
    apr_status_t rv;

    if (!dbrv) {
        return APR_SUCCESS;
    }
    rv = set_error(ob, dbrv, "committing");
    if (!ob->is_pgsql) {
        sqlite3 *db = apr_dbd_native_handle(ob->drv, ob->db);

        if (!sqlite3_get_autocommit(db)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    return rv;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * PostgreSQL: lock the objects of @a evs until the transaction ends. An
 * event's id and its ordering check (is an earlier one of its object
 * pending?) are only right if no other writer stores an event of the same
 * object between them and its commit: under READ COMMITTED an uncommitted
 * earlier event is invisible, so another machine could lease or claim the
 * later one first. SQLite needs none of this: its writers are serialised.
 * Locks are taken in one order (sorted), so two batches cannot deadlock.
 */
static int lock_objects(et_outbox_t *ob, apr_pool_t *p,
                        et_event_t *const *evs, int n)
{
    const char **keys = apr_palloc(p, n * sizeof(*keys));
    apr_array_header_t *list = apr_array_make(p, n, sizeof(const char *));
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;
    int i, rv;

    for (i = 0; i < n; i++) {
        const char *key = apr_pstrcat(p, evs[i]->site ? evs[i]->site : "",
                                      "\x1f", object_of(evs[i]), "\x1f",
                                      evs[i]->oid ? evs[i]->oid : "", NULL);
        int len = (int)strlen(key);
        char *b64 = apr_palloc(p, apr_base64_encode_len(len));

        apr_base64_encode_binary(b64, (const unsigned char *)key, len);
        keys[i] = b64;
    }
    qsort(keys, n, sizeof(*keys), by_string);
    for (i = 0; i < n; i++) {
        if (i == 0 || strcmp(keys[i], keys[i - 1])) {
            APR_ARRAY_PUSH(list, const char *) = keys[i];
        }
    }
    /* random access: see select_one */
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st_lock, 1,
                          apr_array_pstrcat(p, list, ','), NULL);
    while (!rv && apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
    }
    return rv;
}

/*
 * Store @a evs in one transaction of their own, on PostgreSQL under their
 * objects' locks. APR_SUCCESS: all stored. APR_EINCOMPLETE: not stored
 * (an event, the lock or the commit failed; rolled back): they may go in
 * one by one. Another error: no transaction could be started.
 */
static apr_status_t insert_in_txn(et_outbox_t *ob, et_event_t **evs, int n)
{
    apr_dbd_transaction_t *trans = NULL;
    apr_pool_t *p;
    apr_status_t rv = APR_SUCCESS;
    int i, dbrv;

    apr_pool_create(&p, ob->pool);
    if ((dbrv = begin(ob, p, &trans)) != 0) {
        rv = set_error(ob, dbrv, "starting a transaction");
        apr_pool_destroy(p);          /* its cleanup ends the transaction */
        return rv;
    }
    if (ob->is_pgsql && (dbrv = lock_objects(ob, p, evs, n)) != 0) {
        set_error(ob, dbrv, "locking the events' objects");
        rv = APR_EINCOMPLETE;
    }
    for (i = 0; i < n && rv == APR_SUCCESS; i++) {
        if (insert_one(ob, evs[i]) != APR_SUCCESS) {
            rv = APR_EINCOMPLETE;
        }
    }
    if (rv != APR_SUCCESS) {
        apr_dbd_transaction_mode_set(ob->drv, trans,
                                     APR_DBD_TRANSACTION_ROLLBACK);
    }
    if (end_txn(ob, p, trans) != APR_SUCCESS) {
        rv = APR_EINCOMPLETE;
    }
    apr_pool_destroy(p);
    return rv;
}

apr_status_t et_outbox_insert(et_outbox_t *ob, et_event_t *ev)
{
    apr_pool_t *p;
    int dbrv;

    if (!ob->is_pgsql && (ob->in_txn || !ev->lease_owner)) {
        return insert_one(ob, ev);    /* SQLite serialises its writers */
    }
    if (!ob->in_txn) {
        /* PostgreSQL: for the object's lock; SQLite: the insert and its
         * lease make one commit (one fsync), not two */
        apr_status_t rv = insert_in_txn(ob, &ev, 1);

        return rv == APR_EINCOMPLETE ? APR_EGENERAL : rv;
    }
    /* the caller's transaction: the lock lasts until it ends */
    apr_pool_create(&p, ob->pool);
    dbrv = lock_objects(ob, p, &ev, 1);
    apr_pool_destroy(p);
    return dbrv ? set_error(ob, dbrv, "locking the event's object")
                : insert_one(ob, ev);
}

apr_status_t et_outbox_begin(et_outbox_t *ob, apr_pool_t *p,
                             apr_dbd_transaction_t **trans)
{
    int dbrv = begin(ob, p, trans);

    if (dbrv) {
        apr_status_t rv = set_error(ob, dbrv, "starting a transaction");

        if (*trans) {
            apr_dbd_transaction_end(ob->drv, p, *trans);
            *trans = NULL;
        }
        return rv;
    }
    ob->in_txn = 1;
    return APR_SUCCESS;
}

apr_status_t et_outbox_end(et_outbox_t *ob, apr_pool_t *p,
                           apr_dbd_transaction_t *trans)
{
    /* p: the pool given to et_outbox_begin, which holds the transaction's
     * cleanup (left there, it would COMMIT again when p is cleared) */
    apr_status_t rv = end_txn(ob, p, trans);

    ob->in_txn = 0;
    return rv;
}

apr_status_t et_outbox_insert_batch(et_outbox_t *ob, et_event_t **evs, int n,
                                    apr_status_t *each)
{
    apr_status_t rv;
    int i;

    if (n == 1) {
        return each[0] = et_outbox_insert(ob, evs[0]);
    }
    rv = insert_in_txn(ob, evs, n);
    if (rv != APR_SUCCESS && rv != APR_EINCOMPLETE) {
        return rv;
    }
    for (i = 0; i < n; i++) {
        /* one bad event must not sink the others: one by one, each alone */
        each[i] = rv == APR_SUCCESS ? APR_SUCCESS
                                    : et_outbox_insert(ob, evs[i]);
    }
    return APR_SUCCESS;
}

/* A column's text, copied: the pgsql driver frees a result once its last
 * row has been read, so the driver's pointers must not be kept. */
static const char *entry_str(et_outbox_t *ob, apr_pool_t *p,
                             apr_dbd_row_t *row, int col)
{
    const char *v = apr_dbd_get_entry(ob->drv, row, col);

    return v ? apr_pstrdup(p, v) : NULL;
}

static apr_int64_t entry_i64(et_outbox_t *ob, apr_dbd_row_t *row, int col)
{
    const char *v = apr_dbd_get_entry(ob->drv, row, col);

    return v ? apr_atoi64(v) : 0;
}

static int cmp_rowid(const void *a, const void *b)
{
    const et_event_t *x = *(et_event_t *const *)a;
    const et_event_t *y = *(et_event_t *const *)b;

    return x->rowid < y->rowid ? -1 : x->rowid > y->rowid;
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

/* One row of EV_COLS. */
static et_event_t *row_to_event(et_outbox_t *ob, apr_pool_t *p,
                                apr_dbd_row_t *row)
{
    et_event_t *ev = apr_pcalloc(p, sizeof(*ev));

    ev->rowid = entry_i64(ob, row, 0);
    ev->txn = entry_str(ob, p, row, 1);
    ev->site = entry_str(ob, p, row, 2);
    et_object_parse(entry_str(ob, p, row, 3), &ev->object);
    et_event_parse(entry_str(ob, p, row, 4), &ev->event);
    ev->oid = entry_str(ob, p, row, 5);
    ev->url = entry_str(ob, p, row, 6);
    ev->content_type = entry_str(ob, p, row, 7);
    ev->body = entry_str(ob, p, row, 8);
    ev->body_len = ev->body ? strlen(ev->body) : 0;
    ev->attempts = (int)entry_i64(ob, row, 9);
    ev->created = entry_i64(ob, row, 10);
    ev->state = (et_state_e)entry_i64(ob, row, 11);
    ev->last_status = (int)entry_i64(ob, row, 12);
    ev->error = entry_str(ob, p, row, 13);
    if (!ev->error) {
        ev->error = entry_str(ob, p, row, 14);
    }
    ev->due = entry_i64(ob, row, 15);
    ev->done_at = entry_i64(ob, row, 16);
    /* pgsql gives "" for a NULL */
    ev->traceparent = nonempty(entry_str(ob, p, row, 17));
    ev->tracestate = nonempty(entry_str(ob, p, row, 18));
    ev->headers = nonempty(entry_str(ob, p, row, 19));
    return ev;
}

static apr_status_t select_events(et_outbox_t *ob, apr_pool_t *p, int st,
                                  const char *what, apr_array_header_t **out,
                                  ...)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reuses a non-NULL row */
    apr_array_header_t *a = apr_array_make(p, 16, sizeof(et_event_t *));
    const char **args;
    va_list ap;
    int rv, n;

    va_start(ap, out);
    args = arg_list(p, ap, &n);
    va_end(ap);

    *out = a;
    rv = apr_dbd_pselect(ob->drv, p, ob->db, &res, ob->st[st], 1, n, args);
    if (rv) {
        return set_error(ob, rv, what);
    }
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        et_event_t *ev = row_to_event(ob, p, row);

        if (st == ST_CLAIM) {
            /* the column after EV_COLS: the next event's id (NULL, or ""
             * from pgsql: none) */
            const char *v = apr_dbd_get_entry(ob->drv, row, 20);
            apr_int64_t next = v && *v ? apr_atoi64(v) : 0;

            ev->followed = next > ev->rowid ? next - ev->rowid : 0;
        }
        APR_ARRAY_PUSH(a, et_event_t *) = ev;
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_claim(et_outbox_t *ob, apr_pool_t *p, const char *site,
                             const char *owner, apr_interval_time_t lease,
                             int max, apr_array_header_t **events)
{
    apr_time_t now = apr_time_now();
    apr_array_header_t *a;
    apr_status_t rv;

    rv = select_events(ob, p, ST_CLAIM, "claiming events", events, site,
                       i64(p, now), i64(p, now), itoa_p(p, max), owner,
                       i64(p, now + lease), i64(p, now + lease), i64(p, now),
                       NULL);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    a = *events;
    /* RETURNING gives no order; delivery order is the capture order */
    if (a->nelts > 1) {
        qsort(a->elts, a->nelts, sizeof(et_event_t *), cmp_rowid);
    }
    {
        int i;

        /* the lease as stored: what finish and unclaim match on */
        for (i = 0; i < a->nelts; i++) {
            et_event_t *ev = APR_ARRAY_IDX(a, i, et_event_t *);

            ev->lease_until = now + lease;
        }
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_claim_next(et_outbox_t *ob, apr_pool_t *p,
                                  const et_event_t *head, const char *owner,
                                  int max, apr_array_header_t **events)
{
    apr_time_t now = apr_time_now();
    apr_array_header_t *a;
    apr_status_t rv;
    int i;

    rv = select_events(ob, p, ST_CLAIM_NEXT, "claiming events", events,
                       head->site ? head->site : "", object_of(head),
                       head->oid ? head->oid : "", i64(p, head->rowid),
                       itoa_p(p, max), owner, i64(p, head->lease_until),
                       i64(p, head->lease_until), i64(p, now), NULL);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    a = *events;
    if (a->nelts > 1) {
        qsort(a->elts, a->nelts, sizeof(et_event_t *), cmp_rowid);
    }
    for (i = 0; i < a->nelts; i++) {
        APR_ARRAY_IDX(a, i, et_event_t *)->lease_until = head->lease_until;
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_lock_objects(et_outbox_t *ob, apr_pool_t *p,
                                    et_event_t *const *evs, int n)
{
    int dbrv;

    if (!ob->is_pgsql || n == 0) {
        return APR_SUCCESS;           /* SQLite serialises its writers */
    }
    dbrv = lock_objects(ob, p, evs, n);
    return dbrv ? set_error(ob, dbrv, "locking the events' objects")
                : APR_SUCCESS;
}

apr_status_t et_outbox_finish(et_outbox_t *ob, const et_event_t *ev,
                              const char *owner, const et_outcome_t *out)
{
    apr_pool_t *p;
    apr_dbd_transaction_t *trans = NULL;
    int nrows = 0, rv;
    apr_time_t now = apr_time_now();

    apr_pool_create(&p, ob->pool);
    if (ob->is_pgsql) {
        apr_dbd_results_t *res = NULL;
        apr_dbd_row_t *row = NULL;    /* pgsql reuses a non-NULL row */

        /* random access: see select_one; NULLs are passed as such (the
         * statement's own count of arguments, no sentinel) */
        rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st_finish, 1,
                              itoa_p(p, out->state), itoa_p(p, out->status),
                              out->error,
                              i64(p, out->state == ET_ST_PENDING ? out->due
                                                                 : now),
                              out->state == ET_ST_PENDING ? NULL
                                                          : i64(p, now),
                              i64(p, out->latency), i64(p, ev->rowid), owner,
                              i64(p, ev->lease_until));
        while (!rv && apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
            const char *n = apr_dbd_get_entry(ob->drv, row, 0);

            nrows = n ? atoi(n) : 0;
        }
        apr_pool_destroy(p);
        if (rv) {
            return set_error(ob, rv, "recording a delivery");
        }
        return nrows == 1 ? APR_SUCCESS : APR_EBUSY;
    }
    /* The finish and the promotion commit together or not at all. A
     * round's transaction holds them; alone (the outcomes written one by
     * one after a round failed) they get one of their own: committed
     * each by itself, a promotion that failed after its finish (a full
     * disk) left the object's next events without a head, never claimed
     * (t/root/store_full.sh). */
    if (!ob->in_txn && out->state != ET_ST_PENDING
        && (rv = begin(ob, p, &trans)) != 0) {
        if (trans) {
            apr_dbd_transaction_end(ob->drv, p, trans);
        }
        apr_pool_destroy(p);
        return set_error(ob, rv, "starting a transaction");
    }
    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_FINISH],
                         itoa_p(p, out->state), itoa_p(p, out->status),
                         out->error,
                         i64(p, out->state == ET_ST_PENDING ? out->due : now),
                         out->state == ET_ST_PENDING ? NULL : i64(p, now),
                         i64(p, out->latency), i64(p, ev->rowid), owner,
                         i64(p, ev->lease_until));
    if (!rv && nrows == 1 && out->state != ET_ST_PENDING) {
        int promoted = 0;

        /* its object's next event is first in line now (a no-op if this
         * one was not the head: a replayed dead letter went before it) */
        rv = apr_dbd_pvquery(ob->drv, p, ob->db, &promoted,
                             ob->st[ST_PROMOTE], ev->site ? ev->site : "",
                             object_of(ev), ev->oid ? ev->oid : "",
                             i64(p, ev->rowid), i64(p, ev->rowid));
    }
    if (rv) {
        set_error(ob, rv, "recording a delivery");
    }
    /* rolled back if a statement failed; its error is recorded above */
    if (trans && end_txn(ob, p, trans) != APR_SUCCESS && !rv) {
        rv = -1;
    }
    apr_pool_destroy(p);
    if (rv) {
        return APR_EGENERAL;
    }
    /* nrows == 0: our lease expired and another dispatcher owns it now */
    return nrows == 1 ? APR_SUCCESS : APR_EBUSY;
}

/* One outcome as pgsql_finish_batch reads it. */
static json_t *finish_json(const et_finish_t *f, apr_time_t now)
{
    const et_outcome_t *out = &f->out;
    int pending = out->state == ET_ST_PENDING;
    json_t *o = json_object();
    json_t *err = NULL;

    if (out->error) {
        /* jansson refuses bytes that are not UTF-8 (nor would a text
         * column take them) */
        err = json_string(out->error);
        if (!err) {
            err = json_string("(the error's text is not UTF-8)");
        }
    }
    json_object_set_new(o, "id", json_integer(f->ev->rowid));
    json_object_set_new(o, "state", json_integer(out->state));
    json_object_set_new(o, "status", json_integer(out->status));
    json_object_set_new(o, "error", err ? err : json_null());
    json_object_set_new(o, "due", json_integer(pending ? out->due : now));
    json_object_set_new(o, "done", pending ? json_null() : json_integer(now));
    json_object_set_new(o, "latency", json_integer(out->latency));
    json_object_set_new(o, "lease", json_integer(f->ev->lease_until));
    return o;
}

apr_status_t et_outbox_finish_batch(et_outbox_t *ob, const char *owner,
                                    et_finish_t *fs, int n)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;        /* pgsql reuses a non-NULL row */
    apr_time_t now = apr_time_now();
    apr_pool_t *p;
    json_t *arr;
    char *text;
    int i, rv;

    if (!ob->is_pgsql || n == 1) {
        /* SQLite: a statement costs no round trip */
        for (i = 0; i < n; i++) {
            fs[i].rv = et_outbox_finish(ob, fs[i].ev, owner, &fs[i].out);
            if (fs[i].rv != APR_SUCCESS && fs[i].rv != APR_EBUSY) {
                return fs[i].rv;
            }
        }
        return APR_SUCCESS;
    }
    arr = json_array();
    for (i = 0; i < n; i++) {
        json_array_append_new(arr, finish_json(&fs[i], now));
        fs[i].rv = APR_EBUSY;         /* until its id comes back */
    }
    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!text) {
        apr_cpystrn(ob->last_error, "recording deliveries: out of memory",
                    sizeof(ob->last_error));
        return APR_ENOMEM;
    }
    apr_pool_create(&p, ob->pool);
    /* random access: see select_one */
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st_finish_batch, 1,
                          text, owner);
    free(text);
    while (!rv && apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        apr_int64_t id = apr_atoi64(apr_dbd_get_entry(ob->drv, row, 0));

        for (i = 0; i < n; i++) {
            if (fs[i].ev->rowid == id) {
                fs[i].rv = APR_SUCCESS;
            }
        }
    }
    apr_pool_destroy(p);
    return rv ? set_error(ob, rv, "recording deliveries") : APR_SUCCESS;
}

apr_status_t et_outbox_release(et_outbox_t *ob, const char *owner)
{
    apr_pool_t *p;
    int nrows = 0, rv;

    apr_pool_create(&p, ob->pool);
    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_RELEASE],
                         i64(p, apr_time_now()), owner);
    apr_pool_destroy(p);
    return rv ? set_error(ob, rv, "releasing leases") : APR_SUCCESS;
}

apr_status_t et_outbox_next_due(et_outbox_t *ob, apr_time_t after,
                                apr_time_t *due)
{
    apr_pool_t *p;
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reuses a non-NULL row */
    apr_status_t st = APR_NOTFOUND;
    int rv;

    apr_pool_create(&p, ob->pool);
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st[ST_NEXT_DUE], 1,
                          i64(p, after), NULL);
    if (rv) {
        st = set_error(ob, rv, "reading the next due time");
    }
    else {
        while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
            const char *v = entry_str(ob, p, row, 0);
            /* NULL: no pending event (pgsql gives "" for a NULL) */
            if (v && *v) {
                *due = apr_atoi64(v);
                st = APR_SUCCESS;
            }
        }
    }
    apr_pool_destroy(p);
    return st;
}

apr_status_t et_outbox_unclaim(et_outbox_t *ob, const et_event_t *ev,
                               const char *owner)
{
    apr_pool_t *p;
    int nrows = 0, rv;

    apr_pool_create(&p, ob->pool);
    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_UNCLAIM],
                         i64(p, apr_time_now()), i64(p, ev->rowid), owner,
                         i64(p, ev->lease_until));
    apr_pool_destroy(p);
    return rv ? set_error(ob, rv, "giving an event back") : APR_SUCCESS;
}

apr_status_t et_outbox_circuit_set(et_outbox_t *ob, const et_circuit_row_t *c)
{
    apr_pool_t *p;
    int nrows = 0, rv;

    apr_pool_create(&p, ob->pool);
    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_CIRCUIT_SET],
                         c->site, itoa_p(p, c->state), itoa_p(p, c->failures),
                         i64(p, c->open_until), i64(p, c->changed),
                         c->last_error);
    apr_pool_destroy(p);
    return rv ? set_error(ob, rv, "recording an endpoint's health")
              : APR_SUCCESS;
}

apr_status_t et_outbox_circuit_take(et_outbox_t *ob, const char *site,
                                    apr_time_t now, apr_time_t until,
                                    int *taken)
{
    apr_pool_t *p;
    int nrows = 0, rv;

    apr_pool_create(&p, ob->pool);
    rv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st_circuit_take,
                         itoa_p(p, 2 /* ET_CB_PROBING */), i64(p, until),
                         i64(p, now), site, i64(p, now));
    apr_pool_destroy(p);
    *taken = !rv && nrows > 0;
    return rv ? set_error(ob, rv, "taking an endpoint's probe")
              : APR_SUCCESS;
}

apr_status_t et_outbox_circuits(et_outbox_t *ob, apr_pool_t *p,
                                apr_array_header_t **out)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reuses a non-NULL row */
    int rv;

    *out = apr_array_make(p, 4, sizeof(et_circuit_row_t *));
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st[ST_CIRCUITS], 1);
    if (rv) {
        return set_error(ob, rv, "reading endpoint health");
    }
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        et_circuit_row_t *c = apr_pcalloc(p, sizeof(*c));

        c->site = entry_str(ob, p, row, 0);
        c->state = (int)entry_i64(ob, row, 1);
        c->failures = (int)entry_i64(ob, row, 2);
        c->open_until = entry_i64(ob, row, 3);
        c->changed = entry_i64(ob, row, 4);
        c->last_error = entry_str(ob, p, row, 5);
        APR_ARRAY_PUSH(*out, et_circuit_row_t *) = c;
    }
    return APR_SUCCESS;
}

/*
 * A dead letter back in line goes before what its object captured since
 * (capture order): the replay answers the objects of the events it put
 * back, and each gets its head marked again, in the same transaction.
 */
apr_status_t et_outbox_replay(et_outbox_t *ob, const char *txn,
                              apr_time_t since, int *count)
{
    apr_dbd_transaction_t *trans = NULL;
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;        /* pgsql reuses a non-NULL row */
    apr_hash_t *objects;
    apr_hash_index_t *hi;
    apr_pool_t *p;
    apr_status_t st = APR_SUCCESS;
    int nrows = 0, rv;

    *count = 0;
    apr_pool_create(&p, ob->pool);
    if ((rv = begin(ob, p, &trans)) != 0) {
        st = set_error(ob, rv, "replaying dead letters");
        if (trans) {
            apr_dbd_transaction_end(ob->drv, p, trans);
        }
        apr_pool_destroy(p);
        return st;
    }
    /* random access: the rows are read to their end before the next
     * statement (see select_one) */
    rv = txn ? apr_dbd_pvselect(ob->drv, p, ob->db, &res,
                                ob->st[ST_REPLAY_TXN], 1,
                                i64(p, apr_time_now()), txn)
             : apr_dbd_pvselect(ob->drv, p, ob->db, &res,
                                ob->st[ST_REPLAY_SINCE], 1,
                                i64(p, apr_time_now()), i64(p, since));
    objects = apr_hash_make(p);
    while (!rv && apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        const char **key = apr_palloc(p, 3 * sizeof(*key));
        int i;

        for (i = 0; i < 3; i++) {
            key[i] = entry_str(ob, p, row, i);
            key[i] = key[i] ? key[i] : "";
        }
        /* the lengths keep "a:b" + "c" apart from "a" + "b:c" (an oid
         * may hold any character) */
        apr_hash_set(objects, apr_psprintf(p, "%" APR_SIZE_T_FMT ":%s%"
                                           APR_SIZE_T_FMT ":%s%s",
                                           strlen(key[0]), key[0],
                                           strlen(key[1]), key[1], key[2]),
                     APR_HASH_KEY_STRING, key);
        nrows++;
    }
    for (hi = apr_hash_first(p, objects); !rv && hi; hi = apr_hash_next(hi)) {
        const char **key = apr_hash_this_val(hi);
        int n = 0;

        rv = apr_dbd_pvquery(ob->drv, p, ob->db, &n, ob->st[ST_HEAD_DOWN],
                             key[0], key[1], key[2]);
        if (!rv) {
            rv = apr_dbd_pvquery(ob->drv, p, ob->db, &n, ob->st[ST_HEAD_UP],
                                 key[0], key[1], key[2]);
        }
    }
    if (rv) {
        st = set_error(ob, rv, "replaying dead letters");
        apr_dbd_transaction_mode_set(ob->drv, trans,
                                     APR_DBD_TRANSACTION_ROLLBACK);
    }
    rv = apr_dbd_transaction_end(ob->drv, p, trans);
    if (st == APR_SUCCESS && rv) {
        st = set_error(ob, rv, "committing the replay");
    }
    apr_pool_destroy(p);
    *count = st == APR_SUCCESS ? nrows : 0;
    return st;
}

apr_status_t et_outbox_list(et_outbox_t *ob, apr_pool_t *p, int state,
                            int limit, apr_array_header_t **events)
{
    return select_events(ob, p, ST_LIST, "listing events", events,
                         itoa_p(p, state), itoa_p(p, state),
                         itoa_p(p, limit), NULL);
}

apr_status_t et_outbox_show(et_outbox_t *ob, apr_pool_t *p, const char *txn,
                            et_event_t **ev)
{
    apr_array_header_t *a;
    apr_status_t rv;

    *ev = NULL;
    rv = select_events(ob, p, ST_SHOW, "reading an event", &a, txn, NULL);
    if (rv == APR_SUCCESS) {
        if (a->nelts == 0) {
            return APR_NOTFOUND;
        }
        *ev = APR_ARRAY_IDX(a, 0, et_event_t *);
    }
    return rv;
}

apr_status_t et_outbox_recent_errors(et_outbox_t *ob, apr_pool_t *p,
                                     int limit, apr_array_header_t **events)
{
    return select_events(ob, p, ST_RECENT_ERRORS, "reading recent failures",
                         events, itoa_p(p, limit), NULL);
}

static et_site_counts_t *site_entry(apr_array_header_t *a, apr_pool_t *p,
                                    const char *site)
{
    et_site_counts_t *c;

    if (a->nelts) {
        c = APR_ARRAY_IDX(a, a->nelts - 1, et_site_counts_t *);
        if (!strcmp(c->site, site)) {
            return c;
        }
    }
    c = apr_pcalloc(p, sizeof(*c));
    c->site = site;
    APR_ARRAY_PUSH(a, et_site_counts_t *) = c;
    return c;
}

apr_status_t et_outbox_site_counts(et_outbox_t *ob, apr_pool_t *p,
                                   apr_array_header_t **out)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reuses a non-NULL row */
    int rv;

    *out = apr_array_make(p, 4, sizeof(et_site_counts_t *));
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st[ST_SITE_COUNTS], 1,
                          i64(p, apr_time_now()), i64(p, apr_time_now()));
    if (rv) {
        return set_error(ob, rv, "counting events per site");
    }
    /* rows come ordered by site: one entry per run of a site */
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        const char *site = entry_str(ob, p, row, 0);
        et_site_counts_t *c = site_entry(*out, p, site ? site : "");
        apr_int64_t n = entry_i64(ob, row, 2);

        switch ((int)entry_i64(ob, row, 1)) {
        case ET_ST_PENDING:
            c->counts.pending = n;
            c->counts.oldest_pending = entry_i64(ob, row, 3);
            c->counts.leased = entry_i64(ob, row, 4);
            c->retrying = entry_i64(ob, row, 5);
            break;
        case ET_ST_DELIVERED:
            c->counts.delivered = n;
            break;
        case ET_ST_DEAD:
            c->counts.dead = n;
            break;
        case ET_ST_FAILED:
            c->counts.failed = n;
            break;
        }
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_latencies(et_outbox_t *ob, apr_pool_t *p,
                                 const char *site, int limit,
                                 apr_array_header_t **out)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reuses a non-NULL row */
    int rv;

    *out = apr_array_make(p, limit > 0 ? limit : 1, sizeof(et_latency_t));
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st[ST_LATENCIES], 1,
                          site, itoa_p(p, limit));
    if (rv) {
        return set_error(ob, rv, "reading delivery times");
    }
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        et_latency_t *l = apr_array_push(*out);

        l->site = entry_str(ob, p, row, 0);
        l->total = entry_i64(ob, row, 1);
        l->call = entry_i64(ob, row, 2);
    }
    return APR_SUCCESS;
}

/* The rows of a one-column site list (ST_PENDING_SITES, ST_SITES). */
static apr_status_t site_list(et_outbox_t *ob, apr_pool_t *p, int stmt,
                              apr_array_header_t **sites)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;   /* pgsql reuses a non-NULL row */
    int rv;

    *sites = apr_array_make(p, 4, sizeof(const char *));
    rv = apr_dbd_pvselect(ob->drv, p, ob->db, &res, ob->st[stmt], 1);
    if (rv) {
        return set_error(ob, rv, "listing the outbox's sites");
    }
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        const char *site = entry_str(ob, p, row, 0);
        if (site) {
            APR_ARRAY_PUSH(*sites, const char *) = site;
        }
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_prune(et_outbox_t *ob, apr_time_t delivered_before,
                             apr_time_t dead_before, int max, int *deleted)
{
    apr_array_header_t *sites;
    apr_pool_t *p;
    apr_status_t rv;
    int i;

    *deleted = 0;
    apr_pool_create(&p, ob->pool);
    rv = site_list(ob, p, ST_SITES, &sites);
    /* dead_before 0 keeps dead and failed events: "due < 0" never holds */
    for (i = 0; rv == APR_SUCCESS && i < sites->nelts && *deleted < max;
         i++) {
        const char *site = APR_ARRAY_IDX(sites, i, const char *);
        int nrows = 0, dbrv;

        dbrv = apr_dbd_pvquery(ob->drv, p, ob->db, &nrows, ob->st[ST_PRUNE],
                               site, i64(p, delivered_before), site,
                               i64(p, dead_before ? dead_before : -1),
                               itoa_p(p, max - *deleted));
        if (dbrv) {
            rv = set_error(ob, dbrv, "deleting old events");
        }
        *deleted += nrows;
    }
    apr_pool_destroy(p);
    return rv;
}

apr_status_t et_outbox_pending_sites(et_outbox_t *ob, apr_pool_t *p,
                                     apr_array_header_t **sites)
{
    return site_list(ob, p, ST_PENDING_SITES, sites);
}

/* ---- the local spool (see et_outbox.h). Not prepared: used while the
 * shared outbox is down only, and their arguments are integers. ---- */

apr_status_t et_outbox_oldest(et_outbox_t *ob, apr_pool_t *p, int max,
                              apr_array_header_t **events)
{
    apr_dbd_results_t *res = NULL;
    apr_dbd_row_t *row = NULL;        /* pgsql reuses a non-NULL row */
    apr_array_header_t *a = apr_array_make(p, max > 0 ? max : 1,
                                           sizeof(et_event_t *));
    int rv;

    *events = a;
    /* random access: see select_one */
    rv = apr_dbd_select(ob->drv, p, ob->db, &res, apr_psprintf(
                            p, "SELECT " EV_COLS " FROM et_event ORDER BY id"
                            " LIMIT %d", max > 0 ? max : 1), 1);
    if (rv) {
        return set_error(ob, rv, "reading the oldest events");
    }
    while (apr_dbd_get_row(ob->drv, p, res, &row, -1) == 0) {
        APR_ARRAY_PUSH(a, et_event_t *) = row_to_event(ob, p, row);
    }
    return APR_SUCCESS;
}

apr_status_t et_outbox_delete_upto(et_outbox_t *ob, apr_int64_t last,
                                   int *deleted)
{
    apr_pool_t *p;
    int nrows = 0, rv;

    apr_pool_create(&p, ob->pool);
    rv = apr_dbd_query(ob->drv, ob->db, &nrows, apr_psprintf(
                           p, "DELETE FROM et_event WHERE id <= %"
                           APR_INT64_T_FMT, last));
    apr_pool_destroy(p);
    if (deleted) {
        *deleted = rv ? 0 : nrows;
    }
    return rv ? set_error(ob, rv, "deleting forwarded events")
              : APR_SUCCESS;
}

apr_status_t et_outbox_total(et_outbox_t *ob, apr_int64_t *n)
{
    apr_pool_t *p;
    apr_status_t st;
    const char *val;

    apr_pool_create(&p, ob->pool);
    st = select_text(ob, p, "SELECT COUNT(*) FROM et_event",
                     "counting the events", &val);
    *n = st == APR_SUCCESS && val ? apr_atoi64(val) : 0;
    apr_pool_destroy(p);
    return st;
}
