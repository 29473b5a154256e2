/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_retry.c: durations, the retry schedule and its jitter.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_retry.h"
#include "unit_tests.h"

#define SEC APR_USEC_PER_SEC

START_TEST(test_duration_good)
{
    static const struct {
        const char *s;
        apr_interval_time_t want;
    } good[] = {
        { "0", 0 },
        { "0s", 0 },
        { "0ms", 0 },
        { "250ms", APR_TIME_C(250000) },
        { "1ms", APR_TIME_C(1000) },
        { "5", 5 * SEC },
        { "5s", 5 * SEC },
        { "5m", 300 * SEC },
        { "30m", 1800 * SEC },
        { "2h", 7200 * SEC },
        { "1d", 86400 * SEC },
        { "007s", 7 * SEC },
        /* the longest allowed: 30 days in every unit */
        { "30d", APR_TIME_C(2592000) * SEC },
        { "720h", APR_TIME_C(2592000) * SEC },
        { "43200m", APR_TIME_C(2592000) * SEC },
        { "2592000", APR_TIME_C(2592000) * SEC },
        { "2592000000ms", APR_TIME_C(2592000) * SEC },
    };
    apr_interval_time_t d;
    apr_size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        d = -1;
        ck_assert_msg(et_duration_parse(good[i].s, &d) == APR_SUCCESS,
                      "'%s' refused", good[i].s);
        ck_assert_msg(d == good[i].want, "'%s' gave %" APR_TIME_T_FMT,
                      good[i].s, d);
    }
}
END_TEST

START_TEST(test_duration_bad)
{
    static const char *const bad[] = {
        "", "-5s", "-0", "+5", "s", "ms", "5x", "5 s", " 5s", "5s ", "1.5s",
        "5sec", "5S", "5M", "5mss", "0x10", "31d", "721h", "43201m",
        "2592001", "2592000001ms", "99999999999999999999999999",
        "18446744073709551617ms", "9223372036854775808",
    };
    apr_interval_time_t d = 42;
    apr_size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(et_duration_parse(bad[i], &d) == APR_EINVAL,
                      "'%s' accepted", bad[i]);
    }
    ck_assert_int_eq(et_duration_parse(NULL, &d), APR_EINVAL);
    ck_assert(d == 42);
}
END_TEST

/* A point in time (replay_since, etctl --since): epoch seconds, a date or
 * an age; out of range is refused, not wrapped around. */
START_TEST(test_time_parse)
{
    apr_time_t now = apr_time_from_sec(1800000000), t;

    ck_assert_int_eq(et_time_parse("1700000000", now, &t), APR_SUCCESS);
    ck_assert(t == apr_time_from_sec(1700000000));
    ck_assert_int_eq(et_time_parse("2026-11-27T10:00:00Z", now, &t),
                     APR_SUCCESS);
    ck_assert(t == apr_time_from_sec(1795773600));
    ck_assert_int_eq(et_time_parse("2h", now, &t), APR_SUCCESS);
    ck_assert(t == now - apr_time_from_sec(7200));
    ck_assert_int_eq(et_time_parse("99999999999999", now, &t), APR_EINVAL);
    ck_assert_int_eq(et_time_parse("99999999999999999999999", now, &t),
                     APR_EINVAL);
    ck_assert_int_eq(et_time_parse("-5", now, &t), APR_EINVAL);
    ck_assert_int_eq(et_time_parse("yesterday", now, &t), APR_EINVAL);
}
END_TEST

START_TEST(test_retry_default)
{
    static const apr_interval_time_t want[] = {
        0, 5 * SEC, 300 * SEC, 1800 * SEC, 7200 * SEC, 18000 * SEC,
        36000 * SEC, 36000 * SEC
    };
    et_retry_t *r;
    const char *err = "unset";
    int i;

    ck_assert_int_eq(et_retry_parse(ut_pool, ET_RETRY_DEFAULT, &r, &err),
                     APR_SUCCESS);
    ck_assert_ptr_null(err);
    ck_assert_int_eq(r->n, 8);
    ck_assert_int_eq(r->jitter_pct, 20);
    for (i = 0; i < 8; i++) {
        ck_assert(r->delays[i] == want[i]);
    }
}
END_TEST

START_TEST(test_retry_whitespace)
{
    et_retry_t *r;
    const char *err;

    ck_assert_int_eq(et_retry_parse(ut_pool, "  0\t250ms \n 1m  ", &r, &err),
                     APR_SUCCESS);
    ck_assert_int_eq(r->n, 3);
    ck_assert(r->delays[0] == 0);
    ck_assert(r->delays[1] == 250000);
    ck_assert(r->delays[2] == 60 * SEC);

    ck_assert_int_eq(et_retry_parse(ut_pool, "5s", &r, &err), APR_SUCCESS);
    ck_assert_int_eq(r->n, 1);
}
END_TEST

START_TEST(test_retry_bad)
{
    et_retry_t *r = (et_retry_t *)1;
    const char *err;
    char *many;
    int i;

    ck_assert_int_eq(et_retry_parse(ut_pool, "0 5s 5x 1m", &r, &err),
                     APR_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "bad delay '5x' (use e.g. 0 5s 5m 2h; at most 30d)");

    ck_assert_int_eq(et_retry_parse(ut_pool, "0 -5s", &r, &err), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'-5s'"));
    ck_assert_int_eq(et_retry_parse(ut_pool, "0 31d", &r, &err), APR_EINVAL);
    ck_assert_int_eq(et_retry_parse(ut_pool, "", &r, &err), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no delays"));
    ck_assert_int_eq(et_retry_parse(ut_pool, " \t ", &r, &err), APR_EINVAL);
    ck_assert_int_eq(et_retry_parse(ut_pool, NULL, &r, &err), APR_EINVAL);

    /* 32 entries are fine, 33 are not */
    many = "";
    for (i = 0; i < 32; i++) {
        many = apr_pstrcat(ut_pool, many, " 1s", NULL);
    }
    ck_assert_int_eq(et_retry_parse(ut_pool, many, &r, &err), APR_SUCCESS);
    ck_assert_int_eq(r->n, 32);
    many = apr_pstrcat(ut_pool, many, " 1s", NULL);
    ck_assert_int_eq(et_retry_parse(ut_pool, many, &r, &err), APR_EINVAL);
    ck_assert_str_eq(err, "more than 32 delays");
}
END_TEST

START_TEST(test_retry_exhausted)
{
    et_retry_t *r;
    const char *err;

    ck_assert_int_eq(et_retry_parse(ut_pool, "0 5s 5m", &r, &err),
                     APR_SUCCESS);
    ck_assert(et_retry_next(r, 0, 12345) == 0);
    ck_assert(et_retry_next(r, 1, 12345) > 0);
    ck_assert(et_retry_next(r, 2, 12345) > 0);
    ck_assert(et_retry_next(r, 3, 12345) == -1);
    ck_assert(et_retry_next(r, 4, 0) == -1);
    ck_assert(et_retry_next(r, 1000, 0) == -1);
    ck_assert(et_retry_next(r, -1, 0) == -1);
    ck_assert(et_retry_next(NULL, 0, 0) == -1);
}
END_TEST

START_TEST(test_retry_zero_stays_zero)
{
    et_retry_t *r;
    const char *err;
    apr_uint32_t rnd;

    ck_assert_int_eq(et_retry_parse(ut_pool, "0 0 1s", &r, &err),
                     APR_SUCCESS);
    for (rnd = 0; rnd < 0xFFFF0000u; rnd += 0x01000193u) {
        ck_assert(et_retry_next(r, 0, rnd) == 0);
        ck_assert(et_retry_next(r, 1, rnd) == 0);
    }
    ck_assert(et_retry_next(r, 0, 0xFFFFFFFFu) == 0);
}
END_TEST

START_TEST(test_retry_jitter_bounds)
{
    et_retry_t *r;
    const char *err;
    apr_interval_time_t d, lo, hi, min, max;
    apr_uint32_t x = 2463534242u;
    int i, k;

    ck_assert_int_eq(et_retry_parse(ut_pool, "250ms 5m 10h 30d", &r, &err),
                     APR_SUCCESS);
    for (k = 0; k < r->n; k++) {
        d = r->delays[k];
        lo = d - d / 5;
        hi = d + d / 5;
        /* the ends of rnd's range are the ends of the jitter */
        ck_assert(et_retry_next(r, k, 0) == lo);
        ck_assert(et_retry_next(r, k, 0xFFFFFFFFu) == hi);
        d = et_retry_next(r, k, 0x80000000u);
        /* 2^31 / (2^32 - 1) is a hair above one half */
        ck_assert(d >= r->delays[k] && d <= r->delays[k] + 1000);

        /* xorshift32: values spread over the whole band, never outside */
        min = hi;
        max = lo;
        for (i = 0; i < 10000; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            d = et_retry_next(r, k, x);
            ck_assert_msg(d >= lo && d <= hi, "delay %d: %" APR_TIME_T_FMT
                          " outside [%" APR_TIME_T_FMT ", %" APR_TIME_T_FMT
                          "]", k, d, lo, hi);
            ck_assert(d == et_retry_next(r, k, x));   /* deterministic */
            if (d < min) {
                min = d;
            }
            if (d > max) {
                max = d;
            }
        }
        ck_assert(min < r->delays[k] - r->delays[k] / 6);
        ck_assert(max > r->delays[k] + r->delays[k] / 6);
    }
}
END_TEST

START_TEST(test_retry_no_jitter)
{
    et_retry_t *r;
    const char *err;

    ck_assert_int_eq(et_retry_parse(ut_pool, "5s", &r, &err), APR_SUCCESS);
    r->jitter_pct = 0;
    ck_assert(et_retry_next(r, 0, 0) == 5 * SEC);
    ck_assert(et_retry_next(r, 0, 0xFFFFFFFFu) == 5 * SEC);
}
END_TEST

Suite *retry_suite(void)
{
    Suite *s = suite_create("retry");
    TCase *tc;

    tc = tcase_create("duration");
    tcase_add_test(tc, test_duration_good);
    tcase_add_test(tc, test_duration_bad);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedule");
    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, test_retry_default);
    tcase_add_test(tc, test_retry_whitespace);
    tcase_add_test(tc, test_retry_bad);
    tcase_add_test(tc, test_retry_exhausted);
    tcase_add_test(tc, test_retry_zero_stays_zero);
    tcase_add_test(tc, test_retry_jitter_bounds);
    tcase_add_test(tc, test_retry_no_jitter);
    tcase_add_test(tc, test_time_parse);
    suite_add_tcase(s, tc);
    return s;
}
