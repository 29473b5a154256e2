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

/**
 * Find the site an event was captured for. Never NULL: a site that is no
 * longer configured maps to the server's defaults.
 */
typedef const et_site_t *et_site_lookup_fn(void *baton, const char *name);

/** Where the dispatcher reports, so that the glue can use its own logger. */
typedef void et_log_fn(void *baton, int level, const char *msg);

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
    volatile int *stop;               /* set non-zero to end et_dispatch_run */
    apr_global_mutex_t *lock;         /* outbox writers' lock, or NULL */
    apr_array_header_t *sites;        /* names of the configured sites */
} et_dispatch_conf_t;

/* Levels for et_log_fn, numerically httpd's APLOG_* ones. */
#define ET_LOG_ERR      3
#define ET_LOG_WARNING  4
#define ET_LOG_NOTICE   5
#define ET_LOG_INFO     6
#define ET_LOG_DEBUG    7

/**
 * Name the calling thread (Linux: what `top -H` and `ps -L` show, 15
 * bytes at most): "et-calls", "et-checkpoint", "et-intake". The claim loop
 * keeps the process's name, "apache2" or "httpd".
 */
void et_thread_name(const char *name);

/**
 * Run until *conf->stop: claims, delivers, records. Returns when stopped,
 * after in-flight deliveries finished (their outcome recorded) or, past a
 * grace period, were left to expire their lease.
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
