/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_spool.h
 * @brief The local spool's forwarder: events that a PostgreSQL outbox
 *        could not take were stored in a local SQLite outbox (the spool,
 *        EventTriggerSpool, see et_writer_spool); this moves them into the
 *        outbox as soon as it answers, oldest first.
 *
 * A thread of the dispatcher process, with connections of its own to the
 * spool and the outbox; it shares the spool's count with every process
 * (et_guard.h, atomics). Each pass reads the spool's oldest events (id
 * order: the order they were stored in), stores them in the outbox in one
 * transaction, then deletes them from the spool: a crash between the two
 * leaves them in both, and the next pass stores them again, which the
 * outbox ignores (a txn is stored once). While the count is not 0, write
 * requests are refused and writers store into the spool behind what waits
 * there; the forwarder's subtraction brings it to 0 once the last is
 * moved, so no event of an object goes into the outbox before an earlier
 * one that waited in the spool.
 */
#ifndef ET_SPOOL_H
#define ET_SPOOL_H

#include <apr_pools.h>

#include "et_outbox.h"
#include "et_log.h"

struct et_guard_t;

/** What one pass did. */
typedef struct et_spool_pass_t {
    int read;                         /* events read from the spool */
    int moved;                        /* stored in the outbox and deleted */
    int dropped;                      /* refused by an outbox that can
                                       * write: deleted, NOT queued */
    const char *dropped_txn;          /* the first of those */
    const char *dropped_error;        /* and why */
} et_spool_pass_t;

/**
 * One pass: up to @a max of @a spool's oldest events into @a ob, then
 * deleted from @a spool (those before the first that @a ob could not
 * take). An event @a ob refuses while it can write (the event itself is
 * at fault) is deleted all the same and counted as dropped: it would
 * hold every later one back for ever. APR_SUCCESS: every event read was
 * moved (or dropped); otherwise the error of the outbox (then
 * et_outbox_error(ob)) or of the spool.
 */
apr_status_t et_spool_forward(et_outbox_t *spool, et_outbox_t *ob,
                              apr_pool_t *p, int max, et_spool_pass_t *pass);

typedef struct et_spool_conf_t {
    const char *spool;                /* "sqlite3:PATH" */
    const char *store;                /* the outbox */
    struct et_guard_t *guard;         /* the spool's count */
    int max;                          /* events per pass (0: 256) */
    et_log_fn *log;
    void *log_baton;
    void (*wake)(void *baton);        /* after events were moved: the
                                       * claim loop has work */
    void *wake_baton;
} et_spool_conf_t;

typedef struct et_spool_t et_spool_t;

/** Forward on a thread of its own until et_spool_stop. */
apr_status_t et_spool_start(et_spool_t **sp, apr_pool_t *p,
                            const et_spool_conf_t *conf);
/** Stop (a pass under way ends first) and join the thread. NULL: no-op. */
void et_spool_stop(et_spool_t *sp);

#endif /* ET_SPOOL_H */
