/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_dispatch.h
 * @brief The dispatcher: claims due events, calls the receivers (many calls
 *        at once, on one calling thread), writes the outcomes back.
 */
#ifndef ET_DISPATCH_H
#define ET_DISPATCH_H

#include <apr_file_io.h>
#include <apr_global_mutex.h>
#include "et_site.h"
#include "et_http.h"
#include "et_outbox.h"
#include "et_log.h"

/**
 * Find the site an event was captured for. Never NULL: a site that is no
 * longer configured maps to the server's defaults.
 */
typedef const et_site_t *et_site_lookup_fn(void *baton, const char *name);

/** What et_lessee_t's reserve() answers. */
typedef enum {
    ET_LEASE_PAUSED = -1,             /* store it plainly; its site is
                                       * paused: no need to wake the claim
                                       * loop for it */
    ET_LEASE_NONE = 0,                /* store it plainly: the claim loop
                                       * will claim it */
    ET_LEASE_TAKEN = 1                /* store it leased to the dispatcher */
} et_lease_e;

/**
 * How the intake (et_intake.h) hands fresh events to a running dispatcher
 * as it stores them, so that they need no claim: both are called on the
 * intake's thread, around one of its transactions.
 */
typedef struct et_lessee_t {
    /** Before the transaction, an et_lease_e. ET_LEASE_TAKEN: store @a ev
     *  leased (the dispatcher set ev->lease_owner and ev->lease_until and
     *  counted it in flight); ET_LEASE_NONE: store it plainly, the claim
     *  loop will claim it; ET_LEASE_PAUSED: likewise, and its site is
     *  paused, so the claim loop need not be woken for it. */
    int (*reserve)(void *baton, et_event_t *ev);
    /** After it, for the @a n events reserve() took: those stored
     *  (@a stored[i] APR_SUCCESS) with their lease (evs[i]->lease_owner
     *  still set) go to the calls; the others are given back. */
    void (*settle)(void *baton, et_event_t **evs, const apr_status_t *stored,
                   int n);
    void *baton;
} et_lessee_t;

typedef struct et_dispatch_conf_t {
    const char *store;                /* outbox spec */
    int workers;                      /* calls under way at once, at most */
    apr_interval_time_t lease;        /* how long a claim holds */
    apr_interval_time_t poll;         /* longest sleep between claims */
    et_site_lookup_fn *lookup;
    void *lookup_baton;
    et_log_fn *log;
    void *log_baton;
    int log_level;                    /* above it, not even formatted;
                                       * 0: ET_LOG_DEBUG */
    apr_file_t *wakeup;               /* read end: a byte means "new event" */
    apr_interval_time_t keep_delivered;   /* then deleted; 0: kept forever */
    apr_interval_time_t keep_dead;        /* dead and failed events */
    volatile int *stop;               /* set non-zero to end et_dispatch_run;
                                       * it sets it itself when it gives up
                                       * (ET01041) */
    apr_global_mutex_t *lock;         /* outbox writers' lock, or NULL */
    /* SQLite: the outbox's room and the reserve kept for admitted events
     * (et_guard.h). While the reserve is given up the dispatcher writes
     * nothing of its own. NULL: no reserve (PostgreSQL). */
    const struct et_space_t *space;
    apr_array_header_t *sites;        /* names of the configured sites */
    /* Called with the dispatcher's et_lessee_t once it runs, and with NULL
     * before it stops (et_intake_lessee); NULL: nothing leases at intake. */
    void (*offer)(void *baton, const et_lessee_t *lessee);
    void *offer_baton;
} et_dispatch_conf_t;

/**
 * Name the calling thread (Linux: what `top -H` and `ps -L` show, 15
 * bytes at most): "et-calls", "et-checkpoint", "et-intake". The claim loop
 * keeps the process's name, "apache2" or "httpd".
 */
void et_thread_name(const char *name);

/**
 * Run until *conf->stop: claims, delivers, records. Returns when stopped,
 * after in-flight deliveries finished (their outcome recorded) or, past a
 * grace period, were left to expire their lease. Returns an error, the
 * same way, when the outbox's connection stopped answering (ET01041): the
 * caller starts a dispatcher again, on new connections.
 */
apr_status_t et_dispatch_run(apr_pool_t *p, const et_dispatch_conf_t *conf);

/**
 * Decide the outcome of one attempt: 2xx delivered; transport errors, 408,
 * 429 and 5xx retried per the site's schedule; anything else dead.
 */
void et_dispatch_judge(const et_site_t *site, const et_event_t *ev,
                       const et_http_response_t *resp, apr_time_t now,
                       apr_uint32_t rnd, et_outcome_t *out);

#endif /* ET_DISPATCH_H */
