/* Licensed under the Apache License, Version 2.0. */
/*
 * et_trace.c: W3C Trace Context's traceparent, read from an admin's
 * request and made for each attempt of a call.
 */
#include <string.h>

#include <apr_strings.h>
#include <apr_escape.h>
#include <apr_general.h>

#include "et_trace.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;                        /* uppercase too: the spec's HEXDIGLC */
}

static int is_hex(const char *s, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        if (hexval(s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

static int all_zeros(const char *s, apr_size_t n)
{
    return strspn(s, "0") >= n;
}

static int none_set(const unsigned char *b, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n && !b[i]; i++) {
    }
    return i == n;
}

int et_traceparent_parse(const char *s, et_traceparent_t *tp)
{
    apr_size_t len;
    int version;

    if (!s || (len = strlen(s)) < ET_TRACEPARENT_LEN) {
        return 0;
    }
    if (!is_hex(s, 2) || s[2] != '-' || !is_hex(s + 3, 32) || s[35] != '-'
        || !is_hex(s + 36, 16) || s[52] != '-' || !is_hex(s + 53, 2)) {
        return 0;
    }
    version = hexval(s[0]) * 16 + hexval(s[1]);
    if (version == 0xff
        || (version == 0 && len != ET_TRACEPARENT_LEN)
        || (version > 0 && len > ET_TRACEPARENT_LEN
            && s[ET_TRACEPARENT_LEN] != '-')) {
        return 0;
    }
    if (all_zeros(s + 3, 32) || all_zeros(s + 36, 16)) {
        return 0;
    }
    memcpy(tp->trace_id, s + 3, 32);
    tp->trace_id[32] = '\0';
    memcpy(tp->parent_id, s + 36, 16);
    tp->parent_id[16] = '\0';
    tp->flags = (unsigned char)((hexval(s[53]) * 16 + hexval(s[54])) & 0x01);
    return 1;
}

int et_tracestate_ok(const char *s)
{
    apr_size_t i;

    if (!s || !*s) {
        return 0;
    }
    for (i = 0; s[i]; i++) {
        if (i >= ET_TRACESTATE_MAX || s[i] < 0x20 || s[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

const char *et_traceparent_new(apr_pool_t *p)
{
    unsigned char rnd[16 + 8];

    if (apr_generate_random_bytes(rnd, sizeof(rnd)) != APR_SUCCESS) {
        return NULL;
    }
    /* all zeros is invalid: one chance in 2^64, but cheap to rule out */
    if (none_set(rnd, 16)) {
        rnd[15] = 1;
    }
    if (none_set(rnd + 16, 8)) {
        rnd[23] = 1;
    }
    return apr_pstrcat(p, "00-", apr_pescape_hex(p, rnd, 16, 0), "-",
                       apr_pescape_hex(p, rnd + 16, 8, 0), "-01", NULL);
}

const char *et_traceparent_attempt(apr_pool_t *p, const char *stored,
                                   const char *txn, apr_uint64_t span)
{
    static const char digits[] = "0123456789abcdef";
    et_traceparent_t tp;
    char *out;
    int i;

    if (!span) {
        return NULL;
    }
    if (!et_traceparent_parse(stored, &tp)) {
        if (!txn || strlen(txn) != 32 || !is_hex(txn, 32)
            || all_zeros(txn, 32)) {
            return NULL;
        }
        memcpy(tp.trace_id, txn, 33);
        tp.flags = 0x01;
    }
    out = apr_pstrcat(p, "00-", tp.trace_id, "-0000000000000000-00", NULL);
    for (i = 15; i >= 0; i--) {
        out[36 + i] = digits[span & 0xf];
        span >>= 4;
    }
    out[53] = digits[tp.flags >> 4];
    out[54] = digits[tp.flags & 0xf];
    return out;
}

const char *et_trace_id(apr_pool_t *p, const char *traceparent,
                        const char *txn)
{
    const char *tp = et_traceparent_attempt(p, traceparent, txn, 1);

    return tp ? apr_pstrmemdup(p, tp + 3, 32) : NULL;
}
