/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_sign.c: Standard Webhooks signatures (et_sign.c) against the
 * specification's published example, and rotation.
 */
#include <string.h>

#include <apr_strings.h>

#include "et_sign.h"
#include "unit_tests.h"

/* The example of the Standard Webhooks specification and its libraries. */
#define SPEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TS     1614265330
#define SPEC_BODY   "{\"test\": 2432232314}"
#define SPEC_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static apr_array_header_t *secrets(const char *a, const char *b)
{
    apr_array_header_t *arr = apr_array_make(ut_pool, 2,
                                             sizeof(et_secret_t *));
    et_secret_t *s;
    const char *err = NULL;

    ck_assert_int_eq(et_secret_parse(ut_pool, a, &s, &err), APR_SUCCESS);
    APR_ARRAY_PUSH(arr, et_secret_t *) = s;
    if (b) {
        ck_assert_int_eq(et_secret_parse(ut_pool, b, &s, &err), APR_SUCCESS);
        APR_ARRAY_PUSH(arr, et_secret_t *) = s;
    }
    return arr;
}

START_TEST(matches_the_specification_example)
{
    const char *sig = et_sign(ut_pool, secrets(SPEC_SECRET, NULL), SPEC_ID,
                              SPEC_TS, SPEC_BODY, strlen(SPEC_BODY));

    ck_assert_str_eq(sig, SPEC_SIG);
}
END_TEST

START_TEST(rotation_signs_with_every_secret)
{
    const char *other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const char *sig = et_sign(ut_pool, secrets(other, SPEC_SECRET), SPEC_ID,
                              SPEC_TS, SPEC_BODY, strlen(SPEC_BODY));
    const char *space = strchr(sig, ' ');

    ck_assert_ptr_nonnull(space);
    ck_assert_str_eq(space + 1, SPEC_SIG);
    ck_assert_int_eq(strncmp(sig, "v1,", 3), 0);
    ck_assert_str_ne(apr_pstrmemdup(ut_pool, sig, space - sig), SPEC_SIG);
}
END_TEST

START_TEST(the_body_and_timestamp_are_signed)
{
    apr_array_header_t *s = secrets(SPEC_SECRET, NULL);

    ck_assert_str_ne(et_sign(ut_pool, s, SPEC_ID, SPEC_TS + 1, SPEC_BODY,
                             strlen(SPEC_BODY)), SPEC_SIG);
    ck_assert_str_ne(et_sign(ut_pool, s, SPEC_ID, SPEC_TS, SPEC_BODY,
                             strlen(SPEC_BODY) - 1), SPEC_SIG);
}
END_TEST

START_TEST(bad_secrets_are_refused_without_echo)
{
    static const char *const bad[] = {
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",          /* no prefix */
        "whsec_",                                     /* empty */
        "whsec_not base64!!",                         /* alphabet */
        "whsec_QUJD",                                 /* 3 bytes: too short */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",      /* length */
        NULL
    };
    int i;

    for (i = 0; bad[i]; i++) {
        et_secret_t *s = NULL;
        const char *err = NULL;

        ck_assert_msg(et_secret_parse(ut_pool, bad[i], &s, &err)
                      != APR_SUCCESS, "accepted: case %d", i);
        ck_assert_ptr_nonnull(err);
        if (*(bad[i] + (i ? 6 : 0))) {
            ck_assert_ptr_null(strstr(err, bad[i] + (i ? 6 : 0)));
        }
    }
}
END_TEST

Suite *sign_suite(void)
{
    Suite *s = suite_create("sign");
    TCase *tc = tcase_create("standard-webhooks");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, matches_the_specification_example);
    tcase_add_test(tc, rotation_signs_with_every_secret);
    tcase_add_test(tc, the_body_and_timestamp_are_signed);
    tcase_add_test(tc, bad_secrets_are_refused_without_echo);
    suite_add_tcase(s, tc);
    return s;
}
