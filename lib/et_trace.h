/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_trace.h
 * @brief W3C Trace Context (https://www.w3.org/TR/trace-context/): the
 *        traceparent an event keeps from the admin's request (or the one
 *        the module starts for it), and the one each attempt of its call
 *        sends: the same trace id, a parent id of its own.
 *
 * httpd-free. Thread safety: no state; safe from any thread.
 */
#ifndef ET_TRACE_H
#define ET_TRACE_H

#include <apr_pools.h>

/** "00-" 32 hex "-" 16 hex "-" 2 hex */
#define ET_TRACEPARENT_LEN 55
/** Longest tracestate kept: what the specification asks every vendor to
 *  pass on at least. A longer one is dropped, not cut. */
#define ET_TRACESTATE_MAX 512

/** A traceparent taken apart: lowercase hex, NUL-terminated. */
typedef struct et_traceparent_t {
    char trace_id[33];
    char parent_id[17];
    unsigned char flags;
} et_traceparent_t;

/**
 * Parse a traceparent header as the specification says a receiver must:
 * version 00 exactly 55 characters; a later version (not ff) at least 55,
 * with a '-' after them if longer, its first four fields read as 00's;
 * lowercase hex only; trace id and parent id not all zeros. Of the flags,
 * only the sampled bit (01) is kept: the others are undefined for version
 * 00, which is what is sent on. Non-zero if valid (then @a tp is filled).
 */
int et_traceparent_parse(const char *s, et_traceparent_t *tp);

/** Non-zero if @a s may be passed on as tracestate: 1 to
 *  ET_TRACESTATE_MAX printable ASCII characters (no control characters). */
int et_tracestate_ok(const char *s);

/**
 * A fresh traceparent for an event whose admin request carried none (or an
 * invalid one): a random trace id (16 bytes from the system's generator,
 * as the txn's) and parent id, sampled. NULL if no random bytes could be
 * had.
 */
const char *et_traceparent_new(apr_pool_t *p);

/**
 * The traceparent of one attempt: version 00, the trace id and flags of
 * @a stored (an event's traceparent), @a span as parent id (zero is not a
 * valid id: the caller draws another). An event stored before the module
 * kept trace context has none: then the trace id is its @a txn (32 hex,
 * random and never all zeros), so that its attempts still share one.
 * NULL if neither is usable.
 */
const char *et_traceparent_attempt(apr_pool_t *p, const char *stored,
                                   const char *txn, apr_uint64_t span);

/** The trace id (32 hex) an event's calls carry: that of its stored
 *  @a traceparent, or its @a txn for an event stored without one (as
 *  et_traceparent_attempt); NULL if neither is usable. */
const char *et_trace_id(apr_pool_t *p, const char *traceparent,
                        const char *txn);

#endif /* ET_TRACE_H */
