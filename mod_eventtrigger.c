/* Licensed under the Apache License, Version 2.0. */
/*
 * mod_eventtrigger: after an admin console answers a create, update or
 * delete of a Member, Application, Key or Package Key with success, send
 * the saved object to the customer's Event Trigger endpoint - durably, in
 * the background.
 *
 * This file: the module record, the hooks, the outbox file's setup in the
 * parent and each child's pool of outbox connections.
 */

#define ET_MODULE_MAIN
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "util_mutex.h"

#include <apr_strings.h>
#include <apr_file_info.h>

#include <sys/un.h>

#if APR_HAVE_UNISTD_H
#include <unistd.h>
#endif

#include "mod_eventtrigger.h"
#include "et_guard.h"

#include "unixd.h"

et_globals_t et_g;

static int et_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                         apr_pool_t *ptemp)
{
    /* "Mutex <mechanism> eventtrigger-outbox" chooses its kind */
    return ap_mutex_register(pconf, ET_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0)
           == APR_SUCCESS ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static int et_check_config_hook(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp, server_rec *s)
{
    return et_check_config(pconf, ptemp, s);
}

/* Files the children (httpd's User) must write: when started as root,
 * hand them over, as mod_md does with its store. */
apr_status_t et_give_to_user(apr_pool_t *p, const char *path, int must)
{
    if (geteuid() != 0) {
        return APR_SUCCESS;
    }
    if (chown(path, ap_unixd_config.user_id, ap_unixd_config.group_id) < 0) {
        apr_status_t rv = errno;
        return (!must && APR_STATUS_IS_ENOENT(rv)) ? APR_SUCCESS : rv;
    }
    return APR_SUCCESS;
}

/* Can httpd's User write in the directory @a fi describes? (By its
 * owner, group or others bits; supplementary groups are not looked at.) */
static int user_may_write(const apr_finfo_t *fi)
{
    apr_fileperms_t w = APR_FPROT_WWRITE, x = APR_FPROT_WEXECUTE;

    if (fi->user == ap_unixd_config.user_id) {
        w = APR_FPROT_UWRITE;
        x = APR_FPROT_UEXECUTE;
    }
    else if (fi->group == ap_unixd_config.group_id) {
        w = APR_FPROT_GWRITE;
        x = APR_FPROT_GEXECUTE;
    }
    return (fi->protection & w) && (fi->protection & x);
}

/* The outbox's directory @a dir (no trailing slash). The levels that are
 * missing are made (0750) and given to httpd's User, as mod_md does with
 * its store; a level that was there stays whose it is: chowning it would
 * give away /var/lib, or ServerRoot for a relative EventTriggerStore. */
static apr_status_t make_store_dir(apr_pool_t *p, const char *dir)
{
    apr_finfo_t fi;
    apr_status_t rv;
    char *up, *slash;

    rv = apr_stat(&fi, dir, APR_FINFO_TYPE, p);
    if (rv == APR_SUCCESS) {
        return fi.filetype == APR_DIR ? APR_SUCCESS : APR_ENOTDIR;
    }
    if (!APR_STATUS_IS_ENOENT(rv)) {
        return rv;
    }
    up = apr_pstrdup(p, dir);
    slash = strrchr(up, '/');
    if (slash && slash != up) {
        *slash = '\0';
        if ((rv = make_store_dir(p, up)) != APR_SUCCESS) {
            return rv;
        }
    }
    rv = apr_dir_make(dir, APR_FPROT_UREAD | APR_FPROT_UWRITE
                      | APR_FPROT_UEXECUTE | APR_FPROT_GREAD
                      | APR_FPROT_GEXECUTE, p);
    if (rv == APR_SUCCESS) {
        return et_give_to_user(p, dir, 1);
    }
    return APR_STATUS_IS_EEXIST(rv) ? APR_SUCCESS : rv;
}

/*
 * The directory of the SQLite file @a file (*dir), made if missing (*made
 * 0 if it could not be: the error is returned). Then APR_SUCCESS, or,
 * when httpd starts as root, an error if httpd's User may not write in
 * it (the module gives away only the directories it makes).
 */
static apr_status_t ready_dir(apr_pool_t *p, const char *file,
                              const char **dir, int *made)
{
    char *d = ap_make_dirstr_parent(p, file);
    apr_size_t n = strlen(d);
    apr_finfo_t fi;
    apr_status_t rv;

    if (n > 1 && d[n - 1] == '/') {
        d[n - 1] = '\0';
    }
    *dir = d;
    rv = make_store_dir(p, d);
    *made = rv == APR_SUCCESS;
    if (!*made || geteuid() != 0) {
        return rv;
    }
    rv = apr_stat(&fi, d, APR_FINFO_USER | APR_FINFO_GROUP | APR_FINFO_PROT,
                  p);
    return rv != APR_SUCCESS ? rv : user_may_write(&fi) ? APR_SUCCESS
                                                        : APR_EACCES;
}

/*
 * A SQLite file the parent made (the outbox, the spool) and its WAL and
 * shared-memory files, given to httpd's User and kept from other users:
 * they hold customer data.
 */
static apr_status_t give_sqlite_file(apr_pool_t *p, const char *file)
{
    apr_status_t rv;

    apr_file_perms_set(file, APR_FPROT_UREAD | APR_FPROT_UWRITE
                       | APR_FPROT_GREAD);
    if ((rv = et_give_to_user(p, file, 1)) != APR_SUCCESS
        || (rv = et_give_to_user(p, apr_pstrcat(p, file, "-wal", NULL), 0))
           != APR_SUCCESS) {
        return rv;
    }
    return et_give_to_user(p, apr_pstrcat(p, file, "-shm", NULL), 0);
}

static int prepare_outbox(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    et_outbox_t *ob;
    const char *err = NULL;
    const char *file = NULL;
    apr_status_t rv;

    if (!strncmp(et_g.store, "sqlite3:", 8)) {
        const char *dir;
        int made;

        file = et_g.store + 8;
        rv = ready_dir(ptemp, file, &dir, &made);
        if (!made) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                         "ET00001: cannot create the outbox directory %s "
                         "(EventTriggerStore)", dir);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                         "ET00002: the outbox directory %s is not one that "
                         "httpd's User (%s) may write in; make it theirs "
                         "(chown %s %s) or name a directory of its own in "
                         "EventTriggerStore: the module gives away only the "
                         "directories it makes", dir,
                         ap_unixd_config.user_name,
                         ap_unixd_config.user_name, dir);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rv = et_outbox_open(&ob, ptemp, et_g.store, 1, &err);
    if (rv != APR_SUCCESS && !file
        && ap_state_query(AP_SQ_CONFIG_GEN) > 1) {
        /* A restart (a logrotate's graceful) while the PostgreSQL server
         * is down must not stop a running httpd: the schema is there from
         * the first start, and the dispatcher (restarting every 10s) and
         * the children connect again once it answers. */
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "ET00017: EventTriggerStore: %s; httpd restarts "
                     "anyway, and events are stored once the database "
                     "answers", err ? err : "cannot open the outbox");
        return OK;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00003: EventTriggerStore: %s", err ? err : "cannot "
                     "open the outbox");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    et_outbox_close(ob);

    if (file) {
        if ((rv = give_sqlite_file(ptemp, file)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                         "ET00004: cannot give the outbox %s to httpd's "
                         "User", file);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/*
 * The local spool (EventTriggerSpool, a PostgreSQL outbox only): its
 * directory and schema made as the SQLite outbox's are, given to httpd's
 * User, and the events it still holds (from before a restart or a crash)
 * counted: write requests are refused until the dispatcher has forwarded
 * them (et_spool.h).
 */
static int prepare_spool(apr_pool_t *ptemp, server_rec *s)
{
    const char *file = et_g.spool + 8;
    et_outbox_t *ob;
    const char *err = NULL;
    apr_int64_t n = 0;
    apr_status_t rv;
    const char *dir;
    int made;

    rv = ready_dir(ptemp, file, &dir, &made);
    if (!made) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00109: cannot create the local spool's directory "
                     "%s (EventTriggerSpool)", dir);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00110: the local spool's directory %s is not one "
                     "that httpd's User (%s) may write in; make it theirs "
                     "(chown %s %s) or name another in EventTriggerSpool",
                     dir, ap_unixd_config.user_name,
                     ap_unixd_config.user_name, dir);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    rv = et_outbox_open(&ob, ptemp, et_g.spool, 1, &err);
    if (rv == APR_SUCCESS) {
        rv = et_outbox_total(ob, &n);
        if (rv != APR_SUCCESS) {
            err = apr_pstrdup(ptemp, et_outbox_error(ob));
        }
        et_outbox_close(ob);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00111: EventTriggerSpool %s: %s (or EventTriggerSpool "
                     "off: then an event that PostgreSQL cannot take at the "
                     "end of its request is lost)", file,
                     err ? err : "cannot open it");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((rv = give_sqlite_file(ptemp, file)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00112: cannot give the local spool %s to httpd's "
                     "User", file);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (n > 0) {
        et_guard_spool_set(et_guard_mem(), 0, (apr_uint32_t)n);
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "ET00113: the local spool %s holds %" APR_INT64_T_FMT
                     " event(s) the outbox has not taken yet; write requests "
                     "are refused until the dispatcher has forwarded them",
                     file, n);
    }
    return OK;
}

static int any_site_sends(server_rec *s)
{
    for (; s; s = s->next) {
        if (et_srv_conf(s)->site.endpoint) {
            return 1;
        }
    }
    return 0;
}

/* a cleanup of the pool being destroyed: nothing to allocate from */
static apr_status_t remove_intake_socket(void *path)
{
    unlink(path);
    return APR_SUCCESS;
}

/* The dispatcher's intake socket: one per generation (the parent's pid and
 * the generation in its name), so that a new dispatcher never takes over
 * the file the last one's children still hold, nor an exiting one removes
 * its successor's. The parent removes it when the generation ends. */
static void set_intake_path(apr_pool_t *pconf, server_rec *s)
{
    struct sockaddr_un su;
    int gen = ap_state_query(AP_SQ_CONFIG_GEN);
    const char *path = ap_runtime_dir_relative(
        pconf, apr_psprintf(pconf, "eventtrigger.%" APR_PID_T_FMT ".%d.sock",
                            getpid(), gen));

    if (!path || strlen(path) >= sizeof(su.sun_path)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "ET01033: the intake socket's path %s is longer than "
                     "a Unix socket allows (%d bytes); each child stores its "
                     "events itself (set a shorter DefaultRuntimeDir)",
                     path ? path : "(none)", (int)sizeof(su.sun_path) - 1);
        return;
    }
    et_g.intake_path = path;
    apr_pool_cleanup_register(pconf, (void *)path, remove_intake_socket,
                              apr_pool_cleanup_null);
}

static int et_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *s)
{
    apr_status_t rv;
    int status;

    /* The first pass only checks the configuration (as in mod_cgid). */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    memset(&et_g, 0, sizeof(et_g));
    et_g.main_server = s;
    if (!any_site_sends(s)) {
        /* no store either: the status page answers 503 without a word */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "ET00005: no site has an EventTriggerEndpoint; the "
                     "dispatcher is not started");
        return OK;
    }
    et_g.store = et_srv_conf(s)->store;
    if ((status = prepare_outbox(pconf, ptemp, s)) != OK) {
        return status;
    }
    /* SQLite lets one writer in at a time and makes the others sleep and
     * retry; httpd's own cross-process lock hands over without sleeping. */
    if (!strncmp(et_g.store, "sqlite3:", 8)) {
        rv = ap_global_mutex_create(&et_g.lock, NULL, ET_MUTEX_TYPE, NULL, s,
                                    pconf, 0);
        if (rv != APR_SUCCESS) {
            return HTTP_INTERNAL_SERVER_ERROR;    /* logged by httpd */
        }
    }
    if ((status = et_guard_post_config(pconf, ptemp, s)) != OK) {
        return status;
    }
    et_g.spool = et_srv_conf(s)->spool;
    if (et_g.spool && (status = prepare_spool(ptemp, s)) != OK) {
        return status;
    }
    set_intake_path(pconf, s);
    rv = apr_file_pipe_create_ex(&et_g.wake_r, &et_g.wake_w,
                                 APR_FULL_NONBLOCK, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00006: cannot create the dispatcher's wake-up pipe");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return et_daemon_start(pconf, s);
}

/* apr_reslist constructor: one outbox connection in its own pool. The
 * reslist's pool has a locked allocator, so threads may create these at
 * the same time. */
static apr_status_t conn_construct(void **res, void *params, apr_pool_t *pool)
{
    et_conn_t *conn;
    apr_pool_t *p;
    const char *err = NULL;
    apr_status_t rv;

    apr_pool_create(&p, pool);
    apr_pool_tag(p, "et_conn");
    conn = apr_pcalloc(p, sizeof(*conn));
    conn->pool = p;
    rv = et_outbox_open(&conn->ob, p, et_g.store, 0, &err);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, et_g.main_server,
                     "ET00007: cannot open the outbox: %s",
                     err ? err : "unknown error");
        apr_pool_destroy(p);
        return rv;
    }
    *res = conn;
    return APR_SUCCESS;
}

static apr_status_t conn_destruct(void *res, void *params, apr_pool_t *pool)
{
    et_conn_t *conn = res;

    apr_pool_destroy(conn->pool);
    return APR_SUCCESS;
}

/* Runs before the pool's subpools go: the connections' pools are subpools
 * of the reslist's pool and must be closed through the reslist first. */
static apr_status_t conns_destroy(void *data)
{
    if (et_g.outboxes) {
        apr_reslist_destroy(et_g.outboxes);
        et_g.outboxes = NULL;
    }
    return APR_SUCCESS;
}

/* The library's lines (et_log.h), tagged by their text. */
static void child_log(void *baton, int level, const char *msg)
{
    ap_log_error(APLOG_MARK, level, 0, (server_rec *)baton, "%s", msg);
}

static void et_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_allocator_t *alloc;
    apr_thread_mutex_t *mutex;
    apr_pool_t *p, *rp;
    apr_status_t rv;
    int threads = 1;

    if (!et_g.store || !et_g.wake_w) {
        return;
    }
    /* the read end is the dispatcher's */
    apr_file_close(et_g.wake_r);
    et_g.wake_r = NULL;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    if (threads < 1) {
        threads = 1;
    }
    apr_allocator_create(&alloc);
    apr_pool_create_ex(&p, pchild, NULL, alloc);
    apr_allocator_owner_set(alloc, p);
    apr_thread_mutex_create(&mutex, APR_THREAD_MUTEX_DEFAULT, p);
    apr_allocator_mutex_set(alloc, mutex);
    apr_pool_tag(p, "et_conns");
    et_g.child_pool = p;

    if (et_g.lock) {
        rv = apr_global_mutex_child_init(&et_g.lock,
                                         apr_global_mutex_lockfile(et_g.lock),
                                         pchild);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                         "ET00009: cannot attach the outbox lock; this child "
                         "records no events");
            return;
        }
    }
    rv = et_committer_create(&et_g.committer, p, et_g.store, et_g.lock,
                             threads);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "ET00016: cannot set up the group commit; this child "
                     "records no events");
        return;
    }
    et_committer_spool(et_g.committer, et_g.spool, et_guard_mem(),
                       child_log, s);

    /* Events go to the dispatcher's intake, the committer above being
     * the fallback; connections open on first use. */
    if (et_g.intake_path) {
        rv = et_intake_client_create(&et_g.intake, p, et_g.intake_path,
                                     threads, ET_INTAKE_WAIT);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                         "ET01034: cannot set up this child's way to the "
                         "dispatcher's intake; it stores its events itself");
            et_g.intake = NULL;
        }
    }

    /* Connections for reading (status page) open on first use, at most
     * one per thread; idle ones close after a minute. The reslist
     * allocates from its pool under its own lock only: a pool of its own,
     * which no other reslist allocates from. */
    apr_pool_create(&rp, p);
    apr_pool_tag(rp, "et_reader_conns");
    rv = apr_reslist_create(&et_g.outboxes, 0, threads, threads,
                            apr_time_from_sec(60), conn_construct,
                            conn_destruct, NULL, rp);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "ET00008: cannot create the outbox connection pool; "
                     "this child records no events");
        et_g.outboxes = NULL;
        return;
    }
    apr_reslist_timeout_set(et_g.outboxes, apr_time_from_sec(30));
    apr_pool_pre_cleanup_register(p, NULL, conns_destroy);
}

apr_status_t et_conn_get(et_conn_t **conn, request_rec *r)
{
    void *res = NULL;
    apr_status_t rv;

    *conn = NULL;
    if (!et_g.outboxes) {
        return APR_EINIT;
    }
    rv = apr_reslist_acquire(et_g.outboxes, &res);
    if (rv == APR_SUCCESS) {
        *conn = res;
    }
    return rv;
}

void et_conn_put(et_conn_t *conn, int broken)
{
    if (broken) {
        apr_reslist_invalidate(et_g.outboxes, conn);
    }
    else {
        apr_reslist_release(et_g.outboxes, conn);
    }
}

void et_wake_dispatcher(void)
{
    char c = 'e';
    apr_size_t n = 1;

    /* non-blocking: a full pipe means the dispatcher is already due to wake */
    if (et_g.wake_w) {
        apr_file_write(et_g.wake_w, &c, &n);
    }
}

static void et_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(et_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(et_check_config_hook, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(et_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(et_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_filter(et_insert_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(et_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    ap_hook_handler(et_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    et_register_filter();
    et_status_register_hooks();
    et_before_register_hooks();
    et_guard_register_hooks();
}

AP_DECLARE_MODULE(eventtrigger) = {
    STANDARD20_MODULE_STUFF,
    et_create_dir_conf,
    et_merge_dir_conf,
    et_create_srv_conf,
    et_merge_srv_conf,
    et_cmds,
    et_register_hooks
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    , AP_MODULE_FLAG_NONE
#endif
};
