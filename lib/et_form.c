/* Licensed under the Apache License, Version 2.0. */
/*
 * et_form.c: a JSON object as application/x-www-form-urlencoded in bracket
 * notation (conventions in et_form.h and docs/wire-format.md).
 *
 * The output and the current key path are two growing buffers, so the work
 * is linear in the output: every pair is the key path (already escaped)
 * plus its value, written once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_escape.h>
#include <apr_strings.h>

#include "et_form.h"

/* Far beyond anything the parser lets through (EventTriggerMaxDepth); a
 * guard for objects built in memory. */
#define FORM_MAX_DEPTH 64

typedef struct {
    char *data;
    apr_size_t len;
    apr_size_t cap;
} form_buf_t;

typedef struct {
    apr_pool_t *p;
    form_buf_t out;
    form_buf_t key;           /* path of the value being encoded */
} form_ctx_t;

/* Room for @a more bytes plus a NUL. Doubling from the pool: the blocks
 * left behind add up to less than the final size. */
static void buf_reserve(apr_pool_t *p, form_buf_t *b, apr_size_t more)
{
    apr_size_t need = b->len + more + 1;

    if (need > b->cap) {
        apr_size_t cap = b->cap ? b->cap * 2 : 256;
        char *data;

        while (cap < need) {
            cap *= 2;
        }
        data = apr_palloc(p, cap);
        if (b->len) {
            memcpy(data, b->data, b->len);
        }
        b->data = data;
        b->cap = cap;
    }
}

static void buf_add(apr_pool_t *p, form_buf_t *b, const char *s,
                    apr_size_t n)
{
    buf_reserve(p, b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Append @a n bytes of @a s form-encoded (space as '+'). */
static void buf_add_escaped(apr_pool_t *p, form_buf_t *b, const char *s,
                            apr_size_t n)
{
    apr_size_t elen;

    if (n == 0) {
        return;
    }
    /* the length reported counts the terminating NUL */
    apr_escape_urlencoded(NULL, s, n, &elen);
    buf_reserve(p, b, elen);
    apr_escape_urlencoded(b->data + b->len, s, n, NULL);
    b->len += elen - 1;
}

static apr_status_t add_pair(form_ctx_t *ctx, const char *val, apr_size_t n)
{
    if (ctx->out.len) {
        buf_add(ctx->p, &ctx->out, "&", 1);
    }
    buf_add(ctx->p, &ctx->out, ctx->key.data, ctx->key.len);
    buf_add(ctx->p, &ctx->out, "=", 1);
    buf_add_escaped(ctx->p, &ctx->out, val, n);
    return APR_SUCCESS;
}

static apr_status_t encode_value(form_ctx_t *ctx, const json_t *v,
                                 int depth)
{
    char num[64];
    apr_size_t mark = ctx->key.len;
    apr_status_t rv = APR_SUCCESS;
    int n;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        void *it;

        if (depth >= FORM_MAX_DEPTH) {
            return APR_EINVAL;
        }
        for (it = json_object_iter((json_t *)v); it != NULL && !rv;
             it = json_object_iter_next((json_t *)v, it)) {
            const char *k = json_object_iter_key(it);

            /* the top level's keys are bare, nested ones in brackets */
            if (depth > 0) {
                buf_add(ctx->p, &ctx->key, "[", 1);
            }
            buf_add_escaped(ctx->p, &ctx->key, k, strlen(k));
            if (depth > 0) {
                buf_add(ctx->p, &ctx->key, "]", 1);
            }
            rv = encode_value(ctx, json_object_iter_value(it), depth + 1);
            ctx->key.len = mark;
        }
        return rv;
    }
    case JSON_ARRAY: {
        size_t i;

        if (depth >= FORM_MAX_DEPTH) {
            return APR_EINVAL;
        }
        for (i = 0; i < json_array_size(v) && !rv; i++) {
            n = apr_snprintf(num, sizeof(num), "[%" APR_SIZE_T_FMT "]",
                             (apr_size_t)i);
            buf_add(ctx->p, &ctx->key, num, n);
            rv = encode_value(ctx, json_array_get(v, i), depth + 1);
            ctx->key.len = mark;
        }
        return rv;
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        apr_size_t len = json_string_length(v);

        /* APR's escaping stops at a NUL; refuse rather than truncate */
        if (memchr(s, '\0', len) != NULL) {
            return APR_EINVAL;
        }
        return add_pair(ctx, s, len);
    }
    case JSON_INTEGER:
        /* libc's: APR's formatter knows no "ll", which JSON_INTEGER_FORMAT
         * may be */
        n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        return add_pair(ctx, num, n);
    case JSON_REAL: {
        /* The shortest text that reads back as the same double (what the
         * console most likely wrote: 9.99, not 9.9900000000000002); an
         * integral value keeps its ".0" as in JSON. */
        double d = json_real_value(v);
        int prec;

        for (prec = 1; prec <= 17; prec++) {
            n = snprintf(num, sizeof(num), "%.*g", prec, d);
            if (strtod(num, NULL) == d) {
                break;
            }
        }
        if (n <= 0 || (apr_size_t)n >= sizeof(num) - 2) {
            return APR_EINVAL;
        }
        if (!strpbrk(num, ".eEn")) {
            num[n++] = '.';
            num[n++] = '0';
            num[n] = '\0';
        }
        return add_pair(ctx, num, n);
    }
    case JSON_TRUE:
        return add_pair(ctx, "true", 4);
    case JSON_FALSE:
        return add_pair(ctx, "false", 5);
    case JSON_NULL:
    default:
        return add_pair(ctx, "", 0);
    }
}

apr_status_t et_form_encode(apr_pool_t *p, const json_t *obj,
                            const char **out, apr_size_t *len)
{
    form_ctx_t ctx;
    apr_status_t rv;

    *out = NULL;
    if (len) {
        *len = 0;
    }
    if (!json_is_object(obj)) {
        return APR_EINVAL;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.p = p;
    buf_reserve(p, &ctx.key, 0);
    rv = encode_value(&ctx, obj, 0);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *out = ctx.out.len ? ctx.out.data : "";
    if (len) {
        *len = ctx.out.len;
    }
    return APR_SUCCESS;
}
