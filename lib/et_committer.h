/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_committer.h
 * @brief Group commit of captured events: many request threads, one
 *        transaction.
 *
 * A thread that stores an event queues it and waits; a thread that finds
 * no commit under way becomes the leader, takes every queued event and
 * commits them in one transaction (under the outbox's cross-process
 * lock), then wakes the threads whose events it committed, one by one, and
 * hands the lead to the oldest of those that queued meanwhile. No thread
 * of its own, and nobody returns before its event is durable.
 *
 * Thread safety: et_committer_store() may be called from any number of
 * threads at once; the committer's state is guarded by its own mutex, its
 * outbox connection is only used by the current leader.
 */
#ifndef ET_COMMITTER_H
#define ET_COMMITTER_H

#include <apr_pools.h>
#include <apr_global_mutex.h>

#include "et_event.h"
#include "et_log.h"

struct et_guard_t;

/**
 * One writer connection to the outbox, for the two places that store
 * captured events (a child's group commit below and the dispatcher's
 * intake, et_intake.h): opened on first use, closed and opened again after
 * a batch that failed (at once, the batch tried again on the new one, if
 * the connection itself no longer answered), each batch under the
 * outbox's cross-process lock.
 * Not thread-safe: one thread at a time (the committer's leader, the
 * intake's thread).
 */
typedef struct et_writer_t et_writer_t;

/** @param lock  serialises writers across processes (NULL: none) */
et_writer_t *et_writer_create(apr_pool_t *p, const char *store,
                              apr_global_mutex_t *lock);
/** Open the connection if needed, then take the lock; @a err says why
 *  not. */
apr_status_t et_writer_enter(et_writer_t *w, char *err, apr_size_t errlen);
/** After et_writer_enter: store @a n events in one transaction
 *  (et_outbox_insert_batch, each[i] per event) and release the lock. @a err
 *  says why if the batch, or any event, failed. */
apr_status_t et_writer_store(et_writer_t *w, et_event_t **evs, int n,
                             apr_status_t *each, char *err,
                             apr_size_t errlen);
/**
 * PostgreSQL: store in the local spool @a spool ("sqlite3:PATH", an
 * outbox of its own) the events the outbox cannot take because it does
 * not answer or cannot write (an event it refuses while it can is lost,
 * as without a spool), and every event while others wait in the spool
 * (counted in @a g, et_guard.h), so that none overtakes an earlier one of
 * its object. A spooled event counts as stored; ET00100 (through @a log,
 * once a second at most) says so. NULL @a spool: none.
 */
void et_writer_spool(et_writer_t *w, const char *spool,
                     struct et_guard_t *g, et_log_fn *log, void *baton);
/** Close the connection (the writer opens it again if used). */
void et_writer_close(et_writer_t *w);

typedef struct et_committer_t et_committer_t;

/**
 * @param store   the outbox spec, opened by the first leader
 * @param lock    serialises writers across processes (NULL: none); taken
 *                around each transaction
 * @param max     events per transaction at most
 */
apr_status_t et_committer_create(et_committer_t **c, apr_pool_t *p,
                                 const char *store, apr_global_mutex_t *lock,
                                 int max);

/**
 * Store @a ev durably (it is in a committed transaction on return).
 * On failure *err (from @a ev_pool) says why: a database message, never
 * the event's body.
 */
/** The local spool of the committer's writer (et_writer_spool). */
void et_committer_spool(et_committer_t *c, const char *spool,
                        struct et_guard_t *g, et_log_fn *log, void *baton);

apr_status_t et_committer_store(et_committer_t *c, et_event_t *ev,
                                apr_pool_t *ev_pool, const char **err);

#endif /* ET_COMMITTER_H */
