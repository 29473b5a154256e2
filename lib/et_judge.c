/* Licensed under the Apache License, Version 2.0. */
/*
 * The outcome policy: what an attempt's answer means for its event
 * (delivered, retried when, or dead) and the text kept of a refusal.
 *
 * Thread safety: no state of its own; called on the calling thread (and
 * by the unit tests), on the caller's data only.
 */

#include <apr_date.h>
#include <apr_lib.h>
#include <apr_strings.h>

#include "et_dispatch_int.h"

/* Longest Retry-After honoured: a receiver cannot park events for days. */
#define ET_RETRY_AFTER_MAX apr_time_from_sec(3600)

/* Printable, bounded text of a receiver's answer, for logs and dead letters. */
const char *et_judge_excerpt(apr_pool_t *p, const char *body, apr_size_t len)
{
    char *s;
    apr_size_t i;

    if (!body || !len) {
        return "";
    }
    if (len > 200) {
        len = 200;
    }
    s = apr_pstrmemdup(p, body, len);
    for (i = 0; i < len; i++) {
        if (!apr_isprint(s[i])) {
            s[i] = '.';
        }
    }
    return s;
}

/* Retry-After: delta seconds or an HTTP-date (RFC 9110, 10.2.3). */
static apr_interval_time_t retry_after(const char *v, apr_time_t now)
{
    if (!v || !*v) {
        return -1;
    }
    if (apr_isdigit(*v)) {
        char *end;
        apr_int64_t secs = apr_strtoi64(v, &end, 10);
        if (*end || secs < 0) {
            return -1;
        }
        return secs > 3600 ? ET_RETRY_AFTER_MAX : apr_time_from_sec(secs);
    }
    else {
        apr_time_t when = apr_date_parse_http(v);
        if (when == APR_DATE_BAD) {
            return -1;
        }
        return when <= now ? 0 : (when - now > ET_RETRY_AFTER_MAX
                                  ? ET_RETRY_AFTER_MAX : when - now);
    }
}

void et_dispatch_judge(const et_site_t *site, const et_event_t *ev,
                       const et_http_response_t *resp, apr_time_t now,
                       apr_uint32_t rnd, et_outcome_t *out)
{
    int st = resp->status;
    int retryable;

    memset(out, 0, sizeof(*out));
    out->status = st;
    out->latency = resp->elapsed;

    if (st >= 200 && st < 300) {
        out->state = ET_ST_DELIVERED;
        return;
    }
    retryable = (st == 0 || st == 408 || st == 429 || st >= 500);
    if (!retryable) {
        /* 3xx (redirects are not followed) and other 4xx: the receiver
         * refuses this call; asking again would get the same answer. */
        out->state = ET_ST_DEAD;
        out->error = st >= 300 && st < 400 ? "redirect not followed"
                                           : "refused by the receiver";
        return;
    }
    else {
        apr_interval_time_t delay = et_retry_next(site->retry, ev->attempts,
                                                  rnd);
        if (delay < 0) {
            out->state = ET_ST_DEAD;
            out->error = "out of attempts";
            return;
        }
        if (st == 429 || st == 503) {
            apr_interval_time_t ra = retry_after(resp->retry_after, now);
            if (ra > delay) {
                delay = ra;
            }
        }
        out->state = ET_ST_PENDING;
        out->due = now + delay;
        out->error = st ? "server error" : "no answer";
    }
}
