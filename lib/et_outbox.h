/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_outbox.h
 * @brief The durable queue of events, over APR-util's DBD layer.
 *
 * One et_outbox_t is one database connection: it is NOT thread-safe; a
 * caller that shares one between threads serialises the calls. Statements
 * are prepared once, at open.
 */
#ifndef ET_OUTBOX_H
#define ET_OUTBOX_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_dbd.h>

#include "et_event.h"

typedef struct et_outbox_t et_outbox_t;

/**
 * Open (and with @a create, create the schema of) the outbox named by
 * @a spec: "sqlite3:/path/file.db" or "pgsql:conninfo". The connection lives
 * in @a p and is closed when @a p is cleared.
 */
apr_status_t et_outbox_open(et_outbox_t **ob, apr_pool_t *p, const char *spec,
                            int create, const char **err);
void et_outbox_close(et_outbox_t *ob);

/** Let an SQLite connection cache up to @a kib KiB of pages (SQLite's
 *  default is 2 MiB); no-op on PostgreSQL. */
apr_status_t et_outbox_cache(et_outbox_t *ob, int kib);

/** Copy the SQLite write-ahead log into the database file (a passive
 *  checkpoint: it neither waits for nor blocks writers, nor the other
 *  threads' statements: it bypasses apr_dbd's process-wide mutex); no-op
 *  on PostgreSQL. Every connection leaves this to the dispatcher unless
 *  the log passes 10,000 pages. */
apr_status_t et_outbox_checkpoint(et_outbox_t *ob);
/** The driver's own handle of the connection (sqlite3 *, PGconn *), for
 *  tests that watch what a statement costs. */
void *et_outbox_native(et_outbox_t *ob);
/** The last error of the driver, for a log line. */
const char *et_outbox_error(et_outbox_t *ob);

/** Store a new event (pending, or failed with its error). A txn the outbox
 *  holds already is not stored again, and that is a success: a child that
 *  was not told its event was stored stores it itself (et_intake.h).
 *  With ev->lease_owner set, a pending event is stored leased to it until
 *  ev->lease_until, its attempt counted, if no event of its object is
 *  pending (what a claim would check): then ev->rowid is set; if not,
 *  it is stored plainly and ev->lease_owner is cleared. */
apr_status_t et_outbox_insert(et_outbox_t *ob, et_event_t *ev);

/** Does the connection still answer (SELECT 1)? Not if the database
 * server ended the session (PostgreSQL restarted): then only a new
 * connection will do. */
apr_status_t et_outbox_ping(et_outbox_t *ob);

/** Non-zero if the last error was SQLite's "database or disk is full". */
int et_outbox_full(et_outbox_t *ob);

/** Can the database take a write now? APR_SUCCESS: yes; APR_EACCES: it
 * answers but is read-only (a PostgreSQL standby, or
 * default_transaction_read_only); another error: it does not answer.
 * On SQLite the same as et_outbox_ping (its room is the filesystem's,
 * see et_guard.h). */
apr_status_t et_outbox_writable(et_outbox_t *ob);

/** Start a transaction (so that several writes make one commit). */
apr_status_t et_outbox_begin(et_outbox_t *ob, apr_pool_t *p,
                             apr_dbd_transaction_t **trans);
/** Commit it (or roll it back if a statement in it failed); @a p is the
 * pool given to et_outbox_begin. */
apr_status_t et_outbox_end(et_outbox_t *ob, apr_pool_t *p,
                           apr_dbd_transaction_t *trans);

/**
 * Store @a n events in one transaction (each[i] says how each went; if the
 * transaction fails, every event is tried again on its own). Returns an
 * error only when no transaction could be started.
 */
apr_status_t et_outbox_insert_batch(et_outbox_t *ob, et_event_t **evs, int n,
                                    apr_status_t *each);

/**
 * Lease up to @a max due events of @a site to @a owner until now + @a lease:
 * pending, due, not leased, and each its object's head (no earlier pending
 * event of the same site, object type and id: a mark kept by the insert
 * and the finish, so the claim reads no event that waits behind another);
 * soonest due first, returned in capture order. Events are allocated from
 * @a p.
 */
apr_status_t et_outbox_claim(et_outbox_t *ob, apr_pool_t *p, const char *site,
                             const char *owner, apr_interval_time_t lease,
                             int max, apr_array_header_t **events);

/**
 * Lease to @a owner, with @a head's lease (ev->lease_until as claimed), up
 * to @a max of the pending events that follow @a head in its object's
 * line, in capture order: the calls that follow the head's at once if it
 * succeeds (chained delivery). Reads at most @a max rows.
 */
apr_status_t et_outbox_claim_next(et_outbox_t *ob, apr_pool_t *p,
                                  const et_event_t *head, const char *owner,
                                  int max, apr_array_header_t **events);

/**
 * PostgreSQL: lock the objects of @a evs until the current transaction
 * (et_outbox_begin) ends, in one order, as the writers that store events
 * do. A round that finishes an object's head takes it first, so that an
 * event stored meanwhile either sees the head pending (and waits behind
 * it) or is seen by the finish (and becomes the head). No-op on SQLite.
 */
apr_status_t et_outbox_lock_objects(et_outbox_t *ob, apr_pool_t *p,
                                    et_event_t *const *evs, int n);

/** The sites that have pending events (const char *). */
apr_status_t et_outbox_pending_sites(et_outbox_t *ob, apr_pool_t *p,
                                     apr_array_header_t **sites);

/** The outcome of one attempt. */
typedef struct et_outcome_t {
    et_state_e state;         /* DELIVERED, DEAD, or PENDING (retry at due) */
    int status;               /* HTTP status, 0 for a transport error */
    const char *error;        /* NULL when delivered */
    apr_time_t due;           /* next attempt, for PENDING */
    apr_interval_time_t latency;
} et_outcome_t;

/**
 * Record an attempt's outcome and release @a owner's lease, the one
 * ev->lease_until names (set by et_outbox_claim, or by the intake for an
 * event stored leased). APR_EBUSY if that lease had expired and the event
 * was claimed again (by another dispatcher, or by this one).
 */
apr_status_t et_outbox_finish(et_outbox_t *ob, const et_event_t *ev,
                              const char *owner, const et_outcome_t *out);

/** One outcome of a batch (et_outbox_finish_batch). */
typedef struct et_finish_t {
    const et_event_t *ev;             /* as claimed (rowid, lease_until) */
    et_outcome_t out;
    apr_status_t rv;                  /* set: APR_SUCCESS, or APR_EBUSY as
                                       * et_outbox_finish says */
} et_finish_t;

/**
 * et_outbox_finish for each of @a n outcomes, meant for a transaction
 * (a dispatcher's round): on PostgreSQL one statement for all, not a
 * round trip each. Returns an error when a statement failed (then the
 * transaction is spoiled and fs[].rv says nothing).
 */
apr_status_t et_outbox_finish_batch(et_outbox_t *ob, const char *owner,
                                    et_finish_t *fs, int n);

/** Release @a owner's leases without counting an attempt (clean shutdown). */
apr_status_t et_outbox_release(et_outbox_t *ob, const char *owner);

/** The earliest due time after @a after of a pending event, APR_NOTFOUND
 * if none. (Events due already that no claim took wait for something
 * else: an earlier event of their object, or their endpoint's pause.) */
apr_status_t et_outbox_next_due(et_outbox_t *ob, apr_time_t after,
                                apr_time_t *due);

typedef struct et_outbox_counts_t {
    apr_int64_t pending, leased, delivered, dead, failed;
    apr_time_t oldest_pending;  /* created time, 0 if none */
} et_outbox_counts_t;


/** Give a claimed event back untried: lease released (the one
 * ev->lease_until names), attempt not counted. */
apr_status_t et_outbox_unclaim(et_outbox_t *ob, const et_event_t *ev,
                               const char *owner);

/** An endpoint's health as the dispatcher last recorded it. */
typedef struct et_circuit_row_t {
    const char *site;
    int state;                        /* et_cb_state_e */
    int failures;                     /* consecutive */
    apr_time_t open_until;            /* claims skip the site until then */
    apr_time_t changed;
    const char *last_error;
} et_circuit_row_t;

apr_status_t et_outbox_circuit_set(et_outbox_t *ob, const et_circuit_row_t *c);
/**
 * Take the probe of @a site's pause if it is over (paused or probing,
 * open_until <= @a now) and no other dispatcher took it first: the row
 * becomes "probing" until @a until. *taken is 1 for the one that won.
 */
apr_status_t et_outbox_circuit_take(et_outbox_t *ob, const char *site,
                                    apr_time_t now, apr_time_t until,
                                    int *taken);
/** All recorded endpoints (et_circuit_row_t *), by site. */
apr_status_t et_outbox_circuits(et_outbox_t *ob, apr_pool_t *p,
                                apr_array_header_t **out);

/**
 * Put dead letters back in line (attempts reset, txn kept): the one with
 * @a txn, or with txn NULL every one captured at or after @a since.
 */
apr_status_t et_outbox_replay(et_outbox_t *ob, const char *txn,
                              apr_time_t since, int *count);

/** The newest @a limit events (et_event_t *) in @a state, or all if -1. */
apr_status_t et_outbox_list(et_outbox_t *ob, apr_pool_t *p, int state,
                            int limit, apr_array_header_t **events);
/** One event by txn; APR_NOTFOUND if there is none. */
apr_status_t et_outbox_show(et_outbox_t *ob, apr_pool_t *p, const char *txn,
                            et_event_t **ev);
/** The latest events whose last attempt (or capture) failed. */
apr_status_t et_outbox_recent_errors(et_outbox_t *ob, apr_pool_t *p,
                                     int limit, apr_array_header_t **events);

typedef struct et_site_counts_t {
    const char *site;
    et_outbox_counts_t counts;
    apr_int64_t retrying;             /* pending after a failed attempt */
} et_site_counts_t;

/** Counts per site (et_site_counts_t *), by site name. */
apr_status_t et_outbox_site_counts(et_outbox_t *ob, apr_pool_t *p,
                                   apr_array_header_t **out);

/**
 * Delete at most @a max events: delivered before @a delivered_before, dead
 * or failed before @a dead_before (0: keep those); an event is dead when
 * its last attempt ended, failed when it was captured.
 */
apr_status_t et_outbox_prune(et_outbox_t *ob, apr_time_t delivered_before,
                             apr_time_t dead_before, int max, int *deleted);

/** One delivered event's timing, for percentiles. */
typedef struct et_latency_t {
    const char *site;
    apr_interval_time_t total;        /* capture to delivery */
    apr_interval_time_t call;         /* the successful call alone */
} et_latency_t;

/** The latest @a limit deliveries (et_latency_t) of @a site, newest first. */
apr_status_t et_outbox_latencies(et_outbox_t *ob, apr_pool_t *p,
                                 const char *site, int limit,
                                 apr_array_header_t **out);

/* ---- the local spool (EventTriggerSpool): an SQLite outbox that holds
 * events while the shared one cannot store them, forwarded in id order
 * (et_spool.h) ---- */

/** The oldest @a max events (et_event_t *) whatever their state, in id
 *  order (capture order). */
apr_status_t et_outbox_oldest(et_outbox_t *ob, apr_pool_t *p, int max,
                              apr_array_header_t **events);
/** Delete every event whose id is at most @a last; *deleted (may be
 *  NULL) says how many. */
apr_status_t et_outbox_delete_upto(et_outbox_t *ob, apr_int64_t last,
                                   int *deleted);
/** How many events the outbox holds, whatever their state. */
apr_status_t et_outbox_total(et_outbox_t *ob, apr_int64_t *n);

#endif /* ET_OUTBOX_H */
