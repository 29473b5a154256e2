/* Licensed under the Apache License, Version 2.0. */
/*
 * libFuzzer target: the endpoint check and the URL builder (lib/et_url.c).
 *
 * Input: byte 0 picks the object, byte 1 the event, then root, id and txn
 * separated by NUL bytes. For every root that et_url_check_root accepts,
 * the built URL must be the root (trailing '/' dropped) + "/v1/<object>/"
 * + exactly one path segment that decodes back to the id + the query
 * "event=..&txn=..", and libcurl's own URL parser (the one that makes the
 * call) must see the same scheme, host and port as APR's parser did when
 * the root was checked: never a call to another host than the one
 * configured.
 */
#include <ctype.h>
#include <arpa/inet.h>

#include <apr_strings.h>
#include <apr_uri.h>
#include <curl/curl.h>

#include "fuzz_common.h"
#include "et_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int seg_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("/?#%[]; ", c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    et_object_e obj;
    et_event_e ev;
    const char *root, *oid, *txn, *err = NULL, *url, *oname, *ename;
    const char *seg, *q;
    size_t rlen, oidlen;
    apr_uri_t u;
    CURLU *cu;
    char *cpart = NULL;

    if (size < 2) {
        return 0;
    }
    obj = (et_object_e)(data[0] % 6);
    ev = (et_event_e)(data[1] % 4);
    data += 2;
    size -= 2;
    p = fz_pool();
    root = fz_field(p, &data, &size, NULL);
    oid = fz_field(p, &data, &size, &oidlen);
    txn = fz_field(p, &data, &size, NULL);
    oidlen = strlen(oid);

    if (et_url_check_root(p, root, &err) != APR_SUCCESS) {
        FZ_CHECK(err != NULL && *err, "a refusal says why");
        apr_pool_destroy(p);
        return 0;
    }
    FZ_CHECK(err == NULL, "no error on success");
    url = et_url_build(p, root, obj, oid, ev, txn);
    oname = et_object_name(obj);
    ename = et_event_name(ev);
    if (oname == NULL || ename == NULL) {
        FZ_CHECK(url == NULL, "unknown object or event gives no URL");
        apr_pool_destroy(p);
        return 0;
    }
    FZ_CHECK(url != NULL, "a URL for root %s", root);

    rlen = strlen(root);
    while (rlen > 0 && root[rlen - 1] == '/') {
        rlen--;
    }
    FZ_CHECK(!strncmp(url, root, rlen), "url %s keeps root %s", url, root);
    seg = apr_pstrcat(p, "/v1/", oname, "/", NULL);
    FZ_CHECK(!strncmp(url + rlen, seg, strlen(seg)), "url %s", url);
    seg = url + rlen + strlen(seg);
    q = strchr(seg, '?');
    FZ_CHECK(q != NULL, "url %s has a query", url);
    {
        size_t n = (size_t)(q - seg), i;
        char *dec = apr_palloc(p, n + 1);
        long dl;

        for (i = 0; i < n; i++) {
            FZ_CHECK(seg_char_ok((unsigned char)seg[i]) || seg[i] == '%',
                     "byte 0x%02x in the id segment of %s",
                     (unsigned char)seg[i], url);
        }
        FZ_CHECK(!(n == 1 && seg[0] == '.') && !(n == 2 && !strncmp(seg, "..", 2)),
                 "a dot segment in %s", url);
        FZ_CHECK(n > 0 || oidlen == 0, "empty segment for id %s", oid);
        dl = fz_unescape(dec, seg, n, 0);
        FZ_CHECK(dl >= 0 && (size_t)dl == oidlen && !memcmp(dec, oid, oidlen),
                 "segment of %s does not decode to the id", url);
    }
    FZ_CHECK(!strcmp(q + 1, apr_pstrcat(p, "event=", ename, "&txn=", txn,
                                        NULL)), "query of %s", url);

    /* libcurl must call the host that APR checked */
    FZ_CHECK(apr_uri_parse(p, root, &u) == APR_SUCCESS, "reparse %s", root);
    cu = curl_url();
    FZ_CHECK(cu != NULL, "curl_url");
    if (curl_url_set(cu, CURLUPART_URL, url, 0) == CURLUE_OK) {
        FZ_CHECK(curl_url_get(cu, CURLUPART_SCHEME, &cpart, 0) == CURLUE_OK
                 && !strcasecmp(cpart, u.scheme), "scheme of %s", url);
        curl_free(cpart);
        cpart = NULL;
        FZ_CHECK(curl_url_get(cu, CURLUPART_HOST, &cpart, 0) == CURLUE_OK,
                 "host of %s", url);
        {
            /* curl keeps brackets around an IPv6 literal, APR does not */
            const char *h = cpart;
            size_t hl = strlen(h);
            if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
                h++;
                hl -= 2;
            }
            struct in_addr a1, a2;
            struct in6_addr b1, b2;
            const char *hc = apr_pstrmemdup(p, h, hl);

            /* curl writes a numeric IPv4 host in full ("17.0.0" is
             * 17.0.0.0, as inet_aton reads it): the same address */
            FZ_CHECK((inet_aton(u.hostname, &a1) && inet_aton(hc, &a2)
                      && a1.s_addr == a2.s_addr)
                     || (inet_pton(AF_INET6, u.hostname, &b1) == 1
                         && inet_pton(AF_INET6, hc, &b2) == 1
                         && !memcmp(&b1, &b2, sizeof(b1)))
                     || (hl == strlen(u.hostname)
                         && !strncasecmp(h, u.hostname, hl)),
                     "curl's host '%s' is not APR's '%s' in %s", cpart,
                     u.hostname, url);
        }
        curl_free(cpart);
        cpart = NULL;
        if (curl_url_get(cu, CURLUPART_PORT, &cpart, CURLU_DEFAULT_PORT)
            == CURLUE_OK) {
            unsigned long cport = strtoul(cpart, NULL, 10);
            unsigned long aport = u.port ? u.port
                                         : apr_uri_port_of_scheme(u.scheme);
            FZ_CHECK(cport == aport, "curl's port %lu is not APR's %lu in %s",
                     cport, aport, url);
            curl_free(cpart);
            cpart = NULL;
        }
    }
    curl_url_cleanup(cu);
    apr_pool_destroy(p);
    return 0;
}
