/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_circuit.c: endpoint health (et_circuit.c).
 */
#include <string.h>

#include "et_circuit.h"
#include "unit_tests.h"

static const et_circuit_conf_t conf = {
    3, apr_time_from_sec(10), apr_time_from_sec(35)
};

START_TEST(opens_after_the_threshold_only)
{
    et_circuit_t c;
    apr_time_t now = apr_time_from_sec(100);

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), -1);
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), -1);
    /* a success in between starts the count again */
    ck_assert_int_eq(et_circuit_record(&c, &conf, 1, now), -1);
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), -1);
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), -1);
    ck_assert(et_circuit_admit(&c, &conf, now));
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), ET_CB_CLOSED);
    ck_assert_int_eq(c.state, ET_CB_OPEN);
    ck_assert_int_eq(c.open_until, now + apr_time_from_sec(10));
    ck_assert(!et_circuit_admit(&c, &conf, now + apr_time_from_sec(9)));
}
END_TEST

START_TEST(one_probe_then_doubling_pauses_up_to_the_maximum)
{
    et_circuit_t c;
    apr_time_t now = 0;
    int i;

    memset(&c, 0, sizeof(c));
    for (i = 0; i < 3; i++) {
        et_circuit_record(&c, &conf, 0, now);
    }
    now = c.open_until;
    ck_assert(et_circuit_admit(&c, &conf, now));
    ck_assert_int_eq(c.state, ET_CB_PROBING);
    ck_assert(!et_circuit_admit(&c, &conf, now));       /* only one */
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), ET_CB_PROBING);
    ck_assert_int_eq(c.open_until - now, apr_time_from_sec(20));
    now = c.open_until;
    ck_assert(et_circuit_admit(&c, &conf, now));
    et_circuit_record(&c, &conf, 0, now);
    ck_assert_int_eq(c.open_until - now, apr_time_from_sec(35));  /* max */
    /* a call from before the pause failing changes nothing */
    ck_assert_int_eq(et_circuit_record(&c, &conf, 0, now), -1);
    ck_assert_int_eq(c.open_until - now, apr_time_from_sec(35));
}
END_TEST

START_TEST(a_healthy_answer_closes)
{
    et_circuit_t c;
    int i;

    memset(&c, 0, sizeof(c));
    for (i = 0; i < 3; i++) {
        et_circuit_record(&c, &conf, 0, 0);
    }
    ck_assert(et_circuit_admit(&c, &conf, c.open_until));
    ck_assert_int_eq(et_circuit_record(&c, &conf, 1, c.open_until),
                     ET_CB_PROBING);
    ck_assert_int_eq(c.state, ET_CB_CLOSED);
    ck_assert_int_eq(c.failures, 0);
    ck_assert(et_circuit_admit(&c, &conf, 0));
    ck_assert_str_eq(et_circuit_state_name(c.state), "closed");
}
END_TEST

START_TEST(threshold_zero_never_opens)
{
    et_circuit_conf_t off = { 0, apr_time_from_sec(1), apr_time_from_sec(2) };
    et_circuit_t c;
    int i;

    memset(&c, 0, sizeof(c));
    for (i = 0; i < 1000; i++) {
        ck_assert_int_eq(et_circuit_record(&c, &off, 0, 0), -1);
    }
    ck_assert(et_circuit_admit(&c, &off, 0));
}
END_TEST

Suite *circuit_suite(void)
{
    Suite *s = suite_create("circuit");
    TCase *tc = tcase_create("breaker");

    tcase_add_test(tc, opens_after_the_threshold_only);
    tcase_add_test(tc, one_probe_then_doubling_pauses_up_to_the_maximum);
    tcase_add_test(tc, a_healthy_answer_closes);
    tcase_add_test(tc, threshold_zero_never_opens);
    suite_add_tcase(s, tc);
    return s;
}
