/* Licensed under the Apache License, Version 2.0. */
/*
 * et_jsonrpc.c: the JSON-RPC side of the capture. A console of this kind
 * takes every operation at one URL, so the object and the event come from
 * the request's "method", and the saved object from the answer's
 * "result". Nothing here trusts either body.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_json.h"
#include "et_jsonrpc.h"

int et_rpc_method(const char *method, et_object_e *object, et_event_e *event)
{
    static const struct {
        const char *name;
        et_event_e event;
    } ops[] = {
        { "create", ET_EV_CREATE },
        { "update", ET_EV_UPDATE },
        { "delete", ET_EV_DELETE },
    };
    const char *dot;
    char oname[17];
    apr_size_t i, n;
    et_object_e o;

    if (method == NULL || (dot = strrchr(method, '.')) == NULL) {
        return 0;
    }
    n = (apr_size_t)(dot - method);
    /* the longest object name is "package_key" */
    if (n == 0 || n >= sizeof(oname)) {
        return 0;
    }
    memcpy(oname, method, n);
    oname[n] = '\0';
    if (!et_object_parse(oname, &o) || o == ET_OBJ_NONE) {
        return 0;
    }
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(dot + 1, ops[i].name) == 0) {
            *object = o;
            *event = ops[i].event;
            return 1;
        }
    }
    return 0;
}

/* One element of a request: NULL if it is a call that is no event, else
 * the call; *err set if it is not a JSON-RPC call at all. */
static et_rpc_call_t *read_call(apr_pool_t *p, json_t *req, json_t *root,
                                const char **err)
{
    et_rpc_call_t *call;
    const json_t *method, *params, *id;
    et_object_e object;
    et_event_e event;

    method = json_is_object(req) ? json_object_get(req, "method") : NULL;
    if (!json_is_string(method)) {
        *err = json_is_object(req) ? "a JSON-RPC call without a method"
                                   : "a JSON-RPC call that is not an object";
        return NULL;
    }
    if (!et_rpc_method(json_string_value(method), &object, &event)) {
        return NULL;
    }
    call = apr_pcalloc(p, sizeof(*call));
    call->object = object;
    call->event = event;
    call->method = apr_pstrdup(p, json_string_value(method));
    call->call = req;
    call->root = root;
    /* 2.0: no "id" is a notification; 1.0: an id of null is */
    id = json_object_get(req, "id");
    call->id = (id && !json_is_null(id)) ? id : NULL;
    params = json_object_get(req, "params");
    if (json_is_array(params)) {
        call->param = json_array_get(params, 0);
    }
    else if (json_is_object(params)) {
        call->param = params;
    }
    return call;
}

apr_status_t et_rpc_parse_request(apr_pool_t *p, const char *buf,
                                  apr_size_t len, int max_depth,
                                  apr_array_header_t **calls, int *batch,
                                  const char **err)
{
    json_t *req;
    apr_status_t rv;

    *calls = apr_array_make(p, 1, sizeof(et_rpc_call_t *));
    *batch = 0;
    *err = NULL;
    rv = et_json_parse_value(p, buf, len, max_depth, &req, err);
    if (rv != APR_SUCCESS) {
        *err = apr_pstrcat(p, "JSON-RPC request: ", *err, NULL);
        return rv;
    }
    if (json_is_array(req)) {
        size_t i;
        json_t *one;

        *batch = 1;
        json_array_foreach(req, i, one) {
            et_rpc_call_t *call = read_call(p, one, req, err);

            if (*err) {
                *err = apr_psprintf(p, "JSON-RPC batch, call %u: %s",
                                    (unsigned)i + 1, *err);
                return APR_EINVAL;
            }
            if (call) {
                *(et_rpc_call_t **)apr_array_push(*calls) = call;
            }
        }
        return APR_SUCCESS;
    }
    {
        et_rpc_call_t *call = read_call(p, req, req, err);

        if (*err) {
            *err = apr_pstrcat(p, "JSON-RPC request: ", *err, NULL);
            return APR_EINVAL;
        }
        if (call) {
            *(et_rpc_call_t **)apr_array_push(*calls) = call;
        }
    }
    return APR_SUCCESS;
}

const json_t *et_rpc_response(const json_t *answer, int batch,
                              const et_rpc_call_t *call)
{
    size_t i;
    json_t *one;

    if (!batch) {
        /* one call, one answer; a 1.0 console may echo the id its own
         * way, so it is not compared */
        return json_is_object(answer) ? answer : NULL;
    }
    if (call->id == NULL || !json_is_array(answer)) {
        return NULL;
    }
    json_array_foreach(answer, i, one) {
        const json_t *id = json_is_object(one) ? json_object_get(one, "id")
                                               : NULL;

        if (id && json_equal((json_t *)id, (json_t *)call->id)) {
            return one;
        }
    }
    return NULL;
}

int et_rpc_failed(const json_t *response)
{
    const json_t *e = json_object_get(response, "error");

    return e != NULL && !json_is_null(e);
}

const char *et_rpc_param_id(apr_pool_t *p, const et_rpc_call_t *call,
                            const char *id_field)
{
    const char *id = NULL, *err;
    json_t *wrap;

    if (call->param == NULL) {
        return "";
    }
    if (json_is_object(call->param)) {
        et_json_scalar_id(p, call->param, id_field, &id, &err);
        return id ? id : "";
    }
    /* a bare string or number: looked at as the only member of an object */
    wrap = et_json_pool_own(p, json_object());
    if (wrap == NULL
        || json_object_set(wrap, "id", (json_t *)call->param) != 0) {
        return "";
    }
    et_json_scalar_id(p, wrap, "id", &id, &err);
    return id ? id : "";
}

int et_rpc_set_param(et_rpc_call_t *call, json_t *obj)
{
    json_t *params = json_object_get(call->call, "params");

    if (obj == NULL) {
        return -1;
    }
    if (json_is_array(params) && json_array_size(params) > 0) {
        /* a first param that names the object ("user1") is no object to
         * replace: the call would lose its argument */
        if (!json_is_object(json_array_get(params, 0))) {
            json_decref(obj);
            return -1;
        }
        call->param = obj;
        return json_array_set_new(params, 0, obj);
    }
    call->param = obj;
    if (json_is_array(params)) {
        return json_array_append_new(params, obj);
    }
    return json_object_set_new(call->call, "params", obj);
}
