/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_log.c: the library's logging seam (et_log): which levels reach the
 * callback, and the line as formatted.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_log.h"
#include "unit_tests.h"

static int calls, last_level;
static char last[600];

static void t_log(void *baton, int level, const char *msg)
{
    calls++;
    last_level = level;
    apr_cpystrn(last, msg, sizeof(last));
    (void)baton;
}

START_TEST(log_levels_up_to_the_logger_s_and_notices)
{
    et_logger_t lg = { t_log, NULL, ET_LOG_WARNING };

    calls = 0;
    et_log(&lg, ET_LOG_ERR, ut_pool, "ET00000: %s %d", "err", 1);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(last_level, ET_LOG_ERR);
    ck_assert_str_eq(last, "ET00000: err 1");
    et_log(&lg, ET_LOG_WARNING, NULL, "ET00000: %s", "warn");
    ck_assert_int_eq(calls, 2);
    ck_assert_str_eq(last, "ET00000: warn");
    /* httpd logs notices whatever LogLevel says: the callback decides */
    et_log(&lg, ET_LOG_NOTICE, ut_pool, "ET00000: notice");
    ck_assert_int_eq(calls, 3);
    et_log(&lg, ET_LOG_INFO, ut_pool, "ET00000: info");
    et_log(&lg, ET_LOG_DEBUG, NULL, "ET00000: debug");
    ck_assert_int_eq(calls, 3);
    ck_assert(!et_log_is_level(&lg, ET_LOG_INFO));
    lg.fn = NULL;
    et_log(&lg, ET_LOG_ERR, ut_pool, "ET00000: nowhere");
    ck_assert_int_eq(calls, 3);
}
END_TEST

START_TEST(log_without_a_pool_is_cut_at_512_bytes)
{
    et_logger_t lg = { t_log, NULL, ET_LOG_DEBUG };
    char big[560];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    et_log(&lg, ET_LOG_ERR, NULL, "%s", big);
    ck_assert_uint_eq(strlen(last), 511);
    et_log(&lg, ET_LOG_ERR, ut_pool, "%s", big);
    ck_assert_uint_eq(strlen(last), sizeof(big) - 1);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, log_levels_up_to_the_logger_s_and_notices);
    tcase_add_test(tc, log_without_a_pool_is_cut_at_512_bytes);
    suite_add_tcase(s, tc);
    return s;
}
