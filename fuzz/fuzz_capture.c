/* Licensed under the Apache License, Version 2.0. */
/*
 * libFuzzer target: from a console's answer to an event
 * (et_capture_to_event in lib/et_capture.c, with et_json, et_form, et_url).
 *
 * Input: 8 bytes of settings (object, event, format, capture limit, depth
 * limit, id length limit, flags, endpoint), then the id field, the request
 * path, the Location, the Content-Encoding and the body, separated by NUL
 * bytes (the body runs to the end and may hold NULs itself). Invariants: always an event with a
 * 32-hex txn; a failed one has a reason fit for a log line; a pending one
 * has a usable id, the URL built from it, and a body that is the object
 * with object_type (JSON that parses back, or a form with only encoded
 * characters), and never comes from an answer that the settings refuse.
 */
#include <apr_strings.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "et_capture.h"
#include "et_json.h"
#include "et_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const endpoints[] = {
    "http://cb.example.com/hooks",
    "https://cb.example.com:8443/hooks/",
    "http://127.0.0.1:9/",
    "https://[::1]/a/b//",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const apr_size_t limits[] = { 0, 1, 16, 64, 256, 4096, 65536,
                                         (apr_size_t)-1 };
    apr_pool_t *p;
    et_site_t site;
    et_capture_t c;
    et_event_t *ev = NULL;
    const char *s;
    size_t body_len, i;
    uint8_t flags;
    int expect_fail = 0;

    if (size < 8) {
        return 0;
    }
    p = fz_pool();
    memset(&site, 0, sizeof(site));
    memset(&c, 0, sizeof(c));
    site.name = "fuzz.example.com:443";
    site.endpoint = endpoints[data[7] & 3];
    site.format = (data[2] & 1) ? ET_FMT_FORM : ET_FMT_JSON;
    site.user_agent = ET_USER_AGENT_DEFAULT;
    c.site = &site;
    c.object = (et_object_e)(data[0] % 5);
    c.event = (et_event_e)(data[1] % 3);
    c.limit = limits[data[3] & 7];
    c.max_depth = data[4] % 70;
    c.max_id_len = data[5];
    flags = data[6];
    c.incomplete = flags & 1;
    data += 8;
    size -= 8;

    s = fz_field(p, &data, &size, NULL);
    /* a configured field name: httpd's config parser gives no control
     * characters */
    for (i = 0; s[i]; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            ((char *)s)[i] = 'x';
        }
    }
    c.id_field = (flags & 2) ? NULL : s;
    c.uri_path = (flags & 4) ? NULL : fz_field(p, &data, &size, NULL);
    s = fz_field(p, &data, &size, NULL);
    c.location = (flags & 128) ? NULL : s;
    s = fz_field(p, &data, &size, NULL);
    c.content_encoding = (flags & 8) ? s : NULL;
    /* the body: the rest, NULs and all, in a buffer of its own size so that
     * ASan sees any read past it */
    body_len = size;
    if (body_len) {
        char *b = malloc(body_len);
        memcpy(b, data, body_len);
        c.body = b;
    }
    c.body_len = body_len;
    /* a body cut at the capture limit: more bytes were seen than kept */
    c.body_total = (apr_off_t)body_len + ((flags & 16) ? 1 + ((flags >> 6) & 1) : 0);
    if (flags & 32) {
        site.endpoint = NULL;
    }

    FZ_CHECK(et_capture_to_event(p, &c, &ev) == APR_SUCCESS && ev != NULL,
             "an event for every capture");
    FZ_CHECK(ev->txn && strlen(ev->txn) == 32
             && strspn(ev->txn, "0123456789abcdef") == 32, "txn");
    FZ_CHECK(ev->body != NULL && ev->url != NULL && ev->oid != NULL,
             "strings are never NULL");

    if (c.object == ET_OBJ_NONE || site.endpoint == NULL || c.incomplete
        || (c.content_encoding && *c.content_encoding
            && strcasecmp(c.content_encoding, "identity"))
        || (apr_uint64_t)c.body_total > (apr_uint64_t)c.limit
        || c.body_len > c.limit) {
        expect_fail = 1;
    }
    if (ev->state == ET_ST_FAILED) {
        FZ_CHECK(ev->error && *ev->error, "a failed event says why");
        FZ_CHECK(ev->body_len == 0, "a failed event has no body");
        for (s = ev->error; *s; s++) {
            FZ_CHECK((unsigned char)*s >= 0x20 && *s != 0x7f,
                     "a control character in the reason: %s", ev->error);
        }
        goto done;
    }
    FZ_CHECK(ev->state == ET_ST_PENDING, "state %d", ev->state);
    FZ_CHECK(!expect_fail, "a pending event from an answer that the "
             "settings refuse (incomplete %d, coding %s, total %ld, limit "
             "%lu)", c.incomplete, c.content_encoding ? c.content_encoding : "-",
             (long)c.body_total, (unsigned long)c.limit);
    FZ_CHECK(*ev->oid, "an empty id");
    FZ_CHECK(c.max_id_len == 0 || strlen(ev->oid) <= c.max_id_len,
             "id longer than %lu", (unsigned long)c.max_id_len);
    for (s = ev->oid; *s; s++) {
        FZ_CHECK((unsigned char)*s >= 0x20 && *s != 0x7f,
                 "a control character in the id");
    }
    FZ_CHECK(!strcmp(ev->url, et_url_build(p, site.endpoint, c.object,
                                           ev->oid, c.event, ev->txn)),
             "the URL is built from the id: %s", ev->url);
    FZ_CHECK(strlen(ev->body) == ev->body_len && ev->body_len > 0,
             "body length");
    if (site.format == ET_FMT_JSON) {
        json_error_t e;
        /* duplicate names are refused: a receiver that keeps the first of
         * two "id"s must not read another id than the URL's */
        json_t *j = json_loadb(ev->body, ev->body_len,
                               JSON_REJECT_DUPLICATES, &e);
        json_t *ot;

        FZ_CHECK(j && json_is_object(j), "the JSON body parses back: %s",
                 e.text);
        ot = json_object_get(j, "object_type");
        FZ_CHECK(ot != NULL, "object_type in the body");
        {
            const char *f = c.id_field ? c.id_field : "id";
            /* a field starting with '/' is a JSON pointer */
            json_t *idv = *f == '/' ? et_json_pointer_get(j, f)
                                    : json_object_get(j, f);
            char num[32];

            if (json_is_integer(idv)) {
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(idv));
                FZ_CHECK(!strcmp(num, ev->oid), "integer id %s vs %s", num,
                         ev->oid);
            }
            else {
                FZ_CHECK(json_is_string(idv)
                         && !strcmp(json_string_value(idv), ev->oid),
                         "the body's id is the URL's id %s", ev->oid);
            }
        }
        json_decref(j);
    }
    else {
        for (i = 0; i < ev->body_len; i++) {
            FZ_CHECK(strchr("*-._%+&=[]", ev->body[i])
                     || (ev->body[i] >= 'a' && ev->body[i] <= 'z')
                     || (ev->body[i] >= 'A' && ev->body[i] <= 'Z')
                     || (ev->body[i] >= '0' && ev->body[i] <= '9'),
                     "byte 0x%02x in the form body",
                     (unsigned char)ev->body[i]);
        }
        FZ_CHECK(strstr(ev->body, "object_type=") != NULL,
                 "object_type in the form body");
    }
done:
    free((void *)c.body);
    apr_pool_destroy(p);
    return 0;
}
