/* Licensed under the Apache License, Version 2.0. */
/**
 * @file unit_tests.h
 * @brief Unit tests of the httpd-free core (lib/), with check: one suite per
 *        area, all run by unit_main.c.
 */
#ifndef UNIT_TESTS_H
#define UNIT_TESTS_H

#include <check.h>
#include <apr_pools.h>
#include <jansson.h>

#include "et_capture.h"

Suite *form_suite(void);
Suite *url_suite(void);
Suite *retry_suite(void);
Suite *capture_suite(void);
Suite *outbox_suite(void);
Suite *sign_suite(void);
Suite *circuit_suite(void);
Suite *http_suite(void);
Suite *intake_suite(void);
Suite *consoles_suite(void);
Suite *before_suite(void);
Suite *trace_suite(void);
Suite *guard_suite(void);
Suite *judge_suite(void);
Suite *log_suite(void);
Suite *spool_suite(void);

/* A fresh pool for each test: add ut_setup/ut_teardown as a checked
 * fixture, so that with CK_FORK=no pools do not pile up either. */
extern apr_pool_t *ut_pool;
void ut_setup(void);
void ut_teardown(void);

/* With ET_TEST_PGSQL set (a conninfo): drop the outbox's tables there and
 * return the store spec, "pgsql:CONNINFO", from ut_pool. */
const char *ut_pgsql_fresh(void);
int ut_have_pgsql(void);

/* Parse @a text with jansson (any value); the reference is bound to
 * ut_pool. Fails the test on a parse error. */
json_t *ut_json(const char *text);

/* The capture tests' fixture (unit_capture.c, unit_consoles.c): @a site a
 * JSON site of @a endpoint; @a cap a capture of a 2xx answer to a member
 * @a event at @a uri_path on it, with the default limits. */
void ut_capture_fixture(et_site_t *site, et_capture_t *cap,
                        const char *endpoint, et_event_e event,
                        const char *uri_path);
/* The answer's body: @a body, whole (not cut by the capture limit). */
void ut_capture_body(et_capture_t *cap, const char *body);

#endif /* UNIT_TESTS_H */
