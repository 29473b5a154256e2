/* Licensed under the Apache License, Version 2.0. */
/*
 * et_json.c: the one place that talks to jansson. References handed out are
 * bound to a pool; error messages never carry the input, since the input is
 * a console's answer and the messages go to logs and the status page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "et_json.h"

static apr_status_t json_cleanup(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *et_json_pool_own(apr_pool_t *p, json_t *j)
{
    if (j != NULL) {
        apr_pool_cleanup_register(p, j, json_cleanup, apr_pool_cleanup_null);
    }
    return j;
}

static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

/* jansson's own text quotes the input ("... near 'xyz'"), so only its code
 * and position are used. */
static const char *load_error(apr_pool_t *p, const json_error_t *e,
                              int max_depth)
{
    const char *what;

    switch (json_error_code(e)) {
    case json_error_out_of_memory:
        return "out of memory parsing JSON";
    case json_error_stack_overflow:
        /* jansson's own depth limit, far above any configured one */
        return apr_psprintf(p, "nesting deeper than %d",
                            max_depth > 0 ? max_depth : JSON_PARSER_MAX_DEPTH);
    case json_error_invalid_utf8:
        what = "invalid UTF-8";
        break;
    case json_error_premature_end_of_input:
        what = "premature end of input";
        break;
    case json_error_end_of_input_expected:
        what = "data after the JSON value";
        break;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        what = "NUL character";
        break;
    case json_error_numeric_overflow:
        what = "number out of range";
        break;
    case json_error_duplicate_key:
        what = "duplicate key";
        break;
    case json_error_invalid_syntax:
    default:
        what = "invalid syntax";
        break;
    }
    return apr_psprintf(p, "malformed JSON: %s at line %d, column %d "
                        "(byte %d)", what, e->line, e->column, e->position);
}

/* Depth of @a j counting containers only (an object of scalars is 1); stops
 * descending once past @a limit, so recursion is bounded by it. */
static int depth_exceeds(const json_t *j, int depth, int limit)
{
    if (!json_is_object(j) && !json_is_array(j)) {
        return 0;
    }
    if (depth > limit) {
        return 1;
    }
    if (json_is_object(j)) {
        const char *k;
        json_t *v;

        json_object_foreach((json_t *)j, k, v) {
            if (depth_exceeds(v, depth + 1, limit)) {
                return 1;
            }
        }
    }
    else {
        size_t i;
        json_t *v;

        json_array_foreach(j, i, v) {
            if (depth_exceeds(v, depth + 1, limit)) {
                return 1;
            }
        }
    }
    return 0;
}

apr_status_t et_json_parse_value(apr_pool_t *p, const char *buf,
                                 apr_size_t len, int max_depth,
                                 json_t **out, const char **err)
{
    json_error_t e;
    json_t *j;

    *out = NULL;
    *err = NULL;
    if (buf == NULL) {
        buf = "";
        len = 0;
    }
    /* jansson 2.14 skips a NUL byte that follows a number or a literal
     * ({"id":12<NUL>}), which would then go out in a verbatim body: refuse
     * every NUL byte here (JSON text has none outside its escapes). */
    {
        const char *nul = memchr(buf, '\0', len);

        if (nul != NULL) {
            *err = apr_psprintf(p, "malformed JSON: NUL character at byte %"
                                APR_SIZE_T_FMT, (apr_size_t)(nul - buf));
            return APR_EINVAL;
        }
    }
    /* no JSON_ALLOW_NUL, so NUL and \u0000 are refused. Duplicate names
     * are refused: the body goes out as the console wrote it, and a
     * receiver that keeps the first "id" would read another id than the
     * URL's. */
    j = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        *err = load_error(p, &e, max_depth);
        return APR_EINVAL;
    }
    if (max_depth > 0 && depth_exceeds(j, 1, max_depth)) {
        *err = apr_psprintf(p, "nesting deeper than %d", max_depth);
        json_decref(j);
        return APR_EINVAL;
    }
    *out = et_json_pool_own(p, j);
    return APR_SUCCESS;
}

apr_status_t et_json_parse_object(apr_pool_t *p, const char *buf,
                                  apr_size_t len, int max_depth,
                                  json_t **out, const char **err)
{
    apr_status_t rv = et_json_parse_value(p, buf, len, max_depth, out, err);

    /* any value was parsed so that a scalar body gets a clear message */
    if (rv == APR_SUCCESS && !json_is_object(*out)) {
        *err = apr_psprintf(p, "body is a JSON %s, not an object",
                            type_name(*out));
        *out = NULL;
        return APR_EINVAL;
    }
    return rv;
}

const char *et_json_type_name(const json_t *j)
{
    return j ? type_name(j) : "nothing";
}

/*
 * RFC 6901. jansson has no JSON Pointer, and the pointers here are short
 * strings from the configuration: a walk over their reference tokens is
 * all it takes.
 */
const char *et_json_pointer_check(const char *ptr)
{
    const char *s;

    if (ptr == NULL || *ptr == '\0') {
        return NULL;                  /* the whole document */
    }
    if (*ptr != '/') {
        return "a JSON pointer starts with '/'";
    }
    for (s = ptr; *s; s++) {
        if (*s == '~' && s[1] != '0' && s[1] != '1') {
            return "'~' in a JSON pointer must be followed by 0 or 1";
        }
    }
    return NULL;
}

/* The next reference token of @a *ptr (just past a '/'), unescaped, into
 * @a buf of @a size bytes; *ptr moves to the next '/' or the end. Returns
 * the token's length, or -1 if it does not fit. */
static int next_token(const char **ptr, char *buf, apr_size_t size)
{
    const char *s = *ptr;
    apr_size_t n = 0;

    for (; *s && *s != '/'; s++) {
        char c = *s;

        if (c == '~') {
            c = s[1] == '1' ? '/' : '~';
            s++;
        }
        if (n + 1 >= size) {
            return -1;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    *ptr = s;
    return (int)n;
}

/* An array index token: decimal digits, no leading zero; -1 if not. */
static long array_index(const char *tok)
{
    long v = 0;
    const char *s;

    if (!*tok || (tok[0] == '0' && tok[1]) || strlen(tok) > 9) {
        return -1;
    }
    for (s = tok; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v;
}

#define TOKEN_MAX 256

json_t *et_json_pointer_get(const json_t *root, const char *ptr)
{
    json_t *j = (json_t *)root;
    char tok[TOKEN_MAX];

    if (ptr == NULL || et_json_pointer_check(ptr) != NULL) {
        return ptr == NULL ? j : NULL;
    }
    while (j != NULL && *ptr == '/') {
        ptr++;
        if (next_token(&ptr, tok, sizeof(tok)) < 0) {
            return NULL;
        }
        if (json_is_object(j)) {
            j = json_object_get(j, tok);
        }
        else if (json_is_array(j)) {
            long i = array_index(tok);

            j = i < 0 ? NULL : json_array_get(j, (size_t)i);
        }
        else {
            j = NULL;
        }
    }
    return j;
}

int et_json_pointer_set(json_t *root, const char *ptr, json_t *value)
{
    json_t *j = root;
    char tok[TOKEN_MAX];

    if (!json_is_object(root) || ptr == NULL || *ptr != '/'
        || et_json_pointer_check(ptr) != NULL) {
        json_decref(value);
        return -1;
    }
    for (;;) {
        json_t *next;

        ptr++;
        if (next_token(&ptr, tok, sizeof(tok)) < 0) {
            break;
        }
        if (*ptr == '\0') {
            return json_object_set_new(j, tok, value);
        }
        /* only objects are made or walked into: an array's index would
         * say nothing of where a missing id belongs */
        next = json_object_get(j, tok);
        if (next == NULL) {
            next = json_object();
            if (json_object_set_new(j, tok, next) != 0) {
                break;
            }
        }
        if (!json_is_object(next)) {
            break;
        }
        j = next;
    }
    json_decref(value);
    return -1;
}

const char *et_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len)
{
    char *s;
    const char *copy;
    apr_size_t n;

    /* 15 digits: the status page's figures print as 78.595, not
     * 78.594999999999999 */
    s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY
                      | JSON_REAL_PRECISION(15));
    if (s == NULL) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    n = strlen(s);
    copy = apr_pstrmemdup(p, s, n);
    free(s);
    if (len) {
        *len = n;
    }
    return copy;
}

apr_status_t et_json_scalar_id(apr_pool_t *p, const json_t *obj,
                               const char *field, const char **id,
                               const char **err)
{
    json_t *v;

    *id = NULL;
    if (err) {
        *err = NULL;
    }
    if (*field == '/') {
        v = json_is_object(obj) ? et_json_pointer_get(obj, field) : NULL;
    }
    else {
        v = json_is_object(obj) ? json_object_get(obj, field) : NULL;
    }
    if (v == NULL || json_is_null(v)) {
        return APR_NOTFOUND;
    }
    if (json_is_integer(v)) {
        char num[32];

        /* libc's: APR's formatter knows no "ll", which JSON_INTEGER_FORMAT
         * may be */
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        *id = apr_pstrdup(p, num);
        return APR_SUCCESS;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        if (n == 0) {
            if (err) {
                *err = apr_psprintf(p, "'%s' is an empty string", field);
            }
            return APR_EINVAL;
        }
        /* possible only in objects built in memory (json_stringn) */
        if (memchr(s, '\0', n) != NULL) {
            if (err) {
                *err = apr_psprintf(p, "'%s' contains a NUL character",
                                    field);
            }
            return APR_EINVAL;
        }
        *id = apr_pstrmemdup(p, s, n);
        return APR_SUCCESS;
    }
    if (err) {
        *err = apr_psprintf(p, "'%s' is a JSON %s, not a string or an "
                            "integer", field,
                            json_is_real(v) ? "real number" : type_name(v));
    }
    return APR_EINVAL;
}
