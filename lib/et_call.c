/* Licensed under the Apache License, Version 2.0. */
/*
 * et_call.c: the request of a call to a customer's endpoint. One place
 * decides the headers and the signature, so that a before-save call and
 * a delivery look the same to the receiver.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_call.h"
#include "et_sign.h"
#include "et_trace.h"

void et_call_request(apr_pool_t *p, const et_site_t *site,
                     const char *method, const char *url,
                     const char *content_type, const char *txn,
                     const char *body, apr_size_t body_len,
                     et_http_request_t *req)
{
    int i;

    memset(req, 0, sizeof(*req));
    req->method = method;
    req->url = url;
    req->headers = apr_array_make(p, 8, sizeof(const char *));
    APR_ARRAY_PUSH(req->headers, const char *) = "Accept: application/json";
    APR_ARRAY_PUSH(req->headers, const char *) =
        apr_pstrcat(p, "User-Agent: ", site->user_agent ? site->user_agent
                                                        : ET_USER_AGENT_DEFAULT,
                    NULL);
    if (content_type) {
        APR_ARRAY_PUSH(req->headers, const char *) =
            apr_pstrcat(p, "Content-Type: ", content_type, NULL);
    }
    for (i = 0; site->headers && i < site->headers->nelts; i++) {
        APR_ARRAY_PUSH(req->headers, const char *) =
            APR_ARRAY_IDX(site->headers, i, const char *);
    }
    req->body = body ? body : "";
    req->body_len = body ? body_len : 0;
    if (site->secrets && site->secrets->nelts) {
        /* signed afresh on every attempt, over the exact bytes sent */
        apr_int64_t ts = apr_time_sec(apr_time_now());

        APR_ARRAY_PUSH(req->headers, const char *) =
            apr_pstrcat(p, "webhook-id: ", txn, NULL);
        APR_ARRAY_PUSH(req->headers, const char *) =
            apr_psprintf(p, "webhook-timestamp: %" APR_INT64_T_FMT, ts);
        APR_ARRAY_PUSH(req->headers, const char *) =
            apr_pstrcat(p, "webhook-signature: ",
                        et_sign(p, site->secrets, txn, ts, req->body,
                                req->body_len), NULL);
    }
    req->tls = &site->tls;
    req->proxy = &site->proxy;
    req->connect_timeout = site->connect_timeout;
    req->timeout = site->timeout;
    req->response_keep = site->response_keep;
}

const char *et_call_event(apr_pool_t *p, const et_event_t *ev,
                          apr_uint64_t span, et_http_request_t *req)
{
    const char *tp = et_traceparent_attempt(p, ev->traceparent, ev->txn,
                                            span);

    if (tp) {
        APR_ARRAY_PUSH(req->headers, const char *) =
            apr_pstrcat(p, "traceparent: ", tp, NULL);
        /* tracestate only with the traceparent it belongs to */
        if (ev->tracestate && et_tracestate_ok(ev->tracestate)) {
            APR_ARRAY_PUSH(req->headers, const char *) =
                apr_pstrcat(p, "tracestate: ", ev->tracestate, NULL);
        }
    }
    if (ev->headers) {
        char *lines = apr_pstrdup(p, ev->headers), *last, *line;

        /* stored without CR or LF in a value: a line is a header */
        for (line = apr_strtok(lines, "\n", &last); line;
             line = apr_strtok(NULL, "\n", &last)) {
            if (*line && strchr(line, ':')) {
                APR_ARRAY_PUSH(req->headers, const char *) = line;
            }
        }
    }
    return tp;
}
