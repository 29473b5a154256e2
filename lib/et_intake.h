/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_intake.h
 * @brief One writer per instance: request threads hand captured events to
 *        the dispatcher process over a Unix socket; it commits the events
 *        of every child in one transaction and answers each once its
 *        event is durable.
 *
 * The children's own group commit (et_committer.h) stays as the fallback:
 * a child that cannot reach the intake, or is not told "stored" within its
 * wait, stores the event itself. An event the intake stored but could not
 * confirm is then inserted a second time; the outbox ignores a txn it
 * already holds (et_outbox_insert), so it is queued once.
 *
 * Wire format (local, both ends built from the same source): a record is
 * a 4-byte length (network order) of what follows, then a version byte,
 * object, event and state bytes, created and due (8 bytes each, network
 * order), then txn, site, oid, url, content_type, body, error,
 * traceparent, tracestate and headers, each a 4-byte length and its bytes
 * (0xffffffff: NULL). The answer is a 4-byte
 * length and as many bytes of error text; 0 means stored.
 *
 * Thread safety: the server runs on its own thread and shares nothing but
 * its stop flag (et_intake_stop may be called from another thread) and
 * its lessee (et_intake_lessee, from the dispatcher's claim loop), guarded
 * by a mutex that each commit holds while it uses the lessee. A
 * client may be used by any number of threads at once: each call borrows
 * its own connection from an apr_reslist.
 */
#ifndef ET_INTAKE_H
#define ET_INTAKE_H

#include <apr_pools.h>
#include <apr_network_io.h>
#include <apr_global_mutex.h>

#include "et_event.h"
#include "et_dispatch.h"

/** Largest record either end accepts: the largest body
 * (EventTriggerCaptureLimit 64M) and room for the event's other fields. */
#define ET_INTAKE_MAX_RECORD (65 * 1024 * 1024)

/** Encode @a ev as one record, allocated from @a p. */
apr_status_t et_intake_encode(apr_pool_t *p, const et_event_t *ev,
                              char **buf, apr_size_t *len);

/**
 * Decode a record's payload (what follows its length) into an event
 * allocated, strings and all, from @a p. APR_EGENERAL if it is not a
 * whole, well-formed record.
 */
apr_status_t et_intake_decode(apr_pool_t *p, const char *buf, apr_size_t len,
                              et_event_t **ev);

/**
 * Bind and listen on @a path (an existing file there is removed first),
 * mode 0600. Called before the process drops its privileges; the caller
 * gives the file to httpd's User. *err says why on failure.
 */
apr_status_t et_intake_listen(apr_socket_t **s, apr_pool_t *p,
                              const char *path, const char **err);

typedef struct et_intake_conf_t {
    const char *store;                /* outbox spec */
    apr_global_mutex_t *lock;         /* outbox writers' lock, or NULL */
    int max;                          /* events per transaction at most */
    et_log_fn *log;
    void *log_baton;
    int log_level;                    /* ET01039 (debug) formatted only
                                       * at ET_LOG_DEBUG or above */
    void (*wake)(void *baton);        /* after a commit with events the
                                       * claim loop must claim itself */
    void *wake_baton;
    const char *spool;                /* the local spool, or NULL
                                       * (et_writer_spool) */
    struct et_guard_t *guard;         /* its count */
} et_intake_conf_t;

typedef struct et_intake_t et_intake_t;

/** Serve @a listener on a thread of its own until et_intake_stop. */
apr_status_t et_intake_start(et_intake_t **in, apr_pool_t *p,
                             apr_socket_t *listener,
                             const et_intake_conf_t *conf);

/**
 * Let the dispatcher lease fresh events as they are stored (@a l), or stop
 * that (NULL: returns once no commit is handing it events any more).
 * Called by the dispatcher as it starts and stops (et_dispatch_conf_t's
 * offer); a NULL @a in is ignored.
 */
void et_intake_lessee(et_intake_t *in, const et_lessee_t *l);

/** Stop serving and join the thread; unanswered clients see the
 *  connection close and store their events themselves. */
void et_intake_stop(et_intake_t *in);

typedef struct et_intake_client_t et_intake_client_t;

/**
 * @param max      connections kept at once (the threads that may call)
 * @param wait     how long a call waits to hear "stored"
 */
apr_status_t et_intake_client_create(et_intake_client_t **c, apr_pool_t *p,
                                     const char *path, int max,
                                     apr_interval_time_t wait);

/**
 * Hand @a ev to the intake and wait until it is durable. APR_SUCCESS: it
 * is stored. Anything else: it may or may not be, and the caller must
 * store it itself; *err (from @a p) says why.
 */
apr_status_t et_intake_store(et_intake_client_t *c, const et_event_t *ev,
                             apr_pool_t *p, const char **err);

#endif /* ET_INTAKE_H */
