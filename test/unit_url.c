/* Licensed under the Apache License, Version 2.0. */
/*
 * unit_url.c: the vocabulary (et_event.c), endpoint checks, call URLs and
 * transaction ids.
 */
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "et_url.h"
#include "unit_tests.h"

#define TXN "46f6497a6b284411aa715427608e6df2"

START_TEST(test_object_names)
{
    et_object_e o = ET_OBJ_KEY;

    ck_assert_str_eq(et_object_name(ET_OBJ_MEMBER), "member");
    ck_assert_str_eq(et_object_name(ET_OBJ_APPLICATION), "application");
    ck_assert_str_eq(et_object_name(ET_OBJ_KEY), "key");
    ck_assert_str_eq(et_object_name(ET_OBJ_PACKAGE_KEY), "package_key");
    ck_assert_ptr_null(et_object_name(ET_OBJ_NONE));

    ck_assert(et_object_parse("member", &o));
    ck_assert_int_eq(o, ET_OBJ_MEMBER);
    ck_assert(et_object_parse("application", &o));
    ck_assert_int_eq(o, ET_OBJ_APPLICATION);
    ck_assert(et_object_parse("key", &o));
    ck_assert_int_eq(o, ET_OBJ_KEY);
    ck_assert(et_object_parse("package_key", &o));
    ck_assert_int_eq(o, ET_OBJ_PACKAGE_KEY);
    ck_assert(et_object_parse("off", &o));
    ck_assert_int_eq(o, ET_OBJ_NONE);

    o = ET_OBJ_KEY;
    ck_assert(!et_object_parse("Member", &o));
    ck_assert(!et_object_parse("package-key", &o));
    ck_assert(!et_object_parse("", &o));
    ck_assert(!et_object_parse("keys", &o));
    ck_assert(!et_object_parse(NULL, &o));
    ck_assert_int_eq(o, ET_OBJ_KEY);
}
END_TEST

START_TEST(test_event_names)
{
    ck_assert_str_eq(et_event_name(ET_EV_CREATE), "post-create");
    ck_assert_str_eq(et_event_name(ET_EV_UPDATE), "post-update");
    ck_assert_str_eq(et_event_name(ET_EV_DELETE), "post-delete");
    ck_assert_str_eq(et_event_method(ET_EV_CREATE), "PUT");
    ck_assert_str_eq(et_event_method(ET_EV_UPDATE), "PUT");
    ck_assert_str_eq(et_event_method(ET_EV_DELETE), "DELETE");
    ck_assert_str_eq(et_format_content_type(ET_FMT_JSON), "application/json");
    ck_assert_str_eq(et_format_content_type(ET_FMT_FORM),
                     "application/x-www-form-urlencoded");
}
END_TEST

START_TEST(test_root_good)
{
    static const char *const good[] = {
        "http://mycustomerdomain.com/masherycallbacks",
        "http://h",
        "http://h/",
        "https://api.customer.com:8443/base/cb/",
        "HTTPS://H.example/x",
        "Http://h:80",
        "http://[::1]:8080/cb",
        "http://127.0.0.1:1/",
        "http://h:65535/x;y=1",
        "http://[::ffff:127.0.0.1]/cb",
        "https://xn--bcher-kva.example/cb",
        "http://hooks_1.internal-net/cb",
        NULL
    };
    const char *err;
    int i;

    for (i = 0; good[i]; i++) {
        err = "unset";
        ck_assert_msg(et_url_check_root(ut_pool, good[i], &err)
                      == APR_SUCCESS, "%s refused: %s", good[i], err);
        ck_assert_ptr_null(err);
    }
}
END_TEST

START_TEST(test_root_bad)
{
    static const struct {
        const char *root;
        const char *why;
    } bad[] = {
        { "ftp://h/x", "scheme must be http or https" },
        { "/relative/path", "scheme must be http or https" },
        { "h/x", "scheme must be http or https" },
        { "httpx://h", "scheme must be http or https" },
        { "http:///x", "no host" },
        { "http:x", "no host" },
        { "http://u:p@h/x", "user info" },
        { "https://u@h/x", "user info" },
        { "http://h/x?a=1", "query" },
        { "http://h/x?", "query" },
        { "http://h/x#frag", "fragment" },
        { "http://h/#", "fragment" },
        { "http://h:99999/", "port" },
        { "http://h:0/", "port" },
        { "http://h:8x/", NULL },
        { "http://h x/", "spaces" },
        { "http://h/a b", "spaces" },
        { "http://h/a\tb", "control" },
        { "http://h/a\x7f", "control" },
        { "http://h%2ecom/", "host must be" },
        { "http://h\\evil.example/", "host must be" },
        { "http://b\xc3\xbc" "cher.example/", "host must be" },
        { "http://[::1%25eth0]/", "host must be" },
        { "", "empty" },
        { NULL, "empty" },
    };
    const char *err;
    apr_size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        ck_assert_msg(et_url_check_root(ut_pool, bad[i].root, &err)
                      == APR_EINVAL, "%s accepted", bad[i].root);
        ck_assert_ptr_nonnull(err);
        if (bad[i].why) {
            ck_assert_msg(strstr(err, bad[i].why) != NULL,
                          "%s: '%s' lacks '%s'", bad[i].root, err,
                          bad[i].why);
        }
    }
}
END_TEST

START_TEST(test_proxy_good)
{
    static const struct {
        const char *url;
        const char *norm;
    } good[] = {
        { "http://proxy.example.com:3128", "http://proxy.example.com:3128" },
        { "http://proxy.example.com:3128/", "http://proxy.example.com:3128" },
        /* libcurl's default would be 1080: the scheme's port instead */
        { "http://proxy.example.com", "http://proxy.example.com:80" },
        { "HTTPS://proxy.example.com", "https://proxy.example.com:443" },
        { "http://127.0.0.1:8888", "http://127.0.0.1:8888" },
        { "http://[::1]:3128", "http://[::1]:3128" },
    };
    const char *norm, *err;
    apr_size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err = NULL;
        ck_assert_msg(et_url_check_proxy(ut_pool, good[i].url, &norm, &err)
                      == APR_SUCCESS, "%s refused: %s", good[i].url, err);
        ck_assert_str_eq(norm, good[i].norm);
    }
}
END_TEST

START_TEST(test_proxy_bad)
{
    static const struct {
        const char *url;
        const char *why;
    } bad[] = {
        { "http://user:secret@proxy:3128", "credentials=file:" },
        { "http://user@proxy:3128", "credentials=file:" },
        { "socks5h://proxy:1080", "scheme must be http or https" },
        { "ftp://proxy", "scheme must be http or https" },
        { "proxy:3128", NULL },
        { "http://:3128", "no host" },
        { "http://proxy:3128/path", "no path" },
        { "http://proxy:3128?x=1", "query" },
        { "http://proxy:3128#f", "fragment" },
        { "http://proxy:70000", "port" },
        { "", "empty" },
        { NULL, "empty" },
    };
    const char *norm, *err;
    apr_size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        ck_assert_msg(et_url_check_proxy(ut_pool, bad[i].url, &norm, &err)
                      == APR_EINVAL, "%s accepted", bad[i].url);
        ck_assert_ptr_nonnull(err);
        ck_assert_ptr_null(norm);
        /* the password is never repeated */
        ck_assert_ptr_null(strstr(err, "secret"));
        if (bad[i].why) {
            ck_assert_msg(strstr(err, bad[i].why) != NULL,
                          "%s: '%s' lacks '%s'", bad[i].url, err,
                          bad[i].why);
        }
    }
}
END_TEST

START_TEST(test_build_protocol_example)
{
    /* the seed's example of an update call */
    const char *root = "http://mycustomerdomain.com/masherycallbacks";

    ck_assert_str_eq(et_url_build(ut_pool, root, ET_OBJ_MEMBER, "123456",
                                  ET_EV_UPDATE, TXN),
                     "http://mycustomerdomain.com/masherycallbacks/v1/member/"
                     "123456?event=post-update&txn=" TXN);
    ck_assert_str_eq(et_url_build(ut_pool, "https://api.customer.com",
                                  ET_OBJ_KEY, "14398445", ET_EV_CREATE, TXN),
                     "https://api.customer.com/v1/key/14398445"
                     "?event=post-create&txn=" TXN);
    ck_assert_str_eq(et_url_build(ut_pool, "https://api.customer.com",
                                  ET_OBJ_PACKAGE_KEY, "9", ET_EV_DELETE, TXN),
                     "https://api.customer.com/v1/package_key/9"
                     "?event=post-delete&txn=" TXN);
    ck_assert_str_eq(et_url_build(ut_pool, "http://h/cb", ET_OBJ_APPLICATION,
                                  "app1", ET_EV_CREATE, TXN),
                     "http://h/cb/v1/application/app1?event=post-create&txn="
                     TXN);
}
END_TEST

START_TEST(test_build_trailing_slash)
{
    static const char *const roots[] = {
        "http://h/cb", "http://h/cb/", "http://h/cb//"
    };
    apr_size_t i;

    for (i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        ck_assert_str_eq(et_url_build(ut_pool, roots[i], ET_OBJ_KEY, "1",
                                      ET_EV_CREATE, TXN),
                         "http://h/cb/v1/key/1?event=post-create&txn=" TXN);
    }
    ck_assert_str_eq(et_url_build(ut_pool, "http://h/", ET_OBJ_KEY, "1",
                                  ET_EV_CREATE, TXN),
                     "http://h/v1/key/1?event=post-create&txn=" TXN);
}
END_TEST

/* The segment et_url_build writes for @a oid. */
static const char *segment(const char *oid)
{
    const char *url = et_url_build(ut_pool, "http://h", ET_OBJ_MEMBER, oid,
                                   ET_EV_CREATE, TXN);
    const char *start = url + strlen("http://h/v1/member/");
    const char *q = strchr(start, '?');

    ck_assert_ptr_nonnull(q);
    /* the query starts right after the segment, so nothing in the id
     * could have added a '?' (all of them escaped) */
    ck_assert_str_eq(q, "?event=post-create&txn=" TXN);
    return apr_pstrmemdup(ut_pool, start, q - start);
}

START_TEST(test_build_id_escaping)
{
    /* APR writes lowercase hex digits */
    ck_assert_str_eq(segment("a/b"), "a%2fb");
    ck_assert_str_eq(segment("a?b"), "a%3fb");
    ck_assert_str_eq(segment("a#b"), "a%23b");
    ck_assert_str_eq(segment("100%"), "100%25");
    ck_assert_str_eq(segment("a b"), "a%20b");
    ck_assert_str_eq(segment("caf\xc3\xa9"), "caf%c3%a9");
    ck_assert_str_eq(segment("../x"), "..%2fx");
    ck_assert_str_eq(segment("a;b"), "a%3bb");
    /* legal in a segment, left alone */
    ck_assert_str_eq(segment("a+b=c&d:e@f"), "a+b=c&d:e@f");
    ck_assert_str_eq(segment("bs8ssd5wjeekc797t6ar47v2"),
                     "bs8ssd5wjeekc797t6ar47v2");
}
END_TEST

START_TEST(test_build_dots)
{
    ck_assert_str_eq(segment("."), "%2E");
    ck_assert_str_eq(segment(".."), "%2E%2E");
    /* not special to any normaliser */
    ck_assert_str_eq(segment("..."), "...");
    ck_assert_str_eq(segment(".a"), ".a");
}
END_TEST

START_TEST(test_build_none)
{
    ck_assert_ptr_null(et_url_build(ut_pool, "http://h", ET_OBJ_NONE, "1",
                                    ET_EV_CREATE, TXN));
    ck_assert_ptr_null(et_url_build(ut_pool, NULL, ET_OBJ_KEY, "1",
                                    ET_EV_CREATE, TXN));
}
END_TEST

static void assert_txn(const char *t)
{
    const char *c;

    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(strlen(t), 32);
    for (c = t; *c; c++) {
        ck_assert_msg(apr_isdigit(*c) || (*c >= 'a' && *c <= 'f'),
                      "bad txn %s", t);
    }
}

START_TEST(test_txn)
{
    const char *a, *b;

    apr_time_t before = apr_time_now();
    char stamp[13];

    ck_assert_int_eq(et_txn_new(ut_pool, &a), APR_SUCCESS);
    ck_assert_int_eq(et_txn_new(ut_pool, &b), APR_SUCCESS);
    assert_txn(a);
    assert_txn(b);
    ck_assert_str_ne(a, b);
    /* capture time leads (so txns sort by capture), randomness follows */
    ck_assert_int_le(strncmp(a, b, 12), 0);
    apr_snprintf(stamp, sizeof(stamp), "%012" APR_UINT64_T_HEX_FMT,
                 (apr_uint64_t)apr_time_as_msec(before));
    ck_assert_int_ge(strncmp(a, stamp, 12), 0);
    ck_assert_int_ne(strcmp(a + 12, b + 12), 0);
}
END_TEST

Suite *url_suite(void)
{
    Suite *s = suite_create("url");
    TCase *tc;

    tc = tcase_create("vocabulary");
    tcase_add_test(tc, test_object_names);
    tcase_add_test(tc, test_event_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("url");
    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, test_root_good);
    tcase_add_test(tc, test_root_bad);
    tcase_add_test(tc, test_proxy_good);
    tcase_add_test(tc, test_proxy_bad);
    tcase_add_test(tc, test_build_protocol_example);
    tcase_add_test(tc, test_build_trailing_slash);
    tcase_add_test(tc, test_build_id_escaping);
    tcase_add_test(tc, test_build_dots);
    tcase_add_test(tc, test_build_none);
    tcase_add_test(tc, test_txn);
    suite_add_tcase(s, tc);
    return s;
}
