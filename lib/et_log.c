/* Licensed under the Apache License, Version 2.0. */
/*
 * The library's logging seam (et_log.h). Reentrant: it only reads the
 * logger, which is set up before the threads that use it start.
 */
#include <stdarg.h>

#include <apr_strings.h>

#include "et_log.h"

/* Lines formatted without a pool are cut here. */
#define ET_LOG_STACK_MAX 512

/* A notice always goes to the callback: httpd writes notices to a file
 * error log whatever LogLevel says (ap_log_error decides for it). */
int et_log_is_level(const et_logger_t *lg, int level)
{
    return lg->fn && (level <= lg->level || level == ET_LOG_NOTICE);
}

void et_log(const et_logger_t *lg, int level, apr_pool_t *p,
            const char *fmt, ...)
{
    char buf[ET_LOG_STACK_MAX];
    const char *msg;
    va_list ap;

    if (!et_log_is_level(lg, level)) {
        return;
    }
    va_start(ap, fmt);
    if (p) {
        msg = apr_pvsprintf(p, fmt, ap);
    }
    else {
        apr_vsnprintf(buf, sizeof(buf), fmt, ap);
        msg = buf;
    }
    va_end(ap);
    lg->fn(lg->baton, level, msg);
}
