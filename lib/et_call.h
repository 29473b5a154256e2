/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_call.h
 * @brief The HTTP request of a call to a site's endpoint, as every call
 *        makes it: the dispatcher's deliveries and the request threads'
 *        before-save calls alike.
 *
 * httpd-free. Thread safety: reads the (read-only) site only.
 */
#ifndef ET_CALL_H
#define ET_CALL_H

#include "et_http.h"
#include "et_site.h"

/**
 * Fill @a req for a call of @a method to @a url with @a body (not copied:
 * it must outlive the call): Accept, User-Agent, Content-Type (if given),
 * the site's EventTriggerHeader lines, and - when the site has secrets -
 * the Standard Webhooks headers, signed now over the exact bytes sent with
 * @a txn as webhook-id; the site's TLS settings and timeouts. Everything
 * new is allocated from @a p.
 */
void et_call_request(apr_pool_t *p, const et_site_t *site,
                     const char *method, const char *url,
                     const char *content_type, const char *txn,
                     const char *body, apr_size_t body_len,
                     et_http_request_t *req);

/**
 * Add to @a req (made by et_call_request for @a ev's call) what the event
 * brought from the admin's request: a traceparent with the event's trace
 * id and flags and @a span (non-zero, this attempt's own) as parent id,
 * the event's tracestate unchanged, and its EventTriggerHeader expr=
 * lines. The signature does not cover headers, so these may follow it.
 * Returns the traceparent sent (NULL if none could be made).
 */
const char *et_call_event(apr_pool_t *p, const et_event_t *ev,
                          apr_uint64_t span, et_http_request_t *req);

#endif /* ET_CALL_H */
