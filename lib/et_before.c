/* Licensed under the Apache License, Version 2.0. */
/*
 * et_before.c: before-save calls. Made from request threads, so a call
 * waits synchronously on a client of its own, and the answer - which the
 * customer's endpoint writes - is judged strictly: anything that is not
 * one of the documented answers is a failure, for the policy to settle.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_before.h"
#include "et_form.h"
#include "et_json.h"

#define OBJECT_TYPE "object_type"
/* a refusal's message is for the admin, not for a novel */
#define MESSAGE_MAX 1024
/* libcurl ends a call a little after CURLOPT_TIMEOUT_MS */
#define SLACK apr_time_from_msec(250)

const char *et_before_event_name(et_event_e ev)
{
    switch (ev) {
    case ET_EV_CREATE:
        return "pre-create";
    case ET_EV_UPDATE:
        return "pre-update";
    case ET_EV_DELETE:
        return "pre-delete";
    default:
        return NULL;
    }
}

apr_status_t et_before_body(apr_pool_t *p, const et_site_t *site,
                            et_object_e object, et_event_e event,
                            const char *id_field, const char *id,
                            const char *req, apr_size_t len, int max_depth,
                            const char **body, apr_size_t *body_len,
                            const char **err)
{
    json_t *obj = NULL;
    apr_size_t i;
    int empty = 1;

    *body = NULL;
    *body_len = 0;
    *err = NULL;
    for (i = 0; req && i < len; i++) {
        if (req[i] != ' ' && req[i] != '\t' && req[i] != '\r'
            && req[i] != '\n') {
            empty = 0;
            break;
        }
    }
    if (empty) {
        obj = et_json_pool_own(p, json_object());
        if (obj && event == ET_EV_DELETE && id && *id) {
            if (*id_field == '/') {
                et_json_pointer_set(obj, id_field, json_string(id));
            }
            else {
                json_object_set_new(obj, id_field, json_string(id));
            }
        }
    }
    else if (et_json_parse_object(p, req, len, max_depth, &obj, err)
             != APR_SUCCESS) {
        *err = apr_pstrcat(p, "request body: ", *err, NULL);
        return APR_EINVAL;
    }
    if (obj == NULL) {
        *err = "out of memory";
        return APR_ENOMEM;
    }
    if (json_object_get(obj, OBJECT_TYPE) == NULL) {
        json_object_set_new(obj, OBJECT_TYPE,
                            json_string(et_object_name(object)));
    }
    if (site->format == ET_FMT_FORM) {
        if (et_form_encode(p, obj, body, body_len) != APR_SUCCESS) {
            *err = "cannot form-encode the request body";
            return APR_EINVAL;
        }
    }
    else {
        *body = et_json_dump(p, obj, body_len);
        if (*body == NULL) {
            *err = "cannot serialise the request body";
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

static void failed(et_before_decision_t *d, const char *why)
{
    memset(d, 0, sizeof(*d));
    d->kind = ET_BEFORE_FAIL;
    d->reason = why;
}

void et_before_judge(apr_pool_t *p, const et_http_response_t *resp,
                     int max_depth, et_before_decision_t *d)
{
    json_t *ans, *type, *o;
    const char *err, *t;

    if (resp->error || resp->status == 0) {
        failed(d, apr_pstrcat(p, "no answer: ",
                              resp->error ? resp->error : "unknown error",
                              NULL));
        return;
    }
    if (resp->status < 200 || resp->status > 299) {
        failed(d, apr_psprintf(p, "the endpoint answered %d", resp->status));
        return;
    }
    if (et_json_parse_object(p, resp->body, resp->body_len, max_depth, &ans,
                             &err) != APR_SUCCESS) {
        failed(d, apr_pstrcat(p, "answer: ", err, NULL));
        return;
    }
    type = json_object_get(ans, "type");
    t = json_string_value(type);
    if (t == NULL) {
        failed(d, "answer has no \"type\"");
        return;
    }
    memset(d, 0, sizeof(*d));
    if (!strcmp(t, "proceed")) {
        o = json_object_get(ans, "object");
        if (o == NULL || json_is_null(o)) {
            d->kind = ET_BEFORE_PROCEED;
            return;
        }
        if (!json_is_object(o)) {
            failed(d, apr_psprintf(p, "answer's \"object\" is a JSON %s, "
                                   "not an object", et_json_type_name(o)));
            return;
        }
        d->kind = ET_BEFORE_ENRICH;
        d->object = et_json_dump(p, o, &d->object_len);
        if (d->object == NULL) {
            failed(d, "cannot serialise the answer's \"object\"");
        }
        return;
    }
    if (!strcmp(t, "refuse")) {
        json_t *st = json_object_get(ans, "status");
        json_t *msg = json_object_get(ans, "message");

        d->kind = ET_BEFORE_REFUSE;
        d->status = 403;
        if (st != NULL && !json_is_null(st)) {
            json_int_t v = json_is_integer(st) ? json_integer_value(st) : 0;

            /* only a client error: a refusal is the admin's to fix */
            if (v < 400 || v > 499) {
                failed(d, "a refusal's \"status\" must be a 4xx integer");
                return;
            }
            d->status = (int)v;
        }
        if (msg != NULL && !json_is_null(msg) && !json_is_string(msg)) {
            failed(d, "a refusal's \"message\" must be a string");
            return;
        }
        if (msg && !json_is_null(msg)) {
            const char *m = json_string_value(msg);
            apr_size_t n = json_string_length(msg);

            if (n > MESSAGE_MAX) {
                /* cut on a character's boundary: it goes back in JSON */
                n = MESSAGE_MAX;
                while (n > 0 && ((unsigned char)m[n] & 0xc0) == 0x80) {
                    n--;
                }
            }
            d->message = apr_pstrmemdup(p, m, n);
        }
        else {
            d->message = "";
        }
        return;
    }
    failed(d, "answer's \"type\" is neither \"proceed\" nor \"refuse\"");
}

/* -- clients ------------------------------------------------------------ */

typedef struct client_t client_t;
struct client_t {
    et_http_t *http;
    client_t *next;
};

struct et_before_clients_t {
    apr_pool_t *pool;                 /* clients are made from it, locked */
    apr_thread_mutex_t *lock;
    client_t *free_list;
};

apr_status_t et_before_clients_create(et_before_clients_t **out,
                                      apr_pool_t *p)
{
    et_before_clients_t *bc = apr_pcalloc(p, sizeof(*bc));
    apr_status_t rv;

    bc->pool = p;
    rv = apr_thread_mutex_create(&bc->lock, APR_THREAD_MUTEX_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *out = bc;
    return APR_SUCCESS;
}

static client_t *take(et_before_clients_t *bc)
{
    client_t *c;
    apr_pool_t *cp;

    apr_thread_mutex_lock(bc->lock);
    c = bc->free_list;
    if (c) {
        bc->free_list = c->next;
        apr_thread_mutex_unlock(bc->lock);
        return c;
    }
    /* a new client: as many exist as calls ever ran at once (the glue
     * bounds that with EventTriggerBeforeConcurrency). Its pool has an
     * allocator of its own: clients allocate on different threads. */
    {
        apr_allocator_t *alloc;

        if (apr_allocator_create(&alloc) != APR_SUCCESS) {
            apr_thread_mutex_unlock(bc->lock);
            return NULL;
        }
        if (apr_pool_create_ex(&cp, bc->pool, NULL, alloc) != APR_SUCCESS) {
            apr_allocator_destroy(alloc);
            apr_thread_mutex_unlock(bc->lock);
            return NULL;
        }
        apr_allocator_owner_set(alloc, cp);
    }
    apr_thread_mutex_unlock(bc->lock);
    c = apr_pcalloc(cp, sizeof(*c));
    if (et_http_curl_create(&c->http, cp) != APR_SUCCESS) {
        apr_thread_mutex_lock(bc->lock);
        apr_pool_destroy(cp);
        apr_thread_mutex_unlock(bc->lock);
        return NULL;
    }
    return c;
}

static void give(et_before_clients_t *bc, client_t *c)
{
    apr_thread_mutex_lock(bc->lock);
    c->next = bc->free_list;
    bc->free_list = c;
    apr_thread_mutex_unlock(bc->lock);
}

typedef struct wait_t {
    apr_pool_t *p;
    et_http_response_t *resp;
    int done;
} wait_t;

static void call_done(void *baton, const et_http_response_t *r)
{
    wait_t *w = baton;

    *w->resp = *r;
    w->done = 1;
}

apr_status_t et_before_call(et_before_clients_t *bc, apr_pool_t *p,
                            const et_http_request_t *req,
                            et_http_response_t *resp)
{
    client_t *c = take(bc);
    apr_time_t deadline = apr_time_now() + req->timeout + SLACK;
    wait_t w;
    apr_status_t rv;

    memset(resp, 0, sizeof(*resp));
    if (c == NULL) {
        resp->error = "cannot make an HTTP client";
        return APR_ENOMEM;
    }
    w.p = p;
    w.resp = resp;
    w.done = 0;
    rv = et_http_start(c->http, p, req, call_done, &w);
    if (rv != APR_SUCCESS) {
        give(bc, c);
        resp->error = "cannot start the call";
        return rv;
    }
    while (!w.done) {
        apr_time_t now = apr_time_now();

        if (now >= deadline) {
            /* libcurl's own timeout should have ended it: a backstop */
            et_http_abort(c->http);
            break;
        }
        et_http_run(c->http, deadline - now);
    }
    give(bc, c);
    return APR_SUCCESS;
}
