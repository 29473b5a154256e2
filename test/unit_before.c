/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_before.c: before-save events - the call's URL and body, and what
 * an endpoint's answer decides (lib/et_before.c, et_url_build_before).
 */
#include <string.h>

#include <apr_strings.h>

#include "unit_tests.h"
#include "et_before.h"
#include "et_json.h"
#include "et_url.h"

static et_site_t site;

static void setup(void)
{
    ut_setup();
    memset(&site, 0, sizeof(site));
    site.name = "s";
    site.endpoint = "https://cb.example.com/hooks/";
    site.format = ET_FMT_JSON;
}

START_TEST(test_before_url)
{
    ck_assert_str_eq(et_url_build_before(ut_pool, site.endpoint, ET_OBJ_MEMBER,
                                         NULL, ET_EV_CREATE, "t1"),
                     "https://cb.example.com/hooks/v1/member?event=pre-create"
                     "&txn=t1");
    ck_assert_str_eq(et_url_build_before(ut_pool, site.endpoint, ET_OBJ_KEY,
                                         "a/b", ET_EV_UPDATE, "t2"),
                     "https://cb.example.com/hooks/v1/key/a%2fb?event="
                     "pre-update&txn=t2");
    ck_assert_str_eq(et_url_build_before(ut_pool, site.endpoint,
                                         ET_OBJ_PACKAGE_KEY, "..",
                                         ET_EV_DELETE, "t3"),
                     "https://cb.example.com/hooks/v1/package_key/%2E%2E?"
                     "event=pre-delete&txn=t3");
    ck_assert_ptr_null(et_url_build_before(ut_pool, site.endpoint,
                                           ET_OBJ_NONE, "x", ET_EV_CREATE,
                                           "t"));
    ck_assert_str_eq(et_before_event_name(ET_EV_DELETE), "pre-delete");
}
END_TEST

START_TEST(test_before_body)
{
    const char *b, *err;
    apr_size_t n;

    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_MEMBER,
                                    ET_EV_CREATE, "id", NULL,
                                    "{\"username\":\"u\"}", 16, 16, &b, &n,
                                    &err), APR_SUCCESS);
    ck_assert_str_eq(b, "{\"username\":\"u\",\"object_type\":\"member\"}");
    ck_assert_uint_eq(n, strlen(b));
    /* an object_type of the admin's is kept */
    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_MEMBER,
                                    ET_EV_UPDATE, "id", "7",
                                    "{\"object_type\":\"x\"}", 19, 16, &b, &n,
                                    &err), APR_SUCCESS);
    ck_assert_str_eq(b, "{\"object_type\":\"x\"}");
    /* a delete without a body: the id as an object */
    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_KEY, ET_EV_DELETE,
                                    "apikey", "k1", "", 0, 16, &b, &n, &err),
                     APR_SUCCESS);
    ck_assert_str_eq(b, "{\"apikey\":\"k1\",\"object_type\":\"key\"}");
    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_KEY, ET_EV_DELETE,
                                    "/a/id", "k1", " \n", 2, 16, &b, &n,
                                    &err), APR_SUCCESS);
    ck_assert_str_eq(b, "{\"a\":{\"id\":\"k1\"},\"object_type\":\"key\"}");
    /* the form format */
    site.format = ET_FMT_FORM;
    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_MEMBER,
                                    ET_EV_CREATE, "id", NULL,
                                    "{\"m\":{\"a\":1}}", 13, 16, &b, &n,
                                    &err), APR_SUCCESS);
    ck_assert_str_eq(b, "m[a]=1&object_type=member");
    /* not an object */
    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_MEMBER,
                                    ET_EV_CREATE, "id", NULL, "a=b", 3, 16,
                                    &b, &n, &err), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "request body: malformed JSON"));
    ck_assert_int_eq(et_before_body(ut_pool, &site, ET_OBJ_MEMBER,
                                    ET_EV_CREATE, "id", NULL, "[1]", 3, 16,
                                    &b, &n, &err), APR_EINVAL);
}
END_TEST

static et_before_decision_t judge(int status, const char *error,
                                  const char *body)
{
    et_http_response_t r;
    et_before_decision_t d;

    memset(&r, 0, sizeof(r));
    r.status = status;
    r.error = error;
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    et_before_judge(ut_pool, &r, 16, &d);
    return d;
}

START_TEST(test_before_judge)
{
    et_before_decision_t d;

    d = judge(200, NULL, "{\"type\":\"proceed\"}");
    ck_assert_int_eq(d.kind, ET_BEFORE_PROCEED);
    d = judge(204, NULL, "{\"type\":\"proceed\",\"object\":null}");
    ck_assert_int_eq(d.kind, ET_BEFORE_PROCEED);
    d = judge(200, NULL, "{\"type\":\"proceed\",\"object\":{\"a\":1,"
                         "\"b\":[true]}}");
    ck_assert_int_eq(d.kind, ET_BEFORE_ENRICH);
    ck_assert_str_eq(d.object, "{\"a\":1,\"b\":[true]}");
    ck_assert_uint_eq(d.object_len, strlen(d.object));
    d = judge(200, NULL, "{\"type\":\"refuse\",\"message\":\"no\"}");
    ck_assert_int_eq(d.kind, ET_BEFORE_REFUSE);
    ck_assert_int_eq(d.status, 403);
    ck_assert_str_eq(d.message, "no");
    d = judge(200, NULL, "{\"type\":\"refuse\",\"status\":422}");
    ck_assert_int_eq(d.kind, ET_BEFORE_REFUSE);
    ck_assert_int_eq(d.status, 422);
    ck_assert_str_eq(d.message, "");

    /* failures, each with its reason */
    d = judge(0, "Timeout was reached", NULL);
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);
    ck_assert_str_eq(d.reason, "no answer: Timeout was reached");
    d = judge(500, NULL, "{\"type\":\"proceed\"}");
    ck_assert_str_eq(d.reason, "the endpoint answered 500");
    d = judge(302, NULL, "");
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);
    d = judge(200, NULL, "OK");
    ck_assert_ptr_nonnull(strstr(d.reason, "answer: malformed JSON"));
    d = judge(200, NULL, "{}");
    ck_assert_str_eq(d.reason, "answer has no \"type\"");
    d = judge(200, NULL, "{\"type\":\"maybe\"}");
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);
    d = judge(200, NULL, "{\"type\":\"proceed\",\"object\":[1]}");
    ck_assert_str_eq(d.reason, "answer's \"object\" is a JSON array, not an "
                               "object");
    d = judge(200, NULL, "{\"type\":\"refuse\",\"status\":500}");
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);
    d = judge(200, NULL, "{\"type\":\"refuse\",\"status\":\"403\"}");
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);
    d = judge(200, NULL, "{\"type\":\"refuse\",\"message\":5}");
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);
    d = judge(200, NULL, "[\"proceed\"]");
    ck_assert_int_eq(d.kind, ET_BEFORE_FAIL);

    /* a long message is cut on a character's boundary (it goes back to
     * the admin in JSON) */
    {
        char body[1100 + 64];
        apr_size_t i, n;

        n = (apr_size_t)apr_snprintf(body, sizeof(body),
                                     "{\"type\":\"refuse\",\"message\":\"x");
        for (i = 0; i < 540; i++) {        /* 1080 bytes of \u00e9 */
            body[n++] = '\xc3';
            body[n++] = '\xa9';
        }
        memcpy(body + n, "\"}", 3);
        d = judge(200, NULL, body);
        ck_assert_int_eq(d.kind, ET_BEFORE_REFUSE);
        ck_assert_uint_eq(strlen(d.message), 1023);
        /* valid UTF-8: jansson takes it */
        ck_assert_ptr_nonnull(et_json_pool_own(ut_pool,
                                               json_string(d.message)));
    }
}
END_TEST

Suite *before_suite(void)
{
    Suite *s = suite_create("before");
    TCase *tc = tcase_create("before");

    tcase_add_checked_fixture(tc, setup, ut_teardown);
    tcase_add_test(tc, test_before_url);
    tcase_add_test(tc, test_before_body);
    tcase_add_test(tc, test_before_judge);
    suite_add_tcase(s, tc);
    return s;
}
