/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_main.c: runs every suite of the lib/ unit tests. Exit status 0 only
 * if all passed, as automake's TESTS expects.
 */
#include <stdlib.h>
#include <signal.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_dbd.h>

#include "et_json.h"
#include "unit_tests.h"

apr_pool_t *ut_pool;

void ut_setup(void)
{
    ck_assert_int_eq(apr_pool_create(&ut_pool, NULL), APR_SUCCESS);
}

void ut_teardown(void)
{
    apr_pool_destroy(ut_pool);
    ut_pool = NULL;
}

int ut_have_pgsql(void)
{
    const char *c = getenv("ET_TEST_PGSQL");

    return c && *c;
}

const char *ut_pgsql_fresh(void)
{
    const char *conninfo = getenv("ET_TEST_PGSQL");
    const apr_dbd_driver_t *drv;
    apr_dbd_t *db = NULL;
    const char *err = NULL;
    int nrows;

    ck_assert_int_eq(apr_dbd_init(ut_pool), APR_SUCCESS);
    ck_assert_int_eq(apr_dbd_get_driver(ut_pool, "pgsql", &drv), APR_SUCCESS);
    ck_assert_msg(apr_dbd_open_ex(drv, ut_pool, conninfo, &db, &err)
                  == APR_SUCCESS, "pgsql: %s", err ? err : "?");
    ck_assert_int_eq(apr_dbd_query(drv, db, &nrows,
                                   "DROP TABLE IF EXISTS et_event, et_circuit"),
                     0);
    apr_dbd_close(drv, db);
    return apr_pstrcat(ut_pool, "pgsql:", conninfo, NULL);
}

json_t *ut_json(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

    ck_assert_msg(j != NULL, "test JSON does not parse: %s", e.text);
    return et_json_pool_own(ut_pool, j);
}

void ut_capture_fixture(et_site_t *site, et_capture_t *cap,
                        const char *endpoint, et_event_e event,
                        const char *uri_path)
{
    memset(site, 0, sizeof(*site));
    site->name = "console.example.com:443";
    site->endpoint = endpoint;
    site->format = ET_FMT_JSON;
    site->user_agent = ET_USER_AGENT_DEFAULT;
    memset(cap, 0, sizeof(*cap));
    cap->site = site;
    cap->object = ET_OBJ_MEMBER;
    cap->event = event;
    cap->id_field = "id";
    cap->uri_path = uri_path;
    cap->limit = 65536;
    cap->max_depth = 16;
    cap->max_id_len = 256;
}

void ut_capture_body(et_capture_t *cap, const char *body)
{
    cap->body = body;
    cap->body_len = strlen(body);
    cap->body_total = (apr_off_t)cap->body_len;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (apr_initialize() != APR_SUCCESS) {
        return EXIT_FAILURE;
    }
    /* as in httpd: a peer that went away is an error return, not a signal */
    signal(SIGPIPE, SIG_IGN);
    sr = srunner_create(form_suite());
    srunner_add_suite(sr, url_suite());
    srunner_add_suite(sr, retry_suite());
    srunner_add_suite(sr, capture_suite());
    srunner_add_suite(sr, outbox_suite());
    srunner_add_suite(sr, sign_suite());
    srunner_add_suite(sr, circuit_suite());
    srunner_add_suite(sr, http_suite());
    srunner_add_suite(sr, intake_suite());
    srunner_add_suite(sr, consoles_suite());
    srunner_add_suite(sr, before_suite());
    srunner_add_suite(sr, trace_suite());
    srunner_add_suite(sr, guard_suite());
    srunner_add_suite(sr, judge_suite());
    srunner_add_suite(sr, log_suite());
    srunner_add_suite(sr, spool_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
