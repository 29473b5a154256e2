/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_jsonrpc.h
 * @brief JSON-RPC consoles (1.0 and 2.0, Mashery's V2 API among them):
 *        which calls of a request are events, and the answer to each.
 *
 * httpd-free; the request body and the answer are untrusted bytes (the
 * capture fuzz target covers this file too).
 */
#ifndef ET_JSONRPC_H
#define ET_JSONRPC_H

#include <apr_tables.h>
#include <jansson.h>

#include "et_event.h"

/** One call of a JSON-RPC request that creates, updates or deletes. */
typedef struct et_rpc_call_t {
    et_object_e object;
    et_event_e event;
    const char *method;       /* as sent, e.g. "member.update" */
    const json_t *id;         /* the call's id; NULL for a notification */
    const json_t *param;      /* the first positional param, or the
                               * params object (by-name); NULL if none */
    json_t *call;             /* the call itself, in the parsed request */
    json_t *root;             /* the whole parsed request */
} et_rpc_call_t;

/**
 * "member.create" -> member, create: non-zero if @a method is one of
 * {member,application,key,package_key}.{create,update,delete}. Other
 * methods ("member.fetch", "key.validate") are never events.
 */
int et_rpc_method(const char *method, et_object_e *object, et_event_e *event);

/**
 * Read a JSON-RPC request (one call or a batch, an array of calls):
 * *calls gets the et_rpc_call_t of every call that is an event, in the
 * request's order; *batch is set for an array. A request that is not
 * JSON-RPC at all is APR_EINVAL with *err; calls that are not events are
 * left out silently. Everything lives in @a p.
 */
apr_status_t et_rpc_parse_request(apr_pool_t *p, const char *buf,
                                  apr_size_t len, int max_depth,
                                  apr_array_header_t **calls, int *batch,
                                  const char **err);

/**
 * The response to @a call in a parsed @a answer: for a batch the element
 * of the answer array with the same id (JSON-RPC 2.0 lets a batch be
 * answered in any order), for a single call the answer object itself.
 * NULL if there is none (a notification, or a call the console left
 * unanswered).
 */
const json_t *et_rpc_response(const json_t *answer, int batch,
                              const et_rpc_call_t *call);

/**
 * The id @a call's first param names: the param itself if it is a string
 * or an integer, else the @a id_field (a name or a JSON pointer) of the
 * object it is; "" if none.
 */
const char *et_rpc_param_id(apr_pool_t *p, const et_rpc_call_t *call,
                            const char *id_field);

/**
 * Make @a obj (reference stolen) the call's object param: the first
 * positional param, or the params of a call by name. The request
 * (call->root) then serialises with it.
 */
int et_rpc_set_param(et_rpc_call_t *call, json_t *obj);

/** The call failed: @a response has an "error" that is not null. */
int et_rpc_failed(const json_t *response);

#endif /* ET_JSONRPC_H */
