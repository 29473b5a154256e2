/* Licensed under the Apache License, Version 2.0. */
/*
 * et_url.c: the call URL, {root}/v1/{object}/{id}?event=..&txn=.., and the
 * transaction id that makes a retried call recognisable as the same one.
 */
#include <string.h>

#include <apr_escape.h>
#include <apr_general.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <apr_uri.h>

#include "et_url.h"

#define TXN_BYTES 16

apr_status_t et_url_check_root(apr_pool_t *p, const char *root,
                               const char **err)
{
    apr_uri_t u;
    const char *c;

    *err = NULL;
    if (root == NULL || *root == '\0') {
        *err = "URL is empty";
        return APR_EINVAL;
    }
    /* apr_uri_parse takes these in, but no HTTP client sends them */
    for (c = root; *c; c++) {
        if (apr_iscntrl(*c) || *c == ' ') {
            *err = "URL contains spaces or control characters";
            return APR_EINVAL;
        }
    }
    if (apr_uri_parse(p, root, &u) != APR_SUCCESS) {
        *err = "not a valid URL";
        return APR_EINVAL;
    }
    if (u.scheme == NULL
        || (strcasecmp(u.scheme, "http") != 0
            && strcasecmp(u.scheme, "https") != 0)) {
        *err = "scheme must be http or https";
        return APR_EINVAL;
    }
    if (u.hostname == NULL || *u.hostname == '\0') {
        *err = "URL has no host (expected e.g. https://host/path)";
        return APR_EINVAL;
    }
    if (u.user != NULL || u.password != NULL) {
        *err = "URL must not contain user info (user@ or user:password@)";
        return APR_EINVAL;
    }
    /* A host name, or an IP literal: no percent-escapes, backslashes or
     * non-ASCII bytes, which URL parsers (APR's here, libcurl's for the
     * call) do not read alike. */
    {
        const char *auth = strstr(root, "://");
        int literal = auth != NULL && auth[3] == '[';

        for (c = u.hostname; *c; c++) {
            if (literal ? !(apr_isxdigit(*c) || *c == ':' || *c == '.')
                        : !(apr_isalnum(*c) || *c == '-' || *c == '.'
                            || *c == '_')) {
                *err = "host must be a name of letters, digits, '-', '.' "
                       "and '_', or an IP address (an international name "
                       "in its xn-- form)";
                return APR_EINVAL;
            }
        }
    }
    if (u.query != NULL) {
        *err = "URL must not have a query ('?')";
        return APR_EINVAL;
    }
    if (u.fragment != NULL) {
        *err = "URL must not have a fragment ('#')";
        return APR_EINVAL;
    }
    /* apr_uri_parse truncates the port to 16 bits without complaint */
    if (u.port_str != NULL && *u.port_str != '\0') {
        apr_int64_t port = 0;

        for (c = u.port_str; *c; c++) {
            if (!apr_isdigit(*c) || port > 65535) {
                break;
            }
            port = port * 10 + (*c - '0');
        }
        if (*c != '\0' || port < 1 || port > 65535) {
            *err = "port must be a number from 1 to 65535";
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

apr_status_t et_url_check_proxy(apr_pool_t *p, const char *url,
                                const char **norm, const char **err)
{
    apr_uri_t u;
    apr_port_t port;
    const char *scheme;
    int literal;

    *norm = NULL;
    /* user info first: the messages below must not make a user try again
     * with the password still in the URL */
    if (url != NULL && apr_uri_parse(p, url, &u) == APR_SUCCESS
        && (u.user != NULL || u.password != NULL)) {
        *err = "credentials must not be in the URL, where logs and "
               "configtest would show them; give them with "
               "credentials=file:PATH";
        return APR_EINVAL;
    }
    /* the same rules as an endpoint's: http or https, a host, a port */
    if (et_url_check_root(p, url, err) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if (u.path != NULL && *u.path != '\0' && strcmp(u.path, "/") != 0) {
        *err = "a proxy URL has no path (e.g. http://proxy.example.com:3128)";
        return APR_EINVAL;
    }
    /* libcurl would take 1080 for a proxy without a port: the scheme's */
    scheme = strcasecmp(u.scheme, "https") ? "http" : "https";
    port = u.port ? u.port : apr_uri_port_of_scheme(scheme);
    literal = strchr(u.hostname, ':') != NULL;
    *norm = apr_psprintf(p, "%s://%s%s%s:%u", scheme, literal ? "[" : "",
                         u.hostname, literal ? "]" : "", (unsigned)port);
    return APR_SUCCESS;
}

/* {root}/v1/{object}[/{id}]?event={ename}&txn={txn}; no id segment at all
 * when @a oid is NULL and @a with_id is 0. */
static const char *build(apr_pool_t *p, const char *root, et_object_e obj,
                         const char *oid, int with_id, const char *ename,
                         const char *txn)
{
    const char *oname = et_object_name(obj);
    const char *seg;
    apr_size_t rlen;

    if (root == NULL || oname == NULL || ename == NULL) {
        return NULL;
    }
    rlen = strlen(root);
    while (rlen > 0 && root[rlen - 1] == '/') {
        rlen--;
    }
    if (oid == NULL) {
        oid = "";
    }
    /* APR leaves dots alone; as a whole segment they would be collapsed by
     * URL normalisation on either side. */
    if (strcmp(oid, ".") == 0) {
        seg = "%2E";
    }
    else if (strcmp(oid, "..") == 0) {
        seg = "%2E%2E";
    }
    else {
        seg = apr_pescape_path_segment(p, oid);
    }
    return apr_pstrcat(p, apr_pstrmemdup(p, root, rlen), "/v1/", oname,
                       with_id ? "/" : "", with_id ? seg : "",
                       "?event=", ename, "&txn=", txn ? txn : "", NULL);
}

const char *et_url_build(apr_pool_t *p, const char *root, et_object_e obj,
                         const char *oid, et_event_e ev, const char *txn)
{
    return build(p, root, obj, oid, 1, et_event_name(ev), txn);
}

const char *et_url_build_before(apr_pool_t *p, const char *root,
                                et_object_e obj, const char *oid,
                                et_event_e ev, const char *txn)
{
    static const char *const names[] = { "pre-create", "pre-update",
                                         "pre-delete" };

    if ((unsigned)ev > ET_EV_DELETE) {
        return NULL;
    }
    return build(p, root, obj, oid, ev != ET_EV_CREATE, names[ev], txn);
}

apr_status_t et_txn_new(apr_pool_t *p, const char **txn)
{
    unsigned char rnd[TXN_BYTES];
    apr_uint64_t ms = (apr_uint64_t)apr_time_as_msec(apr_time_now());
    apr_status_t rv;
    int i;

    *txn = NULL;
    /* Capture time first (48 bits of milliseconds, as UUIDv7 does), then
     * 80 random bits: txns sort by capture, so the outbox's unique index
     * on txn grows at one end instead of taking a random page per event. */
    for (i = 5; i >= 0; i--) {
        rnd[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
    rv = apr_generate_random_bytes(rnd + 6, sizeof(rnd) - 6);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    /* apr_escape_hex writes lowercase digits */
    *txn = apr_pescape_hex(p, rnd, sizeof(rnd), 0);
    return *txn ? APR_SUCCESS : APR_ENOMEM;
}
