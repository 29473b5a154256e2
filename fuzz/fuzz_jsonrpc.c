/* Licensed under the Apache License, Version 2.0. */
/*
 * libFuzzer target: JSON-RPC consoles, the request side and the answer
 * (et_rpc_parse_request in lib/et_jsonrpc.c, et_capture_jsonrpc in
 * lib/et_capture.c).
 *
 * Input: 2 bytes of settings (format and pointer choice, depth limit),
 * then the request body and the answer, separated by a NUL byte.
 * Invariants: a request is read or refused with a reason; the calls are
 * events only; the answer gives at most one event per call, each with a
 * 32-hex txn, the object and event of a call, in the calls' order, and
 * either a reason (failed) or a non-empty id and a body with object_type.
 */
#include <apr_strings.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "et_capture.h"
#include "et_jsonrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const ptrs[] = { NULL, "", "/data", "/a~1b/0" };
    static const char *const v2[] = { NULL, "username", NULL, "/apikey",
                                      NULL };
    apr_pool_t *p;
    et_site_t site;
    et_capture_t c;
    apr_array_header_t *calls = NULL, *events = NULL;
    const char *req, *err = NULL;
    size_t req_len;
    int batch = 0, i, j = 0;

    if (size < 2) {
        return 0;
    }
    p = fz_pool();
    memset(&site, 0, sizeof(site));
    memset(&c, 0, sizeof(c));
    site.name = "fuzz.example.com:443";
    site.endpoint = "https://cb.example.com/hooks";
    site.format = (data[0] & 1) ? ET_FMT_FORM : ET_FMT_JSON;
    c.site = &site;
    c.object_ptr = ptrs[(data[0] >> 1) & 3];
    c.id_fields = (data[0] & 8) ? v2 : NULL;
    c.id_field = (data[0] & 16) ? "/x/id" : "id";
    c.limit = 65536;
    c.max_depth = data[1] % 40;
    c.max_id_len = 256;
    data += 2;
    size -= 2;

    req = fz_field(p, &data, &size, &req_len);
    if (et_rpc_parse_request(p, req, req_len, c.max_depth, &calls, &batch,
                             &err) != APR_SUCCESS) {
        FZ_CHECK(err && *err, "a refused request says why");
        goto done;
    }
    for (i = 0; i < calls->nelts; i++) {
        const et_rpc_call_t *call = APR_ARRAY_IDX(calls, i,
                                                  const et_rpc_call_t *);
        et_object_e o;
        et_event_e e;

        FZ_CHECK(et_rpc_method(call->method, &o, &e) && o == call->object
                 && e == call->event, "a call is an event: %s",
                 call->method);
    }
    if (calls->nelts == 0) {
        goto done;
    }
    {
        char *b = malloc(size ? size : 1);

        memcpy(b, data, size);
        c.body = b;
        c.body_len = size;
        c.body_total = (apr_off_t)size;
    }
    FZ_CHECK(et_capture_jsonrpc(p, &c, calls, batch, &events) == APR_SUCCESS
             && events, "events for every answer");
    FZ_CHECK(events->nelts <= calls->nelts, "%d events for %d calls",
             events->nelts, calls->nelts);
    for (i = 0; i < events->nelts; i++) {
        const et_event_t *ev = APR_ARRAY_IDX(events, i, const et_event_t *);
        const et_rpc_call_t *call;

        FZ_CHECK(ev->txn && strlen(ev->txn) == 32
                 && strspn(ev->txn, "0123456789abcdef") == 32, "txn");
        /* in the calls' order: each event is of a later call than the
         * last one's */
        while (j < calls->nelts) {
            call = APR_ARRAY_IDX(calls, j++, const et_rpc_call_t *);
            if (call->object == ev->object && call->event == ev->event) {
                break;
            }
            FZ_CHECK(j < calls->nelts, "an event of no call, or out of "
                     "order");
        }
        if (ev->state == ET_ST_FAILED) {
            FZ_CHECK(ev->error && *ev->error && ev->body_len == 0,
                     "a failed event says why, and has no body");
            continue;
        }
        FZ_CHECK(ev->state == ET_ST_PENDING && *ev->oid, "a pending event "
                 "has an id");
        FZ_CHECK(strlen(ev->body) == ev->body_len
                 && strstr(ev->body, "object_type") != NULL,
                 "the body has object_type");
    }
    free((void *)c.body);
done:
    apr_pool_destroy(p);
    return 0;
}
