/* Licensed under the Apache License, Version 2.0. */
/*
 * mod_eventtrigger: the private header shared by the httpd glue files.
 */
#ifndef MOD_EVENTTRIGGER_H
#define MOD_EVENTTRIGGER_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_expr.h"

#include <apr_reslist.h>
#include <apr_global_mutex.h>

#include "et_event.h"
#include "et_site.h"
#include "et_outbox.h"
#include "et_committer.h"
#include "et_intake.h"

extern module AP_MODULE_DECLARE_DATA eventtrigger_module;
/* mod_eventtrigger.c gets this from AP_DECLARE_MODULE */
#ifndef ET_MODULE_MAIN
APLOG_USE_MODULE(eventtrigger);
#endif

#define ET_FILTER_NAME  "EVENTTRIGGER"
#define ET_STATUS_HANDLER "eventtrigger-status"
#define ET_DEFAULT_STORE_FILE "state/eventtrigger.db"
/* EventTriggerSpool's default (a PostgreSQL outbox only), beside where
 * the SQLite outbox would be */
#define ET_DEFAULT_SPOOL_FILE "state/eventtrigger-spool.db"
#define ET_MUTEX_TYPE "eventtrigger-outbox"
/* How long a request waits for the intake to say "stored" before its
 * child stores the event itself. */
#define ET_INTAKE_WAIT apr_time_from_sec(5)

/* EventTriggerHeader NAME expr=EXPRESSION: evaluated for each event, at
 * capture (ap_expr, parsed at startup). */
typedef struct et_expr_header_t {
    const char *name;
    const ap_expr_info_t *expr;
} et_expr_header_t;

/*
 * Per server (site). Built at configuration time and read-only afterwards:
 * shared by all threads, inherited by the dispatcher across its fork.
 */
typedef struct et_srv_conf_t {
    et_site_t site;                   /* what the lib reads */
    int format_set;
    int user_agent_set;
    int connect_timeout_set;
    int timeout_set;
    int retry_set;
    int secrets_set;
    int headers_set;
    int tls_verify_set;
    int ca_set;
    int cert_set;
    int circuit_set;
    int proxy_set;
    apr_off_t capture_limit;          /* -1: unset */
    apr_interval_time_t before_timeout;   /* -1: unset (5s) */
    int before_concurrency;           /* -1: unset */
    /* this child's before-save calls under way (set in child_init, per
     * child; changed atomically) */
    volatile apr_uint32_t *before_running;
    int store_failure;                /* ET_STORE_FAILURE_*, 0: unset */
    int guard_idx;                    /* its counters (set in post_config) */
    int max_depth;                    /* -1: unset */
    /* et_expr_header_t; inherited with site.headers (headers_set) */
    apr_array_header_t *expr_headers;
    /* main server only */
    const char *store;                /* "sqlite3:/abs/path" */
    int workers;                      /* -1: unset */
    apr_interval_time_t poll;         /* -1: unset */
    apr_interval_time_t lease;        /* -1: unset */
    apr_interval_time_t keep_delivered;   /* -1: unset; 0: forever */
    apr_interval_time_t keep_dead;        /* -1: unset; 0: forever */
    server_rec *s;                    /* for messages */
    /* where directives checked as a whole were given ("FILE:LINE") */
    const char *timeout_where;
    const char *tls_verify_where;
    const char *store_where;
    const char *lease_where;
    apr_off_t reserve;                /* EventTriggerStoreReserve, 0: unset */
    const char *reserve_where;
    /* EventTriggerSpool: "sqlite3:/abs/path", "" for off, NULL: unset
     * (the default with a PostgreSQL outbox); NULL after et_check_config
     * when there is none */
    const char *spool;
    const char *spool_where;
} et_srv_conf_t;

/* EventTriggerStoreFailure */
#define ET_STORE_FAILURE_REFUSE 1
#define ET_STORE_FAILURE_ACCEPT 2

/* EventTriggerEvent: which event a mapped request makes. */
typedef enum {
    ET_EVMODE_UNSET = 0,
    ET_EVMODE_AUTO,                   /* by method: POST creates, ... */
    ET_EVMODE_CREATE,
    ET_EVMODE_UPDATE,
    ET_EVMODE_DELETE
} et_evmode_e;

/* Per directory/location. Built at configuration time, read-only after. */
typedef struct et_dir_conf_t {
    et_object_e object;
    int object_set;
    int jsonrpc;                      /* EventTrigger jsonrpc: object and
                                       * event from each call's method */
    const char *object_where;         /* "FILE:LINE" of EventTrigger */
    const char *id_field;             /* NULL: unset ("id"); a name or a
                                       * JSON pointer ("/...") */
    const char *id_fields[ET_OBJ_PACKAGE_KEY + 1];   /* OBJECT=NAME */
    const char *object_ptr;           /* EventTriggerObject; NULL: unset */
    et_evmode_e evmode;               /* EventTriggerEvent */
    int before_mask;                  /* EventTriggerBefore: 1 << event */
    int before_set;
    int before_failure;               /* 0: unset (refuse), ET_BF_* */
    apr_interval_time_t before_timeout;   /* 0: unset */
} et_dir_conf_t;

#define ET_BF_REFUSE 1
#define ET_BF_PROCEED 2
#define ET_BEFORE_TIMEOUT_DEFAULT apr_time_from_sec(5)
#define ET_BEFORE_TIMEOUT_MAX apr_time_from_sec(30)
#define ET_BEFORE_CONCURRENCY_DEFAULT 16

/* The location maps events (an object, or JSON-RPC calls). */
#define ET_DIR_MAPS(dc) \
    ((dc) && (dc)->object_set && ((dc)->object != ET_OBJ_NONE || (dc)->jsonrpc))

/*
 * Process-wide state. Written in post_config (parent) and child_init
 * (before the child's threads start), read-only afterwards; the reslist
 * does its own locking.
 */
typedef struct et_globals_t {
    server_rec *main_server;
    const char *store;                /* resolved outbox spec */
    const char *spool;                /* the local spool, or NULL */
    apr_file_t *wake_r, *wake_w;      /* wake the dispatcher */
    apr_reslist_t *outboxes;          /* this child's connections (reads) */
    apr_pool_t *child_pool;
    apr_global_mutex_t *lock;         /* one SQLite writer at a time */
    et_committer_t *committer;        /* this child's group commit */
    const char *intake_path;          /* the dispatcher's socket, or NULL */
    et_intake_client_t *intake;       /* this child's way to it */
} et_globals_t;

extern et_globals_t et_g;
extern const command_rec et_cmds[];

/* mod_eventtrigger_config.c */
void *et_create_srv_conf(apr_pool_t *p, server_rec *s);
void *et_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);
void *et_create_dir_conf(apr_pool_t *p, char *dir);
void *et_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
et_srv_conf_t *et_srv_conf(server_rec *s);
/** Fill in defaults and site names; check the whole configuration. */
int et_check_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s);
const et_site_t *et_site_lookup(void *baton, const char *name);

/* mod_eventtrigger_filter.c */
/** Non-zero if @a r (a main request to a mapped location, with a method
 *  that creates, updates or deletes) makes an event when answered with a
 *  2xx; then *dcp and *evp (each may be NULL) say how. */
int et_request_event(request_rec *r, const et_dir_conf_t **dcp,
                     et_event_e *evp);
void et_register_filter(void);
void et_insert_filter(request_rec *r);
void et_insert_error_filter(request_rec *r);
/** Give @a ev (made for @a r, of site @a sc) the request's trace context
 *  and the values of the site's expression headers. */
void et_event_context(request_rec *r, const et_srv_conf_t *sc,
                      et_event_t *ev);

/* mod_eventtrigger_before.c */
void et_before_register_hooks(void);

/* mod_eventtrigger_daemon.c */
int et_daemon_start(apr_pool_t *pconf, server_rec *s);

/* mod_eventtrigger_status.c */
int et_status_handler(request_rec *r);
void et_status_register_hooks(void);

/* mod_eventtrigger_guard.c: fail closed (see the file) */
const char *et_set_store_failure(cmd_parms *cmd, void *dc, const char *arg);
const char *et_set_store_reserve(cmd_parms *cmd, void *dc, const char *arg);
/** Shared memory and the reserve; after et_g.store is set. */
int et_guard_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s);
void et_guard_register_hooks(void);
/** Count @a r's event as lost (its store failed at the end). */
void et_guard_count_lost(request_rec *r);
/** Count a before-save decision (et_bs_kind_e) of @a r's site; @a took
 *  is the call's time, or -1 if no call was made. */
void et_guard_count_before(request_rec *r, int kind,
                           apr_interval_time_t took);
/** The outbox's state and the counts, for the status page (NULL: none). */
const struct et_guard_t *et_guard_shared(void);
/** The same, for the writers and the spool's forwarder. */
struct et_guard_t *et_guard_mem(void);
/** An SQLite outbox's room and reserve, for the dispatcher (NULL: none). */
const struct et_space_t *et_guard_space(void);

/* mod_eventtrigger.c */
/** One outbox connection of this child's pool of them (apr_reslist). */
typedef struct et_conn_t {
    et_outbox_t *ob;
    apr_pool_t *pool;                 /* the connection's own pool */
} et_conn_t;
/** Borrow a connection; give it back with et_conn_put. */
apr_status_t et_conn_get(et_conn_t **conn, request_rec *r);
/** Give it back; a connection that failed is closed instead of reused. */
void et_conn_put(et_conn_t *conn, int broken);
/** Tell the dispatcher that an event is waiting (never blocks). */
void et_wake_dispatcher(void);
/** When httpd starts as root, give @a path to its User (as mod_md does with
 *  its store); a missing file is an error only if @a must. */
apr_status_t et_give_to_user(apr_pool_t *p, const char *path, int must);

#endif /* MOD_EVENTTRIGGER_H */
