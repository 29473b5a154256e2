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
#include <apr_lib.h>

#include "mod_eventtrigger.h"
#include "et_capture.h"
#include "et_jsonrpc.h"
#include "et_trace.h"

#define ET_MAX_ID_LEN 256
#define ET_IN_FILTER_NAME "EVENTTRIGGER_IN"

/* A bounded copy of a body, in r->pool. */
typedef struct et_copy_t {
    char *buf;                        /* at most capture_limit bytes */
    apr_size_t len;
    apr_size_t cap;
    apr_off_t total;                  /* every body byte seen */
} et_copy_t;

typedef struct et_filter_ctx_t {
    const et_dir_conf_t *dc;
    const et_srv_conf_t *sc;
    et_event_e event;
    et_copy_t out;                    /* the console's answer */
    et_copy_t in;                     /* a JSON-RPC request's body */
    int in_eos;                       /* all of the request body was read */
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
    if (!ET_DIR_MAPS(dc)) {
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
    if (dc->jsonrpc) {
        /* every call is POSTed; each call's method says what it is, and
         * the create here stands for "some event" until then */
        if (r->method_number != M_POST) {
            return 0;
        }
    }
    else if (dc->evmode == ET_EVMODE_CREATE) {
        ev = ET_EV_CREATE;
    }
    else if (dc->evmode == ET_EVMODE_UPDATE) {
        ev = ET_EV_UPDATE;
    }
    else if (dc->evmode == ET_EVMODE_DELETE) {
        ev = ET_EV_DELETE;
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
    if (dc->jsonrpc) {
        /* which calls are events is in the request body */
        ap_add_input_filter(ET_IN_FILTER_NAME, ctx, r, r->connection);
    }
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
    ctx->out.len = 0;
    ctx->out.total = 0;
    ctx->incomplete = 0;
    if (ctx->held) {
        apr_brigade_cleanup(ctx->held);
    }
    ap_add_output_filter(ET_FILTER_NAME, ctx, r, r->connection);
}

static void keep_bytes(et_copy_t *ctx, apr_size_t limit, apr_pool_t *p,
                       const char *data, apr_size_t len)
{
    if (len == 0) {
        return;                       /* an empty bucket (HTTP/2 has them) */
    }
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
static int short_body(request_rec *r, const et_copy_t *ctx)
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

/* A request's trace context, the same for each of its events. */
typedef struct et_trace_ctx_t {
    const char *traceparent;
    const char *tracestate;
} et_trace_ctx_t;

#define ET_TRACE_KEY "eventtrigger-trace"

/*
 * The admin's traceparent (and tracestate) if it is valid, else a trace
 * started for this request; made once per request (r->pool's user data),
 * so that a JSON-RPC batch's events are in one trace. The trace id is
 * also the note "eventtrigger-trace", for the access log.
 */
static const et_trace_ctx_t *request_trace(request_rec *r)
{
    et_trace_ctx_t *t = NULL;
    et_traceparent_t tp;
    const char *v;

    apr_pool_userdata_get((void **)&t, ET_TRACE_KEY, r->pool);
    if (t) {
        return t;
    }
    t = apr_pcalloc(r->pool, sizeof(*t));
    /* several traceparent lines are invalid: joined, they do not parse */
    v = header_list(r, "traceparent");
    if (v && et_traceparent_parse(v, &tp)) {
        /* as version 00 sends it: a later version's extra fields are not
         * ours to pass on */
        t->traceparent = apr_psprintf(r->pool, "00-%s-%s-%02x", tp.trace_id,
                                      tp.parent_id, tp.flags);
        t->tracestate = header_list(r, "tracestate");
        if (t->tracestate && !et_tracestate_ok(t->tracestate)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          "ET00121: the request's tracestate is longer than "
                          "%d characters or holds a control character; it "
                          "is not passed on", ET_TRACESTATE_MAX);
            t->tracestate = NULL;
        }
    }
    else {
        if (v) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          "ET00120: the request's traceparent '%s' is not "
                          "valid (W3C Trace Context); the event starts a "
                          "trace of its own", ap_escape_logitem(r->pool, v));
        }
        /* NULL (no random bytes): the dispatcher falls back to the txn */
        t->traceparent = et_traceparent_new(r->pool);
    }
    if (t->traceparent) {
        apr_table_setn(r->notes, ET_TRACE_KEY,
                       apr_pstrmemdup(r->pool, t->traceparent + 3, 32));
    }
    apr_pool_userdata_setn(t, ET_TRACE_KEY, NULL, r->pool);
    return t;
}

/* The site's EventTriggerHeader expr= values for @a r, as "Name: value"
 * lines, or NULL if none has one. */
static const char *expr_headers(request_rec *r, const et_srv_conf_t *sc)
{
    apr_array_header_t *lines;
    int i;

    if (!sc->expr_headers || !sc->expr_headers->nelts) {
        return NULL;
    }
    lines = apr_array_make(r->pool, sc->expr_headers->nelts,
                           sizeof(const char *));
    for (i = 0; i < sc->expr_headers->nelts; i++) {
        const et_expr_header_t *eh = &APR_ARRAY_IDX(sc->expr_headers, i,
                                                    et_expr_header_t);
        const char *err = NULL, *v, *c;

        v = ap_expr_str_exec(r, eh->expr, &err);
        if (err) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "ET00122: EventTriggerHeader %s: cannot evaluate "
                          "the expression: %s; the header is not sent",
                          eh->name, err);
            continue;
        }
        if (!v || !*v) {
            continue;                 /* empty: no header */
        }
        for (c = v; *c && (!apr_iscntrl(*c) || *c == '\t'); c++) {
        }
        if (*c) {
            /* CR or LF would end the header (or start another) */
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          "ET00123: EventTriggerHeader %s: the value holds "
                          "a control character; the header is not sent",
                          eh->name);
            continue;
        }
        APR_ARRAY_PUSH(lines, const char *) =
            apr_pstrcat(r->pool, eh->name, ": ", v, NULL);
    }
    return lines->nelts ? apr_array_pstrcat(r->pool, lines, '\n') : NULL;
}

void et_event_context(request_rec *r, const et_srv_conf_t *sc,
                      et_event_t *ev)
{
    const et_trace_ctx_t *t = request_trace(r);

    ev->traceparent = t->traceparent;
    ev->tracestate = t->tracestate;
    ev->headers = expr_headers(r, sc);
}

/* Store @a ev (made for @a r) and say what became of it. */
static void store_event(request_rec *r, et_event_t *ev)
{
    const char *err = NULL;
    apr_status_t rv;
    int via_intake;

    et_event_context(r, et_srv_conf(r->server), ev);
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
        return;
    }

    /* for CustomLog "%{eventtrigger-txn}n" next to the admin's request (a
     * JSON-RPC batch's events: every txn, in order) */
    {
        const char *prev = apr_table_get(r->notes, "eventtrigger-txn");

        apr_table_setn(r->notes, "eventtrigger-txn",
                       prev ? apr_pstrcat(r->pool, prev, ",", ev->txn, NULL)
                            : ev->txn);
    }
    if (ev->state == ET_ST_FAILED) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "ET00034: %s %s not sent: %s [%s %s] (txn=%s, "
                      "recorded as failed)", et_object_name(ev->object),
                      et_event_name(ev->event), ev->error, r->method,
                      ap_escape_logitem(r->pool, r->uri), ev->txn);
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

/* The calls of a JSON-RPC request that are events, or NULL (logged). */
static apr_array_header_t *rpc_calls(request_rec *r, et_filter_ctx_t *ctx,
                                     int *batch)
{
    apr_array_header_t *calls;
    const char *err = NULL;
    apr_size_t limit = (apr_size_t)ctx->sc->capture_limit;

    if (ctx->in.total > (apr_off_t)limit) {
        err = apr_psprintf(r->pool, "the request body of %" APR_OFF_T_FMT
                           " bytes exceeds EventTriggerCaptureLimit %"
                           APR_SIZE_T_FMT, ctx->in.total, limit);
    }
    else if (!ctx->in_eos) {
        err = "the console did not read the whole request body";
    }
    else if (et_rpc_parse_request(r->pool, ctx->in.buf, ctx->in.len,
                                  ctx->sc->max_depth, &calls, batch, &err)
             == APR_SUCCESS) {
        if (calls->nelts == 0) {
            ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                          "ET00060: no call of this JSON-RPC request "
                          "creates, updates or deletes: no event");
            return NULL;
        }
        return calls;
    }
    /* Nothing says which objects the calls were about, so no event can
     * even be recorded as failed: the error log is where it shows. */
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "ET00061: JSON-RPC request %s answered %d, but its calls "
                  "cannot be read: %s; no event is made for it",
                  ap_escape_logitem(r->pool, r->uri), r->status, err);
    return NULL;
}

static void commit_event(request_rec *r, et_filter_ctx_t *ctx)
{
    et_capture_t cap;
    et_event_t *ev = NULL;
    apr_array_header_t *calls = NULL, *events;
    apr_status_t rv;
    int batch = 0, i;

    if (ctx->dc->jsonrpc && (calls = rpc_calls(r, ctx, &batch)) == NULL) {
        return;
    }
    memset(&cap, 0, sizeof(cap));
    cap.site = &ctx->sc->site;
    cap.object = ctx->dc->object;
    cap.event = ctx->event;
    cap.id_field = ctx->dc->id_field ? ctx->dc->id_field : "id";
    cap.id_fields = ctx->dc->id_fields;
    cap.object_ptr = ctx->dc->object_ptr;
    cap.uri_path = r->uri;
    /* <LocationMatch "^/members/(?<etid>[^/]+)/edit$">: the id the
     * operator's pattern names, where the last segment is no id */
    cap.path_id = apr_table_get(r->subprocess_env, "MATCH_ETID");
    cap.location = ctx->canned ? ctx->location
                               : apr_table_get(r->headers_out, "Location");
    cap.body = ctx->out.buf ? ctx->out.buf : "";
    cap.body_len = ctx->out.len;
    cap.body_total = ctx->out.total;
    cap.limit = (apr_size_t)ctx->sc->capture_limit;
    cap.max_depth = ctx->sc->max_depth;
    cap.max_id_len = ET_MAX_ID_LEN;
    cap.content_encoding = ctx->content_encoding;
    cap.content_type = ctx->canned ? NULL : r->content_type;
    /* httpd's own page has the length it says, and is not the object */
    cap.incomplete = ctx->incomplete
                     || (!ctx->canned && short_body(r, &ctx->out));

    if (calls) {
        rv = et_capture_jsonrpc(r->pool, &cap, calls, batch, &events);
    }
    else {
        rv = et_capture_to_event(r->pool, &cap, &ev);
        events = NULL;
    }
    if (rv != APR_SUCCESS || (!ev && !events)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r,
                      "ET00031: cannot make an event for this %s %s "
                      "(no transaction id could be generated); NOT recorded",
                      calls ? "JSON-RPC request" : et_object_name(cap.object),
                      calls ? "" : et_event_name(cap.event));
        return;
    }
    if (ev) {
        store_event(r, ev);
        return;
    }
    if (events->nelts < calls->nelts) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "ET00062: %d of %d JSON-RPC calls that would be events "
                      "were answered with an error (or not at all): no "
                      "event for them", calls->nelts - events->nelts,
                      calls->nelts);
    }
    /* in the request's order: one object's events stay in order */
    for (i = 0; i < events->nelts; i++) {
        store_event(r, APR_ARRAY_IDX(events, i, et_event_t *));
    }
}

/*
 * JSON-RPC locations: copy the request body aside (bounded by
 * EventTriggerCaptureLimit) as the console reads it, to know its calls.
 * What the console reads is passed on as it came; nothing is held.
 */
static apr_status_t et_in_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                 ap_input_mode_t mode,
                                 apr_read_type_e block, apr_off_t readbytes)
{
    et_filter_ctx_t *ctx = f->ctx;
    apr_bucket *e;
    apr_status_t rv;

    rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    /* a speculative read is read again later */
    if (rv != APR_SUCCESS || !ctx || ctx->in_eos
        || mode == AP_MODE_SPECULATIVE) {
        return rv;
    }
    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;

        if (APR_BUCKET_IS_EOS(e)) {
            ctx->in_eos = 1;
            break;
        }
        if (APR_BUCKET_IS_METADATA(e)) {
            continue;
        }
        if (apr_bucket_read(e, &data, &len, APR_BLOCK_READ) != APR_SUCCESS) {
            /* the console gets the same error; the copy is short */
            ctx->in.total = (apr_off_t)ctx->sc->capture_limit + 1;
            continue;
        }
        keep_bytes(&ctx->in, (apr_size_t)ctx->sc->capture_limit, f->r->pool,
                   data, len);
    }
    return rv;
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
        keep_bytes(&ctx->out, (apr_size_t)ctx->sc->capture_limit, r->pool,
                   data, len);
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
    ap_register_input_filter(ET_IN_FILTER_NAME, et_in_filter, NULL,
                             AP_FTYPE_RESOURCE);
}
