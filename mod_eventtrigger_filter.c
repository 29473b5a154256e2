/* Licensed under the Apache License, Version 2.0. */
/*
 * Capture: an output filter at AP_FTYPE_RESOURCE (so it sees the body
 * before mod_deflate) that keeps a bounded copy of the console's answer,
 * passes every brigade on unchanged, and at EOS - for a final 2xx answer
 * of a main request - commits the event to the outbox before the EOS goes
 * on. It never touches the network.
 *
 * The filter context and the copy live in r->pool: nothing of the request
 * outlives it (the outbox holds its own copy once committed).
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "ap_mpm.h"

#include <apr_strings.h>
#include <apr_atomic.h>

#include "mod_eventtrigger.h"
#include "et_capture.h"

#define ET_MAX_ID_LEN 256

typedef struct et_filter_ctx_t {
    const et_dir_conf_t *dc;
    const et_srv_conf_t *sc;
    et_event_e event;
    char *buf;                        /* the copy, at most capture_limit */
    apr_size_t len;
    apr_size_t cap;
    apr_off_t total;                  /* every body byte seen */
    const char *content_encoding;     /* as the handler set it */
    const char *accept_encoding;      /* the client's, held back */
    apr_bucket_brigade *held;         /* the last byte passed so far */
    int seen_first;
    int incomplete;
    int canned;                       /* the answer is httpd's own page */
    const char *location;             /* the handler's, if it was */
    int done;
} et_filter_ctx_t;

static int add_value(void *rec, const char *key, const char *value)
{
    *(const char **)apr_array_push(rec) = value;
    return 1;
}

/* Every line of a list header @a name of the request, as one value (NULL
 * if none): apr_table_get would keep only the first of several. */
static const char *header_list(request_rec *r, const char *name)
{
    apr_array_header_t *v = apr_array_make(r->pool, 1, sizeof(const char *));

    apr_table_do(add_value, v, r->headers_in, name, NULL);
    if (!v->nelts) {
        return NULL;
    }
    return v->nelts == 1 ? APR_ARRAY_IDX(v, 0, const char *)
                         : apr_array_pstrcat(r->pool, v, ',');
}

int et_request_event(request_rec *r, const et_dir_conf_t **dcp,
                     et_event_e *evp)
{
    const et_dir_conf_t *dc;
    et_event_e ev;

    if (r->main) {
        return 0;                     /* subrequests are never events */
    }
    dc = ap_get_module_config(r->per_dir_config, &eventtrigger_module);
    if (!dc || !dc->object_set || dc->object == ET_OBJ_NONE) {
        return 0;
    }
    switch (r->method_number) {
    case M_POST:
        ev = ET_EV_CREATE;
        break;
    case M_PUT:
    case M_PATCH:
        ev = ET_EV_UPDATE;
        break;
    case M_DELETE:
        ev = ET_EV_DELETE;
        break;
    default:
        return 0;
    }
    if (r->header_only) {
        return 0;
    }
    if (dcp) {
        *dcp = dc;
    }
    if (evp) {
        *evp = ev;
    }
    return 1;
}

void et_insert_filter(request_rec *r)
{
    const et_dir_conf_t *dc;
    const et_srv_conf_t *sc;
    et_filter_ctx_t *ctx;
    et_event_e ev;

    if (!et_request_event(r, &dc, &ev)) {
        return;
    }
    sc = et_srv_conf(r->server);
    if (!sc->site.endpoint) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                      "ET00030: site %s has no EventTriggerEndpoint; "
                      "nothing is captured", sc->site.name);
        return;
    }
    ctx = apr_pcalloc(r->pool, sizeof(*ctx));
    ctx->dc = dc;
    ctx->sc = sc;
    ctx->event = ev;
    /* A console (or its proxy) would compress for a browser, and a gzip
     * copy cannot be read. Ask the handler for identity; the client's
     * Accept-Encoding is put back before mod_deflate, which runs after
     * this filter, looks at it. */
    ctx->accept_encoding = header_list(r, "Accept-Encoding");
    if (ctx->accept_encoding) {
        apr_table_unset(r->headers_in, "Accept-Encoding");
    }
    /* for et_insert_error_filter */
    ap_set_module_config(r->request_config, &eventtrigger_module, ctx);
    ap_add_output_filter(ET_FILTER_NAME, ctx, r, r->connection);
}

/*
 * A handler that returns its status ("return HTTP_NO_CONTENT;", as
 * mod_dav's DELETE does) instead of setting r->status and returning OK has
 * the answer sent by ap_send_error_response(), which drops every resource
 * filter, this one too: a 2xx answered that way would make no event, and
 * nothing would say so. Put the filter back for a 2xx. What the handler
 * may have passed before is gone: the answer starts over, and its body is
 * httpd's page, not the console's object, so the event is made as for an
 * answer without a body (the path, or a create's Location, names the
 * object).
 */
void et_insert_error_filter(request_rec *r)
{
    et_filter_ctx_t *ctx = ap_get_module_config(r->request_config,
                                                &eventtrigger_module);

    if (!ctx || ctx->done) {
        return;
    }
    if (ctx->accept_encoding) {
        apr_table_setn(r->headers_in, "Accept-Encoding", ctx->accept_encoding);
        ctx->accept_encoding = NULL;
    }
    if (!ap_is_HTTP_SUCCESS(r->status)) {
        ctx->done = 1;
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                      "ET00037: status %d (the handler's own) is no event",
                      r->status);
        return;
    }
    ctx->canned = 1;
    /* before ap_send_error_response clears headers_out (it keeps the
     * Location of a 201 and a 3xx only) */
    ctx->location = apr_table_get(r->headers_out, "Location");
    ctx->seen_first = 1;              /* httpd's page has no coding of its own */
    ctx->content_encoding = NULL;
    ctx->len = 0;
    ctx->total = 0;
    ctx->incomplete = 0;
    if (ctx->held) {
        apr_brigade_cleanup(ctx->held);
    }
    ap_add_output_filter(ET_FILTER_NAME, ctx, r, r->connection);
}

static void keep_bytes(et_filter_ctx_t *ctx, apr_pool_t *p, const char *data,
                       apr_size_t len)
{
    apr_size_t limit = (apr_size_t)ctx->sc->capture_limit;

    ctx->total += len;
    if (ctx->total > (apr_off_t)limit) {
        return;                       /* over the limit: only count */
    }
    if (ctx->len + len > ctx->cap) {
        apr_size_t ncap = ctx->cap ? ctx->cap : 8192;
        char *nbuf;

        while (ncap < ctx->len + len) {
            ncap *= 2;
        }
        if (ncap > limit) {
            ncap = limit;
        }
        /* doubling keeps the copying linear; the old buffer goes with the
         * request pool */
        nbuf = apr_palloc(p, ncap + 1);
        if (ctx->len) {
            memcpy(nbuf, ctx->buf, ctx->len);
        }
        ctx->buf = nbuf;
        ctx->cap = ncap;
    }
    memcpy(ctx->buf + ctx->len, data, len);
    ctx->len += len;
}

/* Declared length vs. what came through: a console that closed early. */
static int short_body(request_rec *r, const et_filter_ctx_t *ctx)
{
    const char *cl = apr_table_get(r->headers_out, "Content-Length");
    apr_off_t want;
    char *end;

    if (!cl || apr_strtoff(&want, cl, &end, 10) != APR_SUCCESS || *end) {
        return 0;
    }
    return want != ctx->total;
}

/* When a child last said it stores events itself (apr_time_sec): once a
 * minute at most, at warn; the other times at debug. */
static apr_uint32_t intake_warned;

/* Hand @a ev to the dispatcher's intake, which commits every child's
 * events in one group. Non-zero once it is durable; zero if the caller
 * must store it itself (no intake, or no "stored" in time: a second copy
 * is harmless, the outbox keeps a txn once). */
static int store_via_intake(request_rec *r, et_event_t *ev)
{
    const char *err = NULL;
    apr_uint32_t now, last;
    apr_status_t rv;
    int level = APLOG_DEBUG, state = 0;

    if (!et_g.intake) {
        return 0;
    }
    rv = et_intake_store(et_g.intake, ev, r->pool, &err);
    if (rv == APR_SUCCESS) {
        return 1;
    }
    /* A child of a generation that a graceful restart ended has lost its
     * dispatcher on purpose: that is no news. */
    now = (apr_uint32_t)apr_time_sec(apr_time_now());
    last = apr_atomic_read32(&intake_warned);
    if ((ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS
         || state != AP_MPMQ_STOPPING)
        && now - last >= 60
        && apr_atomic_cas32(&intake_warned, now, last) == last) {
        level = APLOG_WARNING;
    }
    ap_log_rerror(APLOG_MARK, level, 0, r,
                  "ET01026: the dispatcher did not store txn=%s: %s; this "
                  "child stores it itself%s", ev->txn,
                  err ? err : "unknown error",
                  level == APLOG_WARNING ? " (said at warn once a minute)"
                                         : "");
    return 0;
}

static void commit_event(request_rec *r, et_filter_ctx_t *ctx)
{
    et_capture_t cap;
    et_event_t *ev = NULL;
    const char *err = NULL;
    apr_status_t rv;
    int via_intake;

    memset(&cap, 0, sizeof(cap));
    cap.site = &ctx->sc->site;
    cap.object = ctx->dc->object;
    cap.event = ctx->event;
    cap.id_field = ctx->dc->id_field ? ctx->dc->id_field : "id";
    cap.uri_path = r->uri;
    cap.location = ctx->canned ? ctx->location
                               : apr_table_get(r->headers_out, "Location");
    cap.body = ctx->buf ? ctx->buf : "";
    cap.body_len = ctx->len;
    cap.body_total = ctx->total;
    cap.limit = (apr_size_t)ctx->sc->capture_limit;
    cap.max_depth = ctx->sc->max_depth;
    cap.max_id_len = ET_MAX_ID_LEN;
    cap.content_encoding = ctx->content_encoding;
    /* httpd's own page has the length it says, and is not the object */
    cap.incomplete = ctx->incomplete || (!ctx->canned && short_body(r, ctx));

    rv = et_capture_to_event(r->pool, &cap, &ev);
    if (rv != APR_SUCCESS || !ev) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "ET00031: cannot make an event for this %s %s "
                      "(no transaction id could be generated); NOT recorded",
                      et_object_name(cap.object), et_event_name(cap.event));
        return;
    }

    via_intake = store_via_intake(r, ev);
    if (via_intake) {
        rv = APR_SUCCESS;
    }
    else if (!et_g.committer) {
        rv = APR_EINIT;
        err = "this child has no outbox (see its startup errors)";
    }
    else {
        rv = et_committer_store(et_g.committer, ev, r->pool, &err);
    }
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "ET00032: cannot store txn=%s (site=%s object=%s "
                      "event=%s id=%s) in the outbox: %s; it is NOT "
                      "queued", ev->txn, ev->site,
                      et_object_name(ev->object), et_event_name(ev->event),
                      ev->oid, err ? err : "unknown error");
        et_guard_count_lost(r);
    }
    if (rv != APR_SUCCESS) {
        return;
    }

    /* for CustomLog "%{eventtrigger-txn}n" next to the admin's request */
    apr_table_setn(r->notes, "eventtrigger-txn", ev->txn);
    if (ev->state == ET_ST_FAILED) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "ET00034: %s %s not sent: %s (txn=%s, recorded as "
                      "failed)", et_object_name(cap.object),
                      et_event_name(cap.event), ev->error, ev->txn);
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "ET00035: queued txn=%s site=%s object=%s event=%s "
                      "id=%s", ev->txn, ev->site, et_object_name(ev->object),
                      et_event_name(ev->event), ev->oid);
        if (!via_intake) {
            /* the intake wakes it itself, once per commit */
            et_wake_dispatcher();
        }
    }
}

static apr_status_t pass_holding_last_byte(ap_filter_t *f,
                                           et_filter_ctx_t *ctx,
                                           apr_bucket_brigade *bb);

static apr_status_t et_out_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    et_filter_ctx_t *ctx = f->ctx;
    apr_bucket *e;

    if (!ctx || ctx->done) {
        return ap_pass_brigade(f->next, bb);
    }
    if (!ctx->seen_first) {
        /* before anything passes on: later, mod_deflate may set its own */
        const char *ce = apr_table_get(r->headers_out, "Content-Encoding");
        ctx->seen_first = 1;
        if (ce && strcasecmp(ce, "identity")) {
            ctx->content_encoding = apr_pstrdup(r->pool, ce);
        }
        if (ctx->accept_encoding) {
            apr_table_setn(r->headers_in, "Accept-Encoding",
                           ctx->accept_encoding);
        }
    }

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;
        apr_status_t rv;

        if (APR_BUCKET_IS_EOS(e)) {
            ctx->done = 1;
            if (ap_is_HTTP_SUCCESS(r->status)) {
                commit_event(r, ctx);
            }
            else {
                ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                              "ET00036: status %d is no event", r->status);
            }
            break;
        }
        if (AP_BUCKET_IS_ERROR(e)) {
            ctx->incomplete = 1;
            continue;
        }
        if (APR_BUCKET_IS_METADATA(e)) {
            continue;
        }
        /* Reading morphs file and pipe buckets in place, as mod_deflate's
         * reads do; the data still passes on unchanged. */
        if (ctx->canned) {
            continue;                 /* httpd's page: not the object */
        }
        rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
        if (rv != APR_SUCCESS) {
            ctx->incomplete = 1;
            return rv;
        }
        keep_bytes(ctx, r->pool, data, len);
    }
    return pass_holding_last_byte(f, ctx, bb);
}

/*
 * Pass @a bb on, but keep its last data byte back until the EOS: a client
 * that counts Content-Length would otherwise have the whole answer before
 * the event is committed, and "stored before the response ends" would
 * not hold for an answer larger than what httpd buffers. One byte, set
 * aside in r->pool, is all it costs.
 */
static apr_status_t pass_holding_last_byte(ap_filter_t *f,
                                           et_filter_ctx_t *ctx,
                                           apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    apr_bucket *e, *last = NULL;
    apr_status_t rv;

    if (!ctx->held) {
        ctx->held = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    }
    /* what was held goes first: it came before this brigade's data */
    APR_BRIGADE_PREPEND(bb, ctx->held);
    if (ctx->done) {
        return ap_pass_brigade(f->next, bb);
    }
    for (e = APR_BRIGADE_LAST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_PREV(e)) {
        if (!APR_BUCKET_IS_METADATA(e) && e->length > 0) {
            last = e;
            break;
        }
    }
    if (last) {
        if (last->length > 1) {
            apr_bucket_split(last, last->length - 1);
            last = APR_BUCKET_NEXT(last);
        }
        APR_BUCKET_REMOVE(last);
        rv = apr_bucket_setaside(last, r->pool);
        if (rv != APR_SUCCESS && rv != APR_ENOTIMPL) {
            APR_BRIGADE_INSERT_TAIL(bb, last);     /* pass it, then */
        }
        else {
            APR_BRIGADE_INSERT_TAIL(ctx->held, last);
        }
    }
    if (APR_BRIGADE_EMPTY(bb)) {
        return APR_SUCCESS;
    }
    return ap_pass_brigade(f->next, bb);
}

void et_register_filter(void)
{
    ap_register_output_filter(ET_FILTER_NAME, et_out_filter, NULL,
                              AP_FTYPE_RESOURCE);
}
