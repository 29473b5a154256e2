/* Licensed under the Apache License, Version 2.0. */
/*
 * et_capture.c: from a console's answer to an event. This is the half of
 * the capture filter that reads untrusted bytes, kept free of httpd so that
 * it can be unit-tested and fuzzed on its own.
 *
 * A response that cannot be turned into a call still yields an event, in
 * state ET_ST_FAILED with the reason, so that the outbox records it.
 */
#include <string.h>

#include <apr_escape.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "et_capture.h"
#include "et_form.h"
#include "et_json.h"
#include "et_url.h"

#define DEFAULT_ID_FIELD "id"
#define OBJECT_TYPE      "object_type"
/* how much of a Content-Encoding value goes into the error */
#define CODING_SHOWN     32

static apr_status_t fail(et_event_t *ev, const char *why)
{
    ev->state = ET_ST_FAILED;
    ev->error = why;
    ev->body = "";
    ev->body_len = 0;
    return APR_SUCCESS;
}

/* The last non-empty segment of @a path, "" if there is none. */
/* The decoded path of a Location (absolute URL or path); query and
 * fragment dropped. */
static const char *location_path(apr_pool_t *p, const char *location)
{
    apr_uri_t u;
    const char *path;

    if (apr_uri_parse(p, location, &u) != APR_SUCCESS || !u.path) {
        return "";
    }
    path = apr_punescape_url(p, u.path, NULL, NULL, 0);
    return path ? path : "";
}

static const char *last_segment(apr_pool_t *p, const char *path)
{
    const char *end, *start;

    if (path == NULL) {
        return "";
    }
    end = path + strlen(path);
    while (end > path && end[-1] == '/') {
        end--;
    }
    start = end;
    while (start > path && start[-1] != '/') {
        start--;
    }
    return apr_pstrmemdup(p, start, end - start);
}

/* NULL if @a id is fit for a URL segment and a log line, else why not. */
static const char *check_id(apr_pool_t *p, const et_capture_t *c,
                            const char *id)
{
    const unsigned char *s;
    apr_size_t len = strlen(id);

    if (c->max_id_len > 0 && len > c->max_id_len) {
        return apr_psprintf(p, "id longer than %" APR_SIZE_T_FMT " bytes",
                            c->max_id_len);
    }
    for (s = (const unsigned char *)id; *s; s++) {
        if (*s < 0x20 || *s == 0x7f) {
            return "id contains control characters";
        }
    }
    return NULL;
}

/*
 * A validated JSON object's text with "object_type" added when @a type is
 * set. Surrounding whitespace goes; the last byte is then the object's '}'.
 */
static const char *verbatim_with_type(apr_pool_t *p, const char *body,
                                      apr_size_t len, int empty,
                                      const char *type, apr_size_t *out_len)
{
    const char *start = body, *end = body + len;
    const char *member;
    char *out;
    apr_size_t n, mlen;

    while (start < end && apr_isspace(*start)) {
        ++start;
    }
    while (end > start && apr_isspace(end[-1])) {
        --end;
    }
    n = end - start;
    if (!type) {
        *out_len = n;
        return apr_pstrmemdup(p, start, n);
    }
    member = apr_pstrcat(p, empty ? "" : ",", "\"" OBJECT_TYPE "\":\"", type,
                         "\"}", NULL);
    mlen = strlen(member);
    out = apr_palloc(p, n - 1 + mlen + 1);
    memcpy(out, start, n - 1);            /* all but the closing brace */
    memcpy(out + n - 1, member, mlen + 1);
    *out_len = n - 1 + mlen;
    return out;
}

apr_status_t et_capture_to_event(apr_pool_t *p, const et_capture_t *c,
                                 et_event_t **out)
{
    int has_type;
    const char *oname = et_object_name(c->object);
    const char *id_field = c->id_field ? c->id_field : DEFAULT_ID_FIELD;
    const char *txn, *id, *err;
    et_event_t *ev;
    json_t *obj;
    apr_status_t rv;

    *out = NULL;
    rv = et_txn_new(p, &txn);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ev = apr_pcalloc(p, sizeof(*ev));
    ev->txn = txn;
    ev->site = (c->site && c->site->name) ? c->site->name : "";
    ev->object = c->object;
    ev->event = c->event;
    ev->oid = "";
    ev->content_type = et_format_content_type(c->site ? c->site->format
                                                      : ET_FMT_JSON);
    ev->body = "";
    ev->url = "";
    ev->created = apr_time_now();
    /* EventTriggerRetry's first value delays the first attempt */
    ev->due = ev->created
              + (c->site && c->site->retry && c->site->retry->n > 0
                 ? c->site->retry->delays[0] : 0);
    ev->state = ET_ST_PENDING;
    *out = ev;

    if (oname == NULL) {
        return fail(ev, "no object type configured for this location");
    }
    if (c->site == NULL || c->site->endpoint == NULL) {
        return fail(ev, "no EventTriggerEndpoint configured for this site");
    }
    /* the URL of a failed event is never called; it shows where the call
     * would have gone */
    ev->url = et_url_build(p, c->site->endpoint, c->object, "", c->event,
                           txn);
    if (ev->url == NULL) {
        ev->url = "";
        return fail(ev, "cannot build the call URL");
    }

    if (c->incomplete) {
        return fail(ev, "response incomplete");
    }
    if (c->content_encoding != NULL && *c->content_encoding != '\0'
        && strcasecmp(c->content_encoding, "identity") != 0) {
        /* a header of the console's: shortened and escaped for the log */
        const char *coding = apr_pescape_echo(
            p, apr_pstrndup(p, c->content_encoding, CODING_SHOWN), 0);

        return fail(ev, apr_psprintf(p, "response is content-encoded (%s), "
                                     "cannot read the object", coding));
    }
    /* compared unsigned: a limit of APR_SIZE_MAX must not turn negative */
    if ((c->body_total > 0
         && (apr_uint64_t)c->body_total > (apr_uint64_t)c->limit)
        || c->body_len > c->limit) {
        apr_off_t total = c->body_total > (apr_off_t)c->body_len
                          ? c->body_total : (apr_off_t)c->body_len;

        return fail(ev, apr_psprintf(p, "response body of %" APR_OFF_T_FMT
                                     " bytes exceeds EventTriggerCaptureLimit "
                                     "%" APR_SIZE_T_FMT, total, c->limit));
    }

    if (c->body_len == 0 || c->body == NULL) {
        /* e.g. 204 to a DELETE: the request path names the object; a
         * create (POST to the collection) is named by its Location */
        if (c->event == ET_EV_CREATE) {
            if (!c->location) {
                return fail(ev, "create answered without a body or a "
                                "Location header: no id");
            }
            id = last_segment(p, location_path(p, c->location));
        }
        else {
            id = last_segment(p, c->uri_path);
        }
        if (*id == '\0') {
            return fail(ev, "no response body and no id in the request path");
        }
        err = check_id(p, c, id);
        if (err != NULL) {
            return fail(ev, err);
        }
        obj = et_json_pool_own(p, json_object());
        /* json_string refuses invalid UTF-8 */
        if (obj == NULL
            || json_object_set_new(obj, id_field, json_string(id)) != 0) {
            return fail(ev, "id in the request path is not valid UTF-8");
        }
    }
    else {
        rv = et_json_parse_object(p, c->body, c->body_len, c->max_depth,
                                  &obj, &err);
        if (rv != APR_SUCCESS) {
            return fail(ev, err);
        }
        rv = et_json_scalar_id(p, obj, id_field, &id, &err);
        if (rv == APR_NOTFOUND) {
            return fail(ev, apr_psprintf(p, "saved object has no '%s' field",
                                         id_field));
        }
        if (rv != APR_SUCCESS) {
            return fail(ev, err ? err : "unusable id");
        }
        err = check_id(p, c, id);
        if (err != NULL) {
            return fail(ev, err);
        }
    }
    ev->oid = id;
    ev->url = et_url_build(p, c->site->endpoint, c->object, id, c->event,
                           txn);

    has_type = json_object_get(obj, OBJECT_TYPE) != NULL;
    if (c->site->format == ET_FMT_JSON && c->body_len) {
        /* The console's own bytes: numbers, key order and escapes exactly
         * as it wrote them; object_type, if missing, goes in before the
         * closing brace of the (validated) object. */
        ev->body = verbatim_with_type(p, c->body, c->body_len,
                                      json_object_size(obj) == 0,
                                      has_type ? NULL : oname,
                                      &ev->body_len);
        return APR_SUCCESS;
    }
    if (!has_type
        && json_object_set_new(obj, OBJECT_TYPE, json_string(oname)) != 0) {
        return fail(ev, "cannot add object_type to the object");
    }
    if (c->site->format == ET_FMT_FORM) {
        rv = et_form_encode(p, obj, &ev->body, &ev->body_len);
        if (rv != APR_SUCCESS) {
            return fail(ev, "cannot form-encode the object");
        }
    }
    else {
        ev->body = et_json_dump(p, obj, &ev->body_len);
        if (ev->body == NULL) {
            return fail(ev, "cannot serialise the object as JSON");
        }
    }
    return APR_SUCCESS;
}
