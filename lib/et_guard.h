/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_guard.h
 * @brief Fail closed: whether the outbox can take an event now, decided
 *        before the console acts, and the SQLite reserve that keeps room
 *        for what was admitted.
 *
 * Two parts, both httpd-free:
 *
 * - The reserve: a file beside the SQLite outbox ("FILE.reserve"),
 *   allocated to a given size. A writer whose store fails for lack of
 *   room gives it up (truncates it) and stores again: that room goes to
 *   events already admitted only, because while the reserve is not held
 *   the check refuses every new write request. The check holds it again
 *   once the filesystem has room for the reserve and as much again.
 *
 * - The shared state (et_guard_t): the last check's outcome, when it was
 *   made, since when requests are refused, and per-site counts of refused
 *   requests and lost events. It lives in memory shared by every process
 *   of the server (the parent makes it before the fork) and is read and
 *   written with atomic operations only: any thread of any process may
 *   call every function on it at once.
 */
#ifndef ET_GUARD_H
#define ET_GUARD_H

#include <apr_pools.h>
#include <apr_time.h>

/** The outbox as the last check found it. */
typedef enum {
    ET_OB_UNKNOWN = 0,                /* not checked yet: admit */
    ET_OB_WRITABLE,
    ET_OB_FULL,                       /* no room (or no reserve) */
    ET_OB_DOWN,                       /* the database does not answer */
    ET_OB_READONLY,                   /* it answers but cannot write */
    ET_OB_FAILED,                     /* a store just failed: refuse until
                                       * the next check (at once) says */
    ET_OB_SPOOLED                     /* events wait in the local spool
                                       * (not a check's outcome) */
} et_ob_state_e;

/** "writable", "full", "down", "read-only" (or "unknown"). */
const char *et_ob_state_name(et_ob_state_e st);
/** Why requests are refused, for a log line and the 503's body. */
const char *et_ob_state_reason(et_ob_state_e st);

/* ---- the reserve (SQLite) ---- */

/** "PATH.reserve" for an outbox spec "sqlite3:PATH"; NULL for any
 *  other (PostgreSQL keeps no reserve). */
const char *et_reserve_path(apr_pool_t *p, const char *store);

/** Make @a path hold @a size bytes of allocated room (a new file is made
 *  mode 0640). ENOSPC (or another error) if it cannot: then what was
 *  allocated is given back, so a failed attempt takes no room. */
apr_status_t et_reserve_hold(const char *path, apr_off_t size);

/** Non-zero if @a path holds at least @a size bytes of allocated room. */
int et_reserve_held(const char *path, apr_off_t size);

/** Give the room up (truncate to 0). APR_SUCCESS if room was freed,
 *  APR_ENOENT if there was none to give (no file, or empty). */
apr_status_t et_reserve_release(const char *path);

/** Bytes an unprivileged writer may still use on @a path's filesystem
 *  (statvfs f_bavail). */
apr_status_t et_fs_free(const char *path, apr_off_t *avail);

/**
 * Bytes of the SQLite write-ahead log that no checkpoint has copied into
 * the database yet (frames not backfilled, times the page size): the most
 * that the next checkpoint can add to the database file. Read from the
 * WAL-index file @a shm ("FILE-shm") as SQLite's file format documents it
 * (mxFrame and szPage in the index header, nBackfill in the checkpoint
 * information); 0 if there is none. A read of 100 bytes, no lock: a
 * figure that may be a moment old, for an estimate.
 */
apr_off_t et_wal_pending(const char *shm);

/**
 * What an SQLite outbox's filesystem allows: writable if the reserve is
 * held and at least @a reserve + @a wal bytes are free besides it. @a wal
 * is the size of the outbox's write-ahead log: the most that the next
 * checkpoint can add to the database file (the dispatcher's checkpoints
 * are not admitted by anyone, so their room is kept aside too). *hold is
 * set when the caller should try to hold the reserve first (it is not
 * held and there is room for it, and for what writable asks, besides:
 * the hysteresis that keeps the check from holding and giving up the
 * reserve over and over).
 */
et_ob_state_e et_space_decide(apr_off_t avail, int held, apr_off_t reserve,
                              apr_off_t wal, int *hold);

/** An SQLite outbox's room, as the check sees it: paths and the reserve's
 *  size (et_space_of). Read-only once made: any thread may use it. */
typedef struct et_space_t {
    const char *file;                 /* the outbox */
    const char *dir;                  /* its directory */
    const char *shm;                  /* its WAL-index, "FILE-shm" */
    const char *reserve_path;         /* "FILE.reserve" */
    apr_off_t reserve;                /* bytes */
} et_space_t;

/** The room of the outbox spec @a store with a reserve of @a reserve
 *  bytes; NULL for any outbox but SQLite's. */
et_space_t *et_space_of(apr_pool_t *p, const char *store, apr_off_t reserve);

/**
 * The check of an SQLite outbox's room: the file and its directory
 * writable, room on the filesystem (*avail, -1 if statvfs fails), the
 * reserve held (*held) - held again first when there is room for it
 * (et_space_decide). Made by the request that finds the shared state old
 * (mod_eventtrigger_guard.c) and by the dispatcher while the reserve is
 * given up (it writes nothing meanwhile: et_dispatch.c).
 */
et_ob_state_e et_space_check(const et_space_t *sp, apr_off_t *avail,
                             int *held);

/* ---- the shared state ---- */

typedef struct et_guard_t et_guard_t;

/** Bytes of shared memory for @a nsites sites. */
apr_size_t et_guard_size(int nsites);
/** Initialise @a mem (et_guard_size bytes) at @a now. */
et_guard_t *et_guard_init(void *mem, int nsites, apr_time_t now);

/** Non-zero if the state is older than @a ttl (or was invalidated) and
 *  this caller won the right to check; it must then call
 *  et_guard_record. Every other caller uses the last outcome. */
int et_guard_due(et_guard_t *g, apr_time_t now, apr_interval_time_t ttl);

/** Transitions et_guard_record reports, for a log line each. */
typedef enum {
    ET_GUARD_SAME = 0,
    ET_GUARD_REFUSING,                /* was writable (or unknown) */
    ET_GUARD_RECOVERED                /* was refusing */
} et_guard_change_e;

/** The outcome of a check (the caller of et_guard_due): @a avail and
 *  @a reserve in bytes (-1: not known, PostgreSQL). */
et_guard_change_e et_guard_record(et_guard_t *g, apr_time_t now,
                                  et_ob_state_e st, apr_off_t avail,
                                  apr_off_t reserve);

/** Check at the next request (a store failed). */
void et_guard_invalidate(et_guard_t *g);

et_ob_state_e et_guard_state(const et_guard_t *g);

/** Count a refused request of site @a site (0-based; out of range:
 *  counted in the total only). Returns non-zero, with *count the requests
 *  refused since the last such answer, if a log line is due (once a
 *  second at most). */
int et_guard_refused(et_guard_t *g, int site, apr_time_t now,
                     apr_uint32_t *count);

/** Count an event lost (a store that failed at the end) of @a site; the
 *  outbox counts as failing (refused) until the next check, which the
 *  next request makes. */
void et_guard_lost(et_guard_t *g, int site);

/* ---- the local spool (PostgreSQL outbox, EventTriggerSpool) ----
 *
 * One count: the events in the spool, or on their way into it. Writers
 * add theirs before they store them there and the forwarder takes away
 * what it moved, so the count is not 0 while an event waits in the spool:
 * while it is not, the check refuses new write requests and every writer
 * stores into the spool too, behind what waits there (the order of an
 * object's events across the two). */

/** If events wait in the spool, count @a n more and return non-zero: the
 *  caller stores its events in the spool. 0 (nothing counted): the
 *  outbox is the caller's. */
int et_guard_spool_join(et_guard_t *g, apr_uint32_t n);
/** Count @a n events about to be stored in the spool. */
void et_guard_spool_add(et_guard_t *g, apr_uint32_t n);
/** After a store into the spool of events counted by join or add: @a ok
 *  stored, @a failed not (uncounted again). Returns non-zero, with
 *  *count the events spooled since the last such answer, if a log line
 *  is due (once a second at most). */
int et_guard_spool_stored(et_guard_t *g, apr_uint32_t ok,
                          apr_uint32_t failed, apr_time_t now,
                          apr_uint32_t *count);
/** The forwarder took @a n events out of the spool; returns the count
 *  left (never below 0). */
apr_uint32_t et_guard_spool_forwarded(et_guard_t *g, apr_uint32_t n);
/** Events in the spool (or on their way in). */
apr_uint32_t et_guard_spool_count(const et_guard_t *g);
/** Set the count from the spool itself (at startup, or when the
 *  forwarder finds events nobody counted: a previous generation's) if it
 *  is @a was; non-zero if it was set. */
int et_guard_spool_set(et_guard_t *g, apr_uint32_t was, apr_uint32_t n);

/** What the status page shows. */
typedef struct et_guard_view_t {
    et_ob_state_e state;
    apr_time_t checked;               /* 0: never */
    apr_time_t refusing_since;        /* 0: not refusing */
    apr_off_t avail;                  /* -1: not known */
    apr_off_t reserve;                /* held, -1: none kept */
    apr_uint64_t refused, lost;       /* every site */
    apr_uint32_t spool;               /* events in the local spool now */
    apr_uint64_t spooled, forwarded;  /* since the start */
} et_guard_view_t;

void et_guard_view(const et_guard_t *g, et_guard_view_t *v);
/** Site @a site's counts (0 if out of range). */
void et_guard_site_counts(const et_guard_t *g, int site,
                          apr_uint32_t *refused, apr_uint32_t *lost);

/* ---- before-save outcomes (per site, every child) ---- */

typedef enum {
    ET_BS_PROCEED = 0,
    ET_BS_ENRICHED,
    ET_BS_REFUSED,
    ET_BS_FAILED_OPEN,                /* failed; the request went on */
    ET_BS_FAILED_CLOSED,              /* failed; refused with 503 */
    ET_BS_KINDS
} et_bs_kind_e;

/** "proceed", "enriched", "refused", "failed_open", "failed_closed". */
const char *et_bs_kind_name(et_bs_kind_e k);

/** Count one before-save decision of @a site and how long it took. Any
 *  thread of any child; atomic operations only. */
void et_guard_before(et_guard_t *g, int site, et_bs_kind_e kind,
                     apr_interval_time_t took);

typedef struct et_bs_view_t {
    apr_uint32_t count[ET_BS_KINDS];
    apr_uint32_t calls;               /* of them, calls that were made */
    double p50_ms, p99_ms;            /* upper bounds of their latency
                                       * buckets; 0 without calls */
} et_bs_view_t;

/** A site's before-save counts and latency percentiles. */
void et_guard_before_view(const et_guard_t *g, int site, et_bs_view_t *v);

#endif /* ET_GUARD_H */
