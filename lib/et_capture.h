/* Licensed under the Apache License, Version 2.0. */
/**
 * @file et_capture.h
 * @brief From a console's answer to an event: the httpd-free half of the
 *        capture filter (and the fuzzing target for it).
 */
#ifndef ET_CAPTURE_H
#define ET_CAPTURE_H

#include "et_event.h"
#include "et_site.h"
#include <apr_tables.h>

typedef struct et_capture_t {
    const et_site_t *site;
    et_object_e object;
    et_event_e event;
    const char *id_field;     /* field of the saved object holding its id,
                               * or a JSON pointer relative to it ("/...") */
    const char *const *id_fields; /* per object ([et_object_e]), NULL or
                               * NULL entries: id_field */
    const char *object_ptr;   /* EventTriggerObject: JSON pointer to the
                               * saved object in the answer; NULL: all of it */
    const char *uri_path;     /* decoded request path, for the id fallback */
    const char *path_id;      /* the id the request names, if the glue knows
                               * better than uri_path's last segment */
    const char *location;     /* response's Location, for a bodiless create */
    const char *body;         /* the response body as captured */
    apr_size_t body_len;      /* bytes captured (<= limit) */
    apr_off_t body_total;     /* bytes seen; > body_len when over the limit */
    apr_size_t limit;         /* EventTriggerCaptureLimit */
    int max_depth;            /* JSON nesting limit */
    apr_size_t max_id_len;
    const char *content_encoding;  /* of the response, NULL if identity */
    const char *content_type; /* of the response, NULL if none */
    int incomplete;           /* an error bucket or short body was seen */
} et_capture_t;

/**
 * Build the event for a completed capture. Always yields an event (with a
 * fresh txn) unless the txn cannot be generated: a body that cannot be used
 * gives an event in state ET_ST_FAILED with ->error set, so that it is
 * recorded rather than lost silently.
 */
apr_status_t et_capture_to_event(apr_pool_t *p, const et_capture_t *c,
                                 et_event_t **out);

/**
 * The events of a JSON-RPC exchange: @a calls (et_rpc_call_t *, from
 * et_rpc_parse_request, at least one) were sent, c->body is the answer.
 * *out gets one event per call answered without an error, in the calls'
 * order (c->object and c->event are not read: each call has its own).
 * An answer that cannot be read at all gives one failed event, for the
 * first call. The saved object is the call's "result" (or what
 * c->object_ptr names inside it); a delete or update whose result has no
 * id takes it from the call's first param.
 */
apr_status_t et_capture_jsonrpc(apr_pool_t *p, const et_capture_t *c,
                                const apr_array_header_t *calls, int batch,
                                apr_array_header_t **out);

/** The last non-empty segment of @a path ("" if none), in @a p: the id a
 *  request path names. */
const char *et_capture_path_id(apr_pool_t *p, const char *path);

/** Non-zero if the media type @a ct is JSON (application/json, a "+json"
 *  type, text/json); a missing type counts as JSON. */
int et_capture_is_json_type(const char *ct);

#endif /* ET_CAPTURE_H */
