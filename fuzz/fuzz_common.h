/* Licensed under the Apache License, Version 2.0. */
/*
 * fuzz_common.h: what the libFuzzer targets share: APR set up once, a pool
 * per input, and a way to fail loudly when an invariant breaks (libFuzzer
 * records the input as a crash).
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>

static apr_pool_t *fz_root;

static apr_pool_t *fz_pool(void)
{
    apr_pool_t *p = NULL;

    if (fz_root == NULL) {
        if (apr_initialize() != APR_SUCCESS
            || apr_pool_create(&fz_root, NULL) != APR_SUCCESS) {
            abort();
        }
    }
    if (apr_pool_create(&p, fz_root) != APR_SUCCESS) {
        abort();
    }
    return p;
}

#define FZ_CHECK(cond, ...) do {                                          \
        if (!(cond)) {                                                    \
            fprintf(stderr, "invariant failed: %s: ", #cond);             \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
            abort();                                                      \
        }                                                                 \
    } while (0)

/* Take the next NUL-separated field of the input (the last one runs to the
 * end); the copy is NUL-terminated and allocated from @a p. */
static const char *fz_field(apr_pool_t *p, const uint8_t **data,
                            size_t *size, size_t *len)
{
    const uint8_t *end = memchr(*data, '\0', *size);
    size_t n = end ? (size_t)(end - *data) : *size;
    char *s = apr_palloc(p, n + 1);

    memcpy(s, *data, n);
    s[n] = '\0';
    if (len) {
        *len = n;
    }
    *data += end ? n + 1 : n;
    *size -= end ? n + 1 : n;
    return s;
}

static int fz_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode @a n bytes of @a s (with '+' as space if @a plus); -1 if a
 * '%' is not followed by two hex digits. */
static long fz_unescape(char *out, const char *s, size_t n, int plus)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n) {
                return -1;
            }
            h = fz_hexval((unsigned char)s[i + 1]);
            l = fz_hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) {
                return -1;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        }
        else if (plus && s[i] == '+') {
            out[o++] = ' ';
        }
        else {
            out[o++] = s[i];
        }
    }
    return (long)o;
}

#endif /* FUZZ_COMMON_H */
