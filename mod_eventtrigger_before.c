/* Licensed under the Apache License, Version 2.0. */
/*
 * Before-save events: for the operations EventTriggerBefore names, the
 * customer's endpoint is asked before the console sees the request
 * (POST {root}/v1/{object}[/{id}]?event=pre-...&txn=...), and its answer
 * lets the request go on, gives the console an enriched object instead,
 * or refuses the change. A handler that runs before every other one reads
 * the request body (bounded by EventTriggerCaptureLimit), makes the call,
 * and either answers the admin itself or hands the body - the same bytes,
 * or the enriched object - back to the console through an input filter.
 *
 * The call blocks a worker thread, so it has one deadline
 * (EventTriggerBeforeTimeout, connect included) and at most
 * EventTriggerBeforeConcurrency of them run at once per child and site;
 * beyond that the failure policy answers at once. What the request holds
 * (its body, the call's state) lives in r->pool.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include <apr_atomic.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "mod_eventtrigger.h"
#include "et_before.h"
#include "et_call.h"
#include "et_capture.h"
#include "et_guard.h"
#include "et_json.h"
#include "et_jsonrpc.h"
#include "et_url.h"

#define ET_KEPT_FILTER "EVENTTRIGGER_BODY"

/* This child's clients for before-save calls (child_init; the structure
 * locks itself). */
static et_before_clients_t *clients;

/* The request body, read before the console, given back to it. */
typedef struct et_kept_t {
    request_rec *r;
    const char *data;
    apr_size_t len;
    apr_size_t off;
    int all;                          /* data is the whole body: EOS after */
} et_kept_t;

/*
 * What the console reads: the kept bytes (as much as each read asks for),
 * then EOS - or, for a body larger than what was kept, the rest from the
 * connection.
 */
static apr_status_t kept_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                ap_input_mode_t mode, apr_read_type_e block,
                                apr_off_t readbytes)
{
    et_kept_t *k = f->ctx;
    apr_size_t n;

    if (mode != AP_MODE_READBYTES && mode != AP_MODE_SPECULATIVE
        && mode != AP_MODE_GETLINE && mode != AP_MODE_EXHAUSTIVE) {
        return ap_get_brigade(f->next, bb, mode, block, readbytes);
    }
    if (k->off >= k->len) {
        if (!k->all) {
            return ap_get_brigade(f->next, bb, mode, block, readbytes);
        }
        /* as HTTP_IN does once the body is over */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
        return APR_SUCCESS;
    }
    n = k->len - k->off;
    if ((mode == AP_MODE_READBYTES || mode == AP_MODE_SPECULATIVE)
        && readbytes > 0 && (apr_off_t)n > readbytes) {
        n = (apr_size_t)readbytes;
    }
    else if (mode == AP_MODE_GETLINE) {
        const char *nl = memchr(k->data + k->off, '\n', n);

        if (nl) {
            n = (apr_size_t)(nl - (k->data + k->off)) + 1;
        }
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(k->data + k->off, n,
                                                       k->r->pool,
                                                       bb->bucket_alloc));
    if (mode != AP_MODE_SPECULATIVE) {
        k->off += n;
        if (k->off >= k->len && k->all) {
            APR_BRIGADE_INSERT_TAIL(bb,
                                    apr_bucket_eos_create(bb->bucket_alloc));
        }
    }
    return APR_SUCCESS;
}

/* Read the request body, at most @a limit bytes (*all says whether that
 * was all of it). */
static apr_status_t read_body(request_rec *r, apr_size_t limit,
                              char **data, apr_size_t *len, int *all)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool,
                                                r->connection->bucket_alloc);
    apr_size_t cap = 8192, n = 0;
    char *buf = apr_palloc(r->pool, cap + 1);
    apr_status_t rv;

    *all = 0;
    while (!*all && n <= limit) {
        apr_bucket *e;

        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                            APR_BLOCK_READ, HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            const char *d;
            apr_size_t l;

            if (APR_BUCKET_IS_EOS(e)) {
                *all = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e)) {
                continue;
            }
            rv = apr_bucket_read(e, &d, &l, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                return rv;
            }
            if (l == 0) {
                continue;
            }
            if (n + l > cap) {
                char *nb;

                while (n + l > cap) {
                    cap *= 2;
                }
                nb = apr_palloc(r->pool, cap + 1);
                memcpy(nb, buf, n);
                buf = nb;
            }
            memcpy(buf + n, d, l);
            n += l;
        }
        apr_brigade_cleanup(bb);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return APR_SUCCESS;
}

/* The console gets @a data as the whole body (or, if !all, as its start):
 * through @a k if the filter is in place already, else a new one. */
static et_kept_t *give_body(request_rec *r, et_kept_t *k, const char *data,
                            apr_size_t len, int all)
{
    int add = k == NULL;

    if (add) {
        k = apr_pcalloc(r->pool, sizeof(*k));
    }
    k->r = r;
    k->off = 0;
    k->data = data;
    k->len = len;
    k->all = all;
    if (all) {
        /* the console (mod_proxy, ap_setup_client_block) reads what the
         * headers announce: the length of what it gets, not chunks */
        apr_table_setn(r->headers_in, "Content-Length",
                       apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, len));
        apr_table_unset(r->headers_in, "Transfer-Encoding");
    }
    if (add) {
        ap_add_input_filter(ET_KEPT_FILTER, k, r, r->connection);
    }
    return k;
}

/* Answer the admin with @a status and {"error": ..., "txn": ...}. */
static int answer(request_rec *r, int status, const char *error,
                  const char *txn)
{
    json_t *j = json_pack("{s:s,s:s?}", "error", error ? error : "",
                          "txn", txn);
    const char *text;
    apr_size_t len = 0;

    /* what is left of a body larger than the capture limit */
    ap_discard_request_body(r);
    text = j ? et_json_dump(r->pool, j, &len) : NULL;
    json_decref(j);
    if (!text) {
        /* only if the message could not be JSON: the txn is hex */
        text = apr_psprintf(r->pool, "{\"error\":\"refused\",\"txn\":%s%s%s}",
                            txn ? "\"" : "", txn ? txn : "null",
                            txn ? "\"" : "");
        len = strlen(text);
    }
    r->status = status;
    if (status == HTTP_SERVICE_UNAVAILABLE) {
        apr_table_setn(r->err_headers_out, "Retry-After", "5");
    }
    ap_set_content_type(r, "application/json");
    ap_set_content_length(r, (apr_off_t)len);
    if (!r->header_only) {
        ap_rwrite(text, (int)len, r);
    }
    return OK;
}

static const char *decision_name(et_before_e k)
{
    switch (k) {
    case ET_BEFORE_PROCEED:
        return "proceed";
    case ET_BEFORE_ENRICH:
        return "proceed, enriched";
    case ET_BEFORE_REFUSE:
        return "refuse";
    default:
        return "failed";
    }
}

/* What one before-save call needs and leaves. */
typedef struct et_ask_t {
    const et_dir_conf_t *dc;
    const et_srv_conf_t *sc;
    et_object_e object;
    et_event_e event;
    const char *id;           /* NULL for a create */
    const char *obj;          /* the admin's object (JSON text) */
    apr_size_t obj_len;
    const char *txn;          /* out */
    et_before_decision_t d;   /* out */
    apr_interval_time_t took; /* out: the call's time, -1 if none made */
} et_ask_t;

/* What the request's after-save events carry goes on its before-save
 * calls too: the request's trace (the call a span of its own) and the
 * site's EventTriggerHeader expr= values, as et_event_context makes them
 * for an event. */
static void before_context(request_rec *r, const et_srv_conf_t *sc,
                           const char *txn, et_http_request_t *req)
{
    et_event_t ctx;
    apr_uint64_t span = 0;

    memset(&ctx, 0, sizeof(ctx));
    ctx.txn = txn;
    et_event_context(r, sc, &ctx);
    /* one draw per call: a round trip to the endpoint follows anyway */
    apr_generate_random_bytes((unsigned char *)&span, sizeof(span));
    et_call_event(r->pool, &ctx, span ? span : 1, req);
}

/* Ask the endpoint about one operation, and log what it decided. */
static void ask(request_rec *r, et_ask_t *a, apr_interval_time_t timeout,
                int proceed_on_failure, const char *err)
{
    const et_srv_conf_t *sc = a->sc;
    const et_dir_conf_t *dc = a->dc;
    const char *ename = et_before_event_name(a->event), *body, *url;
    const char *id_field;
    apr_size_t body_len = 0, limit = (apr_size_t)sc->capture_limit;
    apr_time_t start = apr_time_now();
    et_http_request_t req;
    et_http_response_t resp;
    int limit_calls;

    memset(&a->d, 0, sizeof(a->d));
    a->txn = NULL;
    a->took = -1;
    /* a txn even for a failure known before the call: the admin's 503
     * and the log line name it */
    if (et_txn_new(r->pool, &a->txn) != APR_SUCCESS) {
        a->txn = NULL;
        err = err ? err : "no transaction id could be generated";
    }
    if (!err && (!clients || !sc->before_running)) {
        err = "before-save calls are not set up in this process (ET00072)";
    }
    if (!err && a->event != ET_EV_CREATE && (!a->id || !*a->id)) {
        err = "the request names no id";
    }
    id_field = dc->id_fields[a->object] ? dc->id_fields[a->object]
               : dc->id_field ? dc->id_field : "id";
    if (!err
        && et_before_body(r->pool, &sc->site, a->object, a->event, id_field,
                          a->id, a->obj, a->obj_len, sc->max_depth, &body,
                          &body_len, &err) != APR_SUCCESS) {
        err = err ? err : "cannot build the call's body";
    }
    if (err) {
        a->d.kind = ET_BEFORE_FAIL;
        a->d.reason = err;
    }
    else {
        /* a limit per site and child: a hanging endpoint holds at most
         * this many workers */
        limit_calls = sc->before_concurrency > 0 ? sc->before_concurrency
                      : ET_BEFORE_CONCURRENCY_DEFAULT;
        if (apr_atomic_inc32(sc->before_running)
            >= (apr_uint32_t)limit_calls) {
            apr_atomic_dec32(sc->before_running);
            a->d.kind = ET_BEFORE_FAIL;
            a->d.reason = apr_psprintf(r->pool, "%d before-save calls of "
                                       "this site are under way in this "
                                       "process (EventTriggerBefore"
                                       "Concurrency)", limit_calls);
        }
        else {
            url = et_url_build_before(r->pool, sc->site.endpoint, a->object,
                                      a->id, a->event, a->txn);
            et_call_request(r->pool, &sc->site, "POST", url,
                            et_format_content_type(sc->site.format), a->txn,
                            body, body_len, &req);
            before_context(r, sc, a->txn, &req);
            req.timeout = timeout;
            if (req.connect_timeout <= 0 || req.connect_timeout > timeout) {
                req.connect_timeout = timeout;
            }
            req.response_keep = limit + 1;
            {
                apr_time_t t0 = apr_time_now();

                et_before_call(clients, r->pool, &req, &resp);
                a->took = apr_time_now() - t0;
            }
            apr_atomic_dec32(sc->before_running);
            if (resp.body_len > limit) {
                a->d.kind = ET_BEFORE_FAIL;
                a->d.reason = "the answer exceeds EventTriggerCaptureLimit";
            }
            else {
                et_before_judge(r->pool, &resp, sc->max_depth, &a->d);
            }
        }
    }
    ap_log_rerror(APLOG_MARK, a->d.kind == ET_BEFORE_FAIL ? APLOG_WARNING
                                                          : APLOG_INFO, 0, r,
                  "ET00071: before-save %s %s%s%s txn=%s: %s%s%s (%"
                  APR_TIME_T_FMT " ms)", et_object_name(a->object), ename,
                  a->id ? " id=" : "",
                  a->id ? ap_escape_logitem(r->pool, a->id) : "",
                  a->txn ? a->txn : "-", decision_name(a->d.kind),
                  a->d.kind == ET_BEFORE_FAIL
                  ? apr_pstrcat(r->pool, ": ", a->d.reason,
                                proceed_on_failure ? "; the request goes on "
                                "(EventTriggerBeforeFailure proceed)"
                                : "; refused with 503", NULL)
                  : "",
                  a->d.kind == ET_BEFORE_REFUSE
                  ? apr_psprintf(r->pool, " with %d", a->d.status) : "",
                  apr_time_as_msec(apr_time_now() - start));
}

/* The request notes a CustomLog can show, and the status page's counts. */
static void note(request_rec *r, const et_ask_t *a, int proceed_on_failure)
{
    et_guard_count_before(r, a->d.kind == ET_BEFORE_FAIL
                             ? (proceed_on_failure ? ET_BS_FAILED_OPEN
                                                   : ET_BS_FAILED_CLOSED)
                             : a->d.kind == ET_BEFORE_ENRICH ? ET_BS_ENRICHED
                             : a->d.kind == ET_BEFORE_REFUSE ? ET_BS_REFUSED
                             : ET_BS_PROCEED, a->took);
    apr_table_setn(r->notes, "eventtrigger-before",
                   a->d.kind == ET_BEFORE_FAIL
                   ? (proceed_on_failure ? "failed-open" : "failed-closed")
                   : a->d.kind == ET_BEFORE_ENRICH ? "enriched"
                   : a->d.kind == ET_BEFORE_REFUSE ? "refused" : "proceed");
    if (a->txn) {
        apr_table_setn(r->notes, "eventtrigger-before-txn", a->txn);
    }
}

/* The decision's answer to the admin: OK if it was answered here, else
 * DECLINED (the console goes on). */
static int settle(request_rec *r, const et_ask_t *a, int proceed_on_failure)
{
    switch (a->d.kind) {
    case ET_BEFORE_REFUSE:
        return answer(r, a->d.status, a->d.message, a->txn);
    case ET_BEFORE_FAIL:
        if (proceed_on_failure) {
            return DECLINED;
        }
        return answer(r, HTTP_SERVICE_UNAVAILABLE,
                      apr_pstrcat(r->pool, "before-save check failed: ",
                                  a->d.reason, NULL), a->txn);
    default:
        return DECLINED;
    }
}

/*
 * A JSON-RPC request: every call that is a guarded event is asked about,
 * in the request's order. A refusal (or a failure, refused) answers the
 * whole request; enrichments replace their call's object param, and the
 * console gets the request serialised again.
 */
static int before_jsonrpc(request_rec *r, const et_dir_conf_t *dc,
                          const et_srv_conf_t *sc, et_kept_t *kept,
                          const char *data, apr_size_t len,
                          apr_interval_time_t timeout, int proceed_on_failure,
                          const char *err)
{
    apr_array_header_t *calls = NULL;
    json_t *root = NULL;
    et_ask_t a;
    int batch, i, asked = 0, enriched = 0, rv;

    if (!err && et_rpc_parse_request(r->pool, data, len, sc->max_depth,
                                     &calls, &batch, &err) != APR_SUCCESS) {
        /* not JSON-RPC: the console answers it as it will; nothing here
         * is an event */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "ET00073: before-save: %s; not asked", err);
        return DECLINED;
    }
    for (i = 0; calls && i < calls->nelts; i++) {
        et_rpc_call_t *call = APR_ARRAY_IDX(calls, i, et_rpc_call_t *);
        const char *id_field;

        if (!(dc->before_mask & (1 << call->event))) {
            continue;
        }
        memset(&a, 0, sizeof(a));
        a.dc = dc;
        a.sc = sc;
        a.object = call->object;
        a.event = call->event;
        id_field = dc->id_fields[a.object] ? dc->id_fields[a.object]
                   : dc->id_field ? dc->id_field : "id";
        if (a.event != ET_EV_CREATE) {
            a.id = et_rpc_param_id(r->pool, call, id_field);
        }
        if (json_is_object(call->param)) {
            a.obj = et_json_dump(r->pool, call->param, &a.obj_len);
        }
        else {
            a.obj = "";
        }
        ask(r, &a, timeout, proceed_on_failure, err);
        note(r, &a, proceed_on_failure);
        asked++;
        if (a.d.kind == ET_BEFORE_ENRICH) {
            json_t *obj = NULL;
            const char *perr;

            if (et_json_parse_object(r->pool, a.d.object, a.d.object_len, 0,
                                     &obj, &perr) == APR_SUCCESS
                && et_rpc_set_param(call, json_incref(obj)) == 0) {
                root = call->root;
                enriched++;
                continue;
            }
            /* a call whose first param names its object ("user1") has no
             * object to replace */
            a.d.kind = ET_BEFORE_FAIL;
            a.d.reason = "the endpoint enriched a call whose first param "
                         "is not an object";
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "ET00076: before-save txn=%s: %s; %s", a.txn,
                          a.d.reason, proceed_on_failure
                          ? "the call goes on unchanged" : "refused with 503");
        }
        rv = settle(r, &a, proceed_on_failure);
        if (rv != DECLINED) {
            return rv;
        }
    }
    if (enriched && root) {
        apr_size_t n;
        const char *text = et_json_dump(r->pool, root, &n);

        if (text) {
            give_body(r, kept, text, n, 1);
        }
    }
    if (!asked) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                      "ET00074: before-save: no guarded call in this "
                      "JSON-RPC request");
    }
    return DECLINED;
}

static int et_before_handler(request_rec *r)
{
    const et_dir_conf_t *dc;
    const et_srv_conf_t *sc;
    et_event_e ev;
    et_ask_t a;
    et_kept_t *kept;
    apr_interval_time_t timeout;
    const char *err = NULL, *ct;
    char *data;
    apr_size_t len, limit;
    apr_status_t rv;
    int all, proceed_on_failure;

    if (!et_request_event(r, &dc, &ev) || !dc->before_mask
        || (!dc->jsonrpc && !(dc->before_mask & (1 << ev)))) {
        return DECLINED;
    }
    sc = et_srv_conf(r->server);
    if (!sc->site.endpoint) {
        return DECLINED;
    }
    proceed_on_failure = dc->before_failure == ET_BF_PROCEED;
    timeout = dc->before_timeout > 0 ? dc->before_timeout
              : sc->before_timeout > 0 ? sc->before_timeout
              : ET_BEFORE_TIMEOUT_DEFAULT;
    limit = (apr_size_t)sc->capture_limit;

    rv = read_body(r, limit, &data, &len, &all);
    if (rv != APR_SUCCESS) {
        /* the client's body did not arrive: its own error, as httpd's
         * handlers answer it */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r,
                      "ET00070: before-save: the request body could not be "
                      "read");
        return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
    }
    kept = give_body(r, NULL, data, len, all);
    if (!all || len > limit) {
        err = apr_psprintf(r->pool, "the request body exceeds "
                           "EventTriggerCaptureLimit %" APR_SIZE_T_FMT,
                           limit);
    }
    if (dc->jsonrpc) {
        if (err) {
            /* which calls it holds is unknown: one failure for all */
            memset(&a, 0, sizeof(a));
            a.dc = dc;
            a.sc = sc;
            a.object = ET_OBJ_MEMBER;
            a.event = ET_EV_CREATE;
            ask(r, &a, timeout, proceed_on_failure, err);
            note(r, &a, proceed_on_failure);
            return settle(r, &a, proceed_on_failure);
        }
        return before_jsonrpc(r, dc, sc, kept, data, len, timeout,
                              proceed_on_failure, NULL);
    }

    memset(&a, 0, sizeof(a));
    a.dc = dc;
    a.sc = sc;
    a.object = dc->object;
    a.event = ev;
    /* A body that is not JSON (an HTML form's) is not the object: the
     * endpoint is asked with the id and object_type alone, and an
     * enrichment of it fails below. */
    ct = apr_table_get(r->headers_in, "Content-Type");
    a.obj = len > 0 && ct && !et_capture_is_json_type(ct) ? "" : data;
    a.obj_len = a.obj == data ? len : 0;
    if (ev != ET_EV_CREATE) {
        a.id = apr_table_get(r->subprocess_env, "MATCH_ETID");
        if (!a.id || !*a.id) {
            a.id = et_capture_path_id(r->pool, r->uri);
        }
    }
    ask(r, &a, timeout, proceed_on_failure, err);
    if (a.d.kind == ET_BEFORE_ENRICH) {
        if (len > 0 && a.obj != data) {
            a.d.kind = ET_BEFORE_FAIL;
            a.d.reason = "the endpoint enriched a request whose body is not "
                         "JSON";
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "ET00075: before-save txn=%s: %s; %s", a.txn,
                          a.d.reason, proceed_on_failure
                          ? "the request goes on unchanged"
                          : "refused with 503");
        }
        else {
            /* the console saves the endpoint's object */
            give_body(r, kept, a.d.object, a.d.object_len, 1);
        }
    }
    note(r, &a, proceed_on_failure);
    return settle(r, &a, proceed_on_failure);
}

static void et_before_child_init(apr_pool_t *pchild, server_rec *s)
{
    server_rec *vs;
    apr_status_t rv;

    /* before any thread of this child: libcurl's global state */
    if (et_http_curl_global_init() != APR_SUCCESS
        || (rv = et_before_clients_create(&clients, pchild)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     "ET00072: cannot set up before-save calls in this "
                     "child; requests that need one follow their failure "
                     "policy");
        clients = NULL;
        return;
    }
    /* each child counts its own calls (the configuration is this
     * process's copy, written before its threads start) */
    for (vs = s; vs; vs = vs->next) {
        et_srv_conf_t *sc = et_srv_conf(vs);

        sc->before_running = apr_pcalloc(pchild, sizeof(apr_uint32_t));
    }
}

void et_before_register_hooks(void)
{
    ap_hook_child_init(et_before_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    /* before the console's handler (mod_proxy's, or one in httpd), after
     * the fail-closed check (REALLY_FIRST): an outbox that cannot store
     * the change's event refuses it before the endpoint is asked. A
     * different order, since hooks of one order run in no set order. */
    ap_hook_handler(et_before_handler, NULL, NULL, APR_HOOK_REALLY_FIRST + 1);
    ap_register_input_filter(ET_KEPT_FILTER, kept_filter, NULL,
                             AP_FTYPE_RESOURCE);
}
