/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_main.c: runs every suite of the lib/ unit tests. Exit status 0 only
 * if all passed, as automake's TESTS expects.
 */
#include <stdlib.h>
#include <signal.h>

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
