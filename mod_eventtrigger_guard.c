/* Licensed under the Apache License, Version 2.0. */
/*
 * Fail closed: before the console acts on a write request that would make
 * an event (et_request_event), make sure the outbox can store it; if not,
 * answer 503 with Retry-After and {"error": ..., "txn": null} ourselves.
 *
 * A handler at APR_HOOK_REALLY_FIRST: it runs after access control (a
 * client that may not write still gets its 401/403), and before any
 * handler that would act - mod_proxy's, or a console in this process -
 * which then never sees the request. Reads and unmapped locations cost
 * the predicate alone.
 *
 * The outbox's state is shared by every process (et_guard.h, in anonymous
 * shared memory made by the parent) and checked again at most every
 * ET_GUARD_TTL_SQLITE / ET_GUARD_TTL_PGSQL by whichever request first
 * finds it older, or at once after a store failed: statvfs and a stat of
 * the reserve for SQLite, one query on this child's own connection for
 * PostgreSQL. No request waits for the database but that one.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include <apr_strings.h>
#include <apr_shm.h>
#include <apr_thread_mutex.h>

#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "mod_eventtrigger.h"
#include "et_guard.h"

#define ET_GUARD_TTL_SQLITE  apr_time_from_msec(100)
#define ET_GUARD_TTL_PGSQL   apr_time_from_msec(250)
#define ET_GUARD_RETRY_AFTER "5"
#define ET_RESERVE_DEFAULT   (8 * 1024 * 1024)

/* Written in post_config (parent) and child_init, read-only afterwards;
 * the shared state does its own (atomic) synchronisation. */
static struct {
    apr_shm_t *shm;
    et_guard_t *g;
    et_space_t *space;                /* SQLite: the outbox's room */
    apr_interval_time_t ttl;
    /* PostgreSQL: this child's connection for the check, used by one
     * thread at a time (chk_mutex) */
    apr_thread_mutex_t *chk_mutex;
    apr_pool_t *chk_pool;
    et_outbox_t *chk_ob;
} gd;

static const char *size_arg(const char *arg, apr_off_t min,
                            apr_off_t max, apr_off_t *v)
{
    char *end;

    if (apr_strtoff(v, arg, &end, 10) != APR_SUCCESS || *v < 0) {
        return "bad";
    }
    if (*end == 'K' || *end == 'k') {
        *v *= 1024;
        ++end;
    }
    else if (*end == 'M' || *end == 'm') {
        *v *= 1024 * 1024;
        ++end;
    }
    else if (*end == 'G' || *end == 'g') {
        *v *= 1024 * 1024 * 1024;
        ++end;
    }
    return *end || *v < min || *v > max ? "bad" : NULL;
}

const char *et_set_store_failure(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);

    if (!strcasecmp(arg, "refuse")) {
        c->store_failure = ET_STORE_FAILURE_REFUSE;
    }
    else if (!strcasecmp(arg, "accept")) {
        c->store_failure = ET_STORE_FAILURE_ACCEPT;
    }
    else {
        return apr_psprintf(cmd->pool, "%s: '%s' is neither refuse nor "
                            "accept", cmd->cmd->name, arg);
    }
    return NULL;
}

const char *et_set_store_reserve(cmd_parms *cmd, void *dc, const char *arg)
{
    et_srv_conf_t *c = et_srv_conf(cmd->server);
    apr_off_t v;

    if (cmd->server->is_virtual) {
        return apr_psprintf(cmd->pool, "%s is only allowed in the main "
                            "server configuration, not in <VirtualHost>",
                            cmd->cmd->name);
    }
    if (size_arg(arg, 64 * 1024, (apr_off_t)64 * 1024 * 1024 * 1024,
                 &v)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a size between 64K "
                            "and 64G (bytes, or with K, M or G)",
                            cmd->cmd->name, arg);
    }
    c->reserve = v;
    c->reserve_where = apr_psprintf(cmd->pool, "%s:%d",
                                    cmd->directive->filename,
                                    cmd->directive->line_num);
    return NULL;
}

static apr_status_t shm_cleanup(void *data)
{
    gd.g = NULL;
    gd.shm = NULL;
    return APR_SUCCESS;
}

int et_guard_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    et_srv_conf_t *mc = et_srv_conf(s);
    server_rec *vs;
    apr_status_t rv;
    int n = 0;

    memset(&gd, 0, sizeof(gd));
    for (vs = s; vs; vs = vs->next) {
        et_srv_conf(vs)->guard_idx = n++;
    }
    /* anonymous: inherited across the fork by the children and the
     * dispatcher, gone with the generation (a restart counts from 0) */
    rv = apr_shm_create(&gd.shm, et_guard_size(n), NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     "ET00090: cannot create the shared memory of the "
                     "outbox check (%" APR_SIZE_T_FMT " bytes)",
                     et_guard_size(n));
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    gd.g = et_guard_init(apr_shm_baseaddr_get(gd.shm), n, apr_time_now());
    apr_pool_cleanup_register(pconf, NULL, shm_cleanup,
                              apr_pool_cleanup_null);

    gd.space = et_space_of(pconf, et_g.store,
                           mc->reserve > 0 ? mc->reserve : ET_RESERVE_DEFAULT);
    if (!gd.space) {
        gd.ttl = ET_GUARD_TTL_PGSQL;
        if (mc->reserve_where) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "ET00091: %s: EventTriggerStoreReserve applies to "
                         "an SQLite outbox only; a PostgreSQL outbox keeps "
                         "no reserve (the database's connection is "
                         "checked instead)", mc->reserve_where);
        }
        return OK;
    }
    gd.ttl = ET_GUARD_TTL_SQLITE;
    rv = et_reserve_hold(gd.space->reserve_path, gd.space->reserve);
    if (rv == APR_SUCCESS) {
        rv = et_give_to_user(ptemp, gd.space->reserve_path, 1);
    }
    if (rv != APR_SUCCESS) {
        /* not fatal: the check holds it once there is room, and refuses
         * write requests until then */
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                     "ET00092: cannot hold the outbox's reserve %s (%"
                     APR_OFF_T_FMT " bytes, EventTriggerStoreReserve); "
                     "write requests are refused until it can be held",
                     gd.space->reserve_path, gd.space->reserve);
        et_give_to_user(ptemp, gd.space->reserve_path, 0);
    }
    return OK;
}

static void guard_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (!gd.g || gd.space) {
        return;
    }
    apr_pool_create(&gd.chk_pool, pchild);
    apr_pool_tag(gd.chk_pool, "et_guard");
    apr_thread_mutex_create(&gd.chk_mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
}

/* SQLite: room on the filesystem and the reserve. */
static et_ob_state_e check_sqlite(apr_off_t *avail, apr_off_t *held_bytes)
{
    int held;
    et_ob_state_e st = et_space_check(gd.space, avail, &held);

    *held_bytes = held ? gd.space->reserve : 0;
    return st;
}

/* PostgreSQL: this child's connection answers and may write; a new one if
 * it does not. *err: why not (no conninfo in it). */
static et_ob_state_e check_pgsql(const char **err, apr_pool_t *p)
{
    apr_status_t rv;
    int attempt;

    if (!gd.chk_mutex) {
        *err = "this child has no check connection";
        return ET_OB_DOWN;
    }
    apr_thread_mutex_lock(gd.chk_mutex);
    for (attempt = 0; attempt < 2; attempt++) {
        if (!gd.chk_ob) {
            const char *oerr = NULL;

            apr_pool_clear(gd.chk_pool);
            rv = et_outbox_open(&gd.chk_ob, gd.chk_pool, et_g.store, 0,
                                &oerr);
            if (rv != APR_SUCCESS) {
                *err = apr_pstrdup(p, oerr ? oerr : "cannot connect");
                gd.chk_ob = NULL;
                apr_thread_mutex_unlock(gd.chk_mutex);
                return ET_OB_DOWN;
            }
        }
        rv = et_outbox_writable(gd.chk_ob);
        if (rv == APR_SUCCESS || APR_STATUS_IS_EACCES(rv)) {
            *err = rv == APR_SUCCESS ? NULL
                                     : apr_pstrdup(p, et_outbox_error(
                                                          gd.chk_ob));
            apr_thread_mutex_unlock(gd.chk_mutex);
            return rv == APR_SUCCESS ? ET_OB_WRITABLE : ET_OB_READONLY;
        }
        /* the session is gone (a restart): once more on a new one */
        *err = apr_pstrdup(p, et_outbox_error(gd.chk_ob));
        et_outbox_close(gd.chk_ob);
        gd.chk_ob = NULL;
    }
    apr_thread_mutex_unlock(gd.chk_mutex);
    return ET_OB_DOWN;
}

static const char *bytes_text(apr_pool_t *p, apr_off_t b)
{
    if (b < 0) {
        return "?";
    }
    if (b >= 10 * 1024 * 1024) {
        return apr_psprintf(p, "%" APR_OFF_T_FMT "M", b / (1024 * 1024));
    }
    return apr_psprintf(p, "%" APR_OFF_T_FMT "K", b / 1024);
}

static et_ob_state_e outbox_state(request_rec *r)
{
    apr_time_t now = apr_time_now();
    apr_off_t avail = -1, held = -1;
    const char *err = NULL;
    et_guard_change_e ch;
    et_ob_state_e st;

    if (!et_guard_due(gd.g, now, gd.ttl)) {
        return et_guard_state(gd.g);
    }
    st = gd.space ? check_sqlite(&avail, &held)
                  : check_pgsql(&err, r->pool);
    ch = et_guard_record(gd.g, apr_time_now(), st, avail, held);
    if (ch == ET_GUARD_REFUSING) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, et_g.main_server,
                     "ET00093: %s (%s%s%s%s); write requests that would "
                     "make an event are refused with 503 before the "
                     "console, in the sites with EventTriggerStoreFailure "
                     "refuse, until it can",
                     et_ob_state_reason(st),
                     gd.space ? bytes_text(r->pool, avail) : "",
                     gd.space ? " free, reserve " : "",
                     gd.space
                     ? apr_pstrcat(r->pool,
                                   held > 0 ? "held: " : "not held: ",
                                   bytes_text(r->pool, gd.space->reserve),
                                   NULL)
                     : "",
                     err ? err : "");
    }
    else if (ch == ET_GUARD_RECOVERED) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, et_g.main_server,
                     "ET00094: the outbox is writable again%s%s; write "
                     "requests are admitted",
                     gd.space ? ", free: " : "",
                     gd.space ? bytes_text(r->pool, avail) : "");
    }
    return st;
}

static int refuse(request_rec *r, et_ob_state_e st, const et_srv_conf_t *sc)
{
    apr_uint32_t count = 0;
    json_t *body;
    char *text;

    if (et_guard_refused(gd.g, sc->guard_idx, apr_time_now(), &count)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "ET00095: refused %u write request(s) with 503 since "
                      "the last line (this one: %s %s, site %s): %s; the "
                      "console did not see them", count, r->method,
                      ap_escape_logitem(r->pool, r->uri),
                      sc->site.name, et_ob_state_reason(st));
    }
    body = json_object();
    json_object_set_new(body, "error",
                        json_string(apr_pstrcat(r->pool,
                                                et_ob_state_reason(st),
                                                ": the change's event could "
                                                "not be stored, so the "
                                                "change was not made; try "
                                                "again later", NULL)));
    json_object_set_new(body, "txn", json_null());
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    r->status = HTTP_SERVICE_UNAVAILABLE;
    apr_table_setn(r->err_headers_out, "Retry-After", ET_GUARD_RETRY_AFTER);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "application/json");
    if (text) {
        ap_set_content_length(r, strlen(text) + 1);
        if (!r->header_only) {
            ap_rvputs(r, text, "\n", NULL);
        }
        free(text);
    }
    /* the body the client sent is read and thrown away by httpd as the
     * request ends */
    return OK;
}

static int guard_handler(request_rec *r)
{
    const et_srv_conf_t *sc;
    et_ob_state_e st;

    if (!gd.g || !et_request_event(r, NULL, NULL)) {
        return DECLINED;
    }
    sc = et_srv_conf(r->server);
    if (!sc->site.endpoint) {
        return DECLINED;              /* no event is made for it anyway */
    }
    /* Events wait in the local spool (PostgreSQL): what is captured now
     * would go behind them anyway (et_writer_spool); refused until the
     * dispatcher has forwarded them, so that the spool stays small. */
    st = et_guard_spool_count(gd.g) ? ET_OB_SPOOLED : outbox_state(r);
    if (st == ET_OB_WRITABLE || st == ET_OB_UNKNOWN
        || sc->store_failure == ET_STORE_FAILURE_ACCEPT) {
        return DECLINED;
    }
    return refuse(r, st, sc);
}

void et_guard_count_lost(request_rec *r)
{
    if (gd.g) {
        et_guard_lost(gd.g, et_srv_conf(r->server)->guard_idx);
    }
}

void et_guard_count_before(request_rec *r, int kind,
                           apr_interval_time_t took)
{
    if (gd.g) {
        et_guard_before(gd.g, et_srv_conf(r->server)->guard_idx,
                        (et_bs_kind_e)kind, took);
    }
}

const et_guard_t *et_guard_shared(void)
{
    return gd.g;
}

et_guard_t *et_guard_mem(void)
{
    return gd.g;
}

const et_space_t *et_guard_space(void)
{
    return gd.space;
}

void et_guard_register_hooks(void)
{
    ap_hook_child_init(guard_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(guard_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
}
