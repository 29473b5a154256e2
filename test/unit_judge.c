/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_judge.c: the dispatcher's verdict on an answer (et_dispatch_judge,
 * lib/et_judge.c): delivered, retried per the schedule and Retry-After,
 * or dead.
 */
#include <string.h>

#include <apr_time.h>

#include "et_dispatch.h"
#include "et_retry.h"
#include "unit_tests.h"

static et_site_t jsite;
static et_event_t jev;
static et_http_response_t jresp;

static void judge_setup(void)
{
    et_retry_t *r = NULL;
    const char *err;

    ut_setup();
    ck_assert_int_eq(et_retry_parse(ut_pool, "0 10s 20s", &r, &err),
                     APR_SUCCESS);
    r->jitter_pct = 0;
    memset(&jsite, 0, sizeof(jsite));
    jsite.retry = r;
    memset(&jev, 0, sizeof(jev));
    jev.attempts = 1;
    memset(&jresp, 0, sizeof(jresp));
}

START_TEST(judge_2xx_delivers)
{
    et_outcome_t out;

    jresp.status = 204;
    et_dispatch_judge(&jsite, &jev, &jresp, 0, 0, &out);
    ck_assert_int_eq(out.state, ET_ST_DELIVERED);
    ck_assert_ptr_null(out.error);
}
END_TEST

START_TEST(judge_retries_per_schedule_then_gives_up)
{
    static const int retried[] = { 0, 408, 429, 500, 502, 503, 504 };
    apr_time_t now = apr_time_from_sec(1000);
    et_outcome_t out;
    size_t i;

    for (i = 0; i < sizeof(retried) / sizeof(retried[0]); i++) {
        jresp.status = retried[i];
        jev.attempts = 1;
        et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
        ck_assert_msg(out.state == ET_ST_PENDING, "status %d", retried[i]);
        ck_assert_int_eq(out.due - now, apr_time_from_sec(10));
        jev.attempts = 2;
        et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
        ck_assert_int_eq(out.due - now, apr_time_from_sec(20));
        jev.attempts = 3;
        et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
        ck_assert_int_eq(out.state, ET_ST_DEAD);
        ck_assert_str_eq(out.error, "out of attempts");
    }
}
END_TEST

START_TEST(judge_other_answers_are_dead_at_once)
{
    static const int dead[] = { 301, 302, 400, 401, 403, 404, 410, 422 };
    et_outcome_t out;
    size_t i;

    for (i = 0; i < sizeof(dead) / sizeof(dead[0]); i++) {
        jresp.status = dead[i];
        et_dispatch_judge(&jsite, &jev, &jresp, 0, 0, &out);
        ck_assert_msg(out.state == ET_ST_DEAD, "status %d", dead[i]);
        ck_assert_int_eq(out.status, dead[i]);
    }
}
END_TEST

START_TEST(judge_honours_retry_after_within_bounds)
{
    apr_time_t now = apr_time_from_sec(1000000);
    et_outcome_t out;

    jresp.status = 503;
    jresp.retry_after = "120";
    et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
    ck_assert_int_eq(out.due - now, apr_time_from_sec(120));
    /* never sooner than the schedule */
    jresp.retry_after = "1";
    et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
    ck_assert_int_eq(out.due - now, apr_time_from_sec(10));
    /* clamped to an hour */
    jresp.status = 429;
    jresp.retry_after = "999999";
    et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
    ck_assert_int_eq(out.due - now, apr_time_from_sec(3600));
    /* an HTTP-date */
    jresp.retry_after = "Thu, 01 Jan 1970 00:16:40 GMT";  /* 1000 s */
    et_dispatch_judge(&jsite, &jev, &jresp, apr_time_from_sec(700), 0, &out);
    ck_assert_int_eq(out.due - apr_time_from_sec(700), apr_time_from_sec(300));
    /* junk is ignored */
    jresp.retry_after = "soon";
    et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
    ck_assert_int_eq(out.due - now, apr_time_from_sec(10));
    /* not on a 500 */
    jresp.status = 500;
    jresp.retry_after = "120";
    et_dispatch_judge(&jsite, &jev, &jresp, now, 0, &out);
    ck_assert_int_eq(out.due - now, apr_time_from_sec(10));
}
END_TEST

Suite *judge_suite(void)
{
    Suite *s = suite_create("judge");
    TCase *tj = tcase_create("judge");

    tcase_add_checked_fixture(tj, judge_setup, ut_teardown);
    tcase_add_test(tj, judge_2xx_delivers);
    tcase_add_test(tj, judge_retries_per_schedule_then_gives_up);
    tcase_add_test(tj, judge_other_answers_are_dead_at_once);
    tcase_add_test(tj, judge_honours_retry_after_within_bounds);
    suite_add_tcase(s, tj);
    return s;
}
