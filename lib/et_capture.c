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
#include "et_jsonrpc.h"
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

/* The last non-empty segment of @a path, "" if there is none. */
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

const char *et_capture_path_id(apr_pool_t *p, const char *path)
{
    return last_segment(p, path);
}

int et_capture_is_json_type(const char *ct)
{
    apr_size_t n;

    if (ct == NULL) {
        return 1;
    }
    while (apr_isspace(*ct)) {
        ct++;
    }
    n = strcspn(ct, "; \t");
    if (n == 0) {
        return 1;
    }
    return (n == 16 && !strncasecmp(ct, "application/json", n))
           || (n == 9 && !strncasecmp(ct, "text/json", n))
           || (n > 5 && !strncasecmp(ct + n - 5, "+json", 5));
}

/* A new pending event of @a object and @a event, with its txn. */
static apr_status_t new_event(apr_pool_t *p, const et_capture_t *c,
                              et_object_e object, et_event_e event,
                              et_event_t **out)
{
    const char *txn;
    et_event_t *ev;
    apr_status_t rv;

    *out = NULL;
    rv = et_txn_new(p, &txn);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ev = apr_pcalloc(p, sizeof(*ev));
    ev->txn = txn;
    ev->site = (c->site && c->site->name) ? c->site->name : "";
    ev->object = object;
    ev->event = event;
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
    return APR_SUCCESS;
}

/* NULL if the answer can be read as the object's JSON, else why not. Also
 * sets the URL a failed event shows (where the call would have gone). */
static const char *answer_problem(apr_pool_t *p, const et_capture_t *c,
                                  et_event_t *ev)
{
    if (et_object_name(ev->object) == NULL) {
        return "no object type configured for this location";
    }
    if (c->site == NULL || c->site->endpoint == NULL) {
        return "no EventTriggerEndpoint configured for this site";
    }
    ev->url = et_url_build(p, c->site->endpoint, ev->object, "", ev->event,
                           ev->txn);
    if (ev->url == NULL) {
        ev->url = "";
        return "cannot build the call URL";
    }
    if (c->incomplete) {
        return "response incomplete";
    }
    if (c->content_encoding != NULL && *c->content_encoding != '\0'
        && strcasecmp(c->content_encoding, "identity") != 0) {
        /* a header of the console's: shortened and escaped for the log */
        const char *coding = apr_pescape_echo(
            p, apr_pstrndup(p, c->content_encoding, CODING_SHOWN), 0);

        return apr_psprintf(p, "response is content-encoded (%s), cannot "
                            "read the object", coding);
    }
    /* compared unsigned: a limit of APR_SIZE_MAX must not turn negative */
    if ((c->body_total > 0
         && (apr_uint64_t)c->body_total > (apr_uint64_t)c->limit)
        || c->body_len > c->limit) {
        apr_off_t total = c->body_total > (apr_off_t)c->body_len
                          ? c->body_total : (apr_off_t)c->body_len;

        return apr_psprintf(p, "response body of %" APR_OFF_T_FMT " bytes "
                            "exceeds EventTriggerCaptureLimit %"
                            APR_SIZE_T_FMT, total, c->limit);
    }
    if (c->body_len > 0 && !et_capture_is_json_type(c->content_type)) {
        /* an admin's browser page (DRF's browsable API, a form's HTML
         * answer): say what it was rather than how it failed to parse */
        const char *ct = apr_pescape_echo(
            p, apr_pstrndup(p, c->content_type, CODING_SHOWN), 0);

        return apr_psprintf(p, "answer is %.*s, not JSON",
                            (int)strcspn(ct, "; \t"), ct);
    }
    return NULL;
}

/* The id field of @a object's saved objects. */
static const char *id_field_of(const et_capture_t *c, et_object_e object)
{
    if (c->id_fields && object > ET_OBJ_NONE && object <= ET_OBJ_PACKAGE_KEY
        && c->id_fields[object]) {
        return c->id_fields[object];
    }
    return c->id_field ? c->id_field : DEFAULT_ID_FIELD;
}

/* The id the request names: the glue's, else the path's last segment. */
static const char *request_id(apr_pool_t *p, const et_capture_t *c)
{
    return c->path_id && *c->path_id ? c->path_id
                                     : last_segment(p, c->uri_path);
}

/* Put @a id into @a obj under the id field (a name or a pointer). */
static int add_id(json_t *obj, const char *id_field, const char *id)
{
    json_t *v = json_string(id);

    /* json_string refuses invalid UTF-8 */
    if (v == NULL) {
        return -1;
    }
    if (*id_field == '/') {
        return et_json_pointer_set(obj, id_field, v);
    }
    return json_object_set_new(obj, id_field, v);
}

/*
 * The rest of an event, from the saved object @a obj and its @a id: the
 * URL, and the body in the site's format. @a verbatim (JSON format only)
 * is the console's own text of @a obj, sent as it was written (numbers,
 * key order and escapes kept); NULL to serialise @a obj.
 */
static apr_status_t finish_event(apr_pool_t *p, const et_capture_t *c,
                                 et_event_t *ev, json_t *obj, const char *id,
                                 const char *verbatim, apr_size_t vlen)
{
    const char *oname = et_object_name(ev->object);
    const char *err = check_id(p, c, id);
    int has_type;

    if (err != NULL) {
        return fail(ev, err);
    }
    ev->oid = id;
    ev->url = et_url_build(p, c->site->endpoint, ev->object, id, ev->event,
                           ev->txn);
    has_type = json_object_get(obj, OBJECT_TYPE) != NULL;
    if (c->site->format == ET_FMT_JSON && verbatim != NULL) {
        /* object_type, if missing, goes in before the closing brace of the
         * (validated) object */
        ev->body = verbatim_with_type(p, verbatim, vlen,
                                      json_object_size(obj) == 0,
                                      has_type ? NULL : oname, &ev->body_len);
        return APR_SUCCESS;
    }
    if (!has_type
        && json_object_set_new(obj, OBJECT_TYPE, json_string(oname)) != 0) {
        return fail(ev, "cannot add object_type to the object");
    }
    if (c->site->format == ET_FMT_FORM) {
        if (et_form_encode(p, obj, &ev->body, &ev->body_len) != APR_SUCCESS) {
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

/* The rest of an event whose saved object lacked its id: @a id, named by
 * the request, goes into the body under the id field. */
static apr_status_t finish_named(apr_pool_t *p, const et_capture_t *c,
                                 et_event_t *ev, json_t *obj,
                                 const char *id_field, const char *id)
{
    const char *err = check_id(p, c, id);

    if (err != NULL) {
        return fail(ev, err);
    }
    if (add_id(obj, id_field, id) != 0) {
        return fail(ev, apr_psprintf(p, "cannot add the id to the saved "
                                     "object under '%s'", id_field));
    }
    return finish_event(p, c, ev, obj, id, NULL, 0);
}

/* What EventTriggerObject names in @a root, or NULL with *err. */
static json_t *saved_object(apr_pool_t *p, const et_capture_t *c,
                            const json_t *root, const char *where,
                            const char **err)
{
    json_t *obj = et_json_pointer_get(root, c->object_ptr);

    *err = NULL;
    if (obj == NULL) {
        *err = apr_psprintf(p, "EventTriggerObject %s finds nothing in %s",
                            c->object_ptr, where);
    }
    else if (!json_is_object(obj)) {
        *err = c->object_ptr && *c->object_ptr
               ? apr_psprintf(p, "EventTriggerObject %s finds a JSON %s in "
                              "%s, not an object", c->object_ptr,
                              et_json_type_name(obj), where)
               : apr_psprintf(p, "%s is a JSON %s, not an object", where,
                              et_json_type_name(obj));
        obj = NULL;
    }
    return obj;
}

apr_status_t et_capture_to_event(apr_pool_t *p, const et_capture_t *c,
                                 et_event_t **out)
{
    const char *id_field = id_field_of(c, c->object);
    const char *id, *err;
    et_event_t *ev;
    json_t *obj, *root;
    apr_status_t rv;
    int whole = c->object_ptr == NULL || *c->object_ptr == '\0';

    rv = new_event(p, c, c->object, c->event, out);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ev = *out;
    err = answer_problem(p, c, ev);
    if (err != NULL) {
        return fail(ev, err);
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
            id = request_id(p, c);
        }
        if (*id == '\0') {
            return fail(ev, "no response body and no id in the request path");
        }
        err = check_id(p, c, id);
        if (err != NULL) {
            return fail(ev, err);
        }
        obj = et_json_pool_own(p, json_object());
        if (obj == NULL || add_id(obj, id_field, id) != 0) {
            return fail(ev, "id in the request path is not valid UTF-8");
        }
        return finish_event(p, c, ev, obj, id, NULL, 0);
    }

    rv = whole ? et_json_parse_object(p, c->body, c->body_len, c->max_depth,
                                      &root, &err)
               : et_json_parse_value(p, c->body, c->body_len, c->max_depth,
                                     &root, &err);
    if (rv != APR_SUCCESS) {
        return fail(ev, err);
    }
    obj = saved_object(p, c, root, "the answer", &err);
    if (obj == NULL) {
        return fail(ev, err);
    }
    rv = et_json_scalar_id(p, obj, id_field, &id, &err);
    if (rv == APR_NOTFOUND) {
        /* An answer without the id (json-server's "{}" to a DELETE, an
         * update answered with the changed fields): the request names the
         * object, a create its Location. The id goes into the body. */
        id = c->event != ET_EV_CREATE ? request_id(p, c)
             : c->location ? last_segment(p, location_path(p, c->location))
             : "";
        if (*id == '\0') {
            return fail(ev, apr_psprintf(p, "saved object has no '%s' "
                                         "field%s", id_field,
                                         c->event == ET_EV_CREATE
                                         ? " and no Location names it"
                                         : " and the request path names no "
                                           "id"));
        }
        return finish_named(p, c, ev, obj, id_field, id);
    }
    if (rv != APR_SUCCESS) {
        return fail(ev, err ? err : "unusable id");
    }
    return finish_event(p, c, ev, obj, id, whole ? c->body : NULL,
                        c->body_len);
}

/* The event of one answered call. */
static apr_status_t rpc_event(apr_pool_t *p, const et_capture_t *c,
                              const et_rpc_call_t *call,
                              const json_t *response, et_event_t **out)
{
    const char *id_field = id_field_of(c, call->object);
    const char *id, *err, *where;
    json_t *result, *obj;
    et_event_t *ev;
    apr_status_t rv;

    rv = new_event(p, c, call->object, call->event, out);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    ev = *out;
    err = answer_problem(p, c, ev);
    if (err != NULL) {
        return fail(ev, err);
    }
    where = apr_psprintf(p, "the result of %s",
                         apr_pescape_echo(p, apr_pstrndup(p, call->method,
                                                          64), 0));
    result = json_object_get(response, "result");
    if (call->event == ET_EV_DELETE
        && (!json_is_object(result)
            || (c->object_ptr && *c->object_ptr
                && !json_is_object(et_json_pointer_get(result,
                                                       c->object_ptr))))) {
        /* a delete's result is often true or null: the params name it */
        obj = et_json_pool_own(p, json_object());
    }
    else {
        obj = saved_object(p, c, result, where, &err);
        if (obj == NULL) {
            return fail(ev, err);
        }
        /* the body is built from it, with the id added if need be: a copy,
         * so that the parsed answer stays as it was for the other calls */
        obj = et_json_pool_own(p, json_deep_copy(obj));
    }
    if (obj == NULL) {
        return fail(ev, "out of memory");
    }
    rv = et_json_scalar_id(p, obj, id_field, &id, &err);
    if (rv == APR_SUCCESS) {
        return finish_event(p, c, ev, obj, id, NULL, 0);
    }
    if (rv != APR_NOTFOUND) {
        return fail(ev, err ? err : "unusable id");
    }
    id = call->event == ET_EV_CREATE ? "" : et_rpc_param_id(p, call, id_field);
    if (*id == '\0') {
        return fail(ev, apr_psprintf(p, "%s has no '%s' field%s", where,
                                     id_field,
                                     call->event == ET_EV_CREATE ? ""
                                     : " and its first param names no id"));
    }
    return finish_named(p, c, ev, obj, id_field, id);
}

apr_status_t et_capture_jsonrpc(apr_pool_t *p, const et_capture_t *c,
                                const apr_array_header_t *calls, int batch,
                                apr_array_header_t **out)
{
    const et_rpc_call_t *first;
    const char *err;
    et_event_t *ev;
    json_t *answer = NULL;
    apr_status_t rv;
    int i;

    *out = apr_array_make(p, calls->nelts, sizeof(et_event_t *));
    /* notifications get no answer (2.0) and so make no event: the first
     * call that expects one stands for the request */
    first = NULL;
    for (i = 0; i < calls->nelts && !first; i++) {
        const et_rpc_call_t *call = APR_ARRAY_IDX(calls, i,
                                                  const et_rpc_call_t *);
        if (call->id) {
            first = call;
        }
    }
    if (first == NULL) {
        return APR_SUCCESS;
    }
    /* an answer that cannot be read at all: one failed event says so */
    rv = new_event(p, c, first->object, first->event, &ev);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    err = answer_problem(p, c, ev);
    if (err == NULL && (c->body_len == 0 || c->body == NULL)) {
        err = "JSON-RPC answer without a body";
    }
    if (err == NULL
        && et_json_parse_value(p, c->body, c->body_len, c->max_depth,
                               &answer, &err) == APR_SUCCESS
        && !json_is_object(answer) && !json_is_array(answer)) {
        err = apr_psprintf(p, "JSON-RPC answer is a JSON %s",
                           et_json_type_name(answer));
    }
    if (err != NULL) {
        fail(ev, err);
        *(et_event_t **)apr_array_push(*out) = ev;
        return APR_SUCCESS;
    }
    for (i = 0; i < calls->nelts; i++) {
        const et_rpc_call_t *call = APR_ARRAY_IDX(calls, i,
                                                  const et_rpc_call_t *);
        const json_t *response = call->id ? et_rpc_response(answer, batch,
                                                            call)
                                          : NULL;

        if (response == NULL || et_rpc_failed(response)) {
            continue;                 /* not saved, or nothing says so */
        }
        rv = rpc_event(p, c, call, response, &ev);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        *(et_event_t **)apr_array_push(*out) = ev;
    }
    return APR_SUCCESS;
}
