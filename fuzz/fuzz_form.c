/* Licensed under the Apache License, Version 2.0. */
/*
 * libFuzzer target: the form encoder (lib/et_form.c), JSON object ->
 * application/x-www-form-urlencoded in bracket notation.
 *
 * The input is JSON text (\u0000 allowed, so that the encoder's refusal of
 * NUL in strings is reached). For every object it encodes, the output must
 * be NUL-free with the reported length, use only the characters of the
 * encoding, and decode back, pair by pair and in order, to the object's
 * leaves (docs/wire-format.md#form-bodies): an independent oracle written
 * from the documented convention, not from the encoder.
 */
#include <jansson.h>
#include <apr_strings.h>

#include "fuzz_common.h"
#include "et_form.h"

#define FORM_MAX_DEPTH 64     /* lib/et_form.c */

typedef struct leaf_t {
    const char *key;          /* raw (unescaped) bracket path */
    const char *val;          /* raw value text (NULL for a real) */
    double real;              /* a real: any text that reads back as it */
    struct leaf_t *next;
} leaf_t;

typedef struct {
    apr_pool_t *p;
    leaf_t *head, **tail;
    int refuse;               /* the encoder must refuse this object */
} walk_t;

static leaf_t *leaf(walk_t *w, const char *key, const char *val)
{
    leaf_t *l = apr_pcalloc(w->p, sizeof(*l));

    l->key = key;
    l->val = val;
    *w->tail = l;
    w->tail = &l->next;
    return l;
}

static void walk(walk_t *w, const json_t *v, const char *key, int depth)
{
    char num[64];

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;

        if (depth >= FORM_MAX_DEPTH) {
            w->refuse = 1;
            return;
        }
        json_object_foreach((json_t *)v, k, x) {
            walk(w, x, depth ? apr_pstrcat(w->p, key, "[", k, "]", NULL) : k,
                 depth + 1);
        }
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;

        if (depth >= FORM_MAX_DEPTH) {
            w->refuse = 1;
            return;
        }
        json_array_foreach(v, i, x) {
            walk(w, x, apr_psprintf(w->p, "%s[%lu]", key, (unsigned long)i),
                 depth + 1);
        }
        return;
    }
    case JSON_STRING:
        if (memchr(json_string_value(v), '\0', json_string_length(v))) {
            w->refuse = 1;
        }
        leaf(w, key, json_string_value(v));
        return;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        leaf(w, key, apr_pstrdup(w->p, num));
        return;
    case JSON_REAL:
        /* docs/wire-format.md: a text that reads back as the same double,
         * with a '.' or an exponent (2.5, 1e+100, 3.0) */
        leaf(w, key, NULL)->real = json_real_value(v);
        return;
    case JSON_TRUE:
        leaf(w, key, "true");
        return;
    case JSON_FALSE:
        leaf(w, key, "false");
        return;
    default:
        leaf(w, key, "");
        return;
    }
}

static int form_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || strchr("*-._%+&=[]", c) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    json_error_t e;
    json_t *j;
    const char *out = NULL;
    apr_size_t len = 99;
    apr_status_t rv;
    walk_t w;
    leaf_t *l;
    size_t i;

    j = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &e);
    if (j == NULL) {
        return 0;
    }
    p = fz_pool();
    rv = et_form_encode(p, j, &out, &len);
    if (!json_is_object(j)) {
        /* arrays (json_loadb's other top level) are refused */
        FZ_CHECK(rv != APR_SUCCESS && out == NULL, "only objects");
        goto done;
    }

    memset(&w, 0, sizeof(w));
    w.p = p;
    w.tail = &w.head;
    walk(&w, j, "", 0);

    if (w.refuse) {
        FZ_CHECK(rv != APR_SUCCESS && out == NULL && len == 0,
                 "NUL in a string or nesting of %d must be refused",
                 FORM_MAX_DEPTH);
        goto done;
    }
    FZ_CHECK(rv == APR_SUCCESS, "rv %d", rv);
    FZ_CHECK(out != NULL && strlen(out) == len, "length %lu vs %lu",
             (unsigned long)(out ? strlen(out) : 0), (unsigned long)len);
    for (i = 0; i < len; i++) {
        FZ_CHECK(form_char((unsigned char)out[i]), "byte 0x%02x at %lu",
                 (unsigned char)out[i], (unsigned long)i);
    }
    /* pair by pair against the leaves, in order */
    l = w.head;
    if (len == 0) {
        FZ_CHECK(l == NULL, "empty output for an object with leaves");
        goto done;
    }
    {
        const char *s = out, *end = out + len;

        while (s <= end) {
            const char *amp = memchr(s, '&', end - s);
            const char *pe = amp ? amp : end;
            const char *eq = memchr(s, '=', pe - s);
            char *k, *v;
            long kl, vl;

            FZ_CHECK(l != NULL, "more pairs than leaves: %s", out);
            FZ_CHECK(eq != NULL && !memchr(eq + 1, '=', pe - eq - 1),
                     "a pair without exactly one '=': %s", out);
            k = apr_palloc(p, eq - s + 1);
            v = apr_palloc(p, pe - eq);
            kl = fz_unescape(k, s, eq - s, 1);
            vl = fz_unescape(v, eq + 1, pe - eq - 1, 1);
            FZ_CHECK(kl >= 0 && vl >= 0, "bad escape in %s", out);
            FZ_CHECK((size_t)kl == strlen(l->key)
                     && !memcmp(k, l->key, kl), "key of pair in %s", out);
            if (l->val) {
                FZ_CHECK((size_t)vl == strlen(l->val)
                         && !memcmp(v, l->val, vl), "value of pair in %s",
                         out);
            }
            else {
                char *end;
                double d;

                v[vl] = '\0';
                d = strtod(v, &end);
                FZ_CHECK(vl > 0 && *end == '\0' && d == l->real
                         && strpbrk(v, ".eE") != NULL,
                         "real %.17g as '%s' in %s", l->real, v, out);
            }
            l = l->next;
            if (!amp) {
                break;
            }
            s = amp + 1;
        }
        FZ_CHECK(l == NULL, "fewer pairs than leaves: %s", out);
    }
done:
    json_decref(j);
    apr_pool_destroy(p);
    return 0;
}
