/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_before.h
 * @brief Before-save events (shared/protocol.md): the call made from the
 *        admin's request before the console sees it, and what its answer
 *        decides (proceed, enrich, refuse, or a failure the location's
 *        policy settles).
 *
 * httpd-free. The answer is untrusted input: every path through
 * et_before_judge ends in a decision with a reason fit for a log line.
 */
#ifndef ET_BEFORE_H
#define ET_BEFORE_H

#include <apr_pools.h>
#include <apr_thread_mutex.h>

#include "et_event.h"
#include "et_http.h"
#include "et_site.h"

typedef enum {
    ET_BEFORE_PROCEED = 0,            /* {"type":"proceed"} */
    ET_BEFORE_ENRICH,                 /* {"type":"proceed","object":{...}} */
    ET_BEFORE_REFUSE,                 /* {"type":"refuse",...} */
    ET_BEFORE_FAIL                    /* anything else: the policy decides */
} et_before_e;

typedef struct et_before_decision_t {
    et_before_e kind;
    int status;               /* REFUSE: the admin's status (4xx) */
    const char *message;      /* REFUSE: the endpoint's words, or "" */
    const char *object;       /* ENRICH: the object as compact JSON */
    apr_size_t object_len;
    const char *reason;       /* FAIL: why, for the log and the 503 */
} et_before_decision_t;

/** "pre-create", "pre-update", "pre-delete"; NULL if unknown. */
const char *et_before_event_name(et_event_e ev);

/**
 * The body of a before-save call: the JSON object @a req (the admin's
 * request body, @a len bytes) plus object_type, in the site's format; for
 * a delete, {"<id_field>": "<id>"} plus object_type when the request has
 * no body (a delete's body, if it is an object, is sent as for the rest).
 * An empty body counts as {}. APR_EINVAL with *err if the body is not a
 * JSON object.
 */
apr_status_t et_before_body(apr_pool_t *p, const et_site_t *site,
                            et_object_e object, et_event_e event,
                            const char *id_field, const char *id,
                            const char *req, apr_size_t len, int max_depth,
                            const char **body, apr_size_t *body_len,
                            const char **err);

/** What the endpoint's answer @a resp decides. */
void et_before_judge(apr_pool_t *p, const et_http_response_t *resp,
                     int max_depth, et_before_decision_t *d);

/**
 * Synchronous calls from many threads: clients (each a libcurl multi
 * handle with its kept-alive connections) are taken from a free list for
 * one call and put back after it, so a later call reuses a connection.
 * Thread safety: et_before_call may be called from any thread; the free
 * list is under the pool's mutex; a client is used by one thread at a
 * time.
 */
typedef struct et_before_clients_t et_before_clients_t;

apr_status_t et_before_clients_create(et_before_clients_t **bc,
                                      apr_pool_t *p);

/**
 * Make the call @a req and wait for its end: at most req->timeout (the
 * whole call, connect included), plus a little for libcurl's timers.
 * *resp's strings are in @a p.
 */
apr_status_t et_before_call(et_before_clients_t *bc, apr_pool_t *p,
                            const et_http_request_t *req,
                            et_http_response_t *resp);

#endif /* ET_BEFORE_H */
