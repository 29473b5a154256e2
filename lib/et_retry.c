/* Licensed under the Apache License, Version 2.0. */
/*
 * et_retry.c: the retry schedule (EventTriggerRetry) and its jitter, which
 * keeps a receiver that comes back after an outage from being hit by every
 * queued retry in the same second.
 */
#include <stdio.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "et_retry.h"

#define RETRY_MAX_DELAYS  32
#define RETRY_JITTER_PCT  20
/* the longest single delay: 30 days */
#define DURATION_MAX_MS   (APR_INT64_C(30) * 24 * 3600 * 1000)

apr_status_t et_duration_parse(const char *s, apr_interval_time_t *out)
{
    apr_int64_t n = 0;
    apr_int64_t unit_ms;
    const char *c = s;

    if (s == NULL || !apr_isdigit(*s)) {
        return APR_EINVAL;
    }
    /* stop accumulating once past the limit in the smallest unit, so that
     * no number of digits can overflow */
    for (; apr_isdigit(*c); c++) {
        n = n * 10 + (*c - '0');
        if (n > DURATION_MAX_MS) {
            return APR_EINVAL;
        }
    }
    if (*c == '\0' || strcmp(c, "s") == 0) {
        unit_ms = 1000;
    }
    else if (strcmp(c, "ms") == 0) {
        unit_ms = 1;
    }
    else if (strcmp(c, "m") == 0) {
        unit_ms = 60 * 1000;
    }
    else if (strcmp(c, "h") == 0) {
        unit_ms = 3600 * 1000;
    }
    else if (strcmp(c, "d") == 0) {
        unit_ms = 24 * 3600 * 1000;
    }
    else {
        return APR_EINVAL;
    }
    if (n > DURATION_MAX_MS / unit_ms) {
        return APR_EINVAL;
    }
    *out = (apr_interval_time_t)(n * unit_ms * 1000);
    return APR_SUCCESS;
}

apr_status_t et_retry_parse(apr_pool_t *p, const char *spec,
                            et_retry_t **out, const char **err)
{
    apr_interval_time_t delays[RETRY_MAX_DELAYS];
    char *copy, *tok, *last;
    et_retry_t *r;
    int n = 0;

    *out = NULL;
    *err = NULL;
    if (spec == NULL) {
        spec = "";
    }
    copy = apr_pstrdup(p, spec);
    for (tok = apr_strtok(copy, " \t\r\n\f\v", &last); tok != NULL;
         tok = apr_strtok(NULL, " \t\r\n\f\v", &last)) {
        if (n == RETRY_MAX_DELAYS) {
            *err = apr_psprintf(p, "more than %d delays", RETRY_MAX_DELAYS);
            return APR_EINVAL;
        }
        if (et_duration_parse(tok, &delays[n]) != APR_SUCCESS) {
            *err = apr_psprintf(p, "bad delay '%s' (use e.g. 0 5s 5m 2h; "
                                "at most 30d)", tok);
            return APR_EINVAL;
        }
        n++;
    }
    if (n == 0) {
        *err = "no delays given (use e.g. 0 5s 5m 2h)";
        return APR_EINVAL;
    }
    r = apr_pcalloc(p, sizeof(*r));
    r->n = n;
    r->jitter_pct = RETRY_JITTER_PCT;
    r->delays = apr_pmemdup(p, delays, n * sizeof(delays[0]));
    *out = r;
    return APR_SUCCESS;
}

apr_interval_time_t et_retry_next(const et_retry_t *r, int attempts,
                                  apr_uint32_t rnd)
{
    apr_interval_time_t d, span, off;

    if (r == NULL || attempts < 0 || attempts >= r->n) {
        return -1;
    }
    d = r->delays[attempts];
    if (d <= 0 || r->jitter_pct <= 0) {
        return d;
    }
    /* rnd spread evenly over [-span, +span]; in double because span times
     * 2^32 overflows 64 bits for delays of days. */
    span = d * r->jitter_pct / 100;
    off = (apr_interval_time_t)(((double)rnd / 4294967295.0) * 2.0
                                * (double)span) - span;
    d += off;
    return d < 0 ? 0 : d;
}

apr_status_t et_time_parse(const char *s, apr_time_t now, apr_time_t *out)
{
    apr_time_exp_t tm;
    apr_interval_time_t age;
    char *end;
    int n = 0;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) == 6
        && s[n] == '\0') {
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return apr_time_exp_gmt_get(out, &tm) == APR_SUCCESS ? APR_SUCCESS
                                                             : APR_EINVAL;
    }
    if (apr_isdigit(*s) && !strpbrk(s, "smhd")) {
        apr_int64_t secs = apr_strtoi64(s, &end, 10);
        /* in range for apr_time_t's microseconds (strtoi64 saturates) */
        if (*end == '\0' && secs >= 0
            && secs <= APR_INT64_MAX / APR_USEC_PER_SEC) {
            *out = apr_time_from_sec(secs);
            return APR_SUCCESS;
        }
        return APR_EINVAL;
    }
    if (et_duration_parse(s, &age) == APR_SUCCESS) {
        *out = now - age;
        return APR_SUCCESS;
    }
    return APR_EINVAL;
}
