/* Licensed under the Apache License, Version 2.0. */

/*
 * mod_et_console: the in-process twin of t/bin/console.py, a stand-in for an
 * admin console that httpd serves itself, so that mod_eventtrigger is tested
 * on a response made inside httpd (no proxy in between). Apache::Test builds
 * it with apxs from t/c-modules/ (see t/TEST for the -ljansson it needs).
 *
 * Handlers:
 *
 *   SetHandler et-console   same answers as console.py (see its docstring):
 *     POST                 -> 201, the JSON object sent, with "id" (kept, or
 *                             assigned "<last segment>-<pid>-<n>")
 *     PUT, PATCH           -> 200, the object sent, "id" from the body or else
 *                             the last path segment
 *     DELETE               -> 200 likewise ({"id": ...} for no body);
 *                             204 without a body when the query has nobody=1
 *     GET (HEAD)           -> 200 {"id": <last segment>}
 *     X-Console-Status: NNN   answer NNN with {"error": ...}
 *     X-Console-Chunked: 1    send the body in flushed pieces (chunked)
 *     X-Console-Hold: PATH    with X-Console-Chunked: after the first piece,
 *                             wait until the file PATH exists (30 s at most)
 *     X-Console-Raw: 1        echo the request body as application/json
 *     X-Console-Return: NNN   no body: the handler returns NNN instead of
 *                             OK (as a handler that "return HTTP_NO_CONTENT;"
 *                             does), so httpd answers through ap_die(); a
 *                             POST's Location names the new object
 *   In a subrequest the request body is not read (it is the main request's);
 *   it counts as {}.
 *
 *   SetHandler et-subreq    GET ?m=METHOD&u=URI runs a subrequest METHOD URI
 *     (ap_sub_req_method_uri + ap_run_sub_req) and answers 200, text/plain:
 *     the subrequest's output followed by a line "subreq-status: NNN".
 *     For the test that a subrequest with a mapping method makes no event.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_log.h"
#include "apr_atomic.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_sha1.h"
#include "util_script.h"

#include <jansson.h>

#include <unistd.h>

#define ET_CONSOLE_MAX_BODY (16 * 1024 * 1024)

static volatile apr_uint32_t et_console_counter = 0;

static int read_body(request_rec *r, char **buf, apr_size_t *len)
{
    apr_size_t size = 0, cap = 8192;
    char *data;
    int rv;

    *buf = NULL;
    *len = 0;
    if (r->main) {
        return OK;
    }
    if ((rv = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        return rv;
    }
    if (!ap_should_client_block(r)) {
        return OK;
    }
    data = apr_palloc(r->pool, cap);
    for (;;) {
        long n;

        if (cap - size < 4096) {
            char *bigger;

            if (cap >= ET_CONSOLE_MAX_BODY) {
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            bigger = apr_palloc(r->pool, cap * 2);
            memcpy(bigger, data, size);
            data = bigger;
            cap *= 2;
        }
        n = ap_get_client_block(r, data + size, cap - size);
        if (n < 0) {
            return HTTP_BAD_REQUEST;
        }
        if (n == 0) {
            break;
        }
        size += (apr_size_t)n;
    }
    *buf = data;
    *len = size;
    return OK;
}

/* What the console read, for tests that compare it with what was sent. */
static void note_body(request_rec *r, const char *body, apr_size_t len)
{
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    char hex[2 * APR_SHA1_DIGESTSIZE + 1];
    apr_sha1_ctx_t ctx;
    int i;

    apr_sha1_init(&ctx);
    apr_sha1_update_binary(&ctx, (const unsigned char *)(body ? body : ""),
                           (unsigned int)len);
    apr_sha1_final(digest, &ctx);
    for (i = 0; i < APR_SHA1_DIGESTSIZE; i++) {
        apr_snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }
    apr_table_setn(r->headers_out, "X-Console-Body-Sha1",
                   apr_pstrdup(r->pool, hex));
    apr_table_setn(r->headers_out, "X-Console-Body-Length",
                   apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, len));
}

/* The last segment of the decoded request path, "" if none. */
static const char *last_segment(request_rec *r)
{
    const char *uri = r->uri;
    apr_size_t end = strlen(uri), start;

    while (end > 0 && uri[end - 1] == '/') {
        end--;
    }
    for (start = end; start > 0 && uri[start - 1] != '/'; start--)
        ;
    return apr_pstrmemdup(r->pool, uri + start, end - start);
}

/* Whether the query string holds the parameter @a param exactly. */
static int has_param(request_rec *r, const char *param)
{
    char *args, *tok, *last;

    if (!r->args) {
        return 0;
    }
    args = apr_pstrdup(r->pool, r->args);
    for (tok = apr_strtok(args, "&", &last); tok;
         tok = apr_strtok(NULL, "&", &last)) {
        if (!strcmp(tok, param)) {
            return 1;
        }
    }
    return 0;
}

static void send_body(request_rec *r, const char *body, apr_size_t len,
                      const char *ctype)
{
    const char *chunked = apr_table_get(r->headers_in, "X-Console-Chunked");

    ap_set_content_type(r, ctype);
    if (r->header_only) {
        return;
    }
    if (chunked && !strcmp(chunked, "1")) {
        apr_size_t step = len / 3 ? len / 3 : 1, off;

        const char *hold = apr_table_get(r->headers_in, "X-Console-Hold");

        for (off = 0; off < len; off += step) {
            ap_rwrite(body + off, (int)(len - off < step ? len - off : step), r);
            ap_rflush(r);
            if (hold) {
                int i;

                for (i = 0; i < 3000 && access(hold, F_OK) != 0; i++) {
                    apr_sleep(apr_time_from_msec(10));
                }
                hold = NULL;
            }
        }
    }
    else {
        ap_set_content_length(r, (apr_off_t)len);
        ap_rwrite(body, (int)len, r);
    }
}

static int send_json(request_rec *r, int status, json_t *obj)
{
    char *text = json_dumps(obj, JSON_ENCODE_ANY);

    json_decref(obj);
    if (!text) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    r->status = status;
    send_body(r, text, strlen(text), "application/json");
    free(text);
    return OK;
}

static int send_error(request_rec *r, int status, const char *msg)
{
    return send_json(r, status, json_pack("{s:s}", "error", msg));
}

/* X-Console-Shape (as t/bin/console.py): the answer in another console's
 * shape. Takes over @a data. */
static int send_shaped(request_rec *r, int status, json_t *data)
{
    const char *shape = apr_table_get(r->headers_in, "X-Console-Shape");

    if (!shape) {
        return send_json(r, status, data);
    }
    if (!strcmp(shape, "empty")) {
        json_decref(data);
        return send_json(r, status, json_object());
    }
    if (!strcmp(shape, "noid")) {
        json_object_del(data, "id");
        return send_json(r, status, data);
    }
    if (!strncmp(shape, "wrap:", 5)) {
        return send_json(r, status, json_pack("{s:o,s:{}}", shape + 5, data,
                                              "meta"));
    }
    if (!strcmp(shape, "html")) {
        char *text = json_dumps(data, 0);
        const char *page = apr_pstrcat(r->pool, "<!DOCTYPE html>\n<html><body>"
                                       "<p>Saved ", text ? text : "",
                                       "</p></body></html>\n", NULL);

        free(text);
        json_decref(data);
        r->status = status;
        send_body(r, page, strlen(page), "text/html; charset=utf-8");
        return OK;
    }
    return send_json(r, status, data);
}

/* One JSON-RPC call's answer (see console.py's _rpc_one). */
static json_t *rpc_one(request_rec *r, json_t *call)
{
    const char *method = json_string_value(json_object_get(call, "method"));
    const char *dot, *op;
    json_t *params, *first = NULL, *answer, *id, *result = NULL, *err = NULL;
    int v2;

    if (!json_is_object(call) || !method) {
        return json_pack("{s:n,s:{s:i,s:s},s:n}", "result", "error", "code",
                         -32600, "message", "Invalid Request", "id");
    }
    dot = strrchr(method, '.');
    op = dot ? dot + 1 : "";
    params = json_object_get(call, "params");
    if (json_is_array(params)) {
        first = json_array_get(params, 0);
    }
    else if (json_is_object(params)) {
        first = params;
    }
    if (json_is_object(first) && json_is_true(json_object_get(first, "fail"))) {
        err = json_pack("{s:i,s:s}", "code", 1000, "message", "refused");
    }
    else if ((!strcmp(op, "create") || !strcmp(op, "update"))
             && json_is_object(first)) {
        char *oname = apr_pstrmemdup(r->pool, method, dot - method);

        result = json_deep_copy(first);
        if (!strcmp(op, "create") && !json_object_get(result, "id")
            && !json_object_get(result, "username")
            && !json_object_get(result, "apikey")) {
            apr_uint32_t n = apr_atomic_inc32(&et_console_counter) + 1;

            json_object_set_new(result, "id", json_string(
                apr_psprintf(r->pool, "%s-%ld-%u", oname, (long)getpid(), n)));
        }
        json_object_set_new(result, "object_type", json_string(oname));
    }
    else if (!strcmp(op, "delete")) {
        result = json_true();
    }
    else if (!strcmp(op, "fetch")) {
        result = json_pack("{s:O?}", "id", first);
    }
    else {
        err = json_pack("{s:i,s:s}", "code", -32601, "message",
                        "Method not found");
    }
    id = json_object_get(call, "id");
    v2 = !strcmp(json_string_value(json_object_get(call, "jsonrpc"))
                 ? json_string_value(json_object_get(call, "jsonrpc")) : "",
                 "2.0");
    answer = json_pack("{s:O?}", "id", id);
    if (v2) {
        json_object_set_new(answer, "jsonrpc", json_string("2.0"));
        json_object_set_new(answer, err ? "error" : "result",
                            err ? err : result);
    }
    else {
        json_object_set_new(answer, "result", result ? result : json_null());
        json_object_set_new(answer, "error", err ? err : json_null());
    }
    return answer;
}

static int rpc_answer(request_rec *r, const char *body, apr_size_t len)
{
    json_t *req = json_loadb(body ? body : "", len, JSON_DECODE_ANY, NULL);
    json_t *answer;

    if (!req) {
        return send_json(r, HTTP_OK,
                         json_pack("{s:n,s:n,s:{s:i,s:s}}", "result", "id",
                                   "error", "code", -32700, "message",
                                   "Parse error"));
    }
    if (json_is_array(req)) {
        size_t i = json_array_size(req);

        answer = json_array();
        while (i-- > 0) {             /* in reverse order */
            json_t *call = json_array_get(req, i);

            if (json_is_object(call) && !json_object_get(call, "id")) {
                continue;             /* a 2.0 notification */
            }
            json_array_append_new(answer, rpc_one(r, call));
        }
    }
    else {
        answer = rpc_one(r, req);
    }
    json_decref(req);
    return send_json(r, HTTP_OK, answer);
}

/* X-Console-Return: the handler's answer is only its return code, which
 * httpd then sends through ap_die() (a POST's Location names the object). */
static int return_status(request_rec *r, json_t *data, const char *returned)
{
    int status = atoi(returned);

    if (r->method_number == M_POST) {
        const char *nid = json_string_value(json_object_get(data, "id"));

        apr_table_setn(r->headers_out, "Location",
                       apr_pstrcat(r->pool, r->uri, "/",
                                   ap_escape_uri(r->pool, nid ? nid : ""),
                                   NULL));
    }
    json_decref(data);
    return status >= 200 && status <= 599 ? status : HTTP_BAD_REQUEST;
}

static int et_console_handler(request_rec *r)
{
    const char *forced, *raw, *seg, *returned;
    char *body;
    apr_size_t len;
    json_t *data, *id;
    json_error_t jerr;
    int rv;

    if (!r->handler || strcmp(r->handler, "et-console")) {
        return DECLINED;
    }
    switch (r->method_number) {
    case M_GET: case M_POST: case M_PUT: case M_PATCH: case M_DELETE:
        break;
    default:
        return HTTP_METHOD_NOT_ALLOWED;
    }

    if ((rv = read_body(r, &body, &len)) != OK) {
        return rv;
    }
    note_body(r, body, len);
    {
        const char *shape = apr_table_get(r->headers_in, "X-Console-Shape");

        if (shape && !strcmp(shape, "jsonrpc") && r->method_number == M_POST) {
            return rpc_answer(r, body, len);
        }
    }
    raw = apr_table_get(r->headers_in, "X-Console-Raw");
    if (raw && !strcmp(raw, "1") && r->method_number != M_GET) {
        r->status = r->method_number == M_POST ? HTTP_CREATED : HTTP_OK;
        send_body(r, body ? body : "", len, "application/json");
        return OK;
    }
    forced = apr_table_get(r->headers_in, "X-Console-Status");
    if (forced) {
        int status = atoi(forced);

        if (status < 100 || status > 599) {
            return HTTP_BAD_REQUEST;
        }
        return send_json(r, status,
                         json_pack("{s:s}", "error",
                                   apr_psprintf(r->pool, "forced status %d",
                                                status)));
    }

    seg = last_segment(r);
    if (r->method_number == M_GET) {
        return send_json(r, HTTP_OK, json_pack("{s:s}", "id", seg));
    }

    data = NULL;
    if (body) {
        apr_size_t i;

        for (i = 0; i < len && apr_isspace(body[i]); i++)
            ;
        if (i < len) {
            data = json_loadb(body, len, 0, &jerr);
            if (!data) {
                return send_error(r, HTTP_BAD_REQUEST,
                                  apr_psprintf(r->pool, "bad JSON: %s",
                                               jerr.text));
            }
        }
    }
    if (!data) {
        data = json_object();
    }
    if (!json_is_object(data)) {
        json_decref(data);
        return send_error(r, HTTP_BAD_REQUEST, "a JSON object is expected");
    }

    id = json_object_get(data, "id");
    if (r->method_number == M_POST) {
        if (!id || json_is_null(id)) {
            apr_uint32_t n = apr_atomic_inc32(&et_console_counter) + 1;

            json_object_set_new(data, "id", json_string(
                apr_psprintf(r->pool, "%s-%ld-%u", *seg ? seg : "obj",
                             (long)getpid(), n)));
        }
        if ((returned = apr_table_get(r->headers_in, "X-Console-Return"))) {
            return return_status(r, data, returned);
        }
        return send_shaped(r, HTTP_CREATED, data);
    }
    if ((returned = apr_table_get(r->headers_in, "X-Console-Return"))) {
        return return_status(r, data, returned);
    }
    if (!*seg) {
        json_decref(data);
        return send_error(r, HTTP_NOT_FOUND, "no object id in the path");
    }
    if (!id || json_is_null(id)) {
        json_t *s = json_string(seg);

        if (!s) {                 /* not UTF-8: keep the bytes anyway */
            s = json_stringn_nocheck(seg, strlen(seg));
        }
        json_object_set_new(data, "id", s);
    }
    if (r->method_number == M_DELETE && has_param(r, "nobody=1")) {
        json_decref(data);
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    return send_shaped(r, HTTP_OK, data);
}

static int et_subreq_handler(request_rec *r)
{
    const char *method = NULL, *uri = NULL;
    char *args, *tok, *last;
    request_rec *rr;
    int status;

    if (!r->handler || strcmp(r->handler, "et-subreq")) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    args = apr_pstrdup(r->pool, r->args ? r->args : "");
    for (tok = apr_strtok(args, "&", &last); tok;
         tok = apr_strtok(NULL, "&", &last)) {
        char *eq = strchr(tok, '=');

        if (!eq) {
            continue;
        }
        *eq++ = '\0';
        if (ap_unescape_url(eq) != OK) {
            return HTTP_BAD_REQUEST;
        }
        if (!strcmp(tok, "m")) {
            method = eq;
        }
        else if (!strcmp(tok, "u")) {
            uri = eq;
        }
    }
    if (!method || !uri || *uri != '/') {
        return HTTP_BAD_REQUEST;
    }

    ap_set_content_type(r, "text/plain");
    rr = ap_sub_req_method_uri(method, uri, r, r->output_filters);
    status = rr->status;
    if (status == HTTP_OK) {
        ap_run_sub_req(rr);
        status = rr->status;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "et_console: subrequest %s %s: %d", method, uri, status);
    ap_destroy_sub_req(rr);
    ap_rprintf(r, "\nsubreq-status: %d\n", status);
    return OK;
}

static void et_console_register_hooks(apr_pool_t *p)
{
    ap_hook_handler(et_console_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(et_subreq_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(et_console) = {
    STANDARD20_MODULE_STUFF,
    NULL,                       /* create per-dir config */
    NULL,                       /* merge per-dir config */
    NULL,                       /* create per-server config */
    NULL,                       /* merge per-server config */
    NULL,                       /* command table */
    et_console_register_hooks   /* register hooks */
};
