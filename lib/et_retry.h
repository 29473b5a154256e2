/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_retry.h
 * @brief The retry schedule: delays before each attempt, with jitter.
 */
#ifndef ET_RETRY_H
#define ET_RETRY_H

#include <apr_pools.h>
#include <apr_time.h>

/**
 * delays[i] is the wait before attempt i+1 after attempt i failed
 * (delays[0], normally 0, is the wait before the first attempt).
 * An event gets n attempts in all.
 */
typedef struct et_retry_t {
    int n;
    apr_interval_time_t *delays;
    int jitter_pct;           /* +- this percent on every delay but 0 */
} et_retry_t;

#define ET_RETRY_DEFAULT "0 5s 5m 30m 2h 5h 10h 10h"

/**
 * Parse a duration: "0", "250ms", "5s", "5m", "2h", "1d", or bare seconds.
 * APR_EINVAL on anything else (negative, overflow, junk).
 */
apr_status_t et_duration_parse(const char *s, apr_interval_time_t *out);

/**
 * Parse a point in time: epoch seconds, "YYYY-MM-DDTHH:MM:SSZ", or an age
 * before @a now ("2h"). APR_EINVAL on anything else.
 */
apr_status_t et_time_parse(const char *s, apr_time_t now, apr_time_t *out);

/** Parse a whitespace separated schedule (ET_RETRY_DEFAULT's syntax). */
apr_status_t et_retry_parse(apr_pool_t *p, const char *spec,
                            et_retry_t **out, const char **err);

/**
 * The delay before the next attempt after @a attempts attempts failed, with
 * jitter drawn from @a rnd; -1 when the schedule is used up.
 */
apr_interval_time_t et_retry_next(const et_retry_t *r, int attempts,
                                  apr_uint32_t rnd);

#endif /* ET_RETRY_H */
