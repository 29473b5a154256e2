/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_form.c: et_form_encode, exact output for the conventions of
 * et_form.h (what PHP, Rails and qs decode back into the object).
 */
#include <string.h>

#include <apr_strings.h>

#include "et_form.h"
#include "et_json.h"
#include "unit_tests.h"

/* Encode the JSON text @a in and compare with @a want. */
static void form_is(const char *in, const char *want)
{
    const char *out;
    apr_size_t len;

    ck_assert_int_eq(et_form_encode(ut_pool, ut_json(in), &out, &len),
                     APR_SUCCESS);
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(len, strlen(want));
}

START_TEST(test_form_flat)
{
    form_is("{\"apikey\":\"bs8ssd5wjeekc797t6ar47v2\",\"status\":\"active\"}",
            "apikey=bs8ssd5wjeekc797t6ar47v2&status=active");
}
END_TEST

START_TEST(test_form_nested)
{
    /* the protocol's key example */
    form_is("{\"apikey\":\"k1\",\"object_type\":\"key\","
            "\"member\":{\"username\":\"partner1_dev1\","
            "\"email\":\"dev@example.com\",\"object_type\":\"member\"},"
            "\"limits\":[{\"period\":\"second\",\"source\":\"plan\","
            "\"ceiling\":2},{\"period\":\"day\",\"ceiling\":5000}]}",
            "apikey=k1&object_type=key"
            "&member[username]=partner1_dev1"
            "&member[email]=dev%40example.com"
            "&member[object_type]=member"
            "&limits[0][period]=second&limits[0][source]=plan"
            "&limits[0][ceiling]=2"
            "&limits[1][period]=day&limits[1][ceiling]=5000");
}
END_TEST

START_TEST(test_form_arrays)
{
    /* indices are always written, also for scalars and nested arrays */
    form_is("{\"tags\":[\"a\",\"b\"],\"m\":[[1,2],[3]],"
            "\"deep\":{\"x\":{\"y\":[{\"z\":true}]}}}",
            "tags[0]=a&tags[1]=b&m[0][0]=1&m[0][1]=2&m[1][0]=3"
            "&deep[x][y][0][z]=true");
}
END_TEST

START_TEST(test_form_scalars)
{
    form_is("{\"t\":true,\"f\":false,\"fax\":null,\"i\":-42,\"zero\":0,"
            "\"big\":9007199254740993,\"r\":2.5,\"two\":2.0,\"tenth\":0.1,"
            "\"e\":1e100,\"small\":-1.5e-7}",
            "t=true&f=false&fax=&i=-42&zero=0&big=9007199254740993&r=2.5"
            "&two=2.0&tenth=0.1&e=1e%2b100&small=-1.5e-07");
}
END_TEST

START_TEST(test_form_int64_limits)
{
    form_is("{\"max\":9223372036854775807,\"min\":-9223372036854775808}",
            "max=9223372036854775807&min=-9223372036854775808");
}
END_TEST

START_TEST(test_form_special_chars)
{
    /* '&', '=', '+', space, brackets and '%' in values and keys */
    form_is("{\"q\":\"a&b=c+d e\",\"a&b=c\":\"v\",\"k[0]\":\"[x]\","
            "\"pct\":\"100%\",\"plus\":\"+\",\"sp\":\" \",\"tilde\":\"~\","
            "\"safe\":\"A-z_0.9*\",\"nl\":\"a\\r\\nb\",\"slash\":\"/?#\"}",
            "q=a%26b%3dc%2bd+e&a%26b%3dc=v&k%5b0%5d=%5bx%5d&pct=100%25"
            "&plus=%2b&sp=+&tilde=%7e&safe=A-z_0.9*&nl=a%0d%0ab"
            "&slash=%2f%3f%23");
}
END_TEST

START_TEST(test_form_unicode)
{
    form_is("{\"name\":\"caf\\u00e9 \\u65e5\\u672c\","
            "\"emoji\":\"\\ud83d\\ude00\",\"\\u00fc\":\"x\"}",
            "name=caf%c3%a9+%e6%97%a5%e6%9c%ac&emoji=%f0%9f%98%80"
            "&%c3%bc=x");
}
END_TEST

START_TEST(test_form_empty)
{
    /* empty containers have no form representation and are left out */
    form_is("{}", "");
    form_is("{\"a\":{},\"b\":[],\"c\":1,\"d\":{\"e\":[]}}", "c=1");
    form_is("{\"\":\"x\",\"e\":\"\"}", "=x&e=");
}
END_TEST

START_TEST(test_form_not_object)
{
    const char *out = "x";
    apr_size_t len = 7;

    ck_assert_int_eq(et_form_encode(ut_pool, ut_json("[1,2]"), &out, &len),
                     APR_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(et_form_encode(ut_pool, ut_json("\"s\""), &out, &len),
                     APR_EINVAL);
    ck_assert_int_eq(et_form_encode(ut_pool, NULL, &out, &len), APR_EINVAL);
}
END_TEST

START_TEST(test_form_nul_in_string)
{
    json_t *o = et_json_pool_own(ut_pool, json_object());
    const char *out;

    /* only possible for objects built in memory; refused, not truncated */
    json_object_set_new(o, "a", json_stringn("x\0y", 3));
    ck_assert_int_eq(et_form_encode(ut_pool, o, &out, NULL), APR_EINVAL);
}
END_TEST

/* An object nested @a levels deep: {"k":{"k":...{"v":1}}} */
static json_t *nested(int levels)
{
    json_t *top = et_json_pool_own(ut_pool, json_object());
    json_t *cur = top;
    int i;

    for (i = 1; i < levels; i++) {
        json_t *next = json_object();

        json_object_set_new(cur, "k", next);
        cur = next;
    }
    json_object_set_new(cur, "v", json_integer(1));
    return top;
}

START_TEST(test_form_depth_guard)
{
    const char *out;
    apr_size_t len;

    ck_assert_int_eq(et_form_encode(ut_pool, nested(64), &out, &len),
                     APR_SUCCESS);
    ck_assert_uint_eq(len, 63 * 3 + 3);
    ck_assert_int_eq(et_form_encode(ut_pool, nested(65), &out, &len),
                     APR_EINVAL);
    ck_assert_int_eq(et_form_encode(ut_pool, nested(1000), &out, &len),
                     APR_EINVAL);
}
END_TEST

START_TEST(test_form_large)
{
    /* 200000 pairs: linear work, exact length */
    json_t *o = et_json_pool_own(ut_pool, json_object());
    json_t *a = json_array();
    apr_size_t want = 0, len;
    const char *out;
    char key[32];
    int i;

    for (i = 0; i < 100000; i++) {
        apr_snprintf(key, sizeof(key), "k%d", i);
        json_object_set_new(o, key, json_string("v v"));
        want += strlen(key) + 4 + 1;          /* kN=v+v& */
    }
    json_object_set_new(o, "arr", a);
    for (i = 0; i < 100000; i++) {
        json_array_append_new(a, json_integer(7));
        apr_snprintf(key, sizeof(key), "arr[%d]=7", i);
        want += strlen(key) + 1;
    }
    want--;                                   /* no '&' after the last */
    ck_assert_int_eq(et_form_encode(ut_pool, o, &out, &len), APR_SUCCESS);
    ck_assert_uint_eq(len, want);
    ck_assert_uint_eq(strlen(out), want);
    ck_assert(strncmp(out, "k0=v+v&k1=v+v&", 14) == 0);
    ck_assert(strcmp(out + len - 12, "arr[99999]=7") == 0);
}
END_TEST

Suite *form_suite(void)
{
    Suite *s = suite_create("form");
    TCase *tc = tcase_create("encode");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_form_flat);
    tcase_add_test(tc, test_form_nested);
    tcase_add_test(tc, test_form_arrays);
    tcase_add_test(tc, test_form_scalars);
    tcase_add_test(tc, test_form_int64_limits);
    tcase_add_test(tc, test_form_special_chars);
    tcase_add_test(tc, test_form_unicode);
    tcase_add_test(tc, test_form_empty);
    tcase_add_test(tc, test_form_not_object);
    tcase_add_test(tc, test_form_nul_in_string);
    tcase_add_test(tc, test_form_depth_guard);
    tcase_add_test(tc, test_form_large);
    suite_add_tcase(s, tc);
    return s;
}
