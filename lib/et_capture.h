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

typedef struct et_capture_t {
    const et_site_t *site;
    et_object_e object;
    et_event_e event;
    const char *id_field;     /* field of the saved object holding its id */
    const char *uri_path;     /* decoded request path, for the id fallback */
    const char *location;     /* response's Location, for a bodiless create */
    const char *body;         /* the response body as captured */
    apr_size_t body_len;      /* bytes captured (<= limit) */
    apr_off_t body_total;     /* bytes seen; > body_len when over the limit */
    apr_size_t limit;         /* EventTriggerCaptureLimit */
    int max_depth;            /* JSON nesting limit */
    apr_size_t max_id_len;
    const char *content_encoding;  /* of the response, NULL if identity */
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

#endif /* ET_CAPTURE_H */
