/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_log.h
 * @brief The library's one logging seam: lines go to a callback of the
 *        glue's (httpd's error log), formatted only when their level is
 *        logged, as mod_md's md_log_perror does.
 */
#ifndef ET_LOG_H
#define ET_LOG_H

#include <apr_pools.h>

/** Where the library reports, so that the glue can use its own logger. */
typedef void et_log_fn(void *baton, int level, const char *msg);

/* Levels for et_log_fn, numerically httpd's APLOG_* ones. */
#define ET_LOG_ERR      3
#define ET_LOG_WARNING  4
#define ET_LOG_NOTICE   5
#define ET_LOG_INFO     6
#define ET_LOG_DEBUG    7

/** A callback and the level above which nothing is even formatted.
 *  Read-only once set up: safe to share between threads. */
typedef struct et_logger_t {
    et_log_fn *fn;                    /* NULL: nothing is logged */
    void *baton;
    int level;
} et_logger_t;

#if defined(__GNUC__)
#define ET_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ET_PRINTF(f, a)
#endif

/** Whether a line of @a level would be logged: at lg->level or below,
 *  and any ET_LOG_NOTICE (the callback decides: httpd logs notices to a
 *  file whatever LogLevel says). */
int et_log_is_level(const et_logger_t *lg, int level);

/**
 * Log a line of @a level, formatted with apr_pvsprintf() from @a p, or, if
 * @a p is NULL, into a buffer on the stack (512 bytes at most: for threads
 * with no pool at hand). Nothing is formatted when the level is not logged.
 */
void et_log(const et_logger_t *lg, int level, apr_pool_t *p,
            const char *fmt, ...) ET_PRINTF(4, 5);

#endif /* ET_LOG_H */
